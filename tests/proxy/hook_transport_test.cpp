// proxy/hook transports against real programs and real servers (no mocks): shell and
// Python hook programs written to a temporary folder, run per question and as one
// persistent process; a Python http.server on 127.0.0.1, plain and TLS (certificates
// made at test time with the openssl CLI). Every wait is bounded and waits for an event.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "proxy/hook/transport.hpp"
#include "proxy/hook/wire.hpp"

namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
namespace hook = egressd::proxy::hook;
using egressd::policy::answer_lifetime;
using egressd::policy::outcome;
using namespace std::chrono_literals;

// Writing to the stdin of a hook that already exited must be an error, not a signal
// that ends the test process (egressd's main() ignores SIGPIPE the same way).
const bool sigpipe_ignored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "egressd-hook-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_file(const std::string& path, const std::string& text, bool executable = false) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  if (executable) ::chmod(path.c_str(), 0755);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// An io_context run in slices until a condition holds (bounded).
struct loop {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard = asio::make_work_guard(io);

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io.run_for(5ms);
    }
    return true;
  }
};

hook::question make_question(std::uint64_t id, std::string host = "example.com") {
  hook::question q;
  q.id = id;
  q.host = std::move(host);
  q.port = 443;
  q.protocol = "connect";
  q.client = "127.0.0.1:40000";
  q.listener = "127.0.0.1:3128";
  q.registrable_domain = "example.com";
  q.first_seen = std::chrono::system_clock::now();
  return q;
}

// Asks one question and waits for its result.
hook::result ask(loop& l, hook::transport& t, const hook::question& q) {
  std::optional<hook::result> r;
  t.ask(q, [&](hook::result x) { r = std::move(x); });
  REQUIRE(l.run_until([&] { return r.has_value(); }));
  return std::move(*r);
}

egressd::config::hook_config exec_config(std::vector<std::string> argv, std::size_t concurrency = 4) {
  egressd::config::hook_config cfg;
  cfg.exec = std::move(argv);
  cfg.concurrency = concurrency;
  return cfg;
}

bool process_gone(pid_t pid) { return !fs::exists("/proc/" + std::to_string(pid)); }

pid_t read_pid(const std::string& path) {
  std::ifstream in(path);
  pid_t pid = 0;
  in >> pid;
  return pid;
}

}  // namespace

// ---------------------------------------------------------------- exec, per question

TEST_CASE("exec: the question arrives as one line; a JSON answer on stdout is the answer", "[unit][hook]") {
  temp_dir dir;
  const auto script = dir / "hook.sh";
  write_file(script,
             "#!/bin/sh\ncat > \"$1\"\n"
             "echo '{\"decision\":\"allow\",\"remember\":\"ttl\",\"ttl_seconds\":60,\"reason\":\"fine\"}'\n",
             true);
  loop l;
  auto t = hook::make_exec_transport(l.io.get_executor(), exec_config({script, dir / "question"}));
  const auto q = make_question(7, "registry.npmjs.org");
  const auto r = ask(l, *t, q);
  REQUIRE(r.value);
  CHECK(r.why == hook::failure::none);
  CHECK(r.value->decision == outcome::allow);
  CHECK(r.value->remember == answer_lifetime::ttl);
  CHECK(r.value->ttl == 60s);
  CHECK(r.value->reason == "fine");
  CHECK(read_file(dir / "question") == hook::to_json(q) + "\n");
}

TEST_CASE("exec: the exit status alone answers: 0 allows once, non-zero denies once", "[unit][hook]") {
  temp_dir dir;
  write_file(dir / "yes.sh", "#!/bin/sh\nexit 0\n", true);
  write_file(dir / "no.sh", "#!/bin/sh\nexit 3\n", true);
  loop l;
  auto yes = hook::make_exec_transport(l.io.get_executor(), exec_config({dir / "yes.sh"}));
  const auto a = ask(l, *yes, make_question(1));
  REQUIRE(a.value);
  CHECK(a.value->decision == outcome::allow);
  CHECK(a.value->remember == answer_lifetime::once);
  CHECK(a.detail == "exit 0");
  auto no = hook::make_exec_transport(l.io.get_executor(), exec_config({dir / "no.sh"}));
  const auto d = ask(l, *no, make_question(2));
  REQUIRE(d.value);
  CHECK(d.value->decision == outcome::deny);
  CHECK(d.value->remember == answer_lifetime::once);
  CHECK(d.detail == "exit 3");
}

