// Decision tables for the egressd grammar (README "Policy semantics"): each pattern form,
// precedence, canonicalisation, invalid hosts and patterns, the guard's classes and
// presets. Every row states the expected outcome AND reason.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "policy/guard.hpp"
#include "policy/host.hpp"
#include "policy/pattern.hpp"
#include "policy/presets.hpp"
#include "policy/snapshot.hpp"

using namespace egressd::policy;

namespace {

// The reason most classify() calls pass: the name was allowed by a rule.
constexpr decision_reason by_rule = decision_reason::allowed_by_rule;

std::vector<rule_entry> to_entries(std::initializer_list<const char*> list) {
  std::vector<rule_entry> out;
  int line = 1;
  for (const char* s : list) out.push_back({s, {"test.yaml", "policy", line++, 1}});
  return out;
}

std::shared_ptr<const snapshot> make(std::initializer_list<const char*> allow, std::initializer_list<const char*> deny,
                                     unknown_mode unknown = unknown_mode::ask, bool allow_private = false) {
  rules r;
  r.allow = to_entries(allow);
  r.deny = to_entries(deny);
  r.unknown = unknown;
  r.guard.allow_private = allow_private;
  compile_options o;
  o.is_public_suffix = [](std::string_view s) { return s == "co.uk" || s == "com" || s == "github.io"; };
  auto c = compile(r, o);
  INFO((c.problems.empty() ? std::string() : c.problems.front().entry + ": " + c.problems.front().message));
  REQUIRE(c.policy);
  return c.policy;
}

decision ask(const snapshot& s, const std::string& host, std::uint16_t port) {
  auto h = canonicalize_host(host);
  return decide(s, {&h, port, std::nullopt});
}

struct row {
  const char* host;
  std::uint16_t port;
  outcome result;
  decision_reason reason;
  const char* rule;  // text of the matching rule, or "" for none
};

void check_rows(const snapshot& s, const std::vector<row>& rows) {
  for (const auto& r : rows) {
    INFO(r.host << ":" << r.port);
    auto d = ask(s, r.host, r.port);
    CHECK(d.result == r.result);
    CHECK(d.reason == r.reason);
    if (std::string(r.rule).empty()) {
      CHECK(d.rule == no_rule);
    } else {
      REQUIRE(d.rule != no_rule);
      CHECK(s.rule(d.rule).text == r.rule);
    }
  }
}

}  // namespace

TEST_CASE("ip_address::to_string follows RFC 5952", "[unit][policy]") {
  struct row {
    std::array<std::uint16_t, 8> groups;
    std::string_view text;
  };
  const auto r = GENERATE(values<row>({
      {{0, 0, 0, 0, 0, 0, 0, 0}, "::"},
      {{0, 0, 0, 0, 0, 0, 0, 1}, "::1"},
      {{1, 0, 0, 0, 0, 0, 0, 0}, "1::"},
      {{0x2001, 0xdb8, 0, 0, 0, 0, 0, 1}, "2001:db8::1"},
      {{0x2001, 0xdb8, 0, 0, 1, 0, 0, 1}, "2001:db8::1:0:0:1"},      // §4.2.3: first of a tie
      {{0x2001, 0, 0, 1, 0, 0, 0, 1}, "2001:0:0:1::1"},              // §4.2.3: the longest
      {{0x2001, 0xdb8, 0, 1, 1, 1, 1, 1}, "2001:db8:0:1:1:1:1:1"},  // §4.2.2: not one group
      {{0x2001, 0xDB8, 0xABCD, 0x12, 0, 0, 0xF00, 0xFFFF}, "2001:db8:abcd:12::f00:ffff"},
      {{0xfe80, 0, 0, 0, 0x1ff, 0xfe23, 0x4567, 0x890a}, "fe80::1ff:fe23:4567:890a"},
      {{0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201}, "::ffff:192.0.2.1"},  // §5: IPv4-mapped
      {{0, 0, 0, 0, 0, 0, 0xc000, 0x0201}, "::c000:201"},
      {{0x64, 0xff9b, 0, 0, 0, 0, 0xc000, 0x0201}, "64:ff9b::c000:201"},
      {{1, 2, 3, 4, 5, 6, 7, 8}, "1:2:3:4:5:6:7:8"},
      {{1, 0, 0, 2, 0, 0, 0, 3}, "1:0:0:2::3"},
      {{0, 0, 1, 0, 0, 0, 0, 0}, "0:0:1::"},
  }));
  std::array<std::uint8_t, 16> a{};
  for (std::size_t i = 0; i < 8; ++i) {
    a[2 * i] = static_cast<std::uint8_t>(r.groups[i] >> 8);
    a[2 * i + 1] = static_cast<std::uint8_t>(r.groups[i] & 0xFF);
  }
  CHECK(ip_address::from_v6(a).to_string() == r.text);
}

