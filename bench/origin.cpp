// bench_origin: the small origin server the load generator talks to, directly or
// through a proxy. Four services, each on its own loopback port:
//   echo   - writes back whatever it reads, until the peer closes;
//   echo1  - writes back its first read, then closes (the server closes first);
//   source - writes a fixed 64 KiB buffer in a loop until the peer closes;
//   sink   - reads and discards;
//   http   - a minimal HTTP/1.1 keep-alive server answering any request head with a
//            fixed small body (Content-Length framing; honours Connection: close and
//            HTTP/1.0 without keep-alive).
// Edge-triggered epoll, one event loop per thread (--threads N, SO_REUSEPORT).
// Ports by flag (--echo-port ...), 0 = any free port; the chosen ports are printed as
// one JSON line on stdout: {"echo":P,"source":P,"sink":P,"http":P,"echo1":P}.
// It runs until SIGINT/SIGTERM or --max-seconds (default 3600) elapse.

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "net_util.hpp"

namespace {

enum class Kind : uint8_t { listener, echo, source, sink, http, echo1 };

struct Conn {
  int fd = -1;
  Kind kind = Kind::echo;
  Kind service = Kind::echo;  // for listeners: what accepted sockets serve
  bool close_after_write = false;
  bool dead = false;    // closed; deleted once nothing refers to it
  bool queued = false;  // in Worker::queue
  uint32_t again_ev = 0;  // the events to handle again from Worker::queue
  std::string in;    // http: partial request heads
  std::string pend;  // echo/http: bytes not yet written
};

std::string g_http_response;
constexpr size_t kSourceChunk = 64 * 1024;
// System calls of one kind (reads, or sends) a connection makes per event; the rest
// of its work waits in Worker::queue until every other ready connection had its turn.
constexpr int kCallsPerTurn = 8;

struct Worker {
  int ep = -1;
  std::vector<char> buf = std::vector<char>(kSourceChunk);
  std::vector<char> source_buf = std::vector<char>(kSourceChunk, 'x');
  // Edge-triggered: a connection that stopped at its budget gets no new event for the
  // data already there, so it is handled again after the batch, from this queue.
  bench::turn_queue<Conn> queue;

  void close_conn(Conn* c) {
    close(c->fd);
    queue.bury(c);
  }

  void requeue(Conn* c, uint32_t ev) {
    c->again_ev |= ev;
    queue.requeue(c);
  }

