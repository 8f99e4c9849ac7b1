#include "proxy/log.hpp"

#include "proxy/text_escape.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <charconv>
#include <memory>
#include <mutex>
#include <stdexcept>
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
    if (!out_.empty()) out_ += ',';
    append_json_string(out_, k);
    out_ += ':';
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
std::atomic<spdlog::logger*> audit_logger{nullptr};

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

spdlog::logger* audit() { return audit_logger.load(std::memory_order_acquire); }

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

// The audit file: spdlog's file sink, rotating by size when log.audit_max_size is set,
// behind a sink of our own that can swap it for a fresh one opened at the same path.
// That is SIGUSR1 for logrotate: after `mv audit.log audit.log.1` records keep going
// to the renamed file until reopen(), then to a new audit.log. Writes stay as they were
// (synchronous, one mutex per sink); reopen() opens the new file before taking it.
class audit_file_sink final : public spdlog::sinks::sink {
 public:
  explicit audit_file_sink(const config::log_config& cfg)
      : path_(cfg.audit_file), max_size_(cfg.audit_max_size), max_files_(cfg.audit_max_files), inner_(open()) {}

  void log(const spdlog::details::log_msg& msg) override {
    std::lock_guard lock(mutex_);
    inner_->log(msg);
  }
  void flush() override {
    std::lock_guard lock(mutex_);
    inner_->flush();
  }
  void set_pattern(const std::string& pattern) override {
    set_formatter(std::make_unique<spdlog::pattern_formatter>(pattern));
  }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
    std::lock_guard lock(mutex_);
    formatter_ = formatter->clone();
    inner_->set_formatter(std::move(formatter));
  }

  /// Opens the path anew and writes there from now on; throws (keeping the old file)
  /// when it cannot be opened.
  void reopen() {
    auto fresh = open();
    {
      std::lock_guard lock(mutex_);
      if (formatter_) fresh->set_formatter(formatter_->clone());
      inner_->flush();
      std::swap(inner_, fresh);
    }
    // `fresh` now holds the old file: closed here, outside the lock.
  }

  const std::string& path() const noexcept { return path_; }

 private:
  // spdlog's file sinks create missing parent directories (as root, when egressd runs
  // as root); the configuration check already refused a missing directory, and this
  // refuses one that vanished since, rather than create it.
  std::unique_ptr<spdlog::sinks::sink> open() const {
    const std::size_t slash = path_.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      throw std::runtime_error("log.audit: the directory " + dir + " of " + path_ + " does not exist");
    // The _st variants: this sink's mutex serialises every call.
    if (max_size_ > 0)
      return std::make_unique<spdlog::sinks::rotating_file_sink_st>(path_, max_size_, max_files_);
    return std::make_unique<spdlog::sinks::basic_file_sink_st>(path_);
  }

  const std::string path_;
  const std::uint64_t max_size_;
  const std::size_t max_files_;
  std::mutex mutex_;
  std::unique_ptr<spdlog::sinks::sink> inner_;
  std::unique_ptr<spdlog::formatter> formatter_;
};

// The audit file sink in use, for reopen_audit_log(); guarded by install_mutex.
std::shared_ptr<audit_file_sink> audit_file;

}  // namespace

void init_logging(const config::log_config& cfg) {
  const bool json = cfg.format == config::log_format::json;
  json_format.store(json);
  auto ops_new = make_logger("egressd", std::make_shared<spdlog::sinks::stderr_sink_mt>(), json);
  auto level = spdlog::level::from_str(cfg.level);
  ops_new->set_level(level == spdlog::level::off && cfg.level != "off" ? spdlog::level::info : level);
  std::shared_ptr<spdlog::logger> audit_new;
  std::shared_ptr<audit_file_sink> file_sink;
  switch (cfg.audit) {
    case config::audit_target::standard_output:
      audit_new = make_logger("audit", std::make_shared<spdlog::sinks::stdout_sink_mt>(), true);
      break;
    case config::audit_target::standard_error:
      audit_new = make_logger("audit", std::make_shared<spdlog::sinks::stderr_sink_mt>(), true);
      break;
    case config::audit_target::file:
      file_sink = std::make_shared<audit_file_sink>(cfg);
      audit_new = make_logger("audit", file_sink, true);
      break;
    case config::audit_target::off: break;
  }
  {
    std::lock_guard lock(install_mutex);
    audit_file = std::move(file_sink);
  }
  // Access records are not flushed one by one: the control thread flushes them every
  // audit_flush_interval (flush_audit_log), so a busy worker's records leave in blocks
  // through the sink's buffer rather than as one write(2) each.
  ops_new->flush_on(spdlog::level::debug);
  install(ops_logger, std::move(ops_new));
  if (audit_new)
    install(audit_logger, std::move(audit_new));
  else
    audit_logger.store(nullptr, std::memory_order_release);
}

void log_event(log_level level, std::string_view msg, const json_object& fields) {
  auto& logger = ops();
  const auto l = to_spdlog(level);
  if (!logger.should_log(l)) return;
  logger.log(l, "{}", render(msg, fields));
}

bool audit_enabled() noexcept { return audit() != nullptr; }

void log_audit(const json_object& record) {
  auto* logger = audit();
  if (!logger) return;
  // Access records are JSON lines whatever log.format says (README "Logs and access records"): the
  // audit logger's pattern always opens the object, and a record is always built
  // with json_object::json().
  assert(record.is_json());
  logger->info("{}}}", record.fields());
}

void reopen_audit_log() {
  std::shared_ptr<audit_file_sink> sink;
  {
    std::lock_guard lock(install_mutex);
    sink = audit_file;
  }
  if (!sink) {
    log_event(log_level::info, "SIGUSR1: access records go to no file; nothing to reopen");
    return;
  }
  try {
    sink->reopen();
    log_event(log_level::info, "audit file reopened", json_object().add("path", sink->path()));
  } catch (const std::exception& e) {
    log_event(log_level::error, "cannot reopen the audit file; records keep going to the old one",
              json_object().add("path", sink->path()).add("error", e.what()));
  }
}

void flush_audit_log() {
  if (auto* a = audit()) a->flush();
}

void flush_logs() {
  ops().flush();
  flush_audit_log();
}

}  // namespace egressd::proxy
