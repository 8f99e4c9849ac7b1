// Flow of the daemon:
//  0. The descriptor plan: RLIMIT_NOFILE raised to its hard limit and shared out
//     between the process, each worker's splice pipes and the connections, lowering
//     max_connections (with a warning) when it does not fit.
//  1. One worker per core (or `workers:`), each a thread with its own io_context.
//  2. Each TCP listener gets one acceptor per worker, bound to the same address with
//     SO_REUSEPORT so the kernel spreads connections, after a probe has checked that
//     no other process listens there; port 0 is resolved by the first bind and reused
//     by the others. A Unix listener is bound once (its mode and group applied) and
//     each worker accepts on its own dup() of the listening descriptor.
//  3. `limits.max_connections` is enforced by closing what is accepted beyond it. On
//     EMFILE the worker's reserve descriptor makes room to refuse one waiting client;
//     other accept errors back off (10 ms doubling to 1 s) instead of spinning.
//  4. The main thread handles signals: SIGHUP reloads (load, validate, compile aside,
//     swap atomically; a bad file keeps the old policy), as do POST /v1/reload and,
//     with reload.watch, a change of the files (file_watch.hpp); after a successful
//     reload with reload.revoke each worker closes what the new policy denies
//     (worker::revoke); SIGUSR1 reopens the audit file (logrotate); SIGTERM/SIGINT stop accepting,
//     wait for open sessions up to `limits.drain_timeout`, then cancel them.

#include "proxy/server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <dirent.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <thread>

#include "config/diff.hpp"
#include "proxy/admin.hpp"
#include "proxy/file_watch.hpp"
#include "proxy/log.hpp"
#include "proxy/net.hpp"
#include "proxy/runtime.hpp"
#include "proxy/session.hpp"
#include "proxy/worker.hpp"

namespace egressd::proxy {

namespace asio = boost::asio;
using generic = asio::generic::stream_protocol;
using generic_acceptor = asio::basic_socket_acceptor<generic>;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

namespace {

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// Whether a socket that does not set SO_REUSEPORT could bind `ep` now: false while
// anyone listens on it (see bind_listener). Errors other than EADDRINUSE are left to
// the real bind, which reports them.
bool address_in_use(const asio::ip::tcp::endpoint& ep) {
  const int fd = ::socket(ep.address().is_v6() ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int one = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ep.address().is_v6()) (void)::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  const bool in_use = ::bind(fd, ep.data(), static_cast<socklen_t>(ep.size())) != 0 && errno == EADDRINUSE;
  ::close(fd);
  return in_use;
}

// Whether a process accepts connections on the Unix socket at `path`. A non-blocking
// connect: it succeeds, or fails with EAGAIN when the backlog is full, while someone
// listens; a file nobody listens on gives ECONNREFUSED.
bool unix_socket_listening(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), std::min(path.size(), sizeof addr.sun_path - 1));
  const bool listening = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 ||
                         errno == EAGAIN || errno == EINPROGRESS;
  ::close(fd);
  return listening;
}

// `mode` and `group` of a Unix listener, on the socket file just bound. fchmod(2) on a
// socket descriptor does not change the file's mode on Linux: the path it is. Until
// then the file has the mode the umask left, so it never is wider than configured.
void apply_permissions(const config::listener_config& lc) {
  const std::string name = lc.address.to_string();
  if (lc.group && ::chown(lc.address.path.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(*lc.group)) != 0)
    throw std::runtime_error(name + ": cannot give the socket to group " + lc.group_name + ": " + std::strerror(errno));
  if (lc.mode && ::chmod(lc.address.path.c_str(), static_cast<mode_t>(*lc.mode)) != 0)
    throw std::runtime_error(name + ": cannot set the socket's mode: " + std::strerror(errno));
}

// The soft RLIMIT_NOFILE raised to the hard one; returns the limit now in force.
std::uint64_t raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    const auto before = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = before;
  }
  return rl.rlim_cur == RLIM_INFINITY ? std::numeric_limits<std::uint32_t>::max() : rl.rlim_cur;
}

