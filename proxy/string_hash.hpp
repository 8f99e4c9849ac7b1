#pragma once
// A transparent hash, so that maps keyed by std::string are searched with a string_view
// (no allocation on a lookup).

#include <cstddef>
#include <functional>
#include <string_view>

namespace egressd::proxy {

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

}  // namespace egressd::proxy
