#pragma once
// An immutable, compiled policy and the pure decision over it.
//
// compile() validates every entry (reporting each problem with its source location),
// expands presets, and indexes the rules so that a decision costs a handful of hash
// lookups whatever the number of rules: names are looked up by each of their suffixes
// at label boundaries, addresses by each prefix length in use. A snapshot is shared
// read-only between worker threads (std::shared_ptr<const snapshot>).

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/address.hpp"
#include "policy/decision.hpp"
#include "policy/host.hpp"
#include "policy/name_index.hpp"
#include "policy/pattern.hpp"
#include "policy/rules.hpp"

namespace egressd::policy {

/// One compiled rule, for messages, `egressd check` and audit records.
struct rule_info {
  std::string text;    ///< the entry as matched (a preset's line for expanded presets)
  list_kind list = list_kind::deny;
  std::string preset;  ///< "@github" when the rule came from a preset, else empty
  source_location where;
};

/// A problem found while compiling; warnings do not stop compilation.
struct compile_problem {
  bool warning = false;
  source_location where;
  std::string entry;
  std::string message;
  std::string hint;
};

struct compile_options {
  /// Refuses wildcards directly over a public suffix (*.co.uk). Optional: the config
  /// layer passes libpsl's answer; without it only single-label suffixes are refused.
  std::function<bool(std::string_view)> is_public_suffix;
  /// Warns about wildcards in `allow` directly over a hosting platform's suffix (the
  /// public suffix list's private section: github.io, s3.amazonaws.com): valid, but
  /// they open every customer's site. Presets are not warned about. Optional.
  std::function<bool(std::string_view)> is_platform_suffix;
};

class snapshot;

struct compile_result {
  std::shared_ptr<const snapshot> policy;  ///< null when any error-level problem was found
  std::vector<compile_problem> problems;
};

/// Validate and index `rules`. Never throws for bad input.
compile_result compile(const rules& input, const compile_options& options = {});

class snapshot {
 public:
  using entry = rule_ref;

  /// Sets of address ranges, looked up by each prefix length present.
  class range_index {
   public:
    void add(const address_range& r, entry e);
    /// The first entry whose range holds `a` and whose port fits, or nullopt.
    std::optional<rule_id> find(const ip_address& a, std::uint16_t port) const noexcept;
    bool empty() const noexcept { return v4_.empty() && v6_.empty(); }

   private:
    struct key_hash {
      std::size_t operator()(const std::array<std::uint8_t, 16>& k) const noexcept;
    };
    using table = std::unordered_map<std::array<std::uint8_t, 16>, std::vector<entry>, key_hash>;
    std::vector<std::pair<std::uint8_t, table>> v4_, v6_;  // longest prefix first
  };

  const rule_info& rule(rule_id id) const { return rules_.at(id); }
  std::size_t rule_count() const noexcept { return rules_.size(); }
  unknown_mode unknown() const noexcept { return unknown_; }
  grammar syntax() const noexcept { return syntax_; }
  bool allow_private() const noexcept { return allow_private_; }

  /// The first rule of `list` that matches the host and port, or nullopt. `key` holds
  /// the name's suffix hashes (make_host_key), computed once by decide() for both
  /// lists; null for an IP literal.
  std::optional<rule_id> match(list_kind list, const canonical_host& host, const host_key* key,
                               std::uint16_t port) const noexcept;

  /// The first IP entry of `list` whose range holds `a` at `port` (guard use).
  std::optional<rule_id> match_address(list_kind list, const ip_address& a, std::uint16_t port) const noexcept;
  /// The first `guard.deny_ranges` entry holding `a`.
  std::optional<rule_id> match_listed(const ip_address& a) const noexcept;

 private:
  friend compile_result compile(const rules&, const compile_options&);

  struct list_index {
    name_index names;        // example.com, *.example.com, **.example.com
    std::vector<entry> any;  // *, *:22
    range_index addresses;
  };

  const list_index& index(list_kind l) const noexcept { return l == list_kind::allow ? allow_ : deny_; }

  std::vector<rule_info> rules_;
  list_index allow_, deny_;
  range_index listed_;
  unknown_mode unknown_ = unknown_mode::deny;
  grammar syntax_ = grammar::egressd;
  bool allow_private_ = false;
};

/// The decision for a request (README "Policy semantics", order of a decision): invalid host → deny; a deny
/// rule → deny; an allow rule → allow; a remembered hook answer; then `unknown`.
/// Pure, thread-safe, allocation-free.
decision decide(const snapshot& policy, const request_facts& facts) noexcept;

}  // namespace egressd::policy
