// Flow of plain HTTP forwarding (absolute-form, RFC 9112 §3.2.2):
//  for each request head on the client connection:
//   1. the head was parsed and is decided on its own (a second request naming another
//      host is judged afresh); proxy auth is checked on every request;
//   2. the upstream connection is reused when the previous exchange went to the same
//      host and port and both sides kept it alive, otherwise opened through
//      open_upstream (decide -> resolve -> guard -> dial);
//   3. the head is rewritten to origin-form without hop-by-hop and Proxy-* fields;
//   4. the request body (client -> upstream) and the response (upstream -> client) are
//      streamed concurrently, so `Expect: 100-continue` and early answers work. Message
//      framing (Content-Length, chunked, read-until-close) comes from Beast's parser fed
//      through put(); the bytes themselves are forwarded exactly as received;
//   5. a 101 response turns the connection into a tunnel (WebSocket); otherwise the next
//      head is read if both sides keep the connection alive.
//  Bytes are only ever forwarded inside a request whose destination was decided.

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

#include <memory>
#include <optional>

#include "proxy/log.hpp"
#include "proxy/runtime.hpp"
#include "proxy/session_impl.hpp"

namespace egressd::proxy::detail {

namespace beast = boost::beast;
namespace http = beast::http;
namespace proto = egressd::proxy::protocol;
using namespace asio::experimental::awaitable_operators;

namespace {

// A Beast parser used only for message framing: it tells where a message ends and
// keeps the status code; the bytes are forwarded unchanged by the caller.
template <bool IsRequest>
class framing_parser : public http::basic_parser<IsRequest> {
 public:
  framing_parser() {
    this->eager(true);
    this->body_limit(boost::none);
    this->header_limit(64 * 1024);
  }
  int status() const noexcept { return status_; }

 private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int, beast::error_code&) override {}
  void on_response_impl(int code, beast::string_view, int, beast::error_code&) override { status_ = code; }
  void on_field_impl(http::field, beast::string_view, beast::string_view, beast::error_code&) override {}
  void on_header_impl(beast::error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, beast::error_code&) override {}
  std::size_t on_body_impl(beast::string_view body, beast::error_code&) override { return body.size(); }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, beast::error_code&) override {
    return body.size();
  }
  void on_finish_impl(beast::error_code&) override {}

  int status_ = 0;
};

// Bytes the framing parser may hold back unparsed (an incomplete chunk-size line,
// trailer, or response head) before the exchange is abandoned.
constexpr std::size_t max_unparsed_bytes = 64 * 1024;

struct exchange_result {
  bool request_complete = false;
  bool response_complete = false;
  bool response_keep_alive = false;
  bool upgraded = false;
  int status = 0;
  std::string upstream_leftover;  // bytes after a 101 head
  std::uint64_t bytes_up = 0;     // request body bytes sent upstream (access record)
  std::uint64_t bytes_down = 0;   // response bytes sent to the client (access record)
};

// Client -> upstream: the request body, as framed by the rewritten head.
asio::awaitable<void> send_request_body(session& s, framing_parser<true>& parser, exchange_result& ex) {
  for (;;) {
    if (parser.is_done()) {
      ex.request_complete = true;
      co_return;
    }
    if (!s.in.empty()) {
      beast::error_code ec;
      const std::size_t n = parser.put(asio::buffer(s.in), ec);
      if (ec && ec != http::error::need_more) co_return;  // malformed body framing: stop here
      if (n > 0) {
        auto [wec, w] = co_await asio::async_write(s.upstream, asio::buffer(s.in.data(), n), nothrow);
        if (wec) co_return;
        ex.bytes_up += n;
        s.in.erase(0, n);
        continue;
      }
    }
    if (ex.response_complete) co_return;  // the answer came before the whole body
    // The parser consumed nothing of what is buffered: a chunk-size line or trailer is
    // incomplete. Bound what it may take (a line without an end is an attack).
    if (s.in.size() >= max_unparsed_bytes) co_return;
    const auto st = co_await read_more(s, steady::now() + s.cfg->limits.idle_timeout, max_unparsed_bytes);
    if (st != read_status::ok) co_return;
  }
}

