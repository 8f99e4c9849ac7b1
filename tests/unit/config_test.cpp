// config/: durations, endpoints, YAML and settings-JSON loading, the embedded
// default, public suffixes. Fixtures under tests/data/{valid,invalid,settings}.

#include "config/diff.hpp"
#include "config/duration.hpp"
#include "config/endpoint.hpp"
#include "config/load.hpp"
#include "config/public_suffix.hpp"
#include "policy/snapshot.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>

namespace egressd::config {
// Failures print every problem of a load readably.
std::ostream& operator<<(std::ostream& os, const problem& p) { return os << p.to_string(); }
std::ostream& operator<<(std::ostream& os, const load_result& r) {
  os << (r.ok() ? "ok" : "not ok") << ", " << r.problems.size() << " problem(s)";
  for (const auto& p : r.problems) os << "\n  " << p;
  return os;
}
}  // namespace egressd::config

namespace {

namespace cfg = egressd::config;
namespace policy = egressd::policy;
using namespace std::chrono_literals;

std::string data(const std::string& relative) { return std::string(EGRESSD_TEST_DATA_DIR) + "/" + relative; }

std::string dump(const cfg::load_result& r) {
  std::ostringstream os;
  os << r;
  return os.str();
}

// The problem at `path` (the first one), or null.
const cfg::problem* at_path(const cfg::load_result& r, const std::string& path) {
  const auto it =
      std::find_if(r.problems.begin(), r.problems.end(), [&](const cfg::problem& p) { return p.path == path; });
  return it == r.problems.end() ? nullptr : &*it;
}

std::size_t count(const cfg::load_result& r, cfg::severity level) {
  return static_cast<std::size_t>(
      std::count_if(r.problems.begin(), r.problems.end(), [&](const cfg::problem& p) { return p.level == level; }));
}

// Asserts one error at `path` on `line`, and returns it for further checks.
const cfg::problem& expect_error(const cfg::load_result& r, const std::string& path, int line) {
  INFO(dump(r));
  const cfg::problem* p = at_path(r, path);
  REQUIRE(p != nullptr);
  CHECK(p->level == cfg::severity::error);
  CHECK(p->line == line);
  CHECK(p->column > 0);
  return *p;
}

const cfg::problem& expect_warning(const cfg::load_result& r, const std::string& path) {
  INFO(dump(r));
  const cfg::problem* p = at_path(r, path);
  REQUIRE(p != nullptr);
  CHECK(p->level == cfg::severity::warning);
  return *p;
}

cfg::load_result yaml(std::string_view text) { return cfg::load_yaml_string(text, "test.yaml"); }
cfg::load_result settings(std::string_view text) { return cfg::load_settings_string(text, "settings.json"); }

constexpr std::string_view minimal_head = "version: 1\nlisteners:\n  - address: 127.0.0.1:3128\n";

// ---------------------------------------------------------------------------

TEST_CASE("durations: accepted forms", "[unit][config]") {
  const auto [text, expected] = GENERATE(table<std::string_view, cfg::duration>({
      {"250ms", 250ms},
      {"10s", 10s},
      {"5m", 5min},
      {"1h", 1h},
      {"1m30s", 90s},
      {"1h30m", 90min},
      {"2h0m5s250ms", 2h + 5s + 250ms},
      {"0s", 0ms},
      {"1500ms", 1500ms},
  }));
  CAPTURE(text);
  const auto parsed = cfg::parse_duration(text);
  REQUIRE(parsed.value);
  CHECK(*parsed.value == expected);
  CHECK(cfg::parse_duration(cfg::format_duration(expected)).value == expected);
}

TEST_CASE("durations: refused forms", "[unit][config]") {
  const auto [text, hint_part] = GENERATE(table<std::string_view, std::string_view>({
      {"10", "write 10s"},
      {"1m30", "write 1m30s"},
      {"", "write 10s"},
      {"-5s", ""},
      {"1.5s", "1500ms"},
      {"5 m", "ms, s, m"},
      {"10x", "ms, s, m"},
      {"30s1m", "largest first"},
      {"1s1s", "largest first"},
      {"s", "e.g. 10s"},
      {"99999999h", ""},
  }));
  CAPTURE(text);
  const auto parsed = cfg::parse_duration(text);
  CHECK_FALSE(parsed.value);
  CHECK_FALSE(parsed.error.empty());
  CHECK_THAT(parsed.hint, Catch::Contains(std::string(hint_part)));
}

TEST_CASE("durations: formatting", "[unit][config]") {
  CHECK(cfg::format_duration(0ms) == "0s");
  CHECK(cfg::format_duration(90s) == "1m30s");
  CHECK(cfg::format_duration(1500ms) == "1s500ms");
  CHECK(cfg::format_duration(10min) == "10m");
}

TEST_CASE("endpoints: accepted forms", "[unit][config]") {
  using kind = cfg::endpoint::kind_t;
  const auto [text, k, host, port, path, shown] =
      GENERATE(table<std::string_view, kind, std::string_view, int, std::string_view, std::string_view>({
          {"127.0.0.1:3128", kind::tcp, "127.0.0.1", 3128, "", "127.0.0.1:3128"},
          {"0.0.0.0:0", kind::tcp, "0.0.0.0", 0, "", "0.0.0.0:0"},
          {"[::1]:3128", kind::tcp, "::1", 3128, "", "[::1]:3128"},
          {"[2001:DB8:0:0::1]:443", kind::tcp, "2001:db8::1", 443, "", "[2001:db8::1]:443"},
          {"[::ffff:127.0.0.1]:80", kind::tcp, "::ffff:127.0.0.1", 80, "", "[::ffff:127.0.0.1]:80"},
          {"localhost:65535", kind::tcp, "localhost", 65535, "", "localhost:65535"},
          {"Proxy.Example_1.internal:8080", kind::tcp, "proxy.example_1.internal", 8080, "",
           "proxy.example_1.internal:8080"},
          {"unix:/run/egressd/proxy.sock", kind::unix_socket, "", 0, "/run/egressd/proxy.sock",
           "unix:/run/egressd/proxy.sock"},
      }));
  CAPTURE(text);
  const auto parsed = cfg::parse_endpoint(text);
  INFO(parsed.error);
  REQUIRE(parsed.value);
  CHECK(parsed.value->kind == k);
  CHECK(parsed.value->host == host);
  CHECK(parsed.value->port == port);
  CHECK(parsed.value->path == path);
  CHECK(parsed.value->to_string() == shown);
  CHECK(cfg::parse_endpoint(parsed.value->to_string()).value == parsed.value);
}

TEST_CASE("endpoints: refused forms", "[unit][config]") {
  const std::string long_path = "unix:/" + std::string(107, 'x');  // 108 bytes of path
  const auto text = GENERATE_COPY(values<std::string>({
      "",           "127.0.0.1",         "::1:3128",        "[::1]",
      "[::1]:",     "[::1:3128",         ":3128",           "1.2.3.4:65536",
      "1.2.3.4:-1", "1.2.3.4:80a",       "1.2.3.4:",        "unix:relative.sock",
      "unix:",      "[fe80::1%eth0]:80", "[1.2.3.4]:80",    "bad_host!:80",
      "127.1:80",   "256.0.0.1:80",      "-bad.example:80", "a..b:80",
      long_path,
  }));
  CAPTURE(text);
  const auto parsed = cfg::parse_endpoint(text);
  CHECK_FALSE(parsed.value);
  CHECK_FALSE(parsed.error.empty());
}

TEST_CASE("endpoints: unix paths up to 107 bytes", "[unit][config]") {
  CHECK(cfg::parse_endpoint("unix:/" + std::string(106, 'x')).value);
  CHECK_FALSE(cfg::parse_endpoint("unix:/" + std::string(107, 'x')).value);
}

// ---------------------------------------------------------------------------

TEST_CASE("valid/full.yaml: every key", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("valid/full.yaml"));
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.problems.empty());
  const cfg::config& c = *r.value;
  CHECK(c.version == 1);
  CHECK(c.source == data("valid/full.yaml"));

  REQUIRE(c.listeners.size() == 3);
  CHECK(c.listeners[0].address.to_string() == "127.0.0.1:3128");
  CHECK((c.listeners[0].http && c.listeners[0].socks5));
  CHECK(c.listeners[1].address.host == "::1");
  CHECK(c.listeners[1].address.port == 1080);
  CHECK((!c.listeners[1].http && c.listeners[1].socks5));
  CHECK(c.listeners[2].address.kind == cfg::endpoint::kind_t::unix_socket);
  CHECK(c.listeners[2].address.path == "/run/egressd/proxy.sock");
  CHECK((c.listeners[2].http && !c.listeners[2].socks5));
  REQUIRE(c.admin);
  CHECK(c.admin->address.to_string() == "127.0.0.1:9090");

  CHECK(c.policy.syntax == policy::grammar::egressd);
  REQUIRE(c.policy.allow.size() == 4);
  CHECK(c.policy.allow[0].text == "github.com");
  CHECK(c.policy.allow[3].text == "@pypi");
  CHECK(c.policy.allow[2].where.file == data("valid/full.yaml"));
  CHECK(c.policy.allow[2].where.path == "policy.allow[2]");
  CHECK(c.policy.allow[2].where.line == 11);
  CHECK(c.policy.allow[2].where.column == 41);
  REQUIRE(c.policy.deny.size() == 1);
  CHECK(c.policy.deny[0].text == "*.evil.example");
  CHECK(c.policy.deny[0].where.path == "policy.deny[0]");
  CHECK(c.policy.deny[0].where.line == 13);
  CHECK(c.policy.deny[0].where.column == 7);
  CHECK(c.policy.unknown == policy::unknown_mode::ask);
  REQUIRE(c.policy.guard.deny_ranges.size() == 1);
  CHECK(c.policy.guard.deny_ranges[0].text == "100.64.0.0/10");
  CHECK(c.policy.guard.deny_ranges[0].where.path == "policy.guard.deny_ranges[0]");
  CHECK(c.policy.guard.allow_private);

  REQUIRE(c.hook);
  CHECK(c.hook->exec == std::vector<std::string>{"/bin/sh", "/etc/egressd/approve.sh", "--quiet"});
  CHECK(c.hook->persistent);
  CHECK(c.hook->url.empty());
  CHECK_FALSE(c.hook->console);
  CHECK(c.hook->timeout == 90s);
  CHECK(c.hook->on_timeout == cfg::hook_fallback::allow);
  CHECK(c.hook->max_pending == 64);
  CHECK(c.hook->concurrency == 4);
  CHECK(c.hook->ttl == 2h);
  CHECK(c.hook->deny_ttl == 1min);
  CHECK(c.decisions_file == "/tmp/egressd-full-decisions.yaml");

  CHECK(c.limits.max_connections == 500);
  CHECK(c.limits.head_timeout == 250ms);
  CHECK(c.limits.connect_timeout == 3s);
  CHECK(c.limits.idle_timeout == 1h);
  CHECK(c.limits.max_head_bytes == 32768);
  CHECK(c.limits.max_headers == 50);
  CHECK(c.limits.drain_timeout == 0s);

  CHECK(c.dns.servers == std::vector<std::string>{"1.1.1.1", "127.0.0.1:5353", "[2606:4700:4700::1111]:53"});
  CHECK(c.dns.timeout == 2s);
  CHECK(c.dns.max_ttl == 1min);
  CHECK(c.dns.negative_ttl == 0s);
  CHECK_FALSE(c.dns.hosts_file);
  CHECK(c.log.format == cfg::log_format::text);
  CHECK(c.log.level == "debug");
  CHECK(c.log.audit == cfg::audit_target::file);
  CHECK(c.log.audit_file == "/tmp/egressd-full-audit.jsonl");
  REQUIRE(c.auth.users.size() == 2);
  CHECK(c.auth.users[0].username == "alice");
  CHECK(c.auth.users[0].password == "s3cret");
  CHECK(c.auth.users[1].username == "ci");
  CHECK(c.auth.users[1].password == "0123");
  CHECK(c.workers == 4);
}

