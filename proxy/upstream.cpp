// The decision path of every request (README "Life of a session", "Confirmation hook"):
//   canonical host -> policy::decide -> a remembered answer -> the hook -> resolve ->
//   guard -> dial.
// CONNECT, SOCKS5 and plain HTTP (which may reuse its upstream) all come through here.
// A request the hook is asked about is held: it waits on the coordinator's answer and,
// at the same time, on its client, so a client that closes, a drain and the hook
// timeout each end the wait with their own record.

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>

#include "proxy/net.hpp"
#include "proxy/runtime.hpp"
#include "proxy/session_impl.hpp"

namespace egressd::proxy::detail {

using policy::decision_reason;
using policy::outcome;
using namespace asio::experimental::awaitable_operators;

namespace {

// Connects `sock` to `ep`. A connect to this host or a near one has usually completed by
// the time connect(2) returns EINPROGRESS: the handshake's packets are processed as the
// call releases the socket. Asking the socket's state at once sees that and saves the
// event-loop round trip (an EPOLL_CTL_MOD for EPOLLOUT, a wake-up) that Asio's
// async_connect always makes; a connect still in flight is waited for as before.
asio::awaitable<boost::system::error_code> connect_socket(tcp::socket& sock, const tcp::endpoint& ep) {
  boost::system::error_code ec;
  sock.open(ep.protocol(), ec);
  if (!ec) sock.non_blocking(true, ec);
  if (ec) co_return ec;
  const int fd = sock.native_handle();
  int r;
  do r = ::connect(fd, ep.data(), static_cast<socklen_t>(ep.size()));
  while (r != 0 && errno == EINTR);
  if (r == 0) co_return ec;
  if (errno != EINPROGRESS) co_return boost::system::error_code(errno, boost::system::system_category());
  // One getsockopt(2) tells the three cases apart: established, still in flight (wait
  // for writability), or over (SO_ERROR says why).
  tcp_info info{};
  socklen_t info_len = sizeof info;
  const bool known = ::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &info_len) == 0;
  if (known && info.tcpi_state == TCP_ESTABLISHED) co_return ec;
  if (!known || info.tcpi_state == TCP_SYN_SENT) {
    auto [wait_ec] = co_await sock.async_wait(tcp::socket::wait_write, nothrow);
    if (wait_ec) co_return wait_ec;
  }
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  co_return err != 0 ? boost::system::error_code(err, boost::system::system_category()) : ec;
}

// How long past hook.timeout a held request waits on its own: the coordinator answers
// at hook.timeout; this only bounds a wait whose answer was lost.
constexpr auto hold_slack = std::chrono::seconds(5);

enum class hold_end : std::uint8_t { answered, client_closed, aborted, timed_out };

// Waits for the verdict of `w` while watching the client. Bytes the client sends meanwhile
// (a TLS ClientHello pipelined behind CONNECT, a request body) are kept in s.in, up to the
// head limit; past it the client is no longer watched. EOF or an error on the client,
// abort() and the session's own deadline end the wait.
asio::awaitable<std::pair<hold_end, std::optional<hook::verdict>>> hold(session& s, hook::coordinator::wait& w) {
  bool watching = true;
  for (;;) {
    if (s.aborted) co_return std::pair{hold_end::aborted, std::nullopt};
    if (!watching) {
      auto v = co_await w.result();
      if (v) co_return std::pair{hold_end::answered, v};
      co_return std::pair{s.client_timed_out ? hold_end::timed_out : hold_end::aborted, std::nullopt};
    }
    auto r = co_await (w.result() || s.client.async_wait(client_socket::wait_read, nothrow));
    if (r.index() == 0) {
      auto& v = std::get<0>(r);
      if (v) co_return std::pair{hold_end::answered, std::move(v)};
      co_return std::pair{s.client_timed_out ? hold_end::timed_out : hold_end::aborted, std::nullopt};
    }
    auto [ec] = std::get<1>(r);
    if (s.aborted) co_return std::pair{hold_end::aborted, std::nullopt};
    if (ec) co_return std::pair{s.client_timed_out ? hold_end::timed_out : hold_end::client_closed, std::nullopt};
    // Readable: bytes, or the end of the stream.
    char buf[4096];
    const std::size_t room = s.cfg->limits.max_head_bytes > s.in.size() ? s.cfg->limits.max_head_bytes - s.in.size() : 0;
    const auto n = ::recv(s.client.native_handle(), buf, std::min(sizeof buf, std::max<std::size_t>(room, 1)),
                          room > 0 ? MSG_DONTWAIT : MSG_DONTWAIT | MSG_PEEK);
    if (n == 0) co_return std::pair{hold_end::client_closed, std::nullopt};
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      co_return std::pair{hold_end::client_closed, std::nullopt};
    }
    if (room > 0) {
      s.in.append(buf, static_cast<std::size_t>(n));
    } else {
      watching = false;  // the client sent all it may before an answer; wait for the hook alone
    }
  }
}

