#include "proxy/protocol/errc.hpp"

#include <ostream>
#include <string>

namespace egressd::proxy::protocol {

namespace {

class parse_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "egressd.protocol"; }
  std::string message(int value) const override {
    return std::string(to_string(static_cast<parse_errc>(value)));
  }
};

}  // namespace

const std::error_category& parse_category() noexcept {
  // A function-local constant, not a mutable global: error categories are compared
  // by address, so there must be exactly one instance.
  static const parse_category_impl category;
  return category;
}

std::error_code make_error_code(parse_errc e) noexcept {
  return {static_cast<int>(e), parse_category()};
}

std::string_view to_string(parse_errc e) noexcept {
  switch (e) {
    case parse_errc::head_too_large: return "head_too_large";
    case parse_errc::too_many_headers: return "too_many_headers";
    case parse_errc::line_too_long: return "line_too_long";
    case parse_errc::bad_character: return "bad_character";
    case parse_errc::bad_request_line: return "bad_request_line";
    case parse_errc::bad_method: return "bad_method";
    case parse_errc::bad_version: return "bad_version";
    case parse_errc::bad_target: return "bad_target";
    case parse_errc::unsupported_scheme: return "unsupported_scheme";
    case parse_errc::not_a_proxy_request: return "not_a_proxy_request";
    case parse_errc::bad_header: return "bad_header";
    case parse_errc::ambiguous_length: return "ambiguous_length";
    case parse_errc::bad_content_length: return "bad_content_length";
    case parse_errc::bad_transfer_encoding: return "bad_transfer_encoding";
    case parse_errc::bad_greeting: return "bad_greeting";
    case parse_errc::bad_auth_request: return "bad_auth_request";
    case parse_errc::bad_command: return "bad_command";
    case parse_errc::bad_request: return "bad_request";
    case parse_errc::bad_address_type: return "bad_address_type";
  }
  return "unknown";
}

int http_status_for(parse_errc e) noexcept {
  switch (e) {
    case parse_errc::head_too_large:
    case parse_errc::too_many_headers:
    case parse_errc::line_too_long:
      return 431;
    default:
      return 400;
  }
}

std::ostream& operator<<(std::ostream& os, parse_errc e) { return os << to_string(e); }

}  // namespace egressd::proxy::protocol