TEST_CASE("valid/minimal.yaml: defaults applied", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("valid/minimal.yaml"));
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.problems.empty());
  const cfg::config& c = *r.value;
  REQUIRE(c.listeners.size() == 1);
  CHECK(c.listeners[0].address.to_string() == "localhost:0");
  CHECK((c.listeners[0].http && c.listeners[0].socks5));
  CHECK_FALSE(c.admin);
  CHECK_FALSE(c.hook);
  CHECK(c.policy.allow.empty());
  CHECK(c.policy.deny.empty());
  CHECK(c.policy.unknown == policy::unknown_mode::deny);
  CHECK(c.policy.guard.deny_ranges.empty());
  CHECK_FALSE(c.policy.guard.allow_private);
  CHECK(c.decisions_file.empty());
  const cfg::limits_config defaults;
  CHECK(c.limits.max_connections == 20000);
  CHECK(c.limits.head_timeout == 10s);
  CHECK(c.limits.connect_timeout == 10s);
  CHECK(c.limits.idle_timeout == 10min);
  CHECK(c.limits.max_head_bytes == 16384);
  CHECK(c.limits.max_headers == defaults.max_headers);
  CHECK(c.limits.drain_timeout == 30s);
  CHECK(c.dns.servers.empty());
  CHECK(c.dns.timeout == 5s);
  CHECK(c.dns.hosts_file);
  CHECK(c.metrics.max_domains == 1000);
  CHECK(c.log.format == cfg::log_format::json);
  CHECK(c.log.level == "info");
  CHECK(c.log.audit == cfg::audit_target::standard_output);
  CHECK(c.auth.users.empty());
  CHECK(c.workers == 0);
  CHECK(c.busy_poll_us == 0);
}

TEST_CASE("valid/endpoints.yaml: IPv6, unix, port 0, names", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("valid/endpoints.yaml"));
  INFO(dump(r));
  REQUIRE(r.ok());
  // Four listeners beyond loopback and no auth.users: a warning each, none for
  // loopback, unix sockets or the admin endpoint on [::1].
  CHECK(count(r, cfg::severity::warning) == 4);
  for (const char* path : {"listeners[0].address", "listeners[1].address", "listeners[2].address",
                           "listeners[6].address"}) {
    const cfg::problem* w = at_path(r, path);
    REQUIRE(w != nullptr);
    CHECK(w->level == cfg::severity::warning);
    CHECK_THAT(w->message, Catch::Contains("without proxy authentication"));
  }
  const cfg::config& c = *r.value;
  REQUIRE(c.listeners.size() == 7);
  CHECK(c.listeners[1].address.to_string() == "[::]:3129");
  CHECK(c.listeners[2].address.to_string() == "[2001:db8::1]:443");
  CHECK(c.listeners[3].address.to_string() == "unix:/tmp/egressd.sock");
  CHECK(c.listeners[4].address == c.listeners[5].address);  // port 0 twice: distinct ports
  CHECK(c.listeners[6].address.host == "proxy.internal");
  REQUIRE(c.admin);
  CHECK(c.admin->address.to_string() == "[::1]:9090");
}

// ---------------------------------------------------------------------------

TEST_CASE("invalid: unknown key at the top level", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("invalid/unknown_top_key.yaml"));
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.value);
  const auto& p = expect_error(r, "polcy", 4);
  CHECK(p.column == 1);
  CHECK(p.file == data("invalid/unknown_top_key.yaml"));
  CHECK_THAT(p.message, Catch::Contains("unknown key `polcy`"));
  CHECK(p.hint == "did you mean `policy`?");
}

TEST_CASE("invalid: unknown key in a section", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("invalid/unknown_nested_key.yaml"));
  CHECK_FALSE(r.ok());
  const auto& p = expect_error(r, "policy.alow", 5);
  CHECK(p.column == 3);
  CHECK(p.hint == "did you mean `allow`?");
  CHECK(count(r, cfg::severity::error) == 1);
}

TEST_CASE("invalid: a key in the wrong section says where it belongs", "[unit][config]") {
  const auto r = yaml(std::string(minimal_head) + "allow: [github.com]\npolicy:\n  hook: {console: true}\n");
  CHECK_THAT(expect_error(r, "allow", 4).hint, Catch::Contains("belongs under `policy`"));
  CHECK_THAT(expect_error(r, "policy.hook", 6).hint, Catch::Contains("top level"));
}

TEST_CASE("invalid: missing version", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("invalid/missing_version.yaml"));
  CHECK_FALSE(r.ok());
  const auto& p = expect_error(r, "version", 2);
  CHECK_THAT(p.hint, Catch::Contains("add `version: 1`"));
}

TEST_CASE("invalid: unsupported version", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("invalid/bad_version.yaml"));
  CHECK_FALSE(r.ok());
  const auto& p = expect_error(r, "version", 1);
  CHECK(p.column == 10);
  CHECK_THAT(p.message, Catch::Contains("`2`"));
  CHECK(count(r, cfg::severity::error) == 1);
  CHECK_FALSE(yaml("version: \"1\"\nlisteners: [{address: 127.0.0.1:1}]\n").ok());
  CHECK_FALSE(yaml("version: 1.0\nlisteners: [{address: 127.0.0.1:1}]\n").ok());
}

TEST_CASE("invalid: bad durations", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("invalid/bad_duration.yaml"));
  CHECK_FALSE(r.ok());
  CHECK(expect_error(r, "limits.head_timeout", 5).hint == "write 10s");
  CHECK_THAT(expect_error(r, "limits.connect_timeout", 6).message, Catch::Contains("greater than 0"));
  expect_error(r, "limits.idle_timeout", 7);
  CHECK(count(r, cfg::severity::error) == 3);
}

TEST_CASE("invalid: bad endpoints", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("invalid/bad_endpoint.yaml"));
  CHECK_FALSE(r.ok());
  CHECK_THAT(expect_error(r, "listeners[0].address", 3).message, Catch::Contains("no port"));
  CHECK(expect_error(r, "listeners[1].address", 4).hint == "write [::1]:3128");
  expect_error(r, "listeners[2].address", 5);
  expect_error(r, "listeners[3].address", 6);
  expect_error(r, "listeners[4].address", 7);
  expect_error(r, "admin.address", 9);
  CHECK(count(r, cfg::severity::error) == 6);  // and no "no listeners" on top
}

TEST_CASE("invalid: wrong types", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("invalid/wrong_type.yaml"));
  CHECK_FALSE(r.ok());
  CHECK_THAT(expect_error(r, "policy.allow", 5).message, Catch::Contains("expected a list"));
  CHECK_THAT(expect_error(r, "policy.unknown", 6).message, Catch::Contains("expected ask | deny | allow"));
  CHECK_THAT(expect_error(r, "dns.servers", 8).message, Catch::Contains("expected a list"));
  CHECK_THAT(expect_error(r, "dns.hosts_file", 9).message, Catch::Contains("true or false"));
  CHECK_THAT(expect_error(r, "limits.max_connections", 11).message, Catch::Contains("whole number"));
  CHECK(count(r, cfg::severity::error) == 5);
}

TEST_CASE("invalid: duplicate listener, admin on a listener's address", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("invalid/duplicate_listener.yaml"));
  CHECK_FALSE(r.ok());
  CHECK_THAT(expect_error(r, "listeners[2].address", 5).message, Catch::Contains("listeners[0]"));
  CHECK_THAT(expect_error(r, "admin.address", 7).message, Catch::Contains("listeners[1]"));
  CHECK(count(r, cfg::severity::error) == 2);
}

TEST_CASE("invalid: overlapping wildcard listener", "[unit][config]") {
  const auto r = yaml(std::string(minimal_head) + "  - address: 0.0.0.0:3128\n  - address: \"[::]:3128\"\n");
  CHECK_THAT(expect_error(r, "listeners[1].address", 4).message, Catch::Contains("overlaps listeners[0]"));
  expect_error(r, "listeners[2].address", 5);
  CHECK(yaml(std::string(minimal_head) + "  - address: 0.0.0.0:3129\n").ok());
}

TEST_CASE("invalid: a host name and an address on one port may be one socket", "[unit][config]") {
  // localhost resolves to 127.0.0.1 at startup: SO_REUSEPORT would let both bind.
  const auto r = yaml(std::string(minimal_head) + "  - address: localhost:3128\n");
  CHECK_THAT(expect_error(r, "listeners[1].address", 4).message, Catch::Contains("overlaps listeners[0]"));
  CHECK(yaml(std::string(minimal_head) + "  - address: localhost:3129\n").ok());
}

TEST_CASE("invalid: the admin endpoint on a Unix socket", "[unit][config]") {
  const auto r = yaml(std::string(minimal_head) + "admin:\n  address: unix:/run/egressd-admin.sock\n");
  CHECK_THAT(expect_error(r, "admin.address", 5).message, Catch::Contains("host:port only"));
  CHECK_FALSE(r.value->admin);
  CHECK(yaml(std::string(minimal_head) + "admin:\n  address: localhost:9090\n").ok());
}

