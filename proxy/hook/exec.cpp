// `hook.exec` (README "Hook protocol"): a program that answers questions.
// Flow, per question: ask -> FIFO queue -> at most hook.concurrency running ->
// spawn (posix_spawnp; stdin and stdout pipes; every other descriptor closed) -> write
// the question line, close stdin -> read stdout to EOF (64 KiB cap) -> the pidfd turns
// readable -> waitpid -> the answer from stdout, or from the exit status.
// Flow, persistent: one child; each question is written as one line; a reader
// coroutine hands each answer line to its question by `id` (any order); a watcher
// waits on the child's pidfd, reaps it, and fails every question in flight (crashed);
// the next question starts a new child, after a backoff when the last one died young.
// Nothing here blocks the hook thread: pipes and pidfds are asynchronous descriptors,
// and waitpid is only called once the pidfd says the child has exited (or right after
// SIGKILL, in shutdown()). Every child is reaped: no zombies.
// Writes to a pipe whose reader is gone rely on SIGPIPE being ignored, as main() does.

#include "proxy/hook/transport.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <unordered_map>
#include <vector>

#include "config/json.hpp"
#include "proxy/log.hpp"

extern char** environ;

namespace egressd::proxy::hook {

namespace {

namespace asio = boost::asio;
using std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// The most a program may write as its answer (per question) or as one answer line
/// (persistent): an answer is a few hundred bytes; more is a broken program.
constexpr std::size_t max_output_bytes = 64 * 1024;
/// A persistent program that dies within this time of its start is restarted only
/// after a delay, doubling from restart_backoff_min up to restart_backoff_max, so a
/// program that dies at once cannot make egressd spawn in a loop.
constexpr auto quick_death = std::chrono::seconds{1};
constexpr auto restart_backoff_min = std::chrono::milliseconds{100};
constexpr auto restart_backoff_max = std::chrono::seconds{5};

void warn(std::string_view msg, std::string_view key, std::string_view value) {
  log_event(log_level::warn, msg, json_object().add(key, value));
}

void log_exception(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    log_event(log_level::error, "hook exec: unexpected error", json_object().add("error", ex.what()));
  }
}

// A descriptor closed on scope exit unless released.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  void reset(int fd) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

// posix_spawn's dup2 onto 0 and 1 must not clobber the other pipe's end: keep every
// pipe end above the standard descriptors, even when egressd runs with one closed.
int above_stdio(int fd) {
  if (fd < 0 || fd > 2) return fd;
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const int saved = errno;
  ::close(fd);
  errno = saved;
  return moved;
}

bool make_pipe(unique_fd& read_end, unique_fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end.reset(above_stdio(fds[0]));
  write_end.reset(above_stdio(fds[1]));
  return read_end.get() >= 0 && write_end.get() >= 0;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = ::sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  return "status " + std::to_string(status);
}

// One running program: its pid, a pidfd that turns readable when it exits, and our
// ends of its stdin and stdout.
struct child {
  explicit child(const asio::any_io_executor& ex) : exited(ex), in(ex), out(ex) {}
  ~child() {
    kill();
    reap();
  }

  pid_t pid = -1;
  asio::posix::stream_descriptor exited;  // the pidfd (pidfd_open(2))
  asio::posix::stream_descriptor in;
  asio::posix::stream_descriptor out;
  bool reaped = false;
  int status = 0;
  bool output_too_long = false;  // persistent: an answer line over the cap

