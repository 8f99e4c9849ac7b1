#include "proxy/admin.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cstring>
#include <optional>
#include <stdexcept>

#include "config/json.hpp"
#include "config/load.hpp"
#include "policy/host.hpp"
#include "policy/memory.hpp"
#include "proxy/admin_page.hpp"
#include "proxy/hook/coordinator.hpp"
#include "proxy/hook/wire.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/net.hpp"
#include "proxy/runtime.hpp"
#include "proxy/worker.hpp"

namespace egressd::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr auto probe_timeout = std::chrono::seconds(1);
constexpr auto request_timeout = std::chrono::seconds(10);
constexpr int max_requests_per_connection = 100;
/// The header the page sends its own token in (a cross-site page cannot read it).
constexpr std::string_view page_token_header = "X-Egressd-Page-Token";
/// The longest `answered_by` a request may set, in bytes.
constexpr std::size_t max_answered_by = 64;

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

template <class Fields>
std::string_view field_of(const Fields& h, std::string_view name) {
  const auto it = h.find(beast::string_view(name.data(), name.size()));
  if (it == h.end()) return {};
  return std::string_view(it->value().data(), it->value().size());
}

template <class Fields>
std::string_view field_of(const Fields& h, http::field f) {
  const auto it = h.find(f);
  if (it == h.end()) return {};
  return std::string_view(it->value().data(), it->value().size());
}

// Compares in time that depends on the length of `expected` only, so that the
// token cannot be guessed byte by byte from response times.
bool constant_time_equal(std::string_view given, std::string_view expected) noexcept {
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= static_cast<unsigned char>(g ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0;
}

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1)
    throw std::runtime_error("admin: no random bytes for the page token (RAND_bytes failed)");
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : raw) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

// The media type of a Content-Type value, without parameters, lower case
// (RFC 9110 §8.3.1: "application/json; charset=utf-8" is application/json).
bool is_json_media_type(std::string_view content_type) {
  return lower(trim(content_type.substr(0, content_type.find(';')))) == "application/json";
}

// Whether an Accept value names text/html (a browser navigating to the address).
// q-values are not weighed: a browser sends text/html first, curl and scripts */*.
bool wants_html(std::string_view accept) { return lower(accept).find("text/html") != std::string::npos; }

// A Host field value (RFC 9110 §7.2, uri-host [":" port]) as host (lower case,
// IPv6 without brackets) and port (nullopt when absent). nullopt when malformed.
struct host_field {
  std::string host;
  std::optional<std::uint16_t> port;
};
std::optional<host_field> parse_host_field(std::string_view v) {
  v = trim(v);
  host_field out;
  std::string_view port_text;
  if (!v.empty() && v.front() == '[') {
    const auto close = v.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    out.host = lower(v.substr(1, close - 1));
    const auto after = v.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port_text = after.substr(1);
      if (port_text.empty()) return std::nullopt;
    }
  } else {
    const auto colon = v.find(':');
    out.host = lower(v.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = v.substr(colon + 1);
      if (port_text.empty()) return std::nullopt;
    }
  }
  if (out.host.empty()) return std::nullopt;
  if (!port_text.empty()) {
    unsigned value = 0;
    const auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || p != port_text.data() + port_text.size() || value > 65535) return std::nullopt;
    out.port = static_cast<std::uint16_t>(value);
  }
  return out;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    unsigned value = 0;
    const auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, value, 16);
    if (ec != std::errc() || p != s.data() + i + 3) return std::nullopt;
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

// An unsigned JSON integer as written (no sign, fraction or exponent).
template <class T>
std::optional<T> json_unsigned(const config::json::value& v) {
  if (v.kind != config::json::value::kind_t::number) return std::nullopt;
  T out{};
  const auto& t = v.text;
  const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), out);
  if (ec != std::errc() || p != t.data() + t.size()) return std::nullopt;
  return out;
}

const config::json::value* member_of(const config::json::value& object, std::string_view key) {
  const config::json::value* found = nullptr;
  for (const auto& m : object.members)
    if (m.key == key) found = &m.value;  // the last one wins, as JSON.parse does
  return found;
}

