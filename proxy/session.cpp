// Flow of a session (README.md, "Life of a session"):
//  1. Sniff: read the first bytes under the head deadline. 0x05 is SOCKS5 (RFC 1928),
//     anything else is HTTP, as far as the listener serves each protocol. A client that
//     closes before its first byte is normal and leaves no record.
//  2. HTTP: parse the head (proxy/protocol, pure); 431/400 on failure; 407 when proxy
//     auth is configured and the credentials are wrong. CONNECT opens a tunnel;
//     absolute-form goes to serve_plain_http (http_forward.cpp).
//     SOCKS5: greeting, optional RFC 1929 auth, request; BIND/UDP answer 07.
//  3. open_upstream: canonical host -> policy::decide -> [hook] -> resolve (c-ares, cached)
//     -> policy::classify every address -> dial the survivors in order under the connect
//     deadline.
//  4. Reply (200 Connection Established / SOCKS 00), send the bytes the client pipelined
//     behind its request upstream first, free the head buffer, relay (relay.cpp).
//  5. Exactly one access record per decision and one per closed tunnel.

#include "proxy/session.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>

#include <array>

#include "proxy/auth.hpp"
#include "proxy/log.hpp"
#include "proxy/net.hpp"
#include "proxy/runtime.hpp"
#include "proxy/session_impl.hpp"