// Descriptors open now (/proc/self/fd, less the one reading it).
std::uint64_t descriptors_in_use() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 16;  // no /proc: a generous guess for stdio and logs
  std::uint64_t n = 0;
  while (const dirent* e = ::readdir(dir))
    if (e->d_name[0] != '.') ++n;
  ::closedir(dir);
  return n > 0 ? n - 1 : 0;
}

// How the descriptor limit is shared out, decided once at start-up.
struct descriptor_plan {
  std::uint64_t fd_limit = 0;
  std::uint64_t reserved = 0;        // for everything but connections and pipes
  std::size_t pipes_per_worker = 0;  // splice pipes a worker may hold open (two descriptors each)
  std::size_t idle_upstreams_per_worker = 0;  // pooled idle upstream connections (one each)
  std::size_t max_connections = 0;   // connections the limit leaves room for (<= configured)
};
// A connection holds the client's socket and at most one upstream socket at a time.
constexpr std::uint64_t fds_per_connection = 2;

// Every connection must be able to hold its sockets, and enough must be left for the
// process itself, so that running out of descriptors shows as "connection limit
// reached" (a prompt close) and never as accept(2) failing with EMFILE, which leaves
// clients waiting in the backlog. The pipes of stalled tunnels are capped per worker
// (pipe_pool), so they fit too. Throws when not even one connection fits.
descriptor_plan plan_descriptors(std::uint64_t fd_limit, std::size_t configured, std::uint64_t workers,
                                 std::uint64_t listeners, std::size_t idle_upstreams) {
  descriptor_plan plan;
  plan.fd_limit = fd_limit;
  // Per worker: its loop (epoll, eventfd, timerfd), an acceptor per listener, DNS
  // sockets, the reserve descriptor and a connection accepted only to be refused.
  const std::uint64_t per_worker = 3 + listeners + 8 + 2;
  // For the process: what is open now (stdio, log files), the control loop, signals,
  // the admin endpoint and its clients, reloads reading files; room to spare.
  plan.reserved = descriptors_in_use() + 32 + workers * per_worker;
  std::uint64_t left = fd_limit > plan.reserved ? fd_limit - plan.reserved : 0;
  // Plain HTTP's idle upstream pool (upstream_pool.hpp): limits.upstream_idle_max per
  // worker when that leaves the connections their share, else at most an eighth.
  std::uint64_t idle = idle_upstreams;
  if (left < fds_per_connection * configured + workers * idle) idle = std::min<std::uint64_t>(idle, left / 8 / workers);
  left -= workers * idle;
  std::uint64_t pipes = 0;
  if (left >= fds_per_connection * configured + workers * 2 * 4) {
    // Room to spare: what the connections leave, up to 256 pipes per worker.
    pipes = std::min<std::uint64_t>(256, (left - fds_per_connection * configured) / (2 * workers));
  } else {
    // Too little: an eighth for pipes (at least two per worker), the rest for connections.
    pipes = std::clamp<std::uint64_t>(left / 8 / (2 * workers), 2, 64);
  }
  const std::uint64_t pipe_fds = 2 * workers * pipes;
  const std::uint64_t connections = left > pipe_fds ? (left - pipe_fds) / fds_per_connection : 0;
  if (connections == 0)
    throw std::runtime_error("the descriptor limit (RLIMIT_NOFILE " + std::to_string(fd_limit) +
                             ") leaves no room for connections: egressd needs more than " +
                             std::to_string(plan.reserved + pipe_fds + fds_per_connection) +
                             " with " + std::to_string(workers) + " worker(s); raise it (ulimit -n, LimitNOFILE=)");
  plan.pipes_per_worker = static_cast<std::size_t>(pipes);
  plan.idle_upstreams_per_worker = static_cast<std::size_t>(idle);
  plan.max_connections = static_cast<std::size_t>(std::min<std::uint64_t>(configured, connections));
  return plan;
}

}  // namespace

struct server::impl {
  struct bound_listener {
    listener_info info;
    std::string address;  // actual bound address
    std::string unix_path;
    std::vector<std::unique_ptr<generic_acceptor>> acceptors;  // one per worker
  };