// admin.token_file's token, read once at startup (the loader checked it already;
// the file may have changed since).
std::string admin_token(const std::string& path) {
  std::string error;
  auto token = config::read_token_file(path, error);
  if (!token) throw std::runtime_error("admin: admin.token_file: " + error);
  return *token;
}

std::string time_text(std::chrono::system_clock::time_point t) { return hook::rfc3339(t); }

}  // namespace

struct admin_server::impl : std::enable_shared_from_this<impl> {
  /// What a handler answers; answer() adds the common headers.
  struct reply {
    http::status status = http::status::ok;
    std::string_view content_type = json_type;
    std::string body;
    std::vector<std::pair<std::string_view, std::string>> headers = {};
  };
  /// One request as a handler sees it.
  struct request_context {
    const http::request<http::string_body>& req;
    std::string_view path;  ///< the target without its query
    std::string_view rest;  ///< for a prefix route: the path after the prefix
    bool page = false;      ///< GET / from a browser: the page, not the route list
  };
  using handler = asio::awaitable<reply> (impl::*)(const request_context&);
  /// Who may use a route (README "Admin endpoint").
  enum class access : std::uint8_t {
    open,   ///< anyone who reaches the address: liveness and readiness probes
    token,  ///< the bearer token when admin.token_file is set
    local,  ///< and a Host naming this endpoint (the hook's routes: DNS rebinding)
  };
  /// One route. GET routes answer HEAD too (RFC 9110 §9.3.2). A route whose path ends
  /// in '/' also takes every path below it (DELETE /v1/decisions/NAME).
  struct route {
    std::string_view path;
    std::string_view methods;  ///< the Allow header's value
    handler handle;
    std::string_view help;
    access who = access::token;
  };
  static constexpr std::string_view json_type = "application/json";
  static constexpr std::string_view text_type = "text/plain; charset=utf-8";
  static constexpr std::string_view html_type = "text/html; charset=utf-8";

  // The table (defined below the class): `GET /`, the startup log and the README list it.
  static const std::array<route, 9> routes;

  asio::io_context& control;
  runtime& rt;
  std::vector<worker*> workers;
  hook::coordinator& hooks;
  tcp::acceptor acceptor;
  std::string bound;
  std::string configured_host;  ///< admin.address's host as written (a name is allowed in Host)
  std::string bearer;           ///< admin.token_file's token; empty: none
  std::string page_token;       ///< random per process, embedded in the page
  std::function<reload_report()> reload_fn;  ///< POST /v1/reload (server.cpp)

  impl(asio::io_context& c, runtime& r, std::vector<worker*> w, hook::coordinator& h)
      : control(c), rt(r), workers(std::move(w)), hooks(h), acceptor(c), page_token(random_hex(32)) {}

  // Every worker loop runs a posted no-op within probe_timeout.
  asio::awaitable<bool> workers_answer() {
    auto answered = std::make_shared<std::atomic<std::size_t>>(0);
    for (auto* w : workers) asio::post(w->io(), [answered] { answered->fetch_add(1); });
    asio::steady_timer t(control);
    const auto deadline = std::chrono::steady_clock::now() + probe_timeout;
    while (answered->load() < workers.size()) {
      if (std::chrono::steady_clock::now() >= deadline) co_return false;
      t.expires_after(std::chrono::milliseconds(2));
      co_await t.async_wait(nothrow);
    }
    co_return true;
  }

  static std::string json_string(std::string_view s) {
    std::string out;
    append_json_string(out, s);
    return out;
  }

  // The methods of a route as a JSON array ("GET, HEAD" -> ["GET","HEAD"]).
  static std::string json_methods(std::string_view methods) {
    std::string out = "[";
    while (!methods.empty()) {
      const auto comma = methods.find(',');
      auto m = methods.substr(0, comma);
      while (!m.empty() && m.front() == ' ') m.remove_prefix(1);
      if (out.size() > 1) out += ",";
      out += json_string(m);
      methods = comma == std::string_view::npos ? std::string_view() : methods.substr(comma + 1);
    }
    return out + "]";
  }

  static std::string json_paths() {
    std::string out = "[";
    for (const auto& r : routes) out += (out.size() > 1 ? "," : "") + json_string(display_path(r));
    return out + "]";
  }