namespace egressd::proxy::detail {

namespace proto = egressd::proxy::protocol;
using policy::decision_reason;
using policy::outcome;

namespace {

// What each dial_error means on every exit of a session: its name in access records,
// the HTTP status and Proxy-Status error of the refusal, the SOCKS5 reply code, and
// whether the refusal is the policy's (rather than the network's). In enum order.
struct dial_error_facts {
  std::string_view name;
  int http_status;
  std::string_view proxy_error;
  proto::socks5_reply_code socks;
  bool from_policy;
};
using socks_code = proto::socks5_reply_code;
constexpr std::array<dial_error_facts, 10> dial_error_table{{
    {"none", 500, "proxy_internal_error", socks_code::succeeded, false},
    {"invalid_host", 400, "http_request_error", socks_code::not_allowed, true},
    {"denied", 403, "http_request_denied", socks_code::not_allowed, true},
    {"resolve_failed", 502, "dns_error", socks_code::host_unreachable, false},
    {"guard_refused", 403, "destination_ip_prohibited", socks_code::not_allowed, true},
    {"connection_refused", 502, "connection_refused", socks_code::connection_refused, false},
    {"host_unreachable", 502, "destination_unavailable", socks_code::host_unreachable, false},
    {"network_unreachable", 502, "destination_unavailable", socks_code::network_unreachable, false},
    {"connect_timeout", 504, "connection_timeout", socks_code::ttl_expired, false},
    {"aborted", 503, "proxy_internal_error", socks_code::general_failure, false},
}};
static_assert(static_cast<std::size_t>(dial_error::aborted) + 1 == dial_error_table.size());

const dial_error_facts& facts(dial_error e) noexcept { return dial_error_table[static_cast<std::size_t>(e)]; }

}  // namespace

std::string_view to_string(dial_error e) noexcept { return facts(e).name; }

session::session(worker& wk, const listener_info& l, client_socket c, std::string p)
    : w(wk),
      listener(l),
      client(std::move(c)),
      upstream(client.get_executor()),
      id(wk.shared().next_connection_id.fetch_add(1, std::memory_order_relaxed)),
      peer(std::move(p)),
      gen(wk.shared().current.load()),
      cfg(gen->config),
      policy(gen->policy) {
  w.attach(this);
}

void session::load_generation() noexcept {
  auto g = w.shared().current.load();
  if (g == gen) return;  // the common case: no reload since the last request
  gen = std::move(g);
  cfg = gen->config;
  policy = gen->policy;
}

session::~session() { w.detach(this); }

void session::abort() noexcept {
  aborted = true;
  boost::system::error_code ignored;
  client.cancel(ignored);
  upstream.cancel(ignored);
}

void session::check_deadline(steady::time_point now) noexcept {
  boost::system::error_code ignored;
  if (now >= client_deadline) {
    client_deadline = steady::time_point::max();
    client_timed_out = true;
    client.cancel(ignored);
  }
  if (now >= client_write_deadline) {
    client_write_deadline = steady::time_point::max();
    client.cancel(ignored);
  }
  if (now >= upstream_deadline) {
    upstream_deadline = steady::time_point::max();
    upstream_timed_out = true;
    upstream.cancel(ignored);
  }
  if (now >= upstream_write_deadline) {
    upstream_write_deadline = steady::time_point::max();
    upstream.cancel(ignored);
  }
}

// ---- I/O helpers --------------------------------------------------------------------

asio::awaitable<read_status> read_more(session& s, steady::time_point deadline, std::size_t limit) {
  if (s.in.size() >= limit) co_return read_status::full;
  const std::size_t old = s.in.size();
  // Heads are small: a 4 KiB step keeps resize()'s zero-filling cheap.
  const std::size_t want = std::min<std::size_t>(limit - old, 4096);
  s.in.resize(old + want);
  s.arm_client(deadline);
  auto [ec, n] = co_await s.client.async_read_some(asio::buffer(s.in.data() + old, want), nothrow);
  s.disarm_client();
  s.in.resize(old + n);
  if (ec == asio::error::operation_aborted && s.client_timed_out && !s.aborted) co_return read_status::timeout;
  if (ec == asio::error::eof) co_return read_status::eof;
  if (ec || s.aborted) co_return read_status::error;
  co_return read_status::ok;
}

asio::awaitable<bool> write_client(session& s, std::string_view data) {
  s.arm_client_write(steady::now() + s.cfg->limits.idle_timeout);
  auto [ec, n] = co_await asio::async_write(s.client, asio::buffer(data), nothrow);
  s.disarm_client_write();
  co_return !ec;
}

asio::awaitable<bool> write_upstream(session& s, std::string_view data) {
  s.arm_upstream_write(steady::now() + s.cfg->limits.idle_timeout);
  auto [ec, n] = co_await asio::async_write(s.upstream, asio::buffer(data), nothrow);
  s.disarm_upstream_write();
  co_return !ec;
}

// ---- decide -> resolve -> guard -> dial -----------------------------------------------

namespace {

dial_error classify_connect_error(const boost::system::error_code& ec) {
  if (ec == asio::error::connection_refused) return dial_error::refused;
  if (ec == asio::error::network_unreachable) return dial_error::net_unreachable;
  if (ec == asio::error::host_unreachable) return dial_error::unreachable;
  if (ec == asio::error::timed_out) return dial_error::timeout;
  return dial_error::unreachable;
}

// The confirmation hook's place in the path (DESIGN.md §2.5). Until a hook client is
// configured, an `ask` is a denial with its own reason.
policy::decision confirm(const session&, const destination& d) {
  (void)d;
  return {outcome::deny, decision_reason::no_hook, policy::no_rule};
}

}  // namespace

destination decide_destination(const session& s, std::string_view raw_host, std::uint16_t port) {
  destination d;
  d.raw_host = std::string(raw_host);
  d.port = port;
  d.host = policy::canonicalize_host(raw_host);
  d.decision = policy::decide(*s.policy, {&d.host, port, std::nullopt});
  if (d.decision.result == outcome::ask) d.decision = confirm(s, d);
  if (d.decision.result != outcome::allow)
    d.error = d.decision.reason == decision_reason::invalid_host ? dial_error::invalid_host : dial_error::denied;
  return d;
}

asio::awaitable<destination> open_upstream(session& s, std::string_view raw_host, std::uint16_t port) {
  destination d = decide_destination(s, raw_host, port);
  if (d.decision.result == outcome::allow) co_await dial(s, d);
  co_return d;
}

asio::awaitable<void> dial(session& s, destination& d) {
  const policy::canonical_host& host = *d.host.host;
  const std::uint16_t port = d.port;

  // Resolve once; the guard judges every address; only survivors are dialled. An IP
  // literal is judged by the IP rules alone, unless it only got through because
  // unknown destinations are let through (report-only mode).
  std::vector<asio::ip::address> addresses;
  bool judge = true;
  if (host.is_ip()) {
    addresses.push_back(to_asio(*host.address));
    judge = d.decision.reason == decision_reason::report_only;
  } else {
    auto [ec, answer] = co_await s.w.dns().resolve(host.text);
    if (s.aborted) {
      d.error = dial_error::aborted;
      co_return;
    }
    if (ec || answer.addresses.empty()) {
      d.error = dial_error::resolve_failed;
      d.decision = {outcome::deny, decision_reason::resolve_failed, d.decision.rule};
      co_return;
    }
    addresses = std::move(answer.addresses);
  }
  std::vector<asio::ip::address> candidates;
  const auto& locals = *s.gen->local_addresses;
  for (const auto& a : addresses) {
    const auto v = judge ? policy::classify(*s.policy, host, to_policy(a), port, locals) : policy::address_verdict{};
    if (v.allowed()) {
      candidates.push_back(a);
    } else if (d.refused_class == policy::address_class::none) {
      d.refused_class = v.refused;
      d.refused_address = a.to_string();
    }
  }
  if (candidates.empty()) {
    d.error = dial_error::guard_refused;
    d.decision = {outcome::deny, decision_reason::address_denied, d.decision.rule};
    co_return;
  }

  // Dial the survivors in order under one connect deadline.
  const auto started = steady::now();
  const auto deadline = started + s.cfg->limits.connect_timeout;
  d.error = dial_error::unreachable;
  for (const auto& a : candidates) {
    tcp::endpoint ep(a, port);
    boost::system::error_code ignored;
    s.upstream.close(ignored);
    s.arm_upstream(deadline);
    auto [ec] = co_await s.upstream.async_connect(ep, nothrow);
    s.disarm_upstream();
    if (s.aborted) {
      d.error = dial_error::aborted;
      break;
    }
    if (ec == asio::error::operation_aborted && s.upstream_timed_out) {
      d.error = dial_error::timeout;
      break;
    }
    if (!ec) {
      d.error = dial_error::none;
      d.remote = ep;
      break;
    }
    d.error = classify_connect_error(ec);
  }
  d.connect_time = std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - started);
  if (!d.connected()) {
    boost::system::error_code ignored;
    s.upstream.close(ignored);
  } else {
    boost::system::error_code ignored;
    s.upstream.set_option(tcp::no_delay(true), ignored);
  }
}

