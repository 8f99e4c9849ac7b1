// bench_load: the load generator. One thread, one edge-triggered epoll loop, a small
// state machine per connection, no allocation on the hot path, so that on a 2-core
// machine it costs less CPU than the proxy it drives.
//
//   bench_load --mode direct|relay|connect|socks5|http --target HOST:PORT [--proxy HOST:PORT]
//              --scenario bulk|setup|rtt|http|oneshot|idle [options]
//
// mode    how a connection reaches the target (an origin port, see bench_origin):
//   direct  connect to --target
//   relay   connect to --proxy (bench_splice_relay, whose target is fixed), no handshake
//   connect HTTP CONNECT to --proxy, then the tunnel
//   socks5  SOCKS5 no-auth CONNECT (IPv4 target) to --proxy, then the tunnel
//   http    plain HTTP absolute-form requests to --proxy (scenarios http and oneshot)
// scenario (every one is bounded by --seconds and --max-ops and stops by itself):
//   bulk  --streams N     N tunnels each reading a continuous byte stream (the origin's
//                         source port); reports MiB/s in total
//   setup --concurrency C C workers, each looping: connect (+ handshake) + 64-byte echo +
//                         close; reports tunnels/s and p50/p99 latency (connect to echo)
//         --close client  the client closes right after the echo (default)
//         --close wait    the client half-closes after the echo and closes at the EOF the
//                         proxy relays back (the proxy's teardown is in the cycle)
//         --close server  the server closes first (point --target at bench_origin's
//                         echo1 port); the client closes at that EOF
//   rtt                   one tunnel, 64-byte ping-pong; round trips/s and p50/p99 µs
//   http  --concurrency C keep-alive GETs of a small body; requests/s and p50/p99
//   oneshot --concurrency C C workers, each looping: connect + one GET of a small body
//                         with `Connection: close` + read the whole response + close
//                         (curl, pip: a new connection per request); requests/s and
//                         p50/p99 from connect to the response's last byte
//   idle  --tunnels K     opens K tunnels (each proves itself with a 1-byte echo), prints
//                         "READY established=N failed=M" and holds them until stdin
//                         closes (or has a line) or --hold-seconds pass
// Output: one JSON line (starting with '{') and one human line (starting with '#').

#include <dirent.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cinttypes>
#include <string>
#include <vector>

#include "net_util.hpp"

namespace {

enum class Mode { direct, relay, connect, socks5, http };
enum class Scenario { bulk, setup, rtt, http, oneshot, idle };
enum class Phase : uint8_t { hs_write, hs_read, run_write, run_read, eof_wait, bulk, hold, closed };
enum class Closer : uint8_t { client, wait, server };

constexpr size_t kInBuf = 4096;

struct Conn {
  int fd = -1;
  Phase phase = Phase::closed;
  uint8_t hs_step = 0;
  bool close_after = false;  // http: the response said the connection ends
  uint32_t served = 0;       // http: responses received on this connection
  const char* out = nullptr;
  uint32_t out_len = 0, out_off = 0;
  uint32_t ilen = 0;
  uint64_t t_start = 0;  // connection start (setup) or request start (rtt, http)
  char ib[kInBuf];
};

struct Options {
  Mode mode = Mode::direct;
  Scenario scenario = Scenario::rtt;
  std::string mode_name = "direct", scenario_name = "rtt", label;
  sockaddr_storage proxy{}, target{};
  socklen_t proxy_len = 0, target_len = 0;
  bool have_proxy = false, have_target = false;
  int streams = 1, concurrency = 1, tunnels = 1000, ramp = 256, source_ips = 0;
  double seconds = 3, warmup = 0.5, hold_seconds = 600, establish_seconds = 60;
  uint64_t max_ops = 100000000;
  int cpu_pgid = 0;  // report the CPU time this process group (the proxy) used
  Closer closer = Closer::client;
  std::string closer_name = "client";
};

struct Stats {
  uint64_t ops = 0, bytes = 0, errors = 0, reconnects = 0;
  std::string first_error;
  std::vector<uint32_t> lat_ns;  // capped
};

Options opt;
Stats st;
int ep = -1;
bool measuring = false, running = true;
uint64_t t_measure = 0, t_end = 0;
std::vector<Conn*> pool;
int live = 0;
int held = 0;            // idle: tunnels in Phase::hold
int pending_starts = 0;  // connections to start after the current batch of events
std::vector<Conn*> again;  // bulk: not drained when their read budget ran out (edge-triggered)
std::vector<Conn*> again_turn;  // the previous `again`, being handled (kept to reuse its storage)
constexpr int kBulkReadsPerTurn = 8;
uint32_t src_ip_next = 0;

std::string s_connect, s_socks_greet, s_socks_req, s_echo64, s_echo1, s_http_req;
std::string s_http_req_close;  // oneshot: the request with `Connection: close`
std::vector<char> bulk_buf(256 * 1024);

constexpr size_t kMaxSamples = 4'000'000;

// CPU seconds (user + system, including reaped children) of every process in a
// process group, from /proc/N/stat; the proxy under test runs in its own group.
double group_cpu_seconds(int pgid) {
  if (pgid <= 0) return 0;
  static const double tick = double(sysconf(_SC_CLK_TCK));
  double total = 0;
  DIR* d = opendir("/proc");
  if (!d) return 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char path[300];
    std::snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE* f = std::fopen(path, "r");
    if (!f) continue;
    char buf[1024];
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    const char* p = std::strrchr(buf, ')');
    if (!p) continue;
    // after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    char state;
    long ppid, pgrp, session, tty, tpgid;
    unsigned long flags, minflt, cminflt, majflt, cmajflt, utime, stime;
    long cutime, cstime;
    if (std::sscanf(p + 2, "%c %ld %ld %ld %ld %ld %lu %lu %lu %lu %lu %lu %lu %ld %ld", &state, &ppid, &pgrp,
                    &session, &tty, &tpgid, &flags, &minflt, &cminflt, &majflt, &cmajflt, &utime, &stime, &cutime,
                    &cstime) != 15)
      continue;
    if (pgrp != pgid) continue;
    total += double(utime + stime) + double(cutime + cstime);
  }
  closedir(d);
  return total / tick;
}