  // "/v1/decisions/" is listed as "/v1/decisions/{name}".
  static std::string display_path(const route& r) {
    return r.path.size() > 1 && r.path.back() == '/' ? std::string(r.path) + "{name}" : std::string(r.path);
  }

  static reply error(http::status status, std::string_view code, std::string_view detail) {
    return reply{status, json_type,
                 json_object::json().add("error", code).add("detail", detail).str() + "\n"};
  }

  asio::awaitable<reply> index(const request_context& ctx) {
    if (ctx.page) co_return page();
    std::string body = "{\"routes\":[";
    for (std::size_t i = 0; i < routes.size(); ++i) {
      const auto& r = routes[i];
      body += (i ? "," : "") + std::string("{\"path\":") + json_string(display_path(r)) +
              ",\"methods\":" + json_methods(r.methods) + ",\"help\":" + json_string(r.help) + "}";
    }
    body += "]}\n";
    co_return reply{http::status::ok, json_type, std::move(body), {{"Vary", "Accept"}}};
  }

  // The page, with a fresh nonce for its inline script and style (CSP below).
  reply page() const {
    const std::string nonce = random_hex(16);
    reply out{http::status::ok, html_type, admin_page_html(nonce, page_token, !bearer.empty())};
    out.headers = {
        {"Vary", "Accept"},
        // No external resources, no framing (clickjacking), no forms posted anywhere.
        {"Content-Security-Policy",
         "default-src 'self'; script-src 'nonce-" + nonce + "'; style-src 'nonce-" + nonce +
             "'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
             "form-action 'none'"},
        {"X-Frame-Options", "DENY"},
        {"Referrer-Policy", "no-referrer"},
    };
    return out;
  }

  // Liveness and readiness keep their plain-text bodies: probes and scripts read them.
  asio::awaitable<reply> healthz(const request_context&) { co_return reply{http::status::ok, text_type, "ok\n"}; }

  asio::awaitable<reply> readyz(const request_context&) {
    std::string why;
    if (rt.draining.load()) why = "draining";
    else if (!co_await workers_answer()) why = "a worker loop did not answer within 1s";
    if (why.empty()) co_return reply{http::status::ok, text_type, "ready\n"};
    co_return reply{http::status::service_unavailable, text_type, "not ready: " + why + "\n"};
  }

  asio::awaitable<reply> metrics_text(const request_context&) {
    co_return reply{http::status::ok, metrics::content_type, rt.stats.render()};
  }

  // ---- the hook's routes ------------------------------------------------------------

  asio::awaitable<reply> list_pending(const request_context&) {
    const auto now = std::chrono::system_clock::now();
    std::string body = "[";
    for (const auto& p : hooks.pending()) {
      const auto left = std::chrono::duration_cast<std::chrono::seconds>(p.deadline - now).count();
      body += (body.size() > 1 ? "," : "") + json_object::json()
                                                 .add("id", static_cast<std::uint64_t>(p.q.id))
                                                 .add("host", p.q.host)
                                                 .add("port", static_cast<unsigned>(p.q.port))
                                                 .add("protocol", p.q.protocol)
                                                 .add("client", p.q.client)
                                                 .add("listener", p.q.listener)
                                                 .add("registrable_domain", p.q.registrable_domain)
                                                 .add("first_seen", time_text(p.q.first_seen))
                                                 .add("waiting", static_cast<std::uint64_t>(p.waiting))
                                                 .add("deadline", time_text(p.deadline))
                                                 .add("seconds_left", static_cast<std::int64_t>(std::max<long long>(0, left)))
                                                 .str();
    }
    co_return reply{http::status::ok, json_type, body + "]\n"};
  }