// ---- replies and records ------------------------------------------------------------

refusal refusal_for(const session& s, const destination& d) {
  refusal r;
  const auto& f = facts(d.error);
  r.status = f.http_status;
  r.proxy_error = f.proxy_error;
  r.blocked_by_policy = f.from_policy && d.error != dial_error::invalid_host;
  r.reason = policy::to_string(d.decision.reason);
  if (d.decision.rule != policy::no_rule) r.rule = s.policy->rule(d.decision.rule).text;
  const auto target = [&] { return d.display_host() + ":" + std::to_string(d.port); };
  switch (d.error) {
    case dial_error::invalid_host: r.details = "refused " + d.raw_host + ": not a valid host"; break;
    case dial_error::denied:
      if (d.decision.reason == decision_reason::denied_by_rule)
        r.details = target() + " is blocked by the deny rule '" + r.rule + "'";
      else if (d.decision.reason == decision_reason::no_hook)
        r.details = target() + " is not in the allowlist and no confirmation hook is configured";
      else
        r.details = target() + " is not in the allowlist";
      break;
    case dial_error::guard_refused:
      r.details = target() + " resolved to " + std::string(policy::describe(d.refused_class)) + " (" +
                  d.refused_address + "), which is not allowed";
      r.reason = policy::to_string(d.refused_class);
      break;
    case dial_error::resolve_failed: r.details = "could not resolve " + d.display_host(); break;
    case dial_error::refused: r.details = target() + " refused the connection"; break;
    case dial_error::timeout: r.details = "connecting to " + target() + " timed out"; break;
    case dial_error::unreachable:
    case dial_error::net_unreachable: r.details = target() + " is unreachable"; break;
    case dial_error::aborted: r.details = "shutting down"; break;
    case dial_error::none: r.details = "internal error"; break;
  }
  r.details.insert(0, "egressd: ");
  return r;
}

proto::socks5_reply_code socks_code_for(const destination& d) noexcept { return facts(d.error).socks; }

