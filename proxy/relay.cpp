// Flow of a tunnel: start_tunnel() moves both sockets into a `tunnel` object, owned by
// shared pointers held by its pending operations, and runs one pump per direction. A
// pump drains the bytes it holds in its pipe into the destination, then splices the
// source into a pipe until the source would block (Asio's reactor is edge-triggered,
// so a pump only waits after EAGAIN). It yields to the rest of its thread after 1 MiB.
// The pipe goes back to the pool as soon as it is empty, or, when its destination
// stalls and the worker's pipe budget is nearly spent, once its bytes have moved to a
// spill: stalled tunnels never hold more pipes than the start-up plan counted. Until a
// read fills the worker's 64 KiB scratch buffer (a bulk transfer), and whenever no pipe
// can be had (budget spent, EMFILE), the pump copies through that buffer instead,
// keeping only what the destination could not take. EOF shuts down the destination's
// sending side; an error, abort() or the idle sweep closes both sockets; the last
// pending operation to finish destroys the tunnel, which reports once through on_close.

#include "proxy/relay.hpp"

#include <boost/asio/post.hpp>

#include <cassert>
#include <cerrno>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "proxy/runtime.hpp"
#include "proxy/worker.hpp"

namespace egressd::proxy {

namespace asio = boost::asio;
using std::chrono::steady_clock;

namespace {
// Bytes moved in one go before a pump yields to the other sessions of its thread.
constexpr std::size_t yield_after_bytes = 1 << 20;
// Largest single splice; the pipe is resized towards this where the kernel allows.
constexpr std::size_t splice_chunk = 256 * 1024;
// Spare pipes kept open for the next bulk transfer.
constexpr std::size_t max_idle_pipes = 64;

void close_pipe(pipe_pool::pipe_fds p) noexcept {
  if (p.read_end >= 0) ::close(p.read_end);
  if (p.write_end >= 0) ::close(p.write_end);
}
}  // namespace

pipe_pool::pipe_pool(std::size_t max_open) : max_open_(std::max<std::size_t>(max_open, 2)) {
  idle_.reserve(max_idle_pipes);  // release() is noexcept: it never allocates
}

pipe_pool::~pipe_pool() {
  for (auto p : idle_) close_pipe(p);
}

pipe_pool::pipe_fds pipe_pool::acquire() noexcept {
  if (!idle_.empty()) {
    auto p = idle_.back();
    idle_.pop_back();
    ++leased_;
    return p;
  }
  if (leased_ >= max_open_) return {};
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {};
  // A bigger pipe means fewer wake-ups on bulk transfers; failure is harmless.
  (void)::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(splice_chunk));
  ++leased_;
  return {fds[0], fds[1]};
}

void pipe_pool::release(pipe_fds p) noexcept {
  if (!p.valid()) return;
  --leased_;
  if (idle_.size() >= max_idle_pipes || leased_ + idle_.size() >= max_open_) {
    close_pipe(p);
    return;
  }
  idle_.push_back(p);
}

void pipe_pool::discard(pipe_fds p) noexcept {
  if (!p.valid()) return;
  --leased_;
  close_pipe(p);
}

std::string_view to_string(close_cause c) noexcept {
  switch (c) {
    case close_cause::both_eof: return "eof";
    case close_cause::client_reset: return "client_error";
    case close_cause::upstream_reset: return "upstream_error";
    case close_cause::idle_timeout: return "idle_timeout";
    case close_cause::shutdown: return "shutdown";
    case close_cause::revoked: return "revoked";
  }
  return "eof";
}

namespace {

class tunnel final : public worker_task, public std::enable_shared_from_this<tunnel> {
  using socket = asio::generic::stream_protocol::socket;

