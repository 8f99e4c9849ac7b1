// Flow: the caller hands parse_http_head every byte received so far. We look at no
// more than max_head_bytes of them and cut them into lines at LF (a CR before the LF
// is dropped: RFC 9112 §2.2 lets a recipient accept a bare LF). Each complete line is
// checked as soon as it is complete: length, control bytes, then syntax: the first
// non-empty line is the request line (method, target, version), every later one a
// header field, until the empty line that ends the head. If no empty line is found,
// the unfinished line is measured (line_too_long), then the buffer (head_too_large),
// else we ask for more. At the end of the head the fields are read once more for the
// derived facts: body framing with the smuggling defences (RFC 9112 §6), keep-alive
// (§9.3), upgrade (RFC 9110 §7.8) and Proxy-Authorization. Nothing here keeps state
// between calls or throws for bad input; a failure in a prefix is the same failure for
// every longer input, so the caller can stop reading early.
//
// rewrite_to_origin_form is the second half of a plain-HTTP exchange: it turns a parsed
// absolute-form head into the head the origin server gets.

#include "proxy/protocol/http_head.hpp"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <optional>
#include <ostream>
#include <system_error>
#include <utility>

namespace egressd::proxy::protocol {

namespace {

using error = std::optional<parse_errc>;  // nullopt: no error

// ---- character classes ----

constexpr bool is_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// tchar, RFC 9110 §5.6.2.
constexpr bool is_tchar(char c) noexcept {
  if (is_alpha(c) || is_digit(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool is_token(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// CTL = %x00-1F / %x7F (RFC 5234 B.1).
constexpr bool is_ctl(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7F;
}

constexpr bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

constexpr char ascii_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(),
                    [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// Calls f(element) for each element of a comma-separated list, trimmed of OWS. Empty
// elements are skipped, as RFC 9110 §5.6.1 requires of recipients.
template <class F>
void for_each_list_element(std::string_view value, F&& f) {
  while (true) {
    const auto comma = value.find(',');
    const auto element = trim_ows(value.substr(0, comma));
    if (!element.empty()) f(element);
    if (comma == std::string_view::npos) return;
    value.remove_prefix(comma + 1);
  }
}

// ---- request target ----

// port = 1*5DIGIT in 1..65535. RFC 3986 §3.2.3 allows *DIGIT; we refuse what cannot
// be dialled (0, > 65535) and anything but digits (no sign, no spaces).
error parse_port(std::string_view text, std::uint16_t& port) noexcept {
  if (text.empty() || text.size() > 5 || !std::all_of(text.begin(), text.end(), is_digit)) {
    return parse_errc::bad_target;
  }
  unsigned value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);  // cannot fail: 1..5 digits
  if (value == 0 || value > 65535) return parse_errc::bad_target;
  port = static_cast<std::uint16_t>(value);
  return std::nullopt;
}

// A host as it appears in an authority. We only refuse what would change the meaning
// of the authority or of the line: whitespace, controls, userinfo ('@'), a path ('/'),
// brackets and colons out of place. Everything else (non-ASCII, '%', '_') is passed
// through raw for the policy to canonicalise or reject (README "Policy semantics").
bool is_plain_host_byte(char c) noexcept {
  return !(is_ctl(c) || c == ' ' || c == '@' || c == '/' || c == '[' || c == ']' || c == ':');
}

// authority = host [ ":" port ], host = reg-name / IPv4address / "[" IPv6 "]"
// (RFC 3986 §3.2; RFC 9110 §9.3.6 for CONNECT, where the port is required).
error parse_authority(std::string_view authority, bool port_required, http_request& out) {
  std::string_view host;
  std::optional<std::string_view> port_text;
  bool ipv6 = false;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return parse_errc::bad_target;
    host = authority.substr(1, close - 1);
    // Brackets hold an IPv6 literal (RFC 3986 §3.2.2), which always has a ':'; a name
    // or IPv4 address in brackets is malformed, not a name to decide on.
    if (host.find(':') == std::string_view::npos) return parse_errc::bad_target;
    // ':' is legitimate inside the brackets.
    if (std::any_of(host.begin(), host.end(),
                    [](char c) { return c != ':' && !is_plain_host_byte(c); })) {
      return parse_errc::bad_target;
    }
    const auto rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return parse_errc::bad_target;
      port_text = rest.substr(1);
    }
    ipv6 = true;
  } else {
    const auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
    if (!std::all_of(host.begin(), host.end(), is_plain_host_byte)) return parse_errc::bad_target;
  }
  if (host.empty()) return parse_errc::bad_target;  // RFC 9110 §4.2.1: no empty host

  std::uint16_t port = 80;  // RFC 9110 §4.2.1: the default port of http
  if (port_text && !(port_text->empty() && !port_required)) {
    // An empty port after ':' means the default (RFC 3986 §6.2.3), but not for
    // CONNECT, which must name its port.
    if (auto e = parse_port(*port_text, port)) return e;
  } else if (port_required) {
    return parse_errc::bad_target;
  }
  out.host.assign(host);
  out.port = port;
  out.target_is_ipv6_literal = ipv6;
  return std::nullopt;
}

// absolute-form = absolute-URI (RFC 9112 §3.2.2) with scheme http (RFC 9110 §4.2.1).
// The caller has matched "http://"; `rest` is what follows it.
error parse_http_uri(std::string_view rest, http_request& out) {
  const auto authority_end = rest.find_first_of("/?#");
  const auto authority = rest.substr(0, authority_end);
  const auto path_query =
      authority_end == std::string_view::npos ? std::string_view{} : rest.substr(authority_end);
  // userinfo is deprecated in http URIs and a classic way to disguise the host
  // (RFC 9110 §4.2.4).
  if (authority.find('@') != std::string_view::npos) return parse_errc::bad_target;
  if (auto e = parse_authority(authority, false, out)) return e;
  // A fragment is never sent in a request target (RFC 9110 §7.1); whitespace is not
  // allowed in it (RFC 9112 §3.2).
  if (path_query.find_first_of("# ") != std::string_view::npos) return parse_errc::bad_target;
  // origin-form = absolute-path [ "?" query ]; an empty path becomes "/"
  // (RFC 9112 §3.2.1).
  out.origin_form.clear();
  if (path_query.empty() || path_query.front() == '?') out.origin_form = "/";
  out.origin_form.append(path_query);
  return std::nullopt;
}

// request-target (RFC 9112 §3.2): which form is allowed depends on the method.
error parse_target(std::string_view target, http_request& out) {
  if (out.method == "CONNECT") {
    // RFC 9112 §3.2.3: CONNECT uses authority-form only, and no userinfo.
    out.kind = request_kind::connect;
    if (target.find('@') != std::string_view::npos) return parse_errc::bad_target;
    return parse_authority(target, true, out);
  }
  out.kind = request_kind::absolute;
  // origin-form and asterisk-form are for origin servers (RFC 9112 §3.2.1, §3.2.4).
  if (target.front() == '/' || target == "*") return parse_errc::not_a_proxy_request;
  // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1)
  std::size_t i = 0;
  if (is_alpha(target[0])) {
    while (i < target.size() &&
           (is_alpha(target[i]) || is_digit(target[i]) || target[i] == '+' ||
            target[i] == '-' || target[i] == '.')) {
      ++i;
    }
  }
  if (i == 0 || target.substr(i, 3) != "://") {
    // Not a URI: authority-form without CONNECT, or garbage.
    return parse_errc::bad_target;
  }
  // Schemes are case-insensitive (RFC 3986 §3.1). Only http is proxied as plain
  // HTTP; an https URL is sent with CONNECT by every client that means it.
  if (!iequals(target.substr(0, i), "http")) return parse_errc::unsupported_scheme;
  return parse_http_uri(target.substr(i + 3), out);
}

// request-line = method SP request-target SP HTTP-version (RFC 9112 §3).
error parse_request_line(std::string_view line, http_request& out) {
  // No control byte at all, HT included: the request line has no OWS.
  if (std::any_of(line.begin(), line.end(), is_ctl)) return parse_errc::bad_character;
  const auto sp1 = line.find(' ');
  const auto sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp1 == sp2) return parse_errc::bad_request_line;
  const auto method = line.substr(0, sp1);
  const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const auto version = line.substr(sp2 + 1);
  if (method.empty() || target.empty() || target.front() == ' ' || target.back() == ' ') {
    return parse_errc::bad_request_line;
  }
  if (!is_token(method)) return parse_errc::bad_method;  // RFC 9110 §9.1
  // HTTP-version is case-sensitive (RFC 9112 §2.3). We speak 1.0 and 1.1 only.
  if (version == "HTTP/1.1") {
    out.version = http_version::http_1_1;
  } else if (version == "HTTP/1.0") {
    out.version = http_version::http_1_0;
  } else {
    return parse_errc::bad_version;
  }
  out.method.assign(method);
  return parse_target(target, out);
}

// field-line = field-name ":" OWS field-value OWS (RFC 9112 §5).
error parse_field_line(std::string_view line, std::vector<header>& headers) {
  // A line starting with whitespace is obs-fold, or whitespace between the start line
  // and the first field: both rejected (RFC 9112 §5.2, §2.2).
  if (is_ows(line.front())) return parse_errc::bad_header;
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return parse_errc::bad_header;
  const auto name = line.substr(0, colon);
  // An empty name, or whitespace before the colon (RFC 9112 §5.1: MUST reject).
  if (!is_token(name)) return parse_errc::bad_header;
  headers.push_back({std::string(name), std::string(trim_ows(line.substr(colon + 1)))});
  return std::nullopt;
}

// Content-Length = 1*DIGIT, in exactly one field line. RFC 9110 §8.6 lets a recipient
// either refuse a list of identical values ("42, 42", or the field repeated) or
// replace it with one value; we refuse it (strict: no other parser on the path has to
// agree with our reading of a list), as anything else that is not one decimal number
// (RFC 9112 §6.3 item 5).
struct content_length_state {
  bool present = false;
  bool invalid = false;
  std::optional<std::uint64_t> value;

  void add(std::string_view field_value) {
    if (present) invalid = true;  // repeated
    present = true;
    const auto* end = field_value.data() + field_value.size();
    std::uint64_t v = 0;
    // from_chars fails on overflow (errc::result_out_of_range).
    if (field_value.empty() || !std::all_of(field_value.begin(), field_value.end(), is_digit) ||
        std::from_chars(field_value.data(), end, v).ec != std::errc{}) {
      invalid = true;
      return;
    }
    value = v;
  }
};

// The facts derived from the whole field section, once the head is complete.
error derive_facts(http_request& req) {
  std::size_t host_fields = 0;
  content_length_state content_length;
  bool has_transfer_encoding = false;
  std::vector<std::string_view> codings;
  bool connection_close = false;
  bool connection_keep_alive = false;
  bool connection_upgrade = false;
  bool has_upgrade = false;

  for (const auto& h : req.headers) {
    const std::string_view name = h.name;
    if (iequals(name, "host")) {
      ++host_fields;
    } else if (iequals(name, "proxy-authorization")) {
      // Two sets of credentials: which one would the auth check judge?
      if (req.proxy_authorization) return parse_errc::bad_header;
      req.proxy_authorization = h.value;
    } else if (iequals(name, "content-length")) {
      content_length.add(h.value);
    } else if (iequals(name, "transfer-encoding")) {
      has_transfer_encoding = true;
      for_each_list_element(h.value, [&](std::string_view c) { codings.push_back(c); });
    } else if (iequals(name, "connection") || iequals(name, "proxy-connection")) {
      // Proxy-Connection is not standard, but HTTP/1.0-era clients send it to proxies
      // with the meaning of Connection; we honour it for keep-alive only.
      const bool standard = iequals(name, "connection");
      for_each_list_element(h.value, [&](std::string_view token) {
        if (iequals(token, "close")) connection_close = true;
        if (iequals(token, "keep-alive")) connection_keep_alive = true;
        if (standard && iequals(token, "upgrade")) connection_upgrade = true;
      });
    } else if (iequals(name, "upgrade")) {
      has_upgrade = true;
    }
  }

  // RFC 9112 §3.2: more than one Host is a 400. A missing Host is accepted: for a
  // proxy the target's authority wins (§3.2.2), and HTTP/1.0 CONNECT clients (Python,
  // pip, socat, nc) send none.
  if (host_fields > 1) return parse_errc::bad_header;

  const bool is_1_1 = req.version == http_version::http_1_1;
  if (req.kind == request_kind::absolute) {
    if (has_transfer_encoding) {
      // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
      if (!is_1_1) return parse_errc::bad_transfer_encoding;
      // RFC 9112 §6.1 / §6.3 item 3: both is a smuggling attempt; refuse rather than
      // pick one.
      if (content_length.present) return parse_errc::ambiguous_length;
      // RFC 9112 §6.3 item 4: a request whose final coding is not chunked has no
      // determinable length (400). Stricter than the RFC, chunked must also be the only
      // coding: "identity" is no coding at all any more (RFC 9112 §7 dropped it, and
      // older parsers read "identity, chunked" differently), and a coding we do not
      // decode (gzip, ...) in front of chunked is refused (§6.1 lets a server refuse a
      // coding it does not understand) rather than passed on to disagree about.
      if (codings.size() != 1 || !iequals(codings.front(), "chunked")) return parse_errc::bad_transfer_encoding;
      req.body = body_framing::chunked;
    } else if (content_length.present) {
      if (content_length.invalid || !content_length.value) return parse_errc::bad_content_length;
      req.body = body_framing::content_length;
      req.content_length = *content_length.value;
    }
  }
  // CONNECT has no content (RFC 9110 §9.3.6): framing fields are ignored and the
  // bytes after the head belong to the tunnel.

  // RFC 9112 §9.3: HTTP/1.1 is persistent unless "close"; HTTP/1.0 only with
  // "keep-alive".
  req.keep_alive = !connection_close && (is_1_1 || connection_keep_alive);
  // RFC 9110 §7.8: Upgrade is only meaningful when listed in Connection, and a server
  // must ignore it in an HTTP/1.0 request.
  req.upgrade = is_1_1 && req.kind == request_kind::absolute && connection_upgrade && has_upgrade;
  return std::nullopt;
}

}  // namespace

parse_result<http_request> parse_http_head(std::string_view bytes, const head_limits& limits) {
  // Look no further than the limit: a head ending beyond it is too large anyway.
  const auto window = bytes.substr(0, std::min(bytes.size(), limits.max_head_bytes));
  http_request req;
  bool have_request_line = false;
  std::size_t pos = 0;
  while (true) {
    const auto lf = window.find('\n', pos);
    if (lf == std::string_view::npos) {
      // An unfinished line. A CR at the very end may be the start of its CRLF, so it
      // does not count towards the line's length (or a line of exactly the limit
      // would fail in one split and pass in another).
      auto partial = window.size() - pos;
      if (partial > 0 && window.back() == '\r') --partial;
      if (partial > limits.max_line_bytes) return parse_failure{parse_errc::line_too_long};
      if (bytes.size() > limits.max_head_bytes) return parse_failure{parse_errc::head_too_large};
      return need_more{};
    }
    auto line = window.substr(pos, lf - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = lf + 1;
    if (line.size() > limits.max_line_bytes) return parse_failure{parse_errc::line_too_long};

    if (!have_request_line) {
      // RFC 9112 §2.2: a server SHOULD ignore empty lines before the request line
      // (some clients send an extra CRLF after a body).
      if (line.empty()) continue;
      if (auto e = parse_request_line(line, req)) return parse_failure{*e};
      have_request_line = true;
      continue;
    }
    if (line.empty()) {
      if (auto e = derive_facts(req)) return parse_failure{*e};
      return parsed<http_request>{std::move(req), pos};
    }
    // field-value = *field-content: VCHAR, obs-text, SP and HT; no other control byte.
    // A bare CR is refused here too (RFC 9112 §2.2).
    if (std::any_of(line.begin(), line.end(), [](char c) { return is_ctl(c) && c != '\t'; })) {
      return parse_failure{parse_errc::bad_character};
    }
    if (req.headers.size() >= limits.max_headers) {
      return parse_failure{parse_errc::too_many_headers};
    }
    if (auto e = parse_field_line(line, req.headers)) return parse_failure{*e};
  }
}

const header* find_header(const http_request& req, std::string_view name) noexcept {
  const auto it = std::find_if(req.headers.begin(), req.headers.end(),
                               [name](const header& h) { return iequals(h.name, name); });
  return it == req.headers.end() ? nullptr : &*it;
}

std::string rewrite_to_origin_form(const http_request& req, std::string_view via_token) {
  assert(req.kind == request_kind::absolute);
  assert(via_token.find_first_of("\r\n") == std::string_view::npos);

  // Fields the client names in Connection are hop-by-hop too (RFC 9110 §7.6.1).
  std::vector<std::string_view> named_in_connection;
  for (const auto& h : req.headers) {
    if (iequals(h.name, "connection")) {
      for_each_list_element(h.value,
                            [&](std::string_view t) { named_in_connection.push_back(t); });
    }
  }
  const auto keep = [&](std::string_view name) {
    // The framing fields are written afresh below, whatever Connection says.
    if (iequals(name, "content-length") || iequals(name, "transfer-encoding")) return false;
    // Host is replaced by the target's authority (RFC 9110 §7.2, RFC 9112 §3.2.2).
    if (iequals(name, "host")) return false;
    // The hop-by-hop fields of RFC 9110 §7.6.1, and every Proxy-* field (credentials
    // for us, never for the origin).
    if (iequals(name, "connection") || iequals(name, "keep-alive") || iequals(name, "te") ||
        iequals(name, "trailer") || istarts_with(name, "proxy-")) {
      return false;
    }
    // A WebSocket (or other) upgrade passes through: Upgrade goes with it.
    if (iequals(name, "upgrade")) return req.upgrade;
    return std::none_of(named_in_connection.begin(), named_in_connection.end(),
                        [name](std::string_view t) { return iequals(t, name); });
  };

  // Via is appended to the last Via we keep (RFC 9110 §7.6.3: a list, in order).
  std::size_t via_index = req.headers.size();
  if (!via_token.empty()) {
    for (std::size_t i = 0; i < req.headers.size(); ++i) {
      if (iequals(req.headers[i].name, "via") && keep(req.headers[i].name)) via_index = i;
    }
  }

  std::string out;
  out.reserve(256 + req.origin_form.size() + req.headers.size() * 48);
  out.append(req.method).append(" ").append(req.origin_form).append(" HTTP/1.1\r\n");
  out.append("Host: ");
  if (req.target_is_ipv6_literal) {
    out.append("[").append(req.host).append("]");
  } else {
    out.append(req.host);
  }
  if (req.port != 80) out.append(":").append(std::to_string(req.port));
  out.append("\r\n");
  // The body goes upstream unchanged, so its framing goes with it, in one normalised
  // field as parse_http_head understood it (one Content-Length value, or chunked alone;
  // RFC 9112 §6.3), never as the client spelt it.
  if (req.body == body_framing::content_length) {
    out.append("Content-Length: ").append(std::to_string(req.content_length)).append("\r\n");
  } else if (req.body == body_framing::chunked) {
    out.append("Transfer-Encoding: chunked\r\n");
  }
  for (std::size_t i = 0; i < req.headers.size(); ++i) {
    const auto& h = req.headers[i];
    if (!keep(h.name)) continue;
    out.append(h.name).append(": ").append(h.value);
    if (i == via_index) {
      if (!h.value.empty()) out.append(", ");
      out.append("1.1 ").append(via_token);
    }
    out.append("\r\n");
  }
  if (req.upgrade) out.append("Connection: Upgrade\r\n");
  if (!via_token.empty() && via_index == req.headers.size()) {
    out.append("Via: 1.1 ").append(via_token).append("\r\n");
  }
  out.append("\r\n");
  return out;
}

std::string close_delimited_response_head(std::string_view head) {
  // Fields named in Connection are hop-by-hop as well (RFC 9110 §7.6.1).
  std::vector<std::string_view> lines;
  std::vector<std::string_view> named_in_connection;
  std::size_t pos = 0;
  while (pos < head.size()) {
    auto lf = head.find('\n', pos);
    if (lf == std::string_view::npos) lf = head.size();
    auto line = head.substr(pos, lf - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = lf + 1;
    if (line.empty()) break;  // the blank line that ends the head
    lines.push_back(line);
    const auto colon = line.find(':');
    if (lines.size() > 1 && colon != std::string_view::npos && iequals(line.substr(0, colon), "connection")) {
      for_each_list_element(line.substr(colon + 1), [&](std::string_view t) { named_in_connection.push_back(t); });
    }
  }
  std::string out;
  out.reserve(head.size() + 24);
  bool dropping = false;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto line = lines[i];
    if (i > 0) {
      // An obs-fold continuation line (RFC 9112 §5.2) belongs to the field before it.
      if (!is_ows(line.front())) {
        const auto name = line.substr(0, line.find(':'));
        dropping = iequals(name, "transfer-encoding") || iequals(name, "connection") ||
                   iequals(name, "keep-alive") ||
                   std::any_of(named_in_connection.begin(), named_in_connection.end(),
                               [name](std::string_view t) { return iequals(t, name); });
      }
      if (dropping) continue;
    }
    out.append(line).append("\r\n");
  }
  out.append("Connection: close\r\n\r\n");
  return out;
}

std::ostream& operator<<(std::ostream& os, http_version v) {
  return os << (v == http_version::http_1_0 ? "HTTP/1.0" : "HTTP/1.1");
}

std::ostream& operator<<(std::ostream& os, request_kind k) {
  return os << (k == request_kind::connect ? "connect" : "absolute");
}

std::ostream& operator<<(std::ostream& os, body_framing b) {
  switch (b) {
    case body_framing::none: return os << "none";
    case body_framing::content_length: return os << "content_length";
    case body_framing::chunked: return os << "chunked";
  }
  return os << "?";
}

std::ostream& operator<<(std::ostream& os, const header& h) {
  os << h.name << ": ";
  if (iequals(h.name, "proxy-authorization")) return os << "<redacted>";
  return os << h.value;
}

std::ostream& operator<<(std::ostream& os, const http_request& r) {
  os << "http_request{" << r.method << ' ';
  if (r.kind == request_kind::absolute) os << "http://";
  if (r.target_is_ipv6_literal) {
    os << '[' << r.host << ']';
  } else {
    os << r.host;
  }
  os << ':' << r.port;
  if (r.kind == request_kind::absolute) os << r.origin_form;
  os << ' ' << r.version << ", headers=[";
  for (std::size_t i = 0; i < r.headers.size(); ++i) os << (i ? "; " : "") << r.headers[i];
  os << "], body=" << r.body;
  if (r.body == body_framing::content_length) os << '(' << r.content_length << ')';
  const auto yes_no = [](bool b) { return b ? "true" : "false"; };
  os << ", keep_alive=" << yes_no(r.keep_alive) << ", upgrade=" << yes_no(r.upgrade)
     << ", proxy_authorization=" << (r.proxy_authorization ? "<redacted>" : "none") << '}';
  return os;
}

}  // namespace egressd::proxy::protocol
