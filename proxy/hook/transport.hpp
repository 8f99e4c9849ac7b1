#pragma once
// A hook kind that talks to something: `exec` (a program) or `url` (an HTTP endpoint).
// The coordinator (coordinator.hpp) owns one transport per configuration and calls it
// on the hook thread's executor only; a transport never blocks that thread (processes
// and sockets are asynchronous), and keeps its own concurrency cap and queue.
// `console: true` has no transport: questions wait for an answer by hand.

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "proxy/hook/wire.hpp"

namespace egressd::proxy::hook {

/// Why a transport gave no usable answer. Each becomes its own decision reason.
enum class failure : std::uint8_t {
  none,
  timeout,     ///< no answer in time (the coordinator's timeout; transports may report it too)
  crashed,     ///< exec: the program was killed by a signal, or exited before answering (long-running)
  bad_answer,  ///< exec/url: the output or body is not a valid answer
  not_found,   ///< exec: the program does not exist or cannot be executed
  refused,     ///< url: connection refused, or the host does not resolve
  http_error,  ///< url: a status other than 2xx
  tls_error,   ///< url: TLS handshake or certificate verification failed
  io_error,    ///< anything else (pipe, socket, fork errors)
};
std::string_view to_string(failure f) noexcept;

struct result {
  std::optional<hook::answer> value;  ///< set on success
  failure why = failure::none;        ///< set when !value
  std::string detail;                 ///< for the diagnostic log: "exit 137", "HTTP 500", ...
};

class transport {
 public:
  using callback = std::function<void(result)>;
  virtual ~transport() = default;

  /// Asks `q`. `done` is called exactly once, on the transport's executor (never
  /// inline from ask()), unless cancel(q.id) or shutdown() came first, after which it
  /// may or may not be called (the coordinator ignores late calls).
  virtual void ask(const question& q, callback done) = 0;
  /// The question timed out or was answered by hand: stop working on it (kill its
  /// process; abandon its request). No-op for an unknown id.
  virtual void cancel(std::uint64_t id) = 0;
  /// Stops everything: kills processes (and reaps them), closes connections.
  virtual void shutdown() = 0;
};

/// A transport whose work lives in a core shared with its pending operations (so a
/// completion that arrives after the transport is gone finds the core alive): ask,
/// cancel and shutdown go to the core, and destruction shuts it down. `Core` is
/// constructed from (executor, config) and has ask/cancel/shutdown of its own.
template <class Core>
class shared_core_transport final : public transport {
 public:
  shared_core_transport(boost::asio::any_io_executor ex, const config::hook_config& cfg)
      : core_(std::make_shared<Core>(std::move(ex), cfg)) {}
  ~shared_core_transport() override { core_->shutdown(); }
  shared_core_transport(const shared_core_transport&) = delete;
  shared_core_transport& operator=(const shared_core_transport&) = delete;
  void ask(const question& q, callback done) override { core_->ask(q, std::move(done)); }
  void cancel(std::uint64_t id) override { core_->cancel(id); }
  void shutdown() override { core_->shutdown(); }

 private:
  std::shared_ptr<Core> core_;
};

/// `hook.exec`: per question (a process per question: the question as one JSON line on
/// stdin, then EOF; the answer is its stdout; exit status 0 / non-zero alone allows /
/// denies once) or long-running (`hook.persistent: true`: one process reads one
/// question per line and writes one answer line each, with the question's `id`;
/// restarted when it dies). At most hook.concurrency processes (per-question mode) or
/// questions in flight; the rest queue. Processes are killed on cancel and shutdown and
/// always reaped (no zombies).
std::unique_ptr<transport> make_exec_transport(boost::asio::any_io_executor ex, const config::hook_config& cfg);

/// `hook.url`: POST the question as application/json to an http:// or https:// URL
/// (Beast; OpenSSL with hook.ca_file or the system store, the URL's host verified),
/// `Authorization: Bearer` from hook.token_file when set, keep-alive connections
/// reused (at most hook.concurrency at once). A 2xx with a valid answer is the answer.
std::unique_ptr<transport> make_http_transport(boost::asio::any_io_executor ex, const config::hook_config& cfg);

}  // namespace egressd::proxy::hook