// Asks the hook about `d` (an `ask` decision) and holds the request for the answer.
asio::awaitable<void> confirm(session& s, destination& d, access_protocol protocol) {
  auto& hooks = s.w.shared().hooks;
  hook::question q;
  q.host = d.host.host->text;
  q.port = d.port;
  q.protocol = std::string(to_string(protocol));
  q.client = s.peer;
  q.listener = s.listener.name;
  auto w = hooks.ask(std::move(q), s.client.get_executor());
  d.who = answered_by::hook;
  std::optional<hook::verdict> v = w->immediate;
  if (!v) {
    auto& stats = s.w.shared().stats;
    stats.held_changed(1);
    s.held = w;
    s.arm_client(steady::now() + s.cfg->hook->timeout + hold_slack);
    auto [end, answer] = co_await hold(s, *w);
    s.disarm_client();
    s.held.reset();
    stats.held_changed(-1);
    w->cancel();  // whatever ended the wait, this request no longer listens for it
    switch (end) {
      case hold_end::answered: v = std::move(answer); break;
      case hold_end::aborted:
        d.decision = {outcome::deny, decision_reason::shutting_down, policy::no_rule};
        d.error = dial_error::aborted;
        co_return;
      case hold_end::client_closed:
        d.decision = {outcome::deny, decision_reason::unknown_ask, policy::no_rule};
        d.error = dial_error::client_closed;
        co_return;
      case hold_end::timed_out:
        v = hook::verdict{{s.cfg->hook->on_timeout == config::hook_fallback::allow ? outcome::allow : outcome::deny,
                           decision_reason::hook_timeout, policy::no_rule},
                          hook::answer_source::fallback, 0, "no answer within hook.timeout"};
        break;
    }
  }
  d.decision = v->decision;
  d.question_id = v->question_id;
  d.hook_reason = std::move(v->reason);
  if (v->source == hook::answer_source::by_hand) d.who = answered_by::by_hand;
}

}  // namespace

asio::awaitable<destination> decide_destination(session& s, std::string_view raw_host, std::uint16_t port,
                                                access_protocol protocol) {
  destination d;
  d.raw_host = std::string(raw_host);
  d.port = port;
  d.host = policy::canonicalize_host(raw_host);
  // Configured rules always win; the memory answers only what no rule matched.
  d.decision = s.w.shared().hooks.decide(*s.policy, d.host, port);
  if (d.decision.reason == decision_reason::report_only) d.who = answered_by::report_only;
  if (d.decision.reason == decision_reason::remembered_allow || d.decision.reason == decision_reason::remembered_deny)
    d.who = answered_by::remembered;
  if (d.decision.result == outcome::ask) {
    if (s.cfg->hook) {
      co_await confirm(s, d, protocol);
    } else {
      d.decision = {outcome::deny, decision_reason::no_hook, policy::no_rule};
    }
  }
  if (d.error == dial_error::none && d.decision.result != outcome::allow)
    d.error = d.decision.reason == decision_reason::invalid_host ? dial_error::invalid_host : dial_error::denied;
  // The admin page's recent denials: refusals by a rule or the hook (not clients that
  // left); dial() notes the guard's. Never blocks: skipped when contended.
  if (d.error == dial_error::denied && d.host.ok())
    s.w.shared().hooks.note_denial(d.host.host->text, port, to_string(d.decision.reason));
  co_return d;
}

asio::awaitable<destination> open_upstream(session& s, std::string_view raw_host, std::uint16_t port,
                                           access_protocol protocol) {
  destination d = co_await decide_destination(s, raw_host, port, protocol);
  if (d.decision.result == outcome::allow && d.error == dial_error::none) co_await dial(s, d);
  co_return d;
}

namespace {

dial_error classify_connect_error(const boost::system::error_code& ec) {
  if (ec == asio::error::connection_refused) return dial_error::refused;
  if (ec == asio::error::network_unreachable) return dial_error::net_unreachable;
  if (ec == asio::error::host_unreachable) return dial_error::unreachable;
  if (ec == asio::error::timed_out) return dial_error::timeout;
  return dial_error::unreachable;
}

}  // namespace

asio::awaitable<void> dial(session& s, destination& d) {
  const policy::canonical_host& host = *d.host.host;
  const std::uint16_t port = d.port;

  // Resolve once; the guard judges every address; only survivors are dialled. The
  // guard also judges IP literals: by the IP rules alone (denied ranges win over a wider
  // allow) unless report-only mode let them through (policy::classify).
  std::vector<asio::ip::address> addresses;
  if (host.is_ip()) {
    addresses.push_back(to_asio(*host.address));
  } else {
    const auto asked = steady::now();
    auto [ec, answer] = co_await s.w.dns().resolve(host.text);
    if (!answer.from_cache && !s.aborted) {
      // A lookup this request waited for (its own, or one it joined); hits are free.
      auto& stats = s.w.shared().stats;
      stats.observe_dns(std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - asked));
      stats.count_dns_lookup(!ec ? metrics::dns_result::ok
                             : (ec == dns_errc::not_found || ec == dns_errc::no_data) ? metrics::dns_result::no_such_name
                                                                                       : metrics::dns_result::error);
    }
    if (s.aborted) {
      d.error = dial_error::aborted;
      co_return;
    }
    if (ec || answer.addresses.empty()) {
      // The policy allowed it: the decision stands, the failure is the upstream's.
      d.error = dial_error::resolve_failed;
      co_return;
    }
    addresses = std::move(answer.addresses);
  }
  std::vector<asio::ip::address> candidates;
  const auto& locals = *s.gen->local_addresses;
  for (const auto& a : addresses) {
    const auto v = policy::classify(*s.policy, host, d.decision.reason, to_policy(a), port, locals);
    if (v.allowed()) {
      candidates.push_back(a);
    } else if (d.refused_class == policy::address_class::none) {
      d.refused_class = v.refused;
      d.refused_address = a.to_string();
    }
  }
  if (candidates.empty()) {
    // A guard refusal is a block, not an outage: the decision becomes deny.
    d.error = dial_error::guard_refused;
    d.decision = {outcome::deny, decision_reason::address_denied, d.decision.rule};
    s.w.shared().hooks.note_denial(d.host.host->text, d.port, to_string(d.decision.reason));
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
    const auto ec = co_await connect_socket(s.upstream, ep);
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

}  // namespace egressd::proxy::detail
