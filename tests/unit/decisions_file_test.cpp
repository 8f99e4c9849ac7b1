// The decisions file (config/decisions_file.hpp; README "Decisions file"): the
// format round-trips exactly, every field is read, a corrupt file gives nothing and
// says where, a missing file is an empty memory, and save() is atomic (temporary
// file, rename) and leaves nothing behind, even when it fails.

#include "config/decisions_file.hpp"

#include <catch2/catch.hpp>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace df = egressd::config::decisions_file;
namespace cfg = egressd::config;
using namespace egressd::policy;
using namespace std::chrono_literals;
using clock_type = std::chrono::system_clock;

std::string dump(const df::load_result& r) {
  std::string out = std::to_string(r.entries.size()) + " entries";
  for (const auto& p : r.problems) out += "\n  " + p.to_string();
  return out;
}

// 2026-12-03T18:32:23Z
const clock_type::time_point when = clock_type::time_point{} + std::chrono::seconds{1796322743};

memory_entry entry(std::string name, answer_scope scope, outcome result, std::uint16_t port = 0) {
  memory_entry e;
  e.name = std::move(name);
  e.scope = scope;
  e.port = port;
  e.result = result;
  e.lifetime = answer_lifetime::always;
  e.expires = clock_type::time_point::max();
  e.answered_at = when;
  e.answered_by = "admin";
  e.reason = "asked in the terminal";
  return e;
}

const cfg::problem& expect_error(const df::load_result& r, const std::string& path, int line) {
  INFO(dump(r));
  CHECK_FALSE(r.ok());
  CHECK(r.entries.empty());  // a corrupt file keeps nothing
  const auto it = std::find_if(r.problems.begin(), r.problems.end(), [&](const cfg::problem& p) {
    return p.level == cfg::severity::error && p.path == path;
  });
  REQUIRE(it != r.problems.end());
  CHECK(it->line == line);
  CHECK(it->column > 0);
  CHECK(it->file == "d.yaml");
  return *it;
}

df::load_result parse(const std::string& text) { return df::parse(text, "d.yaml"); }

// A fresh directory under the build's temporary directory, removed at the end.
struct temp_dir {
  std::string path;
  temp_dir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/egressd-decisions-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    ::chmod(path.c_str(), 0700);
    for (const auto& f : files()) ::unlink((path + "/" + f).c_str());
    ::rmdir(path.c_str());
  }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    if (DIR* d = ::opendir(path.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..") out.push_back(name);
      }
      ::closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

}  // namespace

TEST_CASE("decisions file: RFC 3339 times", "[unit][decisions]") {
  CHECK(df::format_time(when) == "2026-12-03T18:32:23Z");
  CHECK(df::format_time(clock_type::time_point{}) == "1970-01-01T00:00:00Z");
  CHECK(df::format_time(when + 250ms) == "2026-12-03T18:32:23.25Z");
  CHECK(df::format_time(when + 1ns) == "2026-12-03T18:32:23.000000001Z");
  CHECK(df::format_time(clock_type::time_point{} - 1s) == "1969-12-31T23:59:59Z");
  CHECK(df::format_time(clock_type::time_point{} + std::chrono::seconds{951782400}) == "2000-02-29T00:00:00Z");

  CHECK(df::parse_time("2026-12-03T18:32:23Z") == when);
  CHECK(df::parse_time("2026-12-03t18:32:23z") == when);
  CHECK(df::parse_time("2026-12-03T19:32:23+01:00") == when);
  CHECK(df::parse_time("2026-12-03T13:02:23-05:30") == when);
  CHECK(df::parse_time("2026-12-03T18:32:23.25Z") == when + 250ms);
  CHECK(df::parse_time("2026-12-03T18:32:23.0000000019Z") == when + 1ns);  // beyond ns: dropped
  CHECK(df::parse_time("2000-02-29T00:00:00Z"));
  for (const char* bad : {"", "2026-12-03", "2026-12-03 18:32:23Z", "2026-12-03T18:32:23", "2026-13-03T18:32:23Z",
                          "2026-02-29T00:00:00Z", "2026-12-03T24:00:00Z", "2026-12-03T18:60:00Z",
                          "2026-12-03T18:32:60Z", "2026-12-03T18:32:23.Z", "2026-12-03T18:32:23+0100",
                          "2026-12-03T18:32:23Zjunk", "26-12-03T18:32:23Z", "9999-12-31T23:59:59Z",
                          "1066-10-14T09:00:00Z", "2026-1x-03T18:32:23Z"}) {
    INFO(bad);
    CHECK_FALSE(df::parse_time(bad));
  }
  // Every time written reads back the same.
  for (auto t : {when, when + 1ns, when + 999999999ns, clock_type::time_point{}, clock_type::time_point{} - 1s})
    CHECK(df::parse_time(df::format_time(t)) == t);
}

