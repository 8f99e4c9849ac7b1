#pragma once
// The schema of egressd's configuration as key lists: the keys each YAML mapping
// accepts, and the keys of a settings file's `network` object. config/load.cpp
// rejects (YAML) or warns about (settings) every key not listed here, and
// tests/unit/config_reference_test.cpp checks README "Configuration reference"
// against the same lists, so the loader and the reference cannot disagree.
// Pure data: no yaml-cpp, no I/O.

#include <array>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace egressd::config::keys {

inline constexpr std::array<std::string_view, 14> top = {"version", "listeners", "admin", "policy", "hook",
                                                         "decisions_file", "limits", "dns", "metrics", "log",
                                                         "auth", "workers", "busy_poll_us", "reload"};
inline constexpr std::array<std::string_view, 4> listener = {"address", "protocols", "mode", "group"};
inline constexpr std::array<std::string_view, 2> admin = {"address", "token_file"};
inline constexpr std::array<std::string_view, 4> policy = {"allow", "deny", "unknown", "guard"};
inline constexpr std::array<std::string_view, 2> guard = {"deny_ranges", "allow_private"};
inline constexpr std::array<std::string_view, 12> hook = {"exec",        "persistent",  "url",     "ca_file",
                                                          "token_file",  "console",     "timeout", "on_timeout",
                                                          "max_pending", "concurrency", "ttl",     "deny_ttl"};
inline constexpr std::array<std::string_view, 10> limits = {"max_connections",          "head_timeout",
                                                            "connect_timeout",          "idle_timeout",
                                                            "max_head_bytes",           "max_headers",
                                                            "drain_timeout",            "upstream_idle_per_origin",
                                                            "upstream_idle_max",        "upstream_idle_timeout"};
inline constexpr std::array<std::string_view, 5> dns = {"servers", "timeout", "max_ttl", "negative_ttl",
                                                        "hosts_file"};
inline constexpr std::array<std::string_view, 1> metrics = {"max_domains"};
inline constexpr std::array<std::string_view, 5> log = {"format", "level", "audit", "audit_max_size",
                                                        "audit_max_files"};
inline constexpr std::array<std::string_view, 1> auth = {"users"};
inline constexpr std::array<std::string_view, 2> reload = {"watch", "revoke"};
inline constexpr std::array<std::string_view, 2> user = {"username", "password"};

/// A mapping below the top level and its keys. `name` is its path, `[]` marking the
/// entries of a list (`listeners[]`, `auth.users[]`).
struct section {
  std::string_view name;
  std::span<const std::string_view> keys;
};
inline constexpr std::array<section, 12> sections{{{"listeners[]", listener},
                                                   {"admin", admin},
                                                   {"policy", policy},
                                                   {"policy.guard", guard},
                                                   {"hook", hook},
                                                   {"limits", limits},
                                                   {"dns", dns},
                                                   {"metrics", metrics},
                                                   {"log", log},
                                                   {"auth", auth},
                                                   {"auth.users[]", user},
                                                   {"reload", reload}}};

/// The full path of every key that holds a value rather than one of `sections`
/// (`listeners[].address`, `policy.guard.deny_ranges`, `workers`), in schema order:
/// the keys README "Configuration reference" documents, one row each.
std::vector<std::string> value_paths();

/// A settings file's `network` object (sandbox-runtime's schema), under
/// `sandbox.network` (Claude Code) or `network` (sandbox-runtime).
namespace settings {
/// What egressd reads.
inline constexpr std::array<std::string_view, 6> read = {"allowedDomains",          "deniedDomains",
                                                         "deniedResolvedAddresses", "strictAllowlist",
                                                         "httpProxyPort",           "socksProxyPort"};
/// Every key sandbox-runtime knows: those not in `read` are the sandbox's own business
/// and ignored without a warning; any other key is warned about.
inline constexpr std::array<std::string_view, 10> known = {"allowedDomains",          "deniedDomains",
                                                           "deniedResolvedAddresses", "strictAllowlist",
                                                           "httpProxyPort",           "socksProxyPort",
                                                           "allowUnixSockets",        "allowAllUnixSockets",
                                                           "allowLocalBinding",       "mitmProxy"};
}  // namespace settings

}  // namespace egressd::config::keys
