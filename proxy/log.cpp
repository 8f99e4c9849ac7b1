#include "proxy/log.hpp"

#include "proxy/text_escape.hpp"

#include <spdlog/details/console_globals.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

namespace egressd::proxy {

namespace {

// Text logs: a value that is one plain token (printable ASCII, no space, quote, `=` or
// backslash) is written as it is; any other is quoted, with every byte outside
// printable ASCII as \xHH, so a record stays one line that no terminal interprets.
void append_text_value(std::string& out, std::string_view s) {
  const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c > 0x20 && c < 0x7F && c != '"' && c != '=' && c != '\\';
  });
  if (plain) {
    out += s;
    return;
  }
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      out += ch;
    } else if (!append_common_escape(out, c)) {
      out += "\\x";
      out += hex_digits[c >> 4];
      out += hex_digits[c & 0xF];
    }
  }
  out += '"';
}

}  // namespace

namespace {
std::atomic<bool> json_format{true};
}  // namespace

json_object::json_object() : json_(json_format.load(std::memory_order_relaxed)) {}

void json_object::key(std::string_view k) {
  if (json_) {
    // Keys are trusted literals (log.hpp): no escaping to do.
    if (!out_.empty()) out_ += ',';
    out_ += '"';
    out_ += k;
    out_ += "\":";
  } else {
    out_ += ' ';
    out_ += k;
    out_ += '=';
  }
}

void json_object::add_raw(std::string_view json_text, std::string_view plain_text) {
  out_ += json_ ? json_text : plain_text;
}

json_object& json_object::add(std::string_view k, std::string_view value) {
  key(k);
  if (json_)
    append_json_string(out_, value);
  else
    append_text_value(out_, value);
  return *this;
}

template <class T>
json_object& json_object::add_number(std::string_view k, T value) {
  key(k);
  char buf[24];
  const auto end = std::to_chars(buf, buf + sizeof buf, value).ptr;
  out_.append(buf, end);
  return *this;
}
template json_object& json_object::add_number(std::string_view, std::int64_t);
template json_object& json_object::add_number(std::string_view, std::uint64_t);

json_object& json_object::add(std::string_view k, bool value) {
  key(k);
  out_ += value ? "true" : "false";
  return *this;
}

json_object& json_object::add_null(std::string_view k) {
  key(k);
  add_raw("null", "-");
  return *this;
}

namespace {

std::shared_ptr<spdlog::logger> make_logger(const std::string& name, spdlog::sink_ptr sink, bool json) {
  auto logger = std::make_shared<spdlog::logger>(name, std::move(sink));
  // The message carries its own fields; the pattern adds time and level.
  if (json)
    logger->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v)", spdlog::pattern_time_type::utc);
  else
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::trace);
  return logger;
}

// Readers take the current logger without a lock; every logger ever installed is kept
// alive in `installed`, so a pointer read just before a replacement stays valid.
std::mutex install_mutex;
std::vector<std::shared_ptr<spdlog::logger>> installed;
std::atomic<spdlog::logger*> ops_logger{nullptr};

spdlog::logger* install(std::atomic<spdlog::logger*>& slot, std::shared_ptr<spdlog::logger> logger) {
  spdlog::logger* raw = logger.get();
  std::lock_guard lock(install_mutex);
  installed.push_back(std::move(logger));
  slot.store(raw, std::memory_order_release);
  return raw;
}

spdlog::logger& ops() {
  if (auto* l = ops_logger.load(std::memory_order_acquire)) return *l;
  // Before init_logging: JSON to stderr, so early errors are not lost.
  static spdlog::logger* fallback =
      install(ops_logger, make_logger("egressd", std::make_shared<spdlog::sinks::stderr_sink_mt>(), true));
  return *fallback;
}

spdlog::level::level_enum to_spdlog(log_level l) {
  switch (l) {
    case log_level::debug: return spdlog::level::debug;
    case log_level::info: return spdlog::level::info;
    case log_level::warn: return spdlog::level::warn;
    case log_level::error: return spdlog::level::err;
  }
  return spdlog::level::info;
}

