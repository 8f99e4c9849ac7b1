#include "proxy/worker.hpp"

#include <boost/asio/post.hpp>

#include <vector>

#include "proxy/log.hpp"
#include "proxy/runtime.hpp"

namespace egressd::proxy {

worker::worker(runtime& rt, unsigned index, const dns_options& dns)
    : rt_(rt), index_(index), guard_(io_.get_executor()), dns_(std::make_unique<resolver>(io_.get_executor(), rt.dns, dns)) {}

worker::~worker() { stop_and_join(); }

void worker::abort_all() {
  boost::asio::post(io_, [this] {
    // Copy first: abort() may end a session, which detaches it.
    std::vector<abortable*> all(sessions_.begin(), sessions_.end());
    for (auto* s : all) s->abort();
  });
}

void worker::track_idle(idle_checked* t) {
  idle_checked_.insert(t);
  if (!sweeping_) {
    sweeping_ = true;
    sweep();
  }
}

void worker::untrack_idle(idle_checked* t) noexcept { idle_checked_.erase(t); }

void worker::sweep() {
  if (idle_checked_.empty()) {
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
    // check_idle() only closes sockets; tunnels leave the set later, from their
    // destructors, so iterating a copy is not needed for safety but keeps it obvious.
    std::vector<idle_checked*> all(idle_checked_.begin(), idle_checked_.end());
    for (auto* t : all) t->check_idle(now);
    sweep();
  });
}

void worker::start() {
  thread_ = std::thread([this] {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        // A handler escaped its session: log it and keep the worker serving.
        log_event(log_level::error, "worker handler failed",
                  json_object().add("worker", index_).add("error", e.what()));
      }
    }
  });
}

void worker::stop_and_join() {
  if (!thread_.joinable()) return;
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