TEST_CASE("Unix listeners: mode and group", "[unit][config]") {
  const std::string head = "version: 1\nlisteners:\n";
  SECTION("accepted forms") {
    const auto [written, expected] = GENERATE(table<std::string_view, std::uint32_t>({
        {"\"0660\"", 0660}, {"0660", 0660}, {"660", 0660}, {"0o600", 0600}, {"'0777'", 0777}, {"0", 0}}));
    const auto r = yaml(head + "  - address: unix:/tmp/e.sock\n    mode: " + std::string(written) + "\n");
    INFO(dump(r));
    REQUIRE(r.ok());
    REQUIRE(r.value->listeners[0].mode);
    CHECK(*r.value->listeners[0].mode == expected);
    CHECK_FALSE(r.value->listeners[0].group);
  }
  SECTION("a group by name or number") {
    const auto r = yaml(head + "  - address: unix:/tmp/e.sock\n    group: root\n  - address: unix:/tmp/f.sock\n"
                               "    group: 4242\n");
    INFO(dump(r));
    REQUIRE(r.ok());
    CHECK(r.value->listeners[0].group == std::optional<std::uint32_t>(0));
    CHECK(r.value->listeners[0].group_name == "root");
    CHECK(r.value->listeners[1].group == std::optional<std::uint32_t>(4242));
    CHECK_FALSE(r.value->listeners[0].mode);
  }
  SECTION("defaults: neither") {
    const auto r = yaml(head + "  - address: unix:/tmp/e.sock\n");
    REQUIRE(r.ok());
    CHECK_FALSE(r.value->listeners[0].mode);
    CHECK_FALSE(r.value->listeners[0].group);
  }
  SECTION("refused values, with path and line") {
    const auto [written, words] = GENERATE(table<std::string_view, std::string_view>({
        {"mode: \"0668\"", "not a mode in octal"},
        {"mode: rw-rw----", "not a mode in octal"},
        {"mode: 01777", "out of range"},
        {"mode: 99999999999999999999", "not a mode in octal"},
        {"mode: 7777777777777", "out of range"},
        {"mode: \"\"", "expected a mode"},
        {"mode: [6, 6, 0]", "expected a mode"},
        {"group: no-such-group-egressd", "does not exist"},
        {"group: {name: x}", "expected a group"},
    }));
    const auto r = yaml(head + "  - address: unix:/tmp/e.sock\n  - address: unix:/tmp/f.sock\n    " +
                        std::string(written) + "\n");
    const std::string key(written.substr(0, written.find(':')));
    CHECK_THAT(expect_error(r, "listeners[1]." + key, 5).message, Catch::Contains(std::string(words)));
    CHECK(count(r, cfg::severity::error) == 1);
  }
  SECTION("not on TCP listeners") {
    const auto r = yaml(head + "  - address: 127.0.0.1:3128\n    mode: \"0660\"\n    group: root\n");
    CHECK_THAT(expect_error(r, "listeners[0].mode", 4).message, Catch::Contains("Unix listeners only"));
    CHECK_THAT(expect_error(r, "listeners[0].group", 5).message, Catch::Contains("Unix listeners only"));
    CHECK(count(r, cfg::severity::error) == 2);
  }
}

// ---------------------------------------------------------------------------
// The confirmation hook, admin.token_file and decisions_file (README "Confirmation hook")

// A fresh directory for files a configuration names, removed with what is in it.
struct temp_dir {
  std::string path;
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/egressd-config-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    const std::string file = path + "/" + name;
    std::ofstream(file, std::ios::binary) << text;
    return file;
  }
};

constexpr std::string_view pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

TEST_CASE("invalid: hook with two kinds", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("invalid/hook_two_kinds.yaml"));
  CHECK_FALSE(r.ok());
  CHECK_THAT(expect_error(r, "hook.exec", 7).message, Catch::Contains("more than one"));
  CHECK(count(r, cfg::severity::error) == 1);
}

TEST_CASE("hook: kinds, URL and ranges", "[unit][config]") {
  const std::string head = std::string(minimal_head) + "policy: {unknown: ask}\n";
  {
    const auto r = yaml(head + "hook: {console: true}\n");
    INFO(dump(r));
    REQUIRE(r.ok());
    CHECK(r.problems.empty());
    REQUIRE(r.value->hook);
    CHECK(r.value->hook->console);
    // The defaults of config.hpp.
    CHECK(r.value->hook->timeout == 30s);
    CHECK(r.value->hook->on_timeout == cfg::hook_fallback::deny);
    CHECK(r.value->hook->max_pending == 1024);
    CHECK(r.value->hook->concurrency == 16);
    CHECK(r.value->hook->ttl == 1h);
    CHECK(r.value->hook->deny_ttl == 5min);
    CHECK_FALSE(r.value->hook->persistent);
  }
  CHECK(yaml(head + "hook: {url: \"http://127.0.0.1:8081/decide\"}\n").ok());
  CHECK(yaml(head + "hook: {url: \"HTTPS://approver.example/decide\"}\n").ok());
  CHECK(yaml(head + "hook: {exec: [approve]}\n").ok());  // looked up in PATH
  CHECK(yaml(head + "hook: {exec: [/bin/sh], persistent: false}\n").ok());
  CHECK(yaml(head + "hook: {exec: [/bin/sh], console: false}\n").ok());
  expect_error(yaml(head + "hook: {timeout: 5s}\n"), "hook", 5);
  CHECK_THAT(expect_error(yaml(head + "hook: {timeout: 5s}\n"), "hook", 5).hint, Catch::Contains("console: true"));
  expect_error(yaml(head + "hook: {url: \"ftp://x/decide\"}\n"), "hook.url", 5);
  expect_error(yaml(head + "hook: {url: \"http:///decide\"}\n"), "hook.url", 5);
  expect_error(yaml(head + "hook: {url: \"http://a b/decide\"}\n"), "hook.url", 5);
  expect_error(yaml(head + "hook: {exec: []}\n"), "hook.exec", 5);
  expect_error(yaml(head + "hook: {exec: [\"\"]}\n"), "hook.exec", 5);
  expect_error(yaml(head + "hook: {exec: /bin/sh}\n"), "hook.exec", 5);
  expect_error(yaml(head + "hook: {console: true, url: \"http://127.0.0.1:1/\"}\n"), "hook.url", 5);
  // console: false is no kind at all.
  expect_error(yaml(head + "hook: {console: false}\n"), "hook", 5);
  expect_error(yaml(head + "hook: {console: yes}\n"), "hook.console", 5);
  expect_error(yaml(head + "hook: {console: true, timeout: 0s}\n"), "hook.timeout", 5);
  expect_error(yaml(head + "hook: {console: true, timeout: 30}\n"), "hook.timeout", 5);
  CHECK(expect_error(yaml(head + "hook: {console: true, on_timeout: dney}\n"), "hook.on_timeout", 5).hint ==
        "did you mean `deny`?");
  expect_error(yaml(head + "hook: {console: true, max_pending: 0}\n"), "hook.max_pending", 5);
  expect_error(yaml(head + "hook: {console: true, concurrency: 0}\n"), "hook.concurrency", 5);
  expect_error(yaml(head + "hook: {console: true, concurrency: 5000}\n"), "hook.concurrency", 5);
  expect_error(yaml(head + "hook: {console: true, ttl: 0s}\n"), "hook.ttl", 5);
  expect_error(yaml(head + "hook: {console: true, deny_ttl: -1m}\n"), "hook.deny_ttl", 5);
  expect_error(yaml(head + "hook: {console: true, persistent: 1}\n"), "hook.persistent", 5);
  CHECK(expect_error(yaml(head + "hook: {console: true, deny_tll: 1m}\n"), "hook.deny_tll", 5).hint ==
        "did you mean `deny_ttl`?");
  // `hook:` with nothing under it: no hook.
  const auto none = yaml(head + "hook:\n");
  REQUIRE(none.ok());
  CHECK_FALSE(none.value->hook);
}

TEST_CASE("hook: keys of one kind given to another are errors", "[unit][config]") {
  temp_dir dir;
  const std::string ca = dir.write("ca.pem", std::string(pem));
  const std::string token = dir.write("token", "s3cret\n");
  const std::string head = std::string(minimal_head) + "policy: {unknown: ask}\n";
  CHECK_THAT(expect_error(yaml(head + "hook: {url: \"http://127.0.0.1:1/\", persistent: true}\n"), "hook.persistent", 5)
                 .message,
             Catch::Contains("`exec` hook only"));
  expect_error(yaml(head + "hook: {console: true, persistent: false}\n"), "hook.persistent", 5);
  CHECK_THAT(expect_error(yaml(head + "hook: {exec: [/bin/sh], ca_file: " + ca + "}\n"), "hook.ca_file", 5).message,
             Catch::Contains("`url` hook only"));
  CHECK_THAT(expect_error(yaml(head + "hook: {console: true, token_file: " + token + "}\n"), "hook.token_file", 5)
                 .message,
             Catch::Contains("`url` hook only"));
  CHECK_THAT(expect_error(yaml(head + "hook: {url: \"http://127.0.0.1:1/\", ca_file: " + ca + "}\n"), "hook.ca_file",
                          5)
                 .message,
             Catch::Contains("https:// URL only"));
}

