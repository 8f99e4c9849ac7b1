// Flow of a session (README.md, "Life of a session"):
//  1. Sniff: read the first bytes under the head deadline. 0x05 is SOCKS5 (RFC 1928),
//     0x04 SOCKS4 (refused with 0x5B), anything else is HTTP, as far as the listener
//     serves each protocol. A client that closes before its first byte is normal and
//     leaves no record.
//  2. HTTP: parse the head (proxy/protocol, pure); 431/400 on failure; 407 when proxy
//     auth is configured and the credentials are wrong. CONNECT opens a tunnel;
//     absolute-form goes to serve_plain_http (http_forward.cpp).
//     SOCKS5: greeting, optional RFC 1929 auth, request; BIND/UDP answer 07.
//  3. open_upstream: canonical host -> policy::decide -> [hook] -> resolve (c-ares, cached)
//     -> policy::classify every address -> dial the survivors in order under the connect
//     deadline.
//  4. Reply (200 Connection Established / SOCKS 00), send the bytes the client pipelined
//     behind its request upstream first, free the head buffer, relay (relay.cpp).
//  5. account(): each request's typed context (request_context) becomes exactly one
//     access record and one set of metric updates on every exit, the early ones too
//     (400, 407, 408, 431, a failed SOCKS5 authentication, SOCKS4); a tunnel's closing
//     record is pre-rendered from it.

#include "proxy/session.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <array>
#include <cerrno>

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
// who caused it (a policy refusal gets X-Proxy-Error). In enum order.
struct dial_error_facts {
  std::string_view name;
  int http_status;
  std::string_view proxy_error;
  proto::socks5_reply_code socks;
  error_source source;
};
using socks_code = proto::socks5_reply_code;
constexpr std::array<dial_error_facts, 11> dial_error_table{{
    {"none", 500, "proxy_internal_error", socks_code::succeeded, error_source::none},
    {"invalid_host", 400, "http_request_error", socks_code::not_allowed, error_source::client},
    {"denied", 403, "http_request_denied", socks_code::not_allowed, error_source::policy},
    {"resolve_failed", 502, "dns_error", socks_code::host_unreachable, error_source::upstream},
    {"guard_refused", 403, "destination_ip_prohibited", socks_code::not_allowed, error_source::policy},
    {"connection_refused", 502, "connection_refused", socks_code::connection_refused, error_source::upstream},
    {"host_unreachable", 502, "destination_unavailable", socks_code::host_unreachable, error_source::upstream},
    {"network_unreachable", 502, "destination_unavailable", socks_code::network_unreachable, error_source::upstream},
    {"connect_timeout", 504, "connection_timeout", socks_code::ttl_expired, error_source::upstream},
    {"aborted", 503, "proxy_internal_error", socks_code::general_failure, error_source::proxy},
    {"client_closed", 0, "proxy_internal_error", socks_code::general_failure, error_source::client},
}};
static_assert(static_cast<std::size_t>(dial_error::client_closed) + 1 == dial_error_table.size());

const dial_error_facts& facts(dial_error e) noexcept { return dial_error_table[static_cast<std::size_t>(e)]; }

// SOCKS5 reply names in records (RFC 1928 §6), in code order.
constexpr std::array<std::string_view, 9> socks5_reply_names{{
    "succeeded", "general_failure", "not_allowed", "network_unreachable", "host_unreachable",
    "connection_refused", "ttl_expired", "command_not_supported", "address_type_not_supported"}};

std::string_view socks5_reply_name(socks_code c) noexcept {
  const auto i = static_cast<std::size_t>(c);
  return i < socks5_reply_names.size() ? socks5_reply_names[i] : std::string_view("unknown");
}

}  // namespace

std::string_view to_string(dial_error e) noexcept { return facts(e).name; }

std::string_view to_string(access_protocol p) noexcept {
  switch (p) {
    case access_protocol::connect: return "connect";
    case access_protocol::http: return "http";
    case access_protocol::socks5: return "socks5";
    case access_protocol::socks4: return "socks4";
  }
  return "unknown";
}

std::string_view to_string(error_source e) noexcept {
  switch (e) {
    case error_source::none: return "none";
    case error_source::client: return "client";
    case error_source::policy: return "policy";
    case error_source::upstream: return "upstream";
    case error_source::proxy: return "proxy";
  }
  return "unknown";
}

std::string_view to_string(answered_by a) noexcept {
  switch (a) {
    case answered_by::rule: return "rule";
    case answered_by::report_only: return "report_only";
    case answered_by::remembered: return "remembered";
    case answered_by::hook: return "hook";
    case answered_by::by_hand: return "by_hand";
  }
  return "unknown";
}

std::string_view to_string(request_outcome o) noexcept {
  switch (o) {
    case request_outcome::decided: return "decided";
    case request_outcome::auth_failed: return "auth_failed";
    case request_outcome::bad_request: return "bad_request";
    case request_outcome::head_timeout: return "head_timeout";
    case request_outcome::unsupported_protocol: return "unsupported_protocol";
    case request_outcome::unsupported_command: return "unsupported_command";
  }
  return "unknown";
}

session::session(worker& wk, const listener_info& l, client_socket c, std::string p)
    : w(wk),
      listener(l),
      client(std::move(c)),
      upstream(client.get_executor()),
      id(wk.next_connection_id()),
      peer(std::move(p)),
      pin(wk.pin_generation()),
      gen(&pin.get()),
      cfg(gen->config.get()),
      policy(gen->policy.get()) {
  w.attach(this);
}