 public:
  tunnel(worker& w, asio::generic::stream_protocol::socket c, asio::ip::tcp::socket u, std::chrono::milliseconds idle,
         byte_counters counters, std::function<void(const relay_result&)> on_close, tunnel_destination dest)
      : w_(w),
        client_(std::move(c)),
        upstream_(std::move(u)),
        idle_(idle),
        on_close_(std::move(on_close)),
        host_(std::move(dest.host)),
        port_(dest.port),
        reason_(dest.reason) {
    up_.from_client = true;
    up_.source = &client_;
    up_.dest = &upstream_;
    up_.counter = counters.up;
    down_.source = &upstream_;
    down_.dest = &client_;
    down_.counter = counters.down;
    w_.shared().active_connections.fetch_add(1, std::memory_order_relaxed);
  }

  ~tunnel() {
    w_.detach(this);
    w_.pipes().discard(up_.pipe);
    w_.pipes().discard(down_.pipe);
    relay_result r;
    r.bytes_up = up_.bytes;
    r.bytes_down = down_.bytes;
    r.cause = cause_;
    r.client_closed_first = client_closed_first_;
    try {
      if (on_close_) on_close_(r);
    } catch (...) {
      // The record is lost (out of memory while formatting it); the tunnel is closed anyway.
    }
    w_.shared().active_connections.fetch_sub(1, std::memory_order_relaxed);
  }

  void start() {
    w_.attach(this);
    // Both descriptors are already non-blocking: Asio switched them when it ran the
    // session's reads and the connect. Each pump starts by waiting: the wait re-arms
    // the descriptor (EPOLL_CTL_MOD), which reports bytes already queued at once, so
    // trying a read first would only add a failed recv(2) in the usual case where the
    // client speaks first after the reply and the upstream has nothing yet.
    wait_source(up_);
    wait_source(down_);
  }

  void abort() noexcept override { close(close_cause::shutdown); }

  void check_deadline(steady_clock::time_point now) noexcept override {
    if (now - last_activity_ >= idle_) close(close_cause::idle_timeout);
  }

  bool revoke(const revocation& r) override {
    if (closed_ || host_.empty() || !r.denies(host_, port_, reason_)) return false;
    close(close_cause::revoked);
    return true;
  }

 private:
  // One direction of the tunnel.
  struct pump {
    bool from_client = false;
    socket* source = nullptr;
    socket* dest = nullptr;
    std::uint64_t bytes = 0;
    std::atomic<std::uint64_t>* counter = nullptr;  // the domain's byte counter, per batch
    pipe_pool::pipe_fds pipe;      // leased while it holds data
    std::size_t in_pipe = 0;       // bytes in the pipe not yet written
    std::vector<char> spill;       // copied bytes the destination did not take yet
    std::size_t spill_left = 0;    // the last spill_left bytes of spill are still owed
    bool bulk = false;             // large transfers seen: splice from now on
    bool done = false;
  };

  static int source_fd(const pump& p) { return p.source->native_handle(); }
  static int dest_fd(const pump& p) { return p.dest->native_handle(); }

  void wait(socket& s, asio::socket_base::wait_type type, pump& p) {
    s.async_wait(type, [self = shared_from_this(), &p](const boost::system::error_code& ec) {
      if (self->closed_) return;
      if (ec) {
        if (ec != asio::error::operation_aborted) self->fail(p);
        return;
      }
      self->run(p);
    });
  }
  void wait_source(pump& p) { wait(*p.source, asio::socket_base::wait_read, p); }
  void wait_dest(pump& p) { wait(*p.dest, asio::socket_base::wait_write, p); }

  void fail(pump& p) { close(p.from_client ? close_cause::client_reset : close_cause::upstream_reset); }
  void fail_dest(pump& p) { close(p.from_client ? close_cause::upstream_reset : close_cause::client_reset); }

  enum class write_state : std::uint8_t { done, blocked, failed };