TEST_CASE("each pattern form matches what it names", "[unit][policy]") {
  auto s = make({"example.com", "*.wild.test", "**.apex.test", "api.port.test:8443", "192.0.2.7", "198.51.100.0/24:22",
                 "[2001:db8::1]", "[2001:db8:1::]/48"},
                {});
  check_rows(*s, {
                     {"example.com", 443, outcome::allow, decision_reason::allowed_by_rule, "example.com"},
                     {"EXAMPLE.COM.", 80, outcome::allow, decision_reason::allowed_by_rule, "example.com"},
                     {"www.example.com", 443, outcome::ask, decision_reason::unknown_ask, ""},
                     {"a.wild.test", 443, outcome::allow, decision_reason::allowed_by_rule, "*.wild.test"},
                     {"a.b.c.wild.test", 443, outcome::allow, decision_reason::allowed_by_rule, "*.wild.test"},
                     {"wild.test", 443, outcome::ask, decision_reason::unknown_ask, ""},
                     {"notwild.test", 443, outcome::ask, decision_reason::unknown_ask, ""},
                     {"apex.test", 443, outcome::allow, decision_reason::allowed_by_rule, "**.apex.test"},
                     {"x.y.apex.test", 443, outcome::allow, decision_reason::allowed_by_rule, "**.apex.test"},
                     {"api.port.test", 8443, outcome::allow, decision_reason::allowed_by_rule, "api.port.test:8443"},
                     {"api.port.test", 443, outcome::ask, decision_reason::unknown_ask, ""},
                     {"192.0.2.7", 443, outcome::allow, decision_reason::allowed_by_rule, "192.0.2.7"},
                     {"0xc0.0.2.7", 443, outcome::allow, decision_reason::allowed_by_rule, "192.0.2.7"},
                     {"3221225991", 443, outcome::allow, decision_reason::allowed_by_rule, "192.0.2.7"},
                     {"[::ffff:192.0.2.7]", 443, outcome::allow, decision_reason::allowed_by_rule, "192.0.2.7"},
                     {"198.51.100.99", 22, outcome::allow, decision_reason::allowed_by_rule, "198.51.100.0/24:22"},
                     {"198.51.100.99", 23, outcome::ask, decision_reason::unknown_ask, ""},
                     {"[2001:db8:0::1]", 443, outcome::allow, decision_reason::allowed_by_rule, "[2001:db8::1]"},
                     {"2001:db8:1:ffff::5", 443, outcome::allow, decision_reason::allowed_by_rule, "[2001:db8:1::]/48"},
                     {"2001:db8:2::5", 443, outcome::ask, decision_reason::unknown_ask, ""},
                 });
}

TEST_CASE("wildcards never match IP literals", "[unit][policy]") {
  auto s = make({"*.2.0.192"}, {});
  check_rows(*s, {{"192.0.2.0", 443, outcome::ask, decision_reason::unknown_ask, ""},
                  {"a.2.0.192", 443, outcome::allow, decision_reason::allowed_by_rule, "*.2.0.192"}});
}

