#pragma once
// Internals shared by session.cpp (sniffing, CONNECT, SOCKS5) and http_forward.cpp
// (plain HTTP). Not a public interface.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "policy/guard.hpp"
#include "policy/host.hpp"
#include "policy/snapshot.hpp"
#include "proxy/hook/coordinator.hpp"
#include "proxy/metrics.hpp"
#include "proxy/protocol/http_head.hpp"
#include "proxy/protocol/socks5.hpp"
#include "proxy/relay.hpp"
#include "proxy/responses.hpp"
#include "proxy/runtime.hpp"
#include "proxy/session.hpp"
#include "proxy/worker.hpp"

namespace egressd::proxy::detail {

namespace asio = boost::asio;
using client_socket = asio::generic::stream_protocol::socket;
using asio::ip::tcp;
using steady = std::chrono::steady_clock;
inline constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

/// Why a destination could not be reached, for the reply and the access record.
enum class dial_error : std::uint8_t {
  none,
  invalid_host,     ///< not a usable host or port (400 / SOCKS 02)
  denied,           ///< the policy refused it (403 / 02)
  resolve_failed,   ///< no such name, or DNS failed (502 / 04)
  guard_refused,    ///< every address was refused by the guard (403 / 02)
  refused,          ///< connection refused (502 / 05)
  unreachable,      ///< host unreachable (502 / 04)
  net_unreachable,  ///< network unreachable (502 / 03)
  timeout,          ///< connect timeout (504 / 06)
  aborted,          ///< the proxy is shutting down
  client_closed,    ///< the client went away while its request was held for the hook
};
std::string_view to_string(dial_error e) noexcept;
/// No reply goes to the client: the proxy is stopping, or the client is gone.
constexpr bool silent(dial_error e) noexcept { return e == dial_error::aborted || e == dial_error::client_closed; }

/// The protocol a request came in, named in access records exactly as here.
enum class access_protocol : std::uint8_t {
  connect,  ///< HTTP CONNECT (a tunnel)
  http,     ///< plain HTTP (absolute-form), one record per exchange
  socks5,   ///< RFC 1928
  socks4,   ///< SOCKS4/4a: refused (egressd speaks SOCKS5 only)
};
/// Who made a request fail, named in access records exactly as here.
enum class error_source : std::uint8_t {
  none,      ///< nothing failed
  client,    ///< a malformed or unauthenticated request, a head that did not arrive
  policy,    ///< the policy or the address guard refused the destination
  upstream,  ///< the destination failed: no such name, refused, unreachable, timeout
  proxy,     ///< egressd itself (shutting down)
};
/// Who gave the decision. `rule` covers the `unknown: deny` default too.
enum class answered_by : std::uint8_t {
  rule,         ///< a configured rule or the `unknown` default
  report_only,  ///< `unknown: allow` let an unknown destination through
  remembered,   ///< a remembered hook answer (decision memory, decisions_file)
  hook,         ///< the hook, or its fallback (timeout, failure, overload: the reason says)
  by_hand,      ///< a person, through the admin API, the CLI or the page
};
/// How a request ended before (or instead of) a policy decision. The record's
/// `reason` is this name for every value but `decided`, where it is the policy's
/// decision_reason. Request outcomes, not policy reasons: a closed set of their own.
enum class request_outcome : std::uint8_t {
  decided,               ///< the policy decided; its reason stands
  auth_failed,           ///< proxy authentication missing or wrong (407, RFC 1929 status 01)
  bad_request,           ///< a malformed or oversized head (400, 431), or one cut short
  head_timeout,          ///< the head did not arrive within limits.head_timeout (408)
  unsupported_protocol,  ///< SOCKS4 (refused with 0x5B), or a protocol the listener does not serve
  unsupported_command,   ///< SOCKS5 BIND or UDP ASSOCIATE (07)
};
std::string_view to_string(access_protocol p) noexcept;
std::string_view to_string(error_source e) noexcept;
std::string_view to_string(answered_by a) noexcept;
std::string_view to_string(request_outcome o) noexcept;

/// The state of one client connection. Its deadlines are kept by the worker's sweep:
/// when `client_deadline` passes, the pending client operation is cancelled and
/// `client_timed_out` set (likewise for the upstream), so a wait under a deadline is a
/// plain co_await, with no timer and no race of two operations.
struct destination;

struct session final : worker_task {
  session(worker& w, const listener_info& l, client_socket c, std::string peer);
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  void abort() noexcept override;
  void check_deadline(steady::time_point now) noexcept override;
  /// Closes the pooled upstream connection while it waits for the next request, when
  /// the new policy denies its destination (reload.revoke).
  bool revoke(const revocation& r) override;

