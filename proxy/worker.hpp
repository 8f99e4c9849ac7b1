#pragma once
// A worker: one thread running one single-threaded io_context. Every session lives on
// the worker that accepted it from accept to close, so the data path takes no locks.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <memory>
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
  std::thread thread_;
};

}  // namespace egressd::proxy