TEST_CASE("deny wins whatever the order of the lists", "[unit][policy]") {
  auto s = make({"**.example.com"}, {"bad.example.com", "*:22", "10.0.0.0/8"});
  check_rows(*s, {
                     {"bad.example.com", 443, outcome::deny, decision_reason::denied_by_rule, "bad.example.com"},
                     {"ok.example.com", 22, outcome::deny, decision_reason::denied_by_rule, "*:22"},
                     {"10.1.2.3", 22, outcome::deny, decision_reason::denied_by_rule, "10.0.0.0/8"},
                     {"ok.example.com", 443, outcome::allow, decision_reason::allowed_by_rule, "**.example.com"},
                 });
}

TEST_CASE("'*' alone is only accepted in deny", "[unit][policy]") {
  CHECK_FALSE(parse_pattern("*", list_kind::allow, grammar::egressd).value);
  CHECK_FALSE(parse_pattern("*:443", list_kind::allow, grammar::egressd).value);
  auto s = make({"good.test"}, {"*"});
  check_rows(*s, {{"good.test", 443, outcome::deny, decision_reason::denied_by_rule, "*"},
                  {"127.0.0.1", 80, outcome::deny, decision_reason::denied_by_rule, "*"}});
}

TEST_CASE("unknown destinations follow the unknown mode", "[unit][policy]") {
  check_rows(*make({}, {}, unknown_mode::deny), {{"x.test", 443, outcome::deny, decision_reason::unknown_denied, ""}});
  check_rows(*make({}, {}, unknown_mode::allow), {{"x.test", 443, outcome::allow, decision_reason::report_only, ""}});
  check_rows(*make({}, {}, unknown_mode::ask), {{"x.test", 443, outcome::ask, decision_reason::unknown_ask, ""}});
}

TEST_CASE("a remembered answer comes after the rules and before the unknown mode", "[unit][policy]") {
  auto s = make({"allowed.test"}, {"denied.test"});
  auto h1 = canonicalize_host("other.test");
  CHECK(decide(*s, {&h1, 443, outcome::allow}) == decision{outcome::allow, decision_reason::remembered_allow, no_rule});
  CHECK(decide(*s, {&h1, 443, outcome::deny}) == decision{outcome::deny, decision_reason::remembered_deny, no_rule});
  auto h2 = canonicalize_host("denied.test");
  CHECK(decide(*s, {&h2, 443, outcome::allow}).reason == decision_reason::denied_by_rule);
}

TEST_CASE("invalid hosts are denied with invalid_host", "[unit][policy]") {
  auto s = make({"**.example.com"}, {}, unknown_mode::allow);
  for (const char* bad : {"", ".", "a..example.com", ".example.com", "a b.example.com",
                          "fe80::1%eth0", "[::1", "::g", "b\xc3\xbc" "cher.example.com", "*.example.com",
                          "x/y.example.com", "user@example.com"}) {
    INFO("host=" << bad);
    auto d = ask(*s, bad, 443);
    CHECK(d.result == outcome::deny);
    CHECK(d.reason == decision_reason::invalid_host);
  }
  std::string nul_host("evil.com\0.example.com", 21);
  CHECK(ask(*s, nul_host, 443).reason == decision_reason::invalid_host);
  std::string long_host(250, 'a');
  long_host += ".example.com";
  CHECK(ask(*s, long_host, 443).reason == decision_reason::invalid_host);
  CHECK(ask(*s, "ok.example.com", 0).reason == decision_reason::invalid_host);
}