TEST_CASE("exec: garbage is bad_answer, a signal is crashed, an answer for another id is bad_answer",
          "[unit][hook]") {
  temp_dir dir;
  write_file(dir / "garbage.sh", "#!/bin/sh\necho 'yes please'\n", true);
  write_file(dir / "segv.sh", "#!/bin/sh\nkill -SEGV $$\n", true);
  write_file(dir / "other.sh", "#!/bin/sh\necho '{\"id\":99,\"decision\":\"allow\"}'\n", true);
  write_file(dir / "flood.sh", "#!/bin/sh\nexec yes\n", true);
  loop l;
  const auto garbage =
      ask(l, *hook::make_exec_transport(l.io.get_executor(), exec_config({dir / "garbage.sh"})), make_question(1));
  CHECK_FALSE(garbage.value);
  CHECK(garbage.why == hook::failure::bad_answer);
  CHECK(garbage.detail.rfind("not JSON", 0) == 0);
  const auto segv =
      ask(l, *hook::make_exec_transport(l.io.get_executor(), exec_config({dir / "segv.sh"})), make_question(2));
  CHECK_FALSE(segv.value);
  CHECK(segv.why == hook::failure::crashed);
  CHECK(segv.detail == "killed by signal 11 (SIGSEGV)");
  const auto other =
      ask(l, *hook::make_exec_transport(l.io.get_executor(), exec_config({dir / "other.sh"})), make_question(3));
  CHECK(other.why == hook::failure::bad_answer);
  CHECK(other.detail == "the answer names question 99, not 3");
  // Endless output: cut at 64 KiB, the program killed.
  const auto flood =
      ask(l, *hook::make_exec_transport(l.io.get_executor(), exec_config({dir / "flood.sh"})), make_question(4));
  CHECK(flood.why == hook::failure::bad_answer);
  CHECK(flood.detail == "output over 64 KiB");
}

TEST_CASE("exec: a missing or non-executable program is not_found", "[unit][hook]") {
  temp_dir dir;
  write_file(dir / "plain.txt", "#!/bin/sh\nexit 0\n", false);
  loop l;
  const auto missing = ask(
      l, *hook::make_exec_transport(l.io.get_executor(), exec_config({dir / "no-such-hook"})), make_question(1));
  CHECK(missing.why == hook::failure::not_found);
  CHECK(missing.detail.find("No such file") != std::string::npos);
  const auto not_exec =
      ask(l, *hook::make_exec_transport(l.io.get_executor(), exec_config({dir / "plain.txt"})), make_question(2));
  CHECK(not_exec.why == hook::failure::not_found);
  const auto not_on_path = ask(
      l, *hook::make_exec_transport(l.io.get_executor(), exec_config({"egressd-no-such-hook-on-path"})),
      make_question(3));
  CHECK(not_on_path.why == hook::failure::not_found);
}

TEST_CASE("exec: a hook gets no descriptor of egressd besides stdin, stdout and stderr", "[unit][hook]") {
  temp_dir dir;
  // A socket opened without O_CLOEXEC, as a listener could be.
  const int leaky = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(leaky > 2);
  write_file(dir / "fds.sh",
             "#!/bin/sh\nif [ -e /proc/$$/fd/$1 ]; then echo '{\"decision\":\"deny\",\"reason\":\"leaked\"}'; "
             "else echo '{\"decision\":\"allow\"}'; fi\n",
             true);
  loop l;
  auto t = hook::make_exec_transport(l.io.get_executor(), exec_config({dir / "fds.sh", std::to_string(leaky)}));
  const auto r = ask(l, *t, make_question(1));
  ::close(leaky);
  REQUIRE(r.value);
  CHECK(r.value->reason.empty());
  CHECK(r.value->decision == outcome::allow);
}