std::string render(std::string_view msg, const json_object& fields) {
  std::string line;
  if (fields.is_json()) {
    line = "\"msg\":";
    append_json_string(line, msg);
    if (!fields.fields().empty()) {
      line += ',';
      line += fields.fields();
    }
    line += '}';
  } else {
    line = std::string(msg) + fields.fields();
  }
  return line;
}

// ---- access records -------------------------------------------------------------------
//
// A record is rendered once, by the thread that ends its request, straight into that
// thread's own buffer (no shared lock, no formatter: the time prefix is cached per
// second). For an audit file, the buffers go out together, merged in time order, in
// one write, when one of them holds audit_block_bytes, and otherwise when the control
// thread flushes them (flush_audit_log(), every audit_flush_interval), at SIGUSR1 and
// at exit. A buffer holds whole lines only, so no record is ever split or interleaved.

// Where access records go: blocks of whole lines, written under the destination's lock.
class audit_destination {
 public:
  virtual ~audit_destination() = default;
  /// Writes `lines` (whole lines); false when some could not be written.
  virtual bool write(std::string_view lines) = 0;
  /// Whether records wait in the threads' buffers (a file) or are written one by one
  /// as they are made (a stream: a container's log collector, or a test, reads it live).
  virtual bool buffered() const noexcept { return true; }
};

// stdout or stderr: the stdio stream under spdlog's console mutex, the one the
// operational logger's stderr sink takes, so an access record and a log line on the same
// stream never interleave. Each record is written as it is made, as spdlog's console
// sinks did: whoever reads the stream sees it at once.
class audit_stream final : public audit_destination {
 public:
  explicit audit_stream(std::FILE* f) : file_(f) {}
  bool write(std::string_view lines) override {
    std::lock_guard lock(spdlog::details::console_mutex::mutex());
    const bool ok = std::fwrite(lines.data(), 1, lines.size(), file_) == lines.size();
    return std::fflush(file_) == 0 && ok;
  }
  bool buffered() const noexcept override { return false; }

 private:
  std::FILE* file_;
};

// The audit file, appended to with write(2), rotated by size as spdlog's rotating sink
// does (its file names, through its calc_filename: audit.log -> audit.1.log -> ...), at
// line boundaries: a block that would take the file beyond audit_max_size is written
// as far as its whole lines fit, then the file rotates. reopen() is SIGUSR1.
class audit_file final : public audit_destination {
 public:
  explicit audit_file(const config::log_config& cfg)
      : path_(cfg.audit_file), max_size_(cfg.audit_max_size), max_files_(cfg.audit_max_files) {
    fd_ = open_path(false);
    size_ = file_size(fd_);
  }
  ~audit_file() override {
    if (fd_ >= 0) ::close(fd_);
  }

  bool write(std::string_view lines) override {
    std::lock_guard lock(mutex_);
    if (max_size_ == 0) return put(lines);
    while (!lines.empty()) {
      if (size_ + lines.size() <= max_size_) return put(lines);
      // The whole lines that fit, then a rotation before the next one.
      const std::size_t room = max_size_ > size_ ? max_size_ - size_ : 0;
      const std::size_t nl = room > 0 ? lines.rfind('\n', room - 1) : std::string_view::npos;
      if (nl != std::string_view::npos) {
        if (!put(lines.substr(0, nl + 1))) return false;
        lines.remove_prefix(nl + 1);
        continue;
      }
      // As spdlog: rotate only when the file really holds something (it may have been
      // truncated behind our back); a line longer than max_size goes alone into a file.
      if (file_size(fd_) > 0) {
        if (!rotate()) return false;
        continue;
      }
      size_ = 0;
      const std::size_t end = lines.find('\n');
      const std::size_t n = end == std::string_view::npos ? lines.size() : end + 1;
      if (!put(lines.substr(0, n))) return false;
      lines.remove_prefix(n);
    }
    return true;
  }

