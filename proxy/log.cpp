#include "proxy/log.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>
#include <memory>
#include <mutex>

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

void json_object::key(std::string_view k) {
  if (!body_.empty()) body_ += ',';
  append_json_string(body_, k);
  body_ += ':';
  text_ += ' ';
  text_ += k;
  text_ += '=';
}

json_object& json_object::add(std::string_view k, std::string_view value) {
  key(k);
  append_json_string(body_, value);
  const bool plain = !value.empty() && value.find_first_of(" \"=\t\r\n") == std::string_view::npos;
  if (plain)
    text_ += value;
  else
    append_json_string(text_, value);
  return *this;
}

json_object& json_object::add(std::string_view k, std::int64_t value) {
  key(k);
  const std::string v = std::to_string(value);
  body_ += v;
  text_ += v;
  return *this;
}

json_object& json_object::add(std::string_view k, std::uint64_t value) {
  key(k);
  const std::string v = std::to_string(value);
  body_ += v;
  text_ += v;
  return *this;
}

json_object& json_object::add(std::string_view k, bool value) {
  key(k);
  body_ += value ? "true" : "false";
  text_ += value ? "true" : "false";
  return *this;
}

json_object& json_object::add_null(std::string_view k) {
  key(k);
  body_ += "null";
  text_ += "-";
  return *this;
}

namespace {

std::atomic<bool> json_format{true};
std::atomic<bool> audit_on{false};

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

std::mutex loggers_mutex;
std::shared_ptr<spdlog::logger> ops_logger;
std::shared_ptr<spdlog::logger> audit_logger;

std::shared_ptr<spdlog::logger> ops() {
  std::lock_guard lock(loggers_mutex);
  if (!ops_logger) ops_logger = make_logger("egressd", std::make_shared<spdlog::sinks::stderr_sink_mt>(), true);
  return ops_logger;
}

std::shared_ptr<spdlog::logger> audit() {
  std::lock_guard lock(loggers_mutex);
  return audit_logger;
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
  if (json_format.load(std::memory_order_relaxed)) {
    line = "\"msg\":";
    append_json_string(line, msg);
    if (!fields.fields().empty()) {
      line += ',';
      line += fields.fields();
    }
    line += '}';
  } else {
    line = std::string(msg) + fields.text();
  }
  return line;
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
    audit_new = make_logger("audit", std::make_shared<spdlog::sinks::stdout_sink_mt>(), json);
  else if (cfg.audit == "stderr")
    audit_new = make_logger("audit", std::make_shared<spdlog::sinks::stderr_sink_mt>(), json);
  else if (cfg.audit != "off" && !cfg.audit.empty())
    audit_new = make_logger("audit", std::make_shared<spdlog::sinks::basic_file_sink_mt>(cfg.audit), json);
  if (audit_new) audit_new->flush_on(spdlog::level::info);
  ops_new->flush_on(spdlog::level::debug);
  audit_on.store(audit_new != nullptr);
  std::lock_guard lock(loggers_mutex);
  ops_logger = std::move(ops_new);
  audit_logger = std::move(audit_new);
}

void log_event(log_level level, std::string_view msg, const json_object& fields) {
  auto logger = ops();
  const auto l = to_spdlog(level);
  if (!logger->should_log(l)) return;
  logger->log(l, "{}", render(msg, fields));
}

bool audit_enabled() noexcept { return audit_on.load(std::memory_order_relaxed); }

void log_audit(const json_object& record) {
  auto logger = audit();
  if (!logger) return;
  if (json_format.load(std::memory_order_relaxed))
    logger->info("{}}}", record.fields());
  else
    logger->info("{}", record.text().empty() ? std::string() : record.text().substr(1));
}

void flush_logs() {
  if (auto l = ops()) l->flush();
  if (auto a = audit()) a->flush();
}

}  // namespace egressd::proxy
