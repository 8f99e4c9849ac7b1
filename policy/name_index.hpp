#pragma once
// The index of name patterns, keyed by label suffixes. A host's suffixes at label
// boundaries are hashed in one right-to-left pass (reversed labels), and each is looked
// up in a flat open-addressing table, so a decision costs one probe per label whatever
// the number of rules (README "Performance": a decision costs the same with 10 rules or 100,000).

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/decision.hpp"

namespace egressd::policy {

/// A rule in an index, with the port it is narrowed to (0: any).
struct rule_ref {
  rule_id rule;
  std::uint16_t port;
};

/// The label suffixes of one canonical name and their hashes; computed once per
/// decision and shared by the allow and deny indexes.
struct host_key {
  std::string_view name;
  struct suffix {
    std::uint16_t offset;
    std::uint64_t hash;
  };
  /// [0] is the top-level label, the last one the whole name (at most 127 labels).
  std::array<suffix, 128> suffixes;
  std::size_t count = 0;
};
host_key make_host_key(std::string_view name) noexcept;

class name_index {
 public:
  enum class kind : std::uint8_t { exact = 0, subdomains = 1, apex = 2 };

  /// Adds a pattern (compile time only).
  void add(std::string_view key, kind k, rule_ref r);
  /// Builds the lookup table; call once after the last add().
  void freeze();
  bool empty() const noexcept { return records_.empty(); }

  /// The first rule matching the host at `port`: exact and apex matches of the whole
  /// name, then subdomain and apex matches of its suffixes, most specific first.
  std::optional<rule_id> match(const host_key& key, std::uint16_t port) const noexcept;

 private:
  struct record {
    std::array<std::uint32_t, 3> begin{};
    std::array<std::uint32_t, 3> end{};
  };
  struct slot {
    std::uint64_t hash = 0;
    std::uint32_t key_offset = 0;
    std::uint32_t key_length = 0;
    std::uint32_t record = empty_slot;
  };
  static constexpr std::uint32_t empty_slot = 0xFFFFFFFF;

  const record* find(std::string_view key, std::uint64_t hash) const noexcept;
  std::optional<rule_id> first_fitting(const record& r, kind k, std::uint16_t port) const noexcept;

  struct pending {
    std::uint64_t hash;
    std::uint32_t key_offset;
    std::uint32_t key_length;
    kind k;
    rule_ref ref;
  };
  std::vector<pending> pending_;  // until freeze()
  std::string arena_;             // every key, back to back
  std::vector<slot> slots_;
  std::vector<record> records_;
  std::vector<rule_ref> entries_;
  std::uint64_t mask_ = 0;
};

}  // namespace egressd::policy
