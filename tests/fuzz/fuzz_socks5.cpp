// libFuzzer target: the three SOCKS5 parsers over the same arbitrary bytes. Beyond
// "no crash, no sanitizer report" it checks consumed, that a prefix never contradicts
// the whole, and that the address of a request is the octets sent (IP octets in
// `address`, the rest zero; a domain's octets in `domain`), and that printing a request
// works for any input.

#include "proxy/protocol/socks5.hpp"
#include "fuzz_check.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <variant>

namespace {

using namespace egressd::proxy::protocol;

// The prefix contract (fuzz_check.hpp), a failed input extended by 300 NULs; the
// message when the whole input parsed.
template <class Message, class Parse>
std::optional<Message> check_parser(Parse parse, std::string_view bytes) {
  static const std::string more(300, '\0');
  const auto whole = egressd::fuzz::check_prefix_contract<Message>(parse, bytes, more);
  if (const auto* p = std::get_if<parsed<Message>>(&whole)) return p->message;
  return std::nullopt;
}

std::uint8_t at(std::string_view b, std::size_t i) { return static_cast<std::uint8_t>(b[i]); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  if (const auto g = check_parser<socks5_greeting>(
          [](std::string_view b) { return parse_socks5_greeting(b); }, bytes)) {
    FUZZ_CHECK(!g->methods.empty() && g->methods.size() == at(bytes, 1));
  }

  if (const auto c = check_parser<socks5_credentials>(
          [](std::string_view b) { return parse_socks5_auth(b); }, bytes)) {
    FUZZ_CHECK(!c->username.empty() && c->username.size() <= 255 && c->password.size() <= 255);
  }

  if (const auto r = check_parser<socks5_request>(
          [](std::string_view b) { return parse_socks5_request(b); }, bytes)) {
    switch (r->address_type) {
      case socks5_address_type::ipv4:
      case socks5_address_type::ipv6: {
        const std::size_t n = r->address_type == socks5_address_type::ipv4 ? 4 : 16;
        FUZZ_CHECK(std::memcmp(r->address.data(), data + 4, n) == 0);
        for (std::size_t i = n; i < 16; ++i) FUZZ_CHECK(r->address[i] == 0);
        FUZZ_CHECK(r->domain.empty());
        break;
      }
      case socks5_address_type::domain:
        FUZZ_CHECK(!r->domain.empty() && r->domain.size() == at(bytes, 4));
        FUZZ_CHECK(std::memcmp(r->domain.data(), data + 5, r->domain.size()) == 0);
        for (const auto octet : r->address) FUZZ_CHECK(octet == 0);
        break;
    }
    std::ostringstream printed;
    printed << *r;
    FUZZ_CHECK(!printed.str().empty());
  }
  return 0;
}