TEST_CASE("hook: ca_file and token_file are read at load", "[unit][config]") {
  temp_dir dir;
  const std::string ca = dir.write("ca.pem", std::string(pem));
  const std::string token = dir.write("token", "  s3cret-token \r\nsecond line\n");
  const std::string head = std::string(minimal_head) + "policy: {unknown: ask}\n";
  const auto ok = yaml(head + "hook: {url: \"https://approver.example/decide\", ca_file: " + ca +
                       ", token_file: " + token + "}\n");
  INFO(dump(ok));
  REQUIRE(ok.ok());
  CHECK(ok.problems.empty());
  CHECK(ok.value->hook->url == "https://approver.example/decide");
  CHECK(ok.value->hook->ca_file == ca);
  CHECK(ok.value->hook->token_file == token);
  std::string error;
  CHECK(cfg::read_token_file(token, error) == "s3cret-token");

  const auto https = [&](const std::string& keys) {
    return yaml(head + "hook: {url: \"https://approver.example/decide\", " + keys + "}\n");
  };
  const std::string missing = dir.path + "/missing.pem";
  CHECK_THAT(expect_error(https("ca_file: " + missing), "hook.ca_file", 5).message,
             Catch::Contains("cannot read `" + missing + "`: No such file or directory"));
  CHECK_THAT(expect_error(https("ca_file: " + dir.path), "hook.ca_file", 5).message, Catch::Contains("is a directory"));
  const std::string not_pem = dir.write("not.pem", "hello\n");
  CHECK_THAT(expect_error(https("ca_file: " + not_pem), "hook.ca_file", 5).message,
             Catch::Contains("holds no PEM certificate"));
  expect_error(https("ca_file: \"\""), "hook.ca_file", 5);

  CHECK_THAT(expect_error(https("token_file: " + dir.path + "/none"), "hook.token_file", 5).message,
             Catch::Contains(dir.path + "/none"));
  const std::string empty_line = dir.write("empty-line", "\ntoken on the second line\n");
  CHECK_THAT(expect_error(https("token_file: " + empty_line), "hook.token_file", 5).message,
             Catch::Contains("the first line of `" + empty_line + "` is empty"));
  const std::string blank = dir.write("blank", " \t\n");
  expect_error(https("token_file: " + blank), "hook.token_file", 5);
  const std::string empty = dir.write("empty", "");
  expect_error(https("token_file: " + empty), "hook.token_file", 5);
  const std::string fifo = dir.path + "/fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);  // reading it would block the load
  CHECK_THAT(expect_error(https("token_file: " + fifo), "hook.token_file", 5).message,
             Catch::Contains("not a regular file"));
  CHECK_THAT(expect_error(https("ca_file: " + fifo), "hook.ca_file", 5).message, Catch::Contains("not a regular file"));
  const std::string spaced = dir.write("spaced", "two words\n");
  CHECK_THAT(expect_error(https("token_file: " + spaced), "hook.token_file", 5).message,
             Catch::Contains("space or control character"));
  if (::geteuid() != 0) {  // root reads any file
    const std::string locked = dir.write("locked", "s3cret\n");
    ::chmod(locked.c_str(), 0);
    CHECK_THAT(expect_error(https("token_file: " + locked), "hook.token_file", 5).message,
               Catch::Contains("Permission denied"));
  }

  // A token sent in clear beyond loopback: a warning.
  const auto clear = yaml(head + "hook: {url: \"http://approver.example/decide\", token_file: " + token + "}\n");
  REQUIRE(clear.ok());
  CHECK_THAT(expect_warning(clear, "hook.token_file").message, Catch::Contains("clear text"));
  for (const char* local : {"http://127.0.0.1:8081/decide", "http://localhost/decide", "http://[::1]:1/"}) {
    INFO(local);
    const auto r = yaml(head + "hook: {url: \"" + local + "\", token_file: " + token + "}\n");
    REQUIRE(r.ok());
    CHECK(r.problems.empty());
  }
}

TEST_CASE("hook: a program named by path that cannot run is a warning", "[unit][config]") {
  const std::string head = std::string(minimal_head) + "policy: {unknown: ask}\n";
  const auto r = yaml(head + "hook: {exec: [/nonexistent/approve, --flag]}\n");
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK_THAT(expect_warning(r, "hook.exec").message, Catch::Contains("cannot execute `/nonexistent/approve`"));
  CHECK_THAT(expect_warning(r, "hook.exec").hint, Catch::Contains("hook_not_found"));
}

TEST_CASE("hook: unknown not ask, or ask without a hook, is a warning", "[unit][config]") {
  const auto never = yaml(std::string(minimal_head) + "policy: {unknown: deny}\nhook: {console: true}\n");
  REQUIRE(never.ok());
  CHECK_THAT(expect_warning(never, "hook").message, Catch::Contains("never asked"));
  const auto from_settings = settings(R"({"network": {"allowedDomains": ["a.example"], "strictAllowlist": false}})");
  REQUIRE(from_settings.ok());
  CHECK_THAT(expect_warning(from_settings, "network.strictAllowlist").message,
             Catch::Contains("no hook is configured"));
}

TEST_CASE("admin.token_file", "[unit][config]") {
  temp_dir dir;
  const std::string token = dir.write("admin-token", "adm1n\n");
  const std::string head(minimal_head);
  const auto ok = yaml(head + "admin:\n  address: 127.0.0.1:9090\n  token_file: " + token + "\n");
  INFO(dump(ok));
  REQUIRE(ok.ok());
  REQUIRE(ok.value->admin);
  CHECK(ok.value->admin->address.to_string() == "127.0.0.1:9090");
  CHECK(ok.value->admin->token_file == token);
  CHECK(yaml(head + "admin: {address: 127.0.0.1:9090}\n").value->admin->token_file.empty());

  CHECK_THAT(expect_error(yaml(head + "admin:\n  address: 127.0.0.1:9090\n  token_file: " + dir.path + "/none\n"),
                          "admin.token_file", 6)
                 .message,
             Catch::Contains(dir.path + "/none"));
  const std::string empty_line = dir.write("empty-line", "\nadm1n\n");
  CHECK_THAT(expect_error(yaml(head + "admin:\n  address: 127.0.0.1:9090\n  token_file: " + empty_line + "\n"),
                          "admin.token_file", 6)
                 .message,
             Catch::Contains("is empty"));
  expect_error(yaml(head + "admin: {address: 127.0.0.1:9090, token_file: \"\"}\n"), "admin.token_file", 4);
  expect_error(yaml(head + "admin: {address: 127.0.0.1:9090, token_file: [a]}\n"), "admin.token_file", 4);
  // token_file alone is no admin endpoint.
  expect_error(yaml(head + "admin: {token_file: " + token + "}\n"), "admin", 4);
}

TEST_CASE("decisions_file: its directory must exist, its content must read", "[unit][config]") {
  temp_dir dir;
  const std::string head(minimal_head);
  const auto ok = yaml(head + "decisions_file: " + dir.path + "/decisions.yaml\n");  // not there yet: fine
  INFO(dump(ok));
  REQUIRE(ok.ok());
  CHECK(ok.problems.empty());
  CHECK(ok.value->decisions_file == dir.path + "/decisions.yaml");

  CHECK_THAT(expect_error(yaml(head + "decisions_file: " + dir.path + "/no/such/decisions.yaml\n"), "decisions_file", 4)
                 .message,
             Catch::Contains("the directory `" + dir.path + "/no/such` does not exist"));
  CHECK_THAT(expect_error(yaml(head + "decisions_file: " + dir.path + "\n"), "decisions_file", 4).message,
             Catch::Contains("is a directory"));
  expect_error(yaml(head + "decisions_file: \"\"\n"), "decisions_file", 4);
  expect_error(yaml(head + "decisions_file: [a]\n"), "decisions_file", 4);

  const std::string good = dir.write("good.yaml", "decisions:\n  - {domain: npmjs.org, decision: allow}\n");
  const auto with_good = yaml(head + "decisions_file: " + good + "\n");
  REQUIRE(with_good.ok());
  CHECK(with_good.problems.empty());

  // A corrupt file is an error in that file, at its line, so egressd never starts on
  // it (and never replaces it with its next answer).
  const std::string bad = dir.write("bad.yaml", "decisions:\n  - {domain: npmjs.org, decision: allow}\n"
                                                "  - {host: b.example, scope: everywhere, decision: allow}\n");
  const auto with_bad = yaml(head + "decisions_file: " + bad + "\n");
  INFO(dump(with_bad));
  CHECK_FALSE(with_bad.ok());
  const cfg::problem* p = at_path(with_bad, "decisions[1].scope");
  REQUIRE(p != nullptr);
  CHECK(p->file == bad);
  CHECK(p->line == 3);
  CHECK_THAT(p->to_string(), Catch::StartsWith(bad + ":3:"));
}

TEST_CASE("hook_summary: what check-config says of the hook", "[unit][config]") {
  const std::string head(minimal_head);
  const auto none = yaml(head + "policy: {unknown: ask}\n");
  REQUIRE(none.ok());
  CHECK(cfg::hook_summary(*none.value) ==
        "hook: none (unknown destinations are denied: no_hook)\ndecisions_file: none (`always` answers are not kept "
        "across restarts)");
  const auto exec = yaml(head + "policy: {unknown: ask}\nhook: {exec: [/bin/sh, -c, \"exit 0\"], persistent: true, "
                                "timeout: 5s}\ndecisions_file: /tmp/d.yaml\n");
  INFO(dump(exec));
  REQUIRE(exec.ok());
  CHECK(cfg::hook_summary(*exec.value) ==
        "hook: exec /bin/sh -c exit 0 (persistent), timeout 5s, on_timeout deny, max_pending 1024, concurrency 16, "
        "ttl 1h, deny_ttl 5m\ndecisions_file: /tmp/d.yaml");
  const auto console = yaml(head + "policy: {unknown: ask}\nhook: {console: true}\n");
  REQUIRE(console.ok());
  CHECK_THAT(cfg::hook_summary(*console.value), Catch::StartsWith("hook: console (answers by hand), timeout 30s"));
}

TEST_CASE("metrics: max_domains is 1..100000", "[unit][config]") {
  const std::string head(minimal_head);
  const auto ok = yaml(head + "metrics: {max_domains: 20}\n");
  INFO(dump(ok));
  REQUIRE(ok.ok());
  CHECK(ok.value->metrics.max_domains == 20);
  CHECK(yaml(head + "metrics: {max_domains: 100000}\n").ok());
  for (const char* bad : {"0", "100001", "-1", "many"}) {
    INFO(bad);
    const auto r = yaml(head + "metrics:\n  max_domains: " + bad + "\n");
    expect_error(r, "metrics.max_domains", 5);
  }
  CHECK_THAT(expect_error(yaml(head + "metrics: {max_domain: 20}\n"), "metrics.max_domain", 4).hint,
             Catch::Contains("max_domains"));
}

TEST_CASE("invalid: YAML syntax error with its line", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("invalid/syntax_error.yaml"));
  CHECK_FALSE(r.ok());
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].level == cfg::severity::error);
  CHECK(r.problems[0].line == 6);
  CHECK(r.problems[0].column == 3);
  CHECK_THAT(r.problems[0].message, Catch::Contains("syntax error"));

  const auto tabs = yaml("version: 1\nlisteners:\n\t- address: 127.0.0.1:1\n");
  CHECK_FALSE(tabs.ok());
  REQUIRE_FALSE(tabs.problems.empty());
  CHECK(tabs.problems[0].line == 3);
}