TEST_CASE("decisions file: every scope and field round-trips exactly", "[unit][decisions]") {
  std::vector<memory_entry> entries = {
      entry("npmjs.org", answer_scope::domain, outcome::allow),
      entry("api.example.com", answer_scope::host, outcome::deny),
      entry("registry.example.com", answer_scope::host_port, outcome::allow, 8443),
      entry("192.0.2.7", answer_scope::host, outcome::allow),
      entry("2001:db8::7", answer_scope::host_port, outcome::deny, 443),
      entry("null", answer_scope::host, outcome::allow),  // a name YAML would read as nothing
      entry("xn--bcher-kva.example", answer_scope::domain, outcome::allow),
  };
  entries[1].reason = "";
  entries[2].reason = "quotes \" and \\ and\nnewlines, tabs\t, colons: # hashes, and unicode \xC3\xA9";
  entries[2].answered_by = "hook";
  entries[3].answered_at = when + 123456789ns;
  entries[3].reason = "Unicode line breaks: NEL\xC2\x85 LS\xE2\x80\xA8 PS\xE2\x80\xA9 end";
  entries[4].answered_by = "yes";  // a word YAML 1.1 reads as true
  entries[5].reason = "\x01\x7f";

  const std::string text = df::to_yaml(entries);
  INFO(text);
  CHECK(text.rfind("# egressd decisions file", 0) == 0);
  CHECK_THAT(text, Catch::Contains("edited by hand while egressd is stopped"));
  CHECK_THAT(text, Catch::Contains("  - domain: npmjs.org\n    scope: domain\n    decision: allow\n"
                                   "    answered_by: \"admin\"\n    answered_at: 2026-12-03T18:32:23Z\n"
                                   "    reason: \"asked in the terminal\"\n"));
  CHECK_THAT(text, Catch::Contains("  - host: registry.example.com\n    port: 8443\n    scope: host_port\n"));
  const auto r = parse(text);
  INFO(dump(r));
  REQUIRE(r.ok());
  CHECK(r.problems.empty());
  REQUIRE(r.entries.size() == entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    INFO(i);
    CHECK(r.entries[i] == entries[i]);
  }
  CHECK(df::to_yaml(r.entries) == text);

  // No entries: still a valid file, with the header.
  const std::string empty = df::to_yaml({});
  CHECK_THAT(empty, Catch::Contains("decisions: []"));
  const auto e = parse(empty);
  CHECK(e.ok());
  CHECK(e.entries.empty());
}

TEST_CASE("decisions file: only always entries are written", "[unit][decisions]") {
  auto ttl = entry("ttl.example", answer_scope::host, outcome::allow);
  ttl.lifetime = answer_lifetime::ttl;
  ttl.expires = when + 1h;
  const std::vector<memory_entry> entries = {ttl, entry("kept.example", answer_scope::host, outcome::allow)};
  const auto r = parse(df::to_yaml(entries));
  REQUIRE(r.ok());
  REQUIRE(r.entries.size() == 1);
  CHECK(r.entries[0].name == "kept.example");
}

