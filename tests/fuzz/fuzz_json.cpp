// Fuzzes the strict JSON reader of settings files (config/json.hpp) and the layered
// loader on top of it. Any input must give a value or an error with a place, never a
// crash, an exception or a hang; the parse must be deterministic.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config/json.hpp"
#include "config/load.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto r = egressd::config::json::parse(input);
  if (!r.value && (r.error.line < 1 || r.error.column < 1 || r.error.message.empty())) std::abort();
  const auto again = egressd::config::json::parse(input);
  if (again.value.has_value() != r.value.has_value()) std::abort();
  const auto layered = egressd::config::load_layered_strings("version: 1\nlisteners: [{address: 127.0.0.1:0}]\n",
                                                             "fuzz.yaml", input, "fuzz.json");
  if (layered.value.has_value() != layered.ok()) std::abort();
  if (!layered.value && layered.problems.empty()) std::abort();
  return 0;
}
