// config/: `log.audit` typed, byte sizes, and the rotation keys of the audit file.

#include "config/byte_size.hpp"
#include "config/diff.hpp"
#include "config/load.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

namespace {

namespace cfg = egressd::config;

cfg::load_result yaml(std::string_view text) { return cfg::load_yaml_string(text, "test.yaml"); }

const std::string head = "version: 1\nlisteners:\n  - address: 127.0.0.1:3128\n";

std::string dump(const cfg::load_result& r) {
  std::string out;
  for (const auto& p : r.problems) out += p.to_string() + "\n";
  return out;
}

// The one error at `path`, on `line`.
const cfg::problem& error_at(const cfg::load_result& r, const std::string& path, int line) {
  INFO(dump(r));
  const auto it = std::find_if(r.problems.begin(), r.problems.end(), [&](const cfg::problem& p) { return p.path == path; });
  REQUIRE(it != r.problems.end());
  CHECK(it->level == cfg::severity::error);
  CHECK(it->line == line);
  CHECK(it->column > 0);
  CHECK_FALSE(r.ok());
  return *it;
}

}  // namespace

TEST_CASE("byte sizes: accepted forms", "[unit][config]") {
  CHECK(cfg::parse_byte_size("100MB").value == 100'000'000u);
  CHECK(cfg::parse_byte_size("512KiB").value == 512u * 1024);
  CHECK(cfg::parse_byte_size("1GiB").value == 1024u * 1024 * 1024);
  CHECK(cfg::parse_byte_size("2GB").value == 2'000'000'000u);
  CHECK(cfg::parse_byte_size("4096B").value == 4096u);
  CHECK(cfg::parse_byte_size("0KB").value == 0u);
  CHECK(cfg::parse_byte_size("1024GiB").value == 1024ull * 1024 * 1024 * 1024);
}

TEST_CASE("byte sizes: refused forms", "[unit][config]") {
  for (const char* text : {"", "MB", "100", "100 MB", "-1MB", "1.5MB", "100mb", "100M", "100TB", "1025GiB",
                           "99999999999999999999999KB", "100MB ", "+1KB"}) {
    INFO(text);
    const auto r = cfg::parse_byte_size(text);
    CHECK_FALSE(r.value);
    CHECK_FALSE(r.error.empty());
    CHECK_FALSE(r.hint.empty());
  }
  CHECK(cfg::parse_byte_size("100").hint.find("100B") != std::string::npos);
}

TEST_CASE("log.audit is typed: stdout, stderr, off, a file", "[unit][config]") {
  auto r = yaml(head + "log: {audit: stderr}\n");
  REQUIRE(r.ok());
  CHECK(r.value->log.audit == cfg::audit_target::standard_error);
  CHECK(cfg::audit_text(r.value->log) == "stderr");
  r = yaml(head + "log: {audit: \"off\"}\n");
  REQUIRE(r.ok());
  CHECK(r.value->log.audit == cfg::audit_target::off);
  r = yaml(head + "log: {audit: /tmp/egressd-unit-audit.log}\n");
  REQUIRE(r.ok());
  CHECK(r.value->log.audit == cfg::audit_target::file);
  CHECK(r.value->log.audit_file == "/tmp/egressd-unit-audit.log");
  CHECK(r.value->log.audit_max_size == 0u);  // no rotation unless asked
  CHECK(cfg::audit_text(r.value->log) == "/tmp/egressd-unit-audit.log");
}

TEST_CASE("log.audit_max_size and audit_max_files", "[unit][config]") {
  const std::string file = "log:\n  audit: /tmp/egressd-unit-audit.log\n";
  auto r = yaml(head + file + "  audit_max_size: 100MB\n  audit_max_files: 7\n");
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.value->log.audit_max_size == 100'000'000u);
  CHECK(r.value->log.audit_max_files == 7u);
  r = yaml(head + file + "  audit_max_size: 4KiB\n");
  REQUIRE(r.ok());
  CHECK(r.value->log.audit_max_files == 5u);  // the default

  // Bad values: an error at the key's path and line.
  CHECK(error_at(yaml(head + file + "  audit_max_size: 100\n"), "log.audit_max_size", 6).hint.find("100B") !=
        std::string::npos);
  error_at(yaml(head + file + "  audit_max_size: 10XB\n"), "log.audit_max_size", 6);
  error_at(yaml(head + file + "  audit_max_size: 512B\n"), "log.audit_max_size", 6);  // under 1KiB
  error_at(yaml(head + file + "  audit_max_size: [1]\n"), "log.audit_max_size", 6);
  error_at(yaml(head + file + "  audit_max_size: 1MB\n  audit_max_files: 0\n"), "log.audit_max_files", 7);
  error_at(yaml(head + file + "  audit_max_size: 1MB\n  audit_max_files: many\n"), "log.audit_max_files", 7);

  // Keys that would do nothing are errors.
  CHECK(error_at(yaml(head + "log:\n  audit: stdout\n  audit_max_size: 1MB\n"), "log.audit_max_size", 6)
            .message.find("stdout") != std::string::npos);
  error_at(yaml(head + "log:\n  audit_max_files: 3\n"), "log.audit_max_files", 5);
  error_at(yaml(head + file + "  audit_max_files: 3\n"), "log.audit_max_files", 6);
}

TEST_CASE("describe_changes: audit rotation needs a restart", "[unit][config]") {
  const auto a = yaml(head + "log: {audit: /tmp/egressd-unit-audit.log, audit_max_size: 1MB}\n");
  const auto b = yaml(head + "log: {audit: /tmp/egressd-unit-audit.log, audit_max_size: 2MB}\n");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  const auto d = cfg::describe_changes(*a.value, *b.value);
  CHECK(std::find(d.restart_keys.begin(), d.restart_keys.end(), "log.audit") != d.restart_keys.end());
}
