// proxy/hook/coordinator with real event loops and threads (console kind: answers come
// by hand, so no program or endpoint is involved): coalescing across threads, answers
// by id and by host, the timeout and its fallback, max_pending, the memory and its
// scopes, a cancelled wait, and stop().
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "proxy/hook/coordinator.hpp"
#include "proxy/metrics.hpp"

namespace asio = boost::asio;
using egressd::policy::answer_lifetime;
using egressd::policy::answer_scope;
using egressd::policy::decision_reason;
using egressd::policy::outcome;
using egressd::proxy::metrics;
using namespace egressd::proxy::hook;
using namespace std::chrono_literals;

namespace {

egressd::config::config console_config(std::chrono::milliseconds timeout = 10s, std::size_t max_pending = 1024) {
  egressd::config::config c;
  egressd::config::hook_config h;
  h.console = true;
  h.timeout = timeout;
  h.max_pending = max_pending;
  c.hook = h;
  return c;
}

question ask_about(std::string host, std::uint16_t port = 443) {
  question q;
  q.host = std::move(host);
  q.port = port;
  q.protocol = "connect";
  q.client = "127.0.0.1:1";
  q.listener = "127.0.0.1:3128";
  return q;
}

// Event loops on threads of their own, as the workers run.
struct loops {
  explicit loops(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      ios.push_back(std::make_unique<asio::io_context>());
      guards.emplace_back(asio::make_work_guard(*ios.back()));
    }
    for (auto& io : ios) threads.emplace_back([&io] { io->run(); });
  }
  ~loops() {
    for (auto& g : guards) g.reset();
    for (auto& io : ios) io->stop();
    for (auto& t : threads) t.join();
  }
  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> threads;
};

// Results of waits, filled on the loops' threads. Declare it before the `loops`, so that
// it is destroyed after their threads are joined: a wait that stop() or an answer
// releases at the end of a test still writes here.
struct results {
  std::atomic<int> done{0};
  std::atomic<int> allowed{0};
  std::atomic<int> cancelled{0};
  std::mutex mu;
  std::vector<verdict> verdicts;
};

void wait_on(asio::io_context& io, std::shared_ptr<coordinator::wait> w, results& r) {
  asio::co_spawn(
      io,
      [w, &r]() -> asio::awaitable<void> {
        auto v = co_await w->result();
        if (!v) {
          ++r.cancelled;
        } else {
          if (v->decision.result == outcome::allow) ++r.allowed;
          std::lock_guard lock(r.mu);
          r.verdicts.push_back(*v);
        }
        ++r.done;
      },
      asio::detached);
}

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 5s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (p()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return p();
}

}  // namespace

TEST_CASE("coordinator: 50 requests from two threads wait on one question and all get its answer") {
  metrics m;
  coordinator c(m);
  REQUIRE(c.configure(console_config()).empty());
  c.start();
  results r;  // before the loops: it must outlive their threads
  loops l(2);
  for (int i = 0; i < 50; ++i) {
    auto& io = *l.ios[static_cast<std::size_t>(i % 2)];
    auto w = c.ask(ask_about("new.example.org"), io.get_executor());
    REQUIRE_FALSE(w->immediate);
    wait_on(io, w, r);
  }
  auto p = c.pending();
  REQUIRE(p.size() == 1);
  CHECK(p[0].waiting == 50);
  CHECK(p[0].q.registrable_domain == "example.org");
  CHECK(p[0].q.id != 0);

  manual_answer a;
  a.id = p[0].q.id;
  a.value.decision = outcome::allow;
  const auto res = c.answer(a);
  CHECK(res.ok);
  CHECK(res.questions_answered == 1);
  CHECK(res.requests_released == 50);
  CHECK_FALSE(res.remembered);
  REQUIRE(eventually([&] { return r.done.load() == 50; }));
  CHECK(r.allowed == 50);
  for (const auto& v : r.verdicts) {
    CHECK(v.decision.reason == decision_reason::hook_allow);
    CHECK(v.source == answer_source::by_hand);
    CHECK(v.question_id == a.id);
  }
  CHECK(c.pending().empty());
  // `once`: nothing remembered, the next request asks again.
  CHECK_FALSE(c.recall("new.example.org", 443));
  CHECK(m.render().find("egressd_hook_questions_total{outcome=\"by_hand\"} 1") != std::string::npos);
  c.stop();
}

