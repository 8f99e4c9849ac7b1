#include "proxy/log.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <atomic>
#include <cassert>
#include <charconv>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace egressd::proxy {

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the pending run of characters that need no escape
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7F) continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xF];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

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
  // Text logs quote only values that would not read back as one token.
  if (json_ || value.empty() || value.find_first_of(" \"=\t\r\n") != std::string_view::npos)
    append_json_string(out_, value);
  else
    out_ += value;
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

// spdlog's file sink creates missing parent directories (as root, when egressd
// runs as root); the configuration check already refused a missing directory, and
// this refuses one that vanished since, rather than create it.
spdlog::sink_ptr open_audit_file(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw std::runtime_error("log.audit: the directory " + dir + " of " + path + " does not exist");
  return std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
}

}  // namespace

void init_logging(const config::log_config& cfg) {
  const bool json = cfg.format == config::log_format::json;
  json_format.store(json);
  auto ops_new = make_logger("egressd", std::make_shared<spdlog::sinks::stderr_sink_mt>(), json);
  auto level = spdlog::level::from_str(cfg.level);
  ops_new->set_level(level == spdlog::level::off && cfg.level != "off" ? spdlog::level::info : level);
  std::shared_ptr<spdlog::logger> audit_new;
  if (cfg.audit == "stdout")
    audit_new = make_logger("audit", std::make_shared<spdlog::sinks::stdout_sink_mt>(), true);
  else if (cfg.audit == "stderr")
    audit_new = make_logger("audit", std::make_shared<spdlog::sinks::stderr_sink_mt>(), true);
  else if (cfg.audit != "off" && !cfg.audit.empty())
    audit_new = make_logger("audit", open_audit_file(cfg.audit), true);
  if (audit_new) audit_new->flush_on(spdlog::level::info);
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
  // Access records are JSON lines whatever log.format says (DESIGN.md §2.6): the
  // audit logger's pattern always opens the object, and a record is always built
  // with json_object::json().
  assert(record.is_json());
  logger->info("{}}}", record.fields());
}

void flush_logs() {
  ops().flush();
  if (auto* a = audit()) a->flush();
}

}  // namespace egressd::proxy