namespace {

json_object base_record(const session& s, const destination& d, std::string_view event, std::string_view protocol) {
  json_object o;
  o.add("event", event)
      .add("connection", s.id)
      .add("client", s.peer)
      .add("listener", s.listener.name)
      .add("protocol", protocol)
      .add("host", d.display_host())
      .add("port", static_cast<unsigned>(d.port))
      .add("decision", d.connected() ? "allow" : "deny")
      .add("reason", policy::to_string(d.decision.reason));
  if (d.refused_class != policy::address_class::none) {
    // The class of the first refused address (and the address), also when another
    // address of the same name was dialled.
    o.add("address_class", policy::to_string(d.refused_class)).add("refused_address", d.refused_address);
  }
  if (d.decision.rule != policy::no_rule) {
    const auto& rule = s.policy->rule(d.decision.rule);
    o.add("rule", rule.text);
    if (!rule.preset.empty()) o.add("preset", rule.preset);
  } else {
    o.add_null("rule");
  }
  if (d.decision.reason == decision_reason::report_only) o.add("report_only", true);
  if (d.connected()) o.add("upstream", endpoint_text(d.remote.address(), d.remote.port()));
  return o;
}

}  // namespace

void record_request(const session& s, const destination& d, std::string_view protocol, int status,
                    std::string_view upstream_error) {
  if (!audit_enabled()) return;
  json_object o = base_record(s, d, "request", protocol);
  o.add("status", status);
  if (!d.connected()) {
    o.add("error", to_string(d.error)).add("error_source", facts(d.error).from_policy ? "policy" : "upstream");
  } else if (!upstream_error.empty()) {
    o.add("error", upstream_error).add("error_source", "upstream");
  }
  if (d.connect_time) o.add("connect_us", static_cast<std::int64_t>(d.connect_time->count()));
  log_audit(o);
}

namespace {

void finish_tunnel_record(json_object& o, steady::time_point started, const relay_result& r) {
  o.add("bytes_up", r.bytes_up)
      .add("bytes_down", r.bytes_down)
      .add("duration_ms", static_cast<std::int64_t>(
                              std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started).count()))
      .add("closed_by", r.cause == close_cause::both_eof ? (r.client_closed_first ? "client" : "upstream")
                                                         : std::string_view("proxy"))
      .add("close_cause", to_string(r.cause));
  log_audit(o);
}

}  // namespace

void record_tunnel(const session& s, const destination& d, std::string_view protocol, const relay_result& r) {
  if (!audit_enabled()) return;
  json_object o = base_record(s, d, "tunnel_closed", protocol);
  finish_tunnel_record(o, s.started, r);
}

// ---- the tunnel common to CONNECT, SOCKS5 and upgraded HTTP ----------------------------

// After the success reply: the client's pipelined bytes go upstream first, the head
// buffer is freed (an idle tunnel holds no user-space buffer), then the relay.
asio::awaitable<void> tunnel(session& s, const destination& d, std::string_view protocol, std::size_t consumed) {
  if (s.in.size() > consumed) {
    if (!co_await write_upstream(s, std::string_view(s.in).substr(consumed))) {
      record_tunnel(s, d, protocol, {.cause = close_cause::upstream_reset});
      co_return;
    }
  }
  if (s.aborted) {
    record_tunnel(s, d, protocol, {.cause = close_cause::shutdown});
    co_return;
  }
  // The tunnel takes the sockets and the closing record; this session's coroutines end
  // here, so an idle tunnel keeps no frame and no head buffer.
  std::string().swap(s.in);
  std::function<void(const relay_result&)> on_close;
  if (audit_enabled()) {
    on_close = [record = base_record(s, d, "tunnel_closed", protocol), started = s.started](
                   const relay_result& r) mutable { finish_tunnel_record(record, started, r); };
  }
  start_tunnel(s.w, std::move(s.client), std::move(s.upstream), s.cfg->limits.idle_timeout, std::move(on_close));
}

