#pragma once
// A small blocking HTTP/1.1 client for the admin endpoint (Beast), used by the CLI
// commands that talk to a running daemon (`egressd pending`, `allow`, `deny`,
// `decisions`). One request per connection, with a deadline; JSON bodies.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "config/endpoint.hpp"

namespace egressd::proxy {

struct admin_response {
  unsigned status = 0;
  std::string body;
};

struct admin_call_result {
  std::optional<admin_response> value;
  /// Why there is no response: "connection refused", "timed out after 10s", ...
  std::string error;
  /// Nothing answered at the address (refused, unreachable, no such name, timeout
  /// connecting): the daemon is probably not running there.
  bool unreachable = false;
};

/// Sends `method target` to the admin endpoint at `address` (a tcp endpoint; a
/// wildcard host is reached on loopback) with `Host` naming it, `Content-Type:
/// application/json` and `body` when the method is POST or DELETE, and `Authorization:
/// Bearer token` when `token` is not empty. Blocks up to `timeout` in all. Never throws
/// for network errors.
admin_call_result call_admin(const config::endpoint& address, std::string_view method, std::string_view target,
                             std::string_view body, std::string_view token,
                             std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace egressd::proxy
