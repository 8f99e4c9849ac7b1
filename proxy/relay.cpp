// Flow: relay() runs two pumps (client→upstream, upstream→client) and an idle
// watchdog. A pump waits until its source is readable, leases a pipe, splices
// source→pipe→destination until the source would block, and gives the pipe back
// empty. Sockets are edge-triggered in Asio's reactor, so a pump only waits after
// the source reported EAGAIN. After 1 MiB in one go it yields to the other sessions
// on its thread. EOF shuts down the destination's sending side; an error cancels both
// pumps; the watchdog ends everything when neither direction moved for idle_timeout.

#include "proxy/relay.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <memory>

namespace egressd::proxy {

namespace asio = boost::asio;
using asio::awaitable;
using std::chrono::steady_clock;

namespace {
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
// Bytes moved before a pump yields to the other sessions of its thread.
constexpr std::size_t yield_after_bytes = 1 << 20;
// Largest single splice; the pipe is resized towards this where the kernel allows.
constexpr std::size_t splice_chunk = 256 * 1024;
}  // namespace

pipe_pool::~pipe_pool() {
  for (auto p : idle_) discard(p);
}

pipe_pool::pipe_fds pipe_pool::acquire() noexcept {
  if (!idle_.empty()) {
    auto p = idle_.back();
    idle_.pop_back();
    return p;
  }
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {};
  // A bigger pipe means fewer wake-ups on bulk transfers; failure is harmless.
  (void)::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(splice_chunk));
  return {fds[0], fds[1]};
}

void pipe_pool::release(pipe_fds p) noexcept {
  if (p.read_end < 0) return;
  if (idle_.size() >= max_idle_) {
    discard(p);
    return;
  }
  idle_.push_back(p);
}

void pipe_pool::discard(pipe_fds p) noexcept {
  if (p.read_end >= 0) ::close(p.read_end);
  if (p.write_end >= 0) ::close(p.write_end);
}

std::string_view to_string(close_cause c) noexcept {
  switch (c) {
    case close_cause::both_eof: return "eof";
    case close_cause::client_reset: return "client_error";
    case close_cause::upstream_reset: return "upstream_error";
    case close_cause::idle_timeout: return "idle_timeout";
    case close_cause::shutdown: return "shutdown";
  }
  return "eof";
}

namespace {

struct shared_state {
  steady_clock::time_point last_activity = steady_clock::now();
  bool failed = false;
  bool idle_expired = false;
  close_cause cause = close_cause::both_eof;
  bool first_eof_seen = false;
  bool client_closed_first = true;
};

struct direction {
  std::uint64_t bytes = 0;
  bool from_is_client = true;
};

template <class From, class To>
void fail(shared_state& st, From& from, To& to, close_cause cause) {
  if (!st.failed) {
    st.failed = true;
    st.cause = cause;
  }
  boost::system::error_code ignored;
  from.cancel(ignored);
  to.cancel(ignored);
}

// Copy through a user-space buffer: used only when no pipe can be had (EMFILE).
template <class From, class To>
awaitable<bool> copy_some(From& from, To& to, direction& d, shared_state& st) {
  std::array<char, 16384> buf;  // lives only for this call
  auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), nothrow);
  if (ec == asio::error::eof) co_return false;
  if (ec) {
    fail(st, from, to, d.from_is_client ? close_cause::client_reset : close_cause::upstream_reset);
    co_return false;
  }
  auto [wec, w] = co_await asio::async_write(to, asio::buffer(buf.data(), n), nothrow);
  if (wec) {
    fail(st, from, to, d.from_is_client ? close_cause::upstream_reset : close_cause::client_reset);
    co_return false;
  }
  d.bytes += w;
  st.last_activity = steady_clock::now();
  co_return true;
}

