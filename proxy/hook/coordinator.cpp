#include "proxy/hook/coordinator.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "config/decisions_file.hpp"
#include "config/public_suffix.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"

namespace egressd::proxy::hook {

namespace asio = boost::asio;
using policy::decision_reason;
using policy::outcome;
using sys_clock = std::chrono::system_clock;
using steady = std::chrono::steady_clock;

std::string_view to_string(answer_source s) noexcept {
  switch (s) {
    case answer_source::hook: return "hook";
    case answer_source::by_hand: return "by_hand";
    case answer_source::fallback: return "fallback";
  }
  return "fallback";
}

// ---- one held request's wait ------------------------------------------------------------

/// Lives on the asking executor: `timer` never expires by itself; it is cancelled to
/// wake the waiting coroutine. Touched only on that executor (answers are posted there).
struct coordinator::wait::state {
  explicit state(asio::any_io_executor ex) : timer(std::move(ex), steady::time_point::max()) {}
  asio::steady_timer timer;
  std::optional<verdict> answer;
  bool cancelled = false;
};

asio::awaitable<std::optional<verdict>> coordinator::wait::result() {
  if (immediate) co_return immediate;
  if (!st->answer && !st->cancelled) {
    // One wait: woken by deliver() (answer set), cancel() (cancelled set), or a
    // cancellation from outside (an awaitable operator): then neither is set and the
    // caller decides what happened.
    co_await st->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  if (st->cancelled) co_return std::nullopt;
  co_return st->answer;
}

void coordinator::wait::cancel() noexcept {
  if (!st) return;
  st->cancelled = true;
  st->timer.cancel();
}

namespace {

using wait_state = coordinator::wait::state;

void deliver(const std::shared_ptr<wait_state>& st, const verdict& v) {
  asio::post(st->timer.get_executor(), [st, v] {
    if (!st->answer) st->answer = v;
    st->timer.cancel();
  });
}

std::string key_of(std::string_view host, std::uint16_t port) {
  std::string k(host);
  k += '#';
  k += std::to_string(port);
  return k;
}

decision_reason reason_for(failure f) noexcept {
  switch (f) {
    case failure::none: return decision_reason::hook_failed;
    case failure::timeout: return decision_reason::hook_timeout;
    case failure::crashed: return decision_reason::hook_crashed;
    case failure::bad_answer: return decision_reason::hook_bad_answer;
    case failure::not_found: return decision_reason::hook_not_found;
    case failure::refused: return decision_reason::hook_refused;
    case failure::http_error: return decision_reason::hook_http_error;
    case failure::tls_error: return decision_reason::hook_tls_error;
    case failure::io_error: return decision_reason::hook_failed;
  }
  return decision_reason::hook_failed;
}

}  // namespace

// ---- the coordinator --------------------------------------------------------------------

struct coordinator::impl {
  /// Versions of published memories, unique across every coordinator of the process,
  /// so recall()'s per-thread cache cannot mistake a new coordinator's memory for the
  /// one it cached from an old coordinator at the same address.
  static std::uint64_t next_version() noexcept {
    static std::atomic<std::uint64_t> counter{1};
    return counter.fetch_add(1, std::memory_order_relaxed);
  }

  struct pending_entry {
    question q;
    std::vector<std::shared_ptr<wait_state>> waiters;
    steady::time_point asked;
    sys_clock::time_point deadline;
    std::unique_ptr<asio::steady_timer> timer;  // on io; the hook timeout
  };

  explicit impl(metrics& m) : stats(m), guard(asio::make_work_guard(io)) {}

  metrics& stats;
  asio::io_context io;  // the hook thread's loop: transports and timeouts
  asio::executor_work_guard<asio::io_context::executor_type> guard;
  std::thread thread;
  std::atomic<bool> stopped{false};

  mutable std::mutex mu;  // everything below
  std::optional<config::hook_config> hook;
  std::string decisions_path;
  bool configured_once = false;
  std::shared_ptr<transport> tr;  // replaced under mu; called outside it
  std::unordered_map<std::string, pending_entry> pending;
  std::unordered_map<std::uint64_t, std::string> key_by_id;
  std::uint64_t next_id = 1;
  policy::decision_memory memory;
  std::deque<denial> denials;
  mutable std::mutex denials_mu;
  std::mutex file_mu;  // decisions_file writes, in order
  std::function<void(const std::string&)> saved;  // on_saved(); set before start()

  // The published memory: an immutable copy per change, read without a lock.
  std::atomic<std::shared_ptr<const policy::decision_memory>> published{
      std::make_shared<const policy::decision_memory>()};
  std::atomic<std::uint64_t> version{next_version()};
  std::atomic<bool> has_memory{false};

  // ---- memory (under mu) ----

  void publish_locked() {
    published.store(std::make_shared<const policy::decision_memory>(memory));
    has_memory.store(!memory.empty(), std::memory_order_release);
    version.store(next_version(), std::memory_order_release);
    stats.set_remembered(memory.size());
  }

  /// Writes decisions_file from the memory's `always` entries (outside mu).
  void persist(std::vector<policy::memory_entry> entries, const std::string& path) {
    if (path.empty()) return;
    std::lock_guard lock(file_mu);
    if (auto error = config::decisions_file::save(path, entries))
      log_event(log_level::error, "could not write the decisions file", json_object().add("path", path).add("error", *error));
    else if (saved)
      saved(path);
  }

  static std::string load_decisions(const std::string& path, std::vector<policy::memory_entry>& out);

  /// Stores an answer per its lifetime; returns the entry when it was remembered.
  std::optional<policy::memory_entry> remember_locked(const question& q, const hook::answer& a, std::string_view who,
                                                      bool& persist_needed) {
    if (a.remember == policy::answer_lifetime::once) return std::nullopt;
    policy::memory_entry e;
    e.scope = a.scope;
    e.result = a.decision;
    e.lifetime = a.remember;
    e.answered_at = sys_clock::now();
    e.answered_by = std::string(who);
    e.reason = a.reason;
    switch (a.scope) {
      case policy::answer_scope::host: e.name = q.host; break;
      case policy::answer_scope::host_port:
        e.name = q.host;
        e.port = q.port;
        break;
      case policy::answer_scope::domain:
        // The registrable domain and everything under it; a host that has none (an IP
        // literal, a single label) is remembered as itself.
        e.name = q.registrable_domain.empty() ? q.host : q.registrable_domain;
        if (q.registrable_domain.empty()) e.scope = policy::answer_scope::host;
        break;
    }
    if (a.remember == policy::answer_lifetime::ttl) {
      // Without a hook (answers given by hand while none is configured) the defaults apply.
      const config::hook_config defaults;
      const config::hook_config& h = hook ? *hook : defaults;
      auto ttl = a.ttl.count() > 0 ? std::chrono::duration_cast<sys_clock::duration>(a.ttl)
                                   : std::chrono::duration_cast<sys_clock::duration>(h.ttl);
      if (a.decision == outcome::deny)
        ttl = std::min(ttl, std::chrono::duration_cast<sys_clock::duration>(h.deny_ttl));
      e.expires = e.answered_at + ttl;
    }
    memory.prune(sys_clock::now());
    memory.remember(e);
    publish_locked();
    if (e.lifetime == policy::answer_lifetime::always) persist_needed = true;
    return e;
  }

  // ---- releasing (under mu) ----

  /// Releases a pending question with `v`; returns how many requests it held.
  std::size_t release_locked(std::unordered_map<std::string, pending_entry>::iterator it, const verdict& v,
                             std::string_view outcome_name) {
    pending_entry& p = it->second;
    // Counted before any waiter is released: a client that has its answer finds the
    // question in /metrics.
    stats.count_hook_question(outcome_name);
    stats.observe_hook(std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - p.asked));
    stats.hook_pending_changed(-1);
    for (auto& w : p.waiters) deliver(w, v);
    const std::size_t n = p.waiters.size();
    if (p.timer) {
      // Cancelled on its own executor (io): the timer is not thread-safe.
      asio::post(io, [t = std::shared_ptr<asio::steady_timer>(std::move(p.timer))] { t->cancel(); });
    }
    if (tr && v.source != answer_source::hook) {
      // Stop the transport's work on it (kill its process), on the transport's thread.
      asio::post(io, [t = tr, id = p.q.id] { t->cancel(id); });
    }
    key_by_id.erase(p.q.id);
    pending.erase(it);
    return n;
  }

  /// After a new memory entry: the pending questions it now answers (a sibling host
  /// under scope: domain, another port under scope: host) are released with it.
  std::pair<std::size_t, std::size_t> release_covered_locked(const policy::memory_entry& e, const verdict& v) {
    policy::decision_memory only;
    only.remember(e);
    std::size_t questions = 0, requests = 0;
    const auto now = sys_clock::now();
    for (auto it = pending.begin(); it != pending.end();) {
      auto next = std::next(it);
      if (only.lookup(it->second.q.host, it->second.q.port, now)) {
        verdict mine = v;
        mine.question_id = it->second.q.id;
        requests += release_locked(it, mine, policy::to_string(v.decision.result));
        ++questions;
      }
      it = next;
    }
    return {questions, requests};
  }

  /// A transport's result for question `id` (on io).
  void on_result(std::uint64_t id, result r) {
    std::vector<policy::memory_entry> to_persist;
    std::string path;
    {
      std::lock_guard lock(mu);
      auto k = key_by_id.find(id);
      if (k == key_by_id.end()) return;  // answered by hand or timed out already
      auto it = pending.find(k->second);
      if (it == pending.end()) return;
      const question q = it->second.q;
      if (!r.value) {
        log_event(log_level::warn, "the hook gave no answer",
                  json_object().add("id", id).add("host", q.host).add("failure", to_string(r.why)).add("detail", r.detail));
        verdict v{{outcome::deny, reason_for(r.why), policy::no_rule}, answer_source::fallback, id, r.detail};
        if (r.why == failure::timeout && hook && hook->on_timeout == config::hook_fallback::allow)
          v.decision.result = outcome::allow;
        release_locked(it, v, to_string(r.why));
        return;
      }
      const hook::answer& a = *r.value;
      verdict v{{a.decision, a.decision == outcome::allow ? decision_reason::hook_allow : decision_reason::hook_deny,
                 policy::no_rule},
                answer_source::hook,
                id,
                a.reason};
      // Remembered (and published) before anyone is released: a client that gets its
      // answer and asks again at once must find it.
      bool persist_needed = false;
      auto e = remember_locked(q, a, "hook", persist_needed);
      release_locked(it, v, policy::to_string(a.decision));
      if (e) release_covered_locked(*e, v);
      if (persist_needed) {
        to_persist = memory.persistent();
        path = decisions_path;
      }
    }
    if (!path.empty()) persist(std::move(to_persist), path);
  }

  /// The hook timeout of question `id` (on io).
  void on_timeout(std::uint64_t id) {
    std::lock_guard lock(mu);
    auto k = key_by_id.find(id);
    if (k == key_by_id.end()) return;
    auto it = pending.find(k->second);
    if (it == pending.end()) return;
    verdict v{{outcome::deny, decision_reason::hook_timeout, policy::no_rule}, answer_source::fallback, id,
              "no answer within hook.timeout"};
    if (hook && hook->on_timeout == config::hook_fallback::allow) v.decision.result = outcome::allow;
    log_event(log_level::warn, "the hook did not answer in time",
              json_object().add("id", id).add("host", it->second.q.host).add("decision", policy::to_string(v.decision.result)));
    release_locked(it, v, "timeout");
  }

  /// Starts asking `q` (on io): its timeout, then the transport.
  void start_question(std::uint64_t id) {
    std::lock_guard lock(mu);
    auto k = key_by_id.find(id);
    if (k == key_by_id.end()) return;
    auto it = pending.find(k->second);
    if (it == pending.end()) return;
    pending_entry& p = it->second;
    p.timer = std::make_unique<asio::steady_timer>(io);
    p.timer->expires_at(p.asked + (hook ? hook->timeout : std::chrono::seconds(30)));
    p.timer->async_wait([this, id](boost::system::error_code ec) {
      if (!ec) on_timeout(id);
    });
    if (tr) {
      // Posted rather than called here: ask() runs under mu, and a transport may take
      // any path back into the coordinator.
      asio::post(io, [this, t = tr, q = p.q, id] { t->ask(q, [this, id](result r) { on_result(id, std::move(r)); }); });
    }
  }
};

std::string coordinator::impl::load_decisions(const std::string& path, std::vector<policy::memory_entry>& out) {
  auto r = config::decisions_file::load(path);
  for (const auto& p : r.problems) {
    if (p.level != config::severity::error) continue;
    // The first error, where it is: a corrupt file gives nothing (r.entries is empty).
    return p.file + (p.line ? ":" + std::to_string(p.line) + ":" + std::to_string(p.column) : std::string{}) +
           ": " + (p.path.empty() ? std::string{} : p.path + ": ") + p.message;
  }
  out = std::move(r.entries);
  return {};
}

coordinator::coordinator(metrics& stats) : impl_(std::make_unique<impl>(stats)) {}

coordinator::~coordinator() { stop(); }

void coordinator::start() {
  if (impl_->thread.joinable()) return;
  impl_->thread = std::thread([this] {
    impl_->io.run();
  });
}

void coordinator::stop() {
  if (impl_->stopped.exchange(true)) return;
  {
    std::lock_guard lock(impl_->mu);
    verdict v{{outcome::deny, decision_reason::shutting_down, policy::no_rule}, answer_source::fallback, 0,
              "egressd is shutting down"};
    while (!impl_->pending.empty()) impl_->release_locked(impl_->pending.begin(), v, "shutdown");
  }
  std::shared_ptr<transport> tr;
  {
    std::lock_guard lock(impl_->mu);
    tr = impl_->tr;
  }
  asio::post(impl_->io, [this, tr] {
    if (tr) tr->shutdown();
    impl_->guard.reset();
  });
  if (impl_->thread.joinable()) {
    impl_->thread.join();
  } else {
    impl_->guard.reset();
  }
  std::lock_guard lock(impl_->mu);
  impl_->tr.reset();
}

std::string coordinator::configure(const config::config& c) {
  std::string error;
  std::shared_ptr<transport> old;
  {
    std::lock_guard lock(impl_->mu);
    const bool kind_changed =
        !impl_->configured_once || c.hook.has_value() != impl_->hook.has_value() ||
        (c.hook && (c.hook->exec != impl_->hook->exec || c.hook->url != impl_->hook->url ||
                    c.hook->persistent != impl_->hook->persistent || c.hook->console != impl_->hook->console ||
                    c.hook->ca_file != impl_->hook->ca_file || c.hook->token_file != impl_->hook->token_file ||
                    c.hook->concurrency != impl_->hook->concurrency));
    impl_->hook = c.hook;
    if (kind_changed) {
      // A transport that cannot be built (a token or CA file that went away since the
      // config was checked) is an error; the questions then wait for their timeout.
      std::shared_ptr<transport> next;
      try {
        if (c.hook && !c.hook->exec.empty()) {
          next = make_exec_transport(impl_->io.get_executor(), *c.hook);
        } else if (c.hook && !c.hook->url.empty()) {
          next = make_http_transport(impl_->io.get_executor(), *c.hook);
        }
      } catch (const std::exception& e) {
        error = std::string("the hook could not be set up: ") + e.what();
      }
      old = std::exchange(impl_->tr, std::move(next));
    }
    // The file is read at every (re)load: an edit by hand takes effect on SIGHUP.
    {
      impl_->decisions_path = c.decisions_file;
      if (!c.decisions_file.empty()) {
        std::vector<policy::memory_entry> loaded;
        const std::string problem = impl::load_decisions(c.decisions_file, loaded);
        if (!problem.empty()) {
          error += (error.empty() ? "" : "; ") + std::string("the decisions file could not be read: ") + problem;
        } else {
          // The file's answers replace the remembered `always` ones; ttl answers stay.
          policy::decision_memory next;
          for (auto& e : impl_->memory.entries())
            if (e.lifetime != policy::answer_lifetime::always) next.remember(std::move(e));
          for (auto& e : loaded) next.remember(std::move(e));
          impl_->memory = std::move(next);
          impl_->publish_locked();
        }
      }
    }
    impl_->configured_once = true;
  }
  if (old) {
    // The old transport's questions are still pending: they time out as configured.
    // Shut it down on its own thread (its processes and sockets live there).
    asio::post(impl_->io, [retired = std::move(old)] { retired->shutdown(); });
  }
  return error;
}

std::optional<policy::decision> coordinator::recall(std::string_view host, std::uint16_t port) const noexcept {
  if (!impl_->has_memory.load(std::memory_order_acquire)) return std::nullopt;
  // A per-thread copy of the published pointer, refreshed when the version moves: a
  // hit costs an atomic load and the memory's hash probes, with no shared lock.
  struct cache {
    const impl* owner = nullptr;
    std::uint64_t version = 0;
    std::shared_ptr<const policy::decision_memory> memory;
  };
  thread_local cache c;
  const auto v = impl_->version.load(std::memory_order_acquire);
  if (c.owner != impl_.get() || c.version != v) {
    c.memory = impl_->published.load();
    c.owner = impl_.get();
    c.version = v;
  }
  if (const auto* e = c.memory->lookup(host, port, sys_clock::now())) return policy::remembered_decision(*e);
  return std::nullopt;
}

void coordinator::on_saved(std::function<void(const std::string&)> f) { impl_->saved = std::move(f); }

policy::decision coordinator::decide(const policy::snapshot& p, const policy::host_result& host,
                                    std::uint16_t port) const {
  auto d = policy::decide(p, {&host, port, std::nullopt});
  if (policy::memory_applies(d))
    if (auto remembered = recall(host.host->text, port)) d = *remembered;
  return d;
}

std::shared_ptr<coordinator::wait> coordinator::ask(question q, asio::any_io_executor ex) {
  auto w = std::make_shared<wait>();
  std::lock_guard lock(impl_->mu);
  if (!impl_->hook || impl_->stopped.load()) {
    w->immediate = verdict{{outcome::deny, impl_->hook ? decision_reason::shutting_down : decision_reason::no_hook,
                            policy::no_rule},
                           answer_source::fallback, 0, {}};
    return w;
  }
  w->st = std::make_shared<wait_state>(std::move(ex));
  const std::string key = key_of(q.host, q.port);
  if (auto it = impl_->pending.find(key); it != impl_->pending.end()) {
    it->second.waiters.push_back(w->st);
    return w;
  }
  if (impl_->pending.size() >= impl_->hook->max_pending) {
    impl_->stats.count_hook_question("overloaded");
    w->immediate = verdict{{outcome::deny, decision_reason::hook_overloaded, policy::no_rule},
                           answer_source::fallback, 0, "hook.max_pending questions are waiting"};
    return w;
  }
  q.id = impl_->next_id++;
  q.first_seen = sys_clock::now();
  if (q.registrable_domain.empty()) q.registrable_domain = config::registrable_domain(q.host);
  impl::pending_entry p;
  p.asked = steady::now();
  p.deadline = q.first_seen + std::chrono::duration_cast<sys_clock::duration>(impl_->hook->timeout);
  p.q = std::move(q);
  p.waiters.push_back(w->st);
  const auto id = p.q.id;
  log_event(log_level::info, "asking the hook about a new destination",
            json_object().add("id", id).add("host", p.q.host).add("port", static_cast<unsigned>(p.q.port)));
  impl_->key_by_id.emplace(id, key);
  impl_->pending.emplace(key, std::move(p));
  impl_->stats.hook_pending_changed(1);
  asio::post(impl_->io, [this, id] { impl_->start_question(id); });
  return w;
}

std::vector<pending_question> coordinator::pending() const {
  std::lock_guard lock(impl_->mu);
  std::vector<pending_question> out;
  out.reserve(impl_->pending.size());
  for (const auto& [key, p] : impl_->pending) out.push_back({p.q, p.waiters.size(), p.deadline});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.q.id < b.q.id; });
  return out;
}