  // POST /v1/decisions: {id | host [+ port], decision, remember, ttl_seconds, scope,
  // reason, answered_by}. The answer's members are read by hook::parse_answer, as a
  // hook's answer is; which question it answers is read here.
  asio::awaitable<reply> post_decision(const request_context& ctx) {
    const auto& text = ctx.req.body();
    const auto doc = config::json::parse(text);
    if (!doc.value)
      co_return error(http::status::bad_request, "bad_request",
                      "the body is not JSON: line " + std::to_string(doc.error.line) + ": " + doc.error.message);
    if (!doc.value->is_object()) co_return error(http::status::bad_request, "bad_request", "the body must be a JSON object");
    const auto parsed = hook::parse_answer(text);
    if (!parsed.value) co_return error(http::status::bad_request, "bad_request", parsed.error);
    hook::manual_answer m;
    m.value = *parsed.value;
    const auto* id = member_of(*doc.value, "id");
    const auto* host = member_of(*doc.value, "host");
    const auto* port = member_of(*doc.value, "port");
    if (id && !id->is_null()) {
      m.id = json_unsigned<std::uint64_t>(*id);
      if (!m.id) co_return error(http::status::bad_request, "bad_request", "id must be a pending question's id (an integer)");
      if (host && !host->is_null())
        co_return error(http::status::bad_request, "bad_request", "give id or host, not both");
    } else if (host && host->is_string()) {
      const auto canon = policy::canonicalize_host(host->text);
      if (!canon.ok())
        co_return error(http::status::bad_request, "bad_request",
                        "host is not valid: " + std::string(policy::to_string(canon.error)));
      m.host = canon.host->text;
      if (port && !port->is_null()) {
        const auto p = json_unsigned<std::uint16_t>(*port);
        if (!p || *p == 0) co_return error(http::status::bad_request, "bad_request", "port must be 1..65535");
        m.port = *p;
      }
      if (m.value.scope == policy::answer_scope::host_port && m.port == 0)
        co_return error(http::status::bad_request, "bad_request", "scope host_port needs a port");
    } else {
      co_return error(http::status::bad_request, "bad_request",
                      "name the question: \"id\" (GET /v1/pending lists them) or \"host\" (and \"port\")");
    }
    if (const auto* by = member_of(*doc.value, "answered_by"); by && by->is_string() && !by->text.empty()) {
      // Free text from the client, kept short and printable: it is written to
      // decisions_file and the logs.
      std::string who = "admin/";
      for (char c : by->text)
        if (who.size() < max_answered_by && c > ' ' && c < 0x7f) who += c;
      m.who = who;
    }
    const auto r = hooks.answer(m);
    if (!r.ok) {
      // Nothing matched (no such question, and nothing to remember) is 404; an answer
      // the coordinator could not take is 400.
      const bool nothing = m.id || m.value.remember == policy::answer_lifetime::once;
      co_return error(nothing ? http::status::not_found : http::status::bad_request,
                      nothing ? "not_found" : "bad_request", r.error);
    }
    co_return reply{http::status::ok, json_type,
                    json_object::json()
                            .add("questions_answered", static_cast<std::uint64_t>(r.questions_answered))
                            .add("requests_released", static_cast<std::uint64_t>(r.requests_released))
                            .add("remembered", r.remembered)
                            .str() +
                        "\n"};
  }

  asio::awaitable<reply> decisions(const request_context& ctx) {
    if (ctx.req.method() == http::verb::post) co_return co_await post_decision(ctx);
    co_return co_await list_decisions();
  }

  asio::awaitable<reply> list_decisions() {
    std::string body = "[";
    for (const auto& e : hooks.remembered()) {
      auto o = json_object::json()
                   .add("name", e.name)
                   .add("scope", policy::to_string(e.scope))
                   .add("port", static_cast<unsigned>(e.port))
                   .add("decision", policy::to_string(e.result))
                   .add("lifetime", policy::to_string(e.lifetime));
      if (e.expires == std::chrono::system_clock::time_point::max()) o.add_null("expires");
      else o.add("expires", time_text(e.expires));
      o.add("answered_by", e.answered_by).add("answered_at", time_text(e.answered_at)).add("reason", e.reason);
      body += (body.size() > 1 ? "," : "") + o.str();
    }
    co_return reply{http::status::ok, json_type, body + "]\n"};
  }