TEST_CASE("coordinator: the timeout answers with hook_timeout, per on_timeout") {
  metrics m;
  coordinator c(m);
  auto cfg = console_config(150ms);
  SECTION("deny") {}
  SECTION("allow") { cfg.hook->on_timeout = egressd::config::hook_fallback::allow; }
  REQUIRE(c.configure(cfg).empty());
  c.start();
  results r;  // before the loops: it must outlive their threads
  loops l(1);
  const auto started = std::chrono::steady_clock::now();
  wait_on(*l.ios[0], c.ask(ask_about("slow.example.net"), l.ios[0]->get_executor()), r);
  REQUIRE(eventually([&] { return r.done.load() == 1; }));
  CHECK(std::chrono::steady_clock::now() - started >= 140ms);
  std::lock_guard lock(r.mu);
  CHECK(r.verdicts[0].decision.reason == decision_reason::hook_timeout);
  CHECK(r.verdicts[0].source == answer_source::fallback);
  CHECK(r.verdicts[0].decision.result ==
        (cfg.hook->on_timeout == egressd::config::hook_fallback::allow ? outcome::allow : outcome::deny));
  CHECK(c.pending().empty());
  c.stop();
}

TEST_CASE("coordinator: beyond max_pending new destinations are refused at once; joining is not") {
  metrics m;
  coordinator c(m);
  REQUIRE(c.configure(console_config(10s, 2)).empty());
  c.start();
  loops l(1);
  auto ex = l.ios[0]->get_executor();
  auto a = c.ask(ask_about("a.example.com"), ex);
  auto b = c.ask(ask_about("b.example.com"), ex);
  CHECK_FALSE(a->immediate);
  CHECK_FALSE(b->immediate);
  auto joined = c.ask(ask_about("a.example.com"), ex);
  CHECK_FALSE(joined->immediate);
  auto over = c.ask(ask_about("c.example.com"), ex);
  REQUIRE(over->immediate);
  CHECK(over->immediate->decision.reason == decision_reason::hook_overloaded);
  CHECK(over->immediate->decision.result == outcome::deny);
  CHECK(c.pending().size() == 2);
  c.stop();
}

TEST_CASE("coordinator: a domain answer remembered for a while releases a sibling and answers later requests") {
  metrics m;
  coordinator c(m);
  REQUIRE(c.configure(console_config()).empty());
  c.start();
  results r;  // before the loops: it must outlive their threads
  loops l(1);
  auto ex = l.ios[0]->get_executor();
  wait_on(*l.ios[0], c.ask(ask_about("registry.npmjs.org"), ex), r);
  wait_on(*l.ios[0], c.ask(ask_about("www.npmjs.org", 80), ex), r);
  wait_on(*l.ios[0], c.ask(ask_about("npmjs.org.evil.example"), ex), r);
  REQUIRE(c.pending().size() == 3);

  manual_answer a;
  a.host = "registry.npmjs.org";
  a.value.decision = outcome::allow;
  a.value.remember = answer_lifetime::ttl;
  a.value.ttl = 3600s;
  a.value.scope = answer_scope::domain;
  const auto res = c.answer(a);
  CHECK(res.ok);
  CHECK(res.remembered);
  CHECK(res.questions_answered == 2);
  CHECK(res.requests_released == 2);
  REQUIRE(eventually([&] { return r.done.load() == 2; }));
  REQUIRE(c.pending().size() == 1);
  CHECK(c.pending()[0].q.host == "npmjs.org.evil.example");

  auto hit = c.recall("api.npmjs.org", 8443);
  REQUIRE(hit);
  CHECK(hit->result == outcome::allow);
  CHECK(hit->reason == decision_reason::remembered_allow);
  CHECK(c.recall("npmjs.org", 443));
  CHECK_FALSE(c.recall("evilnpmjs.org", 443));
  auto all = c.remembered();
  REQUIRE(all.size() == 1);
  CHECK(all[0].name == "npmjs.org");
  CHECK(all[0].scope == answer_scope::domain);
  CHECK(all[0].answered_by == "admin");

  CHECK(c.forget("npmjs.org") == 1);
  CHECK_FALSE(c.recall("api.npmjs.org", 443));
  c.stop();
}

