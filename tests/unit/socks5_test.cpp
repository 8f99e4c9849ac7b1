// Unit tests of the SOCKS5 parsers and encoders (proxy/protocol/socks5.hpp).
// Exchanges are scripts (client bytes in, server bytes and outcome out), fed in every
// chunk size, with an error injected at each step (after boostorg/mysql's algo tests
// and boostorg/redis's reader_fsm tests).

#include "proxy/protocol/socks5.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

using namespace egressd::proxy::protocol;
using namespace std::literals;

namespace {

// Octets as a byte string (string literals with \x escapes swallow following hex
// digits, so scripts are written as numbers).
std::string octets(std::initializer_list<int> values) {
  std::string s;
  for (const int v : values) s += static_cast<char>(static_cast<unsigned char>(v));
  return s;
}

template <std::size_t N>
std::string octets(const std::array<std::uint8_t, N>& a) {
  return std::string(a.begin(), a.end());
}

template <class Result>
std::string to_text(const Result& r) {
  std::ostringstream os;
  os << r;
  return os.str();
}

template <class M>
std::optional<parse_errc> failure_of(const parse_result<M>& r) {
  if (const auto* f = std::get_if<parse_failure>(&r)) return f->code;
  return std::nullopt;
}

template <class M>
const parsed<M>& require_parsed(const parse_result<M>& r) {
  INFO("result: " << r);
  REQUIRE(std::holds_alternative<parsed<M>>(r));
  return std::get<parsed<M>>(r);
}

// A complete message: every strict prefix asks for more; the whole, and the whole
// followed by other bytes, give the same message with consumed = its size.
template <class M, class Parse>
M check_valid(Parse parse, const std::string& message) {
  for (std::size_t k = 0; k < message.size(); ++k) {
    INFO("prefix of " << k << " octets");
    const auto r = parse(std::string_view(message).substr(0, k));
    CHECK(std::holds_alternative<need_more>(r));
  }
  const auto whole = parse(message);
  const auto& p = require_parsed<M>(whole);
  CHECK(p.consumed == message.size());
  const std::string with_tail = message + octets({0x16, 0x03, 0x01, 0x05, 0x00});
  for (std::size_t k = message.size(); k <= with_tail.size(); ++k) {
    CHECK(parse(std::string_view(with_tail).substr(0, k)) == whole);
  }
  return p.message;
}

// An invalid message: fails with `code`, and every prefix gives need_more or the same
// failure (once failed, always failed).
template <class Parse>
void check_failure(Parse parse, const std::string& message, parse_errc code) {
  const auto whole = parse(message);
  INFO("result: " << whole);
  REQUIRE(failure_of(whole) == code);
  bool failed = false;
  for (std::size_t k = 0; k <= message.size(); ++k) {
    INFO("prefix of " << k << " octets");
    const auto r = parse(std::string_view(message).substr(0, k));
    if (failed) {
      CHECK(failure_of(r) == code);
    } else if (!std::holds_alternative<need_more>(r)) {
      CHECK(failure_of(r) == code);
      failed = true;
    }
  }
}

const auto greeting = [](std::string_view b) { return parse_socks5_greeting(b); };
const auto auth = [](std::string_view b) { return parse_socks5_auth(b); };
const auto request = [](std::string_view b) { return parse_socks5_request(b); };

}  // namespace

// ---------------------------------------------------------------- greeting

TEST_CASE("greeting: no authentication, as nc -X 5 and curl send it", "[unit][socks5]") {
  const auto g = check_valid<socks5_greeting>(greeting, octets({5, 1, 0}));
  CHECK(g.methods == std::vector<std::uint8_t>{0});
  CHECK(g.offers(socks5_method_no_auth));
  CHECK_FALSE(g.offers(socks5_method_username_password));
}

TEST_CASE("greeting: several methods, in order", "[unit][socks5]") {
  const auto g = check_valid<socks5_greeting>(greeting, octets({5, 3, 0, 1, 2}));
  CHECK(g.methods == std::vector<std::uint8_t>{0, 1, 2});
  CHECK(g.offers(socks5_method_username_password));
}