  asio::awaitable<reply> forget_decision(const request_context& ctx) {
    const auto name = percent_decode(ctx.rest);
    if (!name || name->empty())
      co_return error(http::status::bad_request, "bad_request", "DELETE /v1/decisions/NAME: name a host or domain");
    const auto canon = policy::canonicalize_host(*name);
    if (!canon.ok())
      co_return error(http::status::bad_request, "bad_request",
                      "not a host or domain: " + std::string(policy::to_string(canon.error)));
    const auto n = hooks.forget(canon.host->text);
    auto body = json_object::json();
    if (n == 0) body.add("error", "not_found").add("detail", "nothing remembered for " + canon.host->text);
    body.add("forgotten", static_cast<std::uint64_t>(n));
    co_return reply{n ? http::status::ok : http::status::not_found, json_type, body.str() + "\n"};
  }

  // POST /v1/reload: what SIGHUP does, answered with its outcome. The body is not read
  // (a JSON content type is still required, as on every change: CSRF).
  asio::awaitable<reply> post_reload(const request_context&) {
    if (!reload_fn)
      co_return error(http::status::internal_server_error, "internal_error", "reload is not available in this process");
    const reload_report r = reload_fn();
    const auto list = [](const std::vector<std::string>& items) {
      std::string out = "[";
      for (const auto& i : items) out += (out.size() > 1 ? "," : "") + json_string(i);
      return out + "]";
    };
    auto body = json_object::json();
    body.add("result", r.ok ? "success" : "failure").add("source", r.source);
    if (r.ok)
      body.add("rules", r.rules)
          .add("rules_added", r.rules_added)
          .add("rules_removed", r.rules_removed)
          .add("revoke", r.revoke);
    std::string text = body.str();
    text.pop_back();  // the arrays go in as they are
    text += ",\"errors\":" + list(r.errors) + ",\"warnings\":" + list(r.warnings) + "}\n";
    // 422: the request was fine, the file it names is not (RFC 9110 §15.5.21); the old
    // configuration stays in force.
    co_return reply{r.ok ? http::status::ok : http::status::unprocessable_entity, json_type, std::move(text)};
  }

  asio::awaitable<reply> list_denials(const request_context&) {
    std::string body = "[";
    for (const auto& d : hooks.recent_denials())
      body += (body.size() > 1 ? "," : "") + json_object::json()
                                                 .add("host", d.host)
                                                 .add("port", static_cast<unsigned>(d.port))
                                                 .add("reason", d.reason)
                                                 .add("at", time_text(d.at))
                                                 .str();
    co_return reply{http::status::ok, json_type, body + "]\n"};
  }

  // ---- dispatch ---------------------------------------------------------------------

  static const route* find_route(std::string_view path) noexcept {
    for (const auto& r : routes)
      if (r.path == path || (r.path.size() > 1 && r.path.back() == '/' && path.size() > r.path.size() &&
                             path.substr(0, r.path.size()) == r.path))
        return &r;
    return nullptr;
  }

  static bool takes(const route& r, http::verb method) noexcept {
    const auto name = http::to_string(method);
    std::string_view methods = r.methods;
    while (!methods.empty()) {
      const auto comma = methods.find(',');
      auto m = methods.substr(0, comma);
      while (!m.empty() && m.front() == ' ') m.remove_prefix(1);
      if (m == std::string_view(name.data(), name.size())) return true;
      methods = comma == std::string_view::npos ? std::string_view() : methods.substr(comma + 1);
    }
    return false;
  }

  // Whether Host names this endpoint: the address the connection came in on, the
  // configured host, or a loopback name, with the bound port. A DNS-rebinding page
  // reaches us under its own name, which it cannot make one of these.
  std::optional<reply> check_host(const http::request<http::string_body>& req, const tcp::endpoint& local) const {
    const auto value = field_of(req, http::field::host);
    if (value.empty())
      return error(http::status::bad_request, "bad_request", "this route needs a Host header naming " + bound);
    const auto h = parse_host_field(value);
    const auto port = local.port();
    bool ok = false;
    if (h && (h->port ? *h->port == port : port == 80)) {
      auto here = local.address();
      if (here.is_v6() && here.to_v6().is_v4_mapped()) here = asio::ip::make_address_v4(asio::ip::v4_mapped, here.to_v6());
      ok = h->host == "localhost" || h->host == "127.0.0.1" || h->host == "::1" || h->host == here.to_string() ||
           (!configured_host.empty() && h->host == configured_host);
    }
    if (ok) return std::nullopt;
    return error(http::status::misdirected_request, "misdirected_request",
                 "Host " + std::string(value) + " does not name this admin endpoint; use " + bound);
  }