manual_result coordinator::answer(const manual_answer& a) {
  manual_result r;
  std::vector<policy::memory_entry> to_persist;
  std::string path;
  {
    std::lock_guard lock(impl_->mu);
    verdict v{{a.value.decision, a.value.decision == outcome::allow ? decision_reason::hook_allow
                                                                     : decision_reason::hook_deny,
               policy::no_rule},
              answer_source::by_hand,
              0,
              a.value.reason};
    // The questions this answer names: one by id, or every one for the host (and port).
    std::vector<std::string> keys;
    std::optional<question> subject;
    if (a.id) {
      auto k = impl_->key_by_id.find(*a.id);
      if (k == impl_->key_by_id.end()) {
        r.error = "no pending question " + std::to_string(*a.id);
        return r;
      }
      keys.push_back(k->second);
      subject = impl_->pending.at(k->second).q;
    } else {
      if (a.host.empty()) {
        r.error = "name a pending question's id or a host";
        return r;
      }
      for (const auto& [key, p] : impl_->pending) {
        if (p.q.host != a.host || (a.port != 0 && p.q.port != a.port)) continue;
        keys.push_back(key);
        if (!subject || p.q.id < subject->id) subject = p.q;
      }
      if (!subject) {
        if (a.value.remember == policy::answer_lifetime::once) {
          r.error = "no pending question for " + a.host + (a.port ? ":" + std::to_string(a.port) : std::string{}) +
                    " (a `once` answer needs one; remember it with ttl or always)";
          return r;
        }
        question q;
        q.host = a.host;
        q.port = a.port;
        q.registrable_domain = config::registrable_domain(a.host);
        subject = std::move(q);
      }
    }
    // Remembered (and published) before anyone is released: a client that gets its
    // answer and asks again at once must find it.
    std::optional<policy::memory_entry> stored_entry;
    if (a.value.remember != policy::answer_lifetime::once) {
      hook::answer stored = a.value;
      if (stored.scope == policy::answer_scope::host_port && subject->port == 0) stored.scope = policy::answer_scope::host;
      bool persist_needed = false;
      stored_entry = impl_->remember_locked(*subject, stored, a.who, persist_needed);
      r.remembered = stored_entry.has_value();
      if (persist_needed) {
        to_persist = impl_->memory.persistent();
        path = impl_->decisions_path;
      }
    }
    for (const auto& key : keys) {
      auto it = impl_->pending.find(key);
      v.question_id = it->second.q.id;
      r.requests_released += impl_->release_locked(it, v, "by_hand");
      ++r.questions_answered;
    }
    if (stored_entry) {
      auto [q, n] = impl_->release_covered_locked(*stored_entry, v);
      r.questions_answered += q;
      r.requests_released += n;
    }
  }
  if (!path.empty()) impl_->persist(std::move(to_persist), path);
  r.ok = true;
  return r;
}

