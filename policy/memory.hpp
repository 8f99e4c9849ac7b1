#pragma once
// The decision memory: hook answers remembered for later requests (README
// "Confirmation hook"). Pure: no I/O, no clock of its own (callers pass `now`), no
// locks. A memory is a value; the daemon publishes an immutable copy per change
// (copy-on-write: answers are rare, lookups are on every unknown destination), so a
// lookup is a few hash probes over a snapshot no other thread writes.
//
// Precedence: configured rules always win (decide() consults the memory only when no
// rule matched). Within the memory the most specific entry wins: host_port, then
// host, then domain entries from the longest suffix to the shortest. A new answer
// for the same key replaces the old one.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/decision.hpp"

namespace egressd::policy {

/// What an answer covers. Names appear in answers, the decisions file and the API.
enum class answer_scope : std::uint8_t {
  host,       ///< this host, any port
  host_port,  ///< this host and this port only
  domain,     ///< a registrable domain and all its subdomains (`npmjs.org`, `*.npmjs.org`)
};
/// How long an answer is remembered.
enum class answer_lifetime : std::uint8_t {
  once,    ///< answers the waiting requests only; never stored
  ttl,     ///< remembered until `expires`
  always,  ///< remembered until forgotten; persisted in decisions_file
};
std::string_view to_string(answer_scope s) noexcept;
std::string_view to_string(answer_lifetime l) noexcept;
std::optional<answer_scope> parse_answer_scope(std::string_view s) noexcept;
std::optional<answer_lifetime> parse_answer_lifetime(std::string_view s) noexcept;

/// One remembered answer.
struct memory_entry {
  /// The canonical host (host, host_port) or the registrable domain (domain).
  std::string name;
  std::uint16_t port = 0;  ///< host_port only; 0 otherwise
  answer_scope scope = answer_scope::host;
  outcome result = outcome::deny;  ///< allow or deny
  answer_lifetime lifetime = answer_lifetime::ttl;
  /// Wall-clock expiry (ttl); time_point::max() for `always`.
  std::chrono::system_clock::time_point expires = std::chrono::system_clock::time_point::max();
  std::chrono::system_clock::time_point answered_at{};
  std::string answered_by;  ///< "hook", "admin", "decisions_file", ...
  std::string reason;       ///< the answer's free text, may be empty

  friend bool operator==(const memory_entry&, const memory_entry&) = default;
};

class decision_memory {
 public:
  using clock = std::chrono::system_clock;

  /// Stores `e` (its lifetime must not be `once`), replacing an entry with the same
  /// name, port and scope. Returns false (and stores nothing) for a `once` entry, an
  /// empty name, an `ask` result, or a host_port entry with port 0.
  bool remember(memory_entry e);

  /// The entry that answers (host, port) at `now`, or nullptr. `host` is canonical.
  /// IP literals match host and host_port entries only.
  const memory_entry* lookup(std::string_view host, std::uint16_t port, clock::time_point now) const noexcept;

  /// Forgets every entry naming `name` (any scope and port). Returns how many.
  std::size_t forget(std::string_view name);
  /// Drops expired entries. Returns how many.
  std::size_t prune(clock::time_point now);

  /// Every entry (expired ones included until pruned), ordered by name, scope, port.
  std::vector<memory_entry> entries() const;
  /// The `always` entries, for decisions_file, ordered as entries().
  std::vector<memory_entry> persistent() const;
  std::size_t size() const noexcept { return by_key_.size(); }
  bool empty() const noexcept { return by_key_.empty(); }

 private:
  static std::string key_of(answer_scope scope, std::string_view name, std::uint16_t port);
  std::unordered_map<std::string, memory_entry> by_key_;
  /// Recomputes the two flags below after entries were removed.
  void note_scopes() noexcept;
  bool has_domain_entries_ = false;
  bool has_port_entries_ = false;
};

/// Whether the memory may answer after decide() gave `d`: only when no rule matched
/// (the `unknown` default decided), never over a rule or an invalid host.
constexpr bool memory_applies(const decision& d) noexcept {
  return d.reason == decision_reason::unknown_ask || d.reason == decision_reason::unknown_denied ||
         d.reason == decision_reason::report_only;
}

/// The decision a remembered entry gives: allow/deny with reason remembered_allow /
/// remembered_deny and no rule.
decision remembered_decision(const memory_entry& e) noexcept;

}  // namespace egressd::policy