  std::optional<reply> check_bearer(const http::request<http::string_body>& req) const {
    if (bearer.empty()) return std::nullopt;
    const auto value = trim(field_of(req, http::field::authorization));
    const auto space = value.find(' ');
    const bool bearer_scheme = space != std::string_view::npos && lower(value.substr(0, space)) == "bearer";
    if (bearer_scheme && constant_time_equal(trim(value.substr(space + 1)), bearer)) return std::nullopt;
    auto out = error(http::status::unauthorized, "unauthorized",
                     value.empty() ? "this endpoint needs Authorization: Bearer TOKEN (admin.token_file)"
                                   : "the bearer token is not admin.token_file's");
    // RFC 6750 §3: a challenge, with invalid_token when a token was sent.
    out.headers.emplace_back("WWW-Authenticate",
                             value.empty() ? "Bearer realm=\"egressd\"" : "Bearer realm=\"egressd\", error=\"invalid_token\"");
    return out;
  }

  // POST and DELETE: a cross-site form or fetch cannot send application/json without
  // a CORS preflight, which we never answer positively, and cannot read the page's
  // token.
  std::optional<reply> check_state_change(const http::request<http::string_body>& req) const {
    if (is_json_media_type(field_of(req, http::field::content_type))) return std::nullopt;
    const auto token = field_of(req, page_token_header);
    if (!token.empty()) {
      if (constant_time_equal(token, page_token)) return std::nullopt;
      return error(http::status::forbidden, "forbidden", "the page token is not this process's (reload the page)");
    }
    return error(http::status::unsupported_media_type, "unsupported_media_type",
                 "a change needs Content-Type: application/json");
  }

  asio::awaitable<http::response<http::string_body>> answer(const http::request<http::string_body>& req,
                                                            const tcp::endpoint& local) {
    http::response<http::string_body> res;
    res.version(req.version());
    res.set(http::field::server, "egressd");
    res.set(http::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    const auto target = std::string_view(req.target().data(), req.target().size());
    const auto path = target.substr(0, target.find('?'));
    reply out;
    const route* r = find_route(path);
    if (!r) {
      out = {http::status::not_found, json_type,
             "{\"error\":\"not_found\",\"path\":" + json_string(path) + ",\"routes\":" + json_paths() + "}\n"};
    } else if (!takes(*r, req.method())) {
      res.set(http::field::allow, r->methods);
      out = {http::status::method_not_allowed, json_type,
             "{\"error\":\"method_not_allowed\",\"path\":" + json_string(path) +
                 ",\"allow\":" + json_methods(r->methods) + "}\n"};
    } else {
      // GET / from a browser is the page: it shows what the hook's routes return, so
      // it is as local as they are; its shell carries no data, so no bearer token
      // (the page asks for it and sends it with every call).
      const bool page = r->handle == &impl::index && wants_html(field_of(req, http::field::accept));
      const bool changes = req.method() == http::verb::post || req.method() == http::verb::delete_;
      std::optional<reply> refused;
      if (page || r->who == access::local) refused = check_host(req, local);
      if (!refused && !page && r->who != access::open) refused = check_bearer(req);
      if (!refused && changes) refused = check_state_change(req);
      if (refused) out = std::move(*refused);
      else {
        const request_context ctx{req, path, path.substr(std::min(path.size(), r->path.size())), page};
        out = co_await (this->*(r->handle))(ctx);
      }
    }
    res.result(out.status);
    res.set(http::field::content_type, out.content_type);
    for (auto& [f, v] : out.headers) res.set(beast::string_view(f.data(), f.size()), v);
    res.body() = std::move(out.body);
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    // A HEAD answer carries the GET answer's Content-Length and no body.
    if (req.method() == http::verb::head) res.body().clear();
    co_return res;
  }

  asio::awaitable<void> serve(tcp::socket sock) {
    beast::flat_buffer buffer;
    asio::steady_timer timer(control);
    boost::system::error_code lec;
    const auto local = sock.local_endpoint(lec);
    if (lec) co_return;
    for (int i = 0; i < max_requests_per_connection; ++i) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(8192);
      parser.body_limit(4096);
      timer.expires_after(request_timeout);
      auto r = co_await (http::async_read(sock, buffer, parser, nothrow) || timer.async_wait(nothrow));
      if (r.index() == 1) co_return;
      auto [ec, n] = std::get<0>(r);
      if (ec) co_return;
      auto res = co_await answer(parser.get(), local);
      auto [wec, wn] = co_await http::async_write(sock, res, nothrow);
      if (wec || !res.keep_alive()) co_return;
    }
  }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    for (;;) {
      auto [ec, sock] = co_await acceptor.async_accept(nothrow);
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      if (ec) {
        asio::steady_timer pause(control, std::chrono::milliseconds(100));
        co_await pause.async_wait(nothrow);
        continue;
      }
      asio::co_spawn(control, serve(std::move(sock)), asio::detached);
    }
  }
};

