#pragma once
// Shared by the parser fuzz targets (fuzz_http_head.cpp, fuzz_socks5.cpp): FUZZ_CHECK,
// an assertion that aborts (so libFuzzer records the input) in every build type, and
// check_prefix_contract, the contract every parser of proxy/protocol/parse_result.hpp
// keeps whatever the bytes: consumed is within bounds, the result is a function of the
// consumed bytes alone and their last byte completes it, a prefix never contradicts the
// whole (need_more, the same failure, or the same result), and a failure stays the same
// failure when more bytes arrive.

#include "proxy/protocol/parse_result.hpp"

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>
#include <variant>

#define FUZZ_CHECK(condition)                                                             \
  do {                                                                                    \
    if (!(condition)) {                                                                   \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (false)

namespace egressd::fuzz {

/// Runs `parse` (string_view -> parse_result<Message>) over `bytes` and over its
/// prefixes, and checks the prefix contract. `more` is appended to a failed input to
/// check that more bytes do not help (pick bytes that would complete or extend a
/// message of this protocol). Returns the result for the whole input, for the
/// caller's checks of the message itself.
template <class Message, class Parse>
proxy::protocol::parse_result<Message> check_prefix_contract(Parse parse, std::string_view bytes,
                                                             std::string_view more) {
  using proxy::protocol::need_more;
  using proxy::protocol::parse_failure;
  using proxy::protocol::parsed;

  const auto whole = parse(bytes);
  std::ostringstream os;
  os << whole;  // printing never fails

  const auto prefix = parse(bytes.substr(0, bytes.size() / 2));
  if (const auto* p = std::get_if<parsed<Message>>(&whole)) {
    FUZZ_CHECK(p->consumed > 0 && p->consumed <= bytes.size());
    // The result depends on the message's bytes alone, and its last byte completes it.
    FUZZ_CHECK(parse(bytes.substr(0, p->consumed)) == whole);
    FUZZ_CHECK(std::holds_alternative<need_more>(parse(bytes.substr(0, p->consumed - 1))));
    if (bytes.size() / 2 >= p->consumed) {
      FUZZ_CHECK(prefix == whole);
    } else {
      FUZZ_CHECK(std::holds_alternative<need_more>(prefix));
    }
  } else if (std::holds_alternative<parse_failure>(whole)) {
    FUZZ_CHECK(std::holds_alternative<need_more>(prefix) || prefix == whole);
    // Once failed, more bytes do not help.
    std::string longer(bytes);
    longer += more;
    FUZZ_CHECK(parse(longer) == whole);
  } else {
    FUZZ_CHECK(std::holds_alternative<need_more>(prefix));
  }
  return whole;
}

}  // namespace egressd::fuzz
