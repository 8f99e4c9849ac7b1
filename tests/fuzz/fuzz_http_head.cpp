// libFuzzer target: parse_http_head and rewrite_to_origin_form over arbitrary bytes,
// with the default limits and with small ones (to reach the limit paths). Beyond
// "no crash, no sanitizer report" it checks the contract the session relies on:
// consumed is within bounds, the parse is a function of the head alone, a prefix never
// contradicts the whole (need_more, or the same failure, or the same result), and the
// rewritten head is well formed, free of Proxy-* fields and carries one normalised
// framing field; a response head rewritten for close-delimiting keeps no framing field.

#include "proxy/protocol/http_head.hpp"
#include "fuzz_check.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace {

using namespace egressd::proxy::protocol;

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

void check_rewrite(const http_request& req) {
  const auto out = rewrite_to_origin_form(req, "egressd");
  FUZZ_CHECK(out.size() >= 4 && out.compare(out.size() - 4, 4, "\r\n\r\n") == 0);
  FUZZ_CHECK(out.compare(0, req.method.size(), req.method) == 0);
  std::string folded;
  for (const char c : out) folded += lower(c);
  FUZZ_CHECK(folded.find("\r\nproxy-") == std::string::npos);
  FUZZ_CHECK(folded.find("\r\nhost: ") != std::string::npos);
  // The framing goes upstream as at most one normalised field, as parsed.
  const auto count = [&folded](std::string_view what) {
    std::size_t n = 0;
    for (auto i = folded.find(what); i != std::string::npos; i = folded.find(what, i + 1)) ++n;
    return n;
  };
  FUZZ_CHECK(count("\r\ncontent-length:") == (req.body == body_framing::content_length ? 1u : 0u));
  FUZZ_CHECK(count("\r\ntransfer-encoding:") == (req.body == body_framing::chunked ? 1u : 0u));
  // Every line ends in CRLF and no field value can smuggle a line break.
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '\r') FUZZ_CHECK(i + 1 < out.size() && out[i + 1] == '\n');
    if (out[i] == '\n') FUZZ_CHECK(i > 0 && out[i - 1] == '\r');
  }
}

void check_one(std::string_view bytes, const head_limits& limits) {
  const auto whole = egressd::fuzz::check_prefix_contract<http_request>(
      [&limits](std::string_view b) { return parse_http_head(b, limits); }, bytes, "\r\n\r\n");
  if (const auto* p = std::get_if<parsed<http_request>>(&whole)) {
    FUZZ_CHECK(p->consumed <= limits.max_head_bytes);
    FUZZ_CHECK(bytes[p->consumed - 1] == '\n');
    FUZZ_CHECK(p->message.headers.size() <= limits.max_headers);
    FUZZ_CHECK(p->message.port != 0);
    FUZZ_CHECK(!p->message.host.empty());
    if (p->message.kind == request_kind::absolute) {
      FUZZ_CHECK(!p->message.origin_form.empty() && p->message.origin_form.front() == '/');
      check_rewrite(p->message);
    } else {
      FUZZ_CHECK(p->message.body == body_framing::none);
    }
  } else if (std::holds_alternative<need_more>(whole)) {
    FUZZ_CHECK(bytes.size() <= limits.max_head_bytes);
  }
}

// close_delimited_response_head takes any bytes: what it returns ends the head with
// Connection: close and carries no framing or connection field of its own.
void check_close_delimited(std::string_view bytes) {
  const auto out = close_delimited_response_head(bytes.substr(0, 4096));
  FUZZ_CHECK(out.size() >= 21 && out.compare(out.size() - 21, 21, "Connection: close\r\n\r\n") == 0);
  std::string folded;
  for (const char c : out) folded += lower(c);
  FUZZ_CHECK(folded.find("\r\ntransfer-encoding:") == std::string::npos);
  // Only ours: the one before the blank line (absent when the input had no line).
  const auto ours = folded.find("\r\nconnection:");
  FUZZ_CHECK(ours == std::string::npos || ours + 23 == folded.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  check_one(bytes, head_limits{});
  head_limits small;
  small.max_head_bytes = 200;
  small.max_headers = 4;
  small.max_line_bytes = 48;
  check_one(bytes, small);
  check_close_delimited(bytes);
  return 0;
}
