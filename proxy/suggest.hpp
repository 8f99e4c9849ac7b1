#pragma once
// `egressd suggest`: turns audit logs into a proposed allowlist (README "Logs and access records").
// Pure: lines in, counts and patterns out; the command (proxy/main.cpp) reads the
// files. No I/O, no clocks, no globals.
//
// Counted: `request` records whose destination was denied or would have been for
// want of a rule: reason `unknown_denied` or `no_hook` (deny), or `report_only` (let
// through by `unknown: allow`). Not counted: destinations a rule denied
// (`denied_by_rule`), the address guard refused (`address_denied`), a hook answered,
// or that were invalid; `tunnel_closed` records (they repeat their request's record).
//
// Collapse rules:
//   * IP literals stay as they are (`192.0.2.7`, `[2001:db8::1]`).
//   * The subdomains of one registrable domain (libpsl) become `*.domain` when at
//     least two distinct ones were seen; the apex, when seen, stays an entry of its
//     own (`*.domain` does not match it). One subdomain stays exact.
//   * An entry gets `:PORT` when every request it covers used that one port and it is
//     not 443; otherwise it has no port (any port), and its comment lists the ports.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace egressd::proxy::suggest {

/// What the reader saw.
struct line_counts {
  std::uint64_t lines = 0;          ///< non-empty lines read
  std::uint64_t not_json = 0;       ///< not a JSON object (text logs, torn lines)
  std::uint64_t not_request = 0;    ///< JSON, but no `"event":"request"` record
  std::uint64_t requests = 0;       ///< request records
  std::uint64_t counted = 0;        ///< request records counted (see above)
  std::uint64_t bad_destination = 0;  ///< counted reasons but no usable host and port
};

/// One proposed allowlist entry.
struct entry {
  std::string pattern;               ///< as it goes into policy.allow
  std::uint64_t requests = 0;        ///< requests it covers
  std::vector<std::uint16_t> ports;  ///< ports seen, ascending
  std::vector<std::string> hosts;    ///< hosts it covers, sorted (one for an exact entry)
};

/// host → port → requests.
using destinations = std::map<std::string, std::map<std::uint16_t, std::uint64_t>>;

/// Reads audit lines one by one.
class collector {
 public:
  /// One line (without its newline). Never throws for bad input.
  void add_line(std::string_view line);
  const line_counts& counts() const noexcept { return counts_; }
  const destinations& seen() const noexcept { return seen_; }

 private:
  line_counts counts_;
  destinations seen_;
};

/// The collapsed entries, most requests first (then by pattern). Every pattern is
/// valid in policy.allow (egressd's grammar and sandbox-runtime's).
std::vector<entry> collapse(const destinations& seen);

/// YAML ready to paste: a comment saying what was counted, then
/// `policy:\n  allow:\n    - "pattern"  # N requests, ports P`.
std::string to_yaml(const std::vector<entry>& entries, const line_counts& counts);

/// sandbox-runtime settings: `{"network": {"allowedDomains": [...]}}`.
std::string to_settings_json(const std::vector<entry>& entries);

/// One line for stderr: lines read, skipped (not JSON, not a request), counted.
std::string summary(const line_counts& counts, std::size_t entries);

}  // namespace egressd::proxy::suggest
