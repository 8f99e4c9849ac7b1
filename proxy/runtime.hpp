#pragma once
// What the workers share: the current reload generation (configuration, policy
// snapshot and this host's addresses for the guard, swapped atomically as one), the
// DNS cache, and a few counters. Everything here is thread-safe.

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "config/config.hpp"
#include "policy/address.hpp"
#include "policy/snapshot.hpp"
#include "proxy/dns.hpp"
#include "proxy/hook/coordinator.hpp"
#include "proxy/metrics.hpp"

namespace egressd::proxy {

/// One reload generation: a config, the policy compiled from it, and this host's
/// interface addresses as they were at that reload. Immutable once published.
struct generation {
  std::shared_ptr<const config::config> config;
  std::shared_ptr<const policy::snapshot> policy;
  std::shared_ptr<const std::vector<policy::ip_address>> local_addresses;
};

struct runtime {
  /// The current generation. One atomic pointer for all three, so a reader can never
  /// pair the config of one reload with the policy of another (two atomics stored one
  /// after the other would let a load fall between the two stores).
  std::atomic<std::shared_ptr<const generation>> current;
  dns_cache dns;

  /// Bumped after each store to `current`. Workers compare it (a load of a line written
  /// once per reload) to learn that the generation they pinned is no longer the newest,
  /// so no session touches `current` itself or a reference count all workers share.
  std::atomic<std::uint64_t> generation_number{0};
  std::atomic<std::size_t> active_connections{0};
  /// limits.max_connections of the current config, for the accept path.
  std::atomic<std::size_t> max_connections{0};
  std::atomic<bool> draining{false};
  /// Every metric (README "Metrics"); workers reach domain handles through their cache.
  metrics stats;
  /// The confirmation hook and the decision memory (README "Confirmation hook").
  hook::coordinator hooks{stats};
};

/// The resolver's options as the `dns:` section sets them (the daemon's workers and
/// `check --resolve` resolve alike).
dns_options dns_options_for(const config::dns_config& dns);

/// This host's interface addresses (getifaddrs), for the guard's own_address class.
std::vector<policy::ip_address> interface_addresses();

}  // namespace egressd::proxy
