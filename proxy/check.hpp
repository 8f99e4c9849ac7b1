#pragma once
// `egressd check`: what the policy says of one destination, for people and scripts.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "policy/snapshot.hpp"
#include "proxy/dns.hpp"

namespace egressd::proxy {

struct check_target {
  std::string host;  ///< as given, brackets removed
  std::uint16_t port = 443;
};

/// HOST, HOST:PORT, [V6], [V6]:PORT, or a bare IPv6 literal (no port). nullopt when
/// the port is not 1-65535.
std::optional<check_target> parse_check_target(std::string_view text);

struct check_report {
  std::string host;  ///< canonical, or as given when invalid
  std::uint16_t port = 0;
  policy::decision decision;
  std::string rule;        ///< empty when none
  std::string rule_origin; ///< "file:line", "@preset (file:line)"
  std::string detail;      ///< why the host is invalid, when it is
  struct address_line {
    std::string address;
    std::string verdict;  ///< "allow" or the refused class
  };
  std::vector<address_line> addresses;  ///< with --resolve
  bool resolved = false;
  std::string resolve_error;
};

/// Decides `target` as the daemon would; with `resolve`, also resolves the name with
/// the daemon's own resolver (same servers, hosts file, no search domains) and judges
/// every address as the guard would.
check_report check_destination(const policy::snapshot& policy, const check_target& target,
                               const dns_options* resolve);

/// `{"host":...,"port":...,"decision":...,"rule":...|null,"reason":...}` (+ "addresses" with --resolve)
std::string to_json(const check_report& r);
std::string to_text(const check_report& r);

}  // namespace egressd::proxy