  /// Opens the path anew and writes there from now on; throws (keeping the old file)
  /// when it cannot be opened.
  void reopen() {
    const int fresh = open_path(false);
    int old;
    {
      std::lock_guard lock(mutex_);
      old = std::exchange(fd_, fresh);
      size_ = file_size(fd_);
    }
    if (old >= 0) ::close(old);
  }

  const std::string& path() const noexcept { return path_; }

 private:
  // spdlog's file sinks create missing parent directories (as root, when egressd runs
  // as root); the configuration check already refused a missing directory, and this
  // refuses one that vanished since, rather than create it. Mode 0666 less the umask,
  // as fopen(3) gives.
  int open_path(bool truncate) const {
    const std::size_t slash = path_.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      throw std::runtime_error("log.audit: the directory " + dir + " of " + path_ + " does not exist");
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : O_APPEND), 0666);
    if (fd < 0) throw std::runtime_error("log.audit: cannot open " + path_ + ": " + std::strerror(errno));
    return fd;
  }

  static std::uint64_t file_size(int fd) noexcept {
    struct stat st {};
    return fd >= 0 && ::fstat(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
  }

  bool put(std::string_view bytes) {
    if (fd_ < 0) return false;
    while (!bytes.empty()) {
      const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
      size_ += static_cast<std::uint64_t>(n);
    }
    return true;
  }

  // spdlog's rotate_(): audit.{i-1}.log -> audit.{i}.log from the oldest down, then a
  // fresh, truncated audit.log; when a rename fails the file is truncated all the same,
  // so it never grows beyond its limit.
  bool rotate() {
    ::close(std::exchange(fd_, -1));
    bool renamed = true;
    for (std::size_t i = max_files_; i > 0; --i) {
      const std::string src = spdlog::sinks::rotating_file_sink_st::calc_filename(path_, i - 1);
      struct stat st {};
      if (::stat(src.c_str(), &st) != 0) continue;
      const std::string target = spdlog::sinks::rotating_file_sink_st::calc_filename(path_, i);
      ::unlink(target.c_str());
      if (::rename(src.c_str(), target.c_str()) != 0) renamed = false;
    }
    try {
      fd_ = open_path(true);
    } catch (const std::exception&) {
      return false;
    }
    size_ = 0;
    return renamed;
  }

  const std::string path_;
  const std::uint64_t max_size_;
  const std::size_t max_files_;
  std::mutex mutex_;  // fd_, size_
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

// One thread's records not yet written; registered while its thread lives.
struct record_buffer {
  std::mutex mutex;  // taken by its thread per record, and by flushes (10 times a second)
  std::string pending;
  // Per line of `pending`: when it was made (the time it shows, in ns) and
  // where it ends, so that a flush writes every thread's lines in time order.
  std::vector<std::pair<std::int64_t, std::size_t>> marks;
  // `{"time":"YYYY-MM-DDTHH:MM:SS.` for `second`, so a record formats three digits.
  std::int64_t second = -1;
  std::string prefix;
  // What a flush took from `pending` and `marks` (under buffers_mutex only); swapped
  // back and forth so that neither side allocates once warm.
  std::string taken;
  std::vector<std::pair<std::int64_t, std::size_t>> taken_marks;
  std::size_t next = 0;  // the merge's position in taken_marks
};

// The destination in use and every one ever installed (never freed, as loggers are, so
// that a pointer read before a replacement stays valid, also while the process exits).
std::atomic<audit_destination*> audit_out{nullptr};
std::atomic<audit_file*> audit_file_out{nullptr};
std::atomic<std::uint64_t> audit_lost_writes{0};

// Every live thread's buffer; leaked, so that threads ending during exit find it. Its
// mutex also serialises flushes, so blocks reach the destination in the order taken.
std::mutex& buffers_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
std::vector<record_buffer*>& buffers() {
  static auto* v = new std::vector<record_buffer*>;
  return *v;
}

void write_out(audit_destination* out, std::string_view lines) {
  if (out && !lines.empty() && !out->write(lines)) audit_lost_writes.fetch_add(1, std::memory_order_relaxed);
}

// Writes every buffer out as one block in time order (buffers_mutex held). Every
// buffer's mutex is held at once while its lines are taken: a line made later, on any
// thread, is stamped after that and goes with the next flush, so whoever has seen a
// record has also seen every record made before it, as with one shared log.
void flush_locked(audit_destination* out) {
  auto& all = buffers();
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(all.size());
  for (record_buffer* b : all) locks.emplace_back(b->mutex);
  std::size_t with_lines = 0;
  record_buffer* only = nullptr;
  for (record_buffer* b : all) {
    b->taken.swap(b->pending);
    b->taken_marks.swap(b->marks);
    b->next = 0;
    if (!b->taken_marks.empty()) {
      ++with_lines;
      only = b;
    }
  }
  locks.clear();
  if (with_lines == 1) {
    write_out(out, only->taken);
  } else if (with_lines > 1) {
    static auto* merged = new std::string;  // under buffers_mutex
    merged->clear();
    for (;;) {
      record_buffer* first = nullptr;
      for (record_buffer* b : all)
        if (b->next < b->taken_marks.size() &&
            (!first || b->taken_marks[b->next].first < first->taken_marks[first->next].first))
          first = b;
      if (!first) break;
      const std::size_t from = first->next == 0 ? 0 : first->taken_marks[first->next - 1].second;
      merged->append(first->taken, from, first->taken_marks[first->next].second - from);
      ++first->next;
    }
    write_out(out, *merged);
    if (merged->capacity() > 4 * audit_block_bytes) std::string().swap(*merged);
  }
  for (record_buffer* b : all) {
    b->taken.clear();
    b->taken_marks.clear();
  }
}

void flush_every_buffer(audit_destination* out) {
  std::lock_guard lock(buffers_mutex());
  flush_locked(out);
}

// The calling thread's buffer: registered on first use, written out and unregistered
// when the thread ends.
class thread_records {
 public:
  thread_records() : buffer_(new record_buffer) {
    std::lock_guard lock(buffers_mutex());
    buffers().push_back(buffer_);
  }
  ~thread_records() {
    {
      std::lock_guard lock(buffers_mutex());
      flush_locked(audit_out.load(std::memory_order_acquire));
      std::erase(buffers(), buffer_);
    }
    delete buffer_;
  }
  thread_records(const thread_records&) = delete;
  thread_records& operator=(const thread_records&) = delete;
  record_buffer& buffer() noexcept { return *buffer_; }

 private:
  record_buffer* buffer_;
};

// `{"time":"2026-12-03T22:05:40.123Z","level":"info",` as spdlog's pattern wrote it, for
// `now` (since the epoch).
void append_record_prefix(record_buffer& b, std::chrono::system_clock::duration now) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now).count();
  const std::int64_t second = ms / 1000;
  if (second != b.second) {
    b.second = second;
    const std::time_t t = static_cast<std::time_t>(second);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char text[48];
    const auto n = std::strftime(text, sizeof text, R"({"time":"%Y-%m-%dT%H:%M:%S.)", &tm);
    b.prefix.assign(text, n);
  }
  b.pending += b.prefix;
  const auto milli = static_cast<unsigned>(ms % 1000);
  const char digits[3] = {static_cast<char>('0' + milli / 100), static_cast<char>('0' + milli / 10 % 10),
                          static_cast<char>('0' + milli % 10)};
  b.pending.append(digits, 3);
  b.pending += R"(Z","level":"info",)";
}