double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}
double cpu_proxy0 = 0, cpu_self0 = 0;
void begin_measuring() {
  measuring = true;
  cpu_proxy0 = group_cpu_seconds(opt.cpu_pgid);
  cpu_self0 = self_cpu_seconds();
  t_measure = bench::now_ns();  // the window starts after the /proc scan
}

void record_latency(uint64_t ns) {
  if (st.lat_ns.size() < kMaxSamples) st.lat_ns.push_back(uint32_t(std::min<uint64_t>(ns, UINT32_MAX)));
}

Conn* alloc_conn() {
  if (!pool.empty()) {
    Conn* c = pool.back();
    pool.pop_back();
    return c;
  }
  return new Conn;
}

void close_conn(Conn* c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  if (c->phase == Phase::hold) --held;
  c->phase = Phase::closed;
  --live;
  if (opt.scenario != Scenario::idle) pool.push_back(c);  // idle keeps every object distinct
}

void note_error(const std::string& why) {
  ++st.errors;
  if (st.first_error.empty()) st.first_error = why;
}

void set_out(Conn* c, const std::string& s) {
  c->out = s.data();
  c->out_len = uint32_t(s.size());
  c->out_off = 0;
}

void drive(Conn* c, uint32_t ev = 0);

// Where the scenario keeps a fixed number of connections busy, one that ended or
// could not start has a successor, started after the current batch of events (so
// that a failing peer cannot recurse) and only while the run lasts (its deadline).
void queue_successor() {
  if (!running) return;
  if (opt.scenario == Scenario::setup || opt.scenario == Scenario::http || opt.scenario == Scenario::rtt ||
      opt.scenario == Scenario::oneshot)
    ++pending_starts;
}

Conn* start_conn() {
  const sockaddr_storage& dst = (opt.mode == Mode::direct) ? opt.target : opt.proxy;
  socklen_t dlen = (opt.mode == Mode::direct) ? opt.target_len : opt.proxy_len;
  int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    note_error(std::string("socket: ") + std::strerror(errno));
    queue_successor();
    return nullptr;
  }
  if (opt.source_ips > 0 && dst.ss_family == AF_INET) {
    // Spread client ports over several loopback source addresses (127.0.0.1..N).
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000001u + (src_ip_next++ % uint32_t(opt.source_ips)));
    bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src);
  }
  bench::set_nodelay(fd);
  int r = connect(fd, reinterpret_cast<const sockaddr*>(&dst), dlen);
  if (r != 0 && errno != EINPROGRESS) {
    note_error(std::string("connect: ") + std::strerror(errno));
    close(fd);
    queue_successor();
    return nullptr;
  }
  Conn* c = alloc_conn();
  ++live;
  c->fd = fd;
  c->ilen = 0;
  c->hs_step = 0;
  c->close_after = false;
  c->served = 0;
  c->t_start = bench::now_ns();
  bench::epoll_add(ep, fd, c, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
  switch (opt.mode) {
    case Mode::connect:
      c->phase = Phase::hs_write;
      set_out(c, s_connect);
      break;
    case Mode::socks5:
      c->phase = Phase::hs_write;
      set_out(c, s_socks_greet);
      break;
    default:
      c->phase = Phase::hs_read;  // begin_run is called by drive with no handshake
      break;
  }
  drive(c);
  return c;
}

