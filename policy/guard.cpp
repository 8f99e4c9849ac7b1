#include "policy/guard.hpp"

#include <algorithm>

#include "policy/host.hpp"
#include "policy/snapshot.hpp"

namespace egressd::policy {

std::string_view describe(address_class c) noexcept {
  switch (c) {
    case address_class::none: return "an allowed address";
    case address_class::deny_listed: return "a deny-listed address";
    case address_class::listed: return "a listed address";
    case address_class::non_loopback: return "a non-loopback address";
    case address_class::loopback: return "a loopback address";
    case address_class::unspecified: return "an unspecified address";
    case address_class::link_local: return "a link-local address";
    case address_class::multicast: return "a multicast address";
    case address_class::broadcast: return "a broadcast address";
    case address_class::metadata: return "a cloud metadata address";
    case address_class::reserved: return "a reserved address";
    case address_class::own_address: return "one of this host's addresses";
    case address_class::private_network: return "a private (RFC 1918) address";
    case address_class::shared_address: return "a shared (CGNAT 100.64.0.0/10) address";
    case address_class::unique_local: return "a unique local IPv6 address";
  }
  return "a refused address";
}

std::string_view to_string(address_class c) noexcept {
  switch (c) {
    case address_class::none: return "none";
    case address_class::deny_listed: return "deny_listed";
    case address_class::listed: return "listed";
    case address_class::non_loopback: return "non_loopback";
    case address_class::loopback: return "loopback";
    case address_class::unspecified: return "unspecified";
    case address_class::link_local: return "link_local";
    case address_class::multicast: return "multicast";
    case address_class::broadcast: return "broadcast";
    case address_class::metadata: return "metadata";
    case address_class::reserved: return "reserved";
    case address_class::own_address: return "own_address";
    case address_class::private_network: return "private_network";
    case address_class::shared_address: return "shared_address";
    case address_class::unique_local: return "unique_local";
  }
  return "refused";
}

std::ostream& operator<<(std::ostream& os, address_class c) { return os << to_string(c); }

namespace {

bool in_v4(const ip_address& a, std::uint32_t base, unsigned prefix) noexcept {
  if (!a.is_v4()) return false;
  const std::uint32_t m = prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
  return (a.v4() & m) == base;
}

bool v6_prefix(const ip_address& a, std::initializer_list<std::uint8_t> head, unsigned bits) noexcept {
  if (!a.is_v6()) return false;
  std::array<std::uint8_t, 16> want{};
  std::copy(head.begin(), head.end(), want.begin());
  return mask(a, static_cast<std::uint8_t>(bits)) == mask(ip_address::from_v6(want), static_cast<std::uint8_t>(bits));
}

bool is_strict_loopback(const ip_address& a) noexcept {
  if (a.is_v4()) return in_v4(a, 0x7F000000, 8);
  std::array<std::uint8_t, 16> one{};
  one[15] = 1;
  return a.bytes == one;
}

// Cloud metadata endpoints that are not already link-local (169.254.169.254 and
// 169.254.170.2 are): Alibaba 100.100.100.200, Oracle 192.0.0.192, the AWS IPv6
// endpoints in fd00:ec2::/32, and ULA addresses that carry 169.254.169.254 (a9fe:a9fe)
// as two consecutive groups, as some providers spell their IPv6 metadata address.
bool is_metadata(const ip_address& a) noexcept {
  if (a.is_v4()) return a.v4() == 0x646464C8 || a.v4() == 0xC00000C0;
  if (!v6_prefix(a, {0xFC}, 7)) return false;
  if (v6_prefix(a, {0xFD, 0x00, 0x0E, 0xC2}, 32)) return true;
  for (std::size_t i = 0; i + 3 < 16; i += 2) {
    if (a.bytes[i] == 0xA9 && a.bytes[i + 1] == 0xFE && a.bytes[i + 2] == 0xA9 && a.bytes[i + 3] == 0xFE) return true;
  }
  return false;
}

}  // namespace

address_class builtin_class(const ip_address& address, bool allow_private,
                            std::span<const ip_address> local_addresses) noexcept {
  const ip_address& a = address;
  if (a.is_v4()) {
    if (in_v4(a, 0x7F000000, 8)) return address_class::loopback;
    if (in_v4(a, 0x00000000, 8)) return address_class::unspecified;
    if (in_v4(a, 0xA9FE0000, 16)) return address_class::link_local;
    if (in_v4(a, 0xE0000000, 4)) return address_class::multicast;
    if (a.v4() == 0xFFFFFFFF) return address_class::broadcast;
    if (is_metadata(a)) return address_class::metadata;
    if (in_v4(a, 0xF0000000, 4)) return address_class::reserved;
  } else {
    if (is_strict_loopback(a)) return address_class::loopback;
    if (a.bytes == std::array<std::uint8_t, 16>{}) return address_class::unspecified;
    if (v6_prefix(a, {0xFE, 0x80}, 10)) return address_class::link_local;
    if (v6_prefix(a, {0xFF}, 8)) return address_class::multicast;
    if (is_metadata(a)) return address_class::metadata;
    if (v6_prefix(a, {0xFE, 0xC0}, 10)) return address_class::reserved;
  }
  if (std::find(local_addresses.begin(), local_addresses.end(), a) != local_addresses.end())
    return address_class::own_address;
  if (!allow_private) {
    if (in_v4(a, 0x0A000000, 8) || in_v4(a, 0xAC100000, 12) || in_v4(a, 0xC0A80000, 16))
      return address_class::private_network;
    if (in_v4(a, 0x64400000, 10)) return address_class::shared_address;
    if (v6_prefix(a, {0xFC}, 7)) return address_class::unique_local;
  }
  return address_class::none;
}

address_verdict classify(const snapshot& policy, const canonical_host& host, const ip_address& address,
                         std::uint16_t port, std::span<const ip_address> local_addresses) noexcept {
  const ip_address a = unmap(address);
  const std::optional<ip_address> embedded = embedded_ipv4(a);

  // Explicit refusals first: a deny entry naming the address (and port), then the
  // configured ranges; both also judge the IPv4 address an IPv6 one carries.
  for (const ip_address* candidate : {&a, embedded ? &*embedded : nullptr}) {
    if (!candidate) continue;
    if (auto r = policy.match_address(list_kind::deny, *candidate, port)) return {address_class::deny_listed, *r};
  }
  for (const ip_address* candidate : {&a, embedded ? &*embedded : nullptr}) {
    if (!candidate) continue;
    if (auto r = policy.match_listed(*candidate)) return {address_class::listed, *r};
  }

  // `localhost` and `*.localhost` must stay on this host (RFC 6761 §6.3), and may.
  if (!host.is_ip() && (host.text == "localhost" || host.text.ends_with(".localhost"))) {
    return is_strict_loopback(a) ? address_verdict{} : address_verdict{address_class::non_loopback, no_rule};
  }

  // An explicit IP allow entry re-opens its range (for that port).
  if (auto r = policy.match_address(list_kind::allow, a, port)) return {address_class::none, *r};

  address_class c = builtin_class(a, policy.allow_private(), local_addresses);
  if (c == address_class::none && embedded) c = builtin_class(*embedded, policy.allow_private(), local_addresses);
  return {c, no_rule};
}

}  // namespace egressd::policy