TEST_CASE("invalid: every problem reported in one pass", "[unit][config]") {
  const auto r = cfg::load_yaml_file(data("invalid/many_problems.yaml"));
  CHECK_FALSE(r.ok());
  CHECK(expect_error(r, "listeners[0].protocol", 4).hint == "did you mean `protocols`?");
  CHECK(expect_error(r, "policy.guard.allow_privat", 8).hint == "did you mean `allow_private`?");
  expect_error(r, "limits.idle_timeout", 10);
  expect_error(r, "limits.max_head_bytes", 11);
  expect_error(r, "metrics.max_domains", 13);  // out of range
  CHECK_THAT(expect_error(r, "auth.users[1].username", 17).message, Catch::Contains("duplicate username"));
  CHECK(count(r, cfg::severity::error) == 6);
  const cfg::problem* w = at_path(r, "policy.unknown");
  REQUIRE(w != nullptr);
  CHECK(w->level == cfg::severity::warning);
  CHECK(w->line == 6);
}

TEST_CASE("unknown: ask without a hook is a warning", "[unit][config]") {
  const auto r = yaml(std::string(minimal_head) + "policy:\n  unknown: ask\n");
  INFO(dump(r));
  REQUIRE(r.ok());
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].level == cfg::severity::warning);
  CHECK(r.problems[0].path == "policy.unknown");
  CHECK(r.problems[0].line == 5);
  CHECK(r.problems[0].message == "no hook is configured: unknown destinations are denied with reason no_hook");
  CHECK(r.problems[0].hint == "add a `hook:` (exec, url or console: true), or write `unknown: deny` to say so");
  // With a hook: no warning at all.
  const auto with_hook = yaml(std::string(minimal_head) + "policy:\n  unknown: ask\nhook: {console: true}\n");
  REQUIRE(with_hook.ok());
  CHECK(with_hook.problems.empty());
}

TEST_CASE("cross-field and range checks", "[unit][config]") {
  const std::string head(minimal_head);
  expect_error(yaml("version: 1\n"), "listeners", 1);
  expect_error(yaml("version: 1\nlisteners: []\n"), "listeners", 2);
  expect_error(yaml("version: 1\nlisteners: 127.0.0.1:3128\n"), "listeners", 2);
  CHECK(count(yaml("version: 1\nlisteners: 127.0.0.1:3128\n"), cfg::severity::error) == 1);
  expect_error(yaml("version: 1\nlisteners:\n  - {protocols: [http]}\n"), "listeners[0]", 3);
  expect_error(yaml("version: 1\nlisteners:\n  - {address: 127.0.0.1:1, protocols: []}\n"), "listeners[0].protocols",
               3);
  CHECK(expect_error(yaml("version: 1\nlisteners:\n  - {address: 127.0.0.1:1, protocols: [htp]}\n"),
                     "listeners[0].protocols[0]", 3)
            .hint == "did you mean `http`?");
  expect_error(yaml(head + "limits: {max_connections: 0}\n"), "limits.max_connections", 4);
  expect_error(yaml(head + "limits: {max_head_bytes: 1023}\n"), "limits.max_head_bytes", 4);
  expect_error(yaml(head + "limits: {max_head_bytes: 1048577}\n"), "limits.max_head_bytes", 4);
  CHECK(yaml(head + "limits: {max_head_bytes: 1024}\n").ok());
  CHECK(yaml(head + "limits: {max_head_bytes: 1048576}\n").ok());
  expect_error(yaml(head + "limits: {max_connections: -1}\n"), "limits.max_connections", 4);
  expect_error(yaml(head + "limits: {head_timeout: -1s}\n"), "limits.head_timeout", 4);
  expect_error(yaml(head + "workers: 5000\n"), "workers", 4);
  expect_error(yaml(head + "busy_poll_us: 100001\n"), "busy_poll_us", 4);
  expect_error(yaml(head + "busy_poll_us: 50us\n"), "busy_poll_us", 4);
  CHECK(yaml(head + "busy_poll_us: 100000\n").value->busy_poll_us == 100000);
  expect_error(yaml(head + "dns: {servers: [dns.google]}\n"), "dns.servers[0]", 4);
  expect_error(yaml(head + "dns: {timeout: 0ms}\n"), "dns.timeout", 4);
  expect_error(yaml(head + "log: {level: verbose}\n"), "log.level", 4);
  expect_error(yaml(head + "log: {format: xml}\n"), "log.format", 4);
  expect_error(yaml(head + "log: {audit: \"\"}\n"), "log.audit", 4);
  expect_error(yaml(head + "auth: {users: [{username: \"\", password: x}]}\n"), "auth.users[0].username", 4);
  expect_error(yaml(head + "auth: {users: [{username: \"a:b\", password: x}]}\n"), "auth.users[0].username", 4);
  expect_error(yaml(head + "auth: {users: [{username: a, password: \"\"}]}\n"), "auth.users[0].password", 4);
  expect_error(yaml(head + "auth: {users: [{username: a}]}\n"), "auth.users[0]", 4);
  expect_error(yaml(head + "auth: {users: [{username: [a], password: b}]}\n"), "auth.users[0].username", 4);
  expect_error(yaml(head + "admin: {}\n"), "admin", 4);
}

TEST_CASE("documents: empty, several, not a mapping, duplicate keys", "[unit][config]") {
  const auto empty = yaml("");
  CHECK_FALSE(empty.ok());
  REQUIRE(at_path(empty, "version") != nullptr);
  CHECK_FALSE(yaml("# nothing\n").ok());
  // Reported at the `---` line that starts the second document.
  expect_error(yaml(std::string(minimal_head) + "---\nversion: 1\n"), "", 4);
  // yaml-cpp's LoadAll looped forever on this (found by fuzz_config): a bounded error now.
  CHECK_FALSE(yaml("{\n  \"a\": [\n    \"x\",n \"y\"\n  ],\n   \"b\": 1\n    }\n  },\n").ok());
  expect_error(yaml("- version: 1\n"), "", 1);
  const auto dup = yaml(std::string(minimal_head) + "policy:\n  allow: [a.example]\n  allow: [b.example]\n");
  CHECK_THAT(expect_error(dup, "policy.allow", 6).message, Catch::Contains("duplicate key"));
}

TEST_CASE("problem::to_string", "[unit][config]") {
  cfg::problem p{cfg::severity::error, "egressd.yaml", "policy.allow[2]", 7, 5, "bad pattern", "write x"};
  CHECK(p.to_string() == "egressd.yaml:7:5: error: policy.allow[2]: bad pattern (hint: write x)");
  p.level = cfg::severity::warning;
  p.hint.clear();
  p.path.clear();
  p.line = 0;
  CHECK(p.to_string() == "egressd.yaml: warning: bad pattern");
}

TEST_CASE("files that cannot be read", "[unit][config]") {
  for (const auto& r :
       {cfg::load_yaml_file(data("no/such/file.yaml")), cfg::load_settings_file(data("no/such.json"))}) {
    CHECK_FALSE(r.ok());
    REQUIRE(r.problems.size() == 1);
    CHECK(r.problems[0].line == 0);
    CHECK_THAT(r.problems[0].message, Catch::Contains("cannot open"));
  }
}

// ---------------------------------------------------------------------------

TEST_CASE("settings: Claude Code layout (sandbox.network)", "[unit][config]") {
  const auto r = cfg::load_settings_file(data("settings/claude_code.json"));
  INFO(dump(r));
  REQUIRE(r.ok());
  const cfg::config& c = *r.value;
  CHECK(c.source == data("settings/claude_code.json"));
  CHECK(c.policy.syntax == policy::grammar::srt);
  REQUIRE(c.policy.allow.size() == 4);
  CHECK(c.policy.allow[1].text == "*.githubusercontent.com");
  CHECK(c.policy.allow[1].where.path == "sandbox.network.allowedDomains[1]");
  CHECK(c.policy.allow[1].where.file == data("settings/claude_code.json"));
  CHECK(c.policy.allow[1].where.line == 51);
  CHECK(c.policy.allow[1].where.column == 9);
  CHECK(c.policy.allow[3].text == "pypi.org:443");
  REQUIRE(c.policy.deny.size() == 1);
  CHECK(c.policy.deny[0].text == "uploads.github.com");
  REQUIRE(c.policy.guard.deny_ranges.size() == 2);
  CHECK(c.policy.guard.deny_ranges[0].text == "10.0.0.0/8");
  CHECK(c.policy.guard.deny_ranges[1].where.path == "sandbox.network.deniedResolvedAddresses[1]");
  CHECK_FALSE(c.policy.guard.allow_private);
  CHECK(c.policy.unknown == policy::unknown_mode::ask);
  // Everything else from the embedded default.
  const cfg::config d = cfg::default_config();
  REQUIRE(c.listeners.size() == d.listeners.size());
  CHECK(c.listeners[0].address == d.listeners[0].address);
  CHECK(c.admin.has_value() == d.admin.has_value());
  CHECK_FALSE(c.hook);
  // unknown: ask with no hook: one warning, at strictAllowlist's place.
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].level == cfg::severity::warning);
  CHECK(r.problems[0].path == "sandbox.network.strictAllowlist");
}

TEST_CASE("settings: sandbox-runtime layout (network), tabs, strictAllowlist true", "[unit][config]") {
  const auto r = cfg::load_settings_file(data("settings/srt.json"));
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.problems.empty());
  const cfg::config& c = *r.value;
  CHECK(c.policy.syntax == policy::grammar::srt);
  REQUIRE(c.policy.allow.size() == 2);
  CHECK(c.policy.allow[0].text == "example.com");
  CHECK(c.policy.allow[1].where.path == "network.allowedDomains[1]");
  CHECK(c.policy.allow[1].where.line == 5);
  CHECK(c.policy.allow[1].where.column == 4);
  CHECK(c.policy.deny.empty());
  CHECK(c.policy.unknown == policy::unknown_mode::deny);
}

TEST_CASE("settings: strictAllowlist both ways", "[unit][config]") {
  const auto [text, expected] = GENERATE(table<std::string_view, policy::unknown_mode>({
      {R"({"network": {"allowedDomains": ["a.example"], "strictAllowlist": true}})", policy::unknown_mode::deny},
      {R"({"network": {"allowedDomains": ["a.example"], "strictAllowlist": false}})", policy::unknown_mode::ask},
      {R"({"network": {"allowedDomains": ["a.example"]}})", policy::unknown_mode::ask},
      {R"({"sandbox": {"network": {"strictAllowlist": true}}})", policy::unknown_mode::deny},
      {R"({"sandbox": {"network": {"strictAllowlist": false}}})", policy::unknown_mode::ask},
  }));
  CAPTURE(text);
  const auto r = settings(text);
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.value->policy.unknown == expected);
  CHECK(count(r, cfg::severity::warning) == (expected == policy::unknown_mode::ask ? 1U : 0U));
}

