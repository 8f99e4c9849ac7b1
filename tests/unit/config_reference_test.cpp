// README "Configuration reference" against config/keys.hpp, the lists the loader
// checks every key against: each key the loader accepts has a row, and each row
// names a key the loader accepts, for the YAML configuration and the settings file.
// tests/integration/test_config_reference.py checks the same rows against the real
// binary without trusting these lists.

#include "config/keys.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace keys = egressd::config::keys;

struct reference {
  std::vector<std::string> yaml;           // first cells of tables headed `key`
  std::vector<std::string> settings;       // first cells of tables headed `settings key`
  std::vector<std::string> settings_read;  // those whose second cell (`egressd`) is `reads`
};

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  return s.substr(first, s.find_last_not_of(' ') - first + 1);
}

// The cell `index` of a table row (`| a | b |`, 0 -> `a`); empty past the last.
std::string cell(const std::string& line, std::size_t index) {
  std::size_t start = 1;
  for (std::size_t i = 0; i < index; ++i) {
    start = line.find('|', start);
    if (start == std::string::npos) return {};
    ++start;
  }
  const std::size_t end = line.find('|', start);
  return end == std::string::npos ? std::string() : trim(line.substr(start, end - start));
}

// The rows of the subsection's tables, by the header of the table they are in. A
// row's key is its first cell without the backquotes; a table of another header
// (or none) is no reference table.
reference read_reference() {
  std::ifstream in(EGRESSD_README);
  REQUIRE(in);
  reference out;
  std::string line;
  bool inside = false;
  bool in_table = false;
  std::vector<std::string>* rows = nullptr;
  while (std::getline(in, line)) {
    if (line.rfind("### Configuration reference", 0) == 0) {
      inside = true;
      continue;
    }
    if (!inside) continue;
    if (line.rfind("## ", 0) == 0 || line.rfind("### ", 0) == 0) break;
    if (line.empty() || line[0] != '|') {
      in_table = false;
      continue;
    }
    if (!in_table) {  // the header row
      in_table = true;
      const std::string head = cell(line, 0);
      rows = head == "key" ? &out.yaml : head == "settings key" ? &out.settings : nullptr;
      continue;
    }
    if (rows == nullptr || line.rfind("|--", 0) == 0 || line.rfind("| --", 0) == 0 || line.rfind("|:", 0) == 0)
      continue;
    const std::string first = cell(line, 0);
    INFO("README row: " << line);
    REQUIRE(first.size() > 2);
    REQUIRE(first.front() == '`');
    REQUIRE(first.back() == '`');
    rows->push_back(first.substr(1, first.size() - 2));
    if (rows == &out.settings && cell(line, 1) == "reads") out.settings_read.push_back(rows->back());
  }
  REQUIRE(inside);  // the subsection exists
  return out;
}

template <class Range>
std::set<std::string> as_set(const Range& r) {
  return std::set<std::string>(r.begin(), r.end());
}

std::vector<std::string> minus(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::vector<std::string> out;
  for (const auto& s : a)
    if (b.count(s) == 0) out.push_back(s);
  return out;
}

}  // namespace

TEST_CASE("schema: the value paths are the keys of every section", "[unit][config][reference]") {
  const auto paths = keys::value_paths();
  CHECK(paths.front() == "version");
  for (const char* expected : {"listeners[].address", "policy.guard.deny_ranges", "hook.exec", "auth.users[].password",
                               "reload.revoke", "busy_poll_us"})
    CHECK(as_set(paths).count(expected) == 1);
  // A section is no value: `admin` and `policy.guard` have rows only for their keys.
  for (const char* section : {"listeners", "admin", "policy", "policy.guard", "hook", "auth", "auth.users"})
    CHECK(as_set(paths).count(section) == 0);
  std::size_t keys_in_sections = 0;
  for (const auto& s : keys::sections) keys_in_sections += s.keys.size();
  // Every key is a value except those that open one of the 12 sections (auth.users
  // and listeners open a list of them).
  CHECK(paths.size() == keys::top.size() + keys_in_sections - keys::sections.size());
}

TEST_CASE("README: every configuration key the loader accepts has a row, and only those",
          "[unit][config][reference]") {
  const reference doc = read_reference();
  const auto documented = as_set(doc.yaml);
  const auto accepted = as_set(keys::value_paths());
  CHECK(documented.size() == doc.yaml.size());  // no key documented twice
  INFO("rows in README \"Configuration reference\" (tables headed `key`): " << doc.yaml.size());
  CHECK(minus(accepted, documented) == std::vector<std::string>{});  // accepted, not documented
  CHECK(minus(documented, accepted) == std::vector<std::string>{});  // documented, not accepted
}

TEST_CASE("README: every settings-file key egressd knows has a row, and only those", "[unit][config][reference]") {
  const reference doc = read_reference();
  const auto documented = as_set(doc.settings);
  CHECK(documented.size() == doc.settings.size());
  CHECK(minus(as_set(keys::settings::known), documented) == std::vector<std::string>{});
  CHECK(minus(documented, as_set(keys::settings::known)) == std::vector<std::string>{});
  // The keys marked `reads` are those egressd reads; the rest it ignores.
  CHECK(as_set(doc.settings_read) == as_set(keys::settings::read));
}