  // The pid cannot have been reused: it is ours until we reap it.
  void kill() noexcept {
    if (pid > 0 && !reaped) ::kill(pid, SIGKILL);
  }
  // Only after the child exited (pidfd readable) or was sent SIGKILL: never blocks long.
  void reap() noexcept {
    if (pid <= 0 || reaped) return;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    reaped = true;
  }
  void close_all() noexcept {
    boost::system::error_code ignored;
    in.close(ignored);
    out.close(ignored);
    exited.close(ignored);
  }
};

struct spawned {
  std::shared_ptr<child> c;
  failure why = failure::none;
  std::string detail;
};

spawned spawn(const asio::any_io_executor& ex, const std::vector<std::string>& argv) {
  spawned r;
  if (argv.empty() || argv[0].empty()) {
    r.why = failure::not_found;
    r.detail = "no program configured";
    return r;
  }
  unique_fd in_r, in_w, out_r, out_w;
  if (!make_pipe(in_r, in_w) || !make_pipe(out_r, out_w)) {
    r.why = failure::io_error;
    r.detail = std::string("pipe: ") + std::strerror(errno);
    return r;
  }
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawnattr_init(&attr);
  // The question on stdin, the answer on stdout; stderr is egressd's own. Every other
  // descriptor is closed (listener and client sockets must never reach a hook), even
  // one another thread opened without O_CLOEXEC.
  ::posix_spawn_file_actions_adddup2(&actions, in_r.get(), 0);
  ::posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
  ::posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  // egressd ignores SIGPIPE and its threads may block signals: a hook starts with
  // default dispositions and an empty mask, as from a shell.
  sigset_t none, all;
  ::sigemptyset(&none);
  ::sigfillset(&all);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setsigdefault(&attr, &all);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  // glibc's posix_spawnp reports a failed exec as its result (through memory shared
  // with the CLONE_VFORK child), as the classic CLOEXEC error pipe would.
  const int err = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attr);
  if (err != 0) {
    const bool missing = err == ENOENT || err == EACCES || err == ENOEXEC || err == ENOTDIR || err == ELOOP ||
                         err == ENAMETOOLONG || err == EPERM || err == EISDIR;
    r.why = missing ? failure::not_found : failure::io_error;
    r.detail = argv[0] + ": " + std::strerror(err);
    return r;
  }
  auto c = std::make_shared<child>(ex);
  c->pid = pid;
  // The raw system call: glibc 2.36's <sys/pidfd.h> lacks extern "C" for C++.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    r.why = failure::io_error;
    r.detail = std::string("pidfd_open: ") + std::strerror(errno);
    return r;  // ~child kills and reaps it
  }
  c->exited.assign(pidfd);
  c->in.assign(in_w.release());
  c->out.assign(out_r.release());
  r.c = std::move(c);
  return r;  // in_r and out_w (the child's ends) close here
}

