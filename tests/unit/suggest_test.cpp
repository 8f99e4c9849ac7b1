// proxy/suggest: which records count, the collapse rules, and the two outputs.

#include "config/public_suffix.hpp"
#include "proxy/suggest.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace {

namespace sg = egressd::proxy::suggest;

std::string record(const std::string& host, int port, const std::string& decision = "deny",
                   const std::string& reason = "unknown_denied", const std::string& event = "request") {
  return R"({"time":"2026-01-01T00:00:00.000Z","level":"info","event":")" + event + R"(","connection":1,"host":")" +
         host + R"(","port":)" + std::to_string(port) + R"(,"decision":")" + decision + R"(","reason":")" + reason +
         R"("})";
}

std::vector<std::string> patterns(const std::vector<sg::entry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.pattern);
  return out;
}

std::vector<sg::entry> run(const std::vector<std::string>& lines, sg::line_counts* counts = nullptr) {
  sg::collector c;
  for (const auto& l : lines) c.add_line(l);
  if (counts) *counts = c.counts();
  return sg::collapse(c.seen());
}

}  // namespace

TEST_CASE("registrable_domain", "[unit][config]") {
  using egressd::config::registrable_domain;
  CHECK(registrable_domain("api.github.com") == "github.com");
  CHECK(registrable_domain("github.com") == "github.com");
  CHECK(registrable_domain("a.b.example.co.uk") == "example.co.uk");
  CHECK(registrable_domain("x.foo.github.io") == "foo.github.io");  // PRIVATE section counts
  CHECK(registrable_domain("api.alpha.test") == "alpha.test");      // unlisted TLD: the `*` rule
  CHECK(registrable_domain("com").empty());
  CHECK(registrable_domain("github.io").empty());
  CHECK(registrable_domain("localhost").empty());
  CHECK(registrable_domain("192.0.2.7").empty());
  CHECK(registrable_domain("2001:db8::1").empty());
  CHECK(registrable_domain("").empty());
  CHECK(registrable_domain("API.GitHub.com").empty());  // not canonical
}

TEST_CASE("suggest: which records count", "[unit][suggest]") {
  sg::line_counts c;
  const auto e = run({record("a.test", 443),                                         // counted
                      record("b.test", 443, "deny", "no_hook"),                      // counted
                      record("c.test", 443, "allow", "report_only"),                 // counted
                      record("d.test", 443, "deny", "denied_by_rule"),               // a rule said no
                      record("e.test", 443, "deny", "address_denied"),               // the guard said no
                      record("f.test", 443, "allow", "allowed_by_rule"),             // already allowed
                      record("g.test", 443, "deny", "report_only"),                  // inconsistent
                      record("h.test", 443, "deny", "unknown_denied", "tunnel_closed"),  // repeats a request
                      R"({"time":"x","level":"info","msg":"ready"})",                // a log line
                      "2026-01-01T00:00:00Z info event=request host=x.test",         // a text line
                      R"({"event":"request","host":"cut.test","port":44)",           // torn
                      "[1,2]", "", "   ",
                      R"({"event":"request","host":"no port.test","decision":"deny","reason":"unknown_denied"})",
                      record("bad host.test", 443), record("x.test", 0), record("x.test", 70000),
                      record("*.x.test", 443)},
                     &c);
  CHECK(patterns(e) == std::vector<std::string>{"a.test", "b.test", "c.test"});
  CHECK(c.lines == 17);
  CHECK(c.not_json == 3);
  CHECK(c.not_request == 2);
  CHECK(c.requests == 12);
  CHECK(c.counted == 8);
  CHECK(c.bad_destination == 5);
}

