#include "proxy/worker.hpp"

#include <boost/asio/post.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "policy/host.hpp"
#include "policy/memory.hpp"
#include "proxy/log.hpp"
#include "proxy/per_worker.hpp"
#include "proxy/runtime.hpp"
#include "proxy/upstream_pool.hpp"

namespace egressd::proxy {

namespace {
int open_reserve() noexcept { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }
}  // namespace

worker::worker(runtime& rt, unsigned index, const dns_options& dns, std::size_t max_pipes, unsigned workers,
               std::size_t max_idle_upstreams)
    : rt_(rt),
      index_(index),
      id_stride_(workers == 0 ? 1 : workers),
      guard_(io_.get_executor()),
      dns_(std::make_unique<resolver>(io_.get_executor(), rt.dns, dns)),
      pipes_(max_pipes),
      reserve_fd_(open_reserve()),
      domains_(rt.stats),
      idle_upstreams_(std::make_unique<upstream_pool>(*this, max_idle_upstreams)) {}

worker::~worker() {
  stop_and_join();
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

bool worker::refuse_one(int listen_fd) noexcept {
  if (reserve_fd_ < 0) {
    reserve_fd_ = open_reserve();  // given up earlier: perhaps there is one now
    return false;
  }
  ::close(reserve_fd_);
  const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd >= 0) ::close(fd);
  reserve_fd_ = open_reserve();
  return fd >= 0;
}

// The callback may not destroy tasks (abort() and check_deadline() only cancel), but
// the next link is read first all the same.
template <class F>
void worker::for_each_task(F f) {
  for (worker_task* t = tasks_; t != nullptr;) {
    worker_task* next = t->next_;
    f(*t);
    t = next;
  }
}

void worker::abort_all() {
  boost::asio::post(io_, [this] { for_each_task([](worker_task& t) { t.abort(); }); });
}

bool revoked_by(const generation& g, const hook::coordinator& hooks, std::string_view host, std::uint16_t port,
                policy::decision_reason was) {
  using policy::decision_reason;
  const auto h = policy::canonicalize_host(host);
  if (!h.ok()) return true;
  // The decide path of upstream.cpp without the hook.
  const auto d = hooks.decide(*g.policy, h, port);
  switch (d.result) {
    case policy::outcome::allow: return false;
    // A hook's answer for this very connection stands until the policy says no.
    case policy::outcome::ask: return was != decision_reason::hook_allow && was != decision_reason::hook_timeout;
    default: return true;
  }
}

namespace {

class generation_revocation final : public revocation {
 public:
  generation_revocation(const generation& g, const hook::coordinator& hooks) : g_(g), hooks_(hooks) {}
  bool denies(std::string_view host, std::uint16_t port, policy::decision_reason was) const override {
    return revoked_by(g_, hooks_, host, port, was);
  }

 private:
  const generation& g_;
  const hook::coordinator& hooks_;
};

}  // namespace

void worker::revoke(std::shared_ptr<const generation> g) {
  boost::asio::post(io_, [this, g = std::move(g)] {
    const generation_revocation check(*g, rt_.hooks);
    std::uint64_t closed = 0;
    for_each_task([&](worker_task& t) {
      try {
        if (t.revoke(check)) ++closed;
      } catch (const std::exception&) {
        // Out of memory canonicalizing a name: that one stays open.
      }
    });
    if (closed > 0)
      log_event(log_level::info, "revoked: connections the new policy denies were closed",
                json_object().add("worker", index_).add("closed", closed));
  });
}

generation_pin worker::pin_generation() {
  const auto n = rt_.generation_number.load(std::memory_order_acquire);
  if (pinned_.empty() || pinned_.back()->number != n) {
    // A reload since the last pin (or the first session): load the newest generation,
    // and let go of older ones no session of this worker uses any more. `current` may
    // be newer than n already; the next pin then loads it again, which is harmless.
    auto p = std::make_unique<pinned>();
    p->g = rt_.current.load();
    p->number = n;
    std::erase_if(pinned_, [](const std::unique_ptr<pinned>& q) { return q->users == 0; });
    pinned_.push_back(std::move(p));
  }
  pinned* p = pinned_.back().get();
  ++p->users;
  return generation_pin(this, p);
}

void worker::unpin(pinned* p) noexcept {
  if (--p->users > 0 || p == pinned_.back().get()) return;
  std::erase_if(pinned_, [p](const std::unique_ptr<pinned>& q) { return q.get() == p; });
}

void worker::attach(worker_task* t) noexcept {
  t->prev_ = nullptr;
  t->next_ = tasks_;
  if (tasks_ != nullptr) tasks_->prev_ = t;
  tasks_ = t;
  if (!sweeping_) {
    sweeping_ = true;
    sweep();
  }
}

void worker::detach(worker_task* t) noexcept {
  if (t->prev_ != nullptr)
    t->prev_->next_ = t->next_;
  else if (tasks_ == t)
    tasks_ = t->next_;
  else
    return;  // not attached
  if (t->next_ != nullptr) t->next_->prev_ = t->prev_;
  t->prev_ = t->next_ = nullptr;
}

void worker::sweep() {
  if (tasks_ == nullptr) {
    sweeping_ = false;
    return;
  }
  sweep_timer_.expires_after(std::chrono::milliseconds(250));
  sweep_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) {
      sweeping_ = false;
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    for_each_task([now](worker_task& t) { t.check_deadline(now); });
    sweep();
  });
}

void worker::start() {
  thread_ = std::thread([this] {
    set_counter_slot(index_);
    for (;;) {
      try {
        run_loop();
        return;
      } catch (const std::exception& e) {
        // A handler escaped its session: log it and keep the worker serving.
        log_event(log_level::error, "worker handler failed",
                  json_object().add("worker", index_).add("error", e.what()));
      }
    }
  });
}

void worker::run_loop() {
  const std::chrono::microseconds spin(rt_.current.load()->config->busy_poll_us);
  if (spin.count() == 0) {
    io_.run();
    return;
  }
  // Busy polling: after an event, keep polling (epoll_wait with a zero timeout) for
  // `spin` before blocking, so a reply that comes back within it finds the thread
  // awake. Idle workers still sleep: the spin only follows activity.
  using clock = std::chrono::steady_clock;
  auto last_event = clock::now();
  while (!io_.stopped()) {
    if (io_.poll() > 0) {
      last_event = clock::now();
      continue;
    }
    if (clock::now() - last_event < spin) continue;
    if (io_.run_one() == 0) return;  // out of work: the worker is stopping
    last_event = clock::now();
  }
}

void worker::stop_and_join() {
  if (!thread_.joinable()) return;
  // A loop that still runs shuts the resolver and the sweep down itself and runs out
  // of work; one the server has stopped (io().stop()) runs this posted handler below.
  boost::asio::post(io_, [this] {
    if (dns_) dns_->shutdown();
    sweep_timer_.cancel();
  });
  guard_.reset();
  thread_.join();
  // The loop may have been stopped with operations still queued (a tunnel aborted at
  // the drain deadline whose cancelled waits had not run yet). Run what is ready now,
  // on this thread, so every tunnel and session is destroyed while the worker is whole
  // rather than from io_context's destructor after the registries are gone.
  abort_all();
  io_.restart();
  io_.poll();
}

}  // namespace egressd::proxy
