// Flow: a SOCKS5 exchange is a fixed script (RFC 1928 §3-§6, RFC 1929 §2):
//   client greeting  VER=5 NMETHODS METHODS      -> parse_socks5_greeting
//   server choice    VER=5 METHOD                <- socks5_method_selection
//   [if 0x02: client VER=1 ULEN UNAME PLEN PASSWD -> parse_socks5_auth
//             server VER=1 STATUS                <- socks5_auth_reply]
//   client request   VER=5 CMD RSV ATYP ADDR PORT -> parse_socks5_request
//   server reply     VER=5 REP RSV ATYP BND.ADDR BND.PORT <- socks5_reply
// then the connection is a tunnel. Each parser reads one message from the start of the
// bytes received so far, checks every fixed octet as soon as it is there (so a wrong
// version or command is refused without waiting for the rest), and reports how many
// octets the message took: a client may pipeline the next message behind it. The
// caller sequences the messages; nothing here keeps state or throws for bad input.

#include "proxy/protocol/socks5.hpp"

#include <algorithm>
#include <ostream>
#include <utility>

namespace egressd::proxy::protocol {

namespace {

constexpr std::uint8_t version_5 = 0x05;            // RFC 1928 §3
constexpr std::uint8_t auth_version_1 = 0x01;       // RFC 1929 §2
constexpr std::uint8_t atyp_ipv4 = 0x01;            // RFC 1928 §5
constexpr std::uint8_t atyp_domain = 0x03;
constexpr std::uint8_t atyp_ipv6 = 0x04;

std::uint8_t octet(std::string_view bytes, std::size_t i) noexcept {
  return static_cast<std::uint8_t>(bytes[i]);
}


// Printable ASCII as is, anything else as \xHH: a domain may hold any octet.
void print_escaped(std::ostream& os, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F && c != '\\') {
      os << c;
    } else {
      os << "\\x" << hex[u >> 4] << hex[u & 0xF];
    }
  }
}

}  // namespace

bool socks5_greeting::offers(std::uint8_t method) const noexcept {
  return std::find(methods.begin(), methods.end(), method) != methods.end();
}

parse_result<socks5_greeting> parse_socks5_greeting(std::string_view bytes) {
  // +----+----------+----------+
  // |VER | NMETHODS | METHODS  |   RFC 1928 §3
  // | 1  |    1     | 1 to 255 |
  if (bytes.empty()) return need_more{};
  if (octet(bytes, 0) != version_5) return parse_failure{parse_errc::bad_version};
  if (bytes.size() < 2) return need_more{};
  const std::size_t nmethods = octet(bytes, 1);
  if (nmethods == 0) return parse_failure{parse_errc::bad_greeting};  // "1 to 255"
  const std::size_t total = 2 + nmethods;
  if (bytes.size() < total) return need_more{};
  socks5_greeting g;
  g.methods.reserve(nmethods);
  for (std::size_t i = 2; i < total; ++i) g.methods.push_back(octet(bytes, i));
  return parsed<socks5_greeting>{std::move(g), total};
}

parse_result<socks5_credentials> parse_socks5_auth(std::string_view bytes) {
  // +----+------+----------+------+----------+
  // |VER | ULEN |  UNAME   | PLEN |  PASSWD  |   RFC 1929 §2
  // | 1  |  1   | 1 to 255 |  1   | 1 to 255 |
  if (bytes.empty()) return need_more{};
  // The sub-negotiation's own version is 1, not 5.
  if (octet(bytes, 0) != auth_version_1) return parse_failure{parse_errc::bad_version};
  if (bytes.size() < 2) return need_more{};
  const std::size_t ulen = octet(bytes, 1);
  if (ulen == 0) return parse_failure{parse_errc::bad_auth_request};
  const std::size_t plen_at = 2 + ulen;
  if (bytes.size() <= plen_at) return need_more{};
  // PLEN 0 is outside RFC 1929 but harmless: an empty password, which the auth check
  // judges like any other.
  const std::size_t plen = octet(bytes, plen_at);
  const std::size_t total = plen_at + 1 + plen;
  if (bytes.size() < total) return need_more{};
  socks5_credentials c;
  c.username.assign(bytes.substr(2, ulen));
  c.password.assign(bytes.substr(plen_at + 1, plen));
  return parsed<socks5_credentials>{std::move(c), total};
}

