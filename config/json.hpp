#pragma once
// A strict JSON reader (RFC 8259) that keeps where every value was written, for
// settings files (Claude Code's settings.json, sandbox-runtime's own file). Both
// programs read those files with JSON.parse, which accepts no comments, trailing
// commas, single quotes or unquoted keys: neither do we, so a file egressd loads is
// a file the sandbox loads. A general-purpose library (Boost.JSON) cannot say at
// which line and column each value was written, and every problem of a settings
// file points at one.
// Pure: no I/O, no globals; never throws for bad input (std::bad_alloc aside).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace egressd::config::json {

struct member;

/// One JSON value with the 1-based line and column (in bytes) of its first character.
struct value {
  enum class kind_t : std::uint8_t { null, boolean, number, string, array, object };
  kind_t kind = kind_t::null;
  bool boolean = false;
  /// A string's decoded contents (UTF-8; a lone surrogate escape becomes U+FFFD),
  /// or a number as written (`-1.5e3`).
  std::string text;
  std::vector<value> items;     ///< array elements
  std::vector<member> members;  ///< object members in file order; a key may repeat
  int line = 0;
  int column = 0;

  bool is_object() const noexcept { return kind == kind_t::object; }
  bool is_array() const noexcept { return kind == kind_t::array; }
  bool is_string() const noexcept { return kind == kind_t::string; }
  bool is_null() const noexcept { return kind == kind_t::null; }
};

/// One `"key": value` of an object; line and column are the key's.
struct member {
  std::string key;
  int line = 0;
  int column = 0;
  json::value value;
};

/// Why a text is not JSON, and where (1-based; column in bytes).
struct parse_error {
  int line = 0;
  int column = 0;
  std::string message;
  std::string hint;  ///< may be empty
};

/// The outcome of parse(): `value` on success, otherwise `error`.
struct parse_result {
  std::optional<json::value> value;
  parse_error error;
};

/// Deepest nesting of arrays and objects accepted; deeper input is an error, so a
/// hostile file cannot exhaust the stack.
constexpr std::size_t max_depth = 64;

/// Parses one JSON text (whitespace around it allowed, nothing else after it; a
/// leading UTF-8 byte order mark is skipped).
parse_result parse(std::string_view text);

}  // namespace egressd::config::json
