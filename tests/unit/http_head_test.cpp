// Unit tests of the HTTP request head parser and the origin-form rewrite
// (proxy/protocol/http_head.hpp), and of parse_errc (proxy/protocol/errc.hpp).
// Shape after h2o/picohttpparser test.c (incomplete prefixes, slowloris) and
// Beast's parsegrind (every split gives the same result).

#include "proxy/protocol/errc.hpp"
#include "proxy/protocol/http_head.hpp"

#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

using namespace egressd::proxy::protocol;
using namespace std::literals;

namespace {

parse_result<http_request> parse(std::string_view bytes, const head_limits& limits = {}) {
  return parse_http_head(bytes, limits);
}

std::string to_text(const parse_result<http_request>& r) {
  std::ostringstream os;
  os << r;
  return os.str();
}

// The request of a result that must be complete, with `consumed` checked.
http_request parsed_request(std::string_view bytes, std::size_t expected_consumed,
                            const head_limits& limits = {}) {
  const auto r = parse(bytes, limits);
  INFO("input: " << bytes << "\nresult: " << r);
  REQUIRE(std::holds_alternative<parsed<http_request>>(r));
  const auto& p = std::get<parsed<http_request>>(r);
  CHECK(p.consumed == expected_consumed);
  return p.message;
}

http_request parsed_request(std::string_view head) { return parsed_request(head, head.size()); }

std::optional<parse_errc> failure_of(const parse_result<http_request>& r) {
  if (const auto* f = std::get_if<parse_failure>(&r)) return f->code;
  return std::nullopt;
}

bool is_need_more(const parse_result<http_request>& r) {
  return std::holds_alternative<need_more>(r);
}

// A complete, valid head: every strict prefix asks for more; the whole, and the whole
// followed by other bytes, give the same request with `consumed` = the head's size.
void check_valid_head(std::string_view head, const head_limits& limits = {}) {
  INFO("head: " << head);
  const auto whole = parse(head, limits);
  REQUIRE(std::holds_alternative<parsed<http_request>>(whole));
  CHECK(std::get<parsed<http_request>>(whole).consumed == head.size());
  for (std::size_t k = 0; k < head.size(); ++k) {
    INFO("prefix of " << k << " bytes");
    const auto r = parse(head.substr(0, k), limits);
    CHECK(is_need_more(r));
  }
  // Split at every offset: the caller has called with the first k bytes (need_more,
  // checked above) and now calls with all of them, plus pipelined bytes.
  const std::string with_tail =
      std::string(head) + "\x16\x03\x01\x02\x00GET http://x/ HTTP/1.1\r\n\r\n"s;
  for (std::size_t k = head.size(); k <= with_tail.size(); ++k) {
    INFO("with " << k - head.size() << " bytes after the head");
    CHECK(parse(std::string_view(with_tail).substr(0, k), limits) == whole);
  }
}

// An invalid head: the whole gives `code`; every prefix gives need_more or the same
// failure, and once a prefix fails every longer one fails alike (so the caller can
// stop reading at the first failure).
void check_failure(std::string_view bytes, parse_errc code, const head_limits& limits = {}) {
  INFO("input: " << bytes);
  const auto whole = parse(bytes, limits);
  INFO("result: " << whole);
  REQUIRE(failure_of(whole) == code);
  bool failed = false;
  for (std::size_t k = 0; k <= bytes.size(); ++k) {
    INFO("prefix of " << k << " bytes");
    const auto r = parse(bytes.substr(0, k), limits);
    if (failed) {
      CHECK(failure_of(r) == code);
    } else if (!is_need_more(r)) {
      CHECK(failure_of(r) == code);
      failed = true;
    }
  }
}

std::string repeat(char c, std::size_t n) { return std::string(n, c); }

}  // namespace

// ---------------------------------------------------------------- accepted heads

TEST_CASE("CONNECT with Host, as curl sends it", "[unit][http_head]") {
  const auto head =
      "CONNECT github.com:443 HTTP/1.1\r\n"
      "Host: github.com:443\r\n"
      "User-Agent: curl/7.88.1\r\n"
      "Proxy-Connection: Keep-Alive\r\n"
      "\r\n"sv;
  const auto req = parsed_request(head);
  CHECK(req.method == "CONNECT");
  CHECK(req.kind == request_kind::connect);
  CHECK(req.version == http_version::http_1_1);
  CHECK(req.host == "github.com");
  CHECK(req.port == 443);
  CHECK_FALSE(req.target_is_ipv6_literal);
  CHECK(req.origin_form.empty());
  REQUIRE(req.headers.size() == 3);
  CHECK(req.headers[0] == header{"Host", "github.com:443"});
  CHECK(req.headers[1] == header{"User-Agent", "curl/7.88.1"});
  CHECK(req.headers[2] == header{"Proxy-Connection", "Keep-Alive"});
  CHECK(req.body == body_framing::none);
  CHECK(req.keep_alive);
  CHECK_FALSE(req.upgrade);
  CHECK_FALSE(req.proxy_authorization);
}

TEST_CASE("CONNECT over HTTP/1.0 without Host, as Python requests and pip send it",
          "[unit][http_head]") {
  const auto req = parsed_request("CONNECT pypi.org:443 HTTP/1.0\r\n\r\n");
  CHECK(req.kind == request_kind::connect);
  CHECK(req.version == http_version::http_1_0);
  CHECK(req.host == "pypi.org");
  CHECK(req.port == 443);
  CHECK(req.headers.empty());
  CHECK_FALSE(req.keep_alive);
}

TEST_CASE("CONNECT to port 22 over HTTP/1.0, as socat PROXY: sends it", "[unit][http_head]") {
  const auto req = parsed_request("CONNECT github.com:22 HTTP/1.0\r\n\r\n");
  CHECK(req.host == "github.com");
  CHECK(req.port == 22);
}

