// Flow: one recursive-descent pass over the bytes (RFC 8259 §2-§7), tracking line
// and column; the first problem stops the parse and is returned with its place and,
// for the mistakes people make in hand-edited JSON (comments, trailing commas,
// single quotes, bare keys), a hint. Nesting is bounded by json::max_depth.

#include "config/json.hpp"

#include <charconv>

namespace egressd::config::json {

namespace {

class parser {
 public:
  explicit parser(std::string_view text) : text_(text) {}

  parse_result run() {
    parse_result out;
    // A UTF-8 byte order mark (some Windows editors write one) carries no meaning.
    if (text_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = line_start_ = 3;
    skip_space();
    value v;
    if (!parse_value(v, 0)) {
      out.error = std::move(error_);
      return out;
    }
    skip_space();
    if (pos_ < text_.size()) {
      if (text_[pos_] == '/')
        fail("comments are not allowed in JSON", "remove the comment");
      else
        fail("unexpected " + describe_here() + " after the end of the JSON value",
             "a settings file holds exactly one object");
      out.error = std::move(error_);
      return out;
    }
    out.value = std::move(v);
    return out;
  }

 private:
  // RFC 8259 §2: the four whitespace characters, nothing else.
  void skip_space() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
      advance();
    }
  }

  void advance() {
    if (text_[pos_] == '\n') {
      ++line_;
      line_start_ = pos_ + 1;
    }
    ++pos_;
  }

  int column() const { return static_cast<int>(pos_ - line_start_) + 1; }

  bool fail(std::string message, std::string hint = {}) {
    if (error_.message.empty()) error_ = parse_error{line_, column(), std::move(message), std::move(hint)};
    return false;
  }

  std::string describe_here() const {
    if (pos_ >= text_.size()) return "end of file";
    const char c = text_[pos_];
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) return "byte";
    return "`" + std::string(1, c) + "`";
  }

  // A problem at a place a value was expected, with the hint for the usual mistakes.
  bool fail_value() {
    if (pos_ >= text_.size()) return fail("unexpected end of file: a value is missing");
    const char c = text_[pos_];
    if (c == '/') return fail("comments are not allowed in JSON", "remove the comment");
    if (c == '\'') return fail("strings take double quotes in JSON", "write \"...\" instead of '...'");
    if (c == ']' || c == '}')
      return fail("a trailing comma before `" + std::string(1, c) + "`",
                  "JSON allows no comma after the last element; remove it");
    if (c == ',') return fail("a value is missing before `,`");
    return fail("unexpected " + describe_here() + ": expected a value (object, array, string, number, true, "
                "false or null)");
  }

  bool parse_value(value& v, std::size_t depth) {
    v.line = line_;
    v.column = column();
    if (pos_ >= text_.size()) return fail_value();
    switch (text_[pos_]) {
      case '{': return parse_object(v, depth);
      case '[': return parse_array(v, depth);
      case '"':
        v.kind = value::kind_t::string;
        return parse_string(v.text);
      case 't': return parse_literal(v, "true", value::kind_t::boolean, true);
      case 'f': return parse_literal(v, "false", value::kind_t::boolean, false);
      case 'n': return parse_literal(v, "null", value::kind_t::null, false);
      default:
        if (text_[pos_] == '-' || (text_[pos_] >= '0' && text_[pos_] <= '9')) return parse_number(v);
        return fail_value();
    }
  }

  bool parse_literal(value& v, std::string_view word, value::kind_t kind, bool b) {
    if (text_.substr(pos_, word.size()) != word) return fail_value();
    for (std::size_t i = 0; i < word.size(); ++i) advance();
    v.kind = kind;
    v.boolean = b;
    return true;
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }

