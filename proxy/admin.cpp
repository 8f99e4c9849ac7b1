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

#include <array>
#include <atomic>
#include <stdexcept>

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
}  // namespace

struct admin_server::impl : std::enable_shared_from_this<impl> {
  /// What a handler answers; the route table's caller adds the common headers.
  struct reply {
    http::status status = http::status::ok;
    std::string_view content_type = json_type;
    std::string body;
  };
  using handler = asio::awaitable<reply> (impl::*)();
  /// One route. GET routes answer HEAD too (RFC 9110 §9.3.2).
  struct route {
    std::string_view path;
    std::string_view methods;  ///< the Allow header's value
    handler handle;
    std::string_view help;
  };
  static constexpr std::string_view json_type = "application/json";
  static constexpr std::string_view text_type = "text/plain; charset=utf-8";

  // The table (defined below the class): `GET /`, the startup log and the README list it.
  static const std::array<route, 4> routes;

  asio::io_context& control;
  runtime& rt;
  std::vector<worker*> workers;
  tcp::acceptor acceptor;
  std::string bound;

  impl(asio::io_context& c, runtime& r, std::vector<worker*> w) : control(c), rt(r), workers(std::move(w)), acceptor(c) {}

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
    for (const auto& r : routes) out += (out.size() > 1 ? "," : "") + json_string(r.path);
    return out + "]";
  }

  asio::awaitable<reply> index() {
    std::string body = "{\"routes\":[";
    for (std::size_t i = 0; i < routes.size(); ++i) {
      const auto& r = routes[i];
      body += (i ? "," : "") + std::string("{\"path\":") + json_string(r.path) +
              ",\"methods\":" + json_methods(r.methods) + ",\"help\":" + json_string(r.help) + "}";
    }
    body += "]}\n";
    co_return reply{http::status::ok, json_type, std::move(body)};
  }

  // Liveness and readiness keep their plain-text bodies: probes and scripts read them.
  asio::awaitable<reply> healthz() { co_return reply{http::status::ok, text_type, "ok\n"}; }

  asio::awaitable<reply> readyz() {
    std::string why;
    if (rt.draining.load()) why = "draining";
    else if (!co_await workers_answer()) why = "a worker loop did not answer within 1s";
    if (why.empty()) co_return reply{http::status::ok, text_type, "ready\n"};
    co_return reply{http::status::service_unavailable, text_type, "not ready: " + why + "\n"};
  }

  asio::awaitable<reply> metrics_text() {
    co_return reply{http::status::ok, metrics::content_type, rt.stats.render()};
  }

  static const route* find_route(std::string_view path) noexcept {
    for (const auto& r : routes)
      if (r.path == path) return &r;
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

  asio::awaitable<http::response<http::string_body>> answer(const http::request<http::string_body>& req) {
    http::response<http::string_body> res;
    res.version(req.version());
    res.set(http::field::server, "egressd");
    res.set(http::field::cache_control, "no-store");
    const auto target = std::string_view(req.target().data(), req.target().size());
    const auto path = target.substr(0, target.find('?'));
    reply out;
    if (const route* r = find_route(path); !r) {
      out = {http::status::not_found, json_type,
             "{\"error\":\"not_found\",\"path\":" + json_string(path) + ",\"routes\":" + json_paths() + "}\n"};
    } else if (!takes(*r, req.method())) {
      res.set(http::field::allow, r->methods);
      out = {http::status::method_not_allowed, json_type,
             "{\"error\":\"method_not_allowed\",\"path\":" + json_string(path) +
                 ",\"allow\":" + json_methods(r->methods) + "}\n"};
    } else {
      out = co_await (this->*(r->handle))();
    }
    res.result(out.status);
    res.set(http::field::content_type, out.content_type);
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
    for (int i = 0; i < max_requests_per_connection; ++i) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(8192);
      parser.body_limit(4096);
      timer.expires_after(request_timeout);
      auto r = co_await (http::async_read(sock, buffer, parser, nothrow) || timer.async_wait(nothrow));
      if (r.index() == 1) co_return;
      auto [ec, n] = std::get<0>(r);
      if (ec) co_return;
      auto res = co_await answer(parser.get());
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

const std::array<admin_server::impl::route, 4> admin_server::impl::routes{{
    {"/", "GET, HEAD", &admin_server::impl::index, "this list of routes (JSON)"},
    {"/healthz", "GET, HEAD", &admin_server::impl::healthz, "200 while the process is up (liveness)"},
    {"/metrics", "GET, HEAD", &admin_server::impl::metrics_text, "Prometheus metrics, text format 0.0.4"},
    {"/readyz", "GET, HEAD", &admin_server::impl::readyz,
     "200 when listeners are bound and every worker loop answers within 1s; 503 with the reason "
     "while draining or stuck (readiness)"},
}};

admin_server::admin_server(asio::io_context& control, const config::endpoint& address, runtime& rt,
                           std::vector<worker*> workers)
    : impl_(std::make_shared<impl>(control, rt, std::move(workers))) {
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
}

admin_server::~admin_server() = default;

const std::string& admin_server::address() const noexcept { return impl_->bound; }

std::string admin_server::route_list() const {
  std::string out;
  for (const auto& r : impl::routes) out += (out.empty() ? "" : " ") + std::string(r.path);
  return out;
}

void admin_server::start() { asio::co_spawn(impl_->control, impl_->accept_loop(), asio::detached); }

void admin_server::stop() {
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
}

}  // namespace egressd::proxy
