// Fuzzes the configuration loaders (YAML and settings JSON) with arbitrary text. Any
// input must produce a value or problems, never a crash, an exception or a hang; a
// successful load must have no error-level problem.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config/load.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  for (int mode = 0; mode < 2; ++mode) {
    auto r = mode == 0 ? egressd::config::load_yaml_string(input, "fuzz.yaml")
                       : egressd::config::load_settings_string(input, "fuzz.json");
    if (r.value.has_value() != r.ok()) std::abort();
    if (!r.value && r.problems.empty()) std::abort();
  }
  return 0;
}
