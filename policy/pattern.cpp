#include "policy/pattern.hpp"

#include <algorithm>
#include <charconv>

#include "policy/host.hpp"

namespace egressd::policy {

std::string_view to_string(list_kind k) noexcept { return k == list_kind::allow ? "allow" : "deny"; }

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::size_t count_char(std::string_view s, char c) noexcept {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), c));
}

// sandbox-runtime's parsePortSuffix: /^[1-9][0-9]{0,4}$/ and <= 65535.
std::optional<std::uint16_t> parse_port_suffix(std::string_view s) noexcept {
  if (s.empty() || s.size() > 5 || s[0] < '1' || s[0] > '9') return std::nullopt;
  if (!std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  unsigned v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  if (v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

std::string drop_zone(std::string_view s) { return std::string(s.substr(0, s.find('%'))); }

// canonicalizeHost for an IP-ish pattern host: compressed IPv6 / unmapped IPv4, or as is.
std::string canonical_or_same(const std::string& s) {
  auto h = canonicalize_host(s);
  if (h.ok() && h.host->is_ip()) return h.host->text;
  return s;
}

pattern_result ok(pattern p) { return pattern_result{std::move(p), {}}; }
pattern_result error(std::string message, std::string hint = {}) {
  return pattern_result{std::nullopt, pattern_error{std::move(message), std::move(hint)}};
}

bool has_non_ascii(std::string_view s) noexcept {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

std::size_t label_count(std::string_view s) noexcept { return count_char(s, '.') + 1; }

// ---- sandbox-runtime grammar ------------------------------------------------------

// isValidDomainPattern, for the host part left after the port split.
bool srt_valid_host_pattern(std::string_view host_pattern, list_kind list) {
  if (list == list_kind::deny && host_pattern == "*") return true;
  if (parse_ipv6(host_pattern)) return true;
  if (host_pattern.find("://") != std::string_view::npos || host_pattern.find('/') != std::string_view::npos ||
      host_pattern.find(':') != std::string_view::npos)
    return false;
  if (host_pattern == "localhost") return true;
  if (host_pattern.starts_with("*.")) {
    std::string_view domain = host_pattern.substr(2);
    if (domain.find('.') == std::string_view::npos || domain.front() == '.' || domain.back() == '.') return false;
    return domain.find("..") == std::string_view::npos;
  }
  if (host_pattern.find('*') != std::string_view::npos) return false;
  return host_pattern.find('.') != std::string_view::npos && host_pattern.front() != '.' &&
         host_pattern.back() != '.';
}

pattern_result parse_srt(std::string_view text, list_kind list) {
  // hasValidIpv6Bracketing: two or more colons need brackets.
  if (count_char(text, ':') >= 2 && !text.starts_with('['))
    return error("an IPv6 address must be written in brackets", "write [" + std::string(text) + "]");
  port_split split = split_pattern_port(text);
  if (!srt_valid_host_pattern(split.host_pattern, list)) {
    if (split.host_pattern == "*" || split.host_pattern.starts_with("*:"))
      return error("'*' alone is only accepted in deniedDomains");
    return error("invalid domain pattern",
                 "use a domain (example.com), a wildcard (*.example.com) or a bracketed IPv6 literal ([::1]); "
                 "overly broad patterns like *.com are refused");
  }
  pattern p;
  p.port = split.port.value_or(0);
  const std::string host = lower(split.host_pattern);
  if (host == "*") {
    p.kind = pattern_kind::any;
    return ok(std::move(p));
  }
  if (host.starts_with("*.")) {
    std::string suffix = host.substr(2);
    if (!is_name_text(suffix)) {
      p.kind = pattern_kind::never;
      p.note = "sandbox-runtime accepts this wildcard but it can never match a valid host";
      return ok(std::move(p));
    }
    p.kind = pattern_kind::subdomains;
    p.name = std::move(suffix);
    return ok(std::move(p));
  }
  if (auto a = parse_ip(host)) {
    p.kind = pattern_kind::address;
    p.range = single_address(unmap(*a));
    return ok(std::move(p));
  }
  if (!is_name_text(host) || parse_ipv4_loose(host).status == ipv4_parse_status::ok) {
    p.kind = pattern_kind::never;
    p.note = "sandbox-runtime compares this entry as written, so it can never match a canonical host";
    return ok(std::move(p));
  }
  p.kind = pattern_kind::exact;
  p.name = host;
  return ok(std::move(p));
}

// ---- egressd grammar --------------------------------------------------------------

pattern_result parse_name_pattern(std::string_view host, std::uint16_t port, list_kind list) {
  pattern p;
  p.port = port;
  if (host == "*") {
    if (list == list_kind::allow)
      return error("'*' alone is only allowed in deny",
                   "to let unknown destinations through while logging them, set `unknown: allow`");
    p.kind = pattern_kind::any;
    return ok(std::move(p));
  }
  if (host.find("://") != std::string_view::npos || host.find('/') != std::string_view::npos) {
    std::string_view h = host;
    if (auto s = h.find("://"); s != std::string_view::npos) h.remove_prefix(s + 3);
    h = h.substr(0, h.find('/'));
    return error("a pattern names a host, not a URL", "write " + std::string(h));
  }
  if (has_non_ascii(host))
    return error("internationalised names must be written in punycode", "write the xn-- form of the name");
  std::string text = lower(host);
  if (text.find(':') != std::string::npos)
    return error("unexpected ':' in the host", "an IPv6 address must be bracketed, and a port is 1-65535");

  pattern_kind kind = pattern_kind::exact;
  if (text.starts_with("**.")) {
    kind = pattern_kind::apex_and_subdomains;
    text.erase(0, 3);
  } else if (text.starts_with("*.")) {
    kind = pattern_kind::subdomains;
    text.erase(0, 2);
  }
  if (text.find('*') != std::string::npos)
    return error("a wildcard may only be the whole first label ('*.' or '**.')",
                 "write *.example.com for subdomains or **.example.com for the domain and its subdomains");
  if (!text.empty() && text.back() == '.') {
    text.pop_back();
    return error("patterns are written without the trailing dot", "write " + std::string(host.substr(0, host.size() - 1)));
  }
  if (!is_name_text(text)) return error("not a valid domain name (letters, digits, '-', '_', single dots)");
  if (kind == pattern_kind::exact) {
    auto v4 = parse_ipv4_loose(text);
    if (v4.status == ipv4_parse_status::ok)
      return error("IPv4 addresses are written as four decimal numbers", "write " + v4.address.to_string());
    if (label_count(text) < 2 && text != "localhost")
      return error("a single-label name is too broad to be a rule", "write the full domain name");
  } else if (label_count(text) < 2 && list == list_kind::allow) {  // a broad deny (`*.ru`) is legitimate
    return error("a wildcard over a top-level domain is too broad", "name a registrable domain, e.g. *.example.com");
  }
  p.kind = kind;
  p.name = std::move(text);
  return ok(std::move(p));
}

pattern_result parse_egressd(std::string_view text, list_kind list) {
  if (text.empty()) return error("empty pattern");
  if (text.front() == '@') {
    std::string name = lower(text.substr(1));
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        }))
      return error("a preset is written @name", "egressd check-config lists the presets");
    pattern p;
    p.kind = pattern_kind::preset;
    p.name = std::move(name);
    return ok(std::move(p));
  }

  if (text.find("://") != std::string_view::npos || text.find('/') == 0) return parse_name_pattern(text, 0, list);

  std::string_view host = text;
  std::uint16_t port = 0;
  std::optional<std::uint8_t> prefix;

  auto take_port = [&](std::string_view rest) -> bool {
    if (rest.empty()) return true;
    if (rest.front() != ':') return false;
    auto p = parse_port_suffix(rest.substr(1));
    if (!p) return false;
    port = *p;
    return true;
  };
  auto take_prefix = [&](std::string_view& rest, unsigned max) -> bool {
    if (rest.empty() || rest.front() != '/') return true;
    rest.remove_prefix(1);
    std::size_t n = 0;
    while (n < rest.size() && rest[n] >= '0' && rest[n] <= '9') ++n;
    std::string_view digits = rest.substr(0, n);
    if (digits.empty() || digits.size() > 3 || (digits.size() > 1 && digits[0] == '0')) return false;
    unsigned v = 0;
    std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (v > max) return false;
    prefix = static_cast<std::uint8_t>(v);
    rest.remove_prefix(n);
    return true;
  };

  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return error("unclosed '[' in an IPv6 pattern", "write [2001:db8::1]");
    std::string_view inner = text.substr(1, close - 1);
    if (inner.find('%') != std::string_view::npos) return error("IPv6 zone ids are not allowed in rules");
    auto a = parse_ipv6(inner);
    if (!a) return error("not a valid IPv6 address inside the brackets");
    std::string_view rest = text.substr(close + 1);
    if (!take_prefix(rest, 128)) return error("bad prefix length", "write [fd00::]/8");
    if (!take_port(rest)) return error("bad port suffix", "a port is 1-65535 without leading zeros");
    address_range r = prefix ? address_range{mask(*a, *prefix), *prefix} : single_address(*a);
    if (auto mapped = parse_address_range(r.to_string())) r = *mapped;  // ::ffff:a.b.c.d → IPv4
    pattern p;
    p.kind = pattern_kind::address;
    p.range = r;
    p.port = port;
    return ok(std::move(p));
  }
  if (count_char(text, ':') >= 2)
    return error("an IPv6 address must be written in brackets", "write [" + std::string(text) + "]");

  if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
    if (!take_port(text.substr(colon))) return error("bad port suffix", "a port is 1-65535 without leading zeros");
    host = text.substr(0, colon);
  }
  if (auto slash = host.find('/'); slash != std::string_view::npos && host.find("://") == std::string_view::npos) {
    std::string_view rest = host.substr(slash);
    auto a = parse_ipv4_strict(host.substr(0, slash));
    if (!a) return error("a CIDR range needs an IPv4 address before '/'", "write 10.0.0.0/8");
    if (!take_prefix(rest, 32) || !rest.empty()) return error("bad prefix length", "write 10.0.0.0/8");
    pattern p;
    p.kind = pattern_kind::address;
    p.range = address_range{mask(*a, *prefix), *prefix};
    p.port = port;
    return ok(std::move(p));
  }
  if (auto a = parse_ipv4_strict(host)) {
    pattern p;
    p.kind = pattern_kind::address;
    p.range = single_address(*a);
    p.port = port;
    return ok(std::move(p));
  }
  return parse_name_pattern(host, port, list);
}

}  // namespace

