// The decision memory (policy/memory.hpp; README "Decisions file"): precedence of
// scopes, replacement, expiry at `now`, domain coverage at label boundaries, IP
// literals, forget and prune. Pure: every time is a value given by the test.

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "policy/memory.hpp"

using namespace egressd::policy;
using namespace std::chrono_literals;

namespace {

using clock_type = decision_memory::clock;
const clock_type::time_point t0 = clock_type::time_point{} + std::chrono::hours{24 * 365 * 56};  // about 2026

memory_entry entry(std::string name, answer_scope scope, outcome result, std::uint16_t port = 0,
                   answer_lifetime lifetime = answer_lifetime::always,
                   clock_type::time_point expires = clock_type::time_point::max()) {
  memory_entry e;
  e.name = std::move(name);
  e.port = port;
  e.scope = scope;
  e.result = result;
  e.lifetime = lifetime;
  e.expires = expires;
  e.answered_at = t0;
  e.answered_by = "test";
  return e;
}

// What lookup() answers, as "scope name allow|deny" or "none".
std::string answer(const decision_memory& m, std::string_view host, std::uint16_t port,
                   clock_type::time_point now = t0) {
  const memory_entry* e = m.lookup(host, port, now);
  if (e == nullptr) return "none";
  return std::string(to_string(e->scope)) + " " + e->name + " " + (e->result == outcome::allow ? "allow" : "deny");
}

}  // namespace

TEST_CASE("memory: names of scopes and lifetimes round-trip", "[unit][memory]") {
  for (auto s : {answer_scope::host, answer_scope::host_port, answer_scope::domain})
    CHECK(parse_answer_scope(to_string(s)) == s);
  for (auto l : {answer_lifetime::once, answer_lifetime::ttl, answer_lifetime::always})
    CHECK(parse_answer_lifetime(to_string(l)) == l);
  CHECK_FALSE(parse_answer_scope("subdomain"));
  CHECK_FALSE(parse_answer_scope("Host"));
  CHECK_FALSE(parse_answer_lifetime("forever"));
}

TEST_CASE("memory: an empty memory answers nothing", "[unit][memory]") {
  decision_memory m;
  CHECK(m.empty());
  CHECK(answer(m, "example.com", 443) == "none");
}

TEST_CASE("memory: host_port, then host, then domain from the longest suffix", "[unit][memory]") {
  decision_memory m;
  REQUIRE(m.remember(entry("npmjs.org", answer_scope::domain, outcome::allow)));
  REQUIRE(m.remember(entry("api.npmjs.org", answer_scope::domain, outcome::deny)));
  REQUIRE(m.remember(entry("x.api.npmjs.org", answer_scope::host, outcome::allow)));
  REQUIRE(m.remember(entry("x.api.npmjs.org", answer_scope::host_port, outcome::deny, 8443)));
  CHECK(m.size() == 4);

  CHECK(answer(m, "x.api.npmjs.org", 8443) == "host_port x.api.npmjs.org deny");
  CHECK(answer(m, "x.api.npmjs.org", 443) == "host x.api.npmjs.org allow");
  CHECK(answer(m, "y.api.npmjs.org", 443) == "domain api.npmjs.org deny");  // longest suffix
  CHECK(answer(m, "api.npmjs.org", 443) == "domain api.npmjs.org deny");
  CHECK(answer(m, "registry.npmjs.org", 443) == "domain npmjs.org allow");
  CHECK(answer(m, "npmjs.org", 80) == "domain npmjs.org allow");
}

TEST_CASE("memory: the same key replaces, other scopes and ports do not", "[unit][memory]") {
  decision_memory m;
  REQUIRE(m.remember(entry("a.example", answer_scope::host, outcome::allow)));
  REQUIRE(m.remember(entry("a.example", answer_scope::host, outcome::deny)));
  CHECK(m.size() == 1);
  CHECK(answer(m, "a.example", 443) == "host a.example deny");

  REQUIRE(m.remember(entry("a.example", answer_scope::host_port, outcome::allow, 443)));
  REQUIRE(m.remember(entry("a.example", answer_scope::host_port, outcome::allow, 80)));
  REQUIRE(m.remember(entry("a.example", answer_scope::domain, outcome::allow)));
  CHECK(m.size() == 4);
  REQUIRE(m.remember(entry("a.example", answer_scope::host_port, outcome::deny, 80)));
  CHECK(m.size() == 4);
  CHECK(answer(m, "a.example", 80) == "host_port a.example deny");
  CHECK(answer(m, "a.example", 443) == "host_port a.example allow");
  CHECK(answer(m, "a.example", 22) == "host a.example deny");

  // A host or domain entry carries no port, whatever the caller put there.
  REQUIRE(m.remember(entry("b.example", answer_scope::host, outcome::allow, 443)));
  CHECK(answer(m, "b.example", 22) == "host b.example allow");
  CHECK(m.lookup("b.example", 22, t0)->port == 0);
}

