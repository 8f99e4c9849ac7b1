#include "policy/address.hpp"

#include <algorithm>
#include <charconv>

namespace egressd::policy {

namespace {

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool starts_with_hex_prefix(std::string_view s) noexcept {
  return s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
}

// One part of a URL-style IPv4 address (WHATWG URL "IPv4 number parser").
// Values are capped just above 2^32 so nothing overflows.
std::optional<std::uint64_t> parse_ipv4_number(std::string_view part) noexcept {
  if (part.empty()) return std::nullopt;
  unsigned radix = 10;
  if (starts_with_hex_prefix(part)) {
    radix = 16;
    part.remove_prefix(2);
  } else if (part.size() > 1 && part[0] == '0') {
    radix = 8;
    part.remove_prefix(1);
  }
  std::uint64_t value = 0;
  for (char c : part) {
    int d = hex_value(c);
    if (d < 0 || static_cast<unsigned>(d) >= radix) return std::nullopt;
    value = value * radix + static_cast<unsigned>(d);
    if (value > (std::uint64_t{1} << 33)) value = std::uint64_t{1} << 33;
  }
  return value;
}

// WHATWG URL "ends in a number": the last label is all digits, or 0x followed by hex.
bool ends_in_number(std::string_view host) noexcept {
  auto dot = host.rfind('.');
  std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  if (last.empty()) return false;
  if (std::all_of(last.begin(), last.end(), is_digit)) return true;
  if (starts_with_hex_prefix(last)) {
    return std::all_of(last.begin() + 2, last.end(), [](char c) { return hex_value(c) >= 0; });
  }
  return false;
}

}  // namespace

ip_address ip_address::from_v4(std::uint32_t host_order) noexcept {
  ip_address a;
  a.family = family_t::v4;
  a.bytes[0] = static_cast<std::uint8_t>(host_order >> 24);
  a.bytes[1] = static_cast<std::uint8_t>(host_order >> 16);
  a.bytes[2] = static_cast<std::uint8_t>(host_order >> 8);
  a.bytes[3] = static_cast<std::uint8_t>(host_order);
  return a;
}

ip_address ip_address::from_v6(const std::array<std::uint8_t, 16>& b) noexcept {
  ip_address a;
  a.family = family_t::v6;
  a.bytes = b;
  return a;
}

std::uint32_t ip_address::v4() const noexcept {
  return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
         (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]};
}

std::string ip_address::to_string() const {
  std::string out;
  if (is_v4()) {
    for (int i = 0; i < 4; ++i) {
      if (i) out += '.';
      out += std::to_string(bytes[static_cast<std::size_t>(i)]);
    }
    return out;
  }
  // RFC 5952 §5: IPv4-mapped addresses in mixed notation.
  if (std::all_of(bytes.begin(), bytes.begin() + 10, [](std::uint8_t b) { return b == 0; }) && bytes[10] == 0xFF &&
      bytes[11] == 0xFF) {
    out = "::ffff:";
    for (std::size_t i = 12; i < 16; ++i) {
      if (i > 12) out += '.';
      out += std::to_string(bytes[i]);
    }
    return out;
  }
  std::array<unsigned, 8> groups{};
  for (std::size_t i = 0; i < 8; ++i) groups[i] = (unsigned{bytes[2 * i]} << 8) | bytes[2 * i + 1];
  // RFC 5952 §4.2: compress the longest run of two or more zero groups, the first on a tie.
  int best_start = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (groups[static_cast<std::size_t>(i)] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && groups[static_cast<std::size_t>(j)] == 0) ++j;
    if (j - i > best_len && j - i >= 2) {
      best_start = i;
      best_len = j - i;
    }
    i = j;
  }
  static constexpr char digits[] = "0123456789abcdef";
  for (int i = 0; i < 8; ++i) {
    if (i == best_start) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    unsigned g = groups[static_cast<std::size_t>(i)];
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
      unsigned d = (g >> shift) & 0xF;
      if (d || started || shift == 0) {
        out += digits[d];
        started = true;
      }
    }
  }
  return out;
}

std::optional<ip_address> parse_ipv4_strict(std::string_view text) noexcept {
  std::uint32_t value = 0;
  int parts = 0;
  while (parts < 4) {
    auto dot = text.find('.');
    std::string_view part = text.substr(0, dot);
    if (part.empty() || part.size() > 3 || (part.size() > 1 && part[0] == '0')) return std::nullopt;
    if (!std::all_of(part.begin(), part.end(), is_digit)) return std::nullopt;
    unsigned octet = 0;
    std::from_chars(part.data(), part.data() + part.size(), octet);
    if (octet > 255) return std::nullopt;
    value = (value << 8) | octet;
    ++parts;
    if (dot == std::string_view::npos) break;
    text.remove_prefix(dot + 1);
  }
  if (parts != 4 || text.find('.') != std::string_view::npos) return std::nullopt;
  return ip_address::from_v4(value);
}

