#pragma once
// Byte sizes as written in the configuration: `100MB`, `512KiB`, `1GiB`.
// Pure: no I/O.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace egressd::config {

/// The outcome of parse_byte_size: `value` (bytes) on success, otherwise `error` (what
/// is wrong) and `hint` (how to write it).
struct byte_size_result {
  std::optional<std::uint64_t> value;
  std::string error;
  std::string hint;
};

/// Parses `<digits><unit>`, unit one of `B`, `KB`, `MB`, `GB` (powers of 1000) or
/// `KiB`, `MiB`, `GiB` (powers of 1024), no space, no sign, no fraction. Refuses a
/// bare number (hint "write 100MB"), unknown units, and values over 1024 GiB.
byte_size_result parse_byte_size(std::string_view text);

}  // namespace egressd::config