TEST_CASE("memory: a ttl entry expires at `now`, an always entry never", "[unit][memory]") {
  decision_memory m;
  REQUIRE(m.remember(entry("ttl.example", answer_scope::host, outcome::allow, 0, answer_lifetime::ttl, t0 + 60s)));
  // `always` is stored with no expiry, whatever `expires` said.
  REQUIRE(m.remember(entry("always.example", answer_scope::host, outcome::allow, 0, answer_lifetime::always, t0)));
  CHECK(m.lookup("always.example", 443, t0)->expires == clock_type::time_point::max());

  CHECK(answer(m, "ttl.example", 443, t0) == "host ttl.example allow");
  CHECK(answer(m, "ttl.example", 443, t0 + 60s - 1ns) == "host ttl.example allow");
  CHECK(answer(m, "ttl.example", 443, t0 + 60s) == "none");
  CHECK(answer(m, "ttl.example", 443, t0 + 61s) == "none");
  const auto far = clock_type::time_point::max() - 1s;
  CHECK(answer(m, "always.example", 443, far) == "host always.example allow");

  // An expired, more specific entry falls through to a live, wider one.
  REQUIRE(m.remember(entry("example", answer_scope::domain, outcome::deny)));
  CHECK(answer(m, "ttl.example", 443, t0 + 60s) == "domain example deny");
}

TEST_CASE("memory: a domain entry covers the apex and every subdomain, at label boundaries", "[unit][memory]") {
  decision_memory m;
  REQUIRE(m.remember(entry("npmjs.org", answer_scope::domain, outcome::allow)));
  CHECK(answer(m, "npmjs.org", 443) == "domain npmjs.org allow");
  CHECK(answer(m, "registry.npmjs.org", 443) == "domain npmjs.org allow");
  CHECK(answer(m, "a.b.c.npmjs.org", 22) == "domain npmjs.org allow");
  CHECK(answer(m, "evilnpmjs.org", 443) == "none");
  CHECK(answer(m, "npmjs.org.evil.example", 443) == "none");
  CHECK(answer(m, "org", 443) == "none");
  CHECK(answer(m, "npmjs.organic", 443) == "none");

  // A host entry covers that host only, not its subdomains.
  REQUIRE(m.remember(entry("github.com", answer_scope::host, outcome::allow)));
  CHECK(answer(m, "api.github.com", 443) == "none");
}

TEST_CASE("memory: IP literals match host entries only, never domain entries", "[unit][memory]") {
  decision_memory m;
  REQUIRE(m.remember(entry("0.1", answer_scope::domain, outcome::allow)));
  REQUIRE(m.remember(entry("1", answer_scope::domain, outcome::allow)));
  REQUIRE(m.remember(entry("db8::1", answer_scope::domain, outcome::allow)));
  CHECK(answer(m, "10.0.0.1", 443) == "none");
  CHECK(answer(m, "192.0.2.1", 443) == "none");
  CHECK(answer(m, "2001:db8::1", 443) == "none");

  REQUIRE(m.remember(entry("192.0.2.7", answer_scope::host, outcome::allow)));
  REQUIRE(m.remember(entry("2001:db8::7", answer_scope::host_port, outcome::deny, 443)));
  CHECK(answer(m, "192.0.2.7", 80) == "host 192.0.2.7 allow");
  CHECK(answer(m, "2001:db8::7", 443) == "host_port 2001:db8::7 deny");
  CHECK(answer(m, "2001:db8::7", 80) == "none");
}

