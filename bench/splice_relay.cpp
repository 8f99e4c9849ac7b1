// bench_splice_relay: the minimal relay, the physical limit for any relay on this
// machine. It speaks no protocol: each accepted connection is joined to a FIXED target
// given on the command line, and bytes move both ways with splice(2) through one pipe
// per direction (socket -> pipe -> socket, never through user space). Edge-triggered
// epoll; one event loop per thread (--threads N, SO_REUSEPORT listeners).
//
//   bench_splice_relay --map 127.0.0.1:0=127.0.0.1:9000 [--map ...] [--threads 1]
//                      [--pipe-size BYTES] [--max-seconds 3600]
//
// Prints one JSON line with the bound listening ports in --map order: {"ports":[P,...]}.
// EOF on one side becomes shutdown(SHUT_WR) on the other; an error closes both.

#include <signal.h>
#include <sys/epoll.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "net_util.hpp"

namespace {

std::atomic<bool> g_stop{false};
int g_pipe_size = 0;
constexpr size_t kChunk = 1 << 20;  // upper bound per splice; the pipe size limits it

struct Tunnel;

struct Handle {
  enum Type : uint8_t { listener, client, upstream } type;
  Tunnel* t = nullptr;
  int map_index = 0;  // listeners
  int fd = -1;        // listeners
};

struct Dir {
  int pipe_r = -1, pipe_w = -1;
  size_t pend = 0;
  bool eof = false;  // source reached EOF and the destination was shut down for writing
};

struct Tunnel {
  int cfd = -1, ufd = -1;
  bool connected = false;
  bool dead = false;
  Handle hc{Handle::client}, hu{Handle::upstream};
  Dir cu, uc;  // client->upstream, upstream->client
};

struct Map {
  sockaddr_storage listen{};
  socklen_t listen_len = 0;
  sockaddr_storage target{};
  socklen_t target_len = 0;
};
std::vector<Map> g_maps;

struct Worker {
  int ep = -1;
  std::vector<Handle*> listeners;
  std::vector<Tunnel*> graveyard;

