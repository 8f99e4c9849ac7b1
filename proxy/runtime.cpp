#include "proxy/runtime.hpp"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <cstring>

namespace egressd::proxy {

dns_options dns_options_for(const config::dns_config& dns) {
  dns_options o;
  o.servers = dns.servers;
  o.timeout = dns.timeout;
  o.max_ttl = dns.max_ttl;
  o.negative_ttl = dns.negative_ttl;
  o.hosts_file = dns.hosts_file;
  return o;
}

std::vector<policy::ip_address> interface_addresses() {
  std::vector<policy::ip_address> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    if (i->ifa_addr->sa_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      out.push_back(policy::ip_address::from_v4(ntohl(sin->sin_addr.s_addr)));
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      std::array<std::uint8_t, 16> bytes;
      std::memcpy(bytes.data(), sin6->sin6_addr.s6_addr, 16);
      out.push_back(policy::ip_address::from_v6(bytes));
    }
  }
  ::freeifaddrs(list);
  return out;
}

}  // namespace egressd::proxy
