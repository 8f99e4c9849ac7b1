#pragma once
// Canonical form of a requested host (README "Policy semantics"), as sandbox-runtime 0.0.78
// computes it, with the deliberate differences listed in README.md ("Differences from
// sandbox-runtime").

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "policy/address.hpp"

namespace egressd::policy {

enum class host_kind : std::uint8_t { name, ipv4, ipv6 };

/// A host that passed validation. `text` is what rules are matched against and what
/// is logged: lower-case name without a trailing dot, dotted-quad IPv4, or compressed
/// IPv6 without brackets.
struct canonical_host {
  std::string text;
  host_kind kind = host_kind::name;
  std::optional<ip_address> address;  ///< set for ipv4 and ipv6

  bool is_ip() const noexcept { return kind != host_kind::name; }
};

/// Why a host is not acceptable. Each maps to the reason `invalid_host`.
enum class host_errc : std::uint8_t {
  empty,           ///< nothing left after removing brackets and the trailing dot
  too_long,        ///< more than 253 characters
  bad_character,   ///< outside [A-Za-z0-9._-], e.g. space, NUL, '/', '@'
  non_ascii,       ///< IDNs must be given in punycode (xn--...)
  wildcard,        ///< '*' is a pattern character, never part of a host
  empty_label,     ///< ".example.com", "a..b" (sandbox-runtime accepts these; we do not)
  zone_id,         ///< "%" in an IPv6 literal (fe80::1%eth0)
  bad_ipv6,        ///< a ':' or brackets, but not a valid IPv6 address
};

std::string_view to_string(host_errc e) noexcept;
std::ostream& operator<<(std::ostream& os, host_errc e);

struct host_result {
  std::optional<canonical_host> host;
  host_errc error = host_errc::empty;  ///< meaningful only when !host

  bool ok() const noexcept { return host.has_value(); }
};

/// Canonicalise a host as a client sent it: the CONNECT authority's host, a SOCKS5
/// domain or address, an absolute-form URL's host. Brackets around an IPv6 literal are
/// accepted and removed; case is folded; one trailing dot is dropped; URL-style IPv4
/// shorthand (127.1, 0x7f.0.0.1, 0177.0.0.1, 2130706433) and IPv4-mapped IPv6 become
/// dotted quad. A host that looks numeric but is out of range (256.1.1.1) stays a name,
/// as in sandbox-runtime: it can only match a rule spelled the same way, and the guard
/// still judges what it resolves to.
host_result canonicalize_host(std::string_view raw);

}  // namespace egressd::policy
