#pragma once
// The address guard (README "Policy semantics"): after a name is allowed, every address it
// resolves to is classified, and only addresses that pass may be dialled.

#include <cstdint>
#include <ostream>
#include <span>
#include <string_view>

#include "policy/address.hpp"
#include "policy/decision.hpp"

namespace egressd::policy {

class snapshot;
struct canonical_host;

/// Why an address is refused; `none` means it may be dialled.
enum class address_class : std::uint8_t {
  none,
  deny_listed,      ///< a deny entry names the address (and port)
  listed,           ///< in `guard.deny_ranges` / deniedResolvedAddresses
  non_loopback,     ///< `localhost` / `*.localhost` resolved somewhere else
  loopback,         ///< 127.0.0.0/8, ::1
  unspecified,      ///< 0.0.0.0/8, ::
  link_local,       ///< 169.254.0.0/16, fe80::/10
  multicast,        ///< 224.0.0.0/4, ff00::/8
  broadcast,        ///< 255.255.255.255
  metadata,         ///< cloud metadata endpoints outside link-local
  reserved,         ///< 240.0.0.0/4, fec0::/10
  own_address,      ///< one of this host's interface addresses
  private_network,  ///< RFC 1918
  shared_address,   ///< CGNAT 100.64.0.0/10 (RFC 6598)
  unique_local,     ///< IPv6 ULA fc00::/7
};

/// "a loopback address", "one of this host's addresses", ... (as sandbox-runtime words it).
std::string_view describe(address_class c) noexcept;
/// "loopback", "own_address", ... (metric and audit label).
std::string_view to_string(address_class c) noexcept;
std::ostream& operator<<(std::ostream& os, address_class c);

struct address_verdict {
  address_class refused = address_class::none;
  rule_id rule = no_rule;  ///< the deny rule (deny_listed, listed) or the allow rule that re-opened the address
  bool allowed() const noexcept { return refused == address_class::none; }
};

/// Judge one address for `host` (the name or IP literal that was asked for) and `port`.
/// `why` is the reason decide() (or the hook) allowed the host: deny entries naming
/// addresses and `guard.deny_ranges` refuse always, IP literals included; an IP literal
/// allowed by a rule or an answer is otherwise judged by the IP rules alone, and one let
/// through by report-only mode (`report_only`) by the whole guard; `localhost` may
/// reach loopback only when it was not merely let through by report-only mode.
/// `local_addresses` are this host's interface addresses. Thread-safe and pure.
address_verdict classify(const snapshot& policy, const canonical_host& host, decision_reason why,
                         const ip_address& address, std::uint16_t port,
                         std::span<const ip_address> local_addresses) noexcept;

/// The built-in class of an address alone, ignoring rules (allow_private re-opens
/// the private classes).
address_class builtin_class(const ip_address& address, bool allow_private,
                            std::span<const ip_address> local_addresses) noexcept;

}  // namespace egressd::policy
