#pragma once
// The tunnel relay (DESIGN.md §3 "Relay"): two pumps, one per direction, that wait
// for readiness and move bytes with splice(2) through a pipe leased from a per-thread
// pool only while data moves, so an idle tunnel holds no user-space buffer and no pipe.
// EOF on one side becomes shutdown(SHUT_WR) on the other while the reverse direction
// keeps flowing; an error on either side closes both; traffic either way pushes the
// idle deadline.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

namespace egressd::proxy {

/// Pipes for splice(2), owned by one worker thread (not thread-safe). A pipe returns
/// to the pool empty; the pool keeps at most `max_idle` spare pipes open, since file
/// descriptors are scarce.
class pipe_pool {
 public:
  struct pipe_fds {
    int read_end = -1;
    int write_end = -1;
  };
  explicit pipe_pool(std::size_t max_idle = 64) : max_idle_(max_idle) {}
  ~pipe_pool();
  pipe_pool(const pipe_pool&) = delete;
  pipe_pool& operator=(const pipe_pool&) = delete;

  /// A pipe, or {-1,-1} when none can be created (EMFILE): the caller then copies
  /// through a user-space buffer.
  pipe_fds acquire() noexcept;
  /// Give back an EMPTY pipe.
  void release(pipe_fds p) noexcept;
  /// Close a pipe that may still hold data.
  static void discard(pipe_fds p) noexcept;

  std::size_t idle() const noexcept { return idle_.size(); }

 private:
  std::vector<pipe_fds> idle_;
  std::size_t max_idle_;
};

/// Who ended a tunnel, for the access record.
enum class close_cause : std::uint8_t { both_eof, client_reset, upstream_reset, idle_timeout, shutdown };
std::string_view to_string(close_cause c) noexcept;

struct relay_result {
  std::uint64_t bytes_up = 0;    ///< client → upstream
  std::uint64_t bytes_down = 0;  ///< upstream → client
  close_cause cause = close_cause::both_eof;
  bool client_closed_first = true;
};

/// Relay between `client` and `upstream` until both directions reached EOF, either
/// side failed, or nothing moved for `idle_timeout`. Never throws for network errors.
/// Both sockets are closed when it returns. Runs on the sockets' (single) executor.
boost::asio::awaitable<relay_result> relay(boost::asio::generic::stream_protocol::socket& client,
                                           boost::asio::ip::tcp::socket& upstream, pipe_pool& pipes,
                                           std::chrono::milliseconds idle_timeout);

}  // namespace egressd::proxy