TEST_CASE("exec: cancel kills a hanging hook and reaps it (no zombie)", "[unit][hook]") {
  temp_dir dir;
  write_file(dir / "hang.sh", "#!/bin/sh\necho $$ > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"\nexec sleep 60\n", true);
  loop l;
  auto t = hook::make_exec_transport(l.io.get_executor(), exec_config({dir / "hang.sh", dir / "pid"}));
  bool called = false;
  t->ask(make_question(5), [&](hook::result) { called = true; });
  REQUIRE(l.run_until([&] { return fs::exists(dir / "pid"); }));
  const pid_t pid = read_pid(dir / "pid");
  REQUIRE(pid > 0);
  CHECK_FALSE(process_gone(pid));
  t->cancel(5);
  // Gone from /proc means reaped: a zombie keeps its /proc entry until waited for.
  CHECK(l.run_until([&] { return process_gone(pid); }, 5s));
  l.run_until([] { return false; }, 50ms);
  CHECK_FALSE(called);
  // The slot is free again: the next question runs.
  write_file(dir / "hang.sh", "#!/bin/sh\nexit 0\n", true);
  CHECK(ask(l, *t, make_question(6)).value);
}

TEST_CASE("exec: shutdown kills and reaps every hook at once", "[unit][hook]") {
  temp_dir dir;
  write_file(dir / "hang.sh", "#!/bin/sh\necho $$ > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"\nexec sleep 60\n", true);
  loop l;
  auto t = hook::make_exec_transport(l.io.get_executor(), exec_config({dir / "hang.sh", dir / "pid"}));
  t->ask(make_question(1), [](hook::result) {});
  REQUIRE(l.run_until([&] { return fs::exists(dir / "pid"); }));
  const pid_t pid = read_pid(dir / "pid");
  REQUIRE(pid > 0);
  t->shutdown();
  CHECK(process_gone(pid));  // reaped before shutdown() returned
  l.run_until([] { return false; }, 50ms);
}

TEST_CASE("exec: at most `concurrency` processes at once, the rest wait in order", "[unit][hook]") {
  temp_dir dir;
  // Logs "s <question>" at its start and "e" at its end.
  write_file(dir / "slow.sh", "#!/bin/sh\nread q\necho \"s $q\" >> \"$1\"\nsleep 0.3\necho e >> \"$1\"\nexit 0\n",
             true);
  loop l;
  auto t = hook::make_exec_transport(l.io.get_executor(), exec_config({dir / "slow.sh", dir / "log"}, 2));
  std::size_t answered = 0;
  for (std::uint64_t id = 1; id <= 5; ++id)
    t->ask(make_question(id), [&answered](hook::result r) {
      CHECK(r.value);
      ++answered;
    });
  REQUIRE(l.run_until([&] { return answered == 5; }));
  int now = 0, most = 0;
  std::string started;
  std::istringstream log(read_file(dir / "log"));
  for (std::string line; std::getline(log, line);) {
    if (line.rfind("s ", 0) == 0) {
      most = std::max(most, ++now);
      started += line.substr(line.find("\"id\":") + 5, 1);
    } else if (line == "e") {
      --now;
    }
  }
  CHECK(most == 2);
  // FIFO: 3 and 4 start when 1 or 2 ends, 5 when 3 or 4 ends. Processes started
  // together may log in either order.
  REQUIRE(started.size() == 5);
  std::sort(started.begin(), started.begin() + 2);
  std::sort(started.begin() + 2, started.begin() + 4);
  CHECK(started == "12345");
}

// ---------------------------------------------------------------- exec, persistent

namespace {

// Answers at once, except hosts starting with "hold", which are answered (in reverse
// order) after the next "release" question; exits with 3 on "die". Logs its pid.
const char* persistent_hook = R"(import json, os, sys
with open(sys.argv[1], "a") as f:
    f.write("%d\n" % os.getpid())
held = []
def answer(q, decision, reason):
    sys.stdout.write(json.dumps({"id": q["id"], "decision": decision, "reason": reason}) + "\n")
for line in sys.stdin:
    q = json.loads(line)
    host = q["host"]
    if host.startswith("hold"):
        held.append(q)
    elif host == "die":
        os._exit(3)
    elif host == "garbage":
        sys.stdout.write('{"id": %d, "decision": "perhaps"}\n' % q["id"])
    elif host == "release":
        answer(q, "allow", "release")
        for h in reversed(held):
            answer(h, "deny", h["host"])
        held = []
    else:
        answer(q, "allow", host)
    sys.stdout.flush()
)";

}  // namespace

TEST_CASE("exec persistent: one process answers by id, in any order", "[unit][hook]") {
  temp_dir dir;
  write_file(dir / "hook.py", persistent_hook);
  auto cfg = exec_config({"python3", dir / "hook.py", dir / "pids"});
  cfg.persistent = true;
  loop l;
  auto t = hook::make_exec_transport(l.io.get_executor(), cfg);
  std::vector<std::pair<std::uint64_t, hook::result>> got;
  const auto collect = [&got](std::uint64_t id) { return [&got, id](hook::result r) { got.emplace_back(id, std::move(r)); }; };
  t->ask(make_question(1, "hold-1"), collect(1));
  t->ask(make_question(2, "hold-2"), collect(2));
  t->ask(make_question(3, "release"), collect(3));
  REQUIRE(l.run_until([&] { return got.size() == 3; }));
  REQUIRE(got[0].first == 3);
  REQUIRE(got[1].first == 2);
  REQUIRE(got[2].first == 1);
  CHECK(got[0].second.value->decision == outcome::allow);
  CHECK(got[1].second.value->decision == outcome::deny);
  CHECK(got[1].second.value->reason == "hold-2");
  CHECK(got[2].second.value->reason == "hold-1");
  CHECK(ask(l, *t, make_question(4, "a.test")).value->reason == "a.test");
  const auto bad = ask(l, *t, make_question(5, "garbage"));
  CHECK(bad.why == hook::failure::bad_answer);
  CHECK(bad.detail == "decision must be \"allow\" or \"deny\"");
  // Every answer came from one process.
  const auto pids = read_file(dir / "pids");
  CHECK(std::count(pids.begin(), pids.end(), '\n') == 1);
}

TEST_CASE("exec persistent: its death fails what is in flight (crashed); the next question restarts it",
          "[unit][hook]") {
  temp_dir dir;
  write_file(dir / "hook.py", persistent_hook);
  auto cfg = exec_config({"python3", dir / "hook.py", dir / "pids"});
  cfg.persistent = true;
  loop l;
  auto t = hook::make_exec_transport(l.io.get_executor(), cfg);
  std::optional<hook::result> held, dying;
  t->ask(make_question(1, "hold-1"), [&](hook::result r) { held = std::move(r); });
  t->ask(make_question(2, "die"), [&](hook::result r) { dying = std::move(r); });
  REQUIRE(l.run_until([&] { return held && dying; }));
  CHECK(held->why == hook::failure::crashed);
  CHECK(held->detail == "exit 3");
  CHECK(dying->why == hook::failure::crashed);
  // Restarted (after a short backoff, since it died young) for the next question.
  const auto again = ask(l, *t, make_question(3, "b.test"));
  REQUIRE(again.value);
  CHECK(again.value->reason == "b.test");
  const auto pids = read_file(dir / "pids");
  CHECK(std::count(pids.begin(), pids.end(), '\n') == 2);
  // cancel forgets a question: its late answer is dropped, and its slot is free.
  bool called = false;
  t->ask(make_question(4, "hold-4"), [&](hook::result) { called = true; });
  t->cancel(4);
  CHECK(ask(l, *t, make_question(5, "release")).value->reason == "release");
  l.run_until([] { return false; }, 50ms);
  CHECK_FALSE(called);
  t->shutdown();
  std::istringstream in(pids);
  pid_t pid = 0;
  while (in >> pid) CHECK(process_gone(pid));
}

TEST_CASE("exec persistent: a missing program is not_found", "[unit][hook]") {
  temp_dir dir;
  auto cfg = exec_config({dir / "missing"});
  cfg.persistent = true;
  loop l;
  auto t = hook::make_exec_transport(l.io.get_executor(), cfg);
  CHECK(ask(l, *t, make_question(1)).why == hook::failure::not_found);
}

// ---------------------------------------------------------------- url

namespace {

// Answers POSTs by path: / (allow, reason naming the connection's number, the
// Authorization and Content-Type it got), /500, /garbage, /close (answers, then
// closes the connection it said it would keep), /slow; the host "hang" is answered
// after 5 s, once a marker file says the request arrived.
const char* server_py = R"(import http.server, json, os, ssl, sys, threading, time
folder = sys.argv[1]
conns = [0]
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        with lock:
            conns[0] += 1
            self.conn_no = conns[0]
    def log_message(self, *args):
        pass
    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        q = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        if self.path == "/500":
            return self.reply(500, b'{"error": "no"}')
        if self.path == "/garbage":
            return self.reply(200, b"<html>hello</html>")
        if q["host"] == "hang":
            open(os.path.join(folder, "hang-%d" % q["id"]), "w").close()
            time.sleep(5)
        if self.path == "/slow":
            time.sleep(0.2)
        reason = "conn %d auth %s type %s" % (self.conn_no, self.headers.get("Authorization", "-"),
                                              self.headers.get("Content-Type", "-"))
        self.reply(200, json.dumps({"id": q["id"], "decision": "allow", "reason": reason}).encode())
        if self.path == "/close":
            self.close_connection = True
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
if len(sys.argv) > 3:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], os.getpid(), flush=True)
srv.serve_forever()
)";