TEST_CASE("memory: once, ask, empty names and host_port without a port are refused", "[unit][memory]") {
  decision_memory m;
  CHECK_FALSE(m.remember(entry("a.example", answer_scope::host, outcome::allow, 0, answer_lifetime::once)));
  CHECK_FALSE(m.remember(entry("", answer_scope::host, outcome::allow)));
  CHECK_FALSE(m.remember(entry("", answer_scope::domain, outcome::allow)));
  // A host_port entry without a port could never be looked up (port 0 is invalid).
  CHECK_FALSE(m.remember(entry("a.example", answer_scope::host_port, outcome::allow, 0)));
  // A remembered answer is allow or deny; `ask` is no answer.
  CHECK_FALSE(m.remember(entry("a.example", answer_scope::host, outcome::ask)));
  CHECK(m.empty());
  CHECK(answer(m, "a.example", 443) == "none");
}

TEST_CASE("memory: forget drops every entry naming a name", "[unit][memory]") {
  decision_memory m;
  REQUIRE(m.remember(entry("npmjs.org", answer_scope::domain, outcome::allow)));
  REQUIRE(m.remember(entry("npmjs.org", answer_scope::host, outcome::deny)));
  REQUIRE(m.remember(entry("npmjs.org", answer_scope::host_port, outcome::deny, 443)));
  REQUIRE(m.remember(entry("registry.npmjs.org", answer_scope::host, outcome::allow)));
  CHECK(m.forget("nothing.example") == 0);
  CHECK(m.forget("npmjs.org") == 3);
  CHECK(m.size() == 1);
  CHECK(answer(m, "registry.npmjs.org", 443) == "host registry.npmjs.org allow");
  CHECK(answer(m, "other.npmjs.org", 443) == "none");  // the domain entry is gone too
  CHECK(answer(m, "npmjs.org", 443) == "none");
}

TEST_CASE("memory: prune drops what has expired by `now` and keeps the rest", "[unit][memory]") {
  decision_memory m;
  REQUIRE(m.remember(entry("a.example", answer_scope::host, outcome::allow, 0, answer_lifetime::ttl, t0 + 10s)));
  REQUIRE(m.remember(entry("b.example", answer_scope::domain, outcome::deny, 0, answer_lifetime::ttl, t0 + 20s)));
  REQUIRE(m.remember(entry("c.example", answer_scope::host, outcome::allow)));
  CHECK(m.prune(t0) == 0);
  CHECK(m.prune(t0 + 10s) == 1);
  CHECK(m.size() == 2);
  CHECK(m.prune(t0 + 1h) == 1);
  CHECK(m.size() == 1);
  CHECK(answer(m, "x.b.example", 443, t0) == "none");
  CHECK(answer(m, "c.example", 443, t0 + 1h) == "host c.example allow");
}

TEST_CASE("memory: entries are ordered; persistent() keeps the always entries", "[unit][memory]") {
  decision_memory m;
  REQUIRE(m.remember(entry("b.example", answer_scope::host, outcome::allow)));
  REQUIRE(m.remember(entry("a.example", answer_scope::host_port, outcome::allow, 443)));
  REQUIRE(m.remember(entry("a.example", answer_scope::host_port, outcome::allow, 80)));
  REQUIRE(m.remember(entry("a.example", answer_scope::host, outcome::deny, 0, answer_lifetime::ttl, t0 + 1s)));
  const auto all = m.entries();
  REQUIRE(all.size() == 4);
  CHECK((all[0].name == "a.example" && all[0].scope == answer_scope::host));
  CHECK((all[1].scope == answer_scope::host_port && all[1].port == 80));
  CHECK((all[2].scope == answer_scope::host_port && all[2].port == 443));
  CHECK(all[3].name == "b.example");
  const auto kept = m.persistent();
  REQUIRE(kept.size() == 3);
  for (const auto& e : kept) CHECK(e.lifetime == answer_lifetime::always);
}

TEST_CASE("memory: remembered_decision gives the remembered reasons and no rule", "[unit][memory]") {
  const auto allow = remembered_decision(entry("a.example", answer_scope::host, outcome::allow));
  CHECK(allow == decision{outcome::allow, decision_reason::remembered_allow, no_rule});
  const auto deny = remembered_decision(entry("a.example", answer_scope::host, outcome::deny));
  CHECK(deny == decision{outcome::deny, decision_reason::remembered_deny, no_rule});
}
