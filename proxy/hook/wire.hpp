#pragma once
// The confirmation hook's wire format (README "Confirmation hook"): the question egressd
// asks and the answer it accepts, as JSON. Pure: no I/O, no clock, no globals; never
// throws for bad input (std::bad_alloc aside). Shared by every hook kind (exec, url)
// and by the admin API's POST /v1/decisions.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "policy/decision.hpp"
#include "policy/memory.hpp"

namespace egressd::proxy::hook {

/// One question: {id, host, port, protocol, client, listener, registrable_domain,
/// first_seen}. `first_seen` is RFC 3339 UTC with milliseconds.
struct question {
  std::uint64_t id = 0;
  std::string host;  ///< canonical
  std::uint16_t port = 0;
  std::string protocol;  ///< "connect", "http", "socks5" (access_protocol's names)
  std::string client;    ///< the first client's address ("127.0.0.1:50312", "unix")
  std::string listener;  ///< the listener it came in on ("127.0.0.1:3128")
  std::string registrable_domain;  ///< empty for IP literals and single labels
  std::chrono::system_clock::time_point first_seen{};
};

/// The question as one line of JSON (no newline), every string escaped.
std::string to_json(const question& q);

/// An answer: {decision: allow|deny, remember: once|ttl|always, ttl_seconds,
/// scope: host|host_port|domain, reason}. Only `decision` is required; `remember`
/// defaults to once, `scope` to host; `ttl_seconds` (an integer >= 1) counts for
/// remember: ttl only, and when absent there the configured hook.ttl applies (ttl 0);
/// an optional member that is null counts as absent. An `id` member is returned for a long-running exec hook, which
/// answers questions by id. Unknown members are ignored (forward compatible).
struct answer {
  policy::outcome decision = policy::outcome::deny;  ///< allow or deny
  policy::answer_lifetime remember = policy::answer_lifetime::once;
  std::chrono::seconds ttl{0};  ///< with remember: ttl; 0 = the configured default
  policy::answer_scope scope = policy::answer_scope::host;
  std::string reason;                ///< free text, at most 200 bytes kept
  std::optional<std::uint64_t> id;   ///< the question's id, when the answer names one
};

struct answer_result {
  std::optional<answer> value;
  std::string error;  ///< why not, when !value ("not JSON: ...", "decision must be allow or deny")
};

/// Parses one answer (JSON text; surrounding whitespace allowed). Also used for the
/// body of POST /v1/decisions, whose extra members (host, port, id) the caller reads.
answer_result parse_answer(std::string_view text);

/// RFC 3339 UTC with milliseconds: 2026-12-03T18:00:00.123Z.
std::string rfc3339(std::chrono::system_clock::time_point t);

}  // namespace egressd::proxy::hook
