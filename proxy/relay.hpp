#pragma once
// The tunnel relay (README "Life of a session"). Once a tunnel is established the session's
// coroutines end and the tunnel lives on as one small object: two sockets, two pump
// states and the counters. Each pump waits for readiness and moves bytes with
// splice(2) through a pipe leased from a per-thread pool only while data moves (or
// while its destination stalls, within the pool's budget), so an idle tunnel holds no
// user-space buffer, no pipe and no coroutine frame. EOF on one
// side becomes shutdown(SHUT_WR) on the other while the reverse direction keeps
// flowing; an error on either side closes both; the worker's idle sweep closes a
// tunnel silent for its idle_timeout.

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/decision.hpp"

namespace egressd::proxy {

class worker;

/// Pipes for splice(2), owned by one worker thread (not thread-safe). At most
/// `max_open` pipes are open at once, leased or spare, since every pipe costs two file
/// descriptors and the start-up plan counts them (server.cpp): acquire() beyond that
/// gives an invalid pipe and the caller copies instead. A pipe returns to the pool
/// empty; at most 64 spare pipes stay open.
class pipe_pool {
 public:
  struct pipe_fds {
    int read_end = -1;
    int write_end = -1;
    bool valid() const noexcept { return read_end >= 0; }
  };
  explicit pipe_pool(std::size_t max_open = 64);
  ~pipe_pool();
  pipe_pool(const pipe_pool&) = delete;
  pipe_pool& operator=(const pipe_pool&) = delete;

  /// A pipe, or an invalid one when `max_open` are open or none can be created
  /// (EMFILE): the caller then copies through the worker's scratch buffer.
  pipe_fds acquire() noexcept;
  /// Give back an EMPTY leased pipe.
  void release(pipe_fds p) noexcept;
  /// Close a leased pipe that may still hold data.
  void discard(pipe_fds p) noexcept;
  /// Whether the holder of a leased pipe that is full of data its destination does not
  /// take now may keep it while it waits: true while another pipe stays to be had, so
  /// stalled tunnels never take the last pipe from transfers that move.
  bool may_hold_stalled() const noexcept { return leased_ < max_open_; }

 private:
  std::vector<pipe_fds> idle_;
  std::size_t max_open_;
  std::size_t leased_ = 0;
};

/// Why a tunnel ended, for the access record. `revoked`: a reload's policy denies
/// its destination (reload.revoke).
enum class close_cause : std::uint8_t { both_eof, client_reset, upstream_reset, idle_timeout, shutdown, revoked };
std::string_view to_string(close_cause c) noexcept;

struct relay_result {
  std::uint64_t bytes_up = 0;    ///< client → upstream
  std::uint64_t bytes_down = 0;  ///< upstream → client
  close_cause cause = close_cause::both_eof;
  bool client_closed_first = true;
};

/// Where a tunnel adds the bytes it moves (its domain's byte counters, README
/// "Metrics"): once per relay batch of a pump (at most about 1 MiB), with one relaxed
/// atomic add, so a scrape during a long transfer sees them grow. Null: not counted.
struct byte_counters {
  std::atomic<std::uint64_t>* up = nullptr;    ///< client → upstream
  std::atomic<std::uint64_t>* down = nullptr;  ///< upstream → client
};

/// Where a tunnel goes, for revocation: the canonical host, the port, and why it was
/// allowed. An empty host: never revoked.
struct tunnel_destination {
  std::string host;
  std::uint16_t port = 0;
  policy::decision_reason reason = policy::decision_reason::no_decision;
};

/// Starts relaying between `client` and `upstream` on worker `w` (its thread only) and
/// returns at once; the tunnel owns both sockets from here on. `on_close` runs exactly
/// once, on the worker's thread, when the tunnel has ended (both sockets closed). The
/// tunnel counts as an open connection until then, and the worker can abort it.
void start_tunnel(worker& w, boost::asio::generic::stream_protocol::socket client,
                  boost::asio::ip::tcp::socket upstream, std::chrono::milliseconds idle_timeout,
                  byte_counters counters, std::function<void(const relay_result&)> on_close,
                  tunnel_destination dest = {});

}  // namespace egressd::proxy
