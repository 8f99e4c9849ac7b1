#include "proxy/admin_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "proxy/net.hpp"

namespace egressd::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
/// The largest response body read; the daemon's lists are capped far below this.
constexpr std::size_t max_body = 8 * 1024 * 1024;

// The address to dial for an address the daemon binds: a wildcard bind is reached on
// loopback of the same family.
std::string dial_host(const config::endpoint& e) {
  if (e.host == "0.0.0.0") return "127.0.0.1";
  if (e.host == "::") return "::1";
  return e.host;
}

std::string seconds_text(std::chrono::milliseconds d) {
  return d.count() % 1000 ? std::to_string(d.count()) + "ms" : std::to_string(d.count() / 1000) + "s";
}

}  // namespace

admin_call_result call_admin(const config::endpoint& address, std::string_view method, std::string_view target,
                             std::string_view body, std::string_view token, std::chrono::milliseconds timeout) {
  admin_call_result out;
  if (address.kind != config::endpoint::kind_t::tcp) {
    out.error = "only host:port admin addresses are supported";
    out.unreachable = true;
    return out;
  }
  asio::io_context io;
  const std::string host = dial_host(address);
  auto exchange = [&]() -> asio::awaitable<void> {
    tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    auto [rec, endpoints] = co_await resolver.async_resolve(host, std::to_string(address.port), nothrow);
    if (rec) {
      out.error = "cannot resolve " + host + ": " + rec.message();
      out.unreachable = true;
      co_return;
    }
    auto [cec, ep] = co_await stream.async_connect(endpoints, nothrow);
    if (cec) {
      out.error = cec == beast::error::timeout ? "timed out after " + seconds_text(timeout) + " connecting"
                                               : cec.message();
      out.unreachable = true;
      co_return;
    }
    http::request<http::string_body> req;
    req.method(http::string_to_verb(beast::string_view(method.data(), method.size())));
    req.target(beast::string_view(target.data(), target.size()));
    req.version(11);
    // The address dialled, as the admin endpoint's Host check expects it.
    req.set(http::field::host, ep.address().is_loopback() || host == ep.address().to_string()
                                   ? endpoint_text(ep.address(), ep.port())
                                   : address.to_string());
    req.set(http::field::user_agent, "egressd-cli");
    req.set(http::field::accept, "application/json");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + std::string(token));
    if (method == "POST" || method == "DELETE") {
      req.set(http::field::content_type, "application/json");
      req.body() = std::string(body);
    }
    req.keep_alive(false);
    req.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, req, nothrow);
    if (wec) {
      out.error = wec == beast::error::timeout ? "timed out after " + seconds_text(timeout) : wec.message();
      co_return;
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(max_body);
    auto [rdec, rn] = co_await http::async_read(stream, buffer, parser, nothrow);
    if (rdec) {
      out.error = rdec == beast::error::timeout ? "timed out after " + seconds_text(timeout) + " waiting for an answer"
                                                : "bad answer: " + rdec.message();
      co_return;
    }
    out.value = admin_response{parser.get().result_int(), std::move(parser.get().body())};
  };
  asio::co_spawn(io, exchange(), [&](std::exception_ptr e) {
    if (e && !out.value && out.error.empty()) out.error = "internal error";
  });
  io.run();
  return out;
}

}  // namespace egressd::proxy
