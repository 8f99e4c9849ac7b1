#pragma once
// IP addresses and ranges as plain values: parsing (strict and URL-style loose
// IPv4), RFC 5952 formatting, the IPv4 an IPv6 address embeds, CIDR ranges.
// Pure: no sockets, no resolver.

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace egressd::policy {

/// An IPv4 or IPv6 address. IPv4 keeps its four bytes in `bytes[0..3]`, the rest zero.
struct ip_address {
  enum class family_t : std::uint8_t { v4, v6 };
  family_t family = family_t::v4;
  std::array<std::uint8_t, 16> bytes{};

  static ip_address from_v4(std::uint32_t host_order) noexcept;
  static ip_address from_v6(const std::array<std::uint8_t, 16>& b) noexcept;

  bool is_v4() const noexcept { return family == family_t::v4; }
  bool is_v6() const noexcept { return family == family_t::v6; }
  /// The IPv4 value in host order; precondition is_v4().
  std::uint32_t v4() const noexcept;
  /// Dotted quad, or RFC 5952 compressed lower-case IPv6 (no brackets).
  std::string to_string() const;

  friend auto operator<=>(const ip_address&, const ip_address&) = default;
};

/// Dotted quad only (`192.0.2.1`), four decimal octets without leading zeros.
std::optional<ip_address> parse_ipv4_strict(std::string_view text) noexcept;

/// What the URL standard's IPv4 parser says of a host (as sandbox-runtime uses it):
/// `not_ipv4` when the host does not end in a number (it is a name), `invalid` when it
/// looks like an IPv4 literal but is out of range (`256.1.1.1`, `0x100.0.0.1`).
enum class ipv4_parse_status : std::uint8_t { ok, not_ipv4, invalid };
struct loose_ipv4 {
  ipv4_parse_status status = ipv4_parse_status::not_ipv4;
  ip_address address;
};
/// Shorthand (`127.1`), hex (`0x7f.0.0.1`), octal (`0177.0.0.1`), a single 32-bit
/// number (`2130706433`). The caller has already dropped one trailing dot.
loose_ipv4 parse_ipv4_loose(std::string_view text) noexcept;

/// RFC 4291 §2.2 text forms, including an embedded dotted quad. No brackets, no zone id.
std::optional<ip_address> parse_ipv6(std::string_view text) noexcept;

/// Either family, strict forms, no brackets.
std::optional<ip_address> parse_ip(std::string_view text) noexcept;

/// `::ffff:a.b.c.d` becomes `a.b.c.d`; anything else is returned as it is.
ip_address unmap(const ip_address& a) noexcept;

/// The IPv4 address an IPv6 address carries, for the guard: IPv4-mapped (::ffff:0:0/96),
/// IPv4-translated (::ffff:0:0:0/96), IPv4-compatible (::/96), NAT64 well-known prefix
/// (64:ff9b::/96, RFC 6052), the local-use NAT64 prefix (64:ff9b:1::/48, RFC 8215; the
/// last 32 bits, as in its /96 form), 6to4 (2002::/16, RFC 3056) and Teredo (2001::/32,
/// RFC 4380: the client's address, the last 32 bits inverted). nullopt for IPv4 input
/// and for IPv6 outside those prefixes.
std::optional<ip_address> embedded_ipv4(const ip_address& a) noexcept;

/// The Teredo server's IPv4 address (bits 32..63 of 2001::/32, RFC 4380 §4), the second
/// IPv4 address a Teredo address carries; nullopt outside 2001::/32.
std::optional<ip_address> teredo_server(const ip_address& a) noexcept;

/// A CIDR range. `base` has its host bits cleared.
struct address_range {
  ip_address base;
  std::uint8_t prefix = 0;

  bool contains(const ip_address& a) const noexcept;
  std::string to_string() const;
  friend auto operator<=>(const address_range&, const address_range&) = default;
};

/// `a.b.c.d/n`, `v6/n`, or a single address (full-length prefix). An IPv4-mapped IPv6
/// range (`::ffff:10.0.0.1`, `::ffff:0:0/96`) becomes the IPv4 range it maps. No
/// brackets, no zone ids. nullopt when not a range.
std::optional<address_range> parse_address_range(std::string_view text) noexcept;

/// The range of exactly one address.
address_range single_address(const ip_address& a) noexcept;

/// Clears the bits of `a` beyond `prefix`.
ip_address mask(const ip_address& a, std::uint8_t prefix) noexcept;

}  // namespace egressd::policy