  /// Arms the client (or upstream) deadline for the next operation; disarm after it.
  void arm_client(steady::time_point deadline) noexcept {
    client_deadline = deadline;
    client_timed_out = false;
  }
  void arm_upstream(steady::time_point deadline) noexcept {
    upstream_deadline = deadline;
    upstream_timed_out = false;
  }
  void disarm_client() noexcept { client_deadline = steady::time_point::max(); }
  /// Writes to the client have their own deadline: a response is written while the
  /// request body may still be read.
  void arm_client_write(steady::time_point deadline) noexcept { client_write_deadline = deadline; }
  void disarm_client_write() noexcept { client_write_deadline = steady::time_point::max(); }
  void disarm_upstream() noexcept { upstream_deadline = steady::time_point::max(); }
  /// Writes to the upstream likewise: a request body is written while the response is
  /// read, and each wait needs its own bound.
  void arm_upstream_write(steady::time_point deadline) noexcept { upstream_write_deadline = deadline; }
  void disarm_upstream_write() noexcept { upstream_write_deadline = steady::time_point::max(); }

  /// Takes the current reload generation (config, policy, local addresses) if it
  /// changed since the last call. Called when a request head has arrived, so that
  /// request is authenticated, limited and decided by one consistent generation.
  void load_generation() noexcept;

  worker& w;
  const listener_info& listener;
  client_socket client;
  tcp::socket upstream;
  std::uint64_t id;
  std::string peer;
  generation_pin pin;           ///< keeps *gen alive (counted in this worker only)
  const generation* gen;        ///< where cfg and policy come from
  const config::config* cfg;
  /// The authenticated user (a view into *cfg), empty when none.
  std::string_view user;
  const policy::snapshot* policy;
  std::string in;  ///< bytes from the client not consumed yet
  /// The destination of the pooled keep-alive upstream while the session waits for the
  /// next request on the client connection (http_forward.cpp); null otherwise.
  const destination* idle_upstream = nullptr;
  /// The hook wait this session is held on, if any: abort() cancels it.
  std::shared_ptr<hook::coordinator::wait> held;
  bool aborted = false;
  steady::time_point client_deadline = steady::time_point::max();
  steady::time_point upstream_deadline = steady::time_point::max();
  steady::time_point client_write_deadline = steady::time_point::max();
  steady::time_point upstream_write_deadline = steady::time_point::max();
  bool client_timed_out = false;
  bool upstream_timed_out = false;
  steady::time_point started = steady::now();
};

/// A destination after decide -> resolve -> guard -> dial.
struct destination {
  std::string raw_host;
  policy::host_result host;
  std::uint16_t port = 0;
  policy::decision decision;
  answered_by who = answered_by::rule;  ///< who gave `decision`
  std::uint64_t question_id = 0;        ///< the hook question that decided, if one did
  std::string hook_reason;              ///< the hook answer's text, or its failure's detail
  policy::address_class refused_class = policy::address_class::none;
  std::string refused_address;
  dial_error error = dial_error::none;
  tcp::endpoint remote;
  std::optional<std::chrono::microseconds> connect_time;  ///< set once a dial was attempted

  bool connected() const noexcept { return error == dial_error::none; }
  /// The canonical host if valid, else the raw one (for messages).
  const std::string& display_host() const noexcept { return host.ok() ? host.host->text : raw_host; }
};

/// The decision path (upstream.cpp): canonical host -> policy::decide -> a remembered
/// answer -> the hook (holding the request; the client, a drain or the hook timeout
/// end the wait) -> resolve -> guard -> dial. A refused destination comes back with
/// its error set.
asio::awaitable<destination> decide_destination(session& s, std::string_view raw_host, std::uint16_t port,
                                                access_protocol protocol);
/// Resolves, guards and dials an allowed destination, leaving `s.upstream` connected on
/// success. Never throws for network errors; the outcome is in `d`.
asio::awaitable<void> dial(session& s, destination& d);
/// decide_destination, then dial what is allowed.
asio::awaitable<destination> open_upstream(session& s, std::string_view raw_host, std::uint16_t port,
                                           access_protocol protocol);

/// Reads more client bytes into s.in, at most up to `limit` bytes held. False on EOF,
/// error, or when `deadline` passes. `likely_there`: the bytes have probably arrived
/// (a connection's first read), so a direct read is tried before the event loop.
enum class read_status : std::uint8_t { ok, eof, timeout, error, full };
asio::awaitable<read_status> read_more(session& s, steady::time_point deadline, std::size_t limit,
                                       bool likely_there = false);

/// Writes all of `data` to the client: what the socket takes at once directly, the
/// rest through the event loop. False on error, or when the client takes none of it
/// for limits.idle_timeout.
asio::awaitable<bool> write_client(session& s, std::string_view data);
/// Writes all of `data` to the upstream, under its own deadline (limits.idle_timeout):
/// an origin that stops reading cannot hold the session. False on error or timeout
/// (the upstream socket is then cancelled, so a concurrent upstream read ends too).
asio::awaitable<bool> write_upstream(session& s, std::string_view data);

/// The typed context of one request (a CONNECT or SOCKS session's decision, one
/// plain-HTTP exchange, or an early refusal): everything its access record says, in
/// values and views, so filling it allocates nothing. account() turns it into the
/// record; the tunnel's closing record is pre-rendered from it.
struct request_context {
  explicit request_context(access_protocol p, steady::time_point start = steady::now()) noexcept
      : protocol(p), started(start) {}