void session::load_generation() noexcept {
  // The common case: no reload since the last request (one load of a line written
  // only by reloads).
  if (w.shared().generation_number.load(std::memory_order_acquire) == pin.number()) return;
  pin = w.pin_generation();
  gen = &pin.get();
  cfg = gen->config.get();
  policy = gen->policy.get();
}

session::~session() { w.detach(this); }

void session::abort() noexcept {
  aborted = true;
  if (held) held->cancel();
  boost::system::error_code ignored;
  client.cancel(ignored);
  upstream.cancel(ignored);
}

bool session::revoke(const revocation& r) {
  const destination* d = idle_upstream;
  if (d == nullptr || !upstream.is_open() || !d->host.ok()) return false;
  if (!r.denies(d->host.host->text, d->port, d->decision.reason)) return false;
  boost::system::error_code ignored;
  upstream.close(ignored);  // idle: nothing waits on it; the next request decides and dials anew
  log_event(log_level::info, "pooled upstream connection closed: revoked",
            json_object().add("id", id).add("host", d->host.host->text).add("port", static_cast<unsigned>(d->port)));
  return true;
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

namespace {

// What the socket's send buffer takes now, sent at once without the event loop: asio
// posts even a write that completes at once, and its scheduler polls epoll before it
// runs the completion, so a reply of a few bytes cost a handler round trip and an
// epoll_wait of its own. How much was sent (0: the buffer is full), or -1 on an error.
std::ptrdiff_t send_now(int fd, std::string_view data) {
  for (;;) {
    const auto n = ::send(fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  }
}

}  // namespace

asio::awaitable<read_status> read_more(session& s, steady::time_point deadline, std::size_t limit, bool likely_there) {
  if (s.in.size() >= limit) co_return read_status::full;
  if (s.aborted) co_return read_status::error;
  const std::size_t old = s.in.size();
  // Heads are small: a 4 KiB step keeps resize()'s zero-filling cheap.
  const std::size_t want = std::min<std::size_t>(limit - old, 4096);
  s.in.resize(old + want);
  if (likely_there) {
    // Bytes the kernel already holds (a client's first bytes usually arrive with its
    // connection) are taken directly, as send_now() writes; otherwise the event loop
    // waits for them below.
    ssize_t n;
    do n = ::recv(s.client.native_handle(), s.in.data() + old, want, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
      s.in.resize(old + static_cast<std::size_t>(n));
      co_return read_status::ok;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
      s.in.resize(old);
      co_return n == 0 ? read_status::eof : read_status::error;
    }
  }
  s.arm_client(deadline);
  auto [ec, n] = co_await s.client.async_read_some(asio::buffer(s.in.data() + old, want), nothrow);
  s.disarm_client();
  s.in.resize(old + n);
  if (ec == asio::error::operation_aborted && s.client_timed_out && !s.aborted) co_return read_status::timeout;
  if (ec == asio::error::eof) co_return read_status::eof;
  if (ec || s.aborted) co_return read_status::error;
  co_return read_status::ok;
}

namespace {

// Writes all of `data` to `sock`: what its send buffer takes now directly (send_now),
// the rest through the event loop under the write deadline `arm` sets (the sweep
// cancels a write that makes no progress for limits.idle_timeout).
template <class Socket>
asio::awaitable<bool> write_all(session& s, Socket& sock, std::string_view data,
                                void (session::*arm)(steady::time_point) noexcept,
                                void (session::*disarm)() noexcept) {
  const auto sent = send_now(sock.native_handle(), data);
  if (sent < 0) co_return false;
  data.remove_prefix(static_cast<std::size_t>(sent));
  if (data.empty()) co_return true;
  (s.*arm)(steady::now() + s.cfg->limits.idle_timeout);
  auto [ec, n] = co_await asio::async_write(sock, asio::buffer(data), nothrow);
  (s.*disarm)();
  co_return !ec;
}

}  // namespace

asio::awaitable<bool> write_client(session& s, std::string_view data) {
  return write_all(s, s.client, data, &session::arm_client_write, &session::disarm_client_write);
}

asio::awaitable<bool> write_upstream(session& s, std::string_view data) {
  return write_all(s, s.upstream, data, &session::arm_upstream_write, &session::disarm_upstream_write);
}

// ---- replies and records ------------------------------------------------------------

namespace {

// Where the running config keeps its allowlist, so that a refusal can say what to
// change (README "Wire behaviour"): the file, the key of its allow list, and the option that
// names the file to `egressd check`.
struct allowlist_place {
  std::string_view file;  ///< empty: the embedded default config
  std::string key;        ///< policy.allow, sandbox.network.allowedDomains, network.allowedDomains
  std::string options;    ///< what names the config to `egressd check`: "--config FILE", ...
  bool settings = false;
};

allowlist_place place_of(const config::config& c) {
  allowlist_place p;
  // In srt grammar the lists came from a settings file (alone, or layered onto YAML).
  p.settings = c.policy.syntax == policy::grammar::srt;
  p.file = p.settings ? c.settings_file : c.yaml_file;
  if (!c.yaml_file.empty()) p.options = "--config " + c.yaml_file;
  if (!c.settings_file.empty()) p.options += (p.options.empty() ? "" : " ") + ("--settings " + c.settings_file);
  if (!p.settings) {
    p.key = "policy.allow";
    return p;
  }
  // A settings file has its network keys under `sandbox.network` (Claude Code) or
  // `network` (sandbox-runtime); the entries' paths tell which.
  p.key = "sandbox.network.allowedDomains";
  for (const auto* list : {&c.policy.allow, &c.policy.deny, &c.policy.guard.deny_ranges}) {
    for (const auto& e : *list) {
      const auto at = e.where.path.find("network.");
      if (at == std::string::npos) continue;
      p.key = e.where.path.substr(0, at) + "network.allowedDomains";
      return p;
    }
  }
  return p;
}

// "; to allow it, add 'ENTRY' to KEY in FILE" (or how to get a file at all).
std::string add_entry_hint(const allowlist_place& p, std::string_view entry, std::string_view also = {}) {
  std::string out = "; to allow it, add '";
  out += entry;
  out += "' to ";
  out += p.key;
  out += also;
  if (p.file.empty()) {
    out += " in a config file and run egressd with --config FILE (this is the embedded default config)";
  } else {
    out += " in ";
    out += p.file;
  }
  return out;
}

// "; ask why: egressd check --config FILE HOST:PORT".
std::string check_hint(const allowlist_place& p, std::string_view target) {
  std::string out = "; ask why: egressd check ";
  if (!p.options.empty()) {
    out += p.options;
    out += ' ';
  }
  out += target;
  return out;
}

std::string rule_location(const policy::rule_info& rule) {
  std::string out;
  if (!rule.preset.empty()) out = "from " + rule.preset + " at ";
  out += rule.where.file.empty() ? std::string("the config") : rule.where.file;
  if (rule.where.line > 0) out += ":" + std::to_string(rule.where.line);
  return out;
}

// HOST:PORT, with RFC 3986 §3.2.2 brackets for an IPv6 address: an allow entry naming
// one address and port, and the target `egressd check` takes.
std::string address_entry(std::string_view address, std::uint16_t port) {
  std::string out;
  if (address.find(':') != std::string_view::npos) {
    out = "[";
    out += address;
    out += "]";
  } else {
    out = std::string(address);
  }
  out += ":" + std::to_string(port);
  return out;
}

bool is_private_class(policy::address_class c) noexcept {
  using policy::address_class;
  return c == address_class::private_network || c == address_class::shared_address ||
         c == address_class::unique_local;
}

// What a client is told when the hook, or a remembered answer of it, refused: who
// decided and how to change it. Empty for every other denial.
std::string hook_refusal(const destination& d, const std::string& target) {
  const std::string why = d.hook_reason.empty() ? std::string{} : " (" + d.hook_reason + ")";
  switch (d.decision.reason) {
    case decision_reason::hook_deny:
      return target + " was denied by " +
             (d.who == answered_by::by_hand ? std::string("an answer given by hand") : std::string("the confirmation hook")) +
             why;
    case decision_reason::remembered_deny:
      return target + " was denied by a remembered answer; `egressd decisions --forget " + d.display_host() +
             "` forgets it";
    case decision_reason::hook_timeout: return "the confirmation hook did not answer about " + target + " in time";
    case decision_reason::hook_overloaded:
      return "too many questions are waiting for the confirmation hook; " + target + " was not asked about";
    case decision_reason::shutting_down: return "egressd is shutting down";
    case decision_reason::hook_failed:
    case decision_reason::hook_crashed:
    case decision_reason::hook_bad_answer:
    case decision_reason::hook_not_found:
    case decision_reason::hook_refused:
    case decision_reason::hook_http_error:
    case decision_reason::hook_tls_error:
      return "the confirmation hook failed (" + std::string(policy::to_string(d.decision.reason)) + ") asking about " +
             target + why;
    default: return {};
  }
}

}  // namespace

refusal refusal_for(const session& s, const destination& d) {
  refusal r;
  const auto& f = facts(d.error);
  r.status = f.http_status;
  r.proxy_error = f.proxy_error;
  r.blocked_by_policy = f.source == error_source::policy;
  // The rule and reason explain refusals; an upstream failure has none of its own.
  const bool explained = f.source == error_source::policy || f.source == error_source::client;
  if (explained) r.reason = policy::to_string(d.decision.reason);
  if (explained && d.decision.rule != policy::no_rule) r.rule = s.policy->rule(d.decision.rule).text;
  const std::string target = address_entry(d.display_host(), d.port);  // [v6]:port, as `egressd check` reads it
  const auto place = [&] { return place_of(*s.cfg); };
  switch (d.error) {
    case dial_error::invalid_host: r.details = "refused " + d.raw_host + ": not a valid host"; break;
    case dial_error::denied: {
      const auto p = place();
      if (d.decision.reason == decision_reason::denied_by_rule) {
        const auto& rule = s.policy->rule(d.decision.rule);
        r.details = target + " is blocked by the deny rule '" + r.rule + "' (" + rule_location(rule) +
                    "); a deny rule wins over every allow entry: remove or narrow it to allow this destination";
      } else {
        if (auto hook = hook_refusal(d, target); !hook.empty()) {
          r.details = std::move(hook);
          break;
        }
        r.details = target + " is not in the allowlist";
        if (d.decision.reason == decision_reason::no_hook) r.details += " and no confirmation hook is configured";
        const auto& host = *d.host.host;
        r.details += add_entry_hint(p, host.is_ip() ? address_entry(host.text, d.port) : host.text);
      }
      r.details += check_hint(p, target);
      break;
    }
    case dial_error::guard_refused: {
      const auto p = place();
      r.details = target + " resolved to " + std::string(policy::describe(d.refused_class)) + " (" +
                  d.refused_address + "), which is not allowed";
      using policy::address_class;
      if (d.refused_class == address_class::deny_listed || d.refused_class == address_class::listed) {
        r.details += "; a denied address range wins over every allow entry";
      } else if (d.refused_class == address_class::non_loopback) {
        r.details += "; localhost names must resolve to loopback: check the hosts file";
      } else {
        // An explicit IP allow entry re-opens its address (README "Policy semantics"); the
        // private classes also open with guard.allow_private (YAML configs only).
        const bool private_too = !p.settings && is_private_class(d.refused_class);
        r.details += add_entry_hint(p, address_entry(d.refused_address, d.port),
                                    private_too ? ", or set policy.guard.allow_private: true," : "");
      }
      r.details += check_hint(p, target);
      r.reason = policy::to_string(d.refused_class);
      break;
    }
    case dial_error::resolve_failed: r.details = "could not resolve " + d.display_host(); break;
    case dial_error::refused: r.details = target + " refused the connection"; break;
    case dial_error::timeout: r.details = "connecting to " + target + " timed out"; break;
    case dial_error::unreachable:
    case dial_error::net_unreachable: r.details = target + " is unreachable"; break;
    case dial_error::aborted: r.details = "shutting down"; break;
    case dial_error::client_closed: r.details = "the client went away"; break;
    case dial_error::none: r.details = "internal error"; break;
  }
  r.details.insert(0, "egressd: ");
  return r;
}

proto::socks5_reply_code socks_code_for(const destination& d) noexcept { return facts(d.error).socks; }

std::string_view record_path(std::string_view origin_form) noexcept {
  return origin_form.substr(0, origin_form.find_first_of("?#"));
}

namespace {

std::int64_t elapsed_ms(steady::time_point since) noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - since).count();
}

// The fields common to a request record and its tunnel's closing record.
json_object base_record(const session& s, const request_context& ctx, std::string_view event) {
  json_object o = json_object::json();  // access records are JSON lines whatever log.format says
  o.add("event", event)
      .add("connection", s.id)
      .add("client", s.peer)
      .add("listener", s.listener.name)
      .add("protocol", to_string(ctx.protocol));
  if (!s.user.empty()) o.add("user", s.user);
  const destination* d = ctx.dest;
  if (d) {
    o.add("host", d->display_host()).add("port", static_cast<unsigned>(d->port));
  } else if (!ctx.host.empty()) {
    o.add("host", ctx.host).add("port", static_cast<unsigned>(ctx.port));
  }
  if (ctx.outcome != request_outcome::decided || !d) {
    // Refused before any policy decision: a request outcome, no rule.
    o.add("decision", "deny").add("reason", to_string(ctx.outcome)).add_null("rule");
    return o;
  }
  o.add("decision", policy::to_string(d->decision.result)).add("reason", policy::to_string(d->decision.reason));
  if (d->decision.rule != policy::no_rule) {
    const auto& rule = s.policy->rule(d->decision.rule);
    o.add("rule", rule.text);
    if (!rule.preset.empty()) o.add("preset", rule.preset);
  } else {
    o.add_null("rule");
  }
  o.add("answered_by", to_string(d->who));
  if (d->question_id != 0) o.add("question", d->question_id);
  if (!d->hook_reason.empty()) o.add("hook_reason", d->hook_reason);
  if (d->refused_class != policy::address_class::none) {
    // The class of the first refused address (and the address), also when another
    // address of the same name was dialled.
    o.add("address_class", policy::to_string(d->refused_class)).add("refused_address", d->refused_address);
  }
  if (d->connected()) o.add("upstream", endpoint_text(d->remote.address(), d->remote.port()));
  return o;
}

}  // namespace