TEST_CASE("canonicalisation", "[unit][policy]") {
  struct {
    const char* in;
    const char* out;
    host_kind kind;
  } rows[] = {
      {"127.1", "127.0.0.1", host_kind::ipv4},
      {"0x7f.0.0.1", "127.0.0.1", host_kind::ipv4},
      {"0177.0.0.1", "127.0.0.1", host_kind::ipv4},
      {"2130706433", "127.0.0.1", host_kind::ipv4},
      {"0x7f000001", "127.0.0.1", host_kind::ipv4},
      {"127.0.0.1.", "127.0.0.1", host_kind::ipv4},
      {"[::ffff:127.0.0.1]", "127.0.0.1", host_kind::ipv4},
      {"::FFFF:7F00:1", "127.0.0.1", host_kind::ipv4},
      {"[2001:DB8:0:0:0:0:0:1]", "2001:db8::1", host_kind::ipv6},
      {"2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1", host_kind::ipv6},
      {"2001:0:0:1:0:0:0:1", "2001:0:0:1::1", host_kind::ipv6},
      {"2001:0:0:0:1:0:0:1", "2001::1:0:0:1", host_kind::ipv6},
      {"64:ff9b::7f00:1", "64:ff9b::7f00:1", host_kind::ipv6},
      {"Example.COM.", "example.com", host_kind::name},
      {"_dmarc.Example.com", "_dmarc.example.com", host_kind::name},
      {"256.1.1.1", "256.1.1.1", host_kind::name},
      {"xn--bcher-kva.de", "xn--bcher-kva.de", host_kind::name},
  };
  for (const auto& r : rows) {
    INFO(r.in);
    auto h = canonicalize_host(r.in);
    REQUIRE(h.ok());
    CHECK(h.host->text == r.out);
    CHECK(h.host->kind == r.kind);
  }
  CHECK(canonicalize_host("[fe80::1%25eth0]").error == host_errc::zone_id);
  CHECK(canonicalize_host("b\xc3\xbc" "cher.de").error == host_errc::non_ascii);
  CHECK(canonicalize_host("*.example.com").error == host_errc::wildcard);
  CHECK(canonicalize_host("a..b").error == host_errc::empty_label);
  CHECK(canonicalize_host("0..").error == host_errc::empty_label);  // found by fuzz_policy
  CHECK(canonicalize_host("example.com..").error == host_errc::empty_label);
  CHECK(canonicalize_host(std::string(254, 'a')).error == host_errc::too_long);
  CHECK(canonicalize_host(std::string(253, 'a')).ok());
}

TEST_CASE("invalid patterns are refused with a reason and a hint", "[unit][policy]") {
  struct {
    const char* text;
    const char* hint_contains;
  } rows[] = {
      {"*.com", "example.com"},
      {"*", "unknown: allow"},
      {"com", "full domain"},
      {"https://example.com/path", "example.com"},
      {"example.com.", "example.com"},
      {"*example.com", "*.example.com"},
      {"a.*.example.com", "*.example.com"},
      {"*.*.example.com", "*.example.com"},
      {"example.com:0", "1-65535"},
      {"example.com:65536", "1-65535"},
      {"example.com:0443", "1-65535"},
      {"2001:db8::1", "[2001:db8::1]"},
      {"127.1", "127.0.0.1"},
      {"10.0.0.0/33", "10.0.0.0/8"},
      {"[fd00::]/129", "[fd00::]/8"},
      {"b\xc3\xbc" "cher.de", "xn--"},
      {"@", "presets"},
  };
  for (const auto& r : rows) {
    INFO(r.text);
    auto p = parse_pattern(r.text, list_kind::allow, grammar::egressd);
    REQUIRE_FALSE(p.value);
    CHECK_FALSE(p.error.message.empty());
    CHECK_THAT(p.error.hint, Catch::Contains(r.hint_contains));
  }
}

TEST_CASE("compile reports every problem with its location", "[unit][policy]") {
  rules r;
  r.allow = to_entries({"ok.test", "*.com", "@nope", "*.co.uk", "**.github.io"});
  r.deny = to_entries({"bad pattern"});
  r.guard.deny_ranges = to_entries({"10.0.0.0/8", "not-a-range"});
  compile_options o;
  o.is_public_suffix = [](std::string_view s) { return s == "co.uk" || s == "github.io"; };
  auto c = compile(r, o);
  CHECK_FALSE(c.policy);
  std::vector<std::string> bad;
  for (const auto& p : c.problems) {
    CHECK_FALSE(p.warning);
    bad.push_back(p.entry + "@" + std::to_string(p.where.line));
  }
  CHECK(bad == std::vector<std::string>{"bad pattern@1", "*.com@2", "@nope@3", "*.co.uk@4", "**.github.io@5",
                                        "not-a-range@2"});
}

