#pragma once
// Durations as written in the configuration: `250ms`, `10s`, `5m`, `1h`, `1m30s`.
// Pure: no clocks, no I/O.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace egressd::config {

/// Every duration of the configuration, at millisecond resolution.
using duration = std::chrono::milliseconds;

/// The outcome of parse_duration: `value` on success, otherwise `error` (what is
/// wrong) and `hint` (how to write it; may be empty).
struct duration_result {
  std::optional<duration> value;
  std::string error;
  std::string hint;
};

/// Parses one or more `<digits><unit>` groups, units `ms`, `s`, `m`, `h`, largest
/// first, each unit at most once (`1h30m`, `1m30s`, `1500ms`). Zero is accepted
/// (`0s`); whether zero makes sense is for the caller to judge. Refuses a bare
/// number (hint "write 10s"), a sign, spaces, fractions, unknown units and
/// values over 24 hours × 365 (no timeout of this daemon needs more).
duration_result parse_duration(std::string_view text);

/// The shortest text parse_duration reads back as `d` (`90000ms` → "1m30s",
/// `0ms` → "0s"). Precondition: d >= 0.
std::string format_duration(duration d);

}  // namespace egressd::config
