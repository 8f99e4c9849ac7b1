#pragma once
// Structured logging: one event is a message plus typed fields, rendered as one JSON
// object per line (log.format: json) or as "msg key=value" text. Operational logs go
// to stderr; access records (audit) go to the configured audit sink. Thread-safe.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace egressd::proxy {

/// Appends `s` to `out` as a JSON string literal (quotes included).
void append_json_string(std::string& out, std::string_view s);

/// A flat JSON object built field by field. Keys are trusted literals.
class json_object {
 public:
  json_object& add(std::string_view key, std::string_view value);
  json_object& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  json_object& add(std::string_view key, const std::string& value) { return add(key, std::string_view(value)); }
  json_object& add(std::string_view key, std::int64_t value);
  json_object& add(std::string_view key, std::uint64_t value);
  json_object& add(std::string_view key, int value) { return add(key, static_cast<std::int64_t>(value)); }
  json_object& add(std::string_view key, unsigned value) { return add(key, static_cast<std::uint64_t>(value)); }
  json_object& add(std::string_view key, bool value);
  json_object& add_null(std::string_view key);
  /// `{"k":v,...}`
  std::string str() const { return "{" + body_ + "}"; }
  /// The fields without braces, for appending to a log line.
  const std::string& fields() const { return body_; }
  /// The same fields as ` k=v k2="v 2"` for text logs.
  const std::string& text() const { return text_; }

 private:
  void key(std::string_view k);
  std::string body_;
  std::string text_;
};

enum class log_level : std::uint8_t { debug, info, warn, error };

/// Sets up the operational logger (stderr) and the audit logger from config.
/// Safe to call again on reload: sinks are replaced atomically by spdlog.
void init_logging(const config::log_config& cfg);

/// Emits one operational event: `msg` plus `fields`.
void log_event(log_level level, std::string_view msg, const json_object& fields = {});

/// Whether access records go anywhere (log.audit is not "off"); callers skip building
/// records when not.
bool audit_enabled() noexcept;

/// Emits one access record to the audit sink (if enabled).
void log_audit(const json_object& record);

/// Flushes both loggers (before exit).
void flush_logs();

}  // namespace egressd::proxy