  config_source source;
  runtime rt;
  std::vector<std::unique_ptr<worker>> workers;
  std::vector<std::unique_ptr<bound_listener>> listeners;
  asio::io_context control;
  asio::signal_set signals{control, SIGHUP, SIGTERM, SIGINT};
  std::unique_ptr<admin_server> admin;
  // reload.watch: the config file, the settings file and decisions_file.
  file_watch watcher{control, [this](const std::vector<std::string>& changed) { on_files_changed(changed); }};
  bool stopping = false;
  // Connections the descriptor limit leaves room for (plan_descriptors); the accept
  // path takes the smaller of this and limits.max_connections. Set before the workers start.
  std::size_t connection_cap = std::numeric_limits<std::size_t>::max();

  impl(config_source s, loaded_config initial) : source(std::move(s)) {
    rt.current.store(std::make_shared<const generation>(
        generation{initial.config, initial.policy,
                   std::make_shared<const std::vector<policy::ip_address>>(interface_addresses())}));
    rt.generation_number.fetch_add(1, std::memory_order_release);
    rt.max_connections.store(initial.config->limits.max_connections);
    signals.add(SIGUSR1);  // the constructor takes three signals at most
    rt.stats.set_connections_source(&rt.active_connections);
    rt.stats.set_max_domains(initial.config->metrics.max_domains);
    rt.stats.set_config_hash(policy_hash(*initial.policy));
  }