loose_ipv4 parse_ipv4_loose(std::string_view text) noexcept {
  if (!ends_in_number(text)) return {};
  std::array<std::uint64_t, 4> numbers{};
  std::size_t count = 0;
  while (true) {
    auto dot = text.find('.');
    if (count == 4) return {ipv4_parse_status::invalid, {}};
    auto n = parse_ipv4_number(text.substr(0, dot));
    if (!n) return {ipv4_parse_status::invalid, {}};
    numbers[count++] = *n;
    if (dot == std::string_view::npos) break;
    text.remove_prefix(dot + 1);
  }
  for (std::size_t i = 0; i + 1 < count; ++i) {
    if (numbers[i] > 255) return {ipv4_parse_status::invalid, {}};
  }
  const std::uint64_t last_limit = std::uint64_t{1} << (8 * (5 - count));
  if (numbers[count - 1] >= last_limit) return {ipv4_parse_status::invalid, {}};
  std::uint64_t value = numbers[count - 1];
  for (std::size_t i = 0; i + 1 < count; ++i) value += numbers[i] << (8 * (3 - i));
  return {ipv4_parse_status::ok, ip_address::from_v4(static_cast<std::uint32_t>(value))};
}

std::optional<ip_address> parse_ipv6(std::string_view text) noexcept {
  // RFC 4291 §2.2: eight groups of 1-4 hex digits, one "::" standing for one or more
  // zero groups, and optionally a dotted quad in place of the last two groups.
  std::array<std::uint16_t, 8> groups{};
  int count = 0;
  int gap = -1;  // index where "::" stands
  if (text.size() < 2) return std::nullopt;
  std::size_t i = 0;
  if (text[0] == ':') {
    if (text[1] != ':') return std::nullopt;
    gap = 0;
    i = 2;
    if (i == text.size()) return ip_address::from_v6({});
  }
  while (i < text.size()) {
    if (count == 8) return std::nullopt;
    // A dotted quad ends the address.
    std::size_t end = text.find(':', i);
    std::string_view piece = text.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i);
    if (piece.find('.') != std::string_view::npos) {
      if (end != std::string_view::npos || count > 6) return std::nullopt;
      auto v4 = parse_ipv4_strict(piece);
      if (!v4) return std::nullopt;
      groups[static_cast<std::size_t>(count++)] = static_cast<std::uint16_t>(v4->v4() >> 16);
      groups[static_cast<std::size_t>(count++)] = static_cast<std::uint16_t>(v4->v4() & 0xFFFF);
      i = text.size();
      break;
    }
    if (piece.empty() || piece.size() > 4) return std::nullopt;
    unsigned value = 0;
    for (char c : piece) {
      int d = hex_value(c);
      if (d < 0) return std::nullopt;
      value = value * 16 + static_cast<unsigned>(d);
    }
    groups[static_cast<std::size_t>(count++)] = static_cast<std::uint16_t>(value);
    if (end == std::string_view::npos) {
      i = text.size();
      break;
    }
    i = end + 1;
    if (i < text.size() && text[i] == ':') {
      if (gap >= 0) return std::nullopt;
      gap = count;
      ++i;
    } else if (i == text.size()) {
      return std::nullopt;  // trailing single ':'
    }
  }
  if (gap < 0 && count != 8) return std::nullopt;
  if (gap >= 0 && count == 8) return std::nullopt;  // "::" must stand for at least one group
  std::array<std::uint8_t, 16> bytes{};
  int tail = gap < 0 ? 0 : count - gap;
  for (int g = 0; g < count; ++g) {
    int position = (gap >= 0 && g >= gap) ? 8 - tail + (g - gap) : g;
    bytes[static_cast<std::size_t>(2 * position)] = static_cast<std::uint8_t>(groups[static_cast<std::size_t>(g)] >> 8);
    bytes[static_cast<std::size_t>(2 * position + 1)] = static_cast<std::uint8_t>(groups[static_cast<std::size_t>(g)]);
  }
  return ip_address::from_v6(bytes);
}

std::optional<ip_address> parse_ip(std::string_view text) noexcept {
  if (text.find(':') != std::string_view::npos) return parse_ipv6(text);
  return parse_ipv4_strict(text);
}

namespace {
bool bytes_zero(const ip_address& a, std::size_t from, std::size_t to) noexcept {
  for (std::size_t i = from; i < to; ++i)
    if (a.bytes[i] != 0) return false;
  return true;
}
ip_address v4_from_bytes(const ip_address& a, std::size_t at) noexcept {
  return ip_address::from_v4((std::uint32_t{a.bytes[at]} << 24) | (std::uint32_t{a.bytes[at + 1]} << 16) |
                             (std::uint32_t{a.bytes[at + 2]} << 8) | std::uint32_t{a.bytes[at + 3]});
}
bool is_mapped(const ip_address& a) noexcept {
  return a.is_v6() && bytes_zero(a, 0, 10) && a.bytes[10] == 0xFF && a.bytes[11] == 0xFF;
}
bool is_teredo(const ip_address& a) noexcept {
  return a.is_v6() && a.bytes[0] == 0x20 && a.bytes[1] == 0x01 && a.bytes[2] == 0x00 && a.bytes[3] == 0x00;
}
}  // namespace

