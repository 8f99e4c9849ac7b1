#pragma once
// Escaping shared by the logs (proxy/log.cpp) and the hook's question JSON
// (proxy/hook/wire.cpp). Pure: no I/O, no globals beyond constants. Its own small
// library (egressd_text), so the hook's wire format links it without spdlog or Asio.
// append_json_string() itself is declared in proxy/log.hpp, where its callers look.

#include <string>
#include <string_view>

namespace egressd::proxy {

/// Lower-case hexadecimal digits, for \xHH and \u00HH escapes.
inline constexpr char hex_digits[] = "0123456789abcdef";

/// The escapes JSON strings and quoted text values share (", \, newline, CR, tab):
/// appends the escape and returns true, or returns false for any other byte.
bool append_common_escape(std::string& out, unsigned char c);

/// Appends `s` to `out` as a JSON string literal (quotes included); the same function
/// proxy/log.hpp declares.
void append_json_string(std::string& out, std::string_view s);

}  // namespace egressd::proxy