TEST_CASE("settings: entries that are not strings", "[unit][config]") {
  const auto r = cfg::load_settings_file(data("settings/non_string.json"));
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.value);
  CHECK_THAT(expect_error(r, "sandbox.network.allowedDomains[1]", 6).message, Catch::Contains("got 42"));
  CHECK_THAT(expect_error(r, "sandbox.network.allowedDomains[2]", 7).message, Catch::Contains("got null"));
  CHECK_THAT(expect_error(r, "sandbox.network.allowedDomains[3]", 8).message, Catch::Contains("got an object"));
  CHECK_THAT(expect_error(r, "sandbox.network.deniedDomains", 10).message, Catch::Contains("array"));
  expect_error(r, "sandbox.network.strictAllowlist", 11);
  CHECK(at_path(r, "sandbox.network.allowedDomains[0]") == nullptr);
  CHECK(count(r, cfg::severity::error) == 5);
}

TEST_CASE("settings: layouts, syntax, odd JSON", "[unit][config]") {
  expect_error(cfg::load_settings_file(data("settings/both_layouts.json")), "sandbox.network", 3);

  const auto syntax = cfg::load_settings_file(data("settings/syntax_error.json"));
  CHECK_FALSE(syntax.ok());
  REQUIRE(syntax.problems.size() == 1);
  CHECK(syntax.problems[0].line == 4);

  const auto none = cfg::load_settings_file(data("settings/no_network.json"));
  INFO(dump(none));
  REQUIRE(none.ok());
  CHECK(none.value->policy.allow.empty());
  CHECK(count(none, cfg::severity::warning) == 2);

  expect_error(settings(R"(["github.com"])"), "", 1);
  expect_error(settings(R"({"network": ["github.com"]})"), "network", 1);
  expect_error(settings(R"({"sandbox": true})"), "sandbox", 1);
  CHECK_FALSE(settings("").ok());

  // JSON.parse keeps the last of a repeated key; so do we, with a warning.
  const auto dup = settings(R"({"network": {"allowedDomains": ["a.example"], "allowedDomains": ["b.example"]}})");
  REQUIRE(dup.ok());
  REQUIRE(dup.value->policy.allow.size() == 1);
  CHECK(dup.value->policy.allow[0].text == "b.example");

  // Escapes: surrogate pairs (as Python's json.dump writes them), a lone surrogate,
  // `\/`, a BOM, CRLF line ends, minified and tab-indented text.
  const auto odd = settings(
      "\xEF\xBB\xBF{\"env\":{\"X\":\"\\ud83d\\ude80 \\ud800 \\\\ud83d\"},\r\n"
      "\t\"network\":{\"allowedDomains\":[\"a.example\",\"b\\/c.example\",\"\\u0063.example\"]}}\r\n");
  INFO(dump(odd));
  REQUIRE(odd.ok());
  REQUIRE(odd.value->policy.allow.size() == 3);
  CHECK(odd.value->policy.allow[1].text == "b/c.example");
  CHECK(odd.value->policy.allow[2].text == "c.example");
  CHECK(odd.value->policy.allow[0].where.line == 2);

  // A surrogate pair inside a rule survives as UTF-8 (policy::compile judges it).
  const auto emoji = settings(R"({"network": {"allowedDomains": ["\ud83d\ude80.example"]}})");
  REQUIRE(emoji.ok());
  CHECK(emoji.value->policy.allow[0].text == "\xF0\x9F\x9A\x80.example");
}

// ---------------------------------------------------------------------------

TEST_CASE("the embedded default config", "[unit][config]") {
  const auto r = cfg::load_yaml_string(cfg::default_config_yaml(), "embedded default");
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.problems.empty());

  const cfg::config c = cfg::default_config();
  CHECK(c.source == "embedded default");
  REQUIRE(c.listeners.size() == 2);
  CHECK(c.listeners[0].address.to_string() == "127.0.0.1:3128");
  CHECK(c.listeners[1].address.to_string() == "127.0.0.1:1080");
  for (const auto& l : c.listeners) CHECK((l.http && l.socks5));
  REQUIRE(c.admin);
  CHECK(c.admin->address.to_string() == "127.0.0.1:9090");
  std::vector<std::string> allow;
  for (const auto& e : c.policy.allow) allow.push_back(e.text);
  CHECK(allow == std::vector<std::string>{"@github", "@npm", "@pypi", "@anthropic"});
  CHECK(c.policy.deny.empty());
  CHECK(c.policy.unknown == policy::unknown_mode::deny);
  CHECK_FALSE(c.hook);
  CHECK(c.log.format == cfg::log_format::json);
  CHECK(c.log.audit == cfg::audit_target::standard_output);

  // Its policy compiles without a single problem, public-suffix check included.
  policy::compile_options options;
  options.is_public_suffix = cfg::is_public_suffix;
  options.is_platform_suffix = cfg::is_platform_suffix;
  const auto compiled = policy::compile(c.policy, options);
  CHECK(compiled.policy != nullptr);
  for (const auto& p : compiled.problems) FAIL_CHECK(p.where.path << ": " << p.message);

  // The embedded text is the repository file, byte for byte.
  std::ifstream in(data("../../config/default_config.yaml"), std::ios::binary);
  REQUIRE(in);
  std::ostringstream file;
  file << in.rdbuf();
  CHECK(cfg::default_config_yaml() == file.str());
}

TEST_CASE("public suffixes", "[unit][config]") {
  CHECK(cfg::is_public_suffix("com"));
  CHECK(cfg::is_public_suffix("co.uk"));
  CHECK(cfg::is_public_suffix("CO.UK."));
  CHECK(cfg::is_public_suffix("kawasaki.jp"));
  CHECK_FALSE(cfg::is_public_suffix("example.co.uk"));
  CHECK_FALSE(cfg::is_public_suffix("example.com"));
  CHECK_FALSE(cfg::is_public_suffix("city.kawasaki.jp"));  // an exception rule (!city.kawasaki.jp)
  // The private section does not count: `*.githubusercontent.com` is a normal entry.
  CHECK_FALSE(cfg::is_public_suffix("githubusercontent.com"));
  CHECK_FALSE(cfg::is_public_suffix("github.io"));
  // ... it is where hosting platforms are.
  CHECK(cfg::is_platform_suffix("github.io"));
  CHECK(cfg::is_platform_suffix("s3.amazonaws.com"));
  CHECK(cfg::is_platform_suffix("GitHub.IO."));
  CHECK_FALSE(cfg::is_platform_suffix("pages.github.io"));
  CHECK_FALSE(cfg::is_platform_suffix("co.uk"));
  CHECK_FALSE(cfg::is_platform_suffix("example.com"));
  CHECK_FALSE(cfg::is_platform_suffix(""));
  // Names private networks use are not public suffixes: `*.internal` stays valid.
  CHECK_FALSE(cfg::is_public_suffix("internal"));
  CHECK_FALSE(cfg::is_public_suffix("corp"));
  CHECK_FALSE(cfg::is_public_suffix(""));
  CHECK_FALSE(cfg::is_public_suffix("."));
  CHECK_FALSE(
      cfg::is_public_suffix("b\xC3\xBC"
                            "cher.de"));
}


// ---------------------------------------------------------------------------
// Settings: ports, strict JSON, misplaced and misspelt keys, layering (#13)


TEST_CASE("settings: httpProxyPort and socksProxyPort are where egressd listens", "[unit][config]") {
  const auto both = settings(R"({"sandbox": {"network": {"httpProxyPort": 23128, "socksProxyPort": 21080,
                                 "strictAllowlist": true}}})");
  INFO(dump(both));
  REQUIRE(both.ok());
  REQUIRE(both.value->listeners.size() == 2);
  CHECK(both.value->listeners[0].address.to_string() == "127.0.0.1:23128");
  CHECK(both.value->listeners[1].address.to_string() == "127.0.0.1:21080");
  for (const auto& l : both.value->listeners) CHECK((l.http && l.socks5));  // each still sniffs both

  // Only one given: only that one replaces its default.
  const auto http_only = settings(R"({"network": {"httpProxyPort": 23128, "strictAllowlist": true}})");
  REQUIRE(http_only.ok());
  CHECK(http_only.value->listeners[0].address.to_string() == "127.0.0.1:23128");
  CHECK(http_only.value->listeners[1].address.to_string() == "127.0.0.1:1080");
  const auto socks_only = settings(R"({"network": {"socksProxyPort": 21080, "strictAllowlist": true}})");
  REQUIRE(socks_only.ok());
  CHECK(socks_only.value->listeners[0].address.to_string() == "127.0.0.1:3128");
  CHECK(socks_only.value->listeners[1].address.to_string() == "127.0.0.1:21080");

  expect_error(settings(R"({"network": {"httpProxyPort": 0}})"), "network.httpProxyPort", 1);
  expect_error(settings(R"({"network": {"httpProxyPort": 65536}})"), "network.httpProxyPort", 1);
  expect_error(settings(R"({"network": {"httpProxyPort": "3128"}})"), "network.httpProxyPort", 1);
  expect_error(settings(R"({"network": {"socksProxyPort": 1.5}})"), "network.socksProxyPort", 1);
  // One port for both: one listener serves both protocols.
  const auto same = settings("{\"network\": {\"httpProxyPort\": 23128,\n \"socksProxyPort\": 23128}}");
  INFO(dump(same));
  REQUIRE(same.ok());
  REQUIRE(same.value->listeners.size() == 1);
  CHECK(same.value->listeners[0].address.to_string() == "127.0.0.1:23128");
  // The HTTP port on the SOCKS default: still one listener there, not two.
  const auto crossed = settings(R"({"network": {"httpProxyPort": 1080, "strictAllowlist": true}})");
  REQUIRE(crossed.ok());
  REQUIRE(crossed.value->listeners.size() == 1);
  CHECK(crossed.value->listeners[0].address.to_string() == "127.0.0.1:1080");
}