// Called when a connection is no longer needed or failed.
void replace(Conn* c) {
  close_conn(c);
  queue_successor();
}

// Starts the successors queued so far; those that the starts queue in turn (a
// connection failing at once) wait for the next batch.
void start_pending() {
  int n = pending_starts;
  pending_starts = 0;
  while (n-- > 0 && running) start_conn();
}

void fail(Conn* c, const char* why) {
  std::string w = why;
  if (errno != 0 && errno != EAGAIN) w += std::string(": ") + std::strerror(errno);
  note_error(w);
  ++st.reconnects;
  // A failing peer is not hammered: the scenario goes on, one connection fewer
  // for 'bulk' and 'idle', a fresh one otherwise.
  replace(c);
}

void begin_run(Conn* c, uint32_t extra);

// A protocol error: the reason, with the start of what was received (control
// characters blanked).
void fail_with_head(Conn* c, const char* why) {
  errno = 0;
  std::string head(c->ib, std::min<uint32_t>(c->ilen, 60));
  for (auto& ch : head)
    if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';
  fail(c, (std::string(why) + ": " + head).c_str());
}

// rtt, http: the next request on this connection.
void start_request(Conn* c, uint64_t now) {
  c->phase = Phase::run_write;
  c->ilen = 0;
  c->t_start = now;
  set_out(c, opt.scenario == Scenario::rtt ? s_echo64 : s_http_req);
}

// Parses a complete handshake reply in c->ib; returns false on a protocol error.
// Sets `done` when the tunnel is open (extra bytes kept at the start of ib).
bool handshake_progress(Conn* c, bool& done, bool& need_write) {
  done = need_write = false;
  if (opt.mode == Mode::connect) {
    std::string_view v(c->ib, c->ilen);
    size_t end = v.find("\r\n\r\n");
    if (end == std::string_view::npos) return c->ilen < kInBuf;
    if (v.size() < 12 || v.substr(9, 3) != "200") return false;
    uint32_t extra = c->ilen - uint32_t(end + 4);
    std::memmove(c->ib, c->ib + end + 4, extra);
    c->ilen = extra;
    done = true;
    return true;
  }
  // SOCKS5
  auto* b = reinterpret_cast<unsigned char*>(c->ib);
  if (c->hs_step == 0) {
    if (c->ilen < 2) return true;
    if (b[0] != 5 || b[1] != 0) return false;
    c->hs_step = 1;
    c->ilen = 0;
    set_out(c, s_socks_req);
    need_write = true;
    return true;
  }
  if (c->ilen < 5) return true;
  if (b[0] != 5 || b[1] != 0) return false;
  uint32_t need = 0;
  switch (b[3]) {
    case 1: need = 4 + 4 + 2; break;
    case 4: need = 4 + 16 + 2; break;
    case 3: need = 4 + 1 + b[4] + 2; break;
    default: return false;
  }
  if (c->ilen < need) return true;
  uint32_t extra = c->ilen - need;
  std::memmove(c->ib, c->ib + need, extra);
  c->ilen = extra;
  done = true;
  return true;
}

void op_done(Conn* c, uint64_t now) {
  ++c->served;
  if (measuring) {
    ++st.ops;
    record_latency(now - c->t_start);
    if (st.ops >= opt.max_ops) running = false;
  }
  switch (opt.scenario) {
    case Scenario::setup:
      if (opt.closer == Closer::client) return replace(c);
      // The latency is taken at the echo; the next cycle starts at the EOF.
      if (opt.closer == Closer::wait) shutdown(c->fd, SHUT_WR);
      c->phase = Phase::eof_wait;
      return drive(c);
    case Scenario::oneshot:  // the client closes once the response is in
      replace(c);
      return;
    case Scenario::idle:
      c->phase = Phase::hold;
      ++held;
      return;
    case Scenario::rtt:
    case Scenario::http:
      if (!running) return;
      if (c->close_after) {
        ++st.reconnects;
        replace(c);
        return;
      }
      start_request(c, now);
      drive(c);
      return;
    case Scenario::bulk:
      return;
  }
}

