#include "config/keys.hpp"

#include <algorithm>

namespace egressd::config::keys {

namespace {

// The section a key at `path` opens (`admin`, or `listeners[]` for a list of
// mappings), or nothing when the key holds a value.
const section* section_at(const std::string& path) {
  const auto it = std::find_if(sections.begin(), sections.end(), [&](const section& s) {
    return s.name == path || s.name == path + "[]";
  });
  return it == sections.end() ? nullptr : &*it;
}

void collect(std::string_view prefix, std::span<const std::string_view> names, std::vector<std::string>& out) {
  for (const auto name : names) {
    const std::string path = prefix.empty() ? std::string(name) : std::string(prefix) + "." + std::string(name);
    if (const section* s = section_at(path))
      collect(s->name, s->keys, out);
    else
      out.push_back(path);
  }
}

}  // namespace

std::vector<std::string> value_paths() {
  std::vector<std::string> out;
  collect({}, top, out);
  return out;
}

}  // namespace egressd::config::keys
