#include "policy/presets.hpp"

#include <algorithm>

namespace egressd::policy {

// Defined in the file CMake generates from policy/presets/*.txt (sorted by name).
extern const preset preset_table[];
extern const std::size_t preset_count;

std::span<const preset> presets() noexcept { return {preset_table, preset_count}; }

const preset* find_preset(std::string_view name) noexcept {
  auto all = presets();
  auto it = std::find_if(all.begin(), all.end(), [&](const preset& p) { return p.name == name; });
  return it == all.end() ? nullptr : &*it;
}

namespace {
std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}
}  // namespace

std::vector<preset_line> preset_entries(const preset& p) {
  std::vector<preset_line> out;
  std::string_view body = p.body;
  int line = 0;
  while (!body.empty()) {
    ++line;
    auto nl = body.find('\n');
    std::string_view text = body.substr(0, nl);
    body = nl == std::string_view::npos ? std::string_view{} : body.substr(nl + 1);
    text = trim(text.substr(0, text.find('#')));
    if (!text.empty()) out.push_back({text, line});
  }
  return out;
}

}  // namespace egressd::policy