TEST_CASE("settings: strict JSON, as JSON.parse reads it", "[unit][config]") {
  const auto comma = settings("{\"network\": {\n  \"allowedDomains\": [\"a.example\",],\n}}");
  CHECK_FALSE(comma.ok());
  REQUIRE(comma.problems.size() == 1);
  CHECK(comma.problems[0].line == 2);
  CHECK(comma.problems[0].column == 34);
  CHECK_THAT(comma.problems[0].message, Catch::Contains("trailing comma"));

  const auto comment = settings("{\n  // the sandbox\n  \"network\": {}\n}");
  CHECK_FALSE(comment.ok());
  REQUIRE(comment.problems.size() == 1);
  CHECK(comment.problems[0].line == 2);
  CHECK(comment.problems[0].column == 3);
  CHECK_THAT(comment.problems[0].message, Catch::Contains("comments are not allowed"));

  // An egressd YAML given as --settings: no deny-everything proxy, an error that says why.
  const auto yaml_file = cfg::load_settings_file(data("valid/minimal.yaml"));
  CHECK_FALSE(yaml_file.ok());
  REQUIRE(yaml_file.problems.size() == 1);
  CHECK_THAT(yaml_file.problems[0].hint, Catch::Contains("use --config"));
  CHECK(yaml_file.problems[0].line >= 1);

  // ...and a settings JSON given as --config.
  const auto json_file = cfg::load_yaml_file(data("settings/claude_code.json"));
  CHECK_FALSE(json_file.ok());
  REQUIRE(json_file.problems.size() == 1);
  CHECK_THAT(json_file.problems[0].hint, Catch::Contains("use --settings"));
}

TEST_CASE("settings: misspelt network keys warn, misplaced ones are errors", "[unit][config]") {
  const auto typo = settings(R"({"sandbox": {"network": {"alowedDomains": ["a.example"], "strictAllowlist": true}}})");
  REQUIRE(typo.ok());
  CHECK(expect_warning(typo, "sandbox.network.alowedDomains").hint == "did you mean `allowedDomains`?");
  const auto other = settings(R"({"network": {"frobnicate": 1, "allowLocalBinding": true, "strictAllowlist": true}})");
  REQUIRE(other.ok());
  CHECK(count(other, cfg::severity::warning) == 1);  // allowLocalBinding is sandbox-runtime's own key
  expect_warning(other, "network.frobnicate");

  const auto top = settings("{\"permissions\": {},\n \"allowedDomains\": [\"a.example\"]}");
  CHECK_FALSE(top.ok());
  CHECK_THAT(expect_error(top, "allowedDomains", 2).hint, Catch::Contains("`sandbox.network`"));
  const auto nested = settings(R"({"sandbox": {"allowedDomains": ["a.example"], "network": {}}})");
  CHECK_FALSE(nested.ok());
  CHECK(expect_error(nested, "sandbox.allowedDomains", 1).hint == "move it under `sandbox.network`");
}

TEST_CASE("--config with --settings: the settings' policy on the YAML's listeners", "[unit][config]") {
  const std::string yaml_text =
      "version: 1\n"
      "listeners:\n"
      "  - address: 127.0.0.1:4128\n"
      "admin: {address: 127.0.0.1:9191}\n"
      "policy:\n"
      "  allow: [\"old.example\"]\n"
      "  unknown: deny\n"
      "  guard: {deny_ranges: [\"198.18.0.0/15\"]}\n"
      "log: {format: text}\n";
  const std::string json_text =
      R"({"sandbox": {"network": {"allowedDomains": ["a.example"], "deniedDomains": ["b.example"],)"
      "\n"
      R"("deniedResolvedAddresses": ["10.0.0.0/8"], "httpProxyPort": 23128}}})";
  const auto r = cfg::load_layered_strings(yaml_text, "e.yaml", json_text, "s.json");
  INFO(dump(r));
  REQUIRE(r.ok());
  const cfg::config& c = *r.value;
  CHECK(c.source == "e.yaml + s.json");
  REQUIRE(c.listeners.size() == 1);
  CHECK(c.listeners[0].address.to_string() == "127.0.0.1:4128");
  CHECK(c.admin->address.to_string() == "127.0.0.1:9191");
  CHECK(c.log.format == cfg::log_format::text);
  CHECK(c.policy.syntax == policy::grammar::srt);
  REQUIRE(c.policy.allow.size() == 1);
  CHECK(c.policy.allow[0].text == "a.example");
  CHECK(c.policy.allow[0].where.file == "s.json");
  REQUIRE(c.policy.deny.size() == 1);
  REQUIRE(c.policy.guard.deny_ranges.size() == 2);  // the YAML's and the settings'
  CHECK(c.policy.unknown == policy::unknown_mode::deny);  // no strictAllowlist: the YAML's
  CHECK_THAT(expect_warning(r, "policy.allow").message, Catch::Contains("replaced by the settings file"));
  const cfg::problem& port = expect_warning(r, "sandbox.network.httpProxyPort");
  CHECK(port.file == "s.json");
  CHECK_THAT(port.message, Catch::Contains("127.0.0.1:23128"));

  // strictAllowlist decides `unknown`; a YAML without listeners takes the ports.
  const auto ports = cfg::load_layered_strings(
      "version: 1\npolicy: {unknown: deny}\n", "e.yaml",
      R"({"network": {"strictAllowlist": false, "httpProxyPort": 23128, "socksProxyPort": 21080}})", "s.json");
  INFO(dump(ports));
  REQUIRE(ports.ok());
  CHECK(ports.value->policy.unknown == policy::unknown_mode::ask);
  REQUIRE(ports.value->listeners.size() == 2);
  CHECK(ports.value->listeners[0].address.to_string() == "127.0.0.1:23128");
  CHECK(ports.value->listeners[1].address.to_string() == "127.0.0.1:21080");
  CHECK(expect_warning(ports, "network.strictAllowlist").file == "s.json");

  // Only ports in the settings: the YAML's lists and grammar stay.
  const auto keep = cfg::load_layered_strings(yaml_text, "e.yaml", R"({"network": {"httpProxyPort": 4128}})", "s.json");
  INFO(dump(keep));
  REQUIRE(keep.ok());
  CHECK(keep.value->policy.syntax == policy::grammar::egressd);
  REQUIRE(keep.value->policy.allow.size() == 1);
  CHECK(keep.value->policy.allow[0].text == "old.example");
  CHECK(keep.problems.empty());

  // Problems of both files at once, each with its own file.
  const auto bad = cfg::load_layered_strings("version: 2\nlisteners: []\n", "e.yaml", "{\"network\": [}", "s.json");
  CHECK_FALSE(bad.ok());
  CHECK(std::any_of(bad.problems.begin(), bad.problems.end(), [](const cfg::problem& p) { return p.file == "e.yaml"; }));
  CHECK(std::any_of(bad.problems.begin(), bad.problems.end(), [](const cfg::problem& p) { return p.file == "s.json"; }));
}

TEST_CASE("log.audit: the directory must exist and be writable; none is created", "[unit][config]") {
  const auto missing = yaml(std::string(minimal_head) + "log:\n  audit: /nonexistent/dir/audit.log\n");
  CHECK_FALSE(missing.ok());
  CHECK_THAT(expect_error(missing, "log.audit", 5).message, Catch::Contains("/nonexistent/dir"));
  const auto a_dir = yaml(std::string(minimal_head) + "log:\n  audit: /tmp\n");
  CHECK_THAT(expect_error(a_dir, "log.audit", 5).message, Catch::Contains("is a directory"));
  CHECK(yaml(std::string(minimal_head) + "log:\n  audit: /tmp/egressd-unit-audit.log\n").ok());
  for (const char* kept : {"stdout", "stderr", "off"})
    CHECK(yaml(std::string(minimal_head) + "log:\n  audit: " + kept + "\n").ok());
}

TEST_CASE("listeners and admin beyond loopback without authentication warn", "[unit][config]") {
  const auto open = yaml("version: 1\nlisteners:\n  - address: 0.0.0.0:3128\nadmin: {address: 0.0.0.0:9090}\n");
  REQUIRE(open.ok());
  CHECK_THAT(expect_warning(open, "listeners[0].address").hint, Catch::Contains("auth.users"));
  CHECK_THAT(expect_warning(open, "admin.address").message, Catch::Contains("no authentication"));
  const auto with_users =
      yaml("version: 1\nlisteners:\n  - address: 0.0.0.0:3128\nauth: {users: [{username: a, password: b}]}\n");
  REQUIRE(with_users.ok());
  CHECK(with_users.problems.empty());
  const auto loopback = yaml("version: 1\nlisteners:\n  - address: 127.0.0.2:3128\n  - address: localhost:3129\n"
                             "  - address: \"[::1]:3130\"\nadmin: {address: 127.0.0.1:9090}\n");
  CHECK(loopback.problems.empty());
}

TEST_CASE("endpoint hints keep the user's own port", "[unit][config]") {
  const auto v6 = cfg::parse_endpoint("::1:23128");
  REQUIRE_FALSE(v6.value);
  CHECK(v6.hint == "write [::1]:23128");
  CHECK(cfg::parse_endpoint("2001:db8::7:8443").hint == "write [2001:db8::7]:8443");
  const auto r = yaml("version: 1\nlisteners:\n  - address: \"::1:23128\"\n");
  CHECK(expect_error(r, "listeners[0].address", 3).hint == "write [::1]:23128");
}

policy::compile_result compile_yaml(const cfg::load_result& r) {
  policy::compile_options options;
  options.is_public_suffix = cfg::is_public_suffix;
  return policy::compile(r.value->policy, options);
}

TEST_CASE("policy lists: broad denies accepted, duplicates and allow+deny warned", "[unit][config]") {
  const auto broad = yaml(std::string(minimal_head) + "policy:\n  deny: [\"*.ru\", \"*.com\", \"*.co.uk\", \"**.cn\"]\n");
  REQUIRE(broad.ok());
  const auto compiled = compile_yaml(broad);
  for (const auto& p : compiled.problems) FAIL_CHECK(p.entry << ": " << p.message);
  CHECK(compiled.policy != nullptr);
  // A broad allow stays an error.
  for (const char* entry : {"*.com", "*.co.uk"}) {
    const auto allow = yaml(std::string(minimal_head) + "policy:\n  allow: [\"" + entry + "\"]\n");
    REQUIRE(allow.ok());
    CHECK(compile_yaml(allow).policy == nullptr);
  }

  const auto lists = yaml(std::string(minimal_head) +
                          "policy:\n"
                          "  allow: [\"a.example\", \"b.example\", \"A.example\"]\n"
                          "  deny: [\"b.example\", \"c.example\", \"c.example\"]\n");
  INFO(dump(lists));
  REQUIRE(lists.ok());
  CHECK(count(lists, cfg::severity::warning) == 3);
  const cfg::problem& both = expect_warning(lists, "policy.allow[1]");
  CHECK_THAT(both.message, Catch::Contains("both allow and deny"));
  CHECK_THAT(both.message, Catch::Contains("deny wins"));
  CHECK_THAT(both.message, Catch::Contains("test.yaml:6 policy.deny[0]"));
  CHECK_THAT(expect_warning(lists, "policy.allow[2]").message, Catch::Contains("first at test.yaml:5 policy.allow[0]"));
  CHECK_THAT(expect_warning(lists, "policy.deny[2]").message, Catch::Contains("listed twice in deny"));
}

