// Table-driven tests over the recorded answers of sandbox-runtime 0.0.78
// (tests/data/conformance/srt-*.json, a copy of the recorded set). The rules are implemented in policy/; this file
// only reads the recorded cases and compares, so new cases of the same kinds are
// checked without code changes. Every deliberate difference is named here and in
// README.md ("Differences from sandbox-runtime").

#include <catch2/catch.hpp>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "policy/address.hpp"
#include "policy/guard.hpp"
#include "policy/host.hpp"
#include "policy/pattern.hpp"
#include "policy/snapshot.hpp"

using namespace egressd::policy;

namespace {

std::vector<YAML::Node> conformance_files() {
  std::vector<YAML::Node> out;
  const std::filesystem::path dir = EGRESSD_CONFORMANCE_DIR;
  if (!std::filesystem::exists(dir)) return out;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (f.path().extension() == ".json") out.push_back(YAML::LoadFile(f.path().string()));
  }
  return out;
}

// The recorded cases of one kind, from every file. Never empty: a test that loops over
// no cases (a renamed kind, a missing file) would pass without checking anything.
std::vector<YAML::Node> cases(const char* kind) {
  std::vector<YAML::Node> out;
  for (const auto& doc : conformance_files())
    for (const auto& c : doc[kind]) out.push_back(c);
  INFO("conformance cases of kind '" << kind << "' in " << EGRESSD_CONFORMANCE_DIR);
  REQUIRE_FALSE(out.empty());
  return out;
}

std::vector<rule_entry> entries(const YAML::Node& list) {
  std::vector<rule_entry> out;
  if (list)
    for (const auto& e : list) out.push_back({e.as<std::string>(), {}});
  return out;
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// Hosts sandbox-runtime accepts that egressd refuses on purpose: empty labels.
bool has_empty_label(const std::string& host) {
  std::string h = host;
  if (!h.empty() && h.back() == '.') h.pop_back();
  return !h.empty() && (h.front() == '.' || h.find("..") != std::string::npos);
}

bool is_private_class(address_class c) {
  return c == address_class::private_network || c == address_class::shared_address ||
         c == address_class::unique_local;
}

}  // namespace

TEST_CASE("the conformance data is present", "[unit][conformance]") {
  REQUIRE_FALSE(conformance_files().empty());
  REQUIRE(cases("pattern_match").size() > 10);
}

TEST_CASE("pattern_match agrees with sandbox-runtime", "[unit][conformance]") {
  for (const auto& c : cases("pattern_match")) {
    const std::string id = c["id"].as<std::string>();
    const std::string via = c["via"].as<std::string>();
    if (via.rfind("matcher-only", 0) == 0) continue;  // informative only: bypasses srt's own validation
    INFO(id << " host=" << c["host"].as<std::string>() << " via=" << via);
    rules r;
    r.syntax = grammar::srt;
    r.allow = entries(c["patterns_allow"]);
    r.deny = entries(c["patterns_deny"]);
    r.unknown = c["ask_callback"] && c["ask_callback"].as<std::string>() == "present" ? unknown_mode::ask
                                                                                      : unknown_mode::deny;
    auto compiled = compile(r);
    REQUIRE(compiled.policy);
    const std::string host = c["host"].as<std::string>();
    const auto canonical = canonicalize_host(host);
    const auto port = c["port"].as<std::uint16_t>();
    const decision d = decide(*compiled.policy, {&canonical, port, std::nullopt});
    const std::string expect = c["expect"].as<std::string>();

    if (has_empty_label(host)) {
      // Deliberate difference: egressd refuses hosts with empty labels.
      CHECK(d.result == outcome::deny);
      CHECK(d.reason == decision_reason::invalid_host);
      continue;
    }
    if (expect == "allow") {
      CHECK(d.result == outcome::allow);
    } else if (expect == "deny") {
      CHECK(d.result == outcome::deny);
    } else if (expect == "unknown") {
      CHECK(d.result == outcome::ask);
      CHECK(d.reason == decision_reason::unknown_ask);
    } else if (expect == "reject_400") {
      CHECK(d.result == outcome::deny);
      CHECK(d.reason == decision_reason::invalid_host);
    } else {
      FAIL("unknown expectation " << expect);
    }
    if (c["no_violation_recorded"] && c["no_violation_recorded"].as<bool>()) {
      CHECK(d.reason == decision_reason::invalid_host);
    }
  }
}

TEST_CASE("canonicalize_host agrees with sandbox-runtime", "[unit][conformance]") {
  for (const auto& c : cases("canonicalize_host")) {
    const std::string input = c["input"].as<std::string>();
    INFO("input=" << input);
    const auto h = canonicalize_host(input);
    const bool srt_valid = c["is_valid_host"].as<bool>();
    if (has_empty_label(input)) {
      CHECK_FALSE(h.ok());  // deliberate: empty labels refused
      CHECK(h.error == host_errc::empty_label);
      continue;
    }
    CHECK(h.ok() == srt_valid);
    if (!h.ok() || !srt_valid) continue;
    if (c["canonical"].IsNull()) {
      // sandbox-runtime could not canonicalise it and compares the raw spelling.
      std::string raw = lower(input);
      if (!raw.empty() && raw.back() == '.') raw.pop_back();
      CHECK(h.host->text == raw);
      CHECK(h.host->kind == host_kind::name);
    } else {
      CHECK(h.host->text == c["canonical"].as<std::string>());
    }
  }
}

