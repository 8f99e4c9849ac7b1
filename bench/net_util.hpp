// Small helpers shared by the benchmark's network programs (load generator, origin,
// splice relay). Plain POSIX/Linux; loopback only by convention of the callers.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace bench {

inline uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "fatal: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

[[noreturn]] inline void usage_error(const std::string& msg) {
  std::fprintf(stderr, "usage error: %s\n", msg.c_str());
  std::exit(2);
}

// Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
inline rlim_t raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

// Parses a decimal port: digits only, at most 65535 ("0" is allowed: any free port).
inline bool parse_port(std::string_view s, uint16_t& port) {
  if (s.empty() || s.size() > 5) return false;
  uint32_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + uint32_t(ch - '0');
  }
  if (v > 65535) return false;
  port = uint16_t(v);
  return true;
}

// Parses "A.B.C.D:PORT" (IPv4) or "[v6]:PORT" into a sockaddr_storage.
inline bool parse_endpoint(std::string_view s, sockaddr_storage& out, socklen_t& len) {
  std::memset(&out, 0, sizeof out);
  std::string_view host, port_s;
  const bool v6 = !s.empty() && s.front() == '[';
  if (v6) {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    host = s.substr(1, close - 1);
    port_s = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = s.substr(0, colon);
    port_s = s.substr(colon + 1);
  }
  uint16_t port = 0;
  if (!parse_port(port_s, port)) return false;
  const std::string h(host);
  if (v6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&out);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    if (inet_pton(AF_INET6, h.c_str(), &a6->sin6_addr) != 1) return false;
    len = sizeof(sockaddr_in6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&out);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    if (inet_pton(AF_INET, h.c_str(), &a4->sin_addr) != 1) return false;
    len = sizeof(sockaddr_in);
  }
  return true;
}

inline uint16_t endpoint_port(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port);
}

inline void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// A non-blocking listening socket on `addr` (port 0 = any), SO_REUSEADDR and,
// when `reuseport`, SO_REUSEPORT so that several threads can each own one.
inline int listen_on(const sockaddr_storage& addr, socklen_t len, bool reuseport, int backlog = 4096) {
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) die("bind");
  if (listen(fd, backlog) != 0) die("listen");
  return fd;
}

inline uint16_t local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return endpoint_port(ss);
}

inline void epoll_add(int ep, int fd, void* p, uint32_t ev) {
  epoll_event e{};
  e.events = ev;
  e.data.ptr = p;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) die("epoll_ctl");
}

// Connections a level-triggered listener accepts per event, so that a burst of
// connects cannot hold up the data of the established ones (the rest come next turn).
constexpr int kAcceptsPerEvent = 64;

// One non-blocking accept; -1 when none is pending (EAGAIN) or on EMFILE and the like
// (a level-triggered listener reports it again).
inline int accept_nb(int lfd) {
  for (;;) {
    int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0 || (errno != EINTR && errno != ECONNABORTED)) return fd;
  }
}

// Set by SIGINT/SIGTERM (install_stop_signals) and by run_workers' deadline.
inline std::atomic<bool> g_stop{false};

inline void install_stop_signals() {
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = [](int) { g_stop.store(true); };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// The event loop of one worker thread, until `stop`: on_event(ptr, events) for each
// event of a batch, then after_batch(), which returns true while it has work left over
// (connections whose per-event budget ran out): the next wait then does not sleep.
template <class OnEvent, class AfterBatch>
void run_loop(int ep, const std::atomic<bool>& stop, OnEvent&& on_event, AfterBatch&& after_batch) {
  std::vector<epoll_event> events(512);
  bool more = false;
  while (!stop.load(std::memory_order_relaxed)) {
    int n = epoll_wait(ep, events.data(), int(events.size()), more ? 0 : 200);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) on_event(events[i].data.ptr, events[i].events);
    more = after_batch();
  }
}

// Edge-triggered epoll reports no new event for bytes already waiting, so a connection
// that stopped at its per-event budget waits in `ready` and is handled again after the
// batch. A closed one waits in `graveyard` until nothing queued points at it. T has
// `bool queued` and `bool dead`, and is owned (new/delete) by the worker.
template <class T>
struct turn_queue {
  std::vector<T*> ready, turn, graveyard;

  void requeue(T* c) {
    if (c->queued) return;
    c->queued = true;
    ready.push_back(c);
  }
  void bury(T* c) {
    c->dead = true;
    graveyard.push_back(c);
  }
  // One more turn for each connection left in `ready` (handle(c) for the live ones),
  // then frees the buried ones no longer queued. True while work is left over.
  template <class Handle>
  bool run(Handle&& handle) {
    turn.swap(ready);
    for (T* c : turn) {
      c->queued = false;
      if (!c->dead) handle(c);
    }
    turn.clear();
    size_t keep = 0;
    for (T* c : graveyard) {
      if (c->queued)
        graveyard[keep++] = c;
      else
        delete c;
    }
    graveyard.resize(keep);
    return !ready.empty();
  }
};

// Runs w.run() of each worker on its own thread until g_stop or `max_seconds` pass.
template <class Worker>
void run_workers(std::vector<Worker>& workers, double max_seconds) {
  std::vector<std::thread> ts;
  for (auto& w : workers) ts.emplace_back([&w] { w.run(); });
  uint64_t end = now_ns() + uint64_t(max_seconds * 1e9);
  while (!g_stop.load() && now_ns() < end) usleep(100 * 1000);
  g_stop.store(true);
  for (auto& t : ts) t.join();
}

}  // namespace bench
