// Fuzzes the configuration loaders (YAML and settings JSON) and the decisions file
// with arbitrary text. Any input must produce a value or problems, never a crash, an
// exception or a hang; a successful load must have no error-level problem; a decisions
// file that loads writes back to text that loads to the same entries.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config/decisions_file.hpp"
#include "config/load.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  for (int mode = 0; mode < 2; ++mode) {
    auto r = mode == 0 ? egressd::config::load_yaml_string(input, "fuzz.yaml")
                       : egressd::config::load_settings_string(input, "fuzz.json");
    if (r.value.has_value() != r.ok()) std::abort();
    if (!r.value && r.problems.empty()) std::abort();
  }
  namespace df = egressd::config::decisions_file;
  const auto d = df::parse(input, "fuzz-decisions.yaml");
  if (!d.ok() && !d.entries.empty()) std::abort();  // a corrupt file keeps nothing
  if (d.entries.size() != d.where.size()) std::abort();
  if (d.ok()) {
    const auto again = df::parse(df::to_yaml(d.entries), "again.yaml");
    if (!again.ok() || again.entries != d.entries) std::abort();
  }
  return 0;
}