TEST_CASE("greeting: 255 methods", "[unit][socks5]") {
  std::string m = octets({5, 255});
  for (int i = 0; i < 255; ++i) m += static_cast<char>(i);
  const auto g = check_valid<socks5_greeting>(greeting, m);
  CHECK(g.methods.size() == 255);
  CHECK(g.methods.back() == 254);
}

TEST_CASE("greeting: bad_version", "[unit][socks5]") {
  check_failure(greeting, octets({4, 1, 0}), parse_errc::bad_version);
  check_failure(greeting, "CONNECT x:443 HTTP/1.1\r\n\r\n", parse_errc::bad_version);
  check_failure(greeting, octets({0}), parse_errc::bad_version);
}

TEST_CASE("greeting: bad_greeting when NMETHODS is zero", "[unit][socks5]") {
  check_failure(greeting, octets({5, 0}), parse_errc::bad_greeting);
  check_failure(greeting, octets({5, 0, 0}), parse_errc::bad_greeting);
}

// ---------------------------------------------------------------- username/password

TEST_CASE("auth: username and password", "[unit][socks5]") {
  const auto c = check_valid<socks5_credentials>(
      auth, octets({1, 4}) + "user" + octets({6}) + "secret");
  CHECK(c.username == "user");
  CHECK(c.password == "secret");
}

TEST_CASE("auth: an empty password is accepted", "[unit][socks5]") {
  const auto c = check_valid<socks5_credentials>(auth, octets({1, 1}) + "u" + octets({0}));
  CHECK(c.username == "u");
  CHECK(c.password.empty());
}

TEST_CASE("auth: 255-octet fields, any octets", "[unit][socks5]") {
  const std::string user(255, 'u');
  const std::string pass = std::string(254, 'p') + '\0';
  const auto c = check_valid<socks5_credentials>(
      auth, octets({1, 255}) + user + octets({255}) + pass);
  CHECK(c.username == user);
  CHECK(c.password == pass);
}

TEST_CASE("auth: bad_version", "[unit][socks5]") {
  check_failure(auth, octets({5, 4}) + "user" + octets({4}) + "pass", parse_errc::bad_version);
  check_failure(auth, octets({0, 1}) + "u" + octets({1}) + "p", parse_errc::bad_version);
}

TEST_CASE("auth: bad_auth_request when ULEN is zero", "[unit][socks5]") {
  check_failure(auth, octets({1, 0, 4}) + "pass", parse_errc::bad_auth_request);
}

TEST_CASE("auth: the password is never printed", "[unit][socks5]") {
  const auto text = to_text(parse_socks5_auth(octets({1, 4}) + "user" + octets({9}) + "hunter2!!"));
  CHECK(text.find("hunter2") == std::string::npos);
  CHECK(text.find("user") != std::string::npos);
  CHECK(text.find("<redacted>") != std::string::npos);
}

// ---------------------------------------------------------------- request

TEST_CASE("request: CONNECT to a domain name", "[unit][socks5]") {
  const auto r = check_valid<socks5_request>(
      request, octets({5, 1, 0, 3, 10}) + "github.com" + octets({0, 22}));
  CHECK(r.command == socks5_command::connect);
  CHECK(r.address_type == socks5_address_type::domain);
  CHECK(r.domain == "github.com");
  CHECK(r.address == std::array<std::uint8_t, 16>{});
  CHECK(r.port == 22);
}

TEST_CASE("request: CONNECT to an IPv4 address", "[unit][socks5]") {
  const auto r =
      check_valid<socks5_request>(request, octets({5, 1, 0, 1, 192, 0, 2, 255, 0x01, 0xBB}));
  CHECK(r.address_type == socks5_address_type::ipv4);
  CHECK(r.address == std::array<std::uint8_t, 16>{192, 0, 2, 255});
  CHECK(r.domain.empty());
  CHECK(r.port == 443);
  CHECK(to_text(r) == "socks5_request{connect ipv4 192.0.2.255:443}");
  CHECK(check_valid<socks5_request>(request, octets({5, 1, 0, 1, 0, 0, 0, 0, 0xFF, 0xFF})).address ==
        std::array<std::uint8_t, 16>{});
}

