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

#include <atomic>
#include <string>
#include <vector>

#include "net_util.hpp"

namespace {

int g_pipe_size = 0;
std::atomic<bool> g_pipe_size_warned{false};
constexpr size_t kChunk = 1 << 20;  // upper bound per splice; the pipe size limits it
// splice calls per direction and event; the rest of a tunnel's work waits in
// Worker::queue until every other ready tunnel had its turn.
constexpr int kSplicesPerTurn = 16;

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
  bool queued = false;  // in Worker::queue
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
  // Edge-triggered: a tunnel that stopped at its budget gets no new event for the
  // bytes already waiting, so it is pumped again after the batch, from this queue.
  bench::turn_queue<Tunnel> queue;

  static bool make_pipe(Dir& d) {
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return false;
    d.pipe_r = p[0];
    d.pipe_w = p[1];
    if (g_pipe_size > 0 && fcntl(p[1], F_SETPIPE_SZ, g_pipe_size) < 0 && !g_pipe_size_warned.exchange(true))
      std::fprintf(stderr, "bench_splice_relay: F_SETPIPE_SZ %d failed (%s); pipes keep the default size\n",
                   g_pipe_size, std::strerror(errno));
    return true;
  }

  void kill(Tunnel* t) {
    if (t->dead) return;
    for (int fd : {t->cfd, t->ufd, t->cu.pipe_r, t->cu.pipe_w, t->uc.pipe_r, t->uc.pipe_w})
      if (fd >= 0) close(fd);
    queue.bury(t);
  }

  void on_accept(Handle* l) {
    for (int i = 0; i < bench::kAcceptsPerEvent; ++i) {
      int cfd = bench::accept_nb(l->fd);
      if (cfd < 0) return;
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
      bench::epoll_add(ep, cfd, &t->hc, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
      bench::epoll_add(ep, t->ufd, &t->hu, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    }
  }

  enum class Pump { again, budget, error };

  // Moves src -> pipe -> dst until EAGAIN (again), EOF, an error, or the budget of
  // kSplicesPerTurn calls is spent (budget: there may be more to move).
  static Pump pump(int src, int dst, Dir& d) {
    for (int i = 0; i < kSplicesPerTurn; ++i) {
      if (d.pend > 0) {
        ssize_t n = splice(d.pipe_r, nullptr, dst, nullptr, d.pend, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          d.pend -= size_t(n);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return Pump::again;
        return Pump::error;
      }
      if (d.eof) return Pump::again;
      ssize_t n = splice(src, nullptr, d.pipe_w, nullptr, kChunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d.pend += size_t(n);
        continue;
      }
      if (n == 0) {
        d.eof = true;
        shutdown(dst, SHUT_WR);
        return Pump::again;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return Pump::again;
      return Pump::error;
    }
    return Pump::budget;
  }

  void pump_both(Tunnel* t) {
    Pump a = pump(t->cfd, t->ufd, t->cu);
    if (a == Pump::error) return kill(t);
    Pump b = pump(t->ufd, t->cfd, t->uc);
    if (b == Pump::error) return kill(t);
    if (t->cu.eof && t->uc.eof && t->cu.pend == 0 && t->uc.pend == 0) return kill(t);
    if (a == Pump::budget || b == Pump::budget) queue.requeue(t);
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
    pump_both(t);
  }

  void run() {
    bench::run_loop(
        ep, bench::g_stop,
        [this](void* p, uint32_t) {
          auto* h = static_cast<Handle*>(p);
          if (h->type == Handle::listener) on_accept(h);
          else on_tunnel(h);
        },
        [this] { return queue.run([this](Tunnel* t) { pump_both(t); }); });
  }
};

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
  bench::install_stop_signals();

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
      bench::epoll_add(w.ep, l->fd, l, EPOLLIN);  // level-triggered: accept backs off on EMFILE
    }
  }
  std::printf("{\"ports\":[");
  for (size_t m = 0; m < ports.size(); ++m) std::printf("%s%d", m ? "," : "", ports[m]);
  std::printf("]}\n");
  std::fflush(stdout);

  bench::run_workers(workers, max_seconds);
  return 0;
}
