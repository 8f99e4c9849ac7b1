// `hook.url` (README "Hook protocol"): POST each question to an HTTP(S) endpoint.
// Flow: ask -> FIFO queue -> at most hook.concurrency requests (and connections) at
// once -> an idle keep-alive connection, or a new one (resolve, connect, TLS handshake
// with the peer verified) -> POST the question -> read the response (64 KiB body cap)
// -> a 2xx body is the answer -> the connection goes back to the idle list when both
// sides keep it alive. A reused connection that fails before any response byte (the
// server closed it while idle, RFC 9112 §9.3.1) is retried once on a new connection.
// cancel(id) closes that request's connection: the request is abandoned.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <deque>
#include <fstream>
#include <list>
#include <stdexcept>
#include <unordered_map>

#include "proxy/hook/transport.hpp"
#include "proxy/log.hpp"

namespace egressd::proxy::hook {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// An answer is a few hundred bytes; a larger body is not one.
constexpr std::size_t max_body_bytes = 64 * 1024;
constexpr std::size_t max_header_bytes = 16 * 1024;

struct endpoint_url {
  bool tls = false;
  std::string host;       ///< without IPv6 brackets: for resolving, SNI and verification
  std::string port;
  std::string authority;  ///< the Host header (RFC 9110 §7.2), as the URL wrote it
  std::string target;     ///< path and query, "/" at least
};

// hook.url was checked at load (http:// or https:// with a host); this splits it.
endpoint_url parse_url(std::string_view url) {
  endpoint_url u;
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) throw std::invalid_argument("hook.url: no scheme: " + std::string(url));
  std::string scheme(url.substr(0, scheme_end));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
  if (scheme == "https") {
    u.tls = true;
  } else if (scheme != "http") {
    throw std::invalid_argument("hook.url: the scheme must be http or https: " + std::string(url));
  }
  auto rest = url.substr(scheme_end + 3);
  const auto auth_end = rest.find_first_of("/?#");
  const auto authority = rest.substr(0, auth_end);
  auto target = auth_end == std::string_view::npos ? std::string_view{} : rest.substr(auth_end);
  target = target.substr(0, target.find('#'));  // a fragment is never sent (RFC 9110 §4.2.5)
  if (authority.find('@') != std::string_view::npos)
    throw std::invalid_argument("hook.url: user info is not supported; use hook.token_file");
  std::string_view host = authority, port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) throw std::invalid_argument("hook.url: unclosed [ in " + std::string(url));
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') port = authority.substr(close + 2);
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) throw std::invalid_argument("hook.url: no host in " + std::string(url));
  u.host = std::string(host);
  u.port = port.empty() ? (u.tls ? "443" : "80") : std::string(port);
  u.authority = std::string(authority);
  u.target = target.empty() ? "/" : (target.front() == '?' ? "/" + std::string(target) : std::string(target));
  return u;
}

// The first line of the token file, read once (a secret: never logged).
std::string read_token(const std::string& path) {
  if (path.empty()) return {};
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) throw std::runtime_error("hook.token_file: cannot read " + path);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) throw std::runtime_error("hook.token_file: the first line of " + path + " is empty");
  return line;
}

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

struct job {
  question q;
  transport::callback done;
};

// One connection to the endpoint, plain or TLS.
struct connection {
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;

  beast::tcp_stream& tcp() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
  void close() noexcept {
    if (!tls && !plain) return;  // cancelled while resolving: no socket yet
    boost::system::error_code ignored;
    tcp().socket().close(ignored);
  }
};

// A request's state, shared with cancel(): its resolver and current connection.
struct request_state {
  explicit request_state(const asio::any_io_executor& ex) : resolver(ex) {}
  tcp::resolver resolver;
  std::shared_ptr<connection> conn;
  bool cancelled = false;
};

struct exchange_outcome {
  boost::system::error_code ec;
  bool got_response_bytes = false;
  bool keep_alive = false;
  unsigned status = 0;
  std::string body;
};

template <class Stream>
asio::awaitable<exchange_outcome> exchange(Stream& stream, beast::flat_buffer& buffer,
                                           const http::request<http::string_body>& req) {
  exchange_outcome out;
  auto [wec, wn] = co_await http::async_write(stream, req, use_tuple);
  if (wec) {
    out.ec = wec;
    co_return out;
  }
  http::response_parser<http::string_body> parser;
  parser.body_limit(max_body_bytes);
  parser.header_limit(max_header_bytes);
  auto [rec, rn] = co_await http::async_read(stream, buffer, parser, use_tuple);
  out.got_response_bytes = parser.got_some() || buffer.size() > 0 || rn > 0;
  out.ec = rec;
  if (rec) co_return out;
  auto& res = parser.get();
  out.status = res.result_int();
  out.keep_alive = res.keep_alive();
  out.body = std::move(res.body());
  co_return out;
}

