// Flow of the daemon:
//  1. One worker per core (or `workers:`), each a thread with its own io_context.
//  2. Each TCP listener gets one acceptor per worker, bound to the same address with
//     SO_REUSEPORT so the kernel spreads connections; port 0 is resolved by the first
//     bind and reused by the others. A Unix listener is bound once and each worker
//     accepts on its own dup() of the listening descriptor.
//  3. Accept errors back off (10 ms doubling to 1 s) instead of spinning on EMFILE;
//     `limits.max_connections` is enforced by closing what is accepted beyond it.
//  4. The main thread handles signals: SIGHUP reloads (load, validate, compile aside,
//     swap atomically; a bad file keeps the old policy); SIGTERM/SIGINT stop accepting,
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

#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <thread>

#include "config/diff.hpp"
#include "proxy/admin.hpp"
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

void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
  }
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
  bool stopping = false;

  impl(config_source s, loaded_config initial) : source(std::move(s)) {
    rt.current.store(std::make_shared<const generation>(
        generation{initial.config, initial.policy,
                   std::make_shared<const std::vector<policy::ip_address>>(interface_addresses())}));
    rt.max_connections.store(initial.config->limits.max_connections);
    rt.stats.set_connections_source(&rt.active_connections);
    rt.stats.set_max_domains(initial.config->metrics.max_domains);
    rt.stats.set_config_hash(policy_hash(*initial.policy));
  }

  void bind_listener(const config::listener_config& lc) {
    auto bl = std::make_unique<bound_listener>();
    bl->info = {lc.address.to_string(), lc.http, lc.socks5};
    if (lc.address.kind == config::endpoint::kind_t::unix_socket) {
      bl->unix_path = lc.address.path;
      struct stat st {};
      if (::lstat(lc.address.path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
          throw std::runtime_error(lc.address.path + " exists and is not a socket; refusing to replace it");
        ::unlink(lc.address.path.c_str());
      }
      auto first = std::make_unique<generic_acceptor>(workers[0]->io());
      generic::endpoint ep{asio::local::stream_protocol::endpoint(lc.address.path)};
      first->open(ep.protocol());
      first->bind(ep);
      first->listen(asio::socket_base::max_listen_connections);
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
        a->bind(ep);
        a->listen(asio::socket_base::max_listen_connections);
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
    for (;;) {
      generic::socket peer(w.io());
      generic::endpoint remote;  // filled in by accept(2) itself, no getpeername(2)
      auto [ec] = co_await acceptor.async_accept(peer, remote, nothrow);
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      if (ec) {
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
      const auto max = rt.max_connections.load(std::memory_order_relaxed);
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

  void reload() {
    const std::string from = source.describe();
    auto next = load_config_source(source);
    if (!next.ok()) {
      // The swap happens only after a whole successful load: nothing of the bad file
      // is in force (STYLE.md §4).
      json_object f;
      f.add("source", from).add("errors", static_cast<std::uint64_t>(next.errors.size()));
      if (!next.errors.empty()) f.add("first_error", next.errors.front());
      log_event(log_level::error, "reload failed; the previous configuration stays in force", f);
      for (const auto& e : next.errors) log_event(log_level::error, "config problem", json_object().add("problem", e));
      rt.stats.count_reload(false);
      return;
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
    rt.current.store(std::make_shared<const generation>(
        generation{next.config, next.policy,
                   std::make_shared<const std::vector<policy::ip_address>>(interface_addresses())}));
    rt.max_connections.store(next.config->limits.max_connections);
    rt.stats.set_max_domains(next.config->metrics.max_domains);
    rt.stats.set_config_hash(policy_hash(*next.policy));
    rt.stats.count_reload(true);
    for (const auto& w : next.warnings) log_event(log_level::warn, "config warning", json_object().add("problem", w));
    log_event(log_level::info, "reloaded",
              json_object()
                  .add("source", from)
                  .add("rules", static_cast<std::uint64_t>(next.policy->rule_count()))
                  .add("rules_added", static_cast<std::uint64_t>(changes.rules_added.size()))
                  .add("rules_removed", static_cast<std::uint64_t>(changes.rules_removed.size()))
                  .add("added", list_text(changes.rules_added))
                  .add("removed", list_text(changes.rules_removed))
                  .add("applied", list_text(changes.applied_keys)));
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
      if (sig == SIGHUP) {
        reload();
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

  void begin_drain(int sig) {
    stopping = true;
    rt.draining.store(true);
    close_listeners();  // the admin endpoint stays up, answering /readyz with 503
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
    if (admin) admin->stop();
    if (drain_timer) drain_timer->cancel();
    control.stop();
  }
};

server::server(config_source source, loaded_config initial)
    : impl_(std::make_unique<impl>(std::move(source), std::move(initial))) {}

server::~server() = default;

int server::run() {
  auto& s = *impl_;
  raise_fd_limit();
  auto cfg = s.rt.current.load()->config;
  unsigned n = cfg->workers ? cfg->workers : std::max(1u, std::thread::hardware_concurrency());
  try {
    for (unsigned i = 0; i < n; ++i) s.workers.push_back(std::make_unique<worker>(s.rt, i, dns_options_for(cfg->dns)));
    for (const auto& l : cfg->listeners) s.bind_listener(l);
    if (cfg->admin) {
      std::vector<worker*> ws;
      for (auto& w : s.workers) ws.push_back(w.get());
      s.admin = std::make_unique<admin_server>(s.control, cfg->admin->address, s.rt, std::move(ws));
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
  log_event(log_level::info, "ready",
            json_object()
                .add("workers", n)
                .add("busy_poll_us", cfg->busy_poll_us)
                .add("config", cfg->source)
                .add("audit", cfg->log.audit)
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