TEST_CASE("request: CONNECT to an IPv6 address", "[unit][socks5]") {
  const auto r = check_valid<socks5_request>(
      request, octets({5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                       0x1F, 0x90}));
  CHECK(r.address_type == socks5_address_type::ipv6);
  CHECK(r.address == std::array<std::uint8_t, 16>{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  CHECK(r.domain.empty());
  CHECK(r.port == 8080);
  CHECK(to_text(r) == "socks5_request{connect ipv6 [2001:db8:0:0:0:0:0:1]:8080}");
}

TEST_CASE("request: domain octets are passed through raw", "[unit][socks5]") {
  const std::string name = "a\0b\xC3\xA9."s;
  const auto r = check_valid<socks5_request>(
      request, octets({5, 1, 0, 3, static_cast<int>(name.size())}) + name + octets({0, 80}));
  CHECK(r.domain == name);
  CHECK(to_text(r) == "socks5_request{connect domain a\\x00b\\xc3\\xa9.:80}");
  const std::string long_name(255, 'x');
  CHECK(check_valid<socks5_request>(request, octets({5, 1, 0, 3, 255}) + long_name + octets({0, 1}))
            .domain == long_name);
}

TEST_CASE("request: BIND and UDP ASSOCIATE parse, for the caller to refuse", "[unit][socks5]") {
  CHECK(check_valid<socks5_request>(request, octets({5, 2, 0, 1, 10, 0, 0, 1, 0, 80})).command ==
        socks5_command::bind);
  CHECK(check_valid<socks5_request>(request, octets({5, 3, 0, 1, 0, 0, 0, 0, 0, 0})).command ==
        socks5_command::udp_associate);
}

TEST_CASE("request: bad_version", "[unit][socks5]") {
  check_failure(request, octets({4, 1, 0, 1, 1, 2, 3, 4, 0, 80}), parse_errc::bad_version);
  check_failure(request, octets({1, 1, 0, 1, 1, 2, 3, 4, 0, 80}), parse_errc::bad_version);
}

TEST_CASE("request: bad_command", "[unit][socks5]") {
  const int cmd = GENERATE(0, 4, 5, 0x80, 0xFF);
  check_failure(request, octets({5, cmd, 0, 1, 1, 2, 3, 4, 0, 80}), parse_errc::bad_command);
}

TEST_CASE("request: bad_request", "[unit][socks5]") {
  check_failure(request, octets({5, 1, 1, 1, 1, 2, 3, 4, 0, 80}), parse_errc::bad_request);
  check_failure(request, octets({5, 1, 0xFF, 3, 1, 'x', 0, 80}), parse_errc::bad_request);
  check_failure(request, octets({5, 1, 0, 3, 0, 0, 80}), parse_errc::bad_request);  // empty name
}

TEST_CASE("request: bad_address_type", "[unit][socks5]") {
  const int atyp = GENERATE(0, 2, 5, 0xFF);
  check_failure(request, octets({5, 1, 0, atyp, 1, 2, 3, 4, 0, 80}), parse_errc::bad_address_type);
}

// ---------------------------------------------------------------- encoders

TEST_CASE("method selection and auth replies", "[unit][socks5]") {
  CHECK(socks5_method_selection(socks5_method_no_auth) == std::array<std::uint8_t, 2>{5, 0});
  CHECK(socks5_method_selection(socks5_method_username_password) ==
        std::array<std::uint8_t, 2>{5, 2});
  CHECK(socks5_method_selection(socks5_method_none_acceptable) ==
        std::array<std::uint8_t, 2>{5, 0xFF});
  CHECK(socks5_auth_reply(true) == std::array<std::uint8_t, 2>{1, 0});
  CHECK(socks5_auth_reply(false) == std::array<std::uint8_t, 2>{1, 1});
}

TEST_CASE("replies carry the code and a bound address", "[unit][socks5]") {
  const auto code = GENERATE(range(0, 9));
  const auto rep = static_cast<socks5_reply_code>(code);
  CHECK(socks5_reply(rep) ==
        std::array<std::uint8_t, 10>{5, static_cast<std::uint8_t>(code), 0, 1, 0, 0, 0, 0, 0, 0});
  CHECK(socks5_reply(rep, std::array<std::uint8_t, 4>{192, 0, 2, 1}, 0x1234) ==
        std::array<std::uint8_t, 10>{5, static_cast<std::uint8_t>(code), 0, 1, 192, 0, 2, 1, 0x12,
                                     0x34});
  std::array<std::uint8_t, 16> v6{};
  v6[0] = 0x20;
  v6[1] = 0x01;
  v6[15] = 0x07;
  const auto r6 = socks5_reply(rep, v6, 443);
  CHECK(r6[0] == 5);
  CHECK(r6[1] == code);
  CHECK(r6[2] == 0);
  CHECK(r6[3] == 4);
  CHECK(std::equal(v6.begin(), v6.end(), r6.begin() + 4));
  CHECK(r6[20] == 0x01);
  CHECK(r6[21] == 0xBB);
  CHECK(to_text(rep) != "");
}

TEST_CASE("reply codes for parse failures", "[unit][socks5]") {
  CHECK(socks5_reply_for(parse_errc::bad_command) == socks5_reply_code::command_not_supported);
  CHECK(socks5_reply_for(parse_errc::bad_address_type) ==
        socks5_reply_code::address_type_not_supported);
  CHECK(socks5_reply_for(parse_errc::bad_request) == socks5_reply_code::general_failure);
  CHECK(socks5_reply_for(parse_errc::bad_version) == socks5_reply_code::general_failure);
}

// ---------------------------------------------------------------- scripted exchanges

namespace {

// What a SOCKS5 server does with these parsers, without a socket: the client's bytes
// arrive `chunk` octets at a time; the server answers each message.
struct exchange {
  std::string sent;                       // octets the server wrote
  std::optional<parse_errc> error;        // the parse failure that ended it
  std::optional<socks5_request> request;  // the request that was answered
  bool tunnel = false;                    // the exchange reached the tunnel
  std::string tunnel_bytes;               // client octets after the request
};

struct server_settings {
  bool require_auth = false;
  std::string_view username = "user";
  std::string_view password = "secret";
};

exchange run_exchange(std::string_view client, std::size_t chunk, const server_settings& s) {
  exchange ex;
  std::string buffer;
  std::size_t fed = 0;
  // Calls `parse` over the buffer, feeding more octets while it asks for more.
  const auto next = [&](auto parse) {
    while (true) {
      auto r = parse(std::string_view(buffer));
      if (!std::holds_alternative<need_more>(r) || fed == client.size()) return r;
      const auto n = std::min(chunk, client.size() - fed);
      buffer.append(client.substr(fed, n));
      fed += n;
    }
  };
  const auto consume = [&](std::size_t n) { buffer.erase(0, n); };

  const auto g = next(greeting);
  if (const auto* f = std::get_if<parse_failure>(&g)) {
    ex.error = f->code;  // not SOCKS5: close without a word
    return ex;
  }
  if (!std::holds_alternative<parsed<socks5_greeting>>(g)) return ex;
  const auto& greeted = std::get<parsed<socks5_greeting>>(g);
  consume(greeted.consumed);
  const std::uint8_t wanted =
      s.require_auth ? socks5_method_username_password : socks5_method_no_auth;
  const std::uint8_t method =
      greeted.message.offers(wanted) ? wanted : socks5_method_none_acceptable;
  ex.sent += octets(socks5_method_selection(method));
  if (method == socks5_method_none_acceptable) return ex;

  if (method == socks5_method_username_password) {
    const auto a = next(auth);
    if (const auto* f = std::get_if<parse_failure>(&a)) {
      ex.error = f->code;
      ex.sent += octets(socks5_auth_reply(false));
      return ex;
    }
    if (!std::holds_alternative<parsed<socks5_credentials>>(a)) return ex;
    const auto& creds = std::get<parsed<socks5_credentials>>(a);
    consume(creds.consumed);
    const bool ok = creds.message.username == s.username && creds.message.password == s.password;
    ex.sent += octets(socks5_auth_reply(ok));
    if (!ok) return ex;
  }

  const auto r = next(request);
  if (const auto* f = std::get_if<parse_failure>(&r)) {
    ex.error = f->code;
    ex.sent += octets(socks5_reply(socks5_reply_for(f->code)));
    return ex;
  }
  if (!std::holds_alternative<parsed<socks5_request>>(r)) return ex;
  const auto& req = std::get<parsed<socks5_request>>(r);
  consume(req.consumed);
  ex.request = req.message;
  if (req.message.command != socks5_command::connect) {
    ex.sent += octets(socks5_reply(socks5_reply_code::command_not_supported));
    return ex;
  }
  ex.sent += octets(socks5_reply(socks5_reply_code::succeeded));
  ex.tunnel = true;
  ex.tunnel_bytes = buffer + std::string(client.substr(fed));
  return ex;
}

// Runs the script in every chunk size and checks they all agree.
exchange run_all_chunkings(std::string_view client, const server_settings& s) {
  const auto reference = run_exchange(client, client.size() + 1, s);
  for (std::size_t chunk = 1; chunk <= client.size(); ++chunk) {
    INFO("chunk size " << chunk);
    const auto ex = run_exchange(client, chunk, s);
    CHECK(ex.sent == reference.sent);
    CHECK(ex.error == reference.error);
    CHECK(ex.request == reference.request);
    CHECK(ex.tunnel == reference.tunnel);
    CHECK(ex.tunnel_bytes == reference.tunnel_bytes);
  }
  return reference;
}

const std::string ok_no_auth = octets({0x05, 0x00});
const std::string ok_user_pass = octets({0x05, 0x02});
const std::string auth_ok = octets({0x01, 0x00});
const std::string auth_failed = octets({0x01, 0x01});
const std::string none_acceptable = octets({0x05, 0xFF});
std::string reply(int code) { return octets({5, code, 0, 1, 0, 0, 0, 0, 0, 0}); }

const std::string greet_no_auth = octets({5, 1, 0});
const std::string greet_user_pass = octets({5, 2, 0, 2});
const std::string creds_ok = octets({1, 4}) + "user" + octets({6}) + "secret";
const std::string connect_github_22 = octets({5, 1, 0, 3, 10}) + "github.com" + octets({0, 22});
const std::string client_hello =
    octets({0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x03});

}  // namespace

TEST_CASE("script: nc -X 5 to github.com:22, no auth", "[unit][socks5][script]") {
  const auto ex = run_all_chunkings(greet_no_auth + connect_github_22 + "SSH-2.0-OpenSSH_9.2\r\n",
                                    server_settings{});
  CHECK(ex.sent == ok_no_auth + reply(0));
  CHECK_FALSE(ex.error);
  REQUIRE(ex.request);
  CHECK(ex.request->domain == "github.com");
  CHECK(ex.request->port == 22);
  CHECK(ex.tunnel);
  CHECK(ex.tunnel_bytes == "SSH-2.0-OpenSSH_9.2\r\n");
}

TEST_CASE("script: username/password, IPv6 target, pipelined ClientHello",
          "[unit][socks5][script]") {
  const auto connect_v6 =
      octets({5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xBB});
  const auto ex = run_all_chunkings(greet_user_pass + creds_ok + connect_v6 + client_hello,
                                    server_settings{true});
  CHECK(ex.sent == ok_user_pass + auth_ok + reply(0));
  CHECK_FALSE(ex.error);
  REQUIRE(ex.request);
  CHECK(ex.request->address == std::array<std::uint8_t, 16>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  CHECK(ex.request->port == 443);
  CHECK(ex.tunnel_bytes == client_hello);
}

TEST_CASE("script: an error injected at each step", "[unit][socks5][script]") {
  struct step {
    std::string_view name;
    bool require_auth;
    std::string client;
    std::string sent;
    std::optional<parse_errc> error;
  };
  const auto s = GENERATE(values<step>({
      // greeting
      {"greeting: SOCKS4", false, octets({4, 1, 0, 80, 1, 2, 3, 4, 0}), "",
       parse_errc::bad_version},
      {"greeting: HTTP on the SOCKS port", false, "CONNECT github.com:443 HTTP/1.1\r\n\r\n", "",
       parse_errc::bad_version},
      {"greeting: no methods", false, octets({5, 0}) + connect_github_22, "",
       parse_errc::bad_greeting},
      {"greeting: only GSSAPI offered", false, octets({5, 1, 1}) + connect_github_22,
       none_acceptable, std::nullopt},
      {"greeting: no auth offered, auth required", true, greet_no_auth + connect_github_22,
       none_acceptable, std::nullopt},
      {"greeting: truncated", false, octets({5, 3, 0}), "", std::nullopt},
      // username/password
      {"auth: version 5 instead of 1", true,
       greet_user_pass + octets({5, 4}) + "user" + octets({6}) + "secret",
       ok_user_pass + auth_failed, parse_errc::bad_version},
      {"auth: empty username", true, greet_user_pass + octets({1, 0, 6}) + "secret",
       ok_user_pass + auth_failed, parse_errc::bad_auth_request},
      {"auth: wrong password", true,
       greet_user_pass + octets({1, 4}) + "user" + octets({5}) + "wrong" + connect_github_22,
       ok_user_pass + auth_failed, std::nullopt},
      {"auth: truncated", true, greet_user_pass + octets({1, 4}) + "user" + octets({6}) + "sec",
       ok_user_pass, std::nullopt},
      // request
      {"request: version 4", false, greet_no_auth + octets({4, 1, 0, 1, 1, 2, 3, 4, 0, 80}),
       ok_no_auth + reply(1), parse_errc::bad_version},
      {"request: unknown command", false, greet_no_auth + octets({5, 9, 0, 1, 1, 2, 3, 4, 0, 80}),
       ok_no_auth + reply(7), parse_errc::bad_command},
      {"request: BIND", false, greet_no_auth + octets({5, 2, 0, 1, 1, 2, 3, 4, 0, 80}),
       ok_no_auth + reply(7), std::nullopt},
      {"request: UDP ASSOCIATE", true,
       greet_user_pass + creds_ok + octets({5, 3, 0, 1, 0, 0, 0, 0, 0, 0}),
       ok_user_pass + auth_ok + reply(7), std::nullopt},
      {"request: RSV not zero", false, greet_no_auth + octets({5, 1, 7, 1, 1, 2, 3, 4, 0, 80}),
       ok_no_auth + reply(1), parse_errc::bad_request},
      {"request: empty domain", false, greet_no_auth + octets({5, 1, 0, 3, 0, 0, 80}),
       ok_no_auth + reply(1), parse_errc::bad_request},
      {"request: address type 2", false, greet_no_auth + octets({5, 1, 0, 2, 1, 2, 3, 4, 0, 80}),
       ok_no_auth + reply(8), parse_errc::bad_address_type},
      {"request: truncated domain", false, greet_no_auth + octets({5, 1, 0, 3, 10}) + "github",
       ok_no_auth, std::nullopt},
  }));
  INFO(s.name);
  const auto ex = run_all_chunkings(s.client, server_settings{s.require_auth});
  CHECK(ex.sent == s.sent);
  CHECK(ex.error == s.error);
  CHECK_FALSE(ex.tunnel);
  CHECK(ex.tunnel_bytes.empty());
}

TEST_CASE("SOCKS5 results print readably", "[unit][socks5]") {
  CHECK(to_text(parse_socks5_greeting(octets({5}))) == "need_more");
  CHECK(to_text(parse_socks5_greeting(octets({5, 2, 0, 2}))) ==
        "parsed{socks5_greeting{methods=[0,2]}, consumed=4}");
  CHECK(to_text(parse_socks5_request(octets({5, 1, 0, 9}))) == "parse_failure{bad_address_type}");
  CHECK(to_text(parse_socks5_request(octets({5, 1, 0, 1, 10, 0, 0, 1, 0, 80}))) ==
        "parsed{socks5_request{connect ipv4 10.0.0.1:80}, consumed=10}");
  CHECK(to_text(socks5_reply_code::address_type_not_supported) == "address_type_not_supported");
}
