// Fuzzes the hook's answer parser (proxy/hook/wire.hpp), which reads what a hook
// program prints or an approval service returns, and the question encoder with
// arbitrary bytes as a host. Any input must give an answer or an error, never a
// crash, an exception or a hang; the parse must be deterministic; an answer keeps
// its documented bounds; a question is always one line of valid JSON.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "config/json.hpp"
#include "fuzz_check.hpp"
#include "proxy/hook/wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace hook = egressd::proxy::hook;
  using egressd::policy::answer_lifetime;
  using egressd::policy::outcome;
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const auto r = hook::parse_answer(input);
  FUZZ_CHECK(r.value.has_value() == r.error.empty());
  if (r.value) {
    FUZZ_CHECK(r.value->decision == outcome::allow || r.value->decision == outcome::deny);
    FUZZ_CHECK(r.value->reason.size() <= 200);
    FUZZ_CHECK(r.value->ttl.count() >= 0);
    if (r.value->remember != answer_lifetime::ttl) FUZZ_CHECK(r.value->ttl.count() == 0);
  }
  const auto again = hook::parse_answer(input);
  FUZZ_CHECK(again.value.has_value() == r.value.has_value());
  FUZZ_CHECK(again.error == r.error);

  hook::question q;
  q.id = size;
  q.host = std::string(input);
  q.client = std::string(input.substr(0, size / 2));
  const auto line = hook::to_json(q);
  FUZZ_CHECK(line.find('\n') == std::string::npos);
  FUZZ_CHECK(egressd::config::json::parse(line).value.has_value());
  return 0;
}