  void add(int fd, Handle* h, uint32_t ev) {
    epoll_event e{};
    e.events = ev;
    e.data.ptr = h;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) != 0) bench::die("epoll_ctl");
  }

  static bool make_pipe(Dir& d) {
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    d.pipe_r = p[0];
    d.pipe_w = p[1];
    if (g_pipe_size > 0) fcntl(p[1], F_SETPIPE_SZ, g_pipe_size);
    return true;
  }

  void kill(Tunnel* t) {
    if (t->dead) return;
    t->dead = true;
    for (int fd : {t->cfd, t->ufd, t->cu.pipe_r, t->cu.pipe_w, t->uc.pipe_r, t->uc.pipe_w})
      if (fd >= 0) close(fd);
    graveyard.push_back(t);
  }

  void on_accept(Handle* l) {
    for (;;) {
      int cfd = accept4(l->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (cfd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      const Map& m = g_maps[size_t(l->map_index)];
      auto* t = new Tunnel;
      t->cfd = cfd;
      t->hc.t = t;
      t->hu.t = t;
      t->ufd = socket(m.target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (t->ufd < 0 || !make_pipe(t->cu) || !make_pipe(t->uc)) {
        kill(t);
        continue;
      }
      bench::set_nodelay(cfd);
      bench::set_nodelay(t->ufd);
      int r = connect(t->ufd, reinterpret_cast<const sockaddr*>(&m.target), m.target_len);
      if (r != 0 && errno != EINPROGRESS) {
        kill(t);
        continue;
      }
      add(cfd, &t->hc, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
      add(t->ufd, &t->hu, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    }
  }

  // Moves src -> pipe -> dst until EAGAIN; false on error.
  static bool pump(int src, int dst, Dir& d) {
    for (;;) {
      if (d.pend > 0) {
        ssize_t n = splice(d.pipe_r, nullptr, dst, nullptr, d.pend, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          d.pend -= size_t(n);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return true;
        return false;
      }
      if (d.eof) return true;
      ssize_t n = splice(src, nullptr, d.pipe_w, nullptr, kChunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d.pend += size_t(n);
        continue;
      }
      if (n == 0) {
        d.eof = true;
        shutdown(dst, SHUT_WR);
        return true;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      return false;
    }
  }

  void on_tunnel(Handle* h) {
    Tunnel* t = h->t;
    if (t->dead) return;
    if (!t->connected) {
      if (h->type != Handle::upstream) return;  // client bytes wait in its socket
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(t->ufd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) return kill(t);
      // EPOLLOUT may come before the handshake completes only with an error.
      t->connected = true;
    }
    if (!pump(t->cfd, t->ufd, t->cu) || !pump(t->ufd, t->cfd, t->uc)) return kill(t);
    if (t->cu.eof && t->uc.eof && t->cu.pend == 0 && t->uc.pend == 0) kill(t);
  }

  void run() {
    std::vector<epoll_event> events(512);
    while (!g_stop.load(std::memory_order_relaxed)) {
      int n = epoll_wait(ep, events.data(), int(events.size()), 200);
      if (n < 0) {
        if (errno == EINTR) continue;
        bench::die("epoll_wait");
      }
      for (int i = 0; i < n; ++i) {
        auto* h = static_cast<Handle*>(events[i].data.ptr);
        if (h->type == Handle::listener) on_accept(h);
        else on_tunnel(h);
      }
      for (Tunnel* t : graveyard) delete t;
      graveyard.clear();
    }
  }
};

void on_signal(int) { g_stop.store(true); }

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  double max_seconds = 3600;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) bench::usage_error("missing value for " + a);
      return argv[++i];
    };
    if (a == "--map") {
      std::string v = next();
      auto eq = v.find('=');
      if (eq == std::string::npos) bench::usage_error("--map LISTEN=TARGET");
      Map m;
      if (!bench::parse_endpoint(v.substr(0, eq), m.listen, m.listen_len) ||
          !bench::parse_endpoint(v.substr(eq + 1), m.target, m.target_len))
        bench::usage_error("bad --map " + v);
      g_maps.push_back(m);
    } else if (a == "--threads") threads = std::max(1, std::stoi(next()));
    else if (a == "--pipe-size") g_pipe_size = std::stoi(next());
    else if (a == "--max-seconds") max_seconds = std::stod(next());
    else if (a == "--help" || a == "-h") {
      std::printf("bench_splice_relay --map LISTEN=TARGET [--map ...] [--threads N] [--pipe-size B] [--max-seconds S]\n");
      return 0;
    } else bench::usage_error("unknown option " + a);
  }
  if (g_maps.empty()) bench::usage_error("at least one --map LISTEN=TARGET");
  bench::raise_nofile();
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  std::vector<Worker> workers(static_cast<size_t>(threads));
  std::vector<int> ports(g_maps.size());
  for (auto& w : workers) {
    w.ep = epoll_create1(EPOLL_CLOEXEC);
    if (w.ep < 0) bench::die("epoll_create1");
    for (size_t m = 0; m < g_maps.size(); ++m) {
      auto* l = new Handle{Handle::listener};
      l->map_index = int(m);
      l->fd = bench::listen_on(g_maps[m].listen, g_maps[m].listen_len, threads > 1);
      ports[m] = bench::local_port(l->fd);
      // The next threads bind the port this one got.
      if (g_maps[m].listen.ss_family == AF_INET6)
        reinterpret_cast<sockaddr_in6&>(g_maps[m].listen).sin6_port = htons(uint16_t(ports[m]));
      else
        reinterpret_cast<sockaddr_in&>(g_maps[m].listen).sin_port = htons(uint16_t(ports[m]));
      w.add(l->fd, l, EPOLLIN);
      w.listeners.push_back(l);
    }
  }
  std::printf("{\"ports\":[");
  for (size_t m = 0; m < ports.size(); ++m) std::printf("%s%d", m ? "," : "", ports[m]);
  std::printf("]}\n");
  std::fflush(stdout);

  std::vector<std::thread> ts;
  for (auto& w : workers) ts.emplace_back([&w] { w.run(); });
  uint64_t end = bench::now_ns() + uint64_t(max_seconds * 1e9);
  while (!g_stop.load() && bench::now_ns() < end) usleep(100 * 1000);
  g_stop.store(true);
  for (auto& t : ts) t.join();
  return 0;
}
