#pragma once
// Shared vocabulary of the protocol parsers: one call over the bytes
// received so far returns need_more, parse_failure{code}, or parsed{message, consumed}.
// The caller owns the buffer and the socket; a parser owns nothing and keeps no state
// between calls.

#include "proxy/protocol/errc.hpp"

#include <cstddef>
#include <ostream>
#include <variant>

namespace egressd::proxy::protocol {

/// The bytes so far are a valid prefix of a message: read more and call again with
/// all of them. Once a prefix gives parse_failure, every longer input gives the same
/// failure, so the caller may stop reading.
struct need_more {
  friend bool operator==(const need_more&, const need_more&) = default;
};

/// The bytes can never become a valid message; `code` says why.
struct parse_failure {
  parse_errc code;
  friend bool operator==(const parse_failure&, const parse_failure&) = default;
};

/// A complete message. `consumed` is the number of leading bytes it took; bytes after
/// it (a pipelined TLS ClientHello behind a CONNECT head) belong to the caller.
template <class Message>
struct parsed {
  Message message;
  std::size_t consumed = 0;
  friend bool operator==(const parsed&, const parsed&) = default;
};

template <class Message>
using parse_result = std::variant<need_more, parse_failure, parsed<Message>>;

inline std::ostream& operator<<(std::ostream& os, const need_more&) {
  return os << "need_more";
}

inline std::ostream& operator<<(std::ostream& os, const parse_failure& f) {
  return os << "parse_failure{" << f.code << '}';
}

template <class Message>
std::ostream& operator<<(std::ostream& os, const parsed<Message>& p) {
  return os << "parsed{" << p.message << ", consumed=" << p.consumed << '}';
}

/// Prints whichever alternative the result holds (found by ADL through the
/// alternatives' namespace; Catch2 uses it to print failed comparisons).
template <class Message>
std::ostream& operator<<(std::ostream& os, const parse_result<Message>& r) {
  std::visit([&os](const auto& alternative) { os << alternative; }, r);
  return os;
}

}  // namespace egressd::proxy::protocol