namespace {

// The request's metrics: one cached lookup of its domain's handles, then atomics.
void count_request(const session& s, const request_context& ctx) {
  static_assert(static_cast<std::size_t>(access_protocol::socks4) < request_labels::protocols);
  static_assert(static_cast<std::size_t>(policy::outcome::ask) < request_labels::decisions);
  // Reasons: the policy's decision_reason values, then the request outcomes after them.
  constexpr std::size_t outcome_base = static_cast<std::size_t>(decision_reason::shutting_down);
  static_assert(outcome_base + static_cast<std::size_t>(request_outcome::unsupported_command) <
                request_labels::reasons);
  auto& stats = s.w.shared().stats;
  const destination* d = ctx.dest;
  std::string_view host = d ? (d->host.ok() ? std::string_view(d->host.host->text) : std::string_view(d->raw_host))
                            : ctx.host;
  request_labels l;
  l.protocol = static_cast<std::uint8_t>(ctx.protocol);
  l.protocol_name = to_string(ctx.protocol);
  if (ctx.outcome != request_outcome::decided || !d) {
    l.decision = static_cast<std::uint8_t>(policy::outcome::deny);
    l.decision_name = policy::to_string(policy::outcome::deny);
    l.reason = static_cast<std::uint8_t>(outcome_base + static_cast<std::size_t>(ctx.outcome));
    l.reason_name = to_string(ctx.outcome);
  } else {
    l.decision = static_cast<std::uint8_t>(d->decision.result);
    l.decision_name = policy::to_string(d->decision.result);
    l.reason = static_cast<std::uint8_t>(d->decision.reason);
    l.reason_name = policy::to_string(d->decision.reason);
  }
  domain_metrics& dm = s.w.domains().lookup(host);
  ctx.domain = &dm;
  stats.count_request(dm, l);
  if (ctx.upstream_reused) stats.count_upstream_reuse();
  if (ctx.has_bytes) {  // a plain HTTP exchange: its body up, its response down
    dm.bytes_up.fetch_add(ctx.bytes_up, std::memory_order_relaxed);
    dm.bytes_down.fetch_add(ctx.bytes_down, std::memory_order_relaxed);
  }
  if (d && d->connected() && d->connect_time) stats.observe_connect(*d->connect_time);
  if (d && d->error == dial_error::guard_refused) stats.count_guard_refusal(d->refused_class);
  stats.observe_request(std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - ctx.started));
}

}  // namespace