  void bind_listener(const config::listener_config& lc) {
    auto bl = std::make_unique<bound_listener>();
    bl->info = {lc.address.to_string(), lc.http, lc.socks5};
    const std::string& name = bl->info.name;
    const auto check = [&](const boost::system::error_code& ec, std::string_view what) {
      if (ec) throw std::runtime_error(name + ": cannot " + std::string(what) + ": " + ec.message());
    };
    boost::system::error_code ec;
    if (lc.address.kind == config::endpoint::kind_t::unix_socket) {
      bl->unix_path = lc.address.path;
      struct stat st {};
      if (::lstat(lc.address.path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
          throw std::runtime_error(lc.address.path + " exists and is not a socket; refusing to replace it");
        // A socket file is left behind by a process that ended without removing it, or
        // belongs to one that still listens: only the first may be replaced.
        if (unix_socket_listening(lc.address.path))
          throw std::runtime_error(name + ": address in use: another process listens on it");
        ::unlink(lc.address.path.c_str());
      }
      auto first = std::make_unique<generic_acceptor>(workers[0]->io());
      generic::endpoint ep{asio::local::stream_protocol::endpoint(lc.address.path)};
      first->open(ep.protocol());
      first->bind(ep, ec);
      check(ec, "bind");
      try {
        apply_permissions(lc);
      } catch (...) {
        ::unlink(lc.address.path.c_str());  // never leave a socket file with the wrong mode behind
        throw;
      }
      first->listen(asio::socket_base::max_listen_connections, ec);
      check(ec, "listen");
      bl->address = "unix:" + lc.address.path;
      const int fd = first->native_handle();
      bl->acceptors.push_back(std::move(first));
      for (std::size_t i = 1; i < workers.size(); ++i) {
        const int copy = ::dup(fd);
        if (copy < 0) throw std::runtime_error("dup: " + std::string(std::strerror(errno)));
        auto a = std::make_unique<generic_acceptor>(workers[i]->io());
        a->assign(ep.protocol(), copy);
        bl->acceptors.push_back(std::move(a));
      }
    } else {
      auto tcp_ep = resolve_listen_address(lc.address);
      // The workers' acceptors share the port through SO_REUSEPORT, and so would any
      // other socket of the same user that sets it too (a second egressd, `nc -l`):
      // the kernel would spread clients over both, each with its own policy. So the
      // port must be free first: a probe bound without SO_REUSEPORT (SO_REUSEADDR only,
      // so connections of an earlier run in TIME_WAIT do not count) fails with
      // EADDRINUSE while anyone listens on it, whatever options they set. The probe is
      // closed before the workers bind; a process that binds in those microseconds can
      // still join, which only two instances started at the same instant could do.
      // Port 0 needs no probe: the kernel never picks a port another socket listens on.
      if (tcp_ep.port() != 0 && address_in_use(tcp_ep))
        throw std::runtime_error(name + ": address in use: another process listens on it");
      for (std::size_t i = 0; i < workers.size(); ++i) {
        auto a = std::make_unique<generic_acceptor>(workers[i]->io());
        generic::endpoint ep{tcp_ep};
        a->open(ep.protocol());
        a->set_option(asio::socket_base::reuse_address(true));
        a->set_option(reuse_port(true));
        // Linux hands TCP_NODELAY down to accepted sockets: one setsockopt per
        // listener instead of one per connection.
        a->set_option(asio::detail::socket_option::boolean<IPPROTO_TCP, TCP_NODELAY>(true));
        if (tcp_ep.address().is_v6()) a->set_option(asio::ip::v6_only(true));
        a->bind(ep, ec);
        if (ec == asio::error::address_in_use)
          throw std::runtime_error(name + ": address in use: another process listens on it");
        check(ec, "bind");
        a->listen(asio::socket_base::max_listen_connections, ec);
        check(ec, "listen");
        if (i == 0) {
          tcp_ep.port(ip_endpoint(a->local_endpoint())->port());  // port 0: every worker binds the chosen one
          bl->address = endpoint_text(a->local_endpoint());
        }
        bl->acceptors.push_back(std::move(a));
      }
    }
    listeners.push_back(std::move(bl));
  }

  asio::awaitable<void> accept_loop(worker& w, generic_acceptor& acceptor, const listener_info& info) {
    auto backoff = std::chrono::milliseconds(10);
    asio::steady_timer pause(w.io());
    std::uint64_t refused = 0;
    std::chrono::steady_clock::time_point last_refusal_log{};
    for (;;) {
      generic::socket peer(w.io());
      generic::endpoint remote;  // filled in by accept(2) itself, no getpeername(2)
      auto [ec] = co_await acceptor.async_accept(peer, remote, nothrow);
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      if (ec) {
        // Out of descriptors all the same (something beyond the plan took them): refuse
        // the waiting clients through the reserve descriptor rather than leave them
        // hanging, and say so at most once a second.
        if ((ec == asio::error::no_descriptors || ec.value() == ENFILE) && w.refuse_one(acceptor.native_handle())) {
          ++refused;
          const auto now = std::chrono::steady_clock::now();
          if (now - last_refusal_log >= std::chrono::seconds(1)) {
            log_event(log_level::warn, "out of descriptors: connection refused",
                      json_object().add("listener", info.name).add("refused", refused));
            last_refusal_log = now;
            refused = 0;
          }
          continue;
        }
        // EMFILE, ENFILE, ENOBUFS, ENOMEM: wait for descriptors to free up.
        log_event(log_level::warn, "accept failed",
                  json_object().add("listener", info.name).add("error", ec.message()).add(
                      "retry_ms", static_cast<std::int64_t>(backoff.count())));
        pause.expires_after(backoff);
        co_await pause.async_wait(nothrow);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
        continue;
      }
      backoff = std::chrono::milliseconds(10);
      const auto max = std::min(rt.max_connections.load(std::memory_order_relaxed), connection_cap);
      if (rt.active_connections.load(std::memory_order_relaxed) >= max) {
        boost::system::error_code ignored;
        peer.close(ignored);
        log_event(log_level::warn, "connection limit reached", json_object().add("listener", info.name).add(
                                                                   "max_connections", static_cast<std::uint64_t>(max)));
        continue;
      }
      std::string peer_text = endpoint_text(remote);
      rt.active_connections.fetch_add(1, std::memory_order_relaxed);
      asio::co_spawn(w.io(), run_session(w, info, std::move(peer), std::move(peer_text)),
                     [this](std::exception_ptr e) {
                       rt.active_connections.fetch_sub(1, std::memory_order_relaxed);
                       if (!e) return;
                       try {
                         std::rethrow_exception(e);
                       } catch (const std::exception& ex) {
                         log_event(log_level::error, "session failed", json_object().add("error", ex.what()));
                       }
                     });
    }
  }

  void close_listeners() {
    for (auto& l : listeners) {
      for (std::size_t i = 0; i < l->acceptors.size(); ++i) {
        auto* a = l->acceptors[i].get();
        asio::post(workers[i]->io(), [a] {
          boost::system::error_code ignored;
          a->close(ignored);
        });
      }
      if (!l->unix_path.empty()) ::unlink(l->unix_path.c_str());
    }
  }

  // `trigger`: what asked for it ("signal", "admin", "watch"), for the log.
  reload_report reload(std::string_view trigger) {
    const std::string from = source.describe();
    reload_report report;
    report.source = from;
    auto next = load_config_source(source);
    if (!next.ok()) {
      // The swap happens only after a whole successful load: nothing of the bad file
      // is in force.
      if (next.errors.empty()) next.errors.push_back(from + ": the configuration could not be loaded");
      json_object f;
      f.add("source", from).add("trigger", trigger).add("errors", static_cast<std::uint64_t>(next.errors.size()));
      f.add("first_error", next.errors.front());
      log_event(log_level::error, "reload failed; the previous configuration stays in force", f);
      for (const auto& e : next.errors) log_event(log_level::error, "config problem", json_object().add("problem", e));
      rt.stats.count_reload(false);
      report.errors = std::move(next.errors);
      report.warnings = std::move(next.warnings);
      update_watch();  // the bad content is the reference now: the next change reloads
      return report;
    }
    auto old = rt.current.load()->config;
    const auto changes = config::describe_changes(*old, *next.config);
    if (changes.listeners_need_restart())
      log_event(log_level::warn, "listener changes take effect after a restart",
                json_object()
                    .add("added", list_text(changes.listeners_added))
                    .add("removed", list_text(changes.listeners_removed))
                    .add("changed", list_text(changes.listeners_changed)));
    if (!changes.restart_keys.empty())
      log_event(log_level::warn, "these changes take effect after a restart",
                json_object().add("keys", list_text(changes.restart_keys)));
    // Config, policy and local addresses are published together (runtime::current).
    auto gen = std::make_shared<const generation>(
        generation{next.config, next.policy,
                   std::make_shared<const std::vector<policy::ip_address>>(interface_addresses())});
    rt.current.store(gen);
    rt.generation_number.fetch_add(1, std::memory_order_release);
    rt.max_connections.store(next.config->limits.max_connections);
    rt.stats.set_max_domains(next.config->metrics.max_domains);
    rt.stats.set_config_hash(policy_hash(*next.policy));
    rt.stats.count_reload(true);
    if (auto error = rt.hooks.configure(*next.config); !error.empty())
      log_event(log_level::error, "reloaded, but the hook is not as configured (remembered answers stay as they were)",
                json_object().add("error", error));
    for (const auto& w : next.warnings) log_event(log_level::warn, "config warning", json_object().add("problem", w));
    // Revocation: each worker decides its open tunnels and idle pooled upstreams again
    // with the new policy (and the decision memory just re-read) and closes the denied.
    if (next.config->reload.revoke)
      for (auto& w : workers) w->revoke(gen);
    report.ok = true;
    report.rules = next.policy->rule_count();
    report.rules_added = changes.rules_added.size();
    report.rules_removed = changes.rules_removed.size();
    report.warnings = next.warnings;
    report.revoke = next.config->reload.revoke;
    log_event(log_level::info, "reloaded",
              json_object()
                  .add("source", from)
                  .add("trigger", trigger)
                  .add("rules", static_cast<std::uint64_t>(next.policy->rule_count()))
                  .add("rules_added", static_cast<std::uint64_t>(changes.rules_added.size()))
                  .add("rules_removed", static_cast<std::uint64_t>(changes.rules_removed.size()))
                  .add("added", list_text(changes.rules_added))
                  .add("removed", list_text(changes.rules_removed))
                  .add("applied", list_text(changes.applied_keys)));
    update_watch();
    return report;
  }

  // What reload.watch watches, as the current configuration names them.
  void update_watch() {
    const auto cfg = rt.current.load()->config;
    if (!cfg->reload.watch || stopping) {
      watcher.stop();
      return;
    }
    std::vector<std::string> files{source.yaml, source.settings, cfg->decisions_file};
    std::erase(files, std::string());
    if (auto problem = watcher.watch(files); !problem.empty())
      log_event(log_level::warn, "cannot watch every configuration file; SIGHUP and POST /v1/reload still reload",
                json_object().add("error", problem));
  }

  void on_files_changed(const std::vector<std::string>& changed) {
    if (stopping) return;
    log_event(log_level::info, "configuration files changed", json_object().add("files", list_text(changed)));
    reload("watch");
  }

  // Up to ten entries, comma-separated, then how many more: a reload of a large
  // allowlist stays one readable line.
  static std::string list_text(const std::vector<std::string>& items) {
    constexpr std::size_t shown = 10;
    std::string out;
    for (std::size_t i = 0; i < items.size() && i < shown; ++i) out += (i ? ", " : "") + items[i];
    if (items.size() > shown) out += ", and " + std::to_string(items.size() - shown) + " more";
    return out;
  }

  void wait_signal() {
    signals.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGUSR1) {
        reopen_audit_log();  // logrotate: `mv audit.log audit.log.1; kill -USR1`
      } else if (sig == SIGHUP) {
        reload("signal");
      } else if (!stopping) {
        begin_drain(sig);
      } else {
        log_event(log_level::warn, "second stop signal: closing every session now");
        finish();
        return;
      }
      wait_signal();
    });
  }

  std::unique_ptr<asio::steady_timer> drain_timer;
  std::chrono::steady_clock::time_point drain_deadline;
  std::unique_ptr<asio::steady_timer> audit_flush_timer;

  // Buffered access records go out every audit_flush_interval (log.hpp), from this
  // thread, so workers never wait on a write(2) per record.
  void flush_audit_periodically() {
    if (!audit_flush_timer) audit_flush_timer = std::make_unique<asio::steady_timer>(control);
    audit_flush_timer->expires_after(audit_flush_interval);
    audit_flush_timer->async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      flush_audit_log();
      flush_audit_periodically();
    });
  }

  void begin_drain(int sig) {
    stopping = true;
    rt.draining.store(true);
    watcher.stop();
    close_listeners();  // the admin endpoint stays up, answering /readyz with 503
    rt.hooks.stop();    // held requests are refused now (shutting_down), not at the deadline
    const auto timeout = rt.current.load()->config->limits.drain_timeout;
    drain_deadline = std::chrono::steady_clock::now() + timeout;
    log_event(log_level::info, "draining",
              json_object()
                  .add("signal", sig == SIGINT ? "SIGINT" : "SIGTERM")
                  .add("open_connections", static_cast<std::uint64_t>(rt.active_connections.load()))
                  .add("drain_timeout_ms", static_cast<std::int64_t>(timeout.count())));
    drain_timer = std::make_unique<asio::steady_timer>(control);
    poll_drain();
  }

  void poll_drain() {
    if (rt.active_connections.load() == 0 || std::chrono::steady_clock::now() >= drain_deadline) {
      finish();
      return;
    }
    drain_timer->expires_after(std::chrono::milliseconds(25));
    drain_timer->async_wait([this](const boost::system::error_code& ec) {
      if (!ec) poll_drain();
    });
  }

  void finish() {
    const auto left = rt.active_connections.load();
    if (left > 0) {
      log_event(log_level::info, "drain deadline passed: closing open sessions",
                json_object().add("open_connections", static_cast<std::uint64_t>(left)));
      for (auto& w : workers) w->abort_all();
    }
    signals.cancel();
    watcher.stop();
    rt.hooks.stop();
    if (admin) admin->stop();
    if (drain_timer) drain_timer->cancel();
    if (audit_flush_timer) audit_flush_timer->cancel();
    control.stop();
  }
};

