// config/json: the strict JSON reader of settings files (RFC 8259), with places.

#include "config/json.hpp"

#include <catch2/catch.hpp>

#include <string>

namespace {

namespace json = egressd::config::json;

json::parse_error fails(std::string_view text) {
  const auto r = json::parse(text);
  INFO(text);
  REQUIRE_FALSE(r.value);
  return r.error;
}

TEST_CASE("json: values and their places", "[unit][config][json]") {
  const auto r = json::parse("{\n  \"a\": [1, -2.5e3, \"x\\ty\"],\n\t\"b\": {\"c\": true, \"d\": null}\n}");
  REQUIRE(r.value);
  const json::value& v = *r.value;
  REQUIRE(v.is_object());
  REQUIRE(v.members.size() == 2);
  CHECK(v.members[0].key == "a");
  CHECK(v.members[0].line == 2);
  CHECK(v.members[0].column == 3);
  const json::value& a = v.members[0].value;
  REQUIRE(a.items.size() == 3);
  CHECK(a.items[0].text == "1");
  CHECK(a.items[1].kind == json::value::kind_t::number);
  CHECK(a.items[1].text == "-2.5e3");
  CHECK(a.items[2].text == "x\ty");
  CHECK(a.items[2].line == 2);
  CHECK(a.items[2].column == 20);
  const json::value& b = v.members[1].value;
  CHECK(v.members[1].line == 3);
  CHECK(v.members[1].column == 2);  // after a tab: columns count bytes
  CHECK(b.members[0].value.boolean);
  CHECK(b.members[1].value.is_null());
  CHECK(json::parse(" [] ").value->items.empty());
  CHECK(json::parse("\"\\ud83d\\ude80\"").value->text == "\xF0\x9F\x9A\x80");
  CHECK(json::parse("\"\\ud800x\"").value->text == "\xEF\xBF\xBDx");  // lone surrogate: U+FFFD
  CHECK(json::parse("\xEF\xBB\xBF{}").value->is_object());            // a BOM is skipped
}

TEST_CASE("json: what JSON.parse refuses, with line, column and hint", "[unit][config][json]") {
  auto e = fails("{\n  \"a\": [1, 2,]\n}");
  CHECK(e.line == 2);
  CHECK(e.column == 14);
  CHECK_THAT(e.message, Catch::Contains("trailing comma"));
  e = fails("{\"a\": 1,\n}");
  CHECK(e.line == 2);
  CHECK_THAT(e.message, Catch::Contains("trailing comma"));
  e = fails("{\n  // a comment\n  \"a\": 1\n}");
  CHECK(e.line == 2);
  CHECK(e.column == 3);
  CHECK_THAT(e.message, Catch::Contains("comments are not allowed"));
  CHECK_THAT(fails("{\"a\": 1} /* x */").message, Catch::Contains("comments"));
  CHECK_THAT(fails("{'a': 1}").message, Catch::Contains("double quotes"));
  CHECK_THAT(fails("{a: 1}").message, Catch::Contains("member name in double quotes"));
  CHECK_THAT(fails("[\"a\" \"b\"]").message, Catch::Contains("expected `,` or `]`"));
  CHECK_THAT(fails("{\"a\" 1}").message, Catch::Contains("expected `:`"));
  CHECK_THAT(fails("[01]").message, Catch::Contains("leading zeros"));
  CHECK_THAT(fails("[1.]").message, Catch::Contains("decimal point"));
  CHECK_THAT(fails("[+1]").message, Catch::Contains("expected a value"));
  CHECK_THAT(fails("[NaN]").message, Catch::Contains("expected a value"));
  CHECK_THAT(fails("[True]").message, Catch::Contains("expected a value"));
  CHECK_THAT(fails("[\"a\tb\"]").message, Catch::Contains("control character"));
  CHECK_THAT(fails("[\"\\x\"]").message, Catch::Contains("unknown escape"));
  CHECK_THAT(fails("[\"\\u12\"]").message, Catch::Contains("four hex digits"));
  CHECK_THAT(fails("[\"abc").message, Catch::Contains("not closed"));
  CHECK_THAT(fails("{} {}").message, Catch::Contains("after the end"));
  CHECK_THAT(fails("").message, Catch::Contains("end of file"));
  CHECK_THAT(fails("{\"a\": [1, 2").message, Catch::Contains("not closed"));
  CHECK_THAT(fails("version: 1\n").message, Catch::Contains("expected a value"));
}

TEST_CASE("json: nesting is bounded", "[unit][config][json]") {
  const std::string ok = std::string(json::max_depth, '[') + std::string(json::max_depth, ']');
  CHECK(json::parse(ok).value);
  const std::string deep(100000, '[');
  CHECK_THAT(fails(deep).message, Catch::Contains("nested more than"));
}

TEST_CASE("json: every strict prefix of a document is an error, never a crash", "[unit][config][json]") {
  const std::string doc = R"({"sandbox": {"network": {"allowedDomains": ["a.example", "\u0062.example"],)"
                          R"( "httpProxyPort": 3128, "strictAllowlist": false, "x": null}}})";
  REQUIRE(json::parse(doc).value);
  for (std::size_t n = 0; n < doc.size(); ++n) {
    const auto r = json::parse(std::string_view(doc).substr(0, n));
    INFO(n);
    CHECK_FALSE(r.value);
    CHECK(r.error.line == 1);
    CHECK(r.error.column >= 1);
  }
}

}  // namespace