ip_address unmap(const ip_address& a) noexcept { return is_mapped(a) ? v4_from_bytes(a, 12) : a; }

std::optional<ip_address> embedded_ipv4(const ip_address& a) noexcept {
  if (!a.is_v6()) return std::nullopt;
  if (is_mapped(a)) return v4_from_bytes(a, 12);
  // ::ffff:0:a.b.c.d, IPv4-translated (RFC 2765 §2.1)
  if (bytes_zero(a, 0, 8) && a.bytes[8] == 0xFF && a.bytes[9] == 0xFF && a.bytes[10] == 0 && a.bytes[11] == 0)
    return v4_from_bytes(a, 12);
  // ::a.b.c.d, IPv4-compatible (RFC 4291 §2.5.5.1, deprecated but routable by some stacks)
  if (bytes_zero(a, 0, 12)) return v4_from_bytes(a, 12);
  // 64:ff9b::/96, NAT64 well-known prefix (RFC 6052 §2.1)
  if (a.bytes[0] == 0x00 && a.bytes[1] == 0x64 && a.bytes[2] == 0xFF && a.bytes[3] == 0x9B && bytes_zero(a, 4, 12))
    return v4_from_bytes(a, 12);
  // 64:ff9b:1::/48, the local-use NAT64 prefix (RFC 8215 §3). RFC 6052 §2.2 places the
  // IPv4 address by the length of the prefix the network chose inside it, which an
  // address does not tell; we judge the /96 layout (the last 32 bits), the one NAT64
  // deployments use, whatever bits 48..95 hold.
  if (a.bytes[0] == 0x00 && a.bytes[1] == 0x64 && a.bytes[2] == 0xFF && a.bytes[3] == 0x9B && a.bytes[4] == 0x00 &&
      a.bytes[5] == 0x01)
    return v4_from_bytes(a, 12);
  // 2002::/16, 6to4 (RFC 3056 §2): the IPv4 address is in bits 16..47
  if (a.bytes[0] == 0x20 && a.bytes[1] == 0x02) return v4_from_bytes(a, 2);
  // 2001::/32, Teredo (RFC 4380 §4): the client's IPv4 address is the last 32 bits,
  // each bit inverted (teredo_server() gives the server's, bits 32..63).
  if (is_teredo(a)) {
    ip_address client = v4_from_bytes(a, 12);
    for (std::size_t i = 0; i < 4; ++i) client.bytes[i] = static_cast<std::uint8_t>(~client.bytes[i]);
    return client;
  }
  return std::nullopt;
}

std::optional<ip_address> teredo_server(const ip_address& a) noexcept {
  if (!is_teredo(a)) return std::nullopt;
  return v4_from_bytes(a, 4);
}

ip_address mask(const ip_address& a, std::uint8_t prefix) noexcept {
  ip_address out = a;
  const std::size_t total = a.is_v4() ? 4 : 16;
  for (std::size_t i = 0; i < total; ++i) {
    const int bits_here = static_cast<int>(prefix) - static_cast<int>(8 * i);
    if (bits_here >= 8) continue;
    if (bits_here <= 0)
      out.bytes[i] = 0;
    else
      out.bytes[i] = static_cast<std::uint8_t>(out.bytes[i] & (0xFF << (8 - bits_here)));
  }
  return out;
}

bool address_range::contains(const ip_address& a) const noexcept {
  if (a.family != base.family) return false;
  return mask(a, prefix) == base;
}

std::string address_range::to_string() const { return base.to_string() + "/" + std::to_string(prefix); }

address_range single_address(const ip_address& a) noexcept {
  return {a, static_cast<std::uint8_t>(a.is_v4() ? 32 : 128)};
}

std::optional<address_range> parse_address_range(std::string_view text) noexcept {
  auto slash = text.find('/');
  std::string_view addr_text = text.substr(0, slash);
  auto addr = parse_ip(addr_text);
  if (!addr) return std::nullopt;
  unsigned prefix = addr->is_v4() ? 32 : 128;
  if (slash != std::string_view::npos) {
    std::string_view p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3 || !std::all_of(p.begin(), p.end(), is_digit)) return std::nullopt;
    if (p.size() > 1 && p[0] == '0') return std::nullopt;
    std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (prefix > (addr->is_v4() ? 32u : 128u)) return std::nullopt;
  }
  // An IPv4-mapped range names IPv4 addresses: addresses are unmapped before matching.
  if (is_mapped(*addr) && prefix >= 96) {
    return address_range{mask(v4_from_bytes(*addr, 12), static_cast<std::uint8_t>(prefix - 96)),
                         static_cast<std::uint8_t>(prefix - 96)};
  }
  return address_range{mask(*addr, static_cast<std::uint8_t>(prefix)), static_cast<std::uint8_t>(prefix)};
}

}  // namespace egressd::policy
