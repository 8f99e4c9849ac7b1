#pragma once
// The vocabulary of a policy decision: outcome, the closed set of reasons, and the
// rule that matched. Types only; decide() lives in snapshot.hpp.

#include <cstdint>
#include <limits>
#include <optional>
#include <ostream>
#include <string_view>

namespace egressd::policy {

struct host_result;

/// A value-initialised outcome denies.
enum class outcome : std::uint8_t { deny, allow, ask };

/// Why a destination was allowed or refused. A closed set: metric labels and audit
/// records use these names, so values are only ever added.
enum class decision_reason : std::uint8_t {
  no_decision,       ///< the zero value; denies
  invalid_host,      ///< the host (or port) is not acceptable at all
  denied_by_rule,    ///< a deny entry matched
  allowed_by_rule,   ///< an allow entry matched
  remembered_allow,  ///< an earlier hook answer, remembered
  remembered_deny,   ///< an earlier hook answer, remembered
  unknown_ask,       ///< no rule matched; the hook is asked
  unknown_denied,    ///< no rule matched; `unknown: deny`
  report_only,       ///< no rule matched; let through by `unknown: allow`, would be denied
  hook_allow,        ///< the hook said allow
  hook_deny,         ///< the hook said deny
  hook_timeout,      ///< the hook did not answer in time
  hook_failed,       ///< the hook crashed or answered nonsense
  hook_overloaded,   ///< too many questions were pending
  no_hook,           ///< `unknown: ask` but no hook is configured
  address_denied,    ///< every address the name resolved to was refused by the guard
  resolve_failed,    ///< the name did not resolve
  hook_crashed,      ///< the exec hook was killed by a signal, or its long-running program died
  hook_bad_answer,   ///< the hook's output or body is not a valid answer
  hook_not_found,    ///< the exec hook's program does not exist or cannot be executed
  hook_refused,      ///< the url hook refused the connection (or does not resolve)
  hook_http_error,   ///< the url hook answered a status other than 2xx
  hook_tls_error,    ///< the url hook's TLS handshake or certificate failed
  shutting_down,     ///< the proxy stopped while the request was held
};

std::string_view to_string(outcome o) noexcept;
std::string_view to_string(decision_reason r) noexcept;
std::ostream& operator<<(std::ostream& os, outcome o);
std::ostream& operator<<(std::ostream& os, decision_reason r);

/// Index of a rule in its snapshot (snapshot::rule()).
using rule_id = std::uint32_t;
inline constexpr rule_id no_rule = std::numeric_limits<rule_id>::max();

struct decision {
  outcome result = outcome::deny;
  decision_reason reason = decision_reason::no_decision;
  rule_id rule = no_rule;

  friend bool operator==(const decision&, const decision&) = default;
};

/// What decide() looks at. The session fills it from a parsed request.
struct request_facts {
  const host_result* host = nullptr;  ///< canonicalised by the caller; null or invalid → deny
  std::uint16_t port = 0;             ///< 0 is invalid
  std::optional<outcome> remembered;  ///< a remembered hook answer for (host, port), if any
};

}  // namespace egressd::policy