TEST_CASE("CONNECT with a Host lacking the port, as Java sends it", "[unit][http_head]") {
  const auto req = parsed_request(
      "CONNECT repo.maven.apache.org:443 HTTP/1.1\r\n"
      "Host: repo.maven.apache.org\r\n"
      "User-Agent: Java/17.0.8\r\n"
      "Accept: */*\r\n"
      "Proxy-Connection: keep-alive\r\n"
      "\r\n");
  CHECK(req.host == "repo.maven.apache.org");
  CHECK(req.port == 443);
  CHECK(req.keep_alive);
}

TEST_CASE("CONNECT over HTTP/1.1 without Host is accepted: the target wins",
          "[unit][http_head]") {
  const auto req = parsed_request("CONNECT example.com:443 HTTP/1.1\r\n\r\n");
  CHECK(req.host == "example.com");
}

TEST_CASE("CONNECT to a bracketed IPv6 literal", "[unit][http_head]") {
  const auto req = parsed_request("CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n");
  CHECK(req.host == "::1");
  CHECK(req.port == 443);
  CHECK(req.target_is_ipv6_literal);
  const auto full = parsed_request("CONNECT [2001:DB8::a]:8443 HTTP/1.1\r\n\r\n");
  CHECK(full.host == "2001:DB8::a");  // raw: the policy canonicalises
  CHECK(full.port == 8443);
}

TEST_CASE("CONNECT to an IPv4 literal", "[unit][http_head]") {
  const auto req = parsed_request("CONNECT 192.0.2.7:8080 HTTP/1.1\r\n\r\n");
  CHECK(req.host == "192.0.2.7");
  CHECK(req.port == 8080);
  CHECK_FALSE(req.target_is_ipv6_literal);
}

TEST_CASE("CONNECT host text is returned raw", "[unit][http_head]") {
  CHECK(parsed_request("CONNECT ExAmple.COM.:443 HTTP/1.1\r\n\r\n").host == "ExAmple.COM.");
  // Non-ASCII passes through; the policy rejects it.
  CHECK(parsed_request("CONNECT b\xC3\xBC"
                       "cher.de:443 HTTP/1.1\r\n\r\n")
            .host == "b\xC3\xBC"
                     "cher.de");
  CHECK(parsed_request("CONNECT 127.1:443 HTTP/1.1\r\n\r\n").host == "127.1");
  CHECK(parsed_request("CONNECT under_score%41:443 HTTP/1.1\r\n\r\n").host == "under_score%41");
}

TEST_CASE("CONNECT port bounds", "[unit][http_head]") {
  CHECK(parsed_request("CONNECT h:1 HTTP/1.1\r\n\r\n").port == 1);
  CHECK(parsed_request("CONNECT h:65535 HTTP/1.1\r\n\r\n").port == 65535);
  CHECK(parsed_request("CONNECT h:00443 HTTP/1.1\r\n\r\n").port == 443);
}

TEST_CASE("CONNECT ignores body framing fields", "[unit][http_head]") {
  const auto req = parsed_request(
      "CONNECT example.com:443 HTTP/1.1\r\n"
      "Content-Length: 5\r\n"
      "Transfer-Encoding: gzip\r\n"
      "\r\n");
  CHECK(req.body == body_framing::none);
  CHECK_FALSE(req.upgrade);
}

TEST_CASE("bytes after a CONNECT head are not consumed", "[unit][http_head]") {
  const std::string head = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
  // A pipelined TLS ClientHello (record header and the start of a handshake).
  const std::string hello = "\x16\x03\x01\x00\xF1\x01\x00\x00\xED\x03\x03"s;
  const auto req = parsed_request(head + hello, head.size());
  CHECK(req.host == "example.com");
}

