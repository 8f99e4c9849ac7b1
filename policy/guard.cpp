#include "policy/guard.hpp"

#include <algorithm>
#include <array>

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

// Cloud metadata and host-agent endpoints, each with the provider document that names
// it. They are checked before link-local so that the refusal says what they are.
// IPv4, host order:
constexpr std::uint32_t v4_value(unsigned a, unsigned b, unsigned c, unsigned d) noexcept {
  return (a << 24) | (b << 16) | (c << 8) | d;
}
constexpr std::array<std::uint32_t, 9> metadata_v4{{
    // Instance metadata of AWS, Azure, GCP (metadata.google.internal), Oracle, DigitalOcean,
    // OpenStack, Hetzner, IBM and most others:
    // https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html
    // https://docs.openstack.org/nova/latest/admin/metadata-service.html
    // https://docs.digitalocean.com/products/droplets/how-to/access-metadata/
    // https://docs.cloud.oracle.com/iaas/Content/Compute/Tasks/gettingmetadata.htm
    // https://docs.hetzner.cloud/#server-metadata
    // https://cloud.ibm.com/apidocs/vpc-metadata (also api.metadata.cloud.ibm.com)
    v4_value(169, 254, 169, 254),
    // AWS: Amazon DNS server and Time Sync Service on link-local addresses
    // https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-instance-addressing.html#link-local-addresses
    v4_value(169, 254, 169, 253),
    v4_value(169, 254, 169, 123),
    // AWS ECS task metadata and credentials endpoint
    // https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v2.html
    v4_value(169, 254, 170, 2),
    // AWS EKS Pod Identity agent (credentials)
    // https://docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html
    v4_value(169, 254, 170, 23),
    // Tencent Cloud, metadata.tencentyun.com
    // https://intl.cloud.tencent.com/document/product/213/4934
    v4_value(169, 254, 0, 23),
    // Azure WireServer / host agent, DHCP and DNS: a public address, the same in every region
    // https://learn.microsoft.com/en-us/azure/virtual-network/what-is-ip-address-168-63-129-16
    v4_value(168, 63, 129, 16),
    // Alibaba Cloud ECS metadata
    // https://www.alibabacloud.com/help/en/ecs/user-guide/overview-of-ecs-instance-metadata
    v4_value(100, 100, 100, 200),
    // Oracle Compute Cloud@Customer instance metadata
    // https://docs.oracle.com/en/cloud/cloud-at-customer/occ-get-started/retrieve-predefined-instance-metadata.html
    v4_value(192, 0, 0, 192),
}};

bool is_metadata(const ip_address& a) noexcept {
  if (a.is_v4()) return std::find(metadata_v4.begin(), metadata_v4.end(), a.v4()) != metadata_v4.end();
  // OpenStack's IPv6 metadata address fe80::a9fe:a9fe (169.254.169.254 as the interface id)
  // https://docs.openstack.org/nova/latest/admin/metadata-service.html
  static constexpr std::array<std::uint8_t, 16> openstack{0xFE, 0x80, 0,    0,    0,    0,    0,    0,
                                                          0,    0,    0,    0,    0xA9, 0xFE, 0xA9, 0xFE};
  if (a.bytes == openstack) return true;
  if (!v6_prefix(a, {0xFC}, 7)) return false;
  // AWS IPv6 endpoints in fd00:ec2::/32: IMDS fd00:ec2::254, DNS ::253, Time Sync ::123,
  // EKS Pod Identity ::23
  // https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html
  // https://docs.aws.amazon.com/eks/latest/userguide/pod-id-agent-setup.html
  if (v6_prefix(a, {0xFD, 0x00, 0x0E, 0xC2}, 32)) return true;
  // ULA addresses that carry 169.254.169.254 (a9fe:a9fe) as two consecutive groups, as
  // some providers spell their IPv6 metadata address.
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
    if (is_metadata(a)) return address_class::metadata;
    if (in_v4(a, 0xA9FE0000, 16)) return address_class::link_local;
    if (in_v4(a, 0xE0000000, 4)) return address_class::multicast;
    if (a.v4() == 0xFFFFFFFF) return address_class::broadcast;
    if (in_v4(a, 0xF0000000, 4)) return address_class::reserved;
  } else {
    if (is_strict_loopback(a)) return address_class::loopback;
    if (a.bytes == std::array<std::uint8_t, 16>{}) return address_class::unspecified;
    if (is_metadata(a)) return address_class::metadata;
    if (v6_prefix(a, {0xFE, 0x80}, 10)) return address_class::link_local;
    if (v6_prefix(a, {0xFF}, 8)) return address_class::multicast;
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

address_verdict classify(const snapshot& policy, const canonical_host& host, decision_reason why,
                         const ip_address& address, std::uint16_t port,
                         std::span<const ip_address> local_addresses) noexcept {
  const ip_address a = unmap(address);
  // Every IPv4 address the IPv6 one carries is judged too (Teredo carries two).
  const std::optional<ip_address> embedded = embedded_ipv4(a);
  const std::optional<ip_address> server = teredo_server(a);
  const std::array<const ip_address*, 3> candidates{&a, embedded ? &*embedded : nullptr, server ? &*server : nullptr};

  // Explicit refusals first, for names and IP literals alike: a deny entry naming the
  // address (and port), then the configured ranges (guard.deny_ranges,
  // deniedResolvedAddresses). They win over an allow entry for a wider range.
  for (const ip_address* candidate : candidates) {
    if (!candidate) continue;
    if (auto r = policy.match_address(list_kind::deny, *candidate, port)) return {address_class::deny_listed, *r};
  }
  for (const ip_address* candidate : candidates) {
    if (!candidate) continue;
    if (auto r = policy.match_listed(*candidate)) return {address_class::listed, *r};
  }

  // An IP literal that a rule (or an answer) allowed is judged by the IP rules alone;
  // one let through by report-only mode gets the whole guard.
  if (host.is_ip() && why != decision_reason::report_only) return {};

  // `localhost` and `*.localhost` must stay on this host (RFC 6761 §6.3). They may reach
  // loopback only when they were allowed for themselves, by a rule or an answer, not
  // because report-only mode lets unknown names through.
  if (!host.is_ip() && (host.text == "localhost" || host.text.ends_with(".localhost"))) {
    if (!is_strict_loopback(a)) return {address_class::non_loopback, no_rule};
    if (why != decision_reason::report_only) return {};
  }

  // An explicit IP allow entry re-opens its range (for that port).
  if (auto r = policy.match_address(list_kind::allow, a, port)) return {address_class::none, *r};

  address_class c = builtin_class(a, policy.allow_private(), local_addresses);
  for (const ip_address* candidate : {candidates[1], candidates[2]}) {
    if (c == address_class::none && candidate) c = builtin_class(*candidate, policy.allow_private(), local_addresses);
  }
  return {c, no_rule};
}

}  // namespace egressd::policy
