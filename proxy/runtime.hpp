#pragma once
// What the workers share: the configuration and policy snapshots (swapped atomically
// on reload; a session loads each once and keeps it), this host's addresses for the
// guard, the DNS cache, and a few counters. Everything here is thread-safe.

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "config/config.hpp"
#include "policy/address.hpp"
#include "policy/snapshot.hpp"
#include "proxy/dns.hpp"

namespace egressd::proxy {

struct runtime {
  std::atomic<std::shared_ptr<const config::config>> config;
  std::atomic<std::shared_ptr<const policy::snapshot>> policy;
  std::atomic<std::shared_ptr<const std::vector<policy::ip_address>>> local_addresses;
  dns_cache dns;

  std::atomic<std::uint64_t> next_connection_id{1};
  std::atomic<std::size_t> active_connections{0};
  /// limits.max_connections of the current config, for the accept path.
  std::atomic<std::size_t> max_connections{0};
  std::atomic<bool> draining{false};
};

/// The resolver's options as the `dns:` section sets them (the daemon's workers and
/// `check --resolve` resolve alike).
dns_options dns_options_for(const config::dns_config& dns);

/// This host's interface addresses (getifaddrs), for the guard's own_address class.
std::vector<policy::ip_address> interface_addresses();

}  // namespace egressd::proxy