asio::awaitable<std::optional<proto::parsed<proto::http_request>>> read_request_head(session& s,
                                                                                   steady::time_point deadline,
                                                                                   bool idle_until_first_byte) {
  const auto& limits = s.cfg->limits;
  proto::head_limits hl;
  hl.max_head_bytes = limits.max_head_bytes;
  hl.max_headers = limits.max_headers;
  hl.max_line_bytes = std::min<std::size_t>(limits.max_head_bytes, 8192);
  bool waiting_for_first_byte = idle_until_first_byte && s.in.empty();
  std::size_t line_start = 0;  // where the line still being received starts in s.in
  for (;;) {
    auto result = proto::parse_http_head(s.in, hl);
    if (auto* failure = std::get_if<proto::parse_failure>(&result)) {
      co_await send_refusal(s, plain_refusal(proto::http_status_for(failure->code), "http_request_error",
                                             "egressd: bad request: " + make_error_code(failure->code).message()));
      log_event(log_level::debug, "bad request",
                json_object().add("connection", s.id).add("client", s.peer).add("error", proto::to_string(failure->code)));
      co_return std::nullopt;
    }
    if (auto* done = std::get_if<proto::parsed<proto::http_request>>(&result)) co_return std::move(*done);
    // A head can only complete, or fail anew, once a line ends or grows too long: read
    // until then, so a head trickled in byte by byte is parsed O(lines) times, not
    // O(bytes) times.
    for (;;) {
      if (waiting_for_first_byte && !s.in.empty()) {  // the head has started: it has head_timeout to finish
        waiting_for_first_byte = false;
        deadline = steady::now() + limits.head_timeout;
      }
      const std::size_t old = s.in.size();
      const auto st = co_await read_more(s, deadline, limits.max_head_bytes + 1);
      if (st != read_status::ok) {
        if (st == read_status::timeout && !waiting_for_first_byte)
          co_await send_refusal(
              s, plain_refusal(408, "http_request_error", "egressd: the request head did not arrive in time"));
        co_return std::nullopt;
      }
      if (const auto nl = std::string_view(s.in).substr(old).rfind('\n'); nl != std::string_view::npos) {
        line_start = old + nl + 1;
        break;
      }
      if (s.in.size() - line_start > hl.max_line_bytes || s.in.size() > limits.max_head_bytes) break;
    }
  }
}

asio::awaitable<bool> check_proxy_auth(session& s, const proto::http_request& req) {
  if (s.cfg->auth.users.empty() ||
      (req.proxy_authorization && check_basic_authorization(s.cfg->auth, *req.proxy_authorization)))
    co_return true;
  refusal r = plain_refusal(407, "http_request_denied", "egressd: proxy authentication required");
  r.auth_challenge = true;
  co_await send_refusal(s, r);
  co_return false;
}

asio::awaitable<void> send_refusal(session& s, const refusal& r) {
  co_await write_client(s, render_refusal(r, true));
  boost::system::error_code ignored;
  s.client.shutdown(asio::socket_base::shutdown_send, ignored);
}