  access_protocol protocol;
  steady::time_point started;             ///< when the request (its head) began
  const destination* dest = nullptr;      ///< the destination decided, if one was
  std::string_view host;                  ///< without `dest`: the host the client named, if known
  std::uint16_t port = 0;                 ///< with `host`
  request_outcome outcome = request_outcome::decided;
  /// What failed and who caused it; without them a refused `dest` supplies both.
  error_source source = error_source::none;
  std::string_view error;                 ///< a closed name (dial_error, parse_errc, ...)
  int status = 0;                         ///< the HTTP status sent; 0: none (SOCKS, or no answer)
  std::optional<protocol::socks5_reply_code> socks_reply;  ///< the SOCKS5 reply sent, if any
  std::string_view method;                ///< plain HTTP
  std::string_view path;                  ///< plain HTTP: the path without query or fragment
  bool has_bytes = false;                 ///< plain HTTP: bytes_up/bytes_down are meaningful
  std::uint64_t bytes_up = 0;             ///< request body bytes sent upstream
  std::uint64_t bytes_down = 0;           ///< response bytes (head and body) sent to the client
  /// plain HTTP: the exchange went over an upstream connection that carried an earlier
  /// one (this client connection's, or one from the worker's idle pool)
  bool upstream_reused = false;
  /// The domain's metric handles, looked up once by account(); a tunnel that follows
  /// takes its byte counters from here.
  mutable domain_metrics* domain = nullptr;
};

/// Ends a request: updates its metrics (a cached lookup of its domain's handles, then
/// atomics) and writes its access record (skipped when audit is off). Every request
/// ends in exactly one call, on every exit.
void account(const session& s, const request_context& ctx);
/// The record of a closed tunnel: the request's fields and the relay's outcome.
void account_tunnel(const session& s, const request_context& ctx, const relay_result& r);

/// The path of an origin-form request-target without its query and fragment (what
/// records carry: a query may hold tokens).
std::string_view record_path(std::string_view origin_form) noexcept;

/// The HTTP refusal for a destination that could not be used.
refusal refusal_for(const session& s, const destination& d);
/// The SOCKS5 reply code for a destination that could not be used.
protocol::socks5_reply_code socks_code_for(const destination& d) noexcept;

/// Writes the refusal to the client and shuts down the sending side.
asio::awaitable<void> send_refusal(session& s, const refusal& r);

/// Reads until a whole request head is in s.in and parses it. Answers 400/431 for a bad
/// head and 408 when it does not arrive by `deadline`, accounts for it, and then
/// returns nullopt (the session ends). With `idle_until_first_byte` (between keep-alive requests) the
/// deadline covers only the wait for the head's first byte, and the head then has
/// limits.head_timeout to complete; a connection idle past it closes silently.
asio::awaitable<std::optional<protocol::parsed<protocol::http_request>>> read_request_head(
    session& s, steady::time_point deadline, bool idle_until_first_byte);

/// True when proxy auth is off or `req` carries valid credentials (s.user is then
/// set); otherwise answers 407 with a challenge, accounts for it as `protocol`, and
/// returns false.
asio::awaitable<bool> check_proxy_auth(session& s, const protocol::http_request& req, access_protocol protocol);

/// The tunnel after a success reply: s.in[consumed, end) goes upstream first, the
/// head buffer is freed, then relay() until both sides are done; one tunnel record,
/// from `ctx` (whose request record was written already).
asio::awaitable<void> tunnel(session& s, const request_context& ctx, std::size_t consumed);

/// Plain HTTP forwarding for an absolute-form request and every one after it on the
/// same client connection. The head of `first` occupies s.in[0, consumed).
asio::awaitable<void> serve_plain_http(session& s, protocol::http_request first, std::size_t consumed);

}  // namespace egressd::proxy::detail