// Upstream -> client: interim responses, the final response, or a 101.
asio::awaitable<void> relay_response(session& s, bool head_request, exchange_result& ex) {
  // Unparsed response bytes are kept in `buf`; each read lands in `chunk` first, which
  // is not zero-filled as growing a string would be.
  std::string buf;
  constexpr std::size_t chunk_size = 16384;
  const std::unique_ptr<char[]> chunk(new char[chunk_size]);
  // The upstream deadline: send_request_body runs at the same time under the client's.
  auto parser = std::make_unique<framing_parser<false>>();
  if (head_request) parser->skip(true);
  const auto idle = s.cfg->limits.idle_timeout;
  // However the response ends, the rest of a request body is of no use any more: stop
  // the body pump (the connection closes after this exchange).
  struct stop_body_pump {
    session& s;
    const exchange_result& ex;
    ~stop_body_pump() {
      if (ex.request_complete) return;
      boost::system::error_code ignored;
      s.client.cancel(ignored);
    }
  } stop_body{s, ex};
  for (;;) {
    if (!buf.empty()) {
      beast::error_code ec;
      const std::size_t n = parser->put(asio::buffer(buf), ec);
      if (ec && ec != http::error::need_more) co_return;
      // A final head has gone to the client once bytes were consumed past it (interim
      // 1xx heads may be followed by a 502 still).
      if (n > 0 && parser->is_header_done() && parser->status() >= 200) ex.status = parser->status();
      if (n > 0) {
        if (!co_await write_client(s, std::string_view(buf.data(), n))) co_return;
        ex.bytes_down += n;
        buf.erase(0, n);
      }
      if (parser->is_done()) {
        const int status = parser->status();
        if (status == 101) {
          ex.upgraded = true;
          ex.status = status;
          ex.response_complete = true;
          ex.upstream_leftover = std::move(buf);
          co_return;
        }
        if (status >= 100 && status < 200) {  // interim: the final response follows
          parser = std::make_unique<framing_parser<false>>();
          if (head_request) parser->skip(true);
          continue;
        }
        ex.status = status;
        ex.response_complete = true;
        ex.response_keep_alive = parser->keep_alive() && buf.empty();
        co_return;
      }
      if (n > 0 || (ec != http::error::need_more && !buf.empty())) continue;
    }
    if (buf.size() >= max_unparsed_bytes) co_return;  // see send_request_body
    s.arm_upstream(steady::now() + idle);
    auto [ec, n] = co_await s.upstream.async_read_some(asio::buffer(chunk.get(), chunk_size), nothrow);
    s.disarm_upstream();
    buf.append(chunk.get(), n);
    if (ec == asio::error::eof) {
      if (parser->is_header_done() && parser->need_eof()) {  // body delimited by close
        beast::error_code pec;
        parser->put_eof(pec);
        ex.status = parser->status();
        ex.response_complete = !pec;
        ex.response_keep_alive = false;
      }
      co_return;
    }
    if (ec) co_return;
  }
}

}  // namespace