namespace {

// ---- HTTP -------------------------------------------------------------------------------

asio::awaitable<void> serve_connect(session& s, const proto::http_request& req, std::size_t consumed) {
  destination d = co_await open_upstream(s, req.host, req.port);
  if (!d.connected()) {
    const refusal r = refusal_for(s, d);
    record_request(s, d, "connect", r.status);
    if (d.error != dial_error::aborted) co_await send_refusal(s, r);
    co_return;
  }
  record_request(s, d, "connect", 200);
  // RFC 9110 §9.3.6: any 2xx means the tunnel is open.
  static constexpr std::string_view established = "HTTP/1.1 200 Connection Established\r\n\r\n";
  if (!co_await write_client(s, established)) {
    record_tunnel(s, d, "connect", {.cause = close_cause::client_reset});
    co_return;
  }
  co_await tunnel(s, d, "connect", consumed);
}

asio::awaitable<void> serve_http(session& s, steady::time_point deadline) {
  auto head = co_await read_request_head(s, deadline, /*idle_until_first_byte=*/false);
  if (!head) co_return;
  s.load_generation();  // the request is judged by the generation current when its head arrived
  if (!co_await check_proxy_auth(s, head->message)) co_return;
  if (head->message.kind == proto::request_kind::connect) {
    co_await serve_connect(s, head->message, head->consumed);
  } else {
    co_await serve_plain_http(s, std::move(head->message), head->consumed);
  }
}

// ---- SOCKS5 -------------------------------------------------------------------------------

template <class Message, class Parser>
asio::awaitable<std::optional<proto::parsed<Message>>> read_socks(session& s, steady::time_point deadline,
                                                                  Parser parse, proto::parse_errc* error) {
  for (;;) {
    auto r = parse(std::string_view(s.in));
    if (auto* done = std::get_if<proto::parsed<Message>>(&r)) co_return std::move(*done);
    if (auto* f = std::get_if<proto::parse_failure>(&r)) {
      if (error) *error = f->code;
      co_return std::nullopt;
    }
    if (co_await read_more(s, deadline, 1024) != read_status::ok) co_return std::nullopt;
  }
}

template <std::size_t N>
asio::awaitable<bool> write_bytes(session& s, const std::array<std::uint8_t, N>& bytes) {
  co_return co_await write_client(s, std::string_view(reinterpret_cast<const char*>(bytes.data()), N));
}

asio::awaitable<void> serve_socks5(session& s, steady::time_point deadline) {
  constexpr auto no_auth = proto::socks5_method_no_auth;
  constexpr auto user_pass = proto::socks5_method_username_password;
  constexpr auto none_acceptable = proto::socks5_method_none_acceptable;
  auto greeting = co_await read_socks<proto::socks5_greeting>(s, deadline, proto::parse_socks5_greeting, nullptr);
  if (!greeting) co_return;
  s.in.erase(0, greeting->consumed);
  const bool need_auth = !s.cfg->auth.users.empty();
  std::uint8_t method = none_acceptable;
  // RFC 1928 §3: the server selects one of the offered methods.
  if (need_auth) {
    if (greeting->message.offers(user_pass)) method = user_pass;
  } else if (greeting->message.offers(no_auth)) {
    method = no_auth;
  } else if (greeting->message.offers(user_pass)) {
    method = user_pass;  // no users configured: any credentials are accepted
  }
  if (!co_await write_bytes(s, proto::socks5_method_selection(method)) || method == none_acceptable) co_return;

  if (method == user_pass) {
    auto creds = co_await read_socks<proto::socks5_credentials>(s, deadline, proto::parse_socks5_auth, nullptr);
    if (!creds) co_return;
    s.in.erase(0, creds->consumed);
    const bool ok = !need_auth || check_credentials(s.cfg->auth, creds->message.username, creds->message.password);
    // RFC 1929 §2: a failure status means the server closes the connection.
    if (!co_await write_bytes(s, proto::socks5_auth_reply(ok)) || !ok) {
      if (!ok)
        log_event(log_level::info, "socks5 authentication failed",
                  json_object().add("connection", s.id).add("client", s.peer));
      co_return;
    }
  }

  proto::parse_errc error{};
  auto request = co_await read_socks<proto::socks5_request>(s, deadline, proto::parse_socks5_request, &error);
  if (!request) {
    if (error != proto::parse_errc{}) co_await write_bytes(s, proto::socks5_reply(proto::socks5_reply_for(error)));
    co_return;
  }
  if (request->message.command != proto::socks5_command::connect) {
    co_await write_bytes(s, proto::socks5_reply(proto::socks5_reply_code::command_not_supported));
    co_return;
  }
  destination d = co_await open_upstream(s, request->message.host, request->message.port);
  const auto code = socks_code_for(d);
  if (!d.connected()) {
    record_request(s, d, "socks5", static_cast<int>(code));
    if (d.error != dial_error::aborted) co_await write_bytes(s, proto::socks5_reply(code));
    co_return;
  }
  record_request(s, d, "socks5", 0);
  boost::system::error_code ec;
  const auto local = s.upstream.local_endpoint(ec);
  bool written;
  if (!ec && local.address().is_v6())
    written = co_await write_bytes(s, proto::socks5_reply(code, local.address().to_v6().to_bytes(), local.port()));
  else if (!ec)
    written = co_await write_bytes(s, proto::socks5_reply(code, local.address().to_v4().to_bytes(), local.port()));
  else
    written = co_await write_bytes(s, proto::socks5_reply(code));
  if (!written) co_return;
  co_await tunnel(s, d, "socks5", request->consumed);
}

}  // namespace

}  // namespace egressd::proxy::detail

namespace egressd::proxy {

boost::asio::awaitable<void> run_session(worker& w, const listener_info& listener,
                                         boost::asio::generic::stream_protocol::socket client, std::string peer) {
  using namespace detail;
  session s(w, listener, std::move(client), std::move(peer));
  const auto deadline = steady::now() + s.cfg->limits.head_timeout;
  const auto first = co_await read_more(s, deadline, s.cfg->limits.max_head_bytes + 1);
  if (first != read_status::ok || s.in.empty()) co_return;  // closed (or silent) before a byte: no record
  if (static_cast<unsigned char>(s.in[0]) == 0x05) {
    if (listener.socks5) co_await serve_socks5(s, deadline);
  } else if (listener.http) {
    co_await serve_http(s, deadline);
  }
}

}  // namespace egressd::proxy
