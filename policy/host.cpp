#include "policy/host.hpp"

#include <algorithm>

namespace egressd::policy {

std::string_view to_string(host_errc e) noexcept {
  switch (e) {
    case host_errc::empty: return "empty host";
    case host_errc::too_long: return "host longer than 253 characters";
    case host_errc::bad_character: return "host has a character outside letters, digits, '.', '-' and '_'";
    case host_errc::non_ascii: return "host is not ASCII (give internationalised names in punycode, xn--...)";
    case host_errc::wildcard: return "'*' is not allowed in a host";
    case host_errc::empty_label: return "host has an empty label";
    case host_errc::zone_id: return "IPv6 zone ids ('%') are not allowed";
    case host_errc::bad_ipv6: return "not a valid IPv6 address";
  }
  return "invalid host";
}

std::ostream& operator<<(std::ostream& os, host_errc e) { return os << to_string(e); }

namespace {

constexpr std::size_t max_host_length = 253;  // RFC 1035 §2.3.4, as text without the root dot

host_result fail(host_errc e) { return host_result{std::nullopt, e}; }

host_result from_address(const ip_address& a) {
  ip_address plain = unmap(a);
  canonical_host h;
  h.text = plain.to_string();
  h.kind = plain.is_v4() ? host_kind::ipv4 : host_kind::ipv6;
  h.address = plain;
  return host_result{std::move(h), host_errc::empty};
}

}  // namespace

host_result canonicalize_host(std::string_view raw) {
  bool bracketed = false;
  if (!raw.empty() && raw.front() == '[') {
    if (raw.size() < 2 || raw.back() != ']') return fail(host_errc::bad_ipv6);
    raw = raw.substr(1, raw.size() - 2);
    bracketed = true;
  }
  if (raw.empty()) return fail(host_errc::empty);

  std::string text(raw);
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }

  if (bracketed || text.find(':') != std::string::npos) {
    if (text.find('%') != std::string::npos) return fail(host_errc::zone_id);
    auto a = parse_ipv6(text);
    if (!a) return fail(host_errc::bad_ipv6);
    return from_address(*a);
  }

  if (text.back() == '.') text.pop_back();
  if (text.empty()) return fail(host_errc::empty);

  for (unsigned char c : text) {
    if (c >= 0x80) return fail(host_errc::non_ascii);
  }
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
    if (!ok) return fail(c == '*' ? host_errc::wildcard : c == '%' ? host_errc::zone_id : host_errc::bad_character);
  }
  if (text.size() > max_host_length) return fail(host_errc::too_long);
  if (text.front() == '.' || text.back() == '.' || text.find("..") != std::string::npos)
    return fail(host_errc::empty_label);

  auto v4 = parse_ipv4_loose(text);
  if (v4.status == ipv4_parse_status::ok) return from_address(v4.address);

  canonical_host h;
  h.text = std::move(text);
  h.kind = host_kind::name;
  return host_result{std::move(h), host_errc::empty};
}

}  // namespace egressd::policy