template <class From, class To>
awaitable<void> pump(From& from, To& to, pipe_pool& pipes, direction& d, shared_state& st) {
  const int in = from.native_handle();
  const int out = to.native_handle();
  const close_cause read_fail = d.from_is_client ? close_cause::client_reset : close_cause::upstream_reset;
  const close_cause write_fail = d.from_is_client ? close_cause::upstream_reset : close_cause::client_reset;
  bool must_wait = false;  // bytes may already be queued when the relay starts
  for (;;) {
    if (st.failed || st.idle_expired) co_return;
    if (must_wait) {
      auto [ec] = co_await from.async_wait(asio::socket_base::wait_read, nothrow);
      if (ec || st.failed || st.idle_expired) {
        if (ec && ec != asio::error::operation_aborted) fail(st, from, to, read_fail);
        co_return;
      }
    }
    auto p = pipes.acquire();
    if (p.read_end < 0) {
      if (!co_await copy_some(from, to, d, st)) break;
      must_wait = false;
      continue;
    }
    std::size_t moved = 0;
    for (;;) {
      const ssize_t n = ::splice(in, nullptr, p.write_end, nullptr, splice_chunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        std::size_t left = static_cast<std::size_t>(n);
        while (left > 0) {
          const ssize_t m = ::splice(p.read_end, nullptr, out, nullptr, left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
          if (m > 0) {
            left -= static_cast<std::size_t>(m);
            continue;
          }
          if (m < 0 && errno == EINTR) continue;
          if (m < 0 && errno == EAGAIN) {
            auto [ec] = co_await to.async_wait(asio::socket_base::wait_write, nothrow);
            if (!ec && !st.failed && !st.idle_expired) continue;
            if (ec && ec != asio::error::operation_aborted) fail(st, from, to, write_fail);
          } else {
            fail(st, from, to, write_fail);
          }
          pipe_pool::discard(p);
          co_return;
        }
        d.bytes += static_cast<std::size_t>(n);
        st.last_activity = steady_clock::now();
        moved += static_cast<std::size_t>(n);
        if (moved >= yield_after_bytes) {
          pipes.release(p);
          co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
          must_wait = false;
          break;
        }
        continue;
      }
      if (n == 0) {  // EOF from the source
        pipes.release(p);
        if (!st.first_eof_seen) {
          st.first_eof_seen = true;
          st.client_closed_first = d.from_is_client;
        }
        boost::system::error_code ignored;
        to.shutdown(asio::socket_base::shutdown_send, ignored);
        co_return;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pipes.release(p);
        must_wait = true;
        break;
      }
      pipe_pool::discard(p);
      fail(st, from, to, read_fail);
      co_return;
    }
  }
  // Reached only from the copy fallback's EOF.
  if (!st.first_eof_seen) {
    st.first_eof_seen = true;
    st.client_closed_first = d.from_is_client;
  }
  boost::system::error_code ignored;
  to.shutdown(asio::socket_base::shutdown_send, ignored);
}

awaitable<void> watchdog(asio::steady_timer& timer, shared_state& st, std::chrono::milliseconds idle) {
  for (;;) {
    timer.expires_at(st.last_activity + idle);
    auto [ec] = co_await timer.async_wait(nothrow);
    if (ec || st.failed) co_return;
    if (steady_clock::now() - st.last_activity >= idle) {
      st.idle_expired = true;
      co_return;
    }
  }
}

}  // namespace

awaitable<relay_result> relay(asio::generic::stream_protocol::socket& client, asio::ip::tcp::socket& upstream,
                              pipe_pool& pipes, std::chrono::milliseconds idle_timeout) {
  using namespace asio::experimental::awaitable_operators;
  boost::system::error_code ignored;
  client.native_non_blocking(true, ignored);
  upstream.native_non_blocking(true, ignored);

  shared_state st;
  direction up{0, true};
  direction down{0, false};
  asio::steady_timer timer(co_await asio::this_coro::executor);
  co_await ((pump(client, upstream, pipes, up, st) && pump(upstream, client, pipes, down, st)) ||
            watchdog(timer, st, idle_timeout));

  relay_result r;
  r.bytes_up = up.bytes;
  r.bytes_down = down.bytes;
  r.cause = st.idle_expired ? close_cause::idle_timeout : st.cause;
  r.client_closed_first = st.client_closed_first;
  client.close(ignored);
  upstream.close(ignored);
  co_return r;
}

}  // namespace egressd::proxy
