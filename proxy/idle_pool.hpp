#pragma once
// The bookkeeping of a worker's pool of idle upstream connections (upstream_pool.hpp):
// which entry a request may take, which one makes room for a new one, which have
// expired. Pure: no sockets, no clock (the caller passes the time), no locks (a pool
// belongs to one worker thread), so it is tested without a network.
//
// Entries live in one vector in no particular order (removal swaps the last entry in);
// the expiry of each entry orders them: `take` hands out the one parked last (LIFO: it
// is the likeliest to be alive, and the others expire), eviction drops the one parked
// first. Lookups scan the vector, comparing a precomputed key hash before the caller's
// full key comparison: the pool holds at most `total` entries, a few hundred.

#include <chrono>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

namespace egressd::proxy {

template <class Value, class Clock = std::chrono::steady_clock>
class idle_pool {
 public:
  using time_point = typename Clock::time_point;

  /// The bounds of a put: entries per key and in total (0 for either: nothing is kept).
  struct bounds {
    std::size_t per_key = 0;
    std::size_t total = 0;
  };

  /// Parks `v` under key hash `hash` until `expires`. `same_key(const Value&)` tells
  /// whether an entry has v's key. To make room, the entry of v's key parked first
  /// is evicted when that key has `per_key` entries, else the entry parked first
  /// overall when the pool has `total`. Returns what did not stay: the evicted value,
  /// or `v` itself when the bounds keep nothing.
  template <class SameKey>
  std::optional<Value> put(std::size_t hash, Value&& v, time_point expires, bounds b, SameKey same_key) {
    if (b.per_key == 0 || b.total == 0) return std::optional<Value>(std::move(v));
    std::optional<Value> out;
    std::size_t same = 0;
    std::size_t oldest_same = npos;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const entry& e = entries_[i];
      if (e.hash != hash || !same_key(e.value)) continue;
      ++same;
      if (oldest_same == npos || e.expires < entries_[oldest_same].expires) oldest_same = i;
    }
    if (same >= b.per_key) {
      out = remove_at(oldest_same);
    } else if (entries_.size() >= b.total) {
      out = remove_at(oldest());
    }
    // A lowered `total` (a reload) shrinks the pool one put at a time: what is beyond
    // it is evicted first, all but one entry here, the last one above.
    while (entries_.size() >= b.total) remove_at(oldest());
    entries_.push_back(entry{hash, expires, std::move(v)});
    return out;
  }

  /// Takes the entry of key hash `hash` parked last for which `match(const Value&)`
  /// is true and that has not expired at `now`; nullopt when there is none. Expired
  /// entries stay for remove_expired.
  template <class Match>
  std::optional<Value> take(std::size_t hash, time_point now, Match match) {
    std::size_t best = npos;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const entry& e = entries_[i];
      if (e.hash != hash || e.expires <= now || !match(e.value)) continue;
      if (best == npos || e.expires > entries_[best].expires) best = i;
    }
    if (best == npos) return std::nullopt;
    return remove_at(best);
  }

  /// Removes every entry for which `pred(const Value&)` is true, handing each to
  /// `sink(Value&&)` first; returns how many.
  template <class Pred, class Sink>
  std::size_t remove_if(Pred pred, Sink sink) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < entries_.size();) {
      if (pred(entries_[i].value)) {
        sink(remove_at(i));
        ++n;
      } else {
        ++i;
      }
    }
    return n;
  }

  /// Removes the entries expired at `now`; returns how many.
  std::size_t remove_expired(time_point now) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < entries_.size();) {
      if (entries_[i].expires <= now) {
        remove_at(i);
        ++n;
      } else {
        ++i;
      }
    }
    return n;
  }

  void clear() noexcept { entries_.clear(); }
  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }

 private:
  struct entry {
    std::size_t hash;
    time_point expires;
    Value value;
  };
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::size_t oldest() const noexcept {
    std::size_t at = 0;
    for (std::size_t i = 1; i < entries_.size(); ++i)
      if (entries_[i].expires < entries_[at].expires) at = i;
    return at;
  }

  Value remove_at(std::size_t i) {
    Value v = std::move(entries_[i].value);
    if (i + 1 != entries_.size()) entries_[i] = std::move(entries_.back());
    entries_.pop_back();
    return v;
  }

  std::vector<entry> entries_;
};

}  // namespace egressd::proxy
