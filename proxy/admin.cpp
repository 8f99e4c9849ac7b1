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

#include <atomic>
#include <stdexcept>

#include "proxy/log.hpp"
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

  asio::awaitable<http::response<http::string_body>> answer(const http::request<http::string_body>& req) {
    http::response<http::string_body> res;
    res.version(req.version());
    res.set(http::field::server, "egressd");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.set(http::field::cache_control, "no-store");
    const auto target = std::string_view(req.target().data(), req.target().size());
    const auto path = target.substr(0, target.find('?'));
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET, HEAD");
      res.body() = "only GET and HEAD\n";
    } else if (path == "/healthz") {
      res.result(http::status::ok);
      res.body() = "ok\n";
    } else if (path == "/readyz") {
      std::string why;
      if (rt.draining.load()) why = "draining";
      else if (!co_await workers_answer()) why = "a worker loop did not answer within 1s";
      res.result(why.empty() ? http::status::ok : http::status::service_unavailable);
      res.body() = why.empty() ? "ready\n" : "not ready: " + why + "\n";
    } else {
      res.result(http::status::not_found);
      res.body() = "not found: /healthz and /readyz are served\n";
    }
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
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

void admin_server::start() { asio::co_spawn(impl_->control, impl_->accept_loop(), asio::detached); }

void admin_server::stop() {
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
}

}  // namespace egressd::proxy
