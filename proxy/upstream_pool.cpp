#include "proxy/upstream_pool.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <functional>

#include "config/config.hpp"
#include "proxy/log.hpp"
#include "proxy/net.hpp"
#include "proxy/runtime.hpp"

namespace egressd::proxy {

namespace {

// An entry's key: host, port, generation and user, hashed, and compared in full.
std::size_t key_hash(std::string_view host, std::uint16_t port, const generation* gen, std::string_view user) noexcept {
  std::size_t h = std::hash<std::string_view>{}(host);
  // boost::hash_combine's mixing step.
  const auto mix = [&h](std::size_t v) { h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2); };
  mix(port);
  mix(std::hash<const generation*>{}(gen));
  if (!user.empty()) mix(std::hash<std::string_view>{}(user));
  return h;
}

bool same_key(const pooled_connection& c, std::string_view host, std::uint16_t port, const generation* gen,
              std::string_view user) noexcept {
  return c.port == port && &c.gen.get() == gen && c.host == host && c.user == user;
}

// An idle HTTP/1.1 connection has nothing to say: readable means the origin closed it
// (EOF), reset it, or sent something unasked (a 408); any of these ends its reuse
// (RFC 9112 §9.3.1: a client must be ready for a close at any time; looking first
// narrows the race that the caller's one retry covers).
bool still_idle(boost::asio::ip::tcp::socket& s) noexcept {
  char byte;
  const auto n = ::recv(s.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

upstream_pool::upstream_pool(worker& w, std::size_t max_total) : w_(w), max_total_(max_total) {}

upstream_pool::~upstream_pool() {
  if (attached_) w_.detach(this);
  w_.shared().stats.upstream_idle_changed(-static_cast<std::int64_t>(counted_));
}

// Attached to the worker (its sweep, abort and revocation) only while it holds a
// connection, so an empty pool costs the worker's sweep nothing. Every change of the
// pool ends here, which also brings egressd_upstream_idle_connections up to date.
void upstream_pool::sync() noexcept {
  if (pool_.size() != counted_) {
    w_.shared().stats.upstream_idle_changed(static_cast<std::int64_t>(pool_.size()) -
                                            static_cast<std::int64_t>(counted_));
    counted_ = pool_.size();
  }
  if (!pool_.empty() && !attached_) {
    w_.attach(this);
    attached_ = true;
  } else if (pool_.empty() && attached_) {
    w_.detach(this);
    attached_ = false;
  }
}

std::optional<pooled_connection> upstream_pool::take(std::string_view host, std::uint16_t port, const generation& gen,
                                                     std::string_view user) {
  if (pool_.empty()) return std::nullopt;
  const std::size_t hash = key_hash(host, port, &gen, user);
  const auto now = std::chrono::steady_clock::now();
  const auto same = [&](const pooled_connection& c) { return same_key(c, host, port, &gen, user); };
  std::optional<pooled_connection> c;
  // Each round removes an entry: bounded by the pool's size.
  for (std::size_t n = pool_.size(); n > 0; --n) {
    c = pool_.take(hash, now, same);
    if (!c || still_idle(c->socket)) break;
    c.reset();  // closed by the origin meanwhile: close ours, look further
  }
  sync();
  return c;
}

void upstream_pool::put(pooled_connection&& c, const config::limits_config& limits) {
  if (w_.shared().draining.load(std::memory_order_relaxed)) return;  // closed as `c` goes
  const std::size_t hash = key_hash(c.host, c.port, &c.gen.get(), c.user);
  const auto same = [&c](const pooled_connection& e) { return same_key(e, c.host, c.port, &c.gen.get(), c.user); };
  const idle_pool<pooled_connection>::bounds b{limits.upstream_idle_per_origin,
                                               std::min(max_total_, limits.upstream_idle_max)};
  // What does not stay (evicted, or `c` when the pool is off) is closed as it goes.
  pool_.put(hash, std::move(c), std::chrono::steady_clock::now() + limits.upstream_idle_timeout, b, same);
  sync();
}

void upstream_pool::abort() noexcept {
  pool_.clear();
  sync();
}

void upstream_pool::check_deadline(std::chrono::steady_clock::time_point now) noexcept {
  if (w_.shared().draining.load(std::memory_order_relaxed)) {
    pool_.clear();
  } else {
    pool_.remove_expired(now);
    // A reload replaced the generation: no request can take these any more.
    const auto current = w_.shared().generation_number.load(std::memory_order_acquire);
    pool_.remove_if([&](const pooled_connection& c) { return c.gen.number() != current; }, [](pooled_connection&&) {});
  }
  sync();
}

bool upstream_pool::revoke(const revocation& r) {
  std::size_t closed = 0;
  pool_.remove_if([&](const pooled_connection& c) { return r.denies(c.host, c.port, c.allowed_for); },
                  [&](pooled_connection&& c) {
                    ++closed;
                    log_event(log_level::info, "pooled upstream connection closed: revoked",
                              json_object()
                                  .add("host", c.host)
                                  .add("port", static_cast<unsigned>(c.port))
                                  .add("upstream", endpoint_text(c.remote.address(), c.remote.port()))
                                  .add("idle_pool", true));
                  });
  sync();
  return closed > 0;
}

}  // namespace egressd::proxy