bool is_name_text(std::string_view text) noexcept {
  if (text.empty() || text.front() == '.' || text.back() == '.') return false;
  char prev = 0;
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '-' || c == '_';
    if (!ok || (c == '.' && prev == '.')) return false;
    prev = c;
  }
  return true;
}

port_split split_pattern_port(std::string_view pattern) {
  if (pattern.starts_with('[')) {
    auto close = pattern.find(']');
    if (close == std::string_view::npos) return {std::string(pattern), std::nullopt};
    std::string inner = drop_zone(pattern.substr(1, close - 1));
    std::string host = canonical_or_same(inner);
    std::string_view rest = pattern.substr(close + 1);
    if (rest.empty()) return {host, std::nullopt};
    auto port = parse_port_suffix(rest.starts_with(':') ? rest.substr(1) : std::string_view{});
    if (!port) return {std::string(pattern), std::nullopt};
    return {host, port};
  }
  auto idx = pattern.rfind(':');
  if (idx == std::string_view::npos) return {std::string(pattern), std::nullopt};
  if (pattern.find(':') != idx) {
    std::string host = drop_zone(pattern);
    return {canonical_or_same(host), std::nullopt};
  }
  auto port = parse_port_suffix(pattern.substr(idx + 1));
  if (!port) return {std::string(pattern), std::nullopt};
  return {std::string(pattern.substr(0, idx)), port};
}

pattern_result parse_pattern(std::string_view text, list_kind list, grammar syntax) {
  return syntax == grammar::srt ? parse_srt(text, list) : parse_egressd(text, list);
}

}  // namespace egressd::policy