TEST_CASE("decisions file: hand-written entries, scope implied, defaults", "[unit][decisions]") {
  const auto r = parse(
      "decisions:\n"
      "  - {domain: NPMJS.org., decision: allow}\n"
      "  - host: api.example.com\n"
      "    port: 443\n"
      "    decision: deny\n"
      "  - host: 127.1\n"
      "    decision: allow\n"
      "    answered_at: 2026-12-03T19:32:23+01:00\n"
      "    reason: plain text, no quotes\n");
  INFO(dump(r));
  REQUIRE(r.ok());
  REQUIRE(r.entries.size() == 3);
  CHECK(r.entries[0].name == "npmjs.org");
  CHECK(r.entries[0].scope == answer_scope::domain);
  CHECK(r.entries[0].result == outcome::allow);
  CHECK(r.entries[0].answered_by == "decisions_file");
  CHECK(r.entries[0].answered_at == clock_type::time_point{});
  CHECK(r.entries[0].reason.empty());
  CHECK(r.entries[0].lifetime == answer_lifetime::always);
  CHECK(r.entries[0].expires == clock_type::time_point::max());
  CHECK(r.entries[1].scope == answer_scope::host_port);
  CHECK(r.entries[1].port == 443);
  CHECK(r.entries[1].result == outcome::deny);
  CHECK(r.entries[2].name == "127.0.0.1");
  CHECK(r.entries[2].scope == answer_scope::host);
  CHECK(r.entries[2].answered_at == when);
  CHECK(r.entries[2].reason == "plain text, no quotes");

  // Empty files and comments only: nothing remembered, no problem.
  for (const char* text : {"", "# nothing yet\n", "decisions:\n", "decisions: []\n"}) {
    const auto e = parse(text);
    CHECK(e.ok());
    CHECK(e.problems.empty());
    CHECK(e.entries.empty());
  }
}

TEST_CASE("decisions file: an entry written twice keeps the later one, with a warning", "[unit][decisions]") {
  const auto r = parse(
      "decisions:\n"
      "  - {host: a.example, decision: allow}\n"
      "  - {host: a.example, port: 443, decision: deny}\n"
      "  - {host: a.example, decision: deny}\n");
  INFO(dump(r));
  REQUIRE(r.ok());
  REQUIRE(r.entries.size() == 2);
  CHECK(r.entries[0].scope == answer_scope::host_port);
  CHECK(r.entries[1].result == outcome::deny);
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].level == cfg::severity::warning);
  CHECK(r.problems[0].line == 4);
  CHECK_THAT(r.problems[0].message, Catch::Contains("first at line 2"));
}

TEST_CASE("decisions file: corrupt YAML is an error at its line, and nothing is kept", "[unit][decisions]") {
  const auto r = parse(
      "decisions:\n"
      "  - {host: a.example, decision: allow}\n"
      "  - host: b.example\n"
      "    decision: [allow\n");
  INFO(dump(r));
  CHECK_FALSE(r.ok());
  CHECK(r.entries.empty());
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].file == "d.yaml");
  CHECK(r.problems[0].line >= 4);
  CHECK_THAT(r.problems[0].message, Catch::Contains("syntax error"));

  // A file cut in the middle of an entry (what a non-atomic writer could leave).
  const std::string whole = df::to_yaml(std::vector<memory_entry>{entry("a.example", answer_scope::host,
                                                                        outcome::allow)});
  const auto cut = parse(whole.substr(0, whole.find("decision:")) + "decis");
  CHECK_FALSE(cut.ok());
  CHECK(cut.entries.empty());
}

TEST_CASE("decisions file: wrong types and values are errors with path and line", "[unit][decisions]") {
  const std::string ok = "  - {host: ok.example, decision: allow}\n";
  CHECK_THAT(expect_error(parse("decisions: {host: a.example}\n"), "decisions", 1).message,
             Catch::Contains("expected a list"));
  CHECK_THAT(expect_error(parse("- {host: a.example}\n"), "", 1).message, Catch::Contains("expected a mapping"));
  CHECK_THAT(expect_error(parse("decision:\n" + ok), "decision", 1).hint, Catch::Contains("`decisions:`"));
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - a.example\n"), "decisions[1]", 3).message,
             Catch::Contains("expected an entry"));
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - {host: [a.example], decision: allow}\n"),
                          "decisions[1].host", 3)
                 .message,
             Catch::Contains("expected a host name, got a list"));
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - {host: a.example, decision: maybe}\n"),
                          "decisions[1].decision", 3)
                 .message,
             Catch::Contains("expected allow | deny"));
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - {host: a.example}\n"), "decisions[1]", 3).message,
             Catch::Contains("missing `decision`"));
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - {decision: allow}\n"), "decisions[1]", 3).message,
             Catch::Contains("missing `host` or `domain`"));
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - {host: a.example, port: 0, decision: allow}\n"),
                          "decisions[1].port", 3)
                 .message,
             Catch::Contains("1 to 65535"));
  expect_error(parse("decisions:\n" + ok + "  - {host: a.example, port: https, decision: allow}\n"),
               "decisions[1].port", 3);
  expect_error(parse("decisions:\n" + ok + "  - {host: a.example, port: 65536, decision: allow}\n"),
               "decisions[1].port", 3);
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - {host: a.example, decision: allow, answered_at: today}\n"),
                          "decisions[1].answered_at", 3)
                 .message,
             Catch::Contains("not an RFC 3339 time"));
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - {host: a.example, decision: allow, who: me}\n"),
                          "decisions[1].who", 3)
                 .message,
             Catch::Contains("unknown key `who`"));
  expect_error(parse("decisions:\n" + ok + "  - {host: a.example, decision: allow, decision: deny}\n"),
               "decisions[1].decision", 3);
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - {host: a..example, decision: allow}\n"),
                          "decisions[1].host", 3)
                 .message,
             Catch::Contains("not a valid host"));
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - {domain: 192.0.2.1, decision: allow}\n"),
                          "decisions[1].domain", 3)
                 .message,
             Catch::Contains("IP address"));
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - {domain: co.uk, decision: allow}\n"),
                          "decisions[1].domain", 3)
                 .message,
             Catch::Contains("public suffix"));
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - {host: a.example, domain: a.example, decision: allow}\n"),
                          "decisions[1].domain", 3)
                 .message,
             Catch::Contains("not both"));
  CHECK_THAT(expect_error(parse("decisions:\n" + ok + "  - {domain: a.example, port: 443, decision: allow}\n"),
                          "decisions[1].port", 3)
                 .message,
             Catch::Contains("every port"));
}