  // RFC 8259 §6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  bool parse_number(value& v) {
    const std::size_t start = pos_;
    const auto digits = [&] {
      const std::size_t from = pos_;
      while (pos_ < text_.size() && digit(text_[pos_])) advance();
      return pos_ > from;
    };
    if (text_[pos_] == '-') advance();
    if (pos_ < text_.size() && text_[pos_] == '0') {
      advance();
      if (pos_ < text_.size() && digit(text_[pos_])) return fail("numbers have no leading zeros in JSON");
    } else if (!digits()) {
      return fail("a number needs digits");
    }
    if (pos_ < text_.size() && text_[pos_] == '.') {
      advance();
      if (!digits()) return fail("a digit must follow the decimal point");
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      advance();
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) advance();
      if (!digits()) return fail("a digit must follow the exponent");
    }
    v.kind = value::kind_t::number;
    v.text = std::string(text_.substr(start, pos_ - start));
    return true;
  }

  std::optional<unsigned> hex4() {
    if (pos_ + 4 > text_.size()) return std::nullopt;
    unsigned u = 0;
    const char* first = text_.data() + pos_;
    const auto [end, ec] = std::from_chars(first, first + 4, u, 16);
    if (ec != std::errc{} || end != first + 4) return std::nullopt;
    for (int i = 0; i < 4; ++i) advance();
    return u;
  }

  static void append_utf8(std::string& out, unsigned code) {
    if (code < 0x80) {
      out.push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (code >> 6)));
      out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
    } else if (code < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (code >> 12)));
      out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (code >> 18)));
      out.push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
    }
  }

  // RFC 8259 §7. JSON.parse keeps a lone surrogate in its UTF-16 string; UTF-8
  // cannot hold one, so it becomes U+FFFD (such a character never makes a valid
  // host pattern either way).
  bool parse_string(std::string& out) {
    advance();  // the opening quote
    for (;;) {
      if (pos_ >= text_.size()) return fail("a string is not closed before the end of file", "add the closing `\"`");
      const char c = text_[pos_];
      if (c == '"') {
        advance();
        return true;
      }
      if (c == '\n') return fail("a string is not closed on its line", "add the closing `\"`");
      if (static_cast<unsigned char>(c) < 0x20)
        return fail("a control character inside a string", "write it as an escape such as \\t");
      if (c != '\\') {
        out.push_back(c);
        advance();
        continue;
      }
      advance();
      if (pos_ >= text_.size()) return fail("a string is not closed before the end of file");
      const char e = text_[pos_];
      advance();
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          const auto unit = hex4();
          if (!unit) return fail("`\\u` needs four hex digits");
          unsigned code = *unit;
          if (code >= 0xD800 && code <= 0xDBFF && text_.substr(pos_, 2) == "\\u") {
            const std::size_t save_pos = pos_;
            const std::size_t save_line_start = line_start_;
            advance();
            advance();
            const auto low = hex4();
            if (low && *low >= 0xDC00 && *low <= 0xDFFF) {
              code = 0x10000 + ((code - 0xD800) << 10) + (*low - 0xDC00);
            } else {
              pos_ = save_pos;  // not a pair: read the next escape on its own
              line_start_ = save_line_start;
              code = 0xFFFD;
            }
          } else if (code >= 0xD800 && code <= 0xDFFF) {
            code = 0xFFFD;
          }
          append_utf8(out, code);
          break;
        }
        default:
          return fail("unknown escape `\\" + std::string(1, e) + "`",
                      "JSON knows \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX");
      }
    }
  }

  bool open(std::size_t depth) {
    if (depth + 1 > max_depth)
      return fail("nested more than " + std::to_string(max_depth) + " levels deep");
    advance();
    skip_space();
    return true;
  }

  bool parse_array(value& v, std::size_t depth) {
    v.kind = value::kind_t::array;
    if (!open(depth)) return false;
    if (pos_ < text_.size() && text_[pos_] == ']') {
      advance();
      return true;
    }
    for (;;) {
      value item;
      if (!parse_value(item, depth + 1)) return false;
      v.items.push_back(std::move(item));
      skip_space();
      if (pos_ >= text_.size()) return fail("an array is not closed before the end of file", "add the closing `]`");
      if (text_[pos_] == ']') {
        advance();
        return true;
      }
      if (text_[pos_] != ',') {
        if (text_[pos_] == '/') return fail("comments are not allowed in JSON", "remove the comment");
        return fail("expected `,` or `]` after an array element, got " + describe_here(),
                    "separate the elements with commas");
      }
      advance();
      skip_space();
    }
  }

  bool parse_object(value& v, std::size_t depth) {
    v.kind = value::kind_t::object;
    if (!open(depth)) return false;
    if (pos_ < text_.size() && text_[pos_] == '}') {
      advance();
      return true;
    }
    for (;;) {
      member m;
      m.line = line_;
      m.column = column();
      if (pos_ >= text_.size()) return fail("an object is not closed before the end of file", "add the closing `}`");
      if (text_[pos_] != '"') {
        const char c = text_[pos_];
        if (c == '}') return fail("a trailing comma before `}`", "JSON allows no comma after the last member; remove it");
        if (c == '/') return fail("comments are not allowed in JSON", "remove the comment");
        if (c == '\'') return fail("strings take double quotes in JSON", "write \"key\" instead of 'key'");
        return fail("expected a member name in double quotes, got " + describe_here(), "write \"key\": value");
      }
      if (!parse_string(m.key)) return false;
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] != ':')
        return fail("expected `:` after the member name, got " + describe_here(), "write \"key\": value");
      advance();
      skip_space();
      if (!parse_value(m.value, depth + 1)) return false;
      v.members.push_back(std::move(m));
      skip_space();
      if (pos_ >= text_.size()) return fail("an object is not closed before the end of file", "add the closing `}`");
      if (text_[pos_] == '}') {
        advance();
        return true;
      }
      if (text_[pos_] != ',') {
        if (text_[pos_] == '/') return fail("comments are not allowed in JSON", "remove the comment");
        return fail("expected `,` or `}` after an object member, got " + describe_here(),
                    "separate the members with commas");
      }
      advance();
      skip_space();
    }
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  int line_ = 1;
  std::size_t line_start_ = 0;
  parse_error error_;
};

}  // namespace

parse_result parse(std::string_view text) { return parser(text).run(); }

}  // namespace egressd::config::json
