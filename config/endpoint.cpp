#include "config/endpoint.hpp"

#include <arpa/inet.h>

#include <array>
#include <charconv>

namespace egressd::config {

namespace {

// sizeof(sockaddr_un::sun_path) is 108 on Linux, and the path needs its NUL.
constexpr std::size_t max_unix_path = 107;
constexpr std::string_view unix_prefix = "unix:";

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
char to_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// inet_pton is what the listener's bind will use (asio::ip::make_address calls it),
// so an address accepted here is one the proxy can bind. Canonical text via
// inet_ntop: dotted quad, RFC 5952 for IPv6.
std::optional<std::string> canonical_ip(std::string_view text, int family) {
  const std::string copy(text);  // inet_pton wants a NUL-terminated string
  std::array<unsigned char, 16> bytes{};
  if (inet_pton(family, copy.c_str(), bytes.data()) != 1) return std::nullopt;
  std::array<char, INET6_ADDRSTRLEN> buffer{};
  if (inet_ntop(family, bytes.data(), buffer.data(), buffer.size()) == nullptr) return std::nullopt;
  return std::string(buffer.data());
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label_length = 0;
  char previous = '.';
  for (const char c : name) {
    if (c == '.') {
      if (label_length == 0 || previous == '-') return false;
      label_length = 0;
    } else if (is_alnum(c) || c == '_' || (c == '-' && label_length > 0)) {
      if (++label_length > 63) return false;
    } else {
      return false;
    }
    previous = c;
  }
  return label_length > 0 && previous != '-';
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  for (const char c : text)
    if (!is_digit(c)) return std::nullopt;
  unsigned value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  if (value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

endpoint_result failure(std::string error, std::string hint = {}) {
  endpoint_result out;
  out.error = std::move(error);
  out.hint = std::move(hint);
  return out;
}

endpoint_result parse_unix(std::string_view text) {
  const std::string_view path = text.substr(unix_prefix.size());
  if (path.empty() || path.front() != '/')
    return failure("unix socket path `" + std::string(path) + "` is not absolute",
                   "write unix:/run/egressd/proxy.sock");
  if (path.size() > max_unix_path)
    return failure("unix socket path is " + std::to_string(path.size()) + " bytes long, more than the " +
                   std::to_string(max_unix_path) + " a socket address holds");
  if (path.find('\0') != std::string_view::npos) return failure("unix socket path contains a NUL byte");
  endpoint e;
  e.kind = endpoint::kind_t::unix_socket;
  e.path = std::string(path);
  endpoint_result out;
  out.value = std::move(e);
  return out;
}

}  // namespace

std::string endpoint::to_string() const {
  if (kind == kind_t::unix_socket) return std::string(unix_prefix) + path;
  const bool bracket = host.find(':') != std::string::npos;
  return (bracket ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

endpoint_result parse_endpoint(std::string_view text) {
  if (text.empty()) return failure("empty address", "write HOST:PORT, e.g. 127.0.0.1:3128");
  if (text.substr(0, unix_prefix.size()) == unix_prefix) return parse_unix(text);

  std::string_view host;
  std::string_view port_text;
  bool bracketed = false;
  if (text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos)
      return failure("`" + std::string(text) + "` has no closing `]`", "write [::1]:3128");
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':')
      return failure("`" + std::string(text) + "` has no port", "write [" + std::string(host) + "]:3128");
    port_text = rest.substr(1);
    bracketed = true;
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return failure("`" + std::string(text) + "` has no port", "write " + std::string(text) + ":3128");
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      // Keep the user's own address and port in the hint: `::1:23128` most likely
      // meant [::1]:23128; text that is one IPv6 address with no port gets the default.
      std::string hint = "write [::1]:3128";
      if (canonical_ip(host, AF_INET6) && parse_port(port_text))
        hint = "write [" + std::string(host) + "]:" + std::string(port_text);
      else if (canonical_ip(text, AF_INET6))
        hint = "write [" + std::string(text) + "]:3128";
      return failure("IPv6 address `" + std::string(text) + "` needs brackets", hint);
    }
  }

  const auto port = parse_port(port_text);
  if (!port) return failure("port `" + std::string(port_text) + "` is not a number from 0 to 65535");

  endpoint e;
  e.kind = endpoint::kind_t::tcp;
  e.port = *port;
  if (host.empty())
    return failure("`" + std::string(text) + "` has no host", "write 127.0.0.1:" + std::string(port_text) +
                                                                  " (loopback) or 0.0.0.0:" + std::string(port_text) +
                                                                  " (every interface)");
  if (bracketed) {
    if (host.find('%') != std::string_view::npos)
      return failure("IPv6 zone ids (`%`) are not supported in `" + std::string(text) + "`");
    auto ip = canonical_ip(host, AF_INET6);
    if (!ip) return failure("`" + std::string(host) + "` is not an IPv6 address");
    e.host = std::move(*ip);
  } else if (auto ip = canonical_ip(host, AF_INET)) {
    e.host = std::move(*ip);
  } else {
    const std::size_t last_dot = host.rfind('.');
    const std::string_view last_label = last_dot == std::string_view::npos ? host : host.substr(last_dot + 1);
    bool numeric = !last_label.empty();
    for (const char c : last_label) numeric = numeric && is_digit(c);
    if (numeric)
      return failure("`" + std::string(host) + "` is not an IPv4 address",
                     "write four decimal numbers, e.g. 127.0.0.1");
    if (!valid_name(host)) return failure("`" + std::string(host) + "` is neither an IP address nor a host name");
    e.host.reserve(host.size());
    for (const char c : host) e.host.push_back(to_lower(c));
  }
  endpoint_result out;
  out.value = std::move(e);
  return out;
}

}  // namespace egressd::config
