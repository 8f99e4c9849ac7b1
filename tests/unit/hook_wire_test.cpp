// proxy/hook/wire: the question as one JSON line, the answer parser (each member, its
// defaults, each wrong type or value with its message), RFC 3339 times, failure names.

#include "proxy/hook/transport.hpp"
#include "proxy/hook/wire.hpp"

#include <catch2/catch.hpp>

#include <string>

#include "config/json.hpp"

namespace {

namespace hook = egressd::proxy::hook;
namespace json = egressd::config::json;
using egressd::policy::answer_lifetime;
using egressd::policy::answer_scope;
using egressd::policy::outcome;
using namespace std::chrono_literals;

hook::question sample() {
  hook::question q;
  q.id = 42;
  q.host = "registry.npmjs.org";
  q.port = 443;
  q.protocol = "connect";
  q.client = "127.0.0.1:50312";
  q.listener = "127.0.0.1:3128";
  q.registrable_domain = "npmjs.org";
  q.first_seen = std::chrono::system_clock::time_point{} + 1796320800123ms;
  return q;
}

const json::value* member(const json::value& v, std::string_view key) {
  for (const auto& m : v.members)
    if (m.key == key) return &m.value;
  return nullptr;
}

std::string error_of(std::string_view text) {
  const auto r = hook::parse_answer(text);
  REQUIRE_FALSE(r.value);
  return r.error;
}

}  // namespace

TEST_CASE("a question is one line of JSON with every field", "[unit][hook]") {
  const auto text = hook::to_json(sample());
  CHECK(text ==
        "{\"id\":42,\"host\":\"registry.npmjs.org\",\"port\":443,\"protocol\":\"connect\","
        "\"client\":\"127.0.0.1:50312\",\"listener\":\"127.0.0.1:3128\",\"registrable_domain\":\"npmjs.org\","
        "\"first_seen\":\"2026-12-03T18:00:00.123Z\"}");
}

TEST_CASE("a question's strings are escaped: still one line, still JSON", "[unit][hook]") {
  auto q = sample();
  q.host = "a\"b\\c\nd\x01\xff";
  q.client = "unix";
  q.registrable_domain = "";
  const auto text = hook::to_json(q);
  CHECK(text.find('\n') == std::string::npos);
  const auto parsed = json::parse(text);
  REQUIRE(parsed.value);
  const auto* host = member(*parsed.value, "host");
  REQUIRE(host);
  CHECK(host->text == "a\"b\\c\nd\x01\xEF\xBF\xBD");  // the byte that is not UTF-8 became U+FFFD
  CHECK(member(*parsed.value, "registrable_domain")->text.empty());
  CHECK(member(*parsed.value, "id")->text == "42");
  CHECK(member(*parsed.value, "port")->text == "443");
}

