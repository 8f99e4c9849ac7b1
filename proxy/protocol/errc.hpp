#pragma once
// Why a protocol parser refused its input: one enum with a std::error_category.
// Parsers return these inside parse_failure; they never throw for
// bad input.

#include <iosfwd>
#include <string_view>
#include <system_error>

namespace egressd::proxy::protocol {

/// What was wrong with the bytes a client sent. Zero is not used (it means success
/// in a std::error_code). The names are stable: logs and metric labels use them.
enum class parse_errc {
  // ---- HTTP request head (RFC 9110, RFC 9112) ----
  /// More than head_limits::max_head_bytes arrived before the blank line ending the
  /// head. The caller answers 431.
  head_too_large = 1,
  /// More header fields than head_limits::max_headers. The caller answers 431.
  too_many_headers,
  /// A request or header line longer than head_limits::max_line_bytes. 431.
  line_too_long,
  /// A NUL or other control byte (anything below 0x20 but HT, or 0x7F) in the head,
  /// a bare CR (RFC 9112 §2.2), or HT in the request line.
  bad_character,
  /// The request line is not `method SP request-target SP HTTP-version`
  /// (RFC 9112 §3): a missing or doubled SP, an empty target.
  bad_request_line,
  /// The method is not a token (RFC 9110 §9.1, §5.6.2).
  bad_method,
  /// HTTP: the version is not exactly `HTTP/1.0` or `HTTP/1.1`. SOCKS5: VER is not 5
  /// (RFC 1928 §3, §4); username/password: VER is not 1 (RFC 1929 §2).
  bad_version,
  /// The request-target is malformed for its method: CONNECT without a valid
  /// `host:port` (RFC 9110 §9.3.6), userinfo (`@`), a port outside 1..65535, a
  /// fragment or an empty host in absolute-form, authority-form without CONNECT.
  bad_target,
  /// Absolute-form with a scheme other than `http` (`https://…` is sent with
  /// CONNECT, never as a plain request to a proxy).
  unsupported_scheme,
  /// origin-form (`/path`) or asterisk-form (`*`): fine for a server, but a proxy
  /// only takes CONNECT and absolute-form (RFC 9112 §3.2.2). The caller answers 400.
  not_a_proxy_request,
  /// A malformed header line: obs-fold (RFC 9112 §5.2), no colon, an empty or
  /// non-token field name, whitespace before the colon (RFC 9112 §5.1); or more than
  /// one Host (RFC 9112 §3.2) or Proxy-Authorization field.
  bad_header,
  /// Both Transfer-Encoding and Content-Length (RFC 9112 §6.1, §6.3: request
  /// smuggling).
  ambiguous_length,
  /// Content-Length that is not a decimal number, overflows, or is given more than
  /// once with different values (RFC 9110 §8.6, RFC 9112 §6.3).
  bad_content_length,
  /// Transfer-Encoding whose final coding is not `chunked`, that applies chunked
  /// twice, or that comes in an HTTP/1.0 request (RFC 9112 §6.1).
  bad_transfer_encoding,

  // ---- SOCKS5 (RFC 1928, RFC 1929) ----
  /// NMETHODS is zero in the version/method selection message (RFC 1928 §3).
  bad_greeting,
  /// Username/password request with ULEN zero (RFC 1929 §2).
  bad_auth_request,
  /// CMD is not CONNECT (1), BIND (2) or UDP ASSOCIATE (3) (RFC 1928 §4). The caller
  /// answers 07.
  bad_command,
  /// RSV is not zero, or a domain name of length zero (RFC 1928 §4, §5).
  bad_request,
  /// ATYP is not 1, 3 or 4 (RFC 1928 §5). The caller answers 08.
  bad_address_type,
};

/// The category of parse_errc; its name is "egressd.protocol".
const std::error_category& parse_category() noexcept;

/// Wraps a parse_errc in a std::error_code (found by ADL).
std::error_code make_error_code(parse_errc e) noexcept;

/// The enumerator's name (`head_too_large`); "unknown" for a value outside the enum.
std::string_view to_string(parse_errc e) noexcept;

/// The HTTP status a proxy answers for an HTTP head failure: 431 for the size limits
/// (RFC 6585 §5), 400 for everything else.
int http_status_for(parse_errc e) noexcept;

std::ostream& operator<<(std::ostream& os, parse_errc e);

}  // namespace egressd::proxy::protocol

template <>
struct std::is_error_code_enum<egressd::proxy::protocol::parse_errc> : std::true_type {};