TEST_CASE("decisions file: scopes that are unknown or disagree with the keys", "[unit][decisions]") {
  const std::string head = "decisions:\n";
  CHECK_THAT(expect_error(parse(head + "  - {host: a.example, scope: subdomain, decision: allow}\n"),
                          "decisions[0].scope", 2)
                 .hint,
             Catch::Contains("scope: domain covers"));
  CHECK_THAT(expect_error(parse(head + "  - {host: a.example, scope: everything, decision: allow}\n"),
                          "decisions[0].scope", 2)
                 .message,
             Catch::Contains("expected host | host_port | domain"));
  expect_error(parse(head + "  - {host: a.example, scope: domain, decision: allow}\n"), "decisions[0].scope", 2);
  expect_error(parse(head + "  - {domain: a.example, scope: host, decision: allow}\n"), "decisions[0].scope", 2);
  CHECK_THAT(expect_error(parse(head + "  - {host: a.example, scope: host_port, decision: allow}\n"),
                          "decisions[0].scope", 2)
                 .message,
             Catch::Contains("needs a `port`"));
  CHECK_THAT(expect_error(parse(head + "  - {host: a.example, port: 443, scope: host, decision: allow}\n"),
                          "decisions[0].port", 2)
                 .message,
             Catch::Contains("host_port only"));
}

TEST_CASE("decisions file: every problem of a file is reported in one pass", "[unit][decisions]") {
  const auto r = parse(
      "decisions:\n"
      "  - {host: a.example, decision: maybe}\n"
      "  - {host: b.example, decision: allow}\n"
      "  - {host: c.example, scope: nope, decision: allow}\n");
  INFO(dump(r));
  CHECK(r.entries.empty());
  CHECK(std::count_if(r.problems.begin(), r.problems.end(),
                      [](const cfg::problem& p) { return p.level == cfg::severity::error; }) == 2);
}

TEST_CASE("decisions file: load of a missing, unreadable or directory path", "[unit][decisions]") {
  temp_dir dir;
  const auto missing = df::load(dir.file("none.yaml"));
  CHECK(missing.ok());
  CHECK(missing.problems.empty());
  CHECK(missing.entries.empty());

  const auto directory = df::load(dir.path);
  CHECK_FALSE(directory.ok());
  REQUIRE(directory.problems.size() == 1);
  CHECK(directory.problems[0].file == dir.path);
  CHECK_THAT(directory.problems[0].message, Catch::Contains("directory"));

  // A FIFO would block a read forever: refused without opening it.
  REQUIRE(::mkfifo(dir.file("fifo").c_str(), 0600) == 0);
  const auto fifo = df::load(dir.file("fifo"));
  CHECK_FALSE(fifo.ok());
  REQUIRE(fifo.problems.size() == 1);
  CHECK_THAT(fifo.problems[0].message, Catch::Contains("not a regular file"));

  write(dir.file("corrupt.yaml"), "decisions:\n  - {host: a.example, decision: allow}\n  - {host: \"b\n");
  const auto corrupt = df::load(dir.file("corrupt.yaml"));
  CHECK_FALSE(corrupt.ok());
  CHECK(corrupt.entries.empty());
  REQUIRE_FALSE(corrupt.problems.empty());
  CHECK(corrupt.problems[0].file == dir.file("corrupt.yaml"));
  CHECK(corrupt.problems[0].line > 0);
  CHECK(corrupt.problems[0].to_string().rfind(dir.file("corrupt.yaml") + ":", 0) == 0);

  if (::geteuid() != 0) {  // root reads any file
    write(dir.file("secret.yaml"), "decisions: []\n");
    ::chmod(dir.file("secret.yaml").c_str(), 0);
    const auto unreadable = df::load(dir.file("secret.yaml"));
    CHECK_FALSE(unreadable.ok());
    REQUIRE(unreadable.problems.size() == 1);
    CHECK_THAT(unreadable.problems[0].message, Catch::Contains("cannot read"));
  }
}

