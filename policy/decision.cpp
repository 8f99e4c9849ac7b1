#include "policy/decision.hpp"

namespace egressd::policy {

std::string_view to_string(outcome o) noexcept {
  switch (o) {
    case outcome::deny: return "deny";
    case outcome::allow: return "allow";
    case outcome::ask: return "ask";
  }
  return "deny";
}

std::string_view to_string(decision_reason r) noexcept {
  switch (r) {
    case decision_reason::no_decision: return "no_decision";
    case decision_reason::invalid_host: return "invalid_host";
    case decision_reason::denied_by_rule: return "denied_by_rule";
    case decision_reason::allowed_by_rule: return "allowed_by_rule";
    case decision_reason::remembered_allow: return "remembered_allow";
    case decision_reason::remembered_deny: return "remembered_deny";
    case decision_reason::unknown_ask: return "unknown_ask";
    case decision_reason::unknown_denied: return "unknown_denied";
    case decision_reason::report_only: return "report_only";
    case decision_reason::hook_allow: return "hook_allow";
    case decision_reason::hook_deny: return "hook_deny";
    case decision_reason::hook_timeout: return "hook_timeout";
    case decision_reason::hook_failed: return "hook_failed";
    case decision_reason::hook_overloaded: return "hook_overloaded";
    case decision_reason::no_hook: return "no_hook";
    case decision_reason::address_denied: return "address_denied";
    case decision_reason::resolve_failed: return "resolve_failed";
    case decision_reason::hook_crashed: return "hook_crashed";
    case decision_reason::hook_bad_answer: return "hook_bad_answer";
    case decision_reason::hook_not_found: return "hook_not_found";
    case decision_reason::hook_refused: return "hook_refused";
    case decision_reason::hook_http_error: return "hook_http_error";
    case decision_reason::hook_tls_error: return "hook_tls_error";
    case decision_reason::shutting_down: return "shutting_down";
  }
  return "no_decision";
}

std::ostream& operator<<(std::ostream& os, outcome o) { return os << to_string(o); }
std::ostream& operator<<(std::ostream& os, decision_reason r) { return os << to_string(r); }

}  // namespace egressd::policy