TEST_CASE("pattern validity agrees with sandbox-runtime's schema", "[unit][conformance]") {
  for (const auto& c : cases("pattern_validity")) {
    const std::string entry = c["entry"].as<std::string>();
    INFO("entry=" << entry);
    CHECK(parse_pattern(entry, list_kind::allow, grammar::srt).value.has_value() ==
          c["valid_in_allowedDomains"].as<bool>());
    CHECK(parse_pattern(entry, list_kind::deny, grammar::srt).value.has_value() ==
          c["valid_in_deniedDomains"].as<bool>());
  }
}

TEST_CASE("split_pattern_port agrees with sandbox-runtime", "[unit][conformance]") {
  for (const auto& c : cases("split_pattern_port")) {
    const std::string p = c["pattern"].as<std::string>();
    INFO("pattern=" << p);
    const auto s = split_pattern_port(p);
    CHECK(s.host_pattern == c["host_pattern"].as<std::string>());
    if (c["port"].IsNull()) {
      CHECK_FALSE(s.port.has_value());
    } else {
      REQUIRE(s.port.has_value());
      CHECK(*s.port == c["port"].as<int>());
    }
  }
}

TEST_CASE("embedded IPv4 agrees with sandbox-runtime", "[unit][conformance]") {
  for (const auto& c : cases("embedded_ipv4")) {
    const std::string ip = c["ip"].as<std::string>();
    INFO("ip=" << ip);
    auto a = parse_ip(ip);
    REQUIRE(a);
    auto e = embedded_ipv4(*a);
    if (c["embedded"].IsNull()) {
      CHECK_FALSE(e.has_value());
    } else {
      REQUIRE(e.has_value());
      CHECK(e->to_string() == c["embedded"].as<std::string>());
    }
  }
}

TEST_CASE("address range parsing agrees with sandbox-runtime", "[unit][conformance]") {
  for (const auto& c : cases("address_range_parse")) {
    const std::string entry = c["entry"].as<std::string>();
    INFO("entry=" << entry);
    auto r = parse_address_range(entry);
    if (c["parsed"].IsNull()) {
      CHECK_FALSE(r.has_value());
      continue;
    }
    REQUIRE(r.has_value());
    CHECK(r->base.to_string() == c["parsed"]["address"].as<std::string>());
    CHECK(r->prefix == c["parsed"]["prefix"].as<int>());
    CHECK((r->base.is_v4() ? "ipv4" : "ipv6") == c["parsed"]["family"].as<std::string>());
  }
}

TEST_CASE("the address guard agrees with sandbox-runtime", "[unit][conformance]") {
  for (const auto& c : cases("resolved_address")) {
    const std::string hostname = c["hostname"].as<std::string>();
    std::string ip_text = c["ip"].as<std::string>();
    INFO("host=" << hostname << " ip=" << ip_text << " port=" << c["port"].as<int>());
    ip_text = ip_text.substr(0, ip_text.find('%'));  // resolvers hand out zones; the guard ignores them
    auto ip = parse_ip(lower(ip_text));
    REQUIRE(ip);
    std::vector<ip_address> locals;
    for (const auto& l : c["local_interface_addresses"]) locals.push_back(*parse_ip(l.as<std::string>()));
    const auto port = c["port"].as<std::uint16_t>();
    const auto host = canonicalize_host(hostname);
    REQUIRE(host.ok());

    for (bool allow_private : {false, true}) {
      rules r;
      r.syntax = grammar::srt;
      r.guard.allow_private = allow_private;
      if (const auto& cfg = c["config"]) {
        r.allow = entries(cfg["allowedDomains"]);
        r.deny = entries(cfg["deniedDomains"]);
        r.guard.deny_ranges = entries(cfg["deniedResolvedAddresses"]);
      }
      auto compiled = compile(r);
      REQUIRE(compiled.policy);
      if (host.host->is_ip()) {
        // A request for an IP literal is judged by the IP rules alone: the session does
        // not apply the guard to it, and sandbox-runtime does not refuse it.
        CHECK_FALSE(c["expect_denied"].as<bool>());
        continue;
      }
      const auto verdict =
          classify(*compiled.policy, *host.host, decision_reason::allowed_by_rule, *ip, port, locals);
      const bool srt_denied = c["expect_denied"].as<bool>();
      INFO("allow_private=" << allow_private << " verdict=" << verdict.refused);
      if (!srt_denied && !allow_private && is_private_class(verdict.refused)) {
        // Deliberate: egressd's default guard also refuses RFC 1918, CGNAT and ULA.
        continue;
      }
      CHECK(!verdict.allowed() == srt_denied);
      if (srt_denied && verdict.refused == address_class::metadata &&
          c["class"].as<std::string>() == "a link-local address") {
        // Deliberate: cloud metadata endpoints inside link-local (169.254.169.254) are
        // named as what they are (README, "Differences from sandbox-runtime").
        continue;
      }
      if (srt_denied) CHECK(std::string(describe(verdict.refused)) == c["class"].as<std::string>());
    }
  }
}