parse_result<socks5_request> parse_socks5_request(std::string_view bytes) {
  // +----+-----+-------+------+----------+----------+
  // |VER | CMD |  RSV  | ATYP | DST.ADDR | DST.PORT |   RFC 1928 §4
  // | 1  |  1  | X'00' |  1   | Variable |    2     |
  if (bytes.empty()) return need_more{};
  if (octet(bytes, 0) != version_5) return parse_failure{parse_errc::bad_version};
  if (bytes.size() < 2) return need_more{};
  const auto cmd = octet(bytes, 1);
  // BIND and UDP ASSOCIATE parse, so that the caller answers them with 07 after
  // reading the whole request; unknown commands fail here (and are answered 07 too).
  if (cmd < 1 || cmd > 3) return parse_failure{parse_errc::bad_command};
  if (bytes.size() < 3) return need_more{};
  if (octet(bytes, 2) != 0) return parse_failure{parse_errc::bad_request};  // RSV
  if (bytes.size() < 4) return need_more{};
  const auto atyp = octet(bytes, 3);
  std::size_t address_at = 4;
  std::size_t address_len = 0;
  switch (atyp) {
    case atyp_ipv4: address_len = 4; break;
    case atyp_ipv6: address_len = 16; break;
    case atyp_domain:
      // "the first octet of the address field contains the number of octets of name
      // that follow" (RFC 1928 §5); zero octets name nothing.
      if (bytes.size() < 5) return need_more{};
      address_len = octet(bytes, 4);
      if (address_len == 0) return parse_failure{parse_errc::bad_request};
      address_at = 5;
      break;
    default:
      return parse_failure{parse_errc::bad_address_type};
  }
  const std::size_t total = address_at + address_len + 2;
  if (bytes.size() < total) return need_more{};

  socks5_request r;
  r.command = static_cast<socks5_command>(cmd);
  r.address_type = static_cast<socks5_address_type>(atyp);
  const auto address = bytes.substr(address_at, address_len);
  if (r.address_type == socks5_address_type::domain) {
    r.domain.assign(address);  // raw, see header
  } else {
    for (std::size_t i = 0; i < address_len; ++i) r.address[i] = octet(address, i);
  }
  // DST.PORT in network octet order.
  const std::size_t port_at = address_at + address_len;
  r.port = static_cast<std::uint16_t>((octet(bytes, port_at) << 8) | octet(bytes, port_at + 1));
  return parsed<socks5_request>{std::move(r), total};
}

std::array<std::uint8_t, 2> socks5_method_selection(std::uint8_t method) noexcept {
  return {version_5, method};
}

std::array<std::uint8_t, 2> socks5_auth_reply(bool ok) noexcept {
  // RFC 1929 §2: STATUS X'00' is success; anything else is failure and the server
  // must close the connection.
  return {auth_version_1, static_cast<std::uint8_t>(ok ? 0x00 : 0x01)};
}

std::array<std::uint8_t, 10> socks5_reply(socks5_reply_code code) noexcept {
  return socks5_reply(code, std::array<std::uint8_t, 4>{}, 0);
}

std::array<std::uint8_t, 10> socks5_reply(socks5_reply_code code,
                                          const std::array<std::uint8_t, 4>& bound_address,
                                          std::uint16_t bound_port) noexcept {
  // VER REP RSV ATYP BND.ADDR BND.PORT (RFC 1928 §6)
  return {version_5,
          static_cast<std::uint8_t>(code),
          0x00,
          atyp_ipv4,
          bound_address[0],
          bound_address[1],
          bound_address[2],
          bound_address[3],
          static_cast<std::uint8_t>(bound_port >> 8),
          static_cast<std::uint8_t>(bound_port & 0xFF)};
}

