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
#include <utility>
#include <vector>

#include "policy/decision.hpp"
#include "proxy/dns.hpp"
#include "proxy/metrics.hpp"
#include "proxy/relay.hpp"

namespace egressd::proxy {

struct runtime;
struct generation;
namespace hook {
class coordinator;
}
class upstream_pool;

/// The question revocation asks of a task (README "Reload and shutdown"): whether the
/// policy now in force refuses a destination that was allowed, for reason `was`,
/// when the task connected to it.
class revocation {
 public:
  virtual bool denies(std::string_view host, std::uint16_t port, policy::decision_reason was) const = 0;

 protected:
  ~revocation() = default;
};

/// Something that lives on one worker: a session or an open tunnel. The worker keeps
/// them in an intrusive list (no allocation to join or leave it), aborts them all at
/// shutdown, and while any is attached its sweep calls check_deadline() every 250 ms:
/// one timer per worker instead of one per session or tunnel, so deadlines and idle
/// timeouts hold to a quarter of a second.
class worker_task {
 public:
  /// Cancels whatever the task waits for; never destroys it synchronously.
  virtual void abort() noexcept = 0;
  /// Closes or cancels what has passed its deadline; never destroys it synchronously.
  virtual void check_deadline(std::chrono::steady_clock::time_point now) noexcept = 0;
  /// After a reload with reload.revoke: closes what `r` says the new policy denies (an
  /// open tunnel, a pooled upstream connection); true when it closed something. Never
  /// destroys the task synchronously; may throw what `r` throws (out of memory).
  virtual bool revoke(const revocation& r) {
    (void)r;
    return false;
  }

 protected:
  worker_task() = default;
  ~worker_task() = default;
  worker_task(const worker_task&) = delete;
  worker_task& operator=(const worker_task&) = delete;

 private:
  friend class worker;
  worker_task* prev_ = nullptr;
  worker_task* next_ = nullptr;
};

/// Revocation's rule: whether `g`'s policy, with the decision memory, denies
/// host:port now for a connection allowed for reason `was` (the rules, then the memory
/// where no rule matched; `ask` denies unless a hook answered for that connection).
bool revoked_by(const generation& g, const hook::coordinator& hooks, std::string_view host, std::uint16_t port,
                policy::decision_reason was);

class generation_pin;

class worker {
 public:
  /// `max_pipes`: the most splice pipes this worker holds open at once, and
  /// `max_idle_upstreams` the most idle pooled upstream connections (the start-up
  /// descriptor plan's shares). Opens one spare descriptor, the reserve (see refuse_one).
  /// `workers`: how many workers there are (connection ids interleave over them).
  worker(runtime& rt, unsigned index, const dns_options& dns, std::size_t max_pipes = 64, unsigned workers = 1,
         std::size_t max_idle_upstreams = 128);
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  boost::asio::io_context& io() noexcept { return io_; }
  runtime& shared() noexcept { return rt_; }
  resolver& dns() noexcept { return *dns_; }
  pipe_pool& pipes() noexcept { return pipes_; }
  /// This worker's host → metric handles cache (worker thread only).
  domain_cache& domains() noexcept { return domains_; }
  /// Idle plain-HTTP upstream connections, shared by this worker's client connections
  /// (worker thread only).
  upstream_pool& idle_upstreams() noexcept { return *idle_upstreams_; }

  /// Sessions and tunnels attach while alive (worker thread only). Attaching starts
  /// the sweep if it is not running.
  void attach(worker_task* t) noexcept;
  void detach(worker_task* t) noexcept;

  /// Aborts every attached task (posted to the worker thread; any thread may call).
  void abort_all();
  /// Revocation after a reload (posted to the worker thread; any thread may call):
  /// every attached task is asked whether `g`'s policy, with the decision memory,
  /// denies its destination now, and closes it if so.
  void revoke(std::shared_ptr<const generation> g);

  /// When accept(2) on `listen_fd` failed for want of descriptors (EMFILE, ENFILE):
  /// closes the reserve descriptor, accepts one waiting connection and closes it at
  /// once, then opens the reserve again, so that client is refused promptly rather
  /// than left in the backlog (as nginx and HAProxy do). True when one was refused
  /// (worker thread only).
  bool refuse_one(int listen_fd) noexcept;

  /// The newest generation, pinned for a session of this worker (worker thread only).
  /// The pin counts the generation's users in this worker alone: a session never
  /// touches runtime::current or a reference count another worker updates.
  generation_pin pin_generation();

  /// A connection id unique in the process: worker i of n hands out i+1, i+1+n, ...
  /// (worker thread only), so no counter is shared by the workers.
  std::uint64_t next_connection_id() noexcept { return next_id_++ * id_stride_ + index_ + 1; }

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
  unsigned id_stride_;
  std::uint64_t next_id_ = 0;
  // Generations sessions of this worker use, newest last. Declared before io_ so that
  // it outlives whatever io_'s destructor still destroys.
  friend class generation_pin;
  struct pinned {
    std::shared_ptr<const generation> g;
    std::uint64_t number = 0;  // runtime::generation_number when it was loaded
    std::size_t users = 0;
  };
  std::vector<std::unique_ptr<pinned>> pinned_;
  void unpin(pinned* p) noexcept;
  boost::asio::io_context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::unique_ptr<resolver> dns_;
  pipe_pool pipes_;
  int reserve_fd_ = -1;
  domain_cache domains_;
  worker_task* tasks_ = nullptr;  // head of the intrusive list
  boost::asio::steady_timer sweep_timer_{io_};
  bool sweeping_ = false;
  std::array<char, 65536> scratch_{};
  std::thread thread_;
  // Last: destroyed first, while the loop and the task list it detaches from are whole.
  std::unique_ptr<upstream_pool> idle_upstreams_;

  void sweep();
  void run_loop();
  template <class F>
  void for_each_task(F f);
};

/// A session's hold on its generation (worker::pin_generation). Worker thread only.
class generation_pin {
 public:
  generation_pin() = default;
  /// Another hold on the same generation (worker thread only).
  generation_pin(const generation_pin& o) noexcept : w_(o.w_), p_(o.p_) {
    if (p_ != nullptr) ++p_->users;
  }
  generation_pin& operator=(const generation_pin& o) noexcept {
    if (this != &o) *this = generation_pin(o);
    return *this;
  }
  generation_pin(generation_pin&& o) noexcept : w_(o.w_), p_(std::exchange(o.p_, nullptr)) {}
  generation_pin& operator=(generation_pin&& o) noexcept {
    if (this != &o) {
      release();
      w_ = o.w_;
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  ~generation_pin() { release(); }
  const generation& get() const noexcept { return *p_->g; }
  /// runtime::generation_number when this generation was pinned first.
  std::uint64_t number() const noexcept { return p_->number; }

 private:
  friend class worker;
  generation_pin(worker* w, worker::pinned* p) noexcept : w_(w), p_(p) {}
  void release() noexcept {
    if (p_ != nullptr) w_->unpin(std::exchange(p_, nullptr));
  }
  worker* w_ = nullptr;
  worker::pinned* p_ = nullptr;
};

}  // namespace egressd::proxy