  // Writes c->pend; returns false on a fatal error, sets `blocked` if EAGAIN.
  bool flush(Conn* c, bool& blocked) {
    blocked = false;
    while (!c->pend.empty()) {
      ssize_t n = send(c->fd, c->pend.data(), c->pend.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c->pend.erase(0, size_t(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        blocked = true;
        return true;
      } else {
        return false;
      }
    }
    return true;
  }

  void on_accept(Conn* l) {
    for (int i = 0; i < bench::kAcceptsPerEvent; ++i) {
      int fd = bench::accept_nb(l->fd);
      if (fd < 0) return;  // EAGAIN, or EMFILE (level of the listener: retried on next accept)
      bench::set_nodelay(fd);
      auto* c = new Conn;
      c->fd = fd;
      c->kind = l->service;
      bench::epoll_add(ep, fd, c, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
      if (c->kind == Kind::source) on_source(c, EPOLLOUT);
    }
  }

  // Edge-triggered: a short read means the socket is drained, unless the peer's FIN
  // came with this edge (then read on to the EOF, which will not raise another one).
  static constexpr uint32_t kHupEvents = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
  static bool hup(uint32_t ev) { return ev & kHupEvents; }

  void on_echo(Conn* c, uint32_t ev) {
    bool blocked = false;
    if (!flush(c, blocked)) return close_conn(c);
    if (blocked) return;
    for (int i = 0; i < kCallsPerTurn; ++i) {
      ssize_t n = recv(c->fd, buf.data(), buf.size(), 0);
      if (n == 0) return close_conn(c);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        return close_conn(c);
      }
      ssize_t w = send(c->fd, buf.data(), size_t(n), MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN) return close_conn(c);
      if (w < 0) w = 0;
      if (w < n) {
        c->pend.assign(buf.data() + w, size_t(n - w));
        return;  // wait for EPOLLOUT, then resume reading
      }
      if (size_t(n) < buf.size() && !hup(ev)) return;  // drained
    }
    requeue(c, EPOLLIN | (ev & kHupEvents));
  }

  // echo1: one read written back, then the server's close (its FIN goes first). The
  // bench's 64-byte message fits one read and one send on loopback.
  void on_echo1(Conn* c) {
    ssize_t n;
    do n = recv(c->fd, buf.data(), buf.size(), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) return;
    if (n > 0) (void)send(c->fd, buf.data(), size_t(n), MSG_NOSIGNAL);
    close_conn(c);
  }

  // Reads and discards (source: only the peer's EOF is expected; sink: everything).
  enum class Drain { again, closed, budget };
  Drain drain(Conn* c) {
    for (int i = 0; i < kCallsPerTurn; ++i) {
      ssize_t n = recv(c->fd, buf.data(), buf.size(), 0);
      if (n > 0) continue;
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return Drain::again;
      return Drain::closed;  // EOF or error
    }
    return Drain::budget;
  }

  void on_source(Conn* c, uint32_t ev) {
    if (ev & (EPOLLIN | kHupEvents)) {
      Drain d = drain(c);
      if (d == Drain::closed) return close_conn(c);
      if (d == Drain::budget) requeue(c, EPOLLIN);
    }
    for (int i = 0; i < kCallsPerTurn; ++i) {
      ssize_t n = send(c->fd, source_buf.data(), source_buf.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        return close_conn(c);
      }
    }
    requeue(c, EPOLLOUT);
  }

  void on_sink(Conn* c) {
    Drain d = drain(c);
    if (d == Drain::closed) return close_conn(c);
    if (d == Drain::budget) requeue(c, EPOLLIN);
  }

  static bool has_token_ci(std::string_view head, std::string_view needle) {
    auto it = std::search(head.begin(), head.end(), needle.begin(), needle.end(),
                          [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
    return it != head.end();
  }

  void on_http(Conn* c, uint32_t ev) {
    bool blocked = false;
    if (!flush(c, blocked)) return close_conn(c);
    if (blocked) return;
    if (c->close_after_write) return close_conn(c);
    for (;;) {
      ssize_t n = recv(c->fd, buf.data(), buf.size(), 0);
      if (n == 0) return close_conn(c);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        return close_conn(c);
      }
      c->in.append(buf.data(), size_t(n));
      if (c->in.size() > 1 << 20) return close_conn(c);
      if (size_t(n) < buf.size() && !hup(ev)) break;
    }
    // Answer every complete head (pipelining allowed). Bodies are not expected.
    size_t pos = 0;
    for (;;) {
      size_t end = c->in.find("\r\n\r\n", pos);
      if (end == std::string::npos) break;
      std::string_view head(c->in.data() + pos, end - pos);
      bool http10 = head.substr(0, head.find("\r\n")).ends_with("HTTP/1.0");
      bool close_req = has_token_ci(head, "connection: close") ||
                       (http10 && !has_token_ci(head, "keep-alive"));
      c->pend += g_http_response;
      pos = end + 4;
      if (close_req) {
        c->close_after_write = true;
        break;
      }
    }
    c->in.erase(0, pos);
    if (!flush(c, blocked)) return close_conn(c);
    if (!blocked && c->close_after_write) {
      shutdown(c->fd, SHUT_WR);
      return close_conn(c);
    }
  }

  void dispatch(Conn* c, uint32_t ev) {
    switch (c->kind) {
      case Kind::listener: on_accept(c); break;
      case Kind::echo: on_echo(c, ev); break;
      case Kind::echo1: on_echo1(c); break;
      case Kind::source: on_source(c, ev); break;
      case Kind::sink: on_sink(c); break;
      case Kind::http: on_http(c, ev); break;
    }
  }

  // After each batch of events: the connections left in the queue get another turn
  // with the events they still owe.
  bool after_batch() {
    return queue.run([this](Conn* c) {
      const uint32_t ev = c->again_ev;
      c->again_ev = 0;
      dispatch(c, ev);
    });
  }

  void run() {
    bench::run_loop(
        ep, bench::g_stop, [this](void* p, uint32_t ev) { dispatch(static_cast<Conn*>(p), ev); },
        [this] { return after_batch(); });
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int ports[5] = {0, 0, 0, 0, 0};  // echo, source, sink, http, echo1
  int threads = 1;
  int body_bytes = 128;
  double max_seconds = 3600;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) bench::usage_error("missing value for " + a);
      return argv[++i];
    };
    if (a == "--host") host = next();
    else if (a == "--echo-port") ports[0] = std::stoi(next());
    else if (a == "--source-port") ports[1] = std::stoi(next());
    else if (a == "--sink-port") ports[2] = std::stoi(next());
    else if (a == "--http-port") ports[3] = std::stoi(next());
    else if (a == "--echo1-port") ports[4] = std::stoi(next());
    else if (a == "--threads") threads = std::max(1, std::stoi(next()));
    else if (a == "--body-bytes") body_bytes = std::max(0, std::stoi(next()));
    else if (a == "--max-seconds") max_seconds = std::stod(next());
    else if (a == "--help" || a == "-h") {
      std::printf("bench_origin [--host 127.0.0.1] [--echo-port P] [--source-port P] [--sink-port P]\n"
                  "             [--http-port P] [--echo1-port P] [--threads N] [--body-bytes 128] [--max-seconds 3600]\n");
      return 0;
    } else bench::usage_error("unknown option " + a);
  }
  bench::raise_nofile();
  bench::install_stop_signals();

  g_http_response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                    std::to_string(body_bytes) + "\r\n\r\n" + std::string(size_t(body_bytes), 'b');

  const Kind services[5] = {Kind::echo, Kind::source, Kind::sink, Kind::http, Kind::echo1};
  std::vector<Worker> workers(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    Worker& w = workers[size_t(t)];
    w.ep = epoll_create1(EPOLL_CLOEXEC);
    if (w.ep < 0) bench::die("epoll_create1");
    for (int s = 0; s < 5; ++s) {
      sockaddr_storage addr{};
      socklen_t len = 0;
      std::string ep = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(ports[s]);
      if (!bench::parse_endpoint(ep, addr, len)) bench::usage_error("bad --host or port: " + ep);
      auto* l = new Conn;
      l->kind = Kind::listener;
      l->service = services[s];
      l->fd = bench::listen_on(addr, len, threads > 1);
      ports[s] = bench::local_port(l->fd);  // the next threads bind the same port
      bench::epoll_add(w.ep, l->fd, l, EPOLLIN);  // level-triggered: accept backs off on EMFILE
    }
  }
  std::printf("{\"echo\":%d,\"source\":%d,\"sink\":%d,\"http\":%d,\"echo1\":%d}\n", ports[0], ports[1], ports[2],
              ports[3], ports[4]);
  std::fflush(stdout);

  bench::run_workers(workers, max_seconds);
  return 0;
}
