#include "config/duration.hpp"

#include <array>
#include <cassert>
#include <charconv>
#include <cstdint>

namespace egressd::config {

namespace {

struct unit {
  std::string_view suffix;
  std::int64_t millis;
};

// Largest first: groups must appear in this order, each at most once.
constexpr std::array<unit, 4> units{{{"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}, {"ms", 1}}};

// One year: far beyond any sensible timeout or TTL, and small enough that the
// sum of groups can never overflow int64 milliseconds.
constexpr std::int64_t max_millis = 365LL * 24 * 3'600'000;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

duration_result parse_duration(std::string_view text) {
  duration_result out;
  if (text.empty()) {
    out.error = "empty duration";
    out.hint = "write 10s";
    return out;
  }
  if (text.front() == '-') {
    out.error = "a duration cannot be negative";
    return out;
  }
  if (text.find_first_of(".,") != std::string_view::npos) {
    out.error = "duration `" + std::string(text) + "` has a fraction";
    out.hint = "use a smaller unit, e.g. 1500ms for 1.5s";
    return out;
  }
  std::size_t pos = 0;
  std::size_t next_unit = 0;  // index into `units` of the smallest unit still allowed
  std::int64_t total = 0;
  while (pos < text.size()) {
    const std::size_t digits_begin = pos;
    while (pos < text.size() && is_digit(text[pos])) ++pos;
    if (pos == digits_begin) {
      out.error = "`" + std::string(text) + "` is not a duration";
      out.hint = "write a number and a unit (ms, s, m, h), e.g. 10s or 1m30s";
      return out;
    }
    std::int64_t number = 0;
    const auto [end, ec] = std::from_chars(text.data() + digits_begin, text.data() + pos, number);
    if (ec != std::errc{} || end != text.data() + pos || number > max_millis) {
      out.error = "duration `" + std::string(text) + "` is too large";
      return out;
    }
    const std::size_t unit_begin = pos;
    while (pos < text.size() && !is_digit(text[pos])) ++pos;
    const std::string_view suffix = text.substr(unit_begin, pos - unit_begin);
    if (suffix.empty()) {
      out.error = "duration `" + std::string(text) + "` has no unit";
      out.hint = "write " + std::string(text) + "s";
      return out;
    }
    std::size_t index = next_unit;
    while (index < units.size() && units[index].suffix != suffix) ++index;
    if (index == units.size()) {
      bool known = false;
      for (const auto& u : units) known = known || u.suffix == suffix;
      out.error = known ? "duration `" + std::string(text) + "` repeats a unit or lists them out of order"
                        : "unknown unit `" + std::string(suffix) + "` in duration `" + std::string(text) + "`";
      out.hint = "use ms, s, m and h, largest first, e.g. 1m30s";
      return out;
    }
    next_unit = index + 1;
    total += number * units[index].millis;
    if (total > max_millis) {
      out.error = "duration `" + std::string(text) + "` is too large";
      return out;
    }
  }
  out.value = duration{total};
  return out;
}

std::string format_duration(duration d) {
  assert(d.count() >= 0);
  std::int64_t rest = d.count();
  if (rest == 0) return "0s";
  std::string out;
  for (const auto& u : units) {
    if (rest >= u.millis) {
      out += std::to_string(rest / u.millis);
      out += u.suffix;
      rest %= u.millis;
    }
  }
  return out;
}

}  // namespace egressd::config
