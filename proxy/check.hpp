#pragma once
// `egressd check`: what the policy says of one destination, for people and scripts.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "policy/guard.hpp"
#include "policy/memory.hpp"
#include "policy/snapshot.hpp"
#include "proxy/dns.hpp"

namespace egressd::proxy {

struct check_target {
  std::string host;  ///< as given, brackets removed
  std::uint16_t port = 443;
};

/// HOST, HOST:PORT, [V6], [V6]:PORT, a bare IPv6 literal (no port), or an http(s) URL
/// (`https://host/path`, `http://host:8080/x`; the scheme's port, 80 or 443, when none
/// is given; userinfo dropped). Anything else (a port outside 1-65535, another scheme
/// such as socks5://) is an error with its reason.
struct check_target_result {
  std::optional<check_target> target;
  std::string error;  ///< why, when !target
};
check_target_result parse_check_target(std::string_view text);

struct check_report {
  std::string host;  ///< canonical, or as given when invalid
  std::uint16_t port = 0;
  policy::decision policy_decision;  ///< what decide() said (rule and reason)
  policy::decision decision;         ///< the final answer: the proxy's, after the guard
  std::string rule;                  ///< empty when none; `remembered allow **.npmjs.org` for a remembered answer
  std::string rule_origin;           ///< "file:line path", "@preset (file:line path)"
  std::string rule_file, rule_path, rule_preset;
  int rule_line = 0;
  std::string detail;  ///< why the host is invalid, when it is
  struct address_line {
    std::string address;
    std::string verdict;  ///< "allow" or the refused class
  };
  std::vector<address_line> addresses;  ///< with --resolve
  bool resolved = false;
  std::string resolve_error;
  policy::address_class refused_class = policy::address_class::none;  ///< when the guard refused
  std::string refused_address;
  /// The remembered answer that decided (no rule matched), if one did.
  std::optional<policy::memory_entry> remembered;
};

/// The remembered answers `check` consults: the `always` answers of the config's
/// decisions_file (what a running egressd remembers for `ttl` lives in its memory
/// only; `egressd decisions` lists it).
struct remembered_answers {
  std::string file;
  std::vector<policy::memory_entry> entries;    ///< as loaded
  std::vector<policy::source_location> where;  ///< where each entry was written
  policy::decision_memory memory;
};

/// Loads `c.decisions_file` (nothing when the config has none). Errors come back as
/// printable lines in `problems` (a corrupt file: see config/decisions_file.hpp).
std::optional<remembered_answers> load_remembered(const config::config& c, std::vector<std::string>& problems);

/// How a remembered entry is shown as the rule that decided: `remembered allow
/// api.example.com`, `remembered deny api.example.com:443` (`[v6]:443`), and for a
/// domain the pattern that covers the same names, `remembered allow **.npmjs.org`.
std::string remembered_rule_text(const policy::memory_entry& e);

/// The exit status of `egressd check`: 0 allow, 1 deny, 3 ask.
int exit_status(const check_report& r) noexcept;

/// Decides `target` as the daemon would and gives its final answer: an IP literal is
/// judged by the address guard as the proxy judges it; with `resolve`, a name is resolved
/// with the daemon's own resolver (same servers, hosts file, no search domains) and every
/// address judged, so an allowed name whose every address is refused is a deny with
/// reason address_denied (or resolve_failed), as the proxy answers.
/// With `remembered`, an answer remembered for the destination decides when no rule
/// matched (configured rules always win), reported as the rule that decided
/// (remembered_rule_text(), the decisions file and the entry's line and path).
check_report check_destination(const policy::snapshot& policy, const check_target& target,
                               const dns_options* resolve, const remembered_answers* remembered = nullptr);

/// One object: {"host","port","decision","reason","rule" (text or null),"rule_file",
/// "rule_line","rule_path","preset" (null when none), and when the guard or the resolver
/// changed the policy's answer "policy_decision","policy_reason" (+ "address_class",
/// "refused_address"); with --resolve "addresses":[{"address","verdict"}] and
/// "resolve_error" when the lookup failed; when a remembered answer decided
/// "remembered":{"scope","answered_by","answered_at" (RFC 3339),"reason"}}.
std::string to_json(const check_report& r);
std::string to_text(const check_report& r);

}  // namespace egressd::proxy