TEST_CASE("presets expand to their domains", "[unit][policy]") {
  REQUIRE(find_preset("github"));
  for (const char* name : {"github", "npm", "pypi", "crates", "go", "maven", "docker", "anthropic"}) {
    INFO(name);
    const preset* p = find_preset(name);
    REQUIRE(p);
    CHECK_FALSE(p->description.empty());
    CHECK_FALSE(preset_entries(*p).empty());
    // Every line of every preset is a valid pattern.
    for (const auto& line : preset_entries(*p)) CHECK(parse_pattern(line.text, list_kind::allow, grammar::egressd).value);
  }
  auto s = make({"@github", "@pypi"}, {"gist.github.com"});
  check_rows(*s, {
                     {"github.com", 443, outcome::allow, decision_reason::allowed_by_rule, "github.com"},
                     {"api.github.com", 443, outcome::allow, decision_reason::allowed_by_rule, "**.github.com"},
                     {"files.pythonhosted.org", 443, outcome::allow, decision_reason::allowed_by_rule,
                      "files.pythonhosted.org"},
                     {"gist.github.com", 443, outcome::deny, decision_reason::denied_by_rule, "gist.github.com"},
                     {"registry.npmjs.org", 443, outcome::ask, decision_reason::unknown_ask, ""},
                 });
  auto d = ask(*s, "api.github.com", 443);
  CHECK(s->rule(d.rule).preset == "@github");
}

TEST_CASE("guard classes", "[unit][guard]") {
  auto s = make({"**.example.com"}, {});
  auto host = *canonicalize_host("svc.example.com").host;
  const std::vector<ip_address> locals{*parse_ip("192.0.2.55"), *parse_ip("2001:db8:55::1")};
  struct {
    const char* ip;
    address_class expect;
  } rows[] = {
      {"127.0.0.1", address_class::loopback},
      {"127.255.0.9", address_class::loopback},
      {"::1", address_class::loopback},
      {"::ffff:127.0.0.1", address_class::loopback},
      {"64:ff9b::7f00:1", address_class::loopback},
      {"2002:7f00:1::1", address_class::loopback},
      {"::7f00:1", address_class::loopback},
      {"0.0.0.0", address_class::unspecified},
      {"::", address_class::unspecified},
      {"169.254.169.254", address_class::metadata},
      {"169.254.1.1", address_class::link_local},
      {"fe80::1", address_class::link_local},
      {"224.0.0.1", address_class::multicast},
      {"ff02::1", address_class::multicast},
      {"255.255.255.255", address_class::broadcast},
      {"100.100.100.200", address_class::metadata},
      {"192.0.0.192", address_class::metadata},
      {"fd00:ec2::254", address_class::metadata},
      {"240.0.0.1", address_class::reserved},
      {"192.0.2.55", address_class::own_address},
      {"2001:db8:55::1", address_class::own_address},
      {"10.1.2.3", address_class::private_network},
      {"172.16.0.1", address_class::private_network},
      {"192.168.1.1", address_class::private_network},
      {"::ffff:10.0.0.1", address_class::private_network},
      {"100.64.0.1", address_class::shared_address},
      {"fd12::1", address_class::unique_local},
      {"93.184.216.34", address_class::none},
      {"2606:2800:220:1::1", address_class::none},
      {"172.32.0.1", address_class::none},
  };
  for (const auto& r : rows) {
    INFO(r.ip);
    CHECK(classify(*s, host, by_rule, *parse_ip(r.ip), 443, locals).refused == r.expect);
  }
  auto open = make({"**.example.com"}, {}, unknown_mode::ask, true);
  CHECK(classify(*open, host, by_rule, *parse_ip("10.1.2.3"), 443, locals).allowed());
  CHECK(classify(*open, host, by_rule, *parse_ip("100.64.0.1"), 443, locals).allowed());
  CHECK(classify(*open, host, by_rule, *parse_ip("127.0.0.1"), 443, locals).refused == address_class::loopback);
  CHECK(classify(*open, host, by_rule, *parse_ip("fd00:ec2::254"), 443, locals).refused == address_class::metadata);
}