std::array<std::uint8_t, 22> socks5_reply(socks5_reply_code code,
                                          const std::array<std::uint8_t, 16>& bound_address,
                                          std::uint16_t bound_port) noexcept {
  std::array<std::uint8_t, 22> out{};
  out[0] = version_5;
  out[1] = static_cast<std::uint8_t>(code);
  out[2] = 0x00;
  out[3] = atyp_ipv6;
  std::copy(bound_address.begin(), bound_address.end(), out.begin() + 4);
  out[20] = static_cast<std::uint8_t>(bound_port >> 8);
  out[21] = static_cast<std::uint8_t>(bound_port & 0xFF);
  return out;
}

socks5_reply_code socks5_reply_for(parse_errc e) noexcept {
  switch (e) {
    case parse_errc::bad_command: return socks5_reply_code::command_not_supported;
    case parse_errc::bad_address_type: return socks5_reply_code::address_type_not_supported;
    default: return socks5_reply_code::general_failure;
  }
}

std::ostream& operator<<(std::ostream& os, const socks5_greeting& g) {
  os << "socks5_greeting{methods=[";
  for (std::size_t i = 0; i < g.methods.size(); ++i) {
    os << (i ? "," : "") << static_cast<unsigned>(g.methods[i]);
  }
  return os << "]}";
}

std::ostream& operator<<(std::ostream& os, const socks5_credentials& c) {
  os << "socks5_credentials{username=";
  print_escaped(os, c.username);
  return os << ", password=<redacted>}";
}

std::ostream& operator<<(std::ostream& os, socks5_command c) {
  switch (c) {
    case socks5_command::connect: return os << "connect";
    case socks5_command::bind: return os << "bind";
    case socks5_command::udp_associate: return os << "udp_associate";
  }
  return os << "command(" << static_cast<unsigned>(c) << ')';
}

std::ostream& operator<<(std::ostream& os, socks5_address_type t) {
  switch (t) {
    case socks5_address_type::ipv4: return os << "ipv4";
    case socks5_address_type::domain: return os << "domain";
    case socks5_address_type::ipv6: return os << "ipv6";
  }
  return os << "atyp(" << static_cast<unsigned>(t) << ')';
}

std::ostream& operator<<(std::ostream& os, socks5_reply_code r) {
  switch (r) {
    case socks5_reply_code::succeeded: return os << "succeeded";
    case socks5_reply_code::general_failure: return os << "general_failure";
    case socks5_reply_code::not_allowed: return os << "not_allowed";
    case socks5_reply_code::network_unreachable: return os << "network_unreachable";
    case socks5_reply_code::host_unreachable: return os << "host_unreachable";
    case socks5_reply_code::connection_refused: return os << "connection_refused";
    case socks5_reply_code::ttl_expired: return os << "ttl_expired";
    case socks5_reply_code::command_not_supported: return os << "command_not_supported";
    case socks5_reply_code::address_type_not_supported:
      return os << "address_type_not_supported";
  }
  return os << "reply(" << static_cast<unsigned>(r) << ')';
}

std::ostream& operator<<(std::ostream& os, const socks5_request& r) {
  os << "socks5_request{" << r.command << ' ' << r.address_type << ' ';
  switch (r.address_type) {
    case socks5_address_type::ipv4:
      os << static_cast<unsigned>(r.address[0]) << '.' << static_cast<unsigned>(r.address[1]) << '.'
         << static_cast<unsigned>(r.address[2]) << '.' << static_cast<unsigned>(r.address[3]);
      break;
    case socks5_address_type::ipv6: {
      // RFC 4291 §2.2 form 1 (every group, no compression): enough to read a test failure.
      const auto flags = os.flags();
      os << '[' << std::hex;
      for (std::size_t g = 0; g < 8; ++g)
        os << (g ? ":" : "") << ((static_cast<unsigned>(r.address[2 * g]) << 8) | r.address[2 * g + 1]);
      os.flags(flags);
      os << ']';
      break;
    }
    case socks5_address_type::domain: print_escaped(os, r.domain); break;
  }
  return os << ':' << r.port << '}';
}

}  // namespace egressd::proxy::protocol
