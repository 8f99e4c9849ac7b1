// Flow of plain HTTP forwarding (absolute-form, RFC 9112 §3.2.2):
//  for each request head on the client connection:
//   1. the head was parsed (framing normalised or refused: one Content-Length value, or
//      Transfer-Encoding: chunked alone; RFC 9112 §6.3) and is decided on its own,
//      against the reload generation (config and policy, loaded as one) current when
//      its head arrived; proxy auth is checked on every request;
//   2. the upstream connection is reused when the previous exchange went to the same
//      host and port, both sides kept it alive, and the current policy still lets its
//      address through the guard; otherwise it goes to the worker's idle pool (or is
//      closed), and the request takes one from the pool (same host, port, reload
//      generation and user; upstream_pool.hpp) or opens a fresh one through
//      decide -> resolve -> guard -> dial;
//   3. the head is rewritten to origin-form without hop-by-hop and Proxy-* fields;
//   4. the request body (client -> upstream) and the response (upstream -> client) are
//      streamed concurrently, so `Expect: 100-continue` and early answers work. Message
//      framing (Content-Length, chunked, read-until-close) comes from Beast's parser fed
//      through put(); the bytes themselves are forwarded exactly as received, except
//      that an HTTP/1.0 client gets a chunked response de-chunked and close-delimited
//      (RFC 9112 §6.1) and no 1xx (RFC 9110 §15.2). Malformed framing ends the exchange
//      at once: 400 for the request's, 502 (or a cut connection) for the response's;
//   5. a reused upstream that closes before any byte of a response is retried once on
//      a fresh connection, for a bodyless idempotent request (RFC 9110 §9.2.2,
//      RFC 9112 §9.3.1);
//   6. a 101 response turns the connection into a tunnel (WebSocket); otherwise the next
//      head is read if both sides keep the connection alive;
//   7. when the client connection ends, an upstream connection whose last exchange
//      ended cleanly (a complete response, both ways kept alive) goes to the worker's
//      idle pool for a later client connection of the same worker.
//  Every wait has a deadline: reads and writes on each side, in every phase, under
//  limits.idle_timeout (upstream reads and writes have separate deadlines, since both
//  may wait at once), dials under connect_timeout, heads under head_timeout.
//  Bytes are only ever forwarded inside a request whose destination was decided.

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

#include <memory>
#include <optional>

#include "proxy/log.hpp"
#include "proxy/net.hpp"
#include "proxy/runtime.hpp"
#include "proxy/session_impl.hpp"
#include "proxy/upstream_pool.hpp"

namespace egressd::proxy::detail {

namespace beast = boost::beast;
namespace http = beast::http;
namespace proto = egressd::proxy::protocol;
using namespace asio::experimental::awaitable_operators;

namespace {

// A Beast parser used only for message framing: it tells where a message ends and
// keeps the status code; the bytes are forwarded unchanged by the caller (or, to
// de-chunk, the chunk data is collected in `chunk_sink`).
template <bool IsRequest>
class framing_parser : public http::basic_parser<IsRequest> {
 public:
  framing_parser() {
    this->eager(true);
    this->body_limit(boost::none);
    this->header_limit(64 * 1024);
  }
  int status() const noexcept { return status_; }
  bool has_transfer_encoding() const noexcept { return transfer_encoding_; }

  /// When set, the data of each chunk is appended here (to pass the body on de-chunked).
  std::string* chunk_sink = nullptr;

 private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int, beast::error_code&) override {}
  void on_response_impl(int code, beast::string_view, int, beast::error_code&) override { status_ = code; }
  void on_field_impl(http::field f, beast::string_view, beast::string_view value, beast::error_code& ec) override {
    // Requests were normalised by parse_http_head; responses are held to the same
    // strict reading: one Content-Length field with one value (RFC 9110 §8.6 lets us
    // refuse a list), and never Content-Length with Transfer-Encoding (RFC 9112 §6.3
    // item 3: ought to be handled as an error; forwarding it invites smuggling).
    if (f == http::field::content_length) {
      if (content_length_ || value.find(',') != beast::string_view::npos) ec = http::error::bad_content_length;
      content_length_ = true;
    } else if (f == http::field::transfer_encoding) {
      transfer_encoding_ = true;
    }
  }
  void on_header_impl(beast::error_code& ec) override {
    if (content_length_ && transfer_encoding_) ec = http::error::bad_transfer_encoding;
  }
  void on_body_init_impl(const boost::optional<std::uint64_t>&, beast::error_code&) override {}
  std::size_t on_body_impl(beast::string_view body, beast::error_code&) override { return body.size(); }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, beast::error_code&) override {
    if (chunk_sink != nullptr) chunk_sink->append(body.data(), body.size());
    return body.size();
  }
  void on_finish_impl(beast::error_code&) override {}

