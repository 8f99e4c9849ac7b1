#pragma once
// SOCKS5 (RFC 1928) and its username/password sub-negotiation (RFC 1929): one pure
// parser per client message and encoders for the server's replies. Bytes are passed
// as std::string_view (each char one octet). See socks5.cpp for the flow.

#include "proxy/protocol/parse_result.hpp"

#include <array>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace egressd::proxy::protocol {

/// METHOD values of RFC 1928 §3 that we speak.
inline constexpr std::uint8_t socks5_method_no_auth = 0x00;
inline constexpr std::uint8_t socks5_method_username_password = 0x02;
inline constexpr std::uint8_t socks5_method_none_acceptable = 0xFF;

/// The version identifier/method selection message (RFC 1928 §3).
struct socks5_greeting {
  /// The methods offered, in the client's order (at least one; values as sent).
  std::vector<std::uint8_t> methods;

  /// Whether `method` is among those offered.
  bool offers(std::uint8_t method) const noexcept;
  friend bool operator==(const socks5_greeting&, const socks5_greeting&) = default;
};

/// The username/password request (RFC 1929 §2). Raw octets, not validated as text.
/// `password` is a secret: operator<< never prints it.
struct socks5_credentials {
  std::string username;  ///< 1..255 octets
  std::string password;  ///< 0..255 octets (RFC 1929 says 1..255; an empty one is accepted)
  friend bool operator==(const socks5_credentials&, const socks5_credentials&) = default;
};

/// CMD of a SOCKS5 request (RFC 1928 §4). Only connect is served; the caller answers
/// bind and udp_associate with command_not_supported.
enum class socks5_command : std::uint8_t { connect = 1, bind = 2, udp_associate = 3 };

/// ATYP of a SOCKS5 request (RFC 1928 §5).
enum class socks5_address_type : std::uint8_t { ipv4 = 1, domain = 3, ipv6 = 4 };

/// A SOCKS5 request (RFC 1928 §4).
struct socks5_request {
  socks5_command command = socks5_command::connect;
  socks5_address_type address_type = socks5_address_type::ipv4;
  /// DST.ADDR of an IP target as raw octets, network order: ipv4 in address[0..3] (the
  /// rest zero), ipv6 all 16; all zero for a domain. Formatting them is the caller's
  /// business (the session uses policy::ip_address), so this core needs no other.
  std::array<std::uint8_t, 16> address{};
  /// domain only: the octets as sent (1..255 of them, possibly NUL or non-ASCII: the
  /// policy rejects those); empty for ipv4 and ipv6.
  std::string domain;
  std::uint16_t port = 0;
  friend bool operator==(const socks5_request&, const socks5_request&) = default;
};

/// REP of a SOCKS5 reply (RFC 1928 §6).
enum class socks5_reply_code : std::uint8_t {
  succeeded = 0,
  general_failure = 1,
  not_allowed = 2,
  network_unreachable = 3,
  host_unreachable = 4,
  connection_refused = 5,
  ttl_expired = 6,
  command_not_supported = 7,
  address_type_not_supported = 8,
};

/// Parses the greeting `VER NMETHODS METHODS…` at the start of `bytes`.
/// Failures: bad_version (VER != 5), bad_greeting (NMETHODS == 0). Checks each octet as
/// soon as it has arrived. Never throws for any input (may throw std::bad_alloc).
parse_result<socks5_greeting> parse_socks5_greeting(std::string_view bytes);

/// Parses the RFC 1929 request `VER ULEN UNAME PLEN PASSWD`.
/// Failures: bad_version (VER != 1), bad_auth_request (ULEN == 0).
parse_result<socks5_credentials> parse_socks5_auth(std::string_view bytes);

/// Parses the request `VER CMD RSV ATYP DST.ADDR DST.PORT` (port big-endian).
/// Failures: bad_version (VER != 5), bad_command (CMD not 1..3), bad_request (RSV != 0
/// or a domain of length 0), bad_address_type (ATYP not 1, 3, 4).
parse_result<socks5_request> parse_socks5_request(std::string_view bytes);

/// `VER METHOD`: the server's method selection (RFC 1928 §3).
std::array<std::uint8_t, 2> socks5_method_selection(std::uint8_t method) noexcept;

/// `VER STATUS` with VER 1 and STATUS 0 (success) or 1 (failure) (RFC 1929 §2).
std::array<std::uint8_t, 2> socks5_auth_reply(bool ok) noexcept;

/// A reply with BND.ADDR 0.0.0.0 and BND.PORT 0 (RFC 1928 §6).
std::array<std::uint8_t, 10> socks5_reply(socks5_reply_code code) noexcept;

/// A reply with an IPv4 bound address (network order octets) and port.
std::array<std::uint8_t, 10> socks5_reply(socks5_reply_code code,
                                          const std::array<std::uint8_t, 4>& bound_address,
                                          std::uint16_t bound_port) noexcept;

/// A reply with an IPv6 bound address (network order octets) and port.
std::array<std::uint8_t, 22> socks5_reply(socks5_reply_code code,
                                          const std::array<std::uint8_t, 16>& bound_address,
                                          std::uint16_t bound_port) noexcept;

/// The reply for a request that failed to parse: command_not_supported for
/// bad_command, address_type_not_supported for bad_address_type, general_failure
/// otherwise (RFC 1928 §6).
socks5_reply_code socks5_reply_for(parse_errc e) noexcept;

std::ostream& operator<<(std::ostream& os, const socks5_greeting& g);
/// Prints the username; the password never.
std::ostream& operator<<(std::ostream& os, const socks5_credentials& c);
std::ostream& operator<<(std::ostream& os, socks5_command c);
std::ostream& operator<<(std::ostream& os, socks5_address_type t);
std::ostream& operator<<(std::ostream& os, socks5_reply_code r);
std::ostream& operator<<(std::ostream& os, const socks5_request& r);

}  // namespace egressd::proxy::protocol