TEST_CASE("describe_changes: rules, listeners, keys that need a restart", "[unit][config]") {
  const auto before = yaml("version: 1\nlisteners:\n  - address: 127.0.0.1:3128\n  - address: 127.0.0.1:1080\n"
                           "policy:\n  allow: [\"a.example\", \"b.example\"]\n  deny: [\"x.example\"]\n");
  REQUIRE(before.ok());
  SECTION("nothing changed") {
    const auto d = cfg::describe_changes(*before.value, *before.value);
    CHECK(d.rules_added.empty());
    CHECK(d.rules_removed.empty());
    CHECK_FALSE(d.listeners_need_restart());
    CHECK(d.restart_keys.empty());
    CHECK(d.applied_keys.empty());
  }
  SECTION("rules and listeners") {
    const auto after = yaml("version: 1\nlisteners:\n  - address: 127.0.0.1:1080\n    protocols: [socks5]\n"
                            "  - address: 127.0.0.1:4128\n"
                            "policy:\n  allow: [\"b.example\", \"c.example\"]\n  deny: [\"x.example\"]\n"
                            "  unknown: allow\nworkers: 3\nlog: {level: debug}\nlimits: {head_timeout: 3s}\n");
    REQUIRE(after.ok());
    const auto d = cfg::describe_changes(*before.value, *after.value);
    CHECK(d.rules_added == std::vector<std::string>{"allow c.example"});
    CHECK(d.rules_removed == std::vector<std::string>{"allow a.example"});
    CHECK(d.listeners_added == std::vector<std::string>{"127.0.0.1:4128"});
    CHECK(d.listeners_removed == std::vector<std::string>{"127.0.0.1:3128"});
    CHECK(d.listeners_changed == std::vector<std::string>{"127.0.0.1:1080"});
    CHECK(d.restart_keys == std::vector<std::string>{"workers", "log.level"});
    CHECK(d.applied_keys == std::vector<std::string>{"policy.unknown", "limits"});
  }
  SECTION("hook, decisions_file and admin.token_file") {
    temp_dir dir;
    const std::string token = dir.write("token", "t\n");
    const std::string listeners = "version: 1\nlisteners:\n  - address: 127.0.0.1:3128\n  - address: 127.0.0.1:1080\n"
                                  "policy:\n  allow: [\"a.example\", \"b.example\"]\n  deny: [\"x.example\"]\n"
                                  "  unknown: ask\n";
    const auto with_hook = yaml(listeners + "hook: {console: true}\n");
    REQUIRE(with_hook.ok());
    const auto d = cfg::describe_changes(*before.value, *with_hook.value);
    CHECK(d.applied_keys == std::vector<std::string>{"policy.unknown", "hook"});
    CHECK(cfg::describe_changes(*with_hook.value, *with_hook.value).applied_keys.empty());
    const auto longer = yaml(listeners + "hook: {console: true, timeout: 1m}\n");
    REQUIRE(longer.ok());
    CHECK(cfg::describe_changes(*with_hook.value, *longer.value).applied_keys == std::vector<std::string>{"hook"});
    const auto remembered = yaml(listeners + "hook: {console: true}\ndecisions_file: " + dir.path + "/d.yaml\n");
    REQUIRE(remembered.ok());
    CHECK(cfg::describe_changes(*with_hook.value, *remembered.value).applied_keys ==
          std::vector<std::string>{"decisions_file"});
    const auto admin = yaml(listeners + "admin: {address: 127.0.0.1:9090}\n");
    const auto admin_token = yaml(listeners + "admin: {address: 127.0.0.1:9090, token_file: " + token + "}\n");
    REQUIRE(admin.ok());
    REQUIRE(admin_token.ok());
    CHECK(cfg::describe_changes(*admin.value, *admin_token.value).restart_keys ==
          std::vector<std::string>{"admin.token_file"});
  }
  SECTION("the same rules in another order or place are no change") {
    const auto after = yaml("version: 1\nlisteners:\n  - address: 127.0.0.1:3128\n  - address: 127.0.0.1:1080\n"
                            "policy:\n  deny: [\"x.example\"]\n  allow:\n    - \"b.example\"\n    - \"a.example\"\n");
    REQUIRE(after.ok());
    const auto d = cfg::describe_changes(*before.value, *after.value);
    CHECK(d.rules_added.empty());
    CHECK(d.rules_removed.empty());
    CHECK_FALSE(d.listeners_need_restart());
  }
}
}  // namespace

TEST_CASE("inputs the fuzzers found stay bounded errors", "[unit][config]") {
  // yaml-cpp 0.7's LoadAll produced documents forever from this mangled settings file.
  const auto r = egressd::config::load_yaml_file(std::string(EGRESSD_TEST_DATA_DIR) + "/regressions/yaml_loadall_loop.json");
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.problems.empty());
}

TEST_CASE("a wildcard over a hosting platform's suffix in allow is a warning", "[unit][config]") {
  policy::rules r;
  const auto entry = [](std::string text, int line) {
    policy::rule_entry e;
    e.text = std::move(text);
    e.where.line = line;
    return e;
  };
  r.allow = {entry("*.github.io", 1), entry("**.s3.amazonaws.com", 2), entry("me.github.io", 3), entry("@github", 4)};
  r.deny = {entry("*.herokuapp.com", 5)};
  policy::compile_options options;
  options.is_public_suffix = cfg::is_public_suffix;
  options.is_platform_suffix = cfg::is_platform_suffix;
  const auto compiled = policy::compile(r, options);
  REQUIRE(compiled.policy != nullptr);  // warnings only
  std::vector<int> warned;
  for (const auto& p : compiled.problems) {
    CHECK(p.warning);
    CHECK(p.message.find("hosting platform") != std::string::npos);
    warned.push_back(p.where.line);
  }
  // The two allow wildcards; not the exact name, not the preset's own entries (the
  // @github preset has *.githubusercontent.com), not the deny entry.
  CHECK(warned == std::vector<int>{1, 2});
}

TEST_CASE("domain_label: the metrics' domain label", "[unit][config]") {
  CHECK(cfg::domain_label("api.github.com") == "github.com");
  CHECK(cfg::domain_label("github.com") == "github.com");
  CHECK(cfg::domain_label("A.B.Example.CO.UK.") == "example.co.uk");
  CHECK(cfg::domain_label("www.city.kawasaki.jp") == "city.kawasaki.jp");  // exception rule
  // The private section counts: each platform customer is its own domain.
  CHECK(cfg::domain_label("x.user.github.io") == "user.github.io");
  // A public suffix or a single label stands for itself.
  CHECK(cfg::domain_label("co.uk") == "co.uk");
  CHECK(cfg::domain_label("localhost") == "localhost");
  CHECK(cfg::domain_label("db.internal") == "db.internal");
  // IP literals are one value.
  CHECK(cfg::domain_label("127.0.0.1") == "ip");
  CHECK(cfg::domain_label("::1") == "ip");
  CHECK(cfg::domain_label("[2001:db8::1]") == "ip");
  // Anything a label may not hold is one value too, never echoed into a label.
  for (const char* bad : {"", ".", "a..b", ".a.com", "a b.com", "a\"b.com", "caf\xc3\xa9.com", "[zz]", "a\nb"}) {
    INFO(bad);
    CHECK(cfg::domain_label(bad) == "invalid");
  }
  CHECK(cfg::domain_label(std::string(254, 'a')) == "invalid");
}

TEST_CASE("reload: watch and revoke", "[unit][config]") {
  const std::string head(minimal_head);
  const auto def = yaml(head);
  REQUIRE(def.ok());
  CHECK(def.value->reload.watch);
  CHECK(def.value->reload.revoke);
  const auto off = yaml(head + "reload: {watch: false, revoke: false}\n");
  REQUIRE(off.ok());
  CHECK_FALSE(off.value->reload.watch);
  CHECK_FALSE(off.value->reload.revoke);
  expect_error(yaml(head + "reload: {watch: maybe}\n"), "reload.watch", 4);
  CHECK(expect_error(yaml(head + "reload: {wach: true}\n"), "reload.wach", 4).hint == "did you mean `watch`?");
  CHECK_THAT(expect_error(yaml(head + "watch: true\n"), "watch", 4).hint, Catch::Contains("belongs under `reload`"));
}

TEST_CASE("limits: the idle upstream pool's keys", "[unit][config]") {
  const cfg::limits_config defaults;
  CHECK(defaults.upstream_idle_per_origin == 16);
  CHECK(defaults.upstream_idle_max == 128);
  CHECK(defaults.upstream_idle_timeout == 30s);
  const auto r = yaml(std::string(minimal_head) +
                      "limits: {upstream_idle_per_origin: 0, upstream_idle_max: 7, upstream_idle_timeout: 1500ms}\n");
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.value->limits.upstream_idle_per_origin == 0);
  CHECK(r.value->limits.upstream_idle_max == 7);
  CHECK(r.value->limits.upstream_idle_timeout == 1500ms);

  expect_error(yaml(std::string(minimal_head) + "limits: {upstream_idle_per_origin: 1025}\n"),
               "limits.upstream_idle_per_origin", 4);
  expect_error(yaml(std::string(minimal_head) + "limits: {upstream_idle_max: -1}\n"), "limits.upstream_idle_max", 4);
  expect_error(yaml(std::string(minimal_head) + "limits: {upstream_idle_timeout: 0s}\n"),
               "limits.upstream_idle_timeout", 4);
  expect_error(yaml(std::string(minimal_head) + "limits: {upstream_idle: 3}\n"), "limits.upstream_idle", 4);
}