const std::array<admin_server::impl::route, 9> admin_server::impl::routes{{
    {"/", "GET, HEAD", &admin_server::impl::index,
     "this list of routes (JSON); from a browser (Accept: text/html) the page of pending questions"},
    {"/healthz", "GET, HEAD", &admin_server::impl::healthz, "200 while the process is up (liveness)", access::open},
    {"/metrics", "GET, HEAD", &admin_server::impl::metrics_text, "Prometheus metrics, text format 0.0.4"},
    {"/readyz", "GET, HEAD", &admin_server::impl::readyz,
     "200 when listeners are bound and every worker loop answers within 1s; 503 with the reason "
     "while draining or stuck (readiness)",
     access::open},
    {"/v1/pending", "GET, HEAD", &admin_server::impl::list_pending,
     "questions waiting for the hook or an answer by hand (JSON)", access::local},
    {"/v1/decisions", "GET, HEAD, POST", &admin_server::impl::decisions,
     "GET: remembered answers (JSON); POST {id | host, port, decision, remember, ttl_seconds, scope, reason}: "
     "answer by hand",
     access::local},
    {"/v1/decisions/", "DELETE", &admin_server::impl::forget_decision,
     "forget every remembered answer naming a host or domain", access::local},
    {"/v1/denials", "GET, HEAD", &admin_server::impl::list_denials, "the latest refusals, newest first (JSON)",
     access::local},
    {"/v1/reload", "POST", &admin_server::impl::post_reload,
     "reload the configuration as SIGHUP does; 200 with the outcome, 422 with every problem (the old policy stays)",
     access::local},
}};

admin_server::admin_server(asio::io_context& control, const config::admin_config& cfg, runtime& rt,
                           std::vector<worker*> workers, hook::coordinator& hooks)
    : impl_(std::make_shared<impl>(control, rt, std::move(workers), hooks)) {
  const config::endpoint& address = cfg.address;
  if (address.kind != config::endpoint::kind_t::tcp)
    throw std::runtime_error("admin: only host:port addresses are supported, not " + address.to_string());
  boost::system::error_code ec;
  const tcp::endpoint ep = resolve_listen_address(address);
  auto& a = impl_->acceptor;
  a.open(ep.protocol());
  a.set_option(asio::socket_base::reuse_address(true));
  a.bind(ep, ec);
  if (ec) throw std::runtime_error("admin: cannot bind " + address.to_string() + ": " + ec.message());
  a.listen();
  const auto local = a.local_endpoint();
  impl_->bound = endpoint_text(local.address(), local.port());
  impl_->configured_host = address.host;
  if (!cfg.token_file.empty()) impl_->bearer = admin_token(cfg.token_file);
}

admin_server::~admin_server() = default;

const std::string& admin_server::address() const noexcept { return impl_->bound; }

std::string admin_server::route_list() const {
  std::string out;
  for (const auto& r : impl::routes) out += (out.empty() ? "" : " ") + impl::display_path(r);
  return out;
}

void admin_server::set_reload(std::function<reload_report()> reload) { impl_->reload_fn = std::move(reload); }

void admin_server::start() { asio::co_spawn(impl_->control, impl_->accept_loop(), asio::detached); }

void admin_server::stop() {
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
}

}  // namespace egressd::proxy