class http_core : public std::enable_shared_from_this<http_core> {
 public:
  http_core(asio::any_io_executor ex, const config::hook_config& cfg)
      : ex_(std::move(ex)),
        url_(parse_url(cfg.url)),
        token_(read_token(cfg.token_file)),
        concurrency_(std::max<std::size_t>(cfg.concurrency, 1)),
        tls_ctx_(asio::ssl::context::tls_client) {
    if (url_.tls) {
      tls_ctx_.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                           asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                           asio::ssl::context::no_tlsv1_1);
      if (cfg.ca_file.empty()) {
        tls_ctx_.set_default_verify_paths();
      } else {
        tls_ctx_.load_verify_file(cfg.ca_file);  // throws with the file's problem
      }
      tls_ctx_.set_verify_mode(asio::ssl::verify_peer);
    }
  }

  void ask(const question& q, transport::callback done) {
    if (stopped_) return;
    waiting_.push_back(job{q, std::move(done)});
    pump();
  }

  void cancel(std::uint64_t id) {
    const auto queued = std::find_if(waiting_.begin(), waiting_.end(), [&](const job& j) { return j.q.id == id; });
    if (queued != waiting_.end()) {
      waiting_.erase(queued);
      return;
    }
    const auto it = active_.find(id);
    if (it == active_.end()) return;
    abandon(*it->second);
  }

  void shutdown() {
    stopped_ = true;
    waiting_.clear();
    for (auto& [id, st] : active_) abandon(*st);
    for (auto& c : idle_) c->close();
    idle_.clear();
  }

 private:
  static void abandon(request_state& st) {
    st.cancelled = true;
    st.resolver.cancel();
    if (st.conn) st.conn->close();
  }

  void deliver(transport::callback done, result r) {
    asio::post(ex_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
  }

  void pump() {
    while (!stopped_ && !waiting_.empty() && active_.size() < concurrency_) {
      auto j = std::move(waiting_.front());
      waiting_.pop_front();
      auto st = std::make_shared<request_state>(ex_);
      if (!active_.emplace(j.q.id, st).second) {
        deliver(std::move(j.done), result{std::nullopt, failure::io_error, "question id already in flight"});
        continue;
      }
      asio::co_spawn(ex_, run(shared_from_this(), std::move(j), st), [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          log_event(log_level::error, "hook url: unexpected error", json_object().add("error", ex.what()));
        }
      });
    }
  }

  http::request<http::string_body> make_request(const question& q) const {
    http::request<http::string_body> req{http::verb::post, url_.target, 11};
    req.set(http::field::host, url_.authority);
    req.set(http::field::user_agent, "egressd");
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, "application/json");
    if (!token_.empty()) req.set(http::field::authorization, "Bearer " + token_);
    req.keep_alive(true);
    req.body() = to_json(q);
    req.prepare_payload();
    return req;
  }

  // A new connection: resolve, connect, TLS handshake. A failure is a result.
  asio::awaitable<std::optional<result>> open(request_state& st, const std::shared_ptr<connection>& c) {
    auto [rec, endpoints] = co_await st.resolver.async_resolve(url_.host, url_.port, use_tuple);
    if (st.cancelled) co_return result{std::nullopt, failure::io_error, "cancelled"};
    if (rec) co_return result{std::nullopt, failure::refused, url_.host + " does not resolve: " + rec.message()};
    if (url_.tls) {
      c->tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ex_, tls_ctx_);
    } else {
      c->plain = std::make_unique<beast::tcp_stream>(ex_);
    }
    auto [cec, ep] = co_await c->tcp().async_connect(endpoints, use_tuple);
    if (cec) {
      const auto why = cec == asio::error::connection_refused ? failure::refused : failure::io_error;
      co_return result{std::nullopt, why, "connect to " + url_.authority + ": " + cec.message()};
    }
    c->tcp().socket().set_option(tcp::no_delay(true));
    if (!c->tls) co_return std::nullopt;
    auto* ssl = c->tls->native_handle();
    // SNI names a host, never an address (RFC 6066 §3); the certificate must name the
    // URL's host, DNS name or IP address (RFC 6125), checked by OpenSSL's X509_check_*.
    if (!is_ip_literal(url_.host)) SSL_set_tlsext_host_name(ssl, url_.host.c_str());
    c->tls->set_verify_callback(asio::ssl::host_name_verification(url_.host));
    auto [hec] = co_await c->tls->async_handshake(asio::ssl::stream_base::client, use_tuple);
    if (hec) {
      std::string detail = "TLS handshake with " + url_.authority + ": " + hec.message();
      if (const long v = SSL_get_verify_result(ssl); v != X509_V_OK)
        detail += std::string(" (") + X509_verify_cert_error_string(v) + ")";
      co_return result{std::nullopt, failure::tls_error, std::move(detail)};
    }
    co_return std::nullopt;
  }

  static asio::awaitable<void> run(std::shared_ptr<http_core> self, job j, std::shared_ptr<request_state> st) {
    const auto req = self->make_request(j.q);
    std::optional<result> outcome;
    for (int attempt = 0; attempt < 2 && !outcome; ++attempt) {
      std::shared_ptr<connection> c;
      bool reused = false;
      if (attempt == 0 && !self->idle_.empty()) {  // the retry always opens a new one
        c = std::move(self->idle_.front());
        self->idle_.pop_front();
        reused = true;
      } else {
        c = std::make_shared<connection>();
      }
      st->conn = c;
      if (!reused) {
        if (auto failed = co_await self->open(*st, c)) {
          c->close();
          outcome = std::move(failed);
          break;
        }
      }
      if (st->cancelled) break;
      exchange_outcome ex;
      if (c->tls)
        ex = co_await exchange(*c->tls, c->buffer, req);
      else
        ex = co_await exchange(*c->plain, c->buffer, req);
      if (st->cancelled) break;
      if (ex.ec) {
        c->close();
        // The server may close an idle connection at any time (RFC 9112 §9.3.1): one
        // more try on a new connection, if nothing of a response had arrived.
        if (reused && !ex.got_response_bytes && attempt == 0) continue;
        if (ex.ec == http::error::body_limit)
          outcome = result{std::nullopt, failure::bad_answer, "response body over 64 KiB"};
        else
          outcome = result{std::nullopt, failure::io_error, "POST " + url_target(*self) + ": " + ex.ec.message()};
        break;
      }
      if (ex.keep_alive && !self->stopped_) {
        c->buffer.clear();
        self->idle_.push_back(c);
      } else {
        c->close();
      }
      if (ex.status < 200 || ex.status > 299) {
        outcome = result{std::nullopt, failure::http_error, "HTTP " + std::to_string(ex.status)};
      } else {
        auto parsed = parse_answer(ex.body);
        if (!parsed.value) {
          outcome = result{std::nullopt, failure::bad_answer, std::move(parsed.error)};
        } else if (parsed.value->id && *parsed.value->id != j.q.id) {
          outcome = result{std::nullopt, failure::bad_answer,
                           "the answer names question " + std::to_string(*parsed.value->id) + ", not " +
                               std::to_string(j.q.id)};
        } else {
          outcome = result{std::move(parsed.value), failure::none, "HTTP " + std::to_string(ex.status)};
        }
      }
    }
    st->conn.reset();
    const bool cancelled = st->cancelled || self->stopped_;
    if (const auto it = self->active_.find(j.q.id); it != self->active_.end() && it->second == st)
      self->active_.erase(it);
    if (!cancelled && outcome) self->deliver(std::move(j.done), std::move(*outcome));
    self->pump();
  }

  static std::string url_target(const http_core& self) { return self.url_.authority + self.url_.target; }

  asio::any_io_executor ex_;
  endpoint_url url_;
  std::string token_;
  std::size_t concurrency_;
  asio::ssl::context tls_ctx_;
  bool stopped_ = false;
  std::deque<job> waiting_;
  std::unordered_map<std::uint64_t, std::shared_ptr<request_state>> active_;
  // Idle keep-alive connections; with active_ never more than concurrency_ in all,
  // since a request takes an idle connection before it opens one.
  std::deque<std::shared_ptr<connection>> idle_;
};

}  // namespace

std::unique_ptr<transport> make_http_transport(boost::asio::any_io_executor ex, const config::hook_config& cfg) {
  return std::make_unique<shared_core_transport<http_core>>(std::move(ex), cfg);
}

}  // namespace egressd::proxy::hook