void account(const session& s, const request_context& ctx) {
  // The single end of every request: its metrics, then its audit record.
  count_request(s, ctx);
  if (!audit_enabled()) return;
  json_object o = base_record(s, ctx, "request");
  if (ctx.status != 0) o.add("status", ctx.status);
  if (ctx.socks_reply) o.add("socks_reply", socks5_reply_name(*ctx.socks_reply));
  if (!ctx.method.empty()) o.add("method", ctx.method).add("path", ctx.path);
  if (!ctx.error.empty()) {
    o.add("error", ctx.error).add("error_source", to_string(ctx.source));
  } else if (ctx.dest && !ctx.dest->connected()) {
    o.add("error", to_string(ctx.dest->error)).add("error_source", to_string(facts(ctx.dest->error).source));
  }
  if (ctx.has_bytes) o.add("bytes_up", ctx.bytes_up).add("bytes_down", ctx.bytes_down);
  if (ctx.upstream_reused) o.add("upstream_reused", true);
  if (ctx.dest && ctx.dest->connect_time)
    o.add("connect_us", static_cast<std::int64_t>(ctx.dest->connect_time->count()));
  o.add("duration_ms", elapsed_ms(ctx.started));
  log_audit(o);
}

namespace {

void finish_tunnel_record(json_object& o, steady::time_point started, const relay_result& r) {
  o.add("bytes_up", r.bytes_up)
      .add("bytes_down", r.bytes_down)
      .add("duration_ms", elapsed_ms(started))
      .add("closed_by", r.cause == close_cause::both_eof ? (r.client_closed_first ? "client" : "upstream")
                                                         : std::string_view("proxy"))
      .add("close_cause", to_string(r.cause));
  log_audit(o);
}

}  // namespace

