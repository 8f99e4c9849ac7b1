#include "proxy/text_escape.hpp"

#include <cstddef>

namespace egressd::proxy {

namespace {

// The length of the well-formed UTF-8 sequence (RFC 3629 §4) at s[i], whose first
// byte is >= 0x80; 0 when the bytes there are not one.
std::size_t utf8_sequence(std::string_view s, std::size_t i) noexcept {
  const auto at = [&](std::size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  const auto cont = [&](std::size_t k) { return (at(k) & 0xC0u) == 0x80u; };
  const unsigned c = at(0);
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    const unsigned lo = c == 0xE0 ? 0xA0 : 0x80;  // no overlong forms
    const unsigned hi = c == 0xED ? 0x9F : 0xBF;  // no UTF-16 surrogates
    return at(1) >= lo && at(1) <= hi && cont(2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    const unsigned lo = c == 0xF0 ? 0x90 : 0x80;
    const unsigned hi = c == 0xF4 ? 0x8F : 0xBF;  // nothing beyond U+10FFFF
    return at(1) >= lo && at(1) <= hi && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

}  // namespace

bool append_common_escape(std::string& out, unsigned char c) {
  switch (c) {
    case '"': out += "\\\""; return true;
    case '\\': out += "\\\\"; return true;
    case '\n': out += "\\n"; return true;
    case '\r': out += "\\r"; return true;
    case '\t': out += "\\t"; return true;
    default: return false;
  }
}

// Bytes from the network (a SOCKS5 domain, a user name) reach these strings, so every
// control character is escaped, DEL and the C1 controls (U+0080..U+009F, which some
// terminals obey as escape sequences) too, and bytes that are not UTF-8 become
// U+FFFD: the record stays one line of valid JSON (RFC 8259 §7, §8.1).
void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  std::size_t run = 0;  // start of the pending run of characters that need no escape
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') continue;
    std::size_t n = 1;
    if (c >= 0x80) {
      n = utf8_sequence(s, i);
      if (n > 0 && !(c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0)) {
        i += n - 1;  // valid and no C1 control: kept as it is
        continue;
      }
    }
    out.append(s.data() + run, i - run);
    if (n == 0) {
      out += "\\ufffd";  // not UTF-8
      n = 1;
    } else if (!append_common_escape(out, c)) {
      const unsigned code = c == 0xC2 ? static_cast<unsigned char>(s[i + 1]) : c;  // C1 control or ASCII
      out += "\\u00";
      out += hex_digits[code >> 4];
      out += hex_digits[code & 0xF];
    }
    i += n - 1;
    run = i + 1;
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

}  // namespace egressd::proxy