void begin_run(Conn* c, uint32_t extra) {
  c->ilen = extra;
  switch (opt.scenario) {
    case Scenario::bulk:
      c->phase = Phase::bulk;
      if (measuring) st.bytes += extra;
      c->ilen = 0;
      return;
    case Scenario::setup:
    case Scenario::idle:
      c->phase = Phase::run_write;
      set_out(c, opt.scenario == Scenario::idle ? s_echo1 : s_echo64);
      return;
    case Scenario::rtt:
    case Scenario::http:
      start_request(c, bench::now_ns());
      return;
    case Scenario::oneshot:  // latency counts from the connect (t_start kept)
      c->phase = Phase::run_write;
      set_out(c, s_http_req_close);
      return;
  }
}

bool ieq_prefix(std::string_view s, std::string_view lower) {
  if (s.size() < lower.size()) return false;
  for (size_t i = 0; i < lower.size(); ++i)
    if (char(std::tolower(static_cast<unsigned char>(s[i]))) != lower[i]) return false;
  return true;
}

// http: is the response in c->ib complete? -1 error, 0 not yet, 1 complete.
int http_response_complete(Conn* c) {
  std::string_view v(c->ib, c->ilen);
  size_t end = v.find("\r\n\r\n");
  if (end == std::string_view::npos) return c->ilen < kInBuf ? 0 : -1;
  if (v.size() < 12 || v.substr(9, 3) != "200") return -1;
  bool http10 = v.substr(5, 3) == "1.0";
  long clen = -1;
  bool chunked = false, conn_close = http10, keep_alive = false;
  size_t pos = v.find("\r\n");
  while (pos < end) {
    size_t next = v.find("\r\n", pos + 2);
    std::string_view line = v.substr(pos + 2, next - pos - 2);
    if (ieq_prefix(line, "content-length:")) clen = std::atol(std::string(line.substr(15)).c_str());
    else if (ieq_prefix(line, "transfer-encoding:") && line.find("chunked") != std::string_view::npos) chunked = true;
    else if (ieq_prefix(line, "connection:") || ieq_prefix(line, "proxy-connection:")) {
      std::string l(line);
      for (auto& ch : l) ch = char(std::tolower(static_cast<unsigned char>(ch)));
      if (l.find("close") != std::string::npos) conn_close = true;
      if (l.find("keep-alive") != std::string::npos) keep_alive = true;
    }
    pos = next;
  }
  if (http10 && keep_alive) conn_close = false;
  c->close_after = conn_close;
  size_t body = end + 4;
  if (chunked) {
    return v.find("\r\n0\r\n\r\n", body - 2) != std::string_view::npos ? 1 : 0;
  }
  if (clen < 0) return -1;  // close-delimited bodies are not expected from bench_origin
  return v.size() >= body + size_t(clen) ? 1 : 0;
}