TEST_CASE("coordinator: denials are remembered no longer than deny_ttl") {
  metrics m;
  coordinator c(m);
  auto cfg = console_config();
  cfg.hook->deny_ttl = 100ms;
  REQUIRE(c.configure(cfg).empty());
  manual_answer a;
  a.host = "tracker.example";
  a.value.decision = outcome::deny;
  a.value.remember = answer_lifetime::ttl;
  a.value.ttl = 3600s;
  REQUIRE(c.answer(a).remembered);
  auto hit = c.recall("tracker.example", 443);
  REQUIRE(hit);
  CHECK(hit->reason == decision_reason::remembered_deny);
  CHECK(eventually([&] { return !c.recall("tracker.example", 443); }, 2s));
}

TEST_CASE("coordinator: a once answer needs a pending question; an unknown id is an error") {
  metrics m;
  coordinator c(m);
  REQUIRE(c.configure(console_config()).empty());
  manual_answer a;
  a.host = "nobody.example";
  a.value.decision = outcome::allow;
  auto res = c.answer(a);
  CHECK_FALSE(res.ok);
  CHECK(res.error.find("no pending question") != std::string::npos);
  a.id = 999;
  res = c.answer(a);
  CHECK_FALSE(res.ok);
  CHECK(res.error == "no pending question 999");
}

TEST_CASE("coordinator: a cancelled wait ends alone; stop() refuses what is still held") {
  metrics m;
  coordinator c(m);
  REQUIRE(c.configure(console_config()).empty());
  c.start();
  results r;  // before the loops: it must outlive their threads
  loops l(1);
  auto ex = l.ios[0]->get_executor();
  auto first = c.ask(ask_about("held.example"), ex);
  auto second = c.ask(ask_about("held.example"), ex);
  wait_on(*l.ios[0], first, r);
  wait_on(*l.ios[0], second, r);
  asio::post(*l.ios[0], [first] { first->cancel(); });
  REQUIRE(eventually([&] { return r.cancelled.load() == 1; }));
  CHECK(c.pending().size() == 1);  // the question stays for the other request
  c.stop();
  REQUIRE(eventually([&] { return r.done.load() == 2; }));
  std::lock_guard lock(r.mu);
  REQUIRE(r.verdicts.size() == 1);
  CHECK(r.verdicts[0].decision.reason == decision_reason::shutting_down);
  CHECK(r.verdicts[0].decision.result == outcome::deny);
  // After stop() nothing waits.
  auto late = c.ask(ask_about("late.example"), ex);
  REQUIRE(late->immediate);
  CHECK(late->immediate->decision.reason == decision_reason::shutting_down);
}

TEST_CASE("coordinator: no hook configured answers no_hook at once") {
  metrics m;
  coordinator c(m);
  REQUIRE(c.configure(egressd::config::config{}).empty());
  asio::io_context io;
  auto w = c.ask(ask_about("x.example"), io.get_executor());
  REQUIRE(w->immediate);
  CHECK(w->immediate->decision.reason == decision_reason::no_hook);
}