std::vector<std::unique_ptr<audit_destination>>& installed_destinations() {
  static auto* v = new std::vector<std::unique_ptr<audit_destination>>;
  return *v;
}

}  // namespace

void init_logging(const config::log_config& cfg) {
  const bool json = cfg.format == config::log_format::json;
  json_format.store(json);
  auto ops_new = make_logger("egressd", std::make_shared<spdlog::sinks::stderr_sink_mt>(), json);
  auto level = spdlog::level::from_str(cfg.level);
  ops_new->set_level(level == spdlog::level::off && cfg.level != "off" ? spdlog::level::info : level);
  ops_new->flush_on(spdlog::level::debug);
  std::unique_ptr<audit_destination> out;
  audit_file* file = nullptr;
  switch (cfg.audit) {
    case config::audit_target::standard_output: out = std::make_unique<audit_stream>(stdout); break;
    case config::audit_target::standard_error: out = std::make_unique<audit_stream>(stderr); break;
    case config::audit_target::file: {
      auto f = std::make_unique<audit_file>(cfg);
      file = f.get();
      out = std::move(f);
      break;
    }
    case config::audit_target::off: break;
  }
  install(ops_logger, std::move(ops_new));
  // Records of the previous destination go there first.
  flush_every_buffer(audit_out.load(std::memory_order_acquire));
  {
    std::lock_guard lock(install_mutex);
    audit_file_out.store(file, std::memory_order_release);
    audit_out.store(out.get(), std::memory_order_release);
    if (out) installed_destinations().push_back(std::move(out));
  }
  // An exit() that does not come through flush_logs() (a fatal error) still writes
  // what the threads' buffers hold, as stdio would have flushed its buffers.
  static const bool at_exit = std::atexit([] { flush_every_buffer(audit_out.load(std::memory_order_acquire)); }) == 0;
  (void)at_exit;
}