TEST_CASE("decisions file: save writes atomically, mode 0600, and leaves no temporary file", "[unit][decisions]") {
  temp_dir dir;
  const std::string path = dir.file("decisions.yaml");
  std::vector<memory_entry> entries = {entry("npmjs.org", answer_scope::domain, outcome::allow)};
  REQUIRE_FALSE(df::save(path, entries));
  CHECK(dir.files() == std::vector<std::string>{"decisions.yaml"});
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(read(path) == df::to_yaml(entries));
  auto loaded = df::load(path);
  REQUIRE(loaded.ok());
  CHECK(loaded.entries == entries);

  // Over an existing file (even one others could read): replaced whole, 0600 again.
  ::chmod(path.c_str(), 0644);
  const ino_t before = st.st_ino;
  entries.push_back(entry("api.example.com", answer_scope::host_port, outcome::deny, 443));
  REQUIRE_FALSE(df::save(path, entries));
  CHECK(dir.files() == std::vector<std::string>{"decisions.yaml"});
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_ino != before);  // a new file renamed over the old one, not rewritten in place
  loaded = df::load(path);
  REQUIRE(loaded.ok());
  CHECK(loaded.entries == entries);

  // An empty memory is an empty list.
  REQUIRE_FALSE(df::save(path, {}));
  CHECK(df::load(path).entries.empty());
}

TEST_CASE("decisions file: save into a directory that cannot be written fails whole", "[unit][decisions]") {
  temp_dir dir;
  const std::string path = dir.file("decisions.yaml");
  const std::vector<memory_entry> old_entries = {entry("old.example", answer_scope::host, outcome::allow)};
  REQUIRE_FALSE(df::save(path, old_entries));
  const std::string old_text = read(path);

  const auto missing_dir = df::save(dir.file("no/such/dir/decisions.yaml"), old_entries);
  REQUIRE(missing_dir);
  CHECK_THAT(*missing_dir, Catch::Contains(dir.file("no/such/dir/decisions.yaml")));
  CHECK_THAT(*missing_dir, Catch::Contains("No such file or directory"));

  const auto is_dir = df::save(dir.path + "/", old_entries);
  REQUIRE(is_dir);

  // A directory no one may create files in, root included.
  const auto proc = df::save("/proc/egressd-decisions.yaml", old_entries);
  REQUIRE(proc);
  CHECK_THAT(*proc, Catch::Contains("cannot create a file in `/proc`"));

  if (::geteuid() != 0) {  // root writes anywhere
    ::chmod(dir.path.c_str(), 0500);
    const auto denied =
        df::save(path, std::vector<memory_entry>{entry("new.example", answer_scope::host, outcome::deny)});
    ::chmod(dir.path.c_str(), 0700);
    REQUIRE(denied);
    CHECK_THAT(*denied, Catch::Contains(path));
    CHECK_THAT(*denied, Catch::Contains("Permission denied"));
    CHECK(read(path) == old_text);  // the old file, whole
  }
  // A rename that fails (the target is a non-empty directory) removes its temporary file.
  ::mkdir(dir.file("taken").c_str(), 0700);
  write(dir.file("taken/x"), "x");
  const auto taken = df::save(dir.file("taken"), old_entries);
  REQUIRE(taken);
  CHECK_THAT(*taken, Catch::Contains("rename"));
  ::unlink(dir.file("taken/x").c_str());
  ::rmdir(dir.file("taken").c_str());
  CHECK(dir.files() == std::vector<std::string>{"decisions.yaml"});
}