void account_tunnel(const session& s, const request_context& ctx, const relay_result& r) {
  if (!audit_enabled()) return;
  json_object o = base_record(s, ctx, "tunnel_closed");
  finish_tunnel_record(o, ctx.started, r);
}

// ---- the tunnel common to CONNECT, SOCKS5 and upgraded HTTP ----------------------------

// After the success reply: the client's pipelined bytes go upstream first, the head
// buffer is freed (an idle tunnel holds no user-space buffer), then the relay.
asio::awaitable<void> tunnel(session& s, const request_context& ctx, std::size_t consumed) {
  if (s.in.size() > consumed) {
    const std::string_view pipelined = std::string_view(s.in).substr(consumed);
    if (ctx.domain) ctx.domain->bytes_up.fetch_add(pipelined.size(), std::memory_order_relaxed);
    if (!co_await write_upstream(s, pipelined)) {
      account_tunnel(s, ctx, {.cause = close_cause::upstream_reset});
      co_return;
    }
  }
  if (s.aborted) {
    account_tunnel(s, ctx, {.cause = close_cause::shutdown});
    co_return;
  }
  // A reload since this tunnel was decided found no tunnel to revoke yet
  // (worker::revoke): its rule is applied here instead.
  // One load of a line only reloads write when nothing was reloaded.
  if (s.w.shared().generation_number.load(std::memory_order_acquire) != s.pin.number()) {
    const auto g = s.w.shared().current.load();
    if (g.get() != s.gen && g->config->reload.revoke && ctx.dest && ctx.dest->host.ok() &&
        revoked_by(*g, s.w.shared().hooks, ctx.dest->host.host->text, ctx.dest->port, ctx.dest->decision.reason)) {
      account_tunnel(s, ctx, {.cause = close_cause::revoked});
      co_return;
    }
  }
  // The tunnel takes the sockets and the closing record, pre-rendered from the
  // request's context; this session's coroutines end here, so an idle tunnel keeps no
  // frame and no head buffer.
  std::string().swap(s.in);
  std::function<void(const relay_result&)> on_close;
  auto& stats = s.w.shared().stats;
  stats.tunnel_opened();
  if (audit_enabled()) {
    on_close = [record = base_record(s, ctx, "tunnel_closed"), started = ctx.started, &stats](
                   const relay_result& r) mutable {
      stats.tunnel_closed();
      finish_tunnel_record(record, started, r);
    };
  } else {
    on_close = [&stats](const relay_result&) { stats.tunnel_closed(); };
  }
  // account() looked up the domain's handles before the success reply.
  const byte_counters counters =
      ctx.domain ? byte_counters{&ctx.domain->bytes_up, &ctx.domain->bytes_down} : byte_counters{};
  // Revocation (reload.revoke) decides this destination again on a reload.
  tunnel_destination dest;
  if (ctx.dest && ctx.dest->host.ok())
    dest = {ctx.dest->host.host->text, ctx.dest->port, ctx.dest->decision.reason};
  start_tunnel(s.w, std::move(s.client), std::move(s.upstream), s.cfg->limits.idle_timeout, counters,
               std::move(on_close), std::move(dest));
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
  auto head_started = waiting_for_first_byte ? steady::time_point{} : idle_until_first_byte ? steady::now() : s.started;
  std::size_t line_start = 0;  // where the line still being received starts in s.in
  for (;;) {
    auto result = proto::parse_http_head(s.in, hl);
    if (auto* failure = std::get_if<proto::parse_failure>(&result)) {
      // The record names the parse error only: nothing of the head itself, which may
      // carry credentials.
      request_context ctx(access_protocol::http, head_started);
      ctx.outcome = request_outcome::bad_request;
      ctx.source = error_source::client;
      ctx.error = proto::to_string(failure->code);
      ctx.status = proto::http_status_for(failure->code);
      account(s, ctx);
      co_await send_refusal(s, plain_refusal(ctx.status, "http_request_error",
                                             "egressd: bad request: " + make_error_code(failure->code).message()));
      co_return std::nullopt;
    }
    if (auto* done = std::get_if<proto::parsed<proto::http_request>>(&result)) co_return std::move(*done);
    // A head can only complete, or fail anew, once a line ends or grows too long: read
    // until then, so a head trickled in byte by byte is parsed O(lines) times, not
    // O(bytes) times.
    for (;;) {
      if (waiting_for_first_byte && !s.in.empty()) {  // the head has started: it has head_timeout to finish
        waiting_for_first_byte = false;
        head_started = steady::now();
        deadline = head_started + limits.head_timeout;
      }
      const std::size_t old = s.in.size();
      const auto st = co_await read_more(s, deadline, limits.max_head_bytes + 1);
      if (st != read_status::ok) {
        // Between requests, a connection closed or idle before a byte is normal.
        if (waiting_for_first_byte || s.aborted) co_return std::nullopt;
        request_context ctx(access_protocol::http, head_started);
        ctx.source = error_source::client;
        if (st == read_status::timeout) {
          ctx.outcome = request_outcome::head_timeout;
          ctx.error = "head_timeout";
          ctx.status = 408;
          account(s, ctx);
          co_await send_refusal(
              s, plain_refusal(408, "http_request_error", "egressd: the request head did not arrive in time"));
        } else {
          // The client closed (or reset) with a head begun and unfinished: no answer.
          ctx.outcome = request_outcome::bad_request;
          ctx.error = st == read_status::eof ? "head_incomplete" : "client_reset";
          account(s, ctx);
        }
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

asio::awaitable<bool> check_proxy_auth(session& s, const proto::http_request& req, access_protocol protocol) {
  if (s.cfg->auth.users.empty()) co_return true;
  if (req.proxy_authorization) {
    if (const auto* user = check_basic_authorization(s.cfg->auth, *req.proxy_authorization)) {
      s.user = user->username;
      co_return true;
    }
  }
  // The record names the destination asked for, not the user: a name that failed to
  // authenticate may be a password typed in the wrong field.
  s.user = {};
  request_context ctx(protocol);
  ctx.host = req.host;
  ctx.port = req.port;
  ctx.outcome = request_outcome::auth_failed;
  ctx.source = error_source::client;
  ctx.error = req.proxy_authorization ? "credentials_invalid" : "credentials_missing";
  ctx.status = 407;
  if (protocol == access_protocol::http) {
    ctx.method = req.method;
    ctx.path = record_path(req.origin_form);
  }
  account(s, ctx);
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
  request_context ctx(access_protocol::connect, s.started);
  destination d = co_await open_upstream(s, req.host, req.port, access_protocol::connect);
  ctx.dest = &d;
  if (!d.connected()) {
    const refusal r = refusal_for(s, d);
    ctx.status = silent(d.error) ? 0 : r.status;
    account(s, ctx);
    if (!silent(d.error)) co_await send_refusal(s, r);
    co_return;
  }
  ctx.status = 200;
  account(s, ctx);
  // RFC 9110 §9.3.6: any 2xx means the tunnel is open.
  static constexpr std::string_view established = "HTTP/1.1 200 Connection Established\r\n\r\n";
  if (!co_await write_client(s, established)) {
    account_tunnel(s, ctx, {.cause = close_cause::client_reset});
    co_return;
  }
  co_await tunnel(s, ctx, consumed);
}

asio::awaitable<void> serve_http(session& s, steady::time_point deadline) {
  auto head = co_await read_request_head(s, deadline, /*idle_until_first_byte=*/false);
  if (!head) co_return;
  s.load_generation();  // the request is judged by the generation current when its head arrived
  const bool connect = head->message.kind == proto::request_kind::connect;
  if (!co_await check_proxy_auth(s, head->message, connect ? access_protocol::connect : access_protocol::http))
    co_return;
  if (connect) {
    co_await serve_connect(s, head->message, head->consumed);
  } else {
    co_await serve_plain_http(s, std::move(head->message), head->consumed);
  }
}

// ---- SOCKS5 -------------------------------------------------------------------------------

// How reading a SOCKS message ended, when it did not complete.
struct socks_read_failure {
  read_status status = read_status::ok;  ///< not ok: the read failed (eof, timeout, ...)
  proto::parse_errc error{};             ///< set: the bytes are malformed
};

template <class Message, class Parser>
asio::awaitable<std::optional<proto::parsed<Message>>> read_socks(session& s, steady::time_point deadline,
                                                                  Parser parse, socks_read_failure& failure) {
  for (;;) {
    auto r = parse(std::string_view(s.in));
    if (auto* done = std::get_if<proto::parsed<Message>>(&r)) co_return std::move(*done);
    if (auto* f = std::get_if<proto::parse_failure>(&r)) {
      failure.error = f->code;
      co_return std::nullopt;
    }
    failure.status = co_await read_more(s, deadline, 1024);
    if (failure.status != read_status::ok) co_return std::nullopt;
  }
}

// The parser returns DST.ADDR as octets (proxy/protocol stays free of policy/); the
// host text the policy canonicalises is made here.
std::string socks5_host(const proto::socks5_request& r) {
  switch (r.address_type) {
    case proto::socks5_address_type::ipv4:
      return policy::ip_address::from_v4((std::uint32_t{r.address[0]} << 24) | (std::uint32_t{r.address[1]} << 16) |
                                         (std::uint32_t{r.address[2]} << 8) | std::uint32_t{r.address[3]})
          .to_string();
    case proto::socks5_address_type::ipv6: return policy::ip_address::from_v6(r.address).to_string();
    case proto::socks5_address_type::domain: break;
  }
  return r.domain;
}

template <std::size_t N>
asio::awaitable<bool> write_bytes(session& s, const std::array<std::uint8_t, N>& bytes) {
  co_return co_await write_client(s, std::string_view(reinterpret_cast<const char*>(bytes.data()), N));
}

// Accounts for a SOCKS5 handshake that ended before a decision: a malformed message,
// a deadline, a client gone, no acceptable method, a failed authentication.
void account_socks5_failure(const session& s, const socks_read_failure& f,
                            std::optional<proto::socks5_reply_code> reply = std::nullopt) {
  if (s.aborted) return;
  request_context ctx(access_protocol::socks5, s.started);
  ctx.source = error_source::client;
  ctx.socks_reply = reply;
  if (f.error != proto::parse_errc{}) {
    ctx.outcome = request_outcome::bad_request;
    ctx.error = proto::to_string(f.error);
  } else if (f.status == read_status::timeout) {
    ctx.outcome = request_outcome::head_timeout;
    ctx.error = "head_timeout";
  } else {
    ctx.outcome = request_outcome::bad_request;
    ctx.error = f.status == read_status::eof ? "head_incomplete" : "client_reset";
  }
  account(s, ctx);
}

asio::awaitable<void> serve_socks5(session& s, steady::time_point deadline) {
  constexpr auto no_auth = proto::socks5_method_no_auth;
  constexpr auto user_pass = proto::socks5_method_username_password;
  constexpr auto none_acceptable = proto::socks5_method_none_acceptable;
  socks_read_failure failure;
  auto greeting = co_await read_socks<proto::socks5_greeting>(s, deadline, proto::parse_socks5_greeting, failure);
  if (!greeting) {
    account_socks5_failure(s, failure);
    co_return;
  }
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
  const bool written = co_await write_bytes(s, proto::socks5_method_selection(method));
  if (method == none_acceptable) {
    request_context ctx(access_protocol::socks5, s.started);
    ctx.outcome = need_auth ? request_outcome::auth_failed : request_outcome::bad_request;
    ctx.source = error_source::client;
    ctx.error = "no_acceptable_method";
    account(s, ctx);
    co_return;
  }
  if (!written) co_return;

  if (method == user_pass) {
    auto creds = co_await read_socks<proto::socks5_credentials>(s, deadline, proto::parse_socks5_auth, failure);
    if (!creds) {
      account_socks5_failure(s, failure);
      co_return;
    }
    s.in.erase(0, creds->consumed);
    const config::user_credentials* user =
        need_auth ? check_credentials(s.cfg->auth, creds->message.username, creds->message.password) : nullptr;
    const bool ok = !need_auth || user;
    if (user) s.user = user->username;
    // RFC 1929 §2: a failure status means the server closes the connection.
    if (!ok) {
      // Neither the user name nor the password goes into the record (see check_proxy_auth).
      request_context ctx(access_protocol::socks5, s.started);
      ctx.outcome = request_outcome::auth_failed;
      ctx.source = error_source::client;
      ctx.error = "credentials_invalid";
      account(s, ctx);
      co_await write_bytes(s, proto::socks5_auth_reply(false));
      co_return;
    }
    if (!co_await write_bytes(s, proto::socks5_auth_reply(true))) co_return;
  }

  failure = {};
  auto request = co_await read_socks<proto::socks5_request>(s, deadline, proto::parse_socks5_request, failure);
  if (!request) {
    std::optional<proto::socks5_reply_code> reply;
    if (failure.error != proto::parse_errc{}) reply = proto::socks5_reply_for(failure.error);
    account_socks5_failure(s, failure, reply);
    if (reply) co_await write_bytes(s, proto::socks5_reply(*reply));
    co_return;
  }
  if (request->message.command != proto::socks5_command::connect) {
    request_context ctx(access_protocol::socks5, s.started);
    const std::string target = socks5_host(request->message);
    ctx.host = target;
    ctx.port = request->message.port;
    ctx.outcome = request_outcome::unsupported_command;
    ctx.source = error_source::client;
    ctx.error = "command_not_supported";
    ctx.socks_reply = proto::socks5_reply_code::command_not_supported;
    account(s, ctx);
    co_await write_bytes(s, proto::socks5_reply(proto::socks5_reply_code::command_not_supported));
    co_return;
  }
  request_context ctx(access_protocol::socks5, s.started);
  destination d = co_await open_upstream(s, socks5_host(request->message), request->message.port, access_protocol::socks5);
  ctx.dest = &d;
  const auto code = socks_code_for(d);
  if (!d.connected()) {
    if (!silent(d.error)) ctx.socks_reply = code;
    account(s, ctx);
    if (!silent(d.error)) co_await write_bytes(s, proto::socks5_reply(code));
    co_return;
  }
  ctx.socks_reply = code;
  account(s, ctx);
  boost::system::error_code ec;
  const auto local = s.upstream.local_endpoint(ec);
  bool reply_written;
  if (!ec && local.address().is_v6())
    reply_written = co_await write_bytes(s, proto::socks5_reply(code, local.address().to_v6().to_bytes(), local.port()));
  else if (!ec)
    reply_written = co_await write_bytes(s, proto::socks5_reply(code, local.address().to_v4().to_bytes(), local.port()));
  else
    reply_written = co_await write_bytes(s, proto::socks5_reply(code));
  if (!reply_written) co_return;
  co_await tunnel(s, ctx, request->consumed);
}

// ---- SOCKS4 -------------------------------------------------------------------------------

// SOCKS4 and 4a (first byte 0x04; "SOCKS: A protocol for TCP proxy across firewalls",
// Ying-Da Lee) carry no authentication and are not served: the client gets the
// version-0 reply "request rejected or failed" (CD 91 = 0x5B) rather than silence,
// and the refusal is accounted for, with the port it asked for when it sent that much.
asio::awaitable<void> refuse_socks4(session& s) {
  request_context ctx(access_protocol::socks4, s.started);
  ctx.outcome = request_outcome::unsupported_protocol;
  ctx.source = error_source::client;
  ctx.error = "socks4_not_supported";
  // VN CD DSTPORT(2) DSTIP(4): the port is known once four bytes are in.
  std::string host;
  if (s.in.size() >= 8) {
    const auto b = [&](std::size_t i) { return static_cast<unsigned>(static_cast<unsigned char>(s.in[i])); };
    ctx.port = static_cast<std::uint16_t>(b(2) << 8 | b(3));
    // 0.0.0.x (x != 0) marks SOCKS4a, whose host name follows the user id.
    if (!(b(4) == 0 && b(5) == 0 && b(6) == 0))
      host = std::to_string(b(4)) + "." + std::to_string(b(5)) + "." + std::to_string(b(6)) + "." + std::to_string(b(7));
    ctx.host = host;
  }
  account(s, ctx);
  log_event(log_level::info, "socks4 refused: this proxy speaks SOCKS5 and HTTP",
            json_object().add("connection", s.id).add("client", s.peer).add("listener", s.listener.name));
  static constexpr std::array<std::uint8_t, 8> rejected{0x00, 0x5B, 0, 0, 0, 0, 0, 0};
  co_await write_bytes(s, rejected);
  boost::system::error_code ignored;
  s.client.shutdown(asio::socket_base::shutdown_send, ignored);
}

}  // namespace

}  // namespace egressd::proxy::detail

namespace egressd::proxy {

boost::asio::awaitable<void> run_session(worker& w, const listener_info& listener,
                                         boost::asio::generic::stream_protocol::socket client, std::string peer) {
  using namespace detail;
  session s(w, listener, std::move(client), std::move(peer));
  // Non-blocking from the start (asio would set it at the first wait): the reads and
  // writes that complete at once go directly to the socket (send_now), and a tunnel's
  // relay needs it.
  boost::system::error_code nb;
  s.client.native_non_blocking(true, nb);
  if (nb) co_return;
  const auto deadline = steady::now() + s.cfg->limits.head_timeout;
  const auto first = co_await read_more(s, deadline, s.cfg->limits.max_head_bytes + 1, /*likely_there=*/true);
  if (first != read_status::ok || s.in.empty()) co_return;  // closed (or silent) before a byte: no record
  const auto version = static_cast<unsigned char>(s.in[0]);
  if (version == 0x05 && listener.socks5) {
    co_await serve_socks5(s, deadline);
  } else if (version == 0x04 && listener.socks5) {
    co_await refuse_socks4(s);
  } else if (version != 0x05 && listener.http) {
    co_await serve_http(s, deadline);
  } else {
    // A protocol this listener does not serve (`protocols` narrows it): closed, and
    // accounted for like any other refusal.
    request_context ctx(version == 0x05 ? access_protocol::socks5 : access_protocol::http, s.started);
    ctx.outcome = request_outcome::unsupported_protocol;
    ctx.source = error_source::client;
    ctx.error = "protocol_not_served";
    account(s, ctx);
  }
}

}  // namespace egressd::proxy
