#pragma once
// A worker: one thread running one single-threaded io_context. Every session lives on
// the worker that accepted it from accept to close, so the data path takes no locks.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <memory>
#include <span>
#include <thread>
#include <unordered_set>

#include "proxy/dns.hpp"
#include "proxy/relay.hpp"

namespace egressd::proxy {

struct runtime;

/// Something a worker can cancel at shutdown (a live session).
class abortable {
 public:
  virtual void abort() noexcept = 0;

 protected:
  ~abortable() = default;
};

/// Something the worker's idle sweep looks at (an open tunnel).
class idle_checked {
 public:
  virtual void check_idle(std::chrono::steady_clock::time_point now) noexcept = 0;

 protected:
  ~idle_checked() = default;
};

class worker {
 public:
  worker(runtime& rt, unsigned index, const dns_options& dns);
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  boost::asio::io_context& io() noexcept { return io_; }
  runtime& shared() noexcept { return rt_; }
  resolver& dns() noexcept { return *dns_; }
  pipe_pool& pipes() noexcept { return pipes_; }
  unsigned index() const noexcept { return index_; }

  /// Sessions register while alive (worker thread only).
  void attach(abortable* s) { sessions_.insert(s); }
  void detach(abortable* s) noexcept { sessions_.erase(s); }
  std::size_t live_sessions() const noexcept { return sessions_.size(); }

  /// Cancels every live session (posted to the worker thread; any thread may call).
  void abort_all();

  /// Tunnels register for the idle sweep, which runs every 250 ms while any is open
  /// (worker thread only). One timer per worker instead of one per tunnel.
  void track_idle(idle_checked* t);
  void untrack_idle(idle_checked* t) noexcept;

  /// A 64 KiB buffer for the relay's copy fallback (worker thread only; its content
  /// does not survive a suspension).
  std::span<char> scratch() noexcept { return scratch_; }

  /// Starts the thread.
  void start();
  /// Lets the io_context run out of work and joins the thread.
  void stop_and_join();

 private:
  runtime& rt_;
  unsigned index_;
  boost::asio::io_context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::unique_ptr<resolver> dns_;
  pipe_pool pipes_;
  std::unordered_set<abortable*> sessions_;
  std::unordered_set<idle_checked*> idle_checked_;
  boost::asio::steady_timer sweep_timer_{io_};
  bool sweeping_ = false;
  std::array<char, 65536> scratch_{};
  std::thread thread_;

  void sweep();
};

}  // namespace egressd::proxy
