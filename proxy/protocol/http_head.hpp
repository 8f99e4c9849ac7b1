#pragma once
// HTTP/1.x request heads as a forward proxy receives them: CONNECT (authority-form)
// and absolute-form plain HTTP. Pure functions over bytes; see http_head.cpp for the
// flow and the RFC behind each rule.

#include "proxy/protocol/parse_result.hpp"

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace egressd::proxy::protocol {

/// Size limits checked inside the parser. A failure on any of them
/// maps to 431 (http_status_for).
struct head_limits {
  /// The whole head, request line to the blank line inclusive.
  std::size_t max_head_bytes = 16384;
  /// Header fields, not counting the request line.
  std::size_t max_headers = 100;
  /// One line without its CRLF / LF.
  std::size_t max_line_bytes = 8192;
};

/// Only HTTP/1.0 and HTTP/1.1 are accepted.
enum class http_version : std::uint8_t { http_1_0, http_1_1 };

/// Which request-target form the request used (RFC 9112 §3.2).
enum class request_kind : std::uint8_t {
  connect,   ///< `CONNECT host:port` (authority-form): open a tunnel
  absolute,  ///< `METHOD http://host[:port]/path?query` (absolute-form): plain HTTP
};

/// How the request body is delimited (RFC 9112 §6.3). Always `none` for CONNECT.
enum class body_framing : std::uint8_t { none, content_length, chunked };

/// One header field as received: the name's case kept, the value trimmed of OWS.
struct header {
  std::string name;
  std::string value;
  friend bool operator==(const header&, const header&) = default;
};

/// A parsed request head. Owns copies of everything, so the caller's buffer may be
/// reused. The host is raw text from the target: not lower-cased, not validated as a
/// name (policy canonicalises it and rejects what it cannot use).
struct http_request {
  std::string method;  ///< case-sensitive token (RFC 9110 §9.1)
  http_version version = http_version::http_1_1;
  request_kind kind = request_kind::connect;
  std::string host;  ///< without brackets for an IPv6 literal
  std::uint16_t port = 0;
  bool target_is_ipv6_literal = false;
  /// absolute only: path and query as they go upstream; never empty ("/" at least).
  std::string origin_form;
  /// Every header field in the order received (including Proxy-Authorization).
  std::vector<header> headers;
  body_framing body = body_framing::none;
  std::uint64_t content_length = 0;  ///< meaningful when body == content_length
  /// Whether the client wants the connection kept after this exchange (RFC 9112 §9.3).
  bool keep_alive = false;
  /// A protocol upgrade (WebSocket) was requested: Connection lists `upgrade` and an
  /// Upgrade field is present, on an HTTP/1.1 non-CONNECT request (RFC 9110 §7.8).
  bool upgrade = false;
  /// The Proxy-Authorization value, if sent. A secret: never log it (operator<<
  /// prints only whether it is present).
  std::optional<std::string> proxy_authorization;

  friend bool operator==(const http_request&, const http_request&) = default;
};

/// Parses the request head at the start of `bytes`, the bytes received so far.
/// - need_more: no blank line yet and no limit crossed; call again with more bytes.
/// - parsed: `consumed` counts the head up to and including the blank line; the
///   bytes after it (a request body, a pipelined TLS ClientHello) are not touched.
/// - parse_failure: see parse_errc. Errors in complete lines are reported as soon as
///   the line is complete, so garbage is refused without waiting for the limit.
/// Never throws for any input (may throw std::bad_alloc). Cost is linear in
/// bytes.size() (at most max_head_bytes are looked at).
parse_result<http_request> parse_http_head(std::string_view bytes, const head_limits& limits);

/// First field named `name` (ASCII case-insensitive), or nullptr.
const header* find_header(const http_request& req, std::string_view name) noexcept;

/// The head to send upstream for an absolute-form request (precondition:
/// req.kind == request_kind::absolute): `METHOD origin-form HTTP/1.1`, a Host field
/// naming the target authority, the client's end-to-end fields in order, without the
/// hop-by-hop ones (Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade,
/// every Proxy-* field, every field named in Connection; RFC 9110 §7.6.1). The body
/// is streamed unchanged, so its framing is sent as one normalised field right after
/// Host: `Content-Length: <n>` or `Transfer-Encoding: chunked` (per req.body). For an
/// upgrade request, Upgrade is kept and `Connection: Upgrade` sent. A non-empty
/// `via_token` adds `Via: 1.1 <via_token>` (RFC 9110 §7.6.3). Ends with CRLF CRLF.
std::string rewrite_to_origin_form(const http_request& req, std::string_view via_token = {});

/// The head of a response whose chunked body is passed on de-chunked and delimited by
/// closing the connection (for an HTTP/1.0 client, which cannot read chunked; RFC 9112
/// §6.1, §7.1.3): `head` is a complete response head (status line, fields, blank line)
/// that an HTTP/1.1 parser accepted; the result keeps the status line and every field
/// but Transfer-Encoding, Connection, Keep-Alive and those Connection names, and adds
/// `Connection: close`. Ends with CRLF CRLF.
std::string close_delimited_response_head(std::string_view head);

std::ostream& operator<<(std::ostream& os, http_version v);
std::ostream& operator<<(std::ostream& os, request_kind k);
std::ostream& operator<<(std::ostream& os, body_framing b);
std::ostream& operator<<(std::ostream& os, const header& h);
/// One line summary; the Proxy-Authorization value is never printed.
std::ostream& operator<<(std::ostream& os, const http_request& r);

}  // namespace egressd::proxy::protocol