TEST_CASE("RFC 3339 UTC with milliseconds", "[unit][hook]") {
  using std::chrono::system_clock;
  CHECK(hook::rfc3339(system_clock::time_point{}) == "1970-01-01T00:00:00.000Z");
  CHECK(hook::rfc3339(system_clock::time_point{} + 951782400999ms) == "2000-02-29T00:00:00.999Z");
  CHECK(hook::rfc3339(system_clock::time_point{} + 1796320800123ms + 999us) == "2026-12-03T18:00:00.123Z");
  CHECK(hook::rfc3339(system_clock::time_point{} - 1ms) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("an answer with only a decision takes the defaults", "[unit][hook]") {
  const auto r = hook::parse_answer(R"({"decision":"allow"})");
  REQUIRE(r.value);
  CHECK(r.error.empty());
  CHECK(r.value->decision == outcome::allow);
  CHECK(r.value->remember == answer_lifetime::once);
  CHECK(r.value->scope == answer_scope::host);
  CHECK(r.value->ttl == 0s);
  CHECK(r.value->reason.empty());
  CHECK_FALSE(r.value->id);
  const auto d = hook::parse_answer(" \n{\"decision\":\"deny\"}\n ");
  REQUIRE(d.value);
  CHECK(d.value->decision == outcome::deny);
}

TEST_CASE("every member of an answer is read", "[unit][hook]") {
  const auto r = hook::parse_answer(
      R"({"id":7,"decision":"allow","remember":"ttl","ttl_seconds":3600,"scope":"domain","reason":"npm","extra":{"x":[1]}})");
  REQUIRE(r.value);
  CHECK(r.value->id == 7u);
  CHECK(r.value->decision == outcome::allow);
  CHECK(r.value->remember == answer_lifetime::ttl);
  CHECK(r.value->ttl == 3600s);
  CHECK(r.value->scope == answer_scope::domain);
  CHECK(r.value->reason == "npm");
  const auto a = hook::parse_answer(R"({"decision":"deny","remember":"always","scope":"host_port"})");
  REQUIRE(a.value);
  CHECK(a.value->remember == answer_lifetime::always);
  CHECK(a.value->scope == answer_scope::host_port);
  CHECK(hook::parse_answer(R"({"decision":"deny","id":18446744073709551615})").value->id == 18446744073709551615u);
}

TEST_CASE("remember: ttl without ttl_seconds means the configured default", "[unit][hook]") {
  const auto r = hook::parse_answer(R"({"decision":"allow","remember":"ttl"})");
  REQUIRE(r.value);
  CHECK(r.value->remember == answer_lifetime::ttl);
  CHECK(r.value->ttl == 0s);
  // ttl_seconds counts only for remember: ttl.
  const auto once = hook::parse_answer(R"({"decision":"allow","ttl_seconds":60})");
  REQUIRE(once.value);
  CHECK(once.value->ttl == 0s);
}

TEST_CASE("null optional members count as absent", "[unit][hook]") {
  const auto r =
      hook::parse_answer(R"({"decision":"allow","remember":null,"ttl_seconds":null,"scope":null,"reason":null,"id":null})");
  REQUIRE(r.value);
  CHECK(r.value->remember == answer_lifetime::once);
  CHECK_FALSE(r.value->id);
  CHECK(error_of(R"({"decision":null})") == "decision must be \"allow\" or \"deny\"");
}

TEST_CASE("the reason is kept to 200 bytes, never splitting a character", "[unit][hook]") {
  const auto long_ascii = std::string(300, 'x');
  const auto r = hook::parse_answer("{\"decision\":\"deny\",\"reason\":\"" + long_ascii + "\"}");
  REQUIRE(r.value);
  CHECK(r.value->reason == std::string(200, 'x'));
  // 199 ASCII bytes and a 3-byte character: the character would end at byte 202.
  const auto r2 = hook::parse_answer("{\"decision\":\"deny\",\"reason\":\"" + std::string(199, 'y') + "\xE2\x82\xAC\"}");
  REQUIRE(r2.value);
  CHECK(r2.value->reason == std::string(199, 'y'));
  const auto r3 = hook::parse_answer("{\"decision\":\"deny\",\"reason\":\"" + std::string(197, 'y') + "\xE2\x82\xAC\"}");
  REQUIRE(r3.value);
  CHECK(r3.value->reason.size() == 200);
}

TEST_CASE("bad answers say what is wrong", "[unit][hook]") {
  CHECK(error_of("") .rfind("not JSON: ", 0) == 0);
  CHECK(error_of("{\"decision\":\"allow\"").rfind("not JSON: ", 0) == 0);
  CHECK(error_of("{\"decision\":\"allow\"").find("line 1") != std::string::npos);
  CHECK(error_of("allow").rfind("not JSON: ", 0) == 0);
  CHECK(error_of("[\"allow\"]") == "an answer must be a JSON object, not an array");
  CHECK(error_of("\"allow\"") == "an answer must be a JSON object, not a string");
  CHECK(error_of("{}") == "decision is required: \"allow\" or \"deny\"");
  CHECK(error_of(R"({"remember":"once"})") == "decision is required: \"allow\" or \"deny\"");
  CHECK(error_of(R"({"decision":"ALLOW"})") == "decision must be \"allow\" or \"deny\"");
  CHECK(error_of(R"({"decision":"maybe"})") == "decision must be \"allow\" or \"deny\"");
  CHECK(error_of(R"({"decision":true})") == "decision must be \"allow\" or \"deny\"");
  CHECK(error_of(R"({"decision":"allow","decision":"deny"})") == "decision is given twice");
  CHECK(error_of(R"({"decision":"allow","remember":"forever"})") == "remember must be \"once\", \"ttl\" or \"always\"");
  CHECK(error_of(R"({"decision":"allow","remember":1})") == "remember must be \"once\", \"ttl\" or \"always\"");
  CHECK(error_of(R"({"decision":"allow","scope":"world"})") == "scope must be \"host\", \"host_port\" or \"domain\"");
  CHECK(error_of(R"({"decision":"allow","scope":["host"]})") == "scope must be \"host\", \"host_port\" or \"domain\"");
  CHECK(error_of(R"({"decision":"allow","reason":5})") == "reason must be a string, not a number");
  CHECK(error_of(R"({"decision":"allow","id":"7"})") == "id must be a non-negative integer (the question's id)");
  CHECK(error_of(R"({"decision":"allow","id":-7})") == "id must be a non-negative integer (the question's id)");
  CHECK(error_of(R"({"decision":"allow","id":7.0})") == "id must be a non-negative integer (the question's id)");
  CHECK(error_of(R"({"decision":"allow","id":18446744073709551616})") ==
        "id must be a non-negative integer (the question's id)");
}

TEST_CASE("ttl_seconds must be a plain integer >= 1", "[unit][hook]") {
  const auto base = std::string(R"({"decision":"allow","remember":"ttl","ttl_seconds":)");
  CHECK(error_of(base + "0}") == "ttl_seconds must be an integer >= 1, not 0");
  CHECK(error_of(base + "-5}") == "ttl_seconds must be an integer >= 1, not -5");
  CHECK(error_of(base + "1.5}") == "ttl_seconds must be an integer >= 1, not 1.5");
  CHECK(error_of(base + "6e1}") == "ttl_seconds must be an integer >= 1, not 6e1");
  CHECK(error_of(base + "\"60\"}") == "ttl_seconds must be an integer >= 1, not a string");
  CHECK(error_of(base + "true}") == "ttl_seconds must be an integer >= 1, not a boolean");
  CHECK(error_of(base + "99999999999999999999999}") == "ttl_seconds must be an integer >= 1, not 99999999999999999999999");
  CHECK(error_of(base + "400000000}").rfind("ttl_seconds must be at most 316224000", 0) == 0);
  const auto one = hook::parse_answer(base + "1}");
  REQUIRE(one.value);
  CHECK(one.value->ttl == 1s);
}

TEST_CASE("each failure has its own name", "[unit][hook]") {
  CHECK(hook::to_string(hook::failure::none) == "none");
  CHECK(hook::to_string(hook::failure::timeout) == "timeout");
  CHECK(hook::to_string(hook::failure::crashed) == "crashed");
  CHECK(hook::to_string(hook::failure::bad_answer) == "bad_answer");
  CHECK(hook::to_string(hook::failure::not_found) == "not_found");
  CHECK(hook::to_string(hook::failure::refused) == "refused");
  CHECK(hook::to_string(hook::failure::http_error) == "http_error");
  CHECK(hook::to_string(hook::failure::tls_error) == "tls_error");
  CHECK(hook::to_string(hook::failure::io_error) == "io_error");
}