  // Writes what the pump holds: its spill, then its pipe (both hold bytes only when
  // spill_pipe() read part of the pipe). True when everything went out; false when it
  // must wait (a wait was started) or the tunnel failed.
  bool flush(pump& p) {
    const int dest = dest_fd(p);
    auto state = drain(p.spill_left, [&](std::size_t n) {
      return ::send(dest, p.spill.data() + p.spill.size() - n, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    });
    if (state == write_state::done) {
      state = drain(p.in_pipe, [&](std::size_t n) {
        return ::splice(p.pipe.read_end, nullptr, dest, nullptr, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      });
      // A destination that takes nothing now (a client that stopped reading) would
      // hold the pipe, two descriptors, for as long as it stalls. Only as many stalled
      // pipes as the worker's budget leaves room for stay leased; beyond, the bytes
      // move to a spill of their own (at most one pipe's worth) and the pipe goes back.
      if (state == write_state::blocked && !w_.pipes().may_hold_stalled()) spill_pipe(p);
    }
    if (state == write_state::blocked) {
      wait_dest(p);
      return false;
    }
    if (state == write_state::failed) {
      fail_dest(p);
      return false;
    }
    if (!p.spill.empty()) std::vector<char>().swap(p.spill);
    return true;
  }

  // Writes the `left` bytes still owed to the destination with `write_some` (a syscall
  // returning what write(2) returns).
  template <class WriteSome>
  static write_state drain(std::size_t& left, WriteSome write_some) {
    while (left > 0) {
      const ssize_t m = write_some(left);
      if (m > 0) {
        left -= static_cast<std::size_t>(m);
        continue;
      }
      if (m < 0 && errno == EINTR) continue;
      return m < 0 && errno == EAGAIN ? write_state::blocked : write_state::failed;
    }
    return write_state::done;
  }

  // Moves what the pipe holds into the pump's spill and returns the pipe to the pool.
  // Keeps the pipe when it cannot be read (no memory, an unexpected error).
  void spill_pipe(pump& p) noexcept {
    try {
      p.spill.resize(p.in_pipe);
    } catch (...) {
      return;
    }
    std::size_t got = 0;
    for (int tries = 0; got < p.in_pipe && tries < 64; ++tries) {
      const ssize_t n = ::read(p.pipe.read_end, p.spill.data() + got, p.in_pipe - got);
      if (n > 0) got += static_cast<std::size_t>(n);
      else if (!(n < 0 && errno == EINTR)) break;
    }
    p.spill.resize(got);
    p.spill_left = got;
    p.in_pipe -= got;
    if (p.in_pipe > 0) return;  // a partial read: the rest stays in the pipe, written after the spill
    w_.pipes().release(p.pipe);
    p.pipe = {};
  }

  void source_eof(pump& p) {
    p.done = true;
    if (!first_eof_seen_) {
      first_eof_seen_ = true;
      client_closed_first_ = p.from_client;
    }
    if (up_.done && down_.done) {  // close() sends the last FIN itself
      close(close_cause::both_eof);
      return;
    }
    boost::system::error_code ignored;
    p.dest->shutdown(asio::socket_base::shutdown_send, ignored);
  }

  // Adds one batch's bytes to the pump's domain counter when run() returns, however it
  // returns: one relaxed atomic add per batch (at most yield_after_bytes plus one
  // splice), so a scrape sees a long transfer grow and the relay pays nothing per byte.
  struct batch_count {
    const pump& p;
    std::size_t& moved;
    ~batch_count() {
      if (moved > 0 && p.counter) p.counter->fetch_add(moved, std::memory_order_relaxed);
    }
  };

  void run(pump& p) {
    std::size_t moved = 0;
    const batch_count counted{p, moved};
    bool drained = false;  // the last read was short: the source is most likely empty
    for (;;) {
      if (closed_ || p.done) return;
      if (!flush(p)) return;
      if (p.pipe.valid()) {  // empty now: back to the pool
        w_.pipes().release(p.pipe);
        p.pipe = {};
      }
      if (drained) {
        // A short read means the receive queue was empty a moment ago; waiting now
        // saves the recv(2) that would fail with EAGAIN. The wait re-arms the
        // descriptor, so bytes or a FIN that came in meanwhile are reported at once.
        wait_source(p);
        return;
      }
      if (moved >= yield_after_bytes) {
        asio::post(w_.io(), [self = shared_from_this(), &p] {
          if (!self->closed_) self->run(p);
        });
        return;
      }
      // Small exchanges (handshakes, request/response) are copied through the worker's
      // scratch buffer: two syscalls, no pipe. A read that fills the buffer marks the
      // direction as bulk, and from then on bytes move by splice(2) without ever
      // entering user space. Without a pipe to be had (EMFILE) bulk copies too.
      if (p.bulk) p.pipe = w_.pipes().acquire();
      ssize_t n;
      if (p.pipe.valid()) {
        n = ::splice(source_fd(p), nullptr, p.pipe.write_end, nullptr, splice_chunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) p.in_pipe = static_cast<std::size_t>(n);  // bulk: read on until EAGAIN
      } else {
        auto scratch = w_.scratch();
        n = ::recv(source_fd(p), scratch.data(), scratch.size(), MSG_DONTWAIT);
        if (n > 0) {
          if (static_cast<std::size_t>(n) == scratch.size())
            p.bulk = true;
          else
            drained = true;
          const ssize_t sent = ::send(dest_fd(p), scratch.data(), static_cast<std::size_t>(n), MSG_NOSIGNAL | MSG_DONTWAIT);
          if (sent < 0 && errno != EAGAIN && errno != EINTR) {
            fail_dest(p);
            return;
          }
          const std::size_t done = sent > 0 ? static_cast<std::size_t>(sent) : 0;
          if (done < static_cast<std::size_t>(n)) {
            p.spill.assign(scratch.data() + done, scratch.data() + n);
            p.spill_left = p.spill.size();
          }
        }
      }
      const int read_errno = errno;  // before release() below can make a syscall
      if (n > 0) {
        p.bytes += static_cast<std::size_t>(n);
        moved += static_cast<std::size_t>(n);
        last_activity_ = steady_clock::now();
        continue;
      }
      w_.pipes().release(p.pipe);
      p.pipe = {};
      if (n == 0) {
        source_eof(p);
        return;
      }
      if (read_errno == EINTR) continue;
      if (read_errno == EAGAIN) {
        wait_source(p);
        return;
      }
      fail(p);
      return;
    }
  }

  void close(close_cause cause) noexcept {
    if (closed_) return;
    closed_ = true;
    cause_ = cause;
    boost::system::error_code ignored;
    client_.close(ignored);  // pending waits complete with operation_aborted
    upstream_.close(ignored);
  }

  worker& w_;
  socket client_;
  socket upstream_;  // converted from the dialled tcp::socket: one type for both ends
  std::chrono::milliseconds idle_;
  std::function<void(const relay_result&)> on_close_;
  steady_clock::time_point last_activity_ = steady_clock::now();
  pump up_;    // client -> upstream
  pump down_;  // upstream -> client
  std::string host_;  // canonical; short names stay in the string itself (no allocation)
  std::uint16_t port_;
  policy::decision_reason reason_;
  close_cause cause_ = close_cause::both_eof;
  bool closed_ = false;
  bool first_eof_seen_ = false;
  bool client_closed_first_ = true;
};

// An idle tunnel is this object (plus its shared_ptr block and the closing record held
// by on_close): README "Performance" measures about 1 KiB per idle tunnel in all, so
// whatever is added here is added to every tunnel. 504 bytes with libstdc++ on x86-64
// (32 of them the destination kept for revocation).
static_assert(sizeof(tunnel) <= 512, "the tunnel object grew: every idle tunnel pays for it");

}  // namespace

void start_tunnel(worker& w, asio::generic::stream_protocol::socket client, asio::ip::tcp::socket upstream,
                  std::chrono::milliseconds idle_timeout, byte_counters counters,
                  std::function<void(const relay_result&)> on_close, tunnel_destination dest) {
  // The relay reads and writes with MSG_DONTWAIT, but splice(2) blocks on a blocking
  // socket whatever its flags say.
  assert((::fcntl(client.native_handle(), F_GETFL) & O_NONBLOCK) != 0);
  assert((::fcntl(upstream.native_handle(), F_GETFL) & O_NONBLOCK) != 0);
  auto t = std::make_shared<tunnel>(w, std::move(client), std::move(upstream), idle_timeout, counters,
                                     std::move(on_close), std::move(dest));
  t->start();
}

}  // namespace egressd::proxy