void log_event(log_level level, std::string_view msg, const json_object& fields) {
  auto& logger = ops();
  const auto l = to_spdlog(level);
  if (!logger.should_log(l)) return;
  logger.log(l, "{}", render(msg, fields));
}

bool audit_enabled() noexcept { return audit_out.load(std::memory_order_relaxed) != nullptr; }

void log_audit(const json_object& record) {
  auto* out = audit_out.load(std::memory_order_acquire);
  if (!out) return;
  // Access records are JSON lines whatever log.format says (README "Logs and access
  // records"): the prefix opens the object, and a record is always built with
  // json_object::json().
  assert(record.is_json());
  thread_local thread_records mine;
  record_buffer& b = mine.buffer();
  bool full;
  {
    std::lock_guard lock(b.mutex);
    // One reading of the clock, under the buffer's mutex, is both the time the record
    // shows and its place in the flush's merge, so the file is in the order of the times
    // it shows (two readings let a thread preempted between them show 30.000 after
    // another thread's 30.002).
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    append_record_prefix(b, now);
    b.pending += record.fields();
    b.pending += "}\n";
    if (!out->buffered()) {
      // A stream: this record now, in one write, under the stream's lock.
      write_out(out, b.pending);
      b.pending.clear();
      b.marks.clear();  // lines of a file destination this one replaced went with it
      return;
    }
    b.marks.emplace_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count(), b.pending.size());
    full = b.pending.size() >= audit_block_bytes;
  }
  // A full buffer: every thread's records go out now, in time order (the other
  // workers wait only while their lines are taken, not for the write).
  if (full) flush_every_buffer(out);
}

void reopen_audit_log() {
  audit_file* file = audit_file_out.load(std::memory_order_acquire);
  if (!file) {
    log_event(log_level::info, "SIGUSR1: access records go to no file; nothing to reopen");
    return;
  }
  // Records made before the signal go to the file being replaced.
  flush_every_buffer(file);
  try {
    file->reopen();
    log_event(log_level::info, "audit file reopened", json_object().add("path", file->path()));
  } catch (const std::exception& e) {
    log_event(log_level::error, "cannot reopen the audit file; records keep going to the old one",
              json_object().add("path", file->path()).add("error", e.what()));
  }
}

void flush_audit_log() {
  flush_every_buffer(audit_out.load(std::memory_order_acquire));
  // Said here, outside every lock, once per flush that saw failed writes.
  if (const auto lost = audit_lost_writes.exchange(0, std::memory_order_relaxed); lost > 0)
    log_event(log_level::error, "access records could not be written (disk full? stream closed?)",
              json_object().add("failed_writes", lost));
}

void flush_logs() {
  ops().flush();
  flush_audit_log();
}

}  // namespace egressd::proxy
