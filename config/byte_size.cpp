#include "config/byte_size.hpp"

#include <array>
#include <charconv>

namespace egressd::config {

namespace {

struct unit {
  std::string_view suffix;
  std::uint64_t bytes;
};
constexpr std::array<unit, 7> units{{{"B", 1},
                                     {"KB", 1000},
                                     {"MB", 1000 * 1000},
                                     {"GB", 1000 * 1000 * 1000},
                                     {"KiB", 1024},
                                     {"MiB", 1024 * 1024},
                                     {"GiB", 1024 * 1024 * 1024}}};
constexpr std::uint64_t max_bytes = 1024ULL * 1024 * 1024 * 1024;
constexpr std::string_view units_text = "B, KB, MB, GB, KiB, MiB, GiB";

byte_size_result failure(std::string error, std::string hint = "write a size such as 100MB") {
  return {std::nullopt, std::move(error), std::move(hint)};
}

}  // namespace

byte_size_result parse_byte_size(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return failure("`" + std::string(text) + "` is not a size");
  const std::string_view suffix = text.substr(digits);
  if (suffix.empty())
    return failure("a size needs a unit", "write " + std::string(text) + "B for bytes, or a size such as 100MB");
  std::uint64_t count = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + digits, count);
  if (ec != std::errc{} || end != text.data() + digits) return failure("`" + std::string(text) + "` is too large");
  for (const unit& u : units) {
    if (u.suffix != suffix) continue;
    if (count > max_bytes / u.bytes) return failure("`" + std::string(text) + "` is too large", "at most 1024GiB");
    return {count * u.bytes, {}, {}};
  }
  return failure("unknown unit `" + std::string(suffix) + "`", "units: " + std::string(units_text));
}

}  // namespace egressd::config