std::string_view trim(std::string_view s) {
  const auto ws = " \t\r\n";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

result answer_for(std::uint64_t id, std::string_view text, std::string detail) {
  auto parsed = parse_answer(text);
  if (!parsed.value) return result{std::nullopt, failure::bad_answer, parsed.error};
  if (parsed.value->id && *parsed.value->id != id)
    return result{std::nullopt, failure::bad_answer,
                  "the answer names question " + std::to_string(*parsed.value->id) + ", not " + std::to_string(id)};
  return result{std::move(parsed.value), failure::none, std::move(detail)};
}

// A per-question program's result: a JSON answer on stdout wins; else the exit status
// answers (0 allows once, non-zero denies once); a signal is a crash.
result judge(std::uint64_t id, std::string_view output, bool too_long, int status) {
  const auto how = describe_status(status);
  if (too_long) return result{std::nullopt, failure::bad_answer, "output over 64 KiB"};
  const auto text = trim(output);
  if (!text.empty()) {
    auto r = answer_for(id, text, how);
    if (!r.value && WIFSIGNALED(status)) return result{std::nullopt, failure::crashed, how};
    return r;
  }
  if (WIFSIGNALED(status) || !WIFEXITED(status)) return result{std::nullopt, failure::crashed, how};
  answer a;
  a.decision = WEXITSTATUS(status) == 0 ? policy::outcome::allow : policy::outcome::deny;
  return result{std::move(a), failure::none, how};
}

struct job {
  question q;
  transport::callback done;
};

class exec_core : public std::enable_shared_from_this<exec_core> {
 public:
  exec_core(asio::any_io_executor ex, const config::hook_config& cfg)
      : ex_(std::move(ex)),
        argv_(cfg.exec),
        persistent_(cfg.persistent),
        concurrency_(std::max<std::size_t>(cfg.concurrency, 1)),
        restart_timer_(ex_) {}

  void ask(const question& q, transport::callback done) {
    if (stopped_) return;
    waiting_.push_back(job{q, std::move(done)});
    pump();
  }

  void cancel(std::uint64_t id) {
    const auto queued = std::find_if(waiting_.begin(), waiting_.end(), [&](const job& j) { return j.q.id == id; });
    if (queued != waiting_.end()) {
      waiting_.erase(queued);
      return;
    }
    if (persistent_) {
      // The program may still answer; the answer is dropped. Its slot is free now.
      if (in_flight_.erase(id) > 0) pump();
      return;
    }
    const auto it = running_.find(id);
    if (it == running_.end()) return;
    // Kill it and stop reading: its coroutine then reaps it and frees the slot. The
    // stdout pipe is closed too, in case a grandchild keeps it open.
    it->second.cancelled = true;
    it->second.c->kill();
    boost::system::error_code ignored;
    it->second.c->out.close(ignored);
  }

  void shutdown() {
    stopped_ = true;
    waiting_.clear();
    in_flight_.clear();
    restart_timer_.cancel();
    // Kill and reap now, so nothing outlives shutdown even if the loop stops here.
    for (auto& [id, r] : running_) {
      r.cancelled = true;
      r.c->kill();
      r.c->reap();
      r.c->close_all();
    }
    if (proc_) {
      proc_->kill();
      proc_->reap();
      proc_->close_all();
      proc_.reset();
    }
  }

 private:
  struct run {
    std::shared_ptr<child> c;
    bool cancelled = false;
  };

  void deliver(transport::callback done, result r) {
    asio::post(ex_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
  }

  void pump() {
    if (stopped_) return;
    if (persistent_) {
      pump_persistent();
      return;
    }
    while (!waiting_.empty() && running_.size() < concurrency_) {
      auto j = std::move(waiting_.front());
      waiting_.pop_front();
      auto s = spawn(ex_, argv_);
      if (!s.c) {
        deliver(std::move(j.done), result{std::nullopt, s.why, std::move(s.detail)});
        continue;
      }
      running_.emplace(j.q.id, run{s.c, false});
      asio::co_spawn(ex_, run_one(shared_from_this(), std::move(j), s.c), log_exception);
    }
  }

  // One question, one process.
  static asio::awaitable<void> run_one(std::shared_ptr<exec_core> self, job j, std::shared_ptr<child> c) {
    const auto line = to_json(j.q) + "\n";
    // An error here (EPIPE: it exited without reading) is no answer by itself: its
    // exit status still is one.
    co_await asio::async_write(c->in, asio::buffer(line), use_tuple);
    boost::system::error_code ignored;
    c->in.close(ignored);  // EOF: the whole question has been asked

    std::string output;
    bool too_long = false;
    char buf[4096];
    for (;;) {
      auto [ec, n] = co_await c->out.async_read_some(asio::buffer(buf), use_tuple);
      output.append(buf, n);
      if (output.size() > max_output_bytes) {
        too_long = true;
        c->kill();
        break;
      }
      if (ec) break;  // EOF, or closed by cancel()
    }
    c->out.close(ignored);

    auto [wait_ec] = co_await c->exited.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
    if (wait_ec) c->kill();  // cannot wait (shutdown closed it): make sure reaping is quick
    c->reap();
    c->close_all();

    const auto it = self->running_.find(j.q.id);
    const bool cancelled = it == self->running_.end() || it->second.cancelled || self->stopped_;
    if (it != self->running_.end() && it->second.c == c) self->running_.erase(it);
    if (cancelled) {
      self->pump();
      co_return;
    }
    self->deliver(std::move(j.done), judge(j.q.id, output, too_long, c->status));
    self->pump();
  }

  // --- persistent mode -------------------------------------------------------------

  void pump_persistent() {
    if (waiting_.empty() || in_flight_.size() >= concurrency_) return;
    if (!proc_) {
      const auto now = steady_clock::now();
      if (now < restart_not_before_) {
        if (!restart_armed_) {
          restart_armed_ = true;
          restart_timer_.expires_at(restart_not_before_);
          restart_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
            self->restart_armed_ = false;
            if (!ec) self->pump();
          });
        }
        return;
      }
      auto s = spawn(ex_, argv_);
      if (!s.c) {
        // Nothing to wait for: the program cannot start. Every waiting question gets
        // the reason now; the next question tries again.
        while (!waiting_.empty()) {
          deliver(std::move(waiting_.front().done), result{std::nullopt, s.why, s.detail});
          waiting_.pop_front();
        }
        return;
      }
      proc_ = s.c;
      started_at_ = now;
      outbox_.clear();
      writing_ = false;
      asio::co_spawn(ex_, read_answers(shared_from_this(), proc_), log_exception);
      asio::co_spawn(ex_, watch(shared_from_this(), proc_), log_exception);
    }
    while (!waiting_.empty() && in_flight_.size() < concurrency_) {
      auto j = std::move(waiting_.front());
      waiting_.pop_front();
      outbox_.push_back(to_json(j.q) + "\n");
      in_flight_[j.q.id] = std::move(j.done);
    }
    if (!writing_ && !outbox_.empty()) {
      writing_ = true;
      asio::co_spawn(ex_, write_questions(shared_from_this(), proc_), log_exception);
    }
  }

  // One write at a time on the pipe (Asio's rule for async_write); lines queue.
  static asio::awaitable<void> write_questions(std::shared_ptr<exec_core> self, std::shared_ptr<child> c) {
    while (self->proc_ == c && !self->outbox_.empty()) {
      const auto line = std::move(self->outbox_.front());
      self->outbox_.pop_front();
      auto [ec, n] = co_await asio::async_write(c->in, asio::buffer(line), use_tuple);
      if (ec) break;  // it died or closed stdin: watch() fails what is in flight
    }
    if (self->proc_ == c) self->writing_ = false;
  }

  static asio::awaitable<void> read_answers(std::shared_ptr<exec_core> self, std::shared_ptr<child> c) {
    std::string buf;
    for (;;) {
      auto [ec, n] = co_await asio::async_read_until(c->out, asio::dynamic_buffer(buf, max_output_bytes), '\n',
                                                     use_tuple);
      if (ec) {
        // EOF: it can no longer answer, even if it lives on. Over the cap: broken.
        // Either way it is killed, and watch() fails the questions in flight.
        if (ec == asio::error::not_found) c->output_too_long = true;
        c->kill();
        co_return;
      }
      const auto line = trim(std::string_view(buf).substr(0, n));
      if (self->proc_ == c && !line.empty()) self->on_line(line);
      buf.erase(0, n);
    }
  }

  void on_line(std::string_view line) {
    auto parsed = parse_answer(line);
    // A plain flag and value, not an optional: GCC 12 warns (maybe-uninitialized) on
    // the optional's hash below.
    bool has_id = parsed.value && parsed.value->id;
    std::uint64_t id = has_id ? *parsed.value->id : 0;
    if (!parsed.value) {
      // Not a valid answer: if it still names a question in flight, that question
      // gets bad_answer now rather than waiting for its timeout.
      if (const auto doc = config::json::parse(line); doc.value && doc.value->is_object())
        for (const auto& m : doc.value->members) {
          const auto& t = m.value.text;
          if (m.key == "id" && m.value.kind == config::json::value::kind_t::number &&
              std::from_chars(t.data(), t.data() + t.size(), id).ptr == t.data() + t.size())
            has_id = true;
        }
    }
    const auto it = has_id ? in_flight_.find(id) : in_flight_.end();
    if (it == in_flight_.end()) {
      // Unknown or cancelled ids are expected (a late answer); an answer without id
      // cannot be matched to a question.
      if (!has_id)
        warn("hook exec: a persistent hook's answer names no question id; ignored", "error",
             parsed.value ? "no id" : parsed.error);
      return;
    }
    auto done = std::move(it->second);
    in_flight_.erase(it);
    if (parsed.value) {
      deliver(std::move(done), result{std::move(parsed.value), failure::none, {}});
    } else {
      deliver(std::move(done), result{std::nullopt, failure::bad_answer, std::move(parsed.error)});
    }
    pump();
  }

  // Waits for the persistent child to exit, reaps it, fails what it had in flight.
  static asio::awaitable<void> watch(std::shared_ptr<exec_core> self, std::shared_ptr<child> c) {
    auto [ec] = co_await c->exited.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
    if (ec) c->kill();
    c->reap();
    c->close_all();
    if (self->stopped_ || self->proc_ != c) co_return;
    self->proc_.reset();
    const auto how = describe_status(c->status);
    const auto why = c->output_too_long ? failure::bad_answer : failure::crashed;
    const auto detail = c->output_too_long ? "answer line over 64 KiB; " + how : how;
    for (auto& [id, done] : self->in_flight_) self->deliver(std::move(done), result{std::nullopt, why, detail});
    self->in_flight_.clear();
    warn("hook exec: the persistent hook ended; restarted for the next question", "status", how);
    const auto now = steady_clock::now();
    if (now - self->started_at_ < quick_death) {
      self->backoff_ = self->backoff_.count() == 0 ? restart_backoff_min
                                                   : std::min<std::chrono::milliseconds>(self->backoff_ * 2,
                                                                                         restart_backoff_max);
    } else {
      self->backoff_ = {};
    }
    self->restart_not_before_ = now + self->backoff_;
    self->pump();
  }

  asio::any_io_executor ex_;
  std::vector<std::string> argv_;
  bool persistent_;
  std::size_t concurrency_;
  bool stopped_ = false;
  std::deque<job> waiting_;
  // per question
  std::unordered_map<std::uint64_t, run> running_;
  // persistent
  std::shared_ptr<child> proc_;
  std::unordered_map<std::uint64_t, transport::callback> in_flight_;
  std::deque<std::string> outbox_;
  bool writing_ = false;
  steady_clock::time_point started_at_{};
  steady_clock::time_point restart_not_before_{};
  std::chrono::milliseconds backoff_{0};
  asio::steady_timer restart_timer_;
  bool restart_armed_ = false;
};

}  // namespace

std::unique_ptr<transport> make_exec_transport(boost::asio::any_io_executor ex, const config::hook_config& cfg) {
  return std::make_unique<shared_core_transport<exec_core>>(std::move(ex), cfg);
}

}  // namespace egressd::proxy::hook