TEST_CASE("an explicit IP allow entry re-opens its range, per port", "[unit][guard]") {
  auto s = make({"svc.example.com", "127.0.0.1:8080", "10.0.0.0/8"}, {"10.9.9.9"});
  auto host = *canonicalize_host("svc.example.com").host;
  CHECK(classify(*s, host, by_rule, *parse_ip("127.0.0.1"), 8080, {}).allowed());
  CHECK(classify(*s, host, by_rule, *parse_ip("127.0.0.1"), 8081, {}).refused == address_class::loopback);
  CHECK(classify(*s, host, by_rule, *parse_ip("10.2.3.4"), 443, {}).allowed());
  CHECK(classify(*s, host, by_rule, *parse_ip("10.9.9.9"), 443, {}).refused == address_class::deny_listed);
  CHECK(classify(*s, host, by_rule, *parse_ip("64:ff9b::a09:909"), 443, {}).refused == address_class::deny_listed);
}

TEST_CASE("localhost names must resolve to loopback", "[unit][guard]") {
  auto s = make({"localhost", "*.localhost.example"}, {});
  auto lh = *canonicalize_host("localhost").host;
  auto sub = *canonicalize_host("app.localhost").host;
  CHECK(classify(*s, lh, by_rule, *parse_ip("127.0.0.1"), 80, {}).allowed());
  CHECK(classify(*s, lh, by_rule, *parse_ip("::1"), 80, {}).allowed());
  CHECK(classify(*s, sub, by_rule, *parse_ip("127.0.0.2"), 80, {}).allowed());
  CHECK(classify(*s, lh, by_rule, *parse_ip("192.0.2.1"), 80, {}).refused == address_class::non_loopback);
  CHECK(classify(*s, lh, by_rule, *parse_ip("64:ff9b::7f00:1"), 80, {}).refused == address_class::non_loopback);
}

TEST_CASE("guard deny_ranges refuse addresses and the IPv4 they embed", "[unit][guard]") {
  rules r;
  r.allow = to_entries({"**.example.com", "10.0.0.9"});
  r.guard.deny_ranges = to_entries({"10.0.0.0/8", "fd00::/8"});
  auto c = compile(r);
  REQUIRE(c.policy);
  auto host = *canonicalize_host("a.example.com").host;
  CHECK(classify(*c.policy, host, by_rule, *parse_ip("10.0.0.9"), 443, {}).refused == address_class::listed);
  CHECK(classify(*c.policy, host, by_rule, *parse_ip("64:ff9b::a00:9"), 443, {}).refused == address_class::listed);
  CHECK(classify(*c.policy, host, by_rule, *parse_ip("fd00::1"), 443, {}).refused == address_class::listed);
}

TEST_CASE("cloud metadata and host-agent addresses are their own class", "[unit][guard]") {
  auto s = make({"**.example.com"}, {});
  auto host = *canonicalize_host("svc.example.com").host;
  const char* addresses[] = {
      "169.254.169.254",                // AWS, Azure, GCP, Oracle, DigitalOcean, OpenStack, Hetzner, IBM
      "169.254.169.253",                // AWS DNS
      "169.254.169.123",                // AWS Time Sync
      "169.254.170.2",                  // AWS ECS task metadata
      "169.254.170.23",                 // AWS EKS Pod Identity
      "169.254.0.23",                   // Tencent metadata.tencentyun.com
      "168.63.129.16",                  // Azure WireServer: public, yet the host agent
      "100.100.100.200",                // Alibaba
      "192.0.0.192",                    // Oracle Cloud@Customer
      "fd00:ec2::254",                  // AWS IMDS IPv6
      "fd00:ec2::123",                  // AWS Time Sync IPv6
      "fd00:ec2::23",                   // AWS EKS Pod Identity IPv6
      "fe80::a9fe:a9fe",                // OpenStack IPv6
      "::ffff:168.63.129.16",           // mapped
      "64:ff9b::a9fe:a9fe",             // NAT64 of 169.254.169.254
      "64:ff9b:1::a83f:8110",           // local-use NAT64 of 168.63.129.16
  };
  for (const char* text : addresses) {
    INFO(text);
    CHECK(classify(*s, host, by_rule, *parse_ip(text), 443, {}).refused == address_class::metadata);
  }
  // Teredo whose client address (last 32 bits inverted) is 168.63.129.16: ~a8 3f 81 10.
  CHECK(classify(*s, host, by_rule, *parse_ip("2001:0:4136:e378:8000:63bf:57c0:7eef"), 443, {}).refused ==
        address_class::metadata);
  // Neighbours stay what they were.
  CHECK(classify(*s, host, by_rule, *parse_ip("169.254.169.1"), 443, {}).refused == address_class::link_local);
  CHECK(classify(*s, host, by_rule, *parse_ip("fe80::1"), 443, {}).refused == address_class::link_local);
  CHECK(classify(*s, host, by_rule, *parse_ip("168.63.129.17"), 443, {}).allowed());
  // An explicit IP entry re-opens a metadata address, as any other.
  auto open = make({"**.example.com", "168.63.129.16"}, {});
  CHECK(classify(*open, host, by_rule, *parse_ip("168.63.129.16"), 443, {}).allowed());
}