  int status_ = 0;
  bool content_length_ = false;
  bool transfer_encoding_ = false;
};

// Bytes the framing parser may hold back unparsed (an incomplete chunk-size line,
// trailer, or response head) before the exchange is abandoned.
constexpr std::size_t max_unparsed_bytes = 64 * 1024;

// RFC 9112 §7.1: chunk-size lines and trailer lines end in CRLF. Beast refuses a CR
// without its LF but keeps waiting for the end of a line that has a bare LF. Once the
// head is parsed the parser only holds back such lines, so an LF among the held bytes
// without a CR before it is malformed framing, refused at once rather than at the
// idle timeout.
bool has_bare_lf(std::string_view held) noexcept {
  for (auto i = held.find('\n'); i != std::string_view::npos; i = held.find('\n', i + 1))
    if (i == 0 || held[i - 1] != '\r') return true;
  return false;
}

struct exchange_result {
  bool request_complete = false;
  bool request_malformed = false;  ///< the client's body framing was refused
  bool response_complete = false;
  bool response_keep_alive = false;
  bool response_malformed = false;  ///< the origin's framing was refused
  bool response_started = false;    ///< a byte of a response arrived
  bool upstream_closed = false;     ///< EOF or reset from the upstream before a complete response
  bool close_client = false;        ///< the response is delimited by closing the client connection
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
      if ((ec && ec != http::error::need_more) || (n == 0 && has_bare_lf(s.in))) {
        // Malformed body framing (a bad chunk size, a bare LF): the request is refused
        // now; cancelling the upstream ends the response side too.
        ex.request_malformed = true;
        boost::system::error_code ignored;
        s.upstream.cancel(ignored);
        co_return;
      }
      if (n > 0) {
        if (!co_await write_upstream(s, std::string_view(s.in.data(), n))) co_return;
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
asio::awaitable<void> relay_response(session& s, const proto::http_request& req, exchange_result& ex) {
  const bool head_request = req.method == "HEAD";
  // An HTTP/1.0 client cannot read chunked (RFC 9112 §6.1) nor 1xx (RFC 9110 §15.2):
  // its responses' heads are looked at before anything is forwarded (eager off until
  // the head is parsed, so put() stops right after it).
  const bool client_1_0 = req.version == proto::http_version::http_1_0;
  // Unparsed response bytes are kept in `buf`; each read lands in `chunk` first, which
  // is not zero-filled as growing a string would be.
  std::string buf;
  std::string dechunked;  // chunk data to pass on, when de-chunking
  std::string rewritten_head;
  constexpr std::size_t chunk_size = 16384;
  const std::unique_ptr<char[]> chunk(new char[chunk_size]);
  const auto new_parser = [&] {
    auto p = std::make_unique<framing_parser<false>>();
    if (head_request) p->skip(true);
    if (client_1_0) p->eager(false);
    return p;
  };
  // The upstream deadline: send_request_body runs at the same time under the client's.
  auto parser = new_parser();
  bool head_handled = false;  // for an HTTP/1.0 client: the current message's head was looked at
  const auto idle = s.cfg->limits.idle_timeout;
  // However the response ends, the rest of a request body is of no use any more: stop
  // the body pump, whether it waits on the client or on an upstream that stopped
  // reading (the connection closes after this exchange).
  struct stop_body_pump {
    session& s;
    const exchange_result& ex;
    ~stop_body_pump() {
      if (ex.request_complete) return;
      boost::system::error_code ignored;
      s.client.cancel(ignored);
      s.upstream.cancel(ignored);
    }
  } stop_body{s, ex};
  for (;;) {
    if (!buf.empty()) {
      beast::error_code ec;
      const std::size_t n = parser->put(asio::buffer(buf), ec);
      if ((ec && ec != http::error::need_more) || (n == 0 && parser->is_header_done() && has_bare_lf(buf))) {
        ex.response_malformed = true;
        co_return;
      }
      std::string_view out(buf.data(), n);
      if (client_1_0 && n > 0 && parser->is_header_done() && !head_handled) {
        // `out` is exactly the head (eager was off).
        head_handled = true;
        parser->eager(true);
        const int status = parser->status();
        if (status >= 100 && status < 200 && status != 101) {
          out = {};  // interim: not for an HTTP/1.0 client
        } else if (parser->chunked()) {
          rewritten_head = proto::close_delimited_response_head(out);
          out = rewritten_head;
          parser->chunk_sink = &dechunked;
          ex.close_client = true;
        } else if (parser->has_transfer_encoding()) {
          // A coding we cannot take off (gzip, ...) may not reach an HTTP/1.0 client.
          ex.response_malformed = true;
          co_return;
        }
      } else if (parser->chunk_sink != nullptr) {
        out = dechunked;
      }
      // A final head has gone to the client once bytes were consumed past it (interim
      // 1xx heads may be followed by a 502 still).
      if (n > 0 && parser->is_header_done() && parser->status() >= 200) ex.status = parser->status();
      if (!out.empty() && !co_await write_client(s, out)) co_return;
      ex.bytes_down += out.size();
      dechunked.clear();
      buf.erase(0, n);
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
          parser = new_parser();
          head_handled = false;
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
    // The body pump may have refused the request before this read was started (its
    // cancel then found nothing to cancel).
    if (ex.request_malformed) co_return;
    s.arm_upstream(steady::now() + idle);
    auto [ec, n] = co_await s.upstream.async_read_some(asio::buffer(chunk.get(), chunk_size), nothrow);
    s.disarm_upstream();
    if (n > 0) ex.response_started = true;
    buf.append(chunk.get(), n);
    if (ec == asio::error::eof) {
      if (parser->is_header_done() && parser->need_eof()) {  // body delimited by close
        beast::error_code pec;
        parser->put_eof(pec);
        ex.status = parser->status();
        ex.response_complete = !pec;
        ex.response_keep_alive = false;
        // The client, too, can only see where this body ends by the close (RFC 9112 §6.3 item 8).
        ex.close_client = true;
      }
      ex.upstream_closed = !ex.response_complete;
      co_return;
    }
    if (ec) {
      ex.upstream_closed = ec == asio::error::connection_reset;
      co_return;
    }
  }
}

// RFC 9110 §9.2.2: methods whose repetition has the effect of one request. Only
// requests without a body are retried, so nothing is buffered for a retry.
bool idempotent(std::string_view method) noexcept {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" || method == "PUT" ||
         method == "DELETE";
}

// A pooled upstream was dialled under the policy of an earlier request: before it
// carries another, its address is judged again by the current policy's guard (deny
// entries, guard.deny_ranges, the builtin classes), as dial() would judge it now. A
// pure call: no lookup, no allocation.
bool upstream_still_allowed(const session& s, const destination& d, const policy::decision& now) noexcept {
  return policy::classify(*s.policy, *d.host.host, now.reason, to_policy(d.remote.address()), d.port,
                          *s.gen->local_addresses)
      .allowed();
}

// A reload that came while this exchange ran found no idle upstream to revoke
// (worker::revoke): decide it here, once the exchange is done. One load of a line only
// reloads write when nothing was reloaded.
bool pooled_upstream_revoked(session& s, const destination& d) {
  if (s.w.shared().generation_number.load(std::memory_order_acquire) == s.pin.number()) return false;
  const auto g = s.w.shared().current.load();
  if (g.get() == s.gen || !g->config->reload.revoke || !d.host.ok()) return false;
  if (!revoked_by(*g, s.w.shared().hooks, d.host.host->text, d.port, d.decision.reason)) return false;
  boost::system::error_code ignored;
  s.upstream.close(ignored);
  log_event(log_level::info, "pooled upstream connection closed: revoked",
            json_object().add("id", s.id).add("host", d.host.host->text).add("port", static_cast<unsigned>(d.port)));
  return true;
}

// The upstream connection of a client connection, between its requests.
struct upstream_state {
  std::optional<destination> current;  ///< the destination s.upstream is connected to, if any
  /// The generation whose policy last let `current` through (its dial or its reuse):
  /// the session's own, set or cleared at every request, so it is never stale.
  const generation* judged_by = nullptr;
  /// The last exchange on it ended cleanly: a complete response, the request sent
  /// whole, the origin keeping the connection (RFC 9112 §9.3); reusable by anyone.
  bool idle = false;
};

// A connection from the worker's idle pool for an allowed destination: same host,
// port, generation and user, its address judged by this request's guard as well.
bool take_pooled(session& s, destination& d) {
  auto c = s.w.idle_upstreams().take(d.host.host->text, d.port, *s.gen, s.user);
  if (!c) return false;
  d.remote = c->remote;
  if (!upstream_still_allowed(s, d, d.decision)) {
    d.remote = {};
    return false;  // closed as `c` goes
  }
  s.upstream = std::move(c->socket);
  return true;
}

// Lets go of the client connection's upstream: an idle one, allowed by the generation
// in force, goes to the worker's pool (which may close it: full, off, draining);
// anything else is closed.
void release_upstream(session& s, upstream_state& u) {
  // The session's generation is still the newest (one load of a line only reloads
  // write); the pool holds it by a copy of the session's pin, counted in this worker.
  if (u.idle && u.current && u.current->host.ok() && s.upstream.is_open() && !s.aborted && u.judged_by == s.gen &&
      s.w.shared().generation_number.load(std::memory_order_acquire) == s.pin.number())
    s.w.idle_upstreams().put(pooled_connection{std::move(s.upstream), u.current->host.host->text, u.current->port,
                                               u.current->remote, u.current->decision.reason, s.pin,
                                               std::string(s.user)},
                             s.cfg->limits);
  boost::system::error_code ignored;
  s.upstream.close(ignored);
  u.current.reset();
  u.judged_by = nullptr;
  u.idle = false;
}

// Answers a request whose destination could not be used. True when the client
// connection stays open for the next request.
asio::awaitable<bool> refuse_request(session& s, request_context& ctx, const destination& d,
                                     const proto::http_request& req) {
  const refusal r = refusal_for(s, d);
  ctx.status = silent(d.error) ? 0 : r.status;
  account(s, ctx);
  if (silent(d.error)) co_return false;
  // Keep the client connection when nothing of this request is left to skip.
  const bool keep = req.keep_alive && req.body == proto::body_framing::none && !s.w.shared().draining;
  co_return co_await write_client(s, render_refusal(r, !keep)) && keep;
}

asio::awaitable<void> serve_requests(session& s, proto::http_request req, std::size_t consumed, upstream_state& u) {
  std::optional<destination>& current = u.current;

  for (bool first_request = true;; first_request = false) {
    s.in.erase(0, consumed);
    // The request's context: its record is written by account() on every exit below.
    request_context ctx(access_protocol::http, first_request ? s.started : steady::now());
    ctx.method = req.method;
    ctx.path = record_path(req.origin_form);

    // Decide this request on its own; reuse the upstream only for the same host and
    // port, still allowed by the current policy, its address included.
    destination d = co_await decide_destination(s, req.host, req.port, access_protocol::http);
    bool reused = false;
    if (current && s.upstream.is_open() && d.decision.result == policy::outcome::allow && d.port == current->port &&
        d.host.host->text == current->host.host->text && upstream_still_allowed(s, *current, d.decision)) {
      const auto decision = d.decision;
      d = *current;
      d.decision = decision;
      d.connect_time.reset();  // no dial for this request: no connect_us, no connect latency
      reused = true;
      u.judged_by = s.gen;
      u.idle = false;  // busy until this exchange ends cleanly
    }
    if (!reused) {
      // The previous upstream goes to the worker's pool if it may (or is closed): one
      // the current policy refuses is closed, and the dial refuses anew.
      release_upstream(s, u);
      if (d.decision.result == policy::outcome::allow) {
        if (take_pooled(s, d)) {
          reused = true;
        } else {
          co_await dial(s, d);
        }
      }
      if (d.connected()) u.judged_by = s.gen;
    }
    ctx.dest = &d;
    if (!d.connected()) {
      if (!co_await refuse_request(s, ctx, d, req)) co_return;
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
      const bool has_body = !request_parser.is_done();
      exchange_result ex;
      bool sent = false;
      for (int attempt = 0;; ++attempt) {
        ex = exchange_result{};
        sent = co_await write_upstream(s, head);
        if (sent) {
          if (!has_body) {  // one coroutine is enough
            ex.request_complete = true;
            co_await relay_response(s, req, ex);
          } else {
            co_await (send_request_body(s, request_parser, ex) && relay_response(s, req, ex));
          }
        }
        // A reused connection may have been closed by the origin while idle (RFC 9112
        // §9.3.1 race): retry once on a fresh one when nothing of a response came, the
        // request has no body and is idempotent (RFC 9110 §9.2.2), as Squid and Envoy do.
        const bool retry = attempt == 0 && reused && !has_body && idempotent(req.method) && !ex.response_started &&
                           (!sent || ex.upstream_closed) && !s.aborted;
        if (!retry) break;
        boost::system::error_code ignored;
        s.upstream.close(ignored);
        current.reset();
        reused = false;
        d = co_await decide_destination(s, req.host, req.port, access_protocol::http);
        if (d.decision.result == policy::outcome::allow) co_await dial(s, d);
        if (!d.connected()) break;
        current = d;
        u.judged_by = s.gen;
      }
      ctx.upstream_reused = reused;
      ctx.has_bytes = sent;
      ctx.bytes_up = ex.bytes_up;
      ctx.bytes_down = ex.bytes_down;
      if (!d.connected()) {
        if (!co_await refuse_request(s, ctx, d, req)) co_return;
      } else if (!sent) {
        ctx.status = 502;
        ctx.source = error_source::upstream;
        ctx.error = "request_not_sent";
        account(s, ctx);
        co_await send_refusal(s, plain_refusal(502, "destination_unavailable",
                                               "egressd: " + d.display_host() +
                                                   " closed the connection before the request was sent"));
        co_return;
      } else if (ex.request_malformed) {
        // RFC 9112 §7.1: the client's chunked framing is broken; nothing after it can
        // be read in step. 400 if no response head went out yet; close both sides.
        ctx.status = ex.status ? ex.status : 400;
        ctx.source = error_source::client;
        ctx.error = "malformed_body";
        account(s, ctx);
        if (ex.status == 0)
          co_await send_refusal(s, plain_refusal(400, "http_request_error",
                                                 "egressd: bad request: malformed chunked request body"));
        co_return;
      } else if (ex.upgraded) {
        ctx.status = ex.status;
        account(s, ctx);
        if (!ex.upstream_leftover.empty() && !co_await write_client(s, ex.upstream_leftover)) co_return;
        co_await tunnel(s, ctx, 0);
        co_return;
      } else if (!ex.response_complete) {
        // Upstream failed before a complete response: 502 if no final head was sent
        // yet; otherwise the client sees the response cut short and the connection close.
        ctx.status = ex.status ? ex.status : 502;
        ctx.source = error_source::upstream;
        ctx.error = ex.response_malformed ? "response_malformed" : "response_incomplete";
        account(s, ctx);
        if (ex.status == 0) {
          // Built before the co_await: GCC mishandles temporaries of a ?: inside one.
          const std::string details =
              "egressd: " + d.display_host() +
              (ex.response_malformed ? " sent a response with malformed framing"
                                     : " closed the connection without a complete response");
          co_await send_refusal(s, plain_refusal(502, "http_response_incomplete", details));
        }
        co_return;
      } else {
        ctx.status = ex.status;
        account(s, ctx);
        u.idle = ex.request_complete && ex.response_keep_alive;
        if (ex.close_client) {  // the body is delimited by the close (read until close, or de-chunked for HTTP/1.0)
          boost::system::error_code ignored;
          s.client.shutdown(asio::socket_base::shutdown_send, ignored);
          co_return;
        }
        if (!ex.request_complete || !req.keep_alive || s.w.shared().draining) co_return;
        if (!ex.response_keep_alive) {
          boost::system::error_code ignored;
          s.upstream.close(ignored);
          current.reset();
          u.idle = false;
        }
      }
    }

    // The next request head: up to idle_timeout for it to start, then head_timeout.
    if (current && s.upstream.is_open() && pooled_upstream_revoked(s, *current)) current.reset();
    s.idle_upstream = current && s.upstream.is_open() ? &*current : nullptr;  // revocation may close it meanwhile
    auto next = co_await read_request_head(s, steady::now() + s.cfg->limits.idle_timeout,
                                           /*idle_until_first_byte=*/true);
    s.idle_upstream = nullptr;
    if (!next) co_return;
    req = std::move(next->message);
    consumed = next->consumed;
    // Each request is authenticated, limited and decided by the reload generation
    // current when its head arrived (config and policy as one pair; runtime::current).
    s.load_generation();
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

}  // namespace

asio::awaitable<void> serve_plain_http(session& s, proto::http_request req, std::size_t consumed) {
  upstream_state u;
  co_await serve_requests(s, std::move(req), consumed, u);
  // The client connection is done; its upstream may serve another one.
  release_upstream(s, u);
}

}  // namespace egressd::proxy::detail