// Edge-triggered: a short read means the socket is drained, unless the peer's FIN came
// with this edge (`ev`), in which case reading goes on to the EOF.
void drive(Conn* c, uint32_t ev) {
  const bool hup = ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
  int reads = 0;
  for (;;) {
    switch (c->phase) {
      case Phase::closed:
        return;
      case Phase::hs_write:
      case Phase::run_write: {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) return;  // connecting, or buffer full: EPOLLOUT resumes
          return fail(c, "send");
        }
        c->out_off += uint32_t(n);
        if (c->out_off < c->out_len) continue;
        c->phase = (c->phase == Phase::hs_write) ? Phase::hs_read : Phase::run_read;
        if (c->phase == Phase::run_read) c->ilen = 0;
        return;  // the reply arrives as an EPOLLIN edge
      }
      case Phase::hs_read: {
        if (opt.mode == Mode::direct || opt.mode == Mode::relay || opt.mode == Mode::http) {
          begin_run(c, 0);
          continue;
        }
        ssize_t n = recv(c->fd, c->ib + c->ilen, kInBuf - c->ilen, 0);
        if (n == 0) {
          errno = 0;
          return fail(c, "proxy closed during handshake");
        }
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) return;
          return fail(c, "recv (handshake)");
        }
        c->ilen += uint32_t(n);
        bool done = false, need_write = false;
        if (!handshake_progress(c, done, need_write)) return fail_with_head(c, "handshake refused");
        if (need_write) c->phase = Phase::hs_write;
        else if (done) begin_run(c, c->ilen);
        continue;
      }
      case Phase::run_read: {
        ssize_t n = recv(c->fd, c->ib + c->ilen, kInBuf - c->ilen, 0);
        if (n == 0 && opt.scenario == Scenario::http && c->served > 0 && c->ilen == 0) {
          // The server ended a kept-alive connection without saying so (tinyproxy
          // does): as any client, retry the request on a new connection.
          ++st.reconnects;
          return replace(c);
        }
        if (n == 0) {
          errno = 0;
          return fail(c, "peer closed");
        }
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) return;
          return fail(c, "recv");
        }
        c->ilen += uint32_t(n);
        int complete;
        if (opt.scenario == Scenario::http || opt.scenario == Scenario::oneshot) {
          complete = http_response_complete(c);
          if (complete < 0) return fail_with_head(c, "bad http response");
        } else {
          uint32_t want = opt.scenario == Scenario::idle ? 1 : 64;
          complete = c->ilen >= want ? 1 : 0;
        }
        if (complete) return op_done(c, bench::now_ns());
        if (!hup && size_t(n) < kInBuf - (c->ilen - uint32_t(n))) return;  // drained
        continue;
      }
      case Phase::eof_wait: {
        ssize_t n = recv(c->fd, c->ib, kInBuf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n == 0) return replace(c);
        if (n > 0) continue;  // bytes after the echo: not expected, read on to the EOF
        return fail(c, "recv (waiting for the EOF)");
      }
      case Phase::bulk: {
        if (++reads > kBulkReadsPerTurn) {  // let the loop look at the clock and the others
          again.push_back(c);
          return;
        }
        ssize_t n = recv(c->fd, bulk_buf.data(), bulk_buf.size(), 0);
        if (n == 0) {
          errno = 0;
          return fail(c, "stream ended");
        }
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) return;
          return fail(c, "recv (bulk)");
        }
        if (measuring) st.bytes += uint64_t(n);
        if (!hup && size_t(n) < bulk_buf.size()) return;
        continue;
      }
      case Phase::hold: {
        ssize_t n = recv(c->fd, c->ib, kInBuf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        errno = 0;
        return fail(c, n == 0 ? "held tunnel closed by peer" : "held tunnel error");
      }
    }
  }
}

uint64_t percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + long(k), v.end());
  return v[k];
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') o += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) continue;
    o += ch;
  }
  return o;
}

void event_loop_until(uint64_t until, bool watch_stdin) {
  std::vector<epoll_event> events(1024);
  while (running) {
    uint64_t now = bench::now_ns();
    if (!measuring && now >= t_measure && t_measure != 0) begin_measuring();
    if (now >= until) break;
    uint64_t next = until;
    if (!measuring && t_measure > now) next = std::min(next, t_measure);
    int timeout_ms = (pending_starts > 0 || !again.empty()) ? 0 : int(std::min<uint64_t>((next - now) / 1000000 + 1, 100));
    int n = epoll_wait(ep, events.data(), int(events.size()), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      bench::die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {  // stdin: a line or EOF ends the hold
        if (watch_stdin) return;
        continue;
      }
      drive(static_cast<Conn*>(events[i].data.ptr), events[i].events);
    }
    if (!again.empty()) {
      again_turn.swap(again);
      for (Conn* c : again_turn)
        if (c->phase == Phase::bulk) drive(c, EPOLLRDHUP);  // read on to EAGAIN
      again_turn.clear();
    }
    start_pending();
  }
}

const char* unit_for(Scenario s) {
  switch (s) {
    case Scenario::bulk: return "MiB/s";
    case Scenario::setup: return "tunnels/s";
    case Scenario::rtt: return "rt/s";
    case Scenario::http: return "req/s";
    case Scenario::oneshot: return "req/s";
    case Scenario::idle: return "tunnels";
  }
  return "";
}

