#pragma once
// The hook coordinator (README "Confirmation hook"): one per daemon, shared by every
// worker. It holds
//   - the decision memory, published copy-on-write (recall() is a lock-free read of
//     an immutable snapshot, cached per thread: a hit costs what a rule match costs);
//   - the pending questions, one per destination (host, port): concurrent requests for
//     the same destination from any worker wait on one question (coalescing);
//   - the transport of the configured hook kind (exec, url) on the hook thread, or
//     none (console: questions wait for an answer by hand).
// Answers are posted back to each waiting request's own executor. Nothing here ever
// runs on, or blocks, a worker's event loop except recall() and the short critical
// section of ask().

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "policy/decision.hpp"
#include "policy/memory.hpp"
#include "policy/snapshot.hpp"
#include "proxy/hook/transport.hpp"
#include "proxy/hook/wire.hpp"

namespace egressd::proxy {
class metrics;
}

namespace egressd::proxy::hook {

/// Who gave a held request its answer (records' `answered_by`).
enum class answer_source : std::uint8_t {
  hook,      ///< the exec or url hook
  by_hand,   ///< the admin API, the CLI or the page
  fallback,  ///< no answer: timeout, failure, overload, shutdown (the reason says which)
};
std::string_view to_string(answer_source s) noexcept;

/// What a held request gets.
struct verdict {
  /// allow or deny; reason hook_allow / hook_deny / hook_timeout / hook_failed /
  /// hook_crashed / ... / hook_overloaded.
  policy::decision decision;
  answer_source source = answer_source::fallback;
  std::uint64_t question_id = 0;  ///< 0 when no question was asked (overload, shutdown)
  std::string reason;             ///< the answer's free text, or the failure's detail
};

/// A pending question as the admin API lists it.
struct pending_question {
  question q;
  std::size_t waiting = 0;  ///< requests held on it now
  std::chrono::system_clock::time_point deadline{};  ///< when it times out
};

/// A decision given by hand (POST /v1/decisions, `egressd allow|deny`, the page).
struct manual_answer {
  std::optional<std::uint64_t> id;  ///< a pending question's id, or else:
  std::string host;                 ///< a canonical host (needed when !id)
  std::uint16_t port = 0;           ///< with host: 0 = any port
  answer value;                     ///< decision, remember, ttl, scope, reason
  std::string who = "admin";        ///< answered_by in the decisions file
};
struct manual_result {
  bool ok = false;
  std::string error;                 ///< why not: "no pending question 17", "host is not valid"
  std::size_t questions_answered = 0;  ///< pending questions this answer released
  std::size_t requests_released = 0;   ///< requests that were held on them
  bool remembered = false;           ///< stored in memory (ttl, always)
};

/// A recent refusal, for the page.
struct denial {
  std::string host;
  std::uint16_t port = 0;
  std::string reason;
  std::chrono::system_clock::time_point at{};
};

class coordinator {
 public:
  explicit coordinator(metrics& stats);
  ~coordinator();
  coordinator(const coordinator&) = delete;
  coordinator& operator=(const coordinator&) = delete;

  /// Starts the hook thread.
  void start();
  /// Answers every pending question with a denial (the proxy is shutting down), stops
  /// the transport (killing its processes) and joins the hook thread.
  void stop();
  /// Applies a (re)loaded configuration: the hook kind and its options, and
  /// decisions_file (read at every call, so an edit by hand takes effect on a reload).
  /// Returns what went wrong, or nothing: a file that cannot be read keeps the memory as
  /// it is; a transport that cannot be built leaves questions to wait for their
  /// timeout. Questions already pending keep their deadline. Any thread.
  std::string configure(const config::config& c);

  /// Called (on the writing thread) with decisions_file's path after each write of
  /// it, so a file watch can take the new content as its own. Set once, before start().
  void on_saved(std::function<void(const std::string&)> f);

  // ---- the data path (any worker thread) ----------------------------------------

  /// The remembered answer for (host, port) now, or nullopt. Lock-free.
  std::optional<policy::decision> recall(std::string_view host, std::uint16_t port) const noexcept;
  /// The daemon's decision before the hook: policy::decide(), then, only where no rule
  /// matched (policy::memory_applies), a remembered answer (reason remembered_allow /
  /// remembered_deny). What upstream.cpp decides a request by and revocation re-decides
  /// an open tunnel by. Lock-free.
  policy::decision decide(const policy::snapshot& p, const policy::host_result& host, std::uint16_t port) const;

  // ---- the admin API (any thread; short critical sections) ----------------------

  std::vector<pending_question> pending() const;
  /// Answers by hand: releases the matching pending questions (and those the new
  /// memory entry covers, e.g. a sibling host for scope: domain) and remembers it
  /// per `value.remember` (writing decisions_file for `always`).
  manual_result answer(const manual_answer& a);
  /// Every remembered answer, expired ones dropped.
  std::vector<policy::memory_entry> remembered() const;
  /// Forgets every remembered answer naming `name` (and rewrites decisions_file when
  /// one of them was `always`). Returns how many.
  std::size_t forget(std::string_view name);
  /// The latest refusals (newest first), at most 100.
  std::vector<denial> recent_denials() const;
  /// Notes a refusal for recent_denials(); never blocks (skipped when contended).
  void note_denial(std::string_view host, std::uint16_t port, std::string_view reason) noexcept;

  // ---- held requests --------------------------------------------------------------

  /// One held request's wait; see ask().
  class wait;
  /// Asks about an unknown destination: joins the pending question for (q.host,
  /// q.port) or asks a new one (q.id is assigned here). Returns at once with
  /// hook_overloaded when max_pending questions wait, with no_hook when no hook is
  /// configured. Otherwise the caller co_awaits `w->result()`, which resumes on
  /// `ex` when the answer comes, when the hook times out, or when w->cancel() is
  /// called on `ex` (client gone, proxy draining).
  std::shared_ptr<wait> ask(question q, boost::asio::any_io_executor ex);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

class coordinator::wait {
 public:
  /// Resumes on the asking executor with the verdict, or with nullopt after cancel().
  boost::asio::awaitable<std::optional<verdict>> result();
  /// Stops waiting (the caller's executor only). The question stays pending.
  void cancel() noexcept;
  /// Set when ask() answered at once (overload, no hook).
  std::optional<verdict> immediate;

  struct state;
  std::shared_ptr<state> st;
};

}  // namespace egressd::proxy::hook