TEST_CASE("suggest: collapse to the narrowest patterns", "[unit][suggest]") {
  SECTION("one subdomain stays exact; two become a wildcard; the apex stays its own") {
    CHECK(patterns(run({record("api.one.com", 443)})) == std::vector<std::string>{"api.one.com"});
    CHECK(patterns(run({record("api.one.com", 443), record("api.one.com", 443)})) ==
          std::vector<std::string>{"api.one.com"});
    const auto e = run({record("api.two.com", 443), record("www.two.com", 443), record("a.b.two.com", 443),
                        record("two.com", 443)});
    REQUIRE(e.size() == 2);
    CHECK(e[0].pattern == "*.two.com");
    CHECK(e[0].requests == 3);
    CHECK(e[0].hosts == std::vector<std::string>{"a.b.two.com", "api.two.com", "www.two.com"});
    CHECK(e[1].pattern == "two.com");
  }
  SECTION("registrable domains: public and platform suffixes are never wildcarded") {
    CHECK(patterns(run({record("a.example.co.uk", 443), record("b.example.co.uk", 443)})) ==
          std::vector<std::string>{"*.example.co.uk"});
    // a.github.io and b.github.io are two customers' sites, not one domain.
    CHECK(patterns(run({record("a.github.io", 443), record("b.github.io", 443)})) ==
          std::vector<std::string>{"a.github.io", "b.github.io"});
    CHECK(patterns(run({record("x.a.github.io", 443), record("y.a.github.io", 443)})) ==
          std::vector<std::string>{"*.a.github.io"});
    CHECK(patterns(run({record("localhost", 8080)})) == std::vector<std::string>{"localhost:8080"});
  }
  SECTION("IP literals stay as they are") {
    CHECK(patterns(run({record("192.0.2.7", 443), record("192.0.2.8", 443)})) ==
          std::vector<std::string>{"192.0.2.7", "192.0.2.8"});
    CHECK(patterns(run({record("2001:db8::1", 8443)})) == std::vector<std::string>{"[2001:db8::1]:8443"});
  }
  SECTION("ports: one port other than 443 is kept; 443 alone or several ports give none") {
    CHECK(patterns(run({record("a.test", 443)})) == std::vector<std::string>{"a.test"});
    CHECK(patterns(run({record("a.test", 80)})) == std::vector<std::string>{"a.test:80"});
    CHECK(patterns(run({record("a.test", 22), record("a.test", 22)})) == std::vector<std::string>{"a.test:22"});
    const auto e = run({record("a.test", 80), record("a.test", 443)});
    REQUIRE(e.size() == 1);
    CHECK(e[0].pattern == "a.test");
    CHECK(e[0].ports == std::vector<std::uint16_t>{80, 443});
    CHECK(patterns(run({record("x.w.test", 8080), record("y.w.test", 8080)})) ==
          std::vector<std::string>{"*.w.test:8080"});
    CHECK(patterns(run({record("x.w.test", 8080), record("y.w.test", 443)})) == std::vector<std::string>{"*.w.test"});
  }
  SECTION("most requests first, then by pattern") {
    CHECK(patterns(run({record("b.test", 443), record("a.test", 443), record("c.test", 443), record("c.test", 443)})) ==
          std::vector<std::string>{"c.test", "a.test", "b.test"});
  }
}

TEST_CASE("suggest: YAML and settings output", "[unit][suggest]") {
  sg::collector c;
  c.add_line(record("api.two.com", 443));
  c.add_line(record("www.two.com", 443));
  c.add_line(record("2001:db8::1", 8443));
  const auto e = sg::collapse(c.seen());
  const std::string yaml = sg::to_yaml(e, c.counts());
  CHECK(yaml.find("policy:\n  allow:\n    - \"*.two.com\"  # 2 requests, port 443; api.two.com, www.two.com\n") !=
        std::string::npos);
  CHECK(yaml.find("    - \"[2001:db8::1]:8443\"  # 1 request, port 8443\n") != std::string::npos);
  CHECK(yaml.find("denied_by_rule") != std::string::npos);  // the comment says what is left out
  CHECK(sg::to_settings_json(e) ==
        "{\n  \"network\": {\n    \"allowedDomains\": [\n      \"*.two.com\",\n      \"[2001:db8::1]:8443\"\n    ]\n  }\n}\n");
  CHECK(sg::to_yaml({}, {}).find("  allow: []") != std::string::npos);
  CHECK(sg::to_settings_json({}) == "{\n  \"network\": {\n    \"allowedDomains\": []\n  }\n}\n");
}