TEST_CASE("absolute-form with an empty path becomes /", "[unit][http_head]") {
  const auto req = parsed_request("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
  CHECK(req.kind == request_kind::absolute);
  CHECK(req.method == "GET");
  CHECK(req.host == "example.com");
  CHECK(req.port == 80);
  CHECK(req.origin_form == "/");
  CHECK(req.body == body_framing::none);
  CHECK(req.keep_alive);
}

TEST_CASE("absolute-form targets", "[unit][http_head]") {
  struct row {
    std::string_view target;
    std::string_view host;
    std::uint16_t port;
    bool ipv6;
    std::string_view origin_form;
  };
  const auto r = GENERATE(values<row>({
      {"http://example.com/", "example.com", 80, false, "/"},
      {"http://example.com/a/b?c=d&e", "example.com", 80, false, "/a/b?c=d&e"},
      {"http://example.com?q=1", "example.com", 80, false, "/?q=1"},
      {"http://example.com:8080/x", "example.com", 8080, false, "/x"},
      {"http://example.com:/x", "example.com", 80, false, "/x"},
      {"HTTP://Example.COM/X", "Example.COM", 80, false, "/X"},
      {"http://192.0.2.1:81", "192.0.2.1", 81, false, "/"},
      {"http://[2001:db8::1]:8080/p?q", "2001:db8::1", 8080, true, "/p?q"},
      {"http://[::1]/", "::1", 80, true, "/"},
      {"http://example.com/%7Euser/caf\xC3\xA9", "example.com", 80, false,
       "/%7Euser/caf\xC3\xA9"},
  }));
  const std::string head = "GET " + std::string(r.target) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  INFO(head);
  const auto req = parsed_request(head);
  CHECK(req.kind == request_kind::absolute);
  CHECK(req.host == r.host);
  CHECK(req.port == r.port);
  CHECK(req.target_is_ipv6_literal == r.ipv6);
  CHECK(req.origin_form == r.origin_form);
}

TEST_CASE("absolute-form over HTTP/1.1 without Host is accepted", "[unit][http_head]") {
  const auto req = parsed_request("GET http://example.com/x HTTP/1.1\r\n\r\n");
  CHECK(req.host == "example.com");
  CHECK(req.origin_form == "/x");
}

TEST_CASE("bare LF line endings are accepted", "[unit][http_head]") {
  const auto req = parsed_request("GET http://example.com/ HTTP/1.1\nHost: example.com\nA: b\n\n");
  CHECK(req.headers.size() == 2);
  CHECK(req.headers[1] == header{"A", "b"});
  parsed_request("GET http://example.com/ HTTP/1.1\r\nHost: example.com\n\r\n");
}

TEST_CASE("empty lines before the request line are skipped", "[unit][http_head]") {
  const auto head = "\r\n\nGET http://example.com/ HTTP/1.1\r\n\r\n"sv;
  CHECK(parsed_request(head).host == "example.com");
  check_valid_head(head);
}

TEST_CASE("field values are trimmed of OWS and may hold HT and obs-text", "[unit][http_head]") {
  const auto req = parsed_request(
      "GET http://e.com/ HTTP/1.1\r\n"
      "A:   spaced value \t \r\n"
      "B:\ttab\tinside\r\n"
      "C:\r\n"
      "D: caf\xC3\xA9\r\n"
      "!#$%&'*+-.^_`|~09az:x\r\n"
      "\r\n");
  REQUIRE(req.headers.size() == 5);
  CHECK(req.headers[0] == header{"A", "spaced value"});
  CHECK(req.headers[1] == header{"B", "tab\tinside"});
  CHECK(req.headers[2] == header{"C", ""});
  CHECK(req.headers[3] == header{"D", "caf\xC3\xA9"});
  CHECK(req.headers[4] == header{"!#$%&'*+-.^_`|~09az", "x"});
  CHECK(find_header(req, "d") == &req.headers[3]);
  CHECK(find_header(req, "missing") == nullptr);
}

TEST_CASE("methods are case-sensitive tokens", "[unit][http_head]") {
  CHECK(parsed_request("PURGE http://e.com/ HTTP/1.1\r\n\r\n").method == "PURGE");
  CHECK(parsed_request("M-SEARCH http://e.com/ HTTP/1.1\r\n\r\n").method == "M-SEARCH");
  // "connect" is not CONNECT (RFC 9110 §9.1), so its authority-form target is refused.
  check_failure("connect e.com:443 HTTP/1.1\r\n\r\n", parse_errc::bad_target);
}

TEST_CASE("keep-alive per RFC 9112 §9.3", "[unit][http_head]") {
  struct row {
    std::string_view version;
    std::string_view fields;
    bool keep_alive;
  };
  const auto r = GENERATE(values<row>({
      {"HTTP/1.1", "", true},
      {"HTTP/1.1", "Connection: close\r\n", false},
      {"HTTP/1.1", "Connection: Keep-Alive, CLOSE\r\n", false},
      {"HTTP/1.1", "Connection: keep-alive\r\n", true},
      {"HTTP/1.1", "Proxy-Connection: close\r\n", false},
      {"HTTP/1.1", "Connection: foo\r\nConnection: close\r\n", false},
      {"HTTP/1.0", "", false},
      {"HTTP/1.0", "Connection: keep-alive\r\n", true},
      {"HTTP/1.0", "Connection: Keep-Alive\r\n", true},
      {"HTTP/1.0", "Proxy-Connection: keep-alive\r\n", true},
      {"HTTP/1.0", "Connection: keep-alive, close\r\n", false},
      {"HTTP/1.0", "Connection: ,, keep-alive ,\r\n", true},
  }));
  const std::string head = "GET http://e.com/ " + std::string(r.version) + "\r\n" +
                           std::string(r.fields) + "\r\n";
  INFO(head);
  CHECK(parsed_request(head).keep_alive == r.keep_alive);
}

TEST_CASE("upgrade needs Connection: upgrade, an Upgrade field and HTTP/1.1",
          "[unit][http_head]") {
  struct row {
    std::string_view head;
    bool upgrade;
  };
  const auto r = GENERATE(values<row>({
      {"GET http://e.com/ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", true},
      {"GET http://e.com/ws HTTP/1.1\r\nConnection: keep-alive, upgrade\r\nUpgrade: "
       "websocket\r\n\r\n",
       true},
      {"GET http://e.com/ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", false},
      {"GET http://e.com/ws HTTP/1.1\r\nConnection: Upgrade\r\n\r\n", false},
      {"GET http://e.com/ws HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
      {"GET http://e.com/ws HTTP/1.1\r\nProxy-Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
       false},
      {"CONNECT e.com:443 HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
  }));
  INFO(r.head);
  CHECK(parsed_request(r.head).upgrade == r.upgrade);
}

TEST_CASE("Proxy-Authorization is captured and never printed", "[unit][http_head]") {
  const auto head =
      "CONNECT e.com:443 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n\r\n"sv;
  const auto req = parsed_request(head);
  REQUIRE(req.proxy_authorization);
  CHECK(*req.proxy_authorization == "Basic dXNlcjpzZWNyZXQ=");
  const auto text = to_text(parse(head));
  CHECK(text.find("dXNlcjpzZWNyZXQ=") == std::string::npos);
  CHECK(text.find("<redacted>") != std::string::npos);
  CHECK(text.find("e.com") != std::string::npos);
}

TEST_CASE("body framing of plain requests", "[unit][http_head]") {
  SECTION("Content-Length") {
    const auto req = parsed_request("POST http://e.com/ HTTP/1.1\r\nContent-Length: 42\r\n\r\n");
    CHECK(req.body == body_framing::content_length);
    CHECK(req.content_length == 42);
  }
  SECTION("Content-Length 0") {
    const auto req = parsed_request("POST http://e.com/ HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    CHECK(req.body == body_framing::content_length);
    CHECK(req.content_length == 0);
  }
  SECTION("the largest Content-Length") {
    CHECK(parsed_request(
              "POST http://e.com/ HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n")
              .content_length == 18446744073709551615ull);
  }
  SECTION("chunked") {
    CHECK(
        parsed_request("POST http://e.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").body ==
        body_framing::chunked);
    CHECK(parsed_request("POST http://e.com/ HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n")
              .body == body_framing::chunked);
    // Empty list elements are no codings (RFC 9110 §5.6.1).
    CHECK(parsed_request("POST http://e.com/ HTTP/1.1\r\nTransfer-Encoding: ,\r\n"
                         "Transfer-Encoding: chunked,\r\n\r\n")
              .body == body_framing::chunked);
  }
  SECTION("no framing field") {
    CHECK(parsed_request("GET http://e.com/ HTTP/1.1\r\n\r\n").body == body_framing::none);
  }
}

TEST_CASE("HTTP head results print readably", "[unit][http_head]") {
  CHECK(to_text(parse("GET")) == "need_more");
  CHECK(to_text(parse("GET / HTTP/1.1\r\n\r\n")) == "parse_failure{not_a_proxy_request}");
  const auto text = to_text(parse("CONNECT [::1]:443 HTTP/1.0\r\nA: b\r\n\r\n"));
  CHECK(text ==
        "parsed{http_request{CONNECT [::1]:443 HTTP/1.0, headers=[A: b], body=none, "
        "keep_alive=false, upgrade=false, proxy_authorization=none}, consumed=36}");
}

// ------------------------------------------------ prefixes, splits, slowloris

TEST_CASE("every prefix of a valid head needs more; every split gives the same result",
          "[unit][http_head]") {
  const auto head = GENERATE(values<std::string>({
      "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
      "CONNECT pypi.org:443 HTTP/1.0\r\n\r\n",
      "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
      "CONNECT repo.maven.apache.org:443 HTTP/1.1\r\nHost: repo.maven.apache.org\r\n"
      "User-Agent: Java/17\r\nProxy-Connection: keep-alive\r\n\r\n",
      "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
      "GET http://example.com/ HTTP/1.1\nHost: example.com\n\n",
      "POST http://e.com/upload HTTP/1.1\r\nHost: e.com\r\nContent-Length: 5\r\n\r\n",
      "POST http://e.com/upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET http://e.com/ws HTTP/1.1\r\nHost: e.com\r\nConnection: Upgrade\r\n"
      "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
      "\r\nGET http://e.com/ HTTP/1.0\r\nA:\tb\t\r\n\r\n",
  }));
  check_valid_head(head);
}

TEST_CASE("slowloris: one byte at a time", "[unit][http_head]") {
  const std::string head =
      "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: x\r\n\r\n";
  std::string received;
  std::size_t calls = 0;
  parse_result<http_request> r = need_more{};
  for (const char c : head + "\x16\x03\x01") {
    received += c;
    ++calls;
    r = parse(received);
    if (!is_need_more(r)) break;
  }
  REQUIRE(std::holds_alternative<parsed<http_request>>(r));
  CHECK(calls == head.size());
  CHECK(std::get<parsed<http_request>>(r).consumed == head.size());
}

TEST_CASE("slowloris: a head that never ends fails exactly when the limit is crossed",
          "[unit][http_head]") {
  head_limits limits;
  limits.max_head_bytes = 64;
  std::string received = "GET http://e.com/ HTTP/1.1\r\n";
  while (received.size() < limits.max_head_bytes) {
    received += "X";
    if (received.size() % 10 == 0) received += "Y: z\r\n";
  }
  received.resize(limits.max_head_bytes);
  CHECK(is_need_more(parse(received, limits)));
  received += "a";
  CHECK(failure_of(parse(received, limits)) == parse_errc::head_too_large);
}

// ---------------------------------------------------------------- size limits

TEST_CASE("head_too_large: at the limit passes, one byte over fails", "[unit][http_head]") {
  head_limits limits;
  limits.max_head_bytes = 100;
  const std::string start = "GET http://e.com/ HTTP/1.1\r\nX: ";
  const std::string end = "\r\n\r\n";
  const std::string at_limit = start + repeat('v', 100 - start.size() - end.size()) + end;
  REQUIRE(at_limit.size() == 100);
  check_valid_head(at_limit, limits);

  const std::string over = start + repeat('v', 101 - start.size() - end.size()) + end;
  REQUIRE(over.size() == 101);
  check_failure(over, parse_errc::head_too_large, limits);
  // The first 100 bytes of it are a valid prefix still.
  CHECK(is_need_more(parse(std::string_view(over).substr(0, 100), limits)));
  CHECK(failure_of(parse(over, limits)) == parse_errc::head_too_large);
}

TEST_CASE("head_too_large with the default limit of 16384", "[unit][http_head]") {
  std::string head = "GET http://e.com/ HTTP/1.1\r\n";
  for (int i = 0; head.size() < 20000; ++i) {
    head += "X-Filler-" + std::to_string(i) + ": " + repeat('f', 1000) + "\r\n";
  }
  head += "\r\n";
  CHECK(is_need_more(parse(std::string_view(head).substr(0, 16384))));
  CHECK(failure_of(parse(std::string_view(head).substr(0, 16385))) == parse_errc::head_too_large);
  CHECK(failure_of(parse(head)) == parse_errc::head_too_large);
}

TEST_CASE("too_many_headers", "[unit][http_head]") {
  head_limits limits;
  limits.max_headers = 3;
  check_valid_head("GET http://e.com/ HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits);
  check_failure("GET http://e.com/ HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
                parse_errc::too_many_headers, limits);
  // Reported as soon as the extra field line is complete.
  CHECK(failure_of(parse("GET http://e.com/ HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n",
                         limits)) == parse_errc::too_many_headers);

  std::string many = "GET http://e.com/ HTTP/1.1\r\n";
  for (int i = 0; i < 101; ++i) many += "H" + std::to_string(i) + ": v\r\n";
  CHECK(failure_of(parse(many + "\r\n")) == parse_errc::too_many_headers);
}

TEST_CASE("line_too_long", "[unit][http_head]") {
  head_limits limits;
  limits.max_line_bytes = 40;
  SECTION("a header line of exactly the limit passes, CRLF or LF") {
    const std::string field = "X: " + repeat('v', 37);
    REQUIRE(field.size() == 40);
    check_valid_head("GET http://e.com/ HTTP/1.1\r\n" + field + "\r\n\r\n", limits);
    check_valid_head("GET http://e.com/ HTTP/1.1\n" + field + "\n\n", limits);
  }
  SECTION("a header line one over") {
    check_failure("GET http://e.com/ HTTP/1.1\r\nX: " + repeat('v', 38) + "\r\n\r\n",
                  parse_errc::line_too_long, limits);
  }
  SECTION("the request line") {
    check_failure("GET http://e.com/" + repeat('p', 30) + " HTTP/1.1\r\n\r\n",
                  parse_errc::line_too_long, limits);
  }
  SECTION("an unfinished line fails without waiting for its end") {
    CHECK(is_need_more(parse("GET http://e.com/ HTTP/1.1\r\nX: " + repeat('v', 37), limits)));
    CHECK(
        is_need_more(parse("GET http://e.com/ HTTP/1.1\r\nX: " + repeat('v', 37) + "\r", limits)));
    CHECK(failure_of(parse("GET http://e.com/ HTTP/1.1\r\nX: " + repeat('v', 38), limits)) ==
          parse_errc::line_too_long);
  }
}

// ---------------------------------------------------------------- rejected heads

TEST_CASE("bad_character: NUL and control bytes anywhere in the head", "[unit][http_head]") {
  const auto input = GENERATE(values<std::string>({
      "GET http://e.com/ HTTP/1.1\r\nX: a\0b\r\n\r\n"s,
      "GET http://e.com/\0 HTTP/1.1\r\n\r\n"s,
      "CONNECT e.com\0:443 HTTP/1.1\r\n\r\n"s,
      "CONNECT e.com:443 HTTP/1.1\r\nX\0: a\r\n\r\n"s,
      "GET http://e.com/ HTTP/1.1\r\nX: a\x01\r\n\r\n",
      "GET http://e.com/ HTTP/1.1\r\nX: a\x7F\r\n\r\n",
      "GET http://e.com/ HTTP/1.1\r\nX: a\x1B[0m\r\n\r\n",
      "GET http://e.com/ HTTP/1.1\r\nX: a\rb\r\n\r\n",       // bare CR
      "GET http://e.com/ HTTP/1.1\r\nX: ab\r\r\n\r\n",       // CR CR LF
      "GET http://e.com/ HTTP/1.1\r\n\r\r\n",               // CR CR LF as the blank line
      "GET\thttp://e.com/ HTTP/1.1\r\n\r\n",                // HT in the request line
      "CONNECT e.com:443\tHTTP/1.1\r\n\r\n",
      "GET http://e.com/\x7F HTTP/1.1\r\n\r\n",
  }));
  check_failure(input, parse_errc::bad_character);
}

TEST_CASE("bad_request_line", "[unit][http_head]") {
  const auto input = GENERATE(values<std::string>({
      "GET\r\n\r\n",
      "GET http://e.com/\r\n\r\n",
      "CONNECT\r\n\r\n",
      " GET http://e.com/ HTTP/1.1\r\n\r\n",
      "GET  http://e.com/ HTTP/1.1\r\n\r\n",
      "GET http://e.com/  HTTP/1.1\r\n\r\n",
      "GET  HTTP/1.1\r\n\r\n",
  }));
  check_failure(input, parse_errc::bad_request_line);
}

TEST_CASE("bad_method", "[unit][http_head]") {
  const auto input = GENERATE(values<std::string>({
      "GE(T http://e.com/ HTTP/1.1\r\n\r\n",
      "G@T http://e.com/ HTTP/1.1\r\n\r\n",
      "GET/ http://e.com/ HTTP/1.1\r\n\r\n",
      "GE\xC3\x89T http://e.com/ HTTP/1.1\r\n\r\n",
  }));
  check_failure(input, parse_errc::bad_method);
}

TEST_CASE("bad_version", "[unit][http_head]") {
  const auto input = GENERATE(values<std::string>({
      "GET http://e.com/ HTTP/2.0\r\n\r\n",
      "GET http://e.com/ HTTP/1.2\r\n\r\n",
      "GET http://e.com/ HTTP/0.9\r\n\r\n",
      "GET http://e.com/ http/1.1\r\n\r\n",
      "GET http://e.com/ HTTP/1.1 \r\n\r\n",
      "GET http://e.com/ HTTP/11\r\n\r\n",
      "CONNECT e.com:443 HTTP/1\r\n\r\n",
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  // the HTTP/2 preface
  }));
  check_failure(input, parse_errc::bad_version);
}

TEST_CASE("bad_target: CONNECT needs host:port", "[unit][http_head]") {
  const auto target = GENERATE(values<std::string>({
      "example.com",             // no port
      "example.com:",            // empty port
      "example.com:0",           // port 0
      "example.com:65536",       // out of range
      "example.com:99999",
      "example.com:000443",      // more than 5 digits
      "example.com:+443",        // sign
      "example.com:-1",
      "example.com:44a",
      "example.com:443:443",
      "example.com:443/",
      ":443",                    // empty host
      "user@example.com:443",    // userinfo
      "user:pw@example.com:443",
      "example.com@evil.com:443",
      "/path",                   // origin-form
      "*",                       // asterisk-form
      "http://example.com:443",  // absolute-form
      "http://example.com/",
      "[::1]",                   // IPv6 without port
      "[::1:443",                // unclosed bracket
      "[::1]443",
      "[::1]:",
      "[]:443",
      "[::1]]:443",
      "[[::1]:443",
      "::1:443",                 // IPv6 without brackets
      "[example.com]:443",       // brackets around a name or an IPv4 address
      "[127.0.0.1]:443",
      "exa mple.com:443",        // whitespace
      "exa/mple.com:443",
      "exa[mple.com:443",
  }));
  check_failure("CONNECT " + target + " HTTP/1.1\r\n\r\n", parse_errc::bad_target);
}

TEST_CASE("bad_target: absolute-form and authority-form without CONNECT", "[unit][http_head]") {
  const auto target = GENERATE(values<std::string>({
      "example.com:80",                  // authority-form, not CONNECT
      "example.com",
      "http:/example.com/",
      "http:example.com",
      "http://",                         // empty host
      "http:///path",
      "http://:80/",
      "http://user@example.com/",        // userinfo
      "http://user:pw@example.com/",
      "http://example.com@evil.com/",
      "http://example.com/#frag",        // fragment
      "http://example.com#frag",
      "http://example.com/a b",          // whitespace inside the target
      "http://example.com:0/",
      "http://example.com:65536/",
      "http://example.com:8o/",
      "http://example.com:80:80/",
      "http://[::1/",
      "http://[::1]x/",
      "http://[]/",
      "http://::1/",
      "1http://e.com/",
  }));
  check_failure("GET " + target + " HTTP/1.1\r\n\r\n", parse_errc::bad_target);
}

TEST_CASE("unsupported_scheme", "[unit][http_head]") {
  const auto target = GENERATE(values<std::string>({
      "https://example.com/",
      "HTTPS://example.com/",
      "ftp://example.com/file",
      "ws://example.com/",
      "http+unix://x/",
  }));
  check_failure("GET " + target + " HTTP/1.1\r\n\r\n", parse_errc::unsupported_scheme);
}

TEST_CASE("not_a_proxy_request: origin-form and asterisk-form", "[unit][http_head]") {
  const auto input = GENERATE(values<std::string>({
      "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
      "GET /index.html?x HTTP/1.0\r\n\r\n",
      "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n",
      "GET //example.com/ HTTP/1.1\r\n\r\n",
  }));
  check_failure(input, parse_errc::not_a_proxy_request);
}

TEST_CASE("bad_header", "[unit][http_head]") {
  const auto input = GENERATE(values<std::string>({
      // obs-fold (RFC 9112 §5.2)
      "GET http://e.com/ HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n",
      "GET http://e.com/ HTTP/1.1\r\nX: a\r\n\tfolded\r\n\r\n",
      // whitespace between the request line and the first field (RFC 9112 §2.2)
      "GET http://e.com/ HTTP/1.1\r\n Host: e.com\r\n\r\n",
      // whitespace between field name and colon (RFC 9112 §5.1)
      "GET http://e.com/ HTTP/1.1\r\nHost : e.com\r\n\r\n",
      "GET http://e.com/ HTTP/1.1\r\nHost\t: e.com\r\n\r\n",
      "CONNECT e.com:443 HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
      // empty field name, no colon, non-token name
      "GET http://e.com/ HTTP/1.1\r\n: value\r\n\r\n",
      "GET http://e.com/ HTTP/1.1\r\nno colon here\r\n\r\n",
      "GET http://e.com/ HTTP/1.1\r\nX(y): 1\r\n\r\n",
      "GET http://e.com/ HTTP/1.1\r\nX\xC3\xA9: 1\r\n\r\n",
      // more than one Host (RFC 9112 §3.2)
      "GET http://e.com/ HTTP/1.1\r\nHost: e.com\r\nhost: evil.com\r\n\r\n",
      "CONNECT e.com:443 HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
      // two sets of proxy credentials
      "CONNECT e.com:443 HTTP/1.1\r\nProxy-Authorization: Basic a\r\n"
      "Proxy-Authorization: Basic b\r\n\r\n",
  }));
  check_failure(input, parse_errc::bad_header);
}

TEST_CASE("ambiguous_length: Transfer-Encoding with Content-Length", "[unit][http_head]") {
  check_failure("POST http://e.com/ HTTP/1.1\r\nContent-Length: 5\r\n"
                "Transfer-Encoding: chunked\r\n\r\n",
                parse_errc::ambiguous_length);
  check_failure("POST http://e.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                "Content-Length: 0\r\n\r\n",
                parse_errc::ambiguous_length);
  check_failure("POST http://e.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                "Content-Length: x\r\n\r\n",
                parse_errc::ambiguous_length);
}

TEST_CASE("bad_content_length", "[unit][http_head]") {
  const auto value = GENERATE(values<std::string>({
      "abc", "-1", "+5", "5 5", "0x10", "1.0", "", "5, 6", "5,", ",5", "5,,5", "5, 5", "42,42",
      "18446744073709551616", "99999999999999999999999",
  }));
  check_failure("POST http://e.com/ HTTP/1.1\r\nContent-Length: " + value + "\r\n\r\n",
                parse_errc::bad_content_length);
}

TEST_CASE("bad_content_length: repeated, even with the same value (strict, RFC 9110 §8.6)",
          "[unit][http_head]") {
  check_failure("POST http://e.com/ HTTP/1.1\r\ncontent-length: 7\r\nContent-Length: 7\r\n\r\n",
                parse_errc::bad_content_length);
}

TEST_CASE("bad_content_length: repeated with different values", "[unit][http_head]") {
  check_failure("POST http://e.com/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                parse_errc::bad_content_length);
  check_failure("POST http://e.com/ HTTP/1.0\r\nContent-Length: 5\r\nContent-Length: 5, 0\r\n\r\n",
                parse_errc::bad_content_length);
}

TEST_CASE("bad_transfer_encoding", "[unit][http_head]") {
  const auto value = GENERATE(values<std::string>({
      "gzip", "chunked, gzip", "chunked, chunked", "chunked;x=1", "identity", "", " , ",
      "xchunked", "identity, chunked", "gzip, chunked", "Identity,Chunked",
  }));
  check_failure("POST http://e.com/ HTTP/1.1\r\nTransfer-Encoding: " + value + "\r\n\r\n",
                parse_errc::bad_transfer_encoding);
}

TEST_CASE("bad_transfer_encoding: split over fields, and in HTTP/1.0", "[unit][http_head]") {
  check_failure("POST http://e.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                "Transfer-Encoding: gzip\r\n\r\n",
                parse_errc::bad_transfer_encoding);
  check_failure("POST http://e.com/ HTTP/1.1\r\nTransfer-Encoding: identity\r\n"
                "Transfer-Encoding: chunked\r\n\r\n",
                parse_errc::bad_transfer_encoding);
  check_failure("POST http://e.com/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                parse_errc::bad_transfer_encoding);
  // HTTP/1.0 with both: still the faulty-framing error first.
  check_failure("POST http://e.com/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
                "Content-Length: 1\r\n\r\n",
                parse_errc::bad_transfer_encoding);
}

TEST_CASE("errors in an early line are reported before the head ends", "[unit][http_head]") {
  CHECK(failure_of(parse("GET / HTTP/1.1\r\n")) == parse_errc::not_a_proxy_request);
  CHECK(failure_of(parse("GET http://e.com/ HTTP/3\r\n")) == parse_errc::bad_version);
  CHECK(failure_of(parse("CONNECT e.com:443 HTTP/1.1\r\nBad Name: x\r\n")) ==
        parse_errc::bad_header);
  // A TLS ClientHello sent to the HTTP side: refused at its first line break (or at
  // the limit), never accepted.
  CHECK_FALSE(std::holds_alternative<parsed<http_request>>(
      parse("\x16\x03\x01\x00\xF1\x01\x00\x00\xED\x03\x03\n\n"s)));
}

// ---------------------------------------------------------------- rewrite

namespace {

http_request absolute(std::string_view head) { return parsed_request(head); }

}  // namespace

TEST_CASE("rewrite keeps end-to-end fields and drops hop-by-hop ones",
          "[unit][http_head][rewrite]") {
  const auto req = absolute(
      "GET http://example.com/a/b?c=d HTTP/1.1\r\n"
      "Host: example.com\r\n"
      "User-Agent: curl/7.88.1\r\n"
      "Accept: */*\r\n"
      "Proxy-Connection: keep-alive\r\n"
      "Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n"
      "Proxy-Authenticate: Basic\r\n"
      "Proxy-Foo: bar\r\n"
      "Connection: keep-alive, X-Hop\r\n"
      "X-Hop: 1\r\n"
      "Keep-Alive: timeout=5\r\n"
      "TE: trailers\r\n"
      "Trailer: Expires\r\n"
      "Upgrade: h2c\r\n"
      "Cookie: a=b\r\n"
      "X-Proxy-Id: kept\r\n"
      "\r\n");
  CHECK(rewrite_to_origin_form(req) ==
        "GET /a/b?c=d HTTP/1.1\r\n"
        "Host: example.com\r\n"
        "User-Agent: curl/7.88.1\r\n"
        "Accept: */*\r\n"
        "Cookie: a=b\r\n"
        "X-Proxy-Id: kept\r\n"
        "\r\n");
}

TEST_CASE("rewrite: Host names the target authority", "[unit][http_head][rewrite]") {
  CHECK(rewrite_to_origin_form(
            absolute("GET http://Example.com HTTP/1.0\r\nHost: evil.com\r\n\r\n")) ==
        "GET / HTTP/1.1\r\nHost: Example.com\r\n\r\n");
  CHECK(rewrite_to_origin_form(absolute("GET http://e.com:8080/x HTTP/1.1\r\n\r\n")) ==
        "GET /x HTTP/1.1\r\nHost: e.com:8080\r\n\r\n");
  CHECK(rewrite_to_origin_form(absolute("GET http://e.com:80/x HTTP/1.1\r\n\r\n")) ==
        "GET /x HTTP/1.1\r\nHost: e.com\r\n\r\n");
  CHECK(rewrite_to_origin_form(absolute("GET http://[2001:db8::1]/ HTTP/1.1\r\n\r\n")) ==
        "GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n");
  CHECK(rewrite_to_origin_form(absolute("GET http://[::1]:8080?q HTTP/1.1\r\n\r\n")) ==
        "GET /?q HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
}

TEST_CASE("rewrite keeps body framing even when Connection names it",
          "[unit][http_head][rewrite]") {
  CHECK(rewrite_to_origin_form(absolute("POST http://e.com/u HTTP/1.1\r\n"
                                        "Connection: Content-Length\r\n"
                                        "Content-Length: 5\r\n\r\n")) ==
        "POST /u HTTP/1.1\r\nHost: e.com\r\nContent-Length: 5\r\n\r\n");
  CHECK(rewrite_to_origin_form(absolute("POST http://e.com/u HTTP/1.1\r\n"
                                        "Transfer-Encoding: chunked\r\n"
                                        "Connection: transfer-encoding, close\r\n"
                                        "Expect: 100-continue\r\n\r\n")) ==
        "POST /u HTTP/1.1\r\nHost: e.com\r\nTransfer-Encoding: chunked\r\n"
        "Expect: 100-continue\r\n\r\n");
}

TEST_CASE("rewrite sends the framing as one normalised field after Host",
          "[unit][http_head][rewrite]") {
  CHECK(rewrite_to_origin_form(absolute("POST http://e.com/u HTTP/1.1\r\nA: 1\r\n"
                                        "Content-Length: 007\r\n\r\n")) ==
        "POST /u HTTP/1.1\r\nHost: e.com\r\nContent-Length: 7\r\nA: 1\r\n\r\n");
  CHECK(rewrite_to_origin_form(absolute("POST http://e.com/u HTTP/1.1\r\nTransfer-Encoding: ,\r\n"
                                        "A: 1\r\nTransfer-Encoding: CHUNKED\r\n\r\n")) ==
        "POST /u HTTP/1.1\r\nHost: e.com\r\nTransfer-Encoding: chunked\r\nA: 1\r\n\r\n");
}

TEST_CASE("close_delimited_response_head", "[unit][http_head]") {
  CHECK(close_delimited_response_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                      "Content-Type: text/plain\r\n\r\n") ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n");
  // Connection, Keep-Alive and the fields Connection names go; obs-fold lines follow
  // their field.
  CHECK(close_delimited_response_head("HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\n"
                                      "Keep-Alive: timeout=5\r\nX-Hop: 1\r\n"
                                      "transfer-encoding: chunked\r\nX-Folded: a\r\n b\r\n"
                                      "X-Kept: 2\r\n\r\n") ==
        "HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nX-Kept: 2\r\nConnection: close\r\n\r\n");
}

TEST_CASE("rewrite passes a WebSocket upgrade through", "[unit][http_head][rewrite]") {
  const auto req = absolute(
      "GET http://e.com/chat HTTP/1.1\r\n"
      "Host: e.com\r\n"
      "Connection: keep-alive, Upgrade\r\n"
      "Upgrade: websocket\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n"
      "\r\n");
  REQUIRE(req.upgrade);
  CHECK(rewrite_to_origin_form(req) ==
        "GET /chat HTTP/1.1\r\n"
        "Host: e.com\r\n"
        "Upgrade: websocket\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Connection: Upgrade\r\n"
        "\r\n");
}

TEST_CASE("rewrite adds or extends Via", "[unit][http_head][rewrite]") {
  CHECK(rewrite_to_origin_form(absolute("GET http://e.com/ HTTP/1.1\r\nA: 1\r\n\r\n"), "egressd") ==
        "GET / HTTP/1.1\r\nHost: e.com\r\nA: 1\r\nVia: 1.1 egressd\r\n\r\n");
  CHECK(rewrite_to_origin_form(
            absolute("GET http://e.com/ HTTP/1.1\r\nVia: 1.0 fred\r\nA: 1\r\n\r\n"), "egressd") ==
        "GET / HTTP/1.1\r\nHost: e.com\r\nVia: 1.0 fred, 1.1 egressd\r\nA: 1\r\n\r\n");
  CHECK(
      rewrite_to_origin_form(
          absolute("GET http://e.com/ HTTP/1.1\r\nVia: 1.0 a\r\nVia: 1.1 b\r\n\r\n"), "egressd") ==
      "GET / HTTP/1.1\r\nHost: e.com\r\nVia: 1.0 a\r\nVia: 1.1 b, 1.1 egressd\r\n\r\n");
  // Via named in Connection is dropped; ours is added afresh.
  CHECK(rewrite_to_origin_form(
            absolute("GET http://e.com/ HTTP/1.1\r\nConnection: via\r\nVia: x\r\n\r\n"),
            "egressd") == "GET / HTTP/1.1\r\nHost: e.com\r\nVia: 1.1 egressd\r\n\r\n");
  // No token: Via untouched.
  CHECK(rewrite_to_origin_form(absolute("GET http://e.com/ HTTP/1.1\r\nVia: 1.0 fred\r\n\r\n")) ==
        "GET / HTTP/1.1\r\nHost: e.com\r\nVia: 1.0 fred\r\n\r\n");
}

TEST_CASE("rewrite of an HTTP/1.0 request", "[unit][http_head][rewrite]") {
  CHECK(rewrite_to_origin_form(absolute("POST http://e.com/f?x=1 HTTP/1.0\r\n"
                                        "Connection: keep-alive\r\n"
                                        "Content-Length: 3\r\n"
                                        "Content-Type: text/plain\r\n\r\n")) ==
        "POST /f?x=1 HTTP/1.1\r\nHost: e.com\r\nContent-Length: 3\r\nContent-Type: "
        "text/plain\r\n\r\n");
}

// ---------------------------------------------------------------- parse_errc

TEST_CASE("every parse_errc has a name, a message and an HTTP status", "[unit][errc]") {
  const auto e = GENERATE(range(1, static_cast<int>(parse_errc::bad_address_type) + 1));
  const auto code = static_cast<parse_errc>(e);
  const std::error_code ec = code;  // is_error_code_enum
  CHECK(ec.category() == parse_category());
  CHECK(std::string(ec.category().name()) == "egressd.protocol");
  CHECK(ec.message() == std::string(to_string(code)));
  CHECK(to_string(code) != "unknown");
  CHECK(ec);  // no value means success
  std::ostringstream os;
  os << code;
  CHECK(os.str() == to_string(code));
  const bool too_large = code == parse_errc::head_too_large ||
                         code == parse_errc::too_many_headers ||
                         code == parse_errc::line_too_long;
  CHECK(http_status_for(code) == (too_large ? 431 : 400));
}

TEST_CASE("parse_errc names", "[unit][errc]") {
  CHECK(to_string(parse_errc::head_too_large) == "head_too_large");
  CHECK(to_string(parse_errc::bad_address_type) == "bad_address_type");
  CHECK(to_string(static_cast<parse_errc>(0)) == "unknown");
  CHECK(make_error_code(parse_errc::bad_target).message() == "bad_target");
}