server::server(config_source source, loaded_config initial)
    : impl_(std::make_unique<impl>(std::move(source), std::move(initial))) {}

server::~server() = default;

int server::run() {
  auto& s = *impl_;
  const std::uint64_t fd_limit = raise_fd_limit();
  auto cfg = s.rt.current.load()->config;
  unsigned n = cfg->workers ? cfg->workers : std::max(1u, std::thread::hardware_concurrency());
  try {
    const auto configured = cfg->limits.max_connections;
    const auto plan = plan_descriptors(fd_limit, configured, n, cfg->listeners.size(), cfg->limits.upstream_idle_max);
    s.connection_cap = plan.max_connections;
    if (plan.max_connections < configured)
      log_event(log_level::warn, "max_connections lowered to fit the descriptor limit",
                json_object()
                    .add("configured", static_cast<std::uint64_t>(configured))
                    .add("max_connections", static_cast<std::uint64_t>(plan.max_connections))
                    .add("fd_limit", plan.fd_limit)
                    .add("fds_per_connection", fds_per_connection)
                    .add("reserved_fds", plan.reserved)
                    .add("pipes_per_worker", static_cast<std::uint64_t>(plan.pipes_per_worker))
                    .add("idle_upstreams_per_worker", static_cast<std::uint64_t>(plan.idle_upstreams_per_worker))
                    .add("hint", "raise the limit (ulimit -n, LimitNOFILE=) or lower limits.max_connections"));
    for (unsigned i = 0; i < n; ++i)
      s.workers.push_back(std::make_unique<worker>(s.rt, i, dns_options_for(cfg->dns), plan.pipes_per_worker, n,
                                                   plan.idle_upstreams_per_worker));
    for (const auto& l : cfg->listeners) s.bind_listener(l);
    if (auto error = s.rt.hooks.configure(*cfg); !error.empty())
      throw std::runtime_error(error);
    // egressd's own writes of decisions_file are no change for the file watch.
    s.rt.hooks.on_saved([&s](const std::string& path) {
      asio::post(s.control, [&s, path] { s.watcher.accept(path); });
    });
    s.rt.hooks.start();
    if (cfg->admin) {
      std::vector<worker*> ws;
      for (auto& w : s.workers) ws.push_back(w.get());
      s.admin = std::make_unique<admin_server>(s.control, *cfg->admin, s.rt, std::move(ws), s.rt.hooks);
      s.admin->set_reload([&s] { return s.reload("admin"); });
    }
  } catch (const std::exception& e) {
    log_event(log_level::error, "startup failed", json_object().add("error", e.what()));
    flush_logs();
    return 1;
  }
  for (auto& l : s.listeners) {
    for (std::size_t i = 0; i < l->acceptors.size(); ++i)
      asio::co_spawn(s.workers[i]->io(), s.accept_loop(*s.workers[i], *l->acceptors[i], l->info), asio::detached);
    log_event(log_level::info, "listening",
              json_object()
                  .add("listener", l->info.name)
                  .add("address", l->address)
                  .add("http", l->info.http)
                  .add("socks5", l->info.socks5));
  }
  if (s.admin) {
    s.admin->start();
    log_event(log_level::info, "admin listening",
              json_object().add("address", s.admin->address()).add("paths", s.admin->route_list()));
  }
  for (auto& w : s.workers) w->start();
  s.wait_signal();
  s.update_watch();
  s.flush_audit_periodically();
  log_event(log_level::info, "ready",
            json_object()
                .add("workers", n)
                .add("max_connections",
                     static_cast<std::uint64_t>(std::min(cfg->limits.max_connections, s.connection_cap)))
                .add("fd_limit", fd_limit)
                .add("busy_poll_us", cfg->busy_poll_us)
                .add("config", cfg->source)
                .add("audit", config::audit_text(cfg->log))
                .add("rules", static_cast<std::uint64_t>(s.rt.current.load()->policy->rule_count())));
  s.control.run();

  // finish() aborted whatever was still open; give the aborted sessions a moment to
  // unwind, then stop the loops (stop_and_join runs what is left on this thread).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (s.rt.active_connections.load() > 0 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  for (auto& w : s.workers) w->io().stop();
  for (auto& w : s.workers) w->stop_and_join();
  s.listeners.clear();
  log_event(log_level::info, "stopped");
  flush_logs();
  return 0;
}

}  // namespace egressd::proxy