class test_server {
 public:
  test_server(const temp_dir& dir, const std::string& cert = {}, const std::string& key = {}) {
    write_file(dir / "server.py", server_py);
    const auto cmd = "exec python3 " + (dir / "server.py") + " " + dir.path().string() +
                     (cert.empty() ? "" : " " + cert + " " + key);
    pipe_ = ::popen(cmd.c_str(), "r");
    REQUIRE(pipe_);
    REQUIRE(std::fscanf(pipe_, "%hu %d", &port_, &pid_) == 2);
  }
  ~test_server() {
    ::kill(pid_, SIGTERM);
    ::pclose(pipe_);
  }
  std::uint16_t port() const { return port_; }

 private:
  std::FILE* pipe_ = nullptr;
  std::uint16_t port_ = 0;
  pid_t pid_ = 0;
};

egressd::config::hook_config url_config(std::string url, std::size_t concurrency = 4) {
  egressd::config::hook_config cfg;
  cfg.url = std::move(url);
  cfg.concurrency = concurrency;
  return cfg;
}

std::string http_url(const test_server& s, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(s.port()) + path;
}

}  // namespace

TEST_CASE("url: a JSON answer; 500 is http_error; garbage is bad_answer; a closed port is refused",
          "[unit][hook]") {
  temp_dir dir;
  test_server srv(dir);
  loop l;
  const auto ok = ask(l, *hook::make_http_transport(l.io.get_executor(), url_config(http_url(srv, "/"))),
                      make_question(1));
  REQUIRE(ok.value);
  CHECK(ok.value->decision == outcome::allow);
  CHECK(ok.value->reason == "conn 1 auth - type application/json");
  const auto e500 = ask(l, *hook::make_http_transport(l.io.get_executor(), url_config(http_url(srv, "/500"))),
                        make_question(2));
  CHECK(e500.why == hook::failure::http_error);
  CHECK(e500.detail == "HTTP 500");
  const auto garbage = ask(
      l, *hook::make_http_transport(l.io.get_executor(), url_config(http_url(srv, "/garbage"))), make_question(3));
  CHECK(garbage.why == hook::failure::bad_answer);

  // A port nobody listens on: bound, then closed.
  asio::ip::tcp::acceptor a(l.io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto closed_port = a.local_endpoint().port();
  a.close();
  const auto refused = ask(
      l,
      *hook::make_http_transport(l.io.get_executor(),
                                 url_config("http://127.0.0.1:" + std::to_string(closed_port) + "/")),
      make_question(4));
  CHECK(refused.why == hook::failure::refused);
}

TEST_CASE("url: keep-alive reuses one connection; a stale one is retried on a new connection", "[unit][hook]") {
  temp_dir dir;
  test_server srv(dir);
  loop l;
  auto t = hook::make_http_transport(l.io.get_executor(), url_config(http_url(srv, "/")));
  for (std::uint64_t id = 1; id <= 3; ++id) CHECK(ask(l, *t, make_question(id)).value->reason.rfind("conn 1 ", 0) == 0);
  // The server closes after answering while saying keep-alive: the next question's
  // reuse fails before any response byte and is retried once, on connection 3.
  auto closing = hook::make_http_transport(l.io.get_executor(), url_config(http_url(srv, "/close")));
  CHECK(ask(l, *closing, make_question(4)).value->reason.rfind("conn 2 ", 0) == 0);
  const auto retried = ask(l, *closing, make_question(5));
  REQUIRE(retried.value);
  CHECK(retried.value->reason.rfind("conn 3 ", 0) == 0);
}

TEST_CASE("url: at most `concurrency` connections; the rest queue", "[unit][hook]") {
  temp_dir dir;
  test_server srv(dir);
  loop l;
  auto t = hook::make_http_transport(l.io.get_executor(), url_config(http_url(srv, "/slow"), 2));
  std::vector<std::string> reasons;
  for (std::uint64_t id = 1; id <= 5; ++id)
    t->ask(make_question(id), [&](hook::result r) { reasons.push_back(r.value ? r.value->reason : "failed"); });
  REQUIRE(l.run_until([&] { return reasons.size() == 5; }));
  std::set<std::string> conns;
  for (const auto& r : reasons) conns.insert(r.substr(0, r.find(" auth")));
  CHECK(conns == std::set<std::string>{"conn 1", "conn 2"});
}

TEST_CASE("url: cancel abandons the request and frees its connection slot", "[unit][hook]") {
  temp_dir dir;
  test_server srv(dir);
  loop l;
  auto t = hook::make_http_transport(l.io.get_executor(), url_config(http_url(srv, "/"), 1));
  bool called = false;
  t->ask(make_question(1, "hang"), [&](hook::result) { called = true; });
  REQUIRE(l.run_until([&] { return fs::exists(dir / "hang-1"); }));
  t->cancel(1);
  // With concurrency 1 the next question runs only once the hung one is abandoned
  // (the server would answer that one after 5 s); it gets a new connection.
  std::optional<hook::result> r;
  t->ask(make_question(2), [&](hook::result x) { r = std::move(x); });
  REQUIRE(l.run_until([&] { return r.has_value(); }, 3s));
  REQUIRE(r->value);
  CHECK(r->value->reason.rfind("conn 2 ", 0) == 0);
  CHECK_FALSE(called);
}

TEST_CASE("url: the bearer token is the first line of token_file", "[unit][hook]") {
  temp_dir dir;
  test_server srv(dir);
  write_file(dir / "token", "s3cret\nnot this line\n");
  auto cfg = url_config(http_url(srv, "/"));
  cfg.token_file = dir / "token";
  loop l;
  const auto r = ask(l, *hook::make_http_transport(l.io.get_executor(), cfg), make_question(1));
  REQUIRE(r.value);
  CHECK(r.value->reason == "conn 1 auth Bearer s3cret type application/json");
  cfg.token_file = dir / "no-such-token";
  CHECK_THROWS(hook::make_http_transport(l.io.get_executor(), cfg));
}

namespace {

// A test CA, a server certificate it signed for localhost and 127.0.0.1, one it
// signed for another name only, and a self-signed one for localhost and 127.0.0.1.
void make_certificates(const temp_dir& dir) {
  const auto key = std::string(" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes");
  const auto d = dir.path().string();
  std::string cmd = "cd '" + d + "' && (";
  cmd += "openssl req -x509" + key + " -keyout ca.key -out ca.pem -days 2 -subj /CN=egressd-test-ca";
  cmd += " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign";
  for (const std::string name : {"good", "other"}) {
    cmd += " && openssl req" + key + " -keyout " + name + ".key -out " + name + ".csr -subj /CN=" + name;
    cmd += " && printf 'subjectAltName=" +
           std::string(name == "good" ? "DNS:localhost,IP:127.0.0.1" : "DNS:other.test") + "\\n' > " + name +
           ".ext";
    cmd += " && openssl x509 -req -in " + name + ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -out " + name +
           ".pem -days 2 -extfile " + name + ".ext";
  }
  cmd += " && openssl req -x509" + key + " -keyout self.key -out self.pem -days 2 -subj /CN=localhost";
  cmd += " -addext subjectAltName=DNS:localhost,IP:127.0.0.1";
  cmd += ") >openssl.log 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
}

}  // namespace

TEST_CASE("url over TLS: verified against ca_file, by address and by name", "[unit][hook]") {
  temp_dir dir;
  make_certificates(dir);
  test_server srv(dir, dir / "good.pem", dir / "good.key");
  loop l;
  auto cfg = url_config("https://127.0.0.1:" + std::to_string(srv.port()) + "/");
  cfg.ca_file = dir / "ca.pem";
  auto t = hook::make_http_transport(l.io.get_executor(), cfg);
  const auto r = ask(l, *t, make_question(1));
  REQUIRE(r.value);
  CHECK(r.value->reason.rfind("conn 1 ", 0) == 0);
  CHECK(ask(l, *t, make_question(2)).value->reason.rfind("conn 1 ", 0) == 0);  // keep-alive over TLS
  cfg.url = "https://localhost:" + std::to_string(srv.port()) + "/";
  const auto by_name = ask(l, *hook::make_http_transport(l.io.get_executor(), cfg), make_question(3));
  REQUIRE(by_name.value);
  // Without ca_file, the system store does not know the test CA.
  cfg.ca_file.clear();
  const auto system_store = ask(l, *hook::make_http_transport(l.io.get_executor(), cfg), make_question(4));
  CHECK(system_store.why == hook::failure::tls_error);
}

TEST_CASE("url over TLS: a certificate from elsewhere, or for another name, is tls_error", "[unit][hook]") {
  temp_dir dir;
  make_certificates(dir);
  loop l;
  {
    test_server srv(dir, dir / "self.pem", dir / "self.key");
    auto cfg = url_config("https://127.0.0.1:" + std::to_string(srv.port()) + "/");
    cfg.ca_file = dir / "ca.pem";
    const auto r = ask(l, *hook::make_http_transport(l.io.get_executor(), cfg), make_question(1));
    CHECK(r.why == hook::failure::tls_error);
    CHECK(r.detail.find("certificate") != std::string::npos);
  }
  {
    test_server srv(dir, dir / "other.pem", dir / "other.key");
    auto cfg = url_config("https://127.0.0.1:" + std::to_string(srv.port()) + "/");
    cfg.ca_file = dir / "ca.pem";
    const auto r = ask(l, *hook::make_http_transport(l.io.get_executor(), cfg), make_question(2));
    CHECK(r.why == hook::failure::tls_error);
    cfg.url = "https://localhost:" + std::to_string(srv.port()) + "/";
    CHECK(ask(l, *hook::make_http_transport(l.io.get_executor(), cfg), make_question(3)).why ==
          hook::failure::tls_error);
  }
}