int run_idle() {
  // Open K tunnels, at most `ramp` in flight at a time, each proving itself with a
  // 1-byte echo; then hold them.
  uint64_t t0 = bench::now_ns();
  uint64_t establish_end = t0 + uint64_t(opt.establish_seconds * 1e9);
  measuring = false;
  int started = 0;
  std::vector<epoll_event> events(1024);
  for (;;) {
    uint64_t now = bench::now_ns();
    if (now >= establish_end) break;
    while (started < opt.tunnels && live - held < opt.ramp) {
      start_conn();
      ++started;
    }
    if (started >= opt.tunnels && live - held == 0) break;
    int n = epoll_wait(ep, events.data(), int(events.size()), 50);
    for (int i = 0; i < n; ++i)
      if (events[i].data.ptr) drive(static_cast<Conn*>(events[i].data.ptr), events[i].events);
  }
  int established = held;
  int in_flight = live - held;
  double ramp_s = double(bench::now_ns() - t0) / 1e9;
  std::printf("READY established=%d failed=%d in_flight=%d seconds=%.2f\n", established,
              opt.tunnels - established - in_flight, in_flight, ramp_s);
  std::fflush(stdout);

  // Hold until stdin has a line or EOF, or hold_seconds pass.
  epoll_event e{};
  e.events = EPOLLIN | EPOLLRDHUP;
  e.data.ptr = nullptr;
  bool stdin_ok = epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e) == 0;
  uint64_t hold_end = bench::now_ns() + uint64_t(opt.hold_seconds * 1e9);
  uint64_t errors_before = st.errors;
  event_loop_until(hold_end, stdin_ok);
  int still = held;
  running = false;
  std::printf("{\"tool\":\"bench_load\",\"mode\":\"%s\",\"scenario\":\"idle\",\"label\":\"%s\",\"tunnels\":%d,"
              "\"established\":%d,\"held_at_end\":%d,\"closed_during_hold\":%" PRIu64
              ",\"errors\":%" PRIu64 ",\"first_error\":\"%s\",\"ramp_seconds\":%.3f}\n",
              opt.mode_name.c_str(), json_escape(opt.label).c_str(), opt.tunnels, established, still,
              st.errors - errors_before, st.errors, json_escape(st.first_error).c_str(), ramp_s);
  std::printf("# %s idle: %d/%d tunnels established, %d still open at end, errors %" PRIu64 "%s%s\n",
              opt.mode_name.c_str(), established, opt.tunnels, still, st.errors,
              st.first_error.empty() ? "" : ", first: ", st.first_error.c_str());
  std::fflush(stdout);
  return established == opt.tunnels ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  std::string proxy_s, target_s;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) bench::usage_error("missing value for " + a);
      return argv[++i];
    };
    if (a == "--mode") opt.mode_name = next();
    else if (a == "--scenario") opt.scenario_name = next();
    else if (a == "--proxy") proxy_s = next();
    else if (a == "--target") target_s = next();
    else if (a == "--label") opt.label = next();
    else if (a == "--streams") opt.streams = std::max(1, std::stoi(next()));
    else if (a == "--concurrency") opt.concurrency = std::max(1, std::stoi(next()));
    else if (a == "--tunnels") opt.tunnels = std::max(1, std::stoi(next()));
    else if (a == "--ramp") opt.ramp = std::max(1, std::stoi(next()));
    else if (a == "--source-ips") opt.source_ips = std::max(0, std::stoi(next()));
    else if (a == "--seconds") opt.seconds = std::stod(next());
    else if (a == "--warmup") opt.warmup = std::max(0.0, std::stod(next()));
    else if (a == "--hold-seconds") opt.hold_seconds = std::stod(next());
    else if (a == "--establish-seconds") opt.establish_seconds = std::stod(next());
    else if (a == "--max-ops") opt.max_ops = std::stoull(next());
    else if (a == "--cpu-pgid") opt.cpu_pgid = std::stoi(next());
    else if (a == "--close") opt.closer_name = next();
    else if (a == "--help" || a == "-h") {
      std::printf(
          "bench_load --mode direct|relay|connect|socks5|http --target HOST:PORT [--proxy HOST:PORT]\n"
          "           --scenario bulk|setup|rtt|http|oneshot|idle [--streams N] [--concurrency C] [--tunnels K]\n"
          "           [--seconds S] [--warmup S] [--hold-seconds S] [--establish-seconds S] [--ramp N]\n"
          "           [--max-ops N] [--source-ips N] [--label TEXT] [--cpu-pgid PGID]\n"
          "           [--close client|wait|server]\n");
      return 0;
    } else bench::usage_error("unknown option " + a);
  }
  if (opt.mode_name == "direct") opt.mode = Mode::direct;
  else if (opt.mode_name == "relay") opt.mode = Mode::relay;
  else if (opt.mode_name == "connect") opt.mode = Mode::connect;
  else if (opt.mode_name == "socks5") opt.mode = Mode::socks5;
  else if (opt.mode_name == "http") opt.mode = Mode::http;
  else bench::usage_error("unknown --mode " + opt.mode_name);
  if (opt.scenario_name == "bulk") opt.scenario = Scenario::bulk;
  else if (opt.scenario_name == "setup") opt.scenario = Scenario::setup;
  else if (opt.scenario_name == "rtt") opt.scenario = Scenario::rtt;
  else if (opt.scenario_name == "http") opt.scenario = Scenario::http;
  else if (opt.scenario_name == "oneshot") opt.scenario = Scenario::oneshot;
  else if (opt.scenario_name == "idle") opt.scenario = Scenario::idle;
  else bench::usage_error("unknown --scenario " + opt.scenario_name);
  if (opt.closer_name == "client") opt.closer = Closer::client;
  else if (opt.closer_name == "wait") opt.closer = Closer::wait;
  else if (opt.closer_name == "server") opt.closer = Closer::server;
  else bench::usage_error("unknown --close " + opt.closer_name);
  if (target_s.empty() || !bench::parse_endpoint(target_s, opt.target, opt.target_len))
    bench::usage_error("--target HOST:PORT is required");
  if (opt.mode != Mode::direct) {
    if (proxy_s.empty() || !bench::parse_endpoint(proxy_s, opt.proxy, opt.proxy_len))
      bench::usage_error("--proxy HOST:PORT is required for --mode " + opt.mode_name);
  }
  if (opt.mode == Mode::http && opt.scenario != Scenario::http && opt.scenario != Scenario::oneshot)
    bench::usage_error("--mode http only runs --scenario http or oneshot");
  if (opt.scenario == Scenario::oneshot && (opt.mode == Mode::connect || opt.mode == Mode::socks5))
    bench::usage_error("--scenario oneshot runs with --mode http, direct or relay");
  if (opt.mode == Mode::socks5 && opt.target.ss_family != AF_INET)
    bench::usage_error("--mode socks5 takes an IPv4 target");
  if (opt.seconds <= 0 || opt.seconds > 3600) bench::usage_error("--seconds in (0, 3600]");
  if (opt.hold_seconds < 0 || opt.hold_seconds > 3600) bench::usage_error("--hold-seconds in [0, 3600]");
  if (opt.establish_seconds <= 0 || opt.establish_seconds > 600) bench::usage_error("--establish-seconds in (0, 600]");

  rlim_t nofile = bench::raise_nofile();
  signal(SIGPIPE, SIG_IGN);
  // A hard stop whatever happens: every run ends by itself.
  double budget = opt.scenario == Scenario::idle ? opt.establish_seconds + opt.hold_seconds : opt.warmup + opt.seconds;
  alarm(unsigned(budget) + 30);

  if (opt.scenario == Scenario::idle && rlim_t(opt.tunnels) + 64 > nofile) {
    std::fprintf(stderr, "bench_load: --tunnels %d needs more file descriptors than RLIMIT_NOFILE %llu\n",
                 opt.tunnels, static_cast<unsigned long long>(nofile));
    return 2;
  }

  // The protocol strings.
  char tbuf[128];
  {
    char host[INET6_ADDRSTRLEN] = {0};
    uint16_t port = bench::endpoint_port(opt.target);
    if (opt.target.ss_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6&>(opt.target).sin6_addr, host, sizeof host);
      std::snprintf(tbuf, sizeof tbuf, "[%s]:%u", host, port);
    } else {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in&>(opt.target).sin_addr, host, sizeof host);
      std::snprintf(tbuf, sizeof tbuf, "%s:%u", host, port);
    }
  }
  std::string authority = tbuf;
  s_connect = "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n";
  s_socks_greet = std::string("\x05\x01\x00", 3);
  {
    auto& a4 = reinterpret_cast<sockaddr_in&>(opt.target);
    s_socks_req = std::string("\x05\x01\x00\x01", 4);
    s_socks_req.append(reinterpret_cast<const char*>(&a4.sin_addr), 4);
    s_socks_req.append(reinterpret_cast<const char*>(&a4.sin_port), 2);
  }
  s_echo64 = std::string(64, 'e');
  s_echo1.assign(1, 'e');
  std::string path = opt.mode == Mode::http ? "http://" + authority + "/" : "/";
  s_http_req = "GET " + path + " HTTP/1.1\r\nHost: " + authority + "\r\nUser-Agent: bench_load\r\nAccept: */*\r\n\r\n";
  s_http_req_close = "GET " + path + " HTTP/1.1\r\nHost: " + authority +
                     "\r\nUser-Agent: bench_load\r\nAccept: */*\r\nConnection: close\r\n\r\n";

  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) bench::die("epoll_create1");
  st.lat_ns.reserve(1 << 20);

  if (opt.scenario == Scenario::idle) return run_idle();

  uint64_t t0 = bench::now_ns();
  t_measure = t0 + uint64_t(opt.warmup * 1e9);
  t_end = t_measure + uint64_t(opt.seconds * 1e9);
  if (opt.warmup == 0) begin_measuring();
  int n_conns = opt.scenario == Scenario::bulk ? opt.streams
                : opt.scenario == Scenario::rtt ? 1
                                                : opt.concurrency;
  for (int i = 0; i < n_conns; ++i) start_conn();
  event_loop_until(t_end, false);
  uint64_t t_stop = bench::now_ns();
  double cpu_self = self_cpu_seconds() - cpu_self0;  // before the /proc scan, as at the start
  double cpu_proxy = opt.cpu_pgid > 0 ? group_cpu_seconds(opt.cpu_pgid) - cpu_proxy0 : -1;
  running = false;
  int in_flight = live;
  double window = double(t_stop - t_measure) / 1e9;
  if (window <= 0) window = opt.seconds;

  double rate = opt.scenario == Scenario::bulk ? double(st.bytes) / (1024.0 * 1024.0) / window : double(st.ops) / window;
  uint64_t p50 = percentile(st.lat_ns, 0.50), p99 = percentile(st.lat_ns, 0.99);
  std::printf("{\"tool\":\"bench_load\",\"mode\":\"%s\",\"scenario\":\"%s\",\"label\":\"%s\",\"value\":%.3f,"
              "\"unit\":\"%s\",\"seconds\":%.3f,\"ops\":%" PRIu64 ",\"bytes\":%" PRIu64
              ",\"p50_us\":%.1f,\"p99_us\":%.1f,\"errors\":%" PRIu64 ",\"reconnects\":%" PRIu64
              ",\"first_error\":\"%s\",\"connections\":%d,\"in_flight_at_end\":%d,"
              "\"proxy_cpu_s\":%.3f,\"client_cpu_s\":%.3f}\n",
              opt.mode_name.c_str(), opt.scenario_name.c_str(), json_escape(opt.label).c_str(), rate,
              unit_for(opt.scenario), window, st.ops, st.bytes, double(p50) / 1000.0, double(p99) / 1000.0,
              st.errors, st.reconnects, json_escape(st.first_error).c_str(), n_conns, in_flight, cpu_proxy,
              cpu_self);
  char cpu[96];
  if (cpu_proxy >= 0)
    std::snprintf(cpu, sizeof cpu, "; CPU: proxy %.2f, client %.2f cores", cpu_proxy / window, cpu_self / window);
  else
    std::snprintf(cpu, sizeof cpu, "; CPU: client %.2f cores", cpu_self / window);
  if (opt.scenario == Scenario::bulk)
    std::printf("# %s bulk x%d: %.1f MiB/s over %.2f s, errors %" PRIu64 "%s%s%s\n", opt.mode_name.c_str(),
                opt.streams, rate, window, st.errors, st.first_error.empty() ? "" : ", first: ",
                st.first_error.c_str(), cpu);
  else
    std::printf("# %s %s c=%d: %.0f %s, p50 %.1f us, p99 %.1f us, %" PRIu64 " ops in %.2f s, errors %" PRIu64
                "%s%s%s\n",
                opt.mode_name.c_str(), opt.scenario_name.c_str(), n_conns, rate, unit_for(opt.scenario),
                double(p50) / 1000.0, double(p99) / 1000.0, st.ops, window, st.errors,
                st.first_error.empty() ? "" : ", first: ", st.first_error.c_str(), cpu);
  std::fflush(stdout);
  return 0;
}