asio::awaitable<void> serve_plain_http(session& s, proto::http_request req, std::size_t consumed) {
  const auto& limits = s.cfg->limits;
  std::optional<destination> current;  // the destination s.upstream is connected to, if any

  for (bool first_request = true;; first_request = false) {
    s.in.erase(0, consumed);
    // Each request is decided against the policy current when its head arrived.
    if (!first_request) s.policy = s.w.shared().policy.load();
    // The request's context: its record is written by account() on every exit below.
    request_context ctx(access_protocol::http, first_request ? s.started : steady::now());
    ctx.method = req.method;
    ctx.path = record_path(req.origin_form);

    // Decide this request on its own; reuse the upstream only for the same host and
    // port, still allowed (its address was judged by the guard when it was opened).
    destination d = decide_destination(s, req.host, req.port);
    if (current && s.upstream.is_open() && d.decision.result == policy::outcome::allow && d.port == current->port &&
        d.host.host->text == current->host.host->text) {
      const auto decision = d.decision;
      d = *current;
      d.decision = decision;
    } else {
      boost::system::error_code ignored;
      s.upstream.close(ignored);
      current.reset();
      if (d.decision.result == policy::outcome::allow) co_await dial(s, d);
    }
    ctx.dest = &d;
    if (!d.connected()) {
      const refusal r = refusal_for(s, d);
      ctx.status = d.error == dial_error::aborted ? 0 : r.status;
      account(s, ctx);
      if (d.error == dial_error::aborted) co_return;
      // Keep the client connection when nothing of this request is left to skip.
      const bool keep = req.keep_alive && req.body == proto::body_framing::none && !s.w.shared().draining;
      if (!co_await write_client(s, render_refusal(r, !keep)) || !keep) co_return;
    } else {
      current = d;
      const std::string head = proto::rewrite_to_origin_form(req, "egressd");
      framing_parser<true> request_parser;
      beast::error_code pec;
      request_parser.put(asio::buffer(head), pec);
      if (pec) {  // our parser accepted the head, Beast's framing does not: refuse it
        ctx.status = 400;
        ctx.source = error_source::client;
        ctx.error = "unsupported_framing";
        account(s, ctx);
        co_await send_refusal(s, plain_refusal(400, "http_request_error",
                                               "egressd: bad request: the message framing is not supported"));
        co_return;
      }
      auto [wec, wn] = co_await asio::async_write(s.upstream, asio::buffer(head), nothrow);
      if (wec) {
        ctx.status = 502;
        ctx.source = error_source::upstream;
        ctx.error = "request_not_sent";
        account(s, ctx);
        co_await send_refusal(s, plain_refusal(502, "destination_unavailable",
                                               "egressd: " + d.display_host() +
                                                   " closed the connection before the request was sent"));
        co_return;
      }
      exchange_result ex;
      if (request_parser.is_done()) {  // no body: one coroutine is enough
        ex.request_complete = true;
        co_await relay_response(s, req.method == "HEAD", ex);
      } else {
        co_await (send_request_body(s, request_parser, ex) && relay_response(s, req.method == "HEAD", ex));
      }
      ctx.has_bytes = true;
      ctx.bytes_up = ex.bytes_up;
      ctx.bytes_down = ex.bytes_down;
      if (ex.upgraded) {
        ctx.status = ex.status;
        account(s, ctx);
        if (!ex.upstream_leftover.empty() && !co_await write_client(s, ex.upstream_leftover)) co_return;
        co_await tunnel(s, ctx, 0);
        co_return;
      }
      if (!ex.response_complete) {
        // Upstream failed before a complete response: 502 if no final head was sent
        // yet; otherwise the client sees the response cut short and the connection close.
        ctx.status = ex.status ? ex.status : 502;
        ctx.source = error_source::upstream;
        ctx.error = "response_incomplete";
        account(s, ctx);
        if (ex.status == 0)
          co_await send_refusal(s, plain_refusal(502, "http_response_incomplete",
                                                 "egressd: " + d.display_host() +
                                                     " closed the connection without a complete response"));
        co_return;
      }
      ctx.status = ex.status;
      account(s, ctx);
      if (!ex.request_complete || !req.keep_alive || s.w.shared().draining) co_return;
      if (!ex.response_keep_alive) {
        boost::system::error_code ignored;
        s.upstream.close(ignored);
        current.reset();
      }
    }

    // The next request head: up to idle_timeout for it to start, then head_timeout.
    auto head = co_await read_request_head(s, steady::now() + limits.idle_timeout, /*idle_until_first_byte=*/true);
    if (!head) co_return;
    req = std::move(head->message);
    consumed = head->consumed;
    if (req.kind == proto::request_kind::connect) {
      // CONNECT after plain requests on one connection: refuse rather than mix modes.
      request_context refused(access_protocol::connect);
      refused.host = req.host;
      refused.port = req.port;
      refused.outcome = request_outcome::bad_request;
      refused.source = error_source::client;
      refused.error = "connect_after_plain_http";
      refused.status = 400;
      account(s, refused);
      co_await send_refusal(s, plain_refusal(400, "http_request_error",
                                             "egressd: CONNECT must be the first request on a connection"));
      co_return;
    }
    if (!co_await check_proxy_auth(s, req, access_protocol::http)) co_return;
  }
}

}  // namespace egressd::proxy::detail