std::vector<policy::memory_entry> coordinator::remembered() const {
  std::lock_guard lock(impl_->mu);
  auto all = impl_->memory.entries();
  const auto now = sys_clock::now();
  std::erase_if(all, [&](const policy::memory_entry& e) { return e.expires <= now; });
  return all;
}

std::size_t coordinator::forget(std::string_view name) {
  std::vector<policy::memory_entry> to_persist;
  std::string path;
  std::size_t n = 0;
  {
    std::lock_guard lock(impl_->mu);
    const auto before = impl_->memory.persistent().size();
    n = impl_->memory.forget(name);
    if (n == 0) return 0;
    impl_->publish_locked();
    to_persist = impl_->memory.persistent();
    if (to_persist.size() != before) path = impl_->decisions_path;
  }
  if (!path.empty()) impl_->persist(std::move(to_persist), path);
  return n;
}

std::vector<denial> coordinator::recent_denials() const {
  std::lock_guard lock(impl_->denials_mu);
  return {impl_->denials.begin(), impl_->denials.end()};
}

void coordinator::note_denial(std::string_view host, std::uint16_t port, std::string_view reason) noexcept {
  std::unique_lock lock(impl_->denials_mu, std::try_to_lock);
  if (!lock.owns_lock()) return;
  try {
    impl_->denials.push_front({std::string(host), port, std::string(reason), sys_clock::now()});
    if (impl_->denials.size() > 100) impl_->denials.pop_back();
  } catch (...) {
    // Recent denials are a convenience for the page; never fail a request over them.
  }
}

}  // namespace egressd::proxy::hook