TEST_CASE("Teredo and local-use NAT64 are judged by the IPv4 they embed", "[unit][guard]") {
  // RFC 4380 §4: 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC, client address and port inverted.
  auto teredo = parse_ip("2001:0:4136:e378:8000:63bf:80ff:fffe");  // client ~80 ff ff fe = 127.0.0.1
  REQUIRE(teredo);
  REQUIRE(embedded_ipv4(*teredo));
  CHECK(embedded_ipv4(*teredo)->to_string() == "127.0.0.1");
  REQUIRE(teredo_server(*teredo));
  CHECK(teredo_server(*teredo)->to_string() == "65.54.227.120");
  // RFC 8215: 64:ff9b:1::/48; the /96 layout, the last 32 bits, whatever bits 48..95 hold.
  CHECK(embedded_ipv4(*parse_ip("64:ff9b:1::7f00:1"))->to_string() == "127.0.0.1");
  CHECK(embedded_ipv4(*parse_ip("64:ff9b:1:abcd:0:1:a00:1"))->to_string() == "10.0.0.1");
  CHECK_FALSE(embedded_ipv4(*parse_ip("64:ff9b:2::7f00:1")));
  CHECK_FALSE(embedded_ipv4(*parse_ip("2001:db8::7f00:1")));

  auto s = make({"**.example.com"}, {});
  auto host = *canonicalize_host("svc.example.com").host;
  struct {
    const char* ip;
    address_class expect;
  } rows[] = {
      {"2001:0:4136:e378:8000:63bf:80ff:fffe", address_class::loopback},         // client 127.0.0.1
      {"2001:0:a00:1:8000:63bf:a29f:8a8c", address_class::private_network},      // server 10.0.0.1
      {"2001:0:4136:e378:8000:63bf:f5ff:fffe", address_class::private_network},  // client 10.0.0.1
      {"2001:0:4136:e378:8000:63bf:a29f:8a8c", address_class::none},              // 65.54.227.120 / 93.96.117.115
      {"64:ff9b:1::7f00:1", address_class::loopback},
      {"64:ff9b:1:ffff::a00:1", address_class::private_network},
      {"64:ff9b:1::5db8:d822", address_class::none},
  };
  for (const auto& r : rows) {
    INFO(r.ip);
    CHECK(classify(*s, host, by_rule, *parse_ip(r.ip), 443, {}).refused == r.expect);
  }
  // localhost must stay on plain loopback, not on an address that only embeds it.
  auto lh = make({"localhost"}, {});
  CHECK(classify(*lh, *canonicalize_host("localhost").host, by_rule, *parse_ip("64:ff9b:1::7f00:1"), 80, {}).refused ==
        address_class::non_loopback);
}

