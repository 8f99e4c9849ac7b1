#pragma once
// Socket addresses as written in the configuration: `host:port`, `[v6]:port`,
// `unix:/abs/path`. Pure: nothing is resolved or bound here.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace egressd::config {

/// Where a listener or the admin server binds.
/// Invariants after parse_endpoint: for `tcp`, `host` is a canonical IP literal
/// (dotted quad, or RFC 5952 IPv6 without brackets) or a lower-case host name, and
/// `path` is empty; for `unix_socket`, `path` is absolute and at most 107 bytes
/// (sockaddr_un::sun_path less its NUL), and `host` is empty with `port` 0.
struct endpoint {
  enum class kind_t : std::uint8_t { tcp, unix_socket };
  kind_t kind = kind_t::tcp;
  /// IP literal or name, unbracketed (`127.0.0.1`, `::1`, `localhost`).
  std::string host;
  /// 0 lets the operating system choose (tests bind port 0).
  std::uint16_t port = 0;
  /// Socket file for `unix_socket`.
  std::string path;

  /// "127.0.0.1:3128", "[::1]:3128", "localhost:3128", "unix:/run/x.sock";
  /// parse_endpoint reads it back to an equal endpoint.
  std::string to_string() const;

  friend bool operator==(const endpoint&, const endpoint&) = default;
};

/// The outcome of parse_endpoint: `value` on success, otherwise `error` and a
/// `hint` (may be empty).
struct endpoint_result {
  std::optional<endpoint> value;
  std::string error;
  std::string hint;
};

/// Parses `host:port`, `[v6]:port` or `unix:/abs/path`. The port is required for
/// TCP (0..65535, decimal). The host is an IPv4 dotted quad, a bracketed IPv6
/// literal without zone id, or a DNS name (letters, digits, `-`, `_`, labels of
/// 1..63 bytes, 253 in all; a name whose last label is numeric must be an IPv4
/// literal). Never throws.
endpoint_result parse_endpoint(std::string_view text);

}  // namespace egressd::config
