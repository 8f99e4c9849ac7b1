#include "policy/name_index.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

namespace egressd::policy {

namespace {

constexpr std::uint64_t fnv_offset = 0xcbf29ce484222325ULL;
constexpr std::uint64_t fnv_prime = 0x100000001b3ULL;

// Spreads an FNV hash over the table's bits (the finaliser of MurmurHash3).
std::uint64_t mix(std::uint64_t h) noexcept {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

// FNV-1a over the characters from last to first: the hash of every suffix falls out
// of one pass over the name.
std::uint64_t reverse_hash(std::string_view s) noexcept {
  std::uint64_t h = fnv_offset;
  for (std::size_t i = s.size(); i-- > 0;) h = (h ^ static_cast<unsigned char>(s[i])) * fnv_prime;
  return h;
}

}  // namespace

host_key make_host_key(std::string_view name) noexcept {
  host_key k;
  k.name = name;
  std::uint64_t h = fnv_offset;
  for (std::size_t i = name.size(); i-- > 0;) {
    h = (h ^ static_cast<unsigned char>(name[i])) * fnv_prime;
    if ((i == 0 || name[i - 1] == '.') && k.count < k.suffixes.size())
      k.suffixes[k.count++] = {static_cast<std::uint16_t>(i), h};
  }
  return k;
}

void name_index::add(std::string_view key, kind k, rule_ref r) {
  pending_.push_back({reverse_hash(key), static_cast<std::uint32_t>(arena_.size()),
                      static_cast<std::uint32_t>(key.size()), k, r});
  arena_ += key;
}

void name_index::freeze() {
  auto key_of = [this](const pending& p) { return std::string_view(arena_).substr(p.key_offset, p.key_length); };
  // Group equal keys; within a key, each kind keeps the order the rules were written in.
  std::stable_sort(pending_.begin(), pending_.end(), [&](const pending& a, const pending& b) {
    if (a.hash != b.hash) return a.hash < b.hash;
    if (const int c = key_of(a).compare(key_of(b)); c != 0) return c < 0;
    return a.k < b.k;
  });
  std::size_t keys = 0;
  for (std::size_t i = 0; i < pending_.size(); ++i)
    if (i == 0 || pending_[i].hash != pending_[i - 1].hash || key_of(pending_[i]) != key_of(pending_[i - 1])) ++keys;
  const std::size_t capacity = std::bit_ceil(std::max<std::size_t>(16, keys * 2));
  slots_.assign(capacity, slot{});
  mask_ = capacity - 1;
  records_.reserve(keys);
  entries_.reserve(pending_.size());
  for (std::size_t i = 0; i < pending_.size();) {
    std::size_t j = i;
    while (j < pending_.size() && pending_[j].hash == pending_[i].hash && key_of(pending_[j]) == key_of(pending_[i])) ++j;
    record rec;
    std::size_t e = i;
    for (std::size_t k = 0; k < 3; ++k) {
      rec.begin[k] = static_cast<std::uint32_t>(entries_.size());
      while (e < j && static_cast<std::size_t>(pending_[e].k) == k) entries_.push_back(pending_[e++].ref);
      rec.end[k] = static_cast<std::uint32_t>(entries_.size());
    }
    std::uint64_t slot_index = mix(pending_[i].hash) & mask_;
    while (slots_[slot_index].record != empty_slot) slot_index = (slot_index + 1) & mask_;
    slots_[slot_index] = {pending_[i].hash, pending_[i].key_offset, pending_[i].key_length,
                          static_cast<std::uint32_t>(records_.size())};
    records_.push_back(rec);
    i = j;
  }
  std::vector<pending>().swap(pending_);
}

const name_index::record* name_index::find(std::string_view key, std::uint64_t hash) const noexcept {
  for (std::uint64_t i = mix(hash) & mask_;; i = (i + 1) & mask_) {
    const slot& s = slots_[i];
    if (s.record == empty_slot) return nullptr;
    if (s.hash == hash && s.key_length == key.size() &&
        std::memcmp(arena_.data() + s.key_offset, key.data(), key.size()) == 0)
      return &records_[s.record];
  }
}

std::optional<rule_id> name_index::first_fitting(const record& r, kind k, std::uint16_t port) const noexcept {
  const auto i = static_cast<std::size_t>(k);
  for (std::uint32_t e = r.begin[i]; e < r.end[i]; ++e)
    if (entries_[e].port == 0 || entries_[e].port == port) return entries_[e].rule;
  return std::nullopt;
}

std::optional<rule_id> name_index::match(const host_key& key, std::uint16_t port) const noexcept {
  if (records_.empty() || key.count == 0) return std::nullopt;
  // The whole name: exact and apex (**.) patterns.
  const auto& whole = key.suffixes[key.count - 1];
  if (const record* r = find(key.name, whole.hash)) {
    if (auto id = first_fitting(*r, kind::exact, port)) return id;
    if (auto id = first_fitting(*r, kind::apex, port)) return id;
  }
  // Proper suffixes, most specific first: subdomain (*.) and apex (**.) patterns.
  for (std::size_t i = key.count - 1; i-- > 0;) {
    const auto& s = key.suffixes[i];
    if (const record* r = find(key.name.substr(s.offset), s.hash)) {
      if (auto id = first_fitting(*r, kind::subdomains, port)) return id;
      if (auto id = first_fitting(*r, kind::apex, port)) return id;
    }
  }
  return std::nullopt;
}

}  // namespace egressd::policy