TEST_CASE("denied ranges win over an allow of a wider range, for IP literals too", "[unit][guard]") {
  rules r;
  r.allow = to_entries({"127.0.0.0/24:8080", "**.example.com"});
  r.deny = to_entries({"127.0.0.4"});
  r.guard.deny_ranges = to_entries({"127.0.0.3/32"});
  auto c = compile(r);
  REQUIRE(c.policy);
  const snapshot& s = *c.policy;
  for (const char* literal : {"127.0.0.3", "[::ffff:127.0.0.3]", "2130706435", "127.0.0.0x3"}) {
    INFO(literal);
    auto h = canonicalize_host(literal);
    REQUIRE(h.ok());
    const decision d = decide(s, {&h, 8080, std::nullopt});
    CHECK(d.reason == decision_reason::allowed_by_rule);
    CHECK(classify(s, *h.host, d.reason, *h.host->address, 8080, {}).refused == address_class::listed);
  }
  // The same address embedded in IPv6 forms the allow does not cover.
  for (const char* literal : {"[64:ff9b::7f00:3]", "[64:ff9b:1::7f00:3]", "[2002:7f00:3::1]",
                              "[2001:0:4136:e378:8000:63bf:80ff:fffc]"}) {
    INFO(literal);
    auto h = canonicalize_host(literal);
    REQUIRE(h.ok());
    CHECK(classify(s, *h.host, by_rule, *h.host->address, 8080, {}).refused == address_class::listed);
  }
  // Names resolving there are refused as before; deny entries naming an address refuse it
  // inside the allowed range, embedded or not.
  auto name = *canonicalize_host("a.example.com").host;
  CHECK(classify(s, name, by_rule, *parse_ip("127.0.0.3"), 8080, {}).refused == address_class::listed);
  CHECK(classify(s, name, by_rule, *parse_ip("127.0.0.4"), 8080, {}).refused == address_class::deny_listed);
  auto nat64 = canonicalize_host("[64:ff9b::7f00:4]");
  CHECK(classify(s, *nat64.host, by_rule, *nat64.host->address, 8080, {}).refused == address_class::deny_listed);
  // The rest of the allowed range stays open, for literals and names.
  auto other = canonicalize_host("127.0.0.5");
  CHECK(classify(s, *other.host, by_rule, *other.host->address, 8080, {}).allowed());
  CHECK(classify(s, name, by_rule, *parse_ip("127.0.0.5"), 8080, {}).allowed());
}

TEST_CASE("report-only mode does not let localhost reach loopback", "[unit][guard]") {
  auto s = make({"app.localhost"}, {}, unknown_mode::allow);
  auto lh = canonicalize_host("localhost");
  const decision d = decide(*s, {&lh, 80, std::nullopt});
  REQUIRE(d.reason == decision_reason::report_only);
  CHECK(classify(*s, *lh.host, d.reason, *parse_ip("127.0.0.1"), 80, {}).refused == address_class::loopback);
  CHECK(classify(*s, *lh.host, d.reason, *parse_ip("::1"), 80, {}).refused == address_class::loopback);
  CHECK(classify(*s, *lh.host, d.reason, *parse_ip("192.0.2.1"), 80, {}).refused == address_class::non_loopback);
  // Allowed for itself, by a rule or a remembered answer, it may.
  auto app = canonicalize_host("app.localhost");
  const decision by_name = decide(*s, {&app, 80, std::nullopt});
  REQUIRE(by_name.reason == decision_reason::allowed_by_rule);
  CHECK(classify(*s, *app.host, by_name.reason, *parse_ip("127.0.0.1"), 80, {}).allowed());
  CHECK(classify(*s, *lh.host, decision_reason::remembered_allow, *parse_ip("127.0.0.1"), 80, {}).allowed());
  // An explicit IP entry still re-opens loopback in report-only mode.
  auto reopened = make({"127.0.0.1"}, {}, unknown_mode::allow);
  CHECK(classify(*reopened, *lh.host, decision_reason::report_only, *parse_ip("127.0.0.1"), 80, {}).allowed());
}

TEST_CASE("IP literals: judged by IP rules alone unless report-only", "[unit][guard]") {
  auto s = make({"10.0.0.0/8"}, {}, unknown_mode::allow);
  auto allowed = canonicalize_host("10.1.2.3");
  CHECK(classify(*s, *allowed.host, by_rule, *allowed.host->address, 443, {}).allowed());
  auto unknown = canonicalize_host("127.0.0.1");
  CHECK(classify(*s, *unknown.host, decision_reason::report_only, *unknown.host->address, 443, {}).refused ==
        address_class::loopback);
}
