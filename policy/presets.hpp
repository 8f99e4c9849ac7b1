#pragma once
// Presets: named lists of the domains an ecosystem really uses (`@github`, `@npm`, ...),
// kept as data files in policy/presets/ and compiled into the binary.

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace egressd::policy {

struct preset {
  std::string_view name;         ///< without the '@'
  std::string_view description;  ///< the file's first comment line
  std::string_view body;         ///< the file as shipped
};

/// Every shipped preset, sorted by name.
std::span<const preset> presets() noexcept;

/// The preset called `name` (without '@'), or null.
const preset* find_preset(std::string_view name) noexcept;

/// The entries of a preset with their 1-based line numbers: one pattern per line,
/// '#' starts a comment, blank lines ignored.
struct preset_line {
  std::string_view text;
  int line;
};
std::vector<preset_line> preset_entries(const preset& p);

}  // namespace egressd::policy
