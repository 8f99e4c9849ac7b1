#pragma once
// Structured logging: one event is a message plus typed fields, rendered as one JSON
// object per line (log.format: json) or as "msg key=value" text. Operational logs go
// to stderr; access records (audit) go to the configured audit sink, always as JSON
// lines (log.format is for the operational log only). Thread-safe.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace egressd::proxy {

/// Appends `s` to `out` as a JSON string literal (quotes included).
void append_json_string(std::string& out, std::string_view s);

/// The fields of one event or record, built field by field in the one form they will
/// be written in: JSON (`"k":v,...`) or, when logs are text, ` k=v k2="v 2"`. Keys are
/// trusted literals.
class json_object {
 public:
  /// Rendered as log.format says.
  json_object();
  /// Always JSON, whatever log.format says (command output).
  static json_object json() { return json_object(true); }

  json_object& add(std::string_view key, std::string_view value);
  json_object& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  json_object& add(std::string_view key, const std::string& value) { return add(key, std::string_view(value)); }
  json_object& add(std::string_view key, std::int64_t value) { return add_number(key, value); }
  json_object& add(std::string_view key, std::uint64_t value) { return add_number(key, value); }
  json_object& add(std::string_view key, int value) { return add_number(key, static_cast<std::int64_t>(value)); }
  json_object& add(std::string_view key, unsigned value) { return add_number(key, static_cast<std::uint64_t>(value)); }
  json_object& add(std::string_view key, bool value);
  json_object& add_null(std::string_view key);

  bool is_json() const noexcept { return json_; }
  /// The fields as built: without braces in JSON, with a leading space in text.
  const std::string& fields() const noexcept { return out_; }
  /// `{"k":v,...}` (JSON objects only).
  std::string str() const { return "{" + out_ + "}"; }

 private:
  // Access records are a few hundred bytes: one allocation rather than a doubling series.
  explicit json_object(bool json) : json_(json) { out_.reserve(256); }
  void key(std::string_view k);
  template <class T>
  json_object& add_number(std::string_view key, T value);
  void add_raw(std::string_view json_text, std::string_view plain_text);

  std::string out_;
  bool json_;
};

enum class log_level : std::uint8_t { debug, info, warn, error };

/// Sets up the operational logger (stderr) and the audit logger from config, once at
/// startup (log changes need a restart). Loggers it replaces stay alive, so readers
/// take no lock.
void init_logging(const config::log_config& cfg);

/// Emits one operational event: `msg` plus `fields`.
void log_event(log_level level, std::string_view msg, const json_object& fields = {});

/// Whether access records go anywhere (log.audit is not "off"); callers skip building
/// records when not.
bool audit_enabled() noexcept;

/// Emits one access record to the audit destination (if enabled). Access records are
/// JSON lines whatever log.format says: `record` is built with json_object::json().
/// The calling thread renders it, whole, into a buffer of its own (no lock shared with
/// other threads). To stdout or stderr it is written at once; to a file, every
/// thread's buffer is written out, merged in time order, in one write, when one of
/// them holds audit_block_bytes or at the next flush_audit_log().
void log_audit(const json_object& record);

/// How often the daemon flushes buffered access records (flush_audit_log()): records
/// reach their file or stream within this, and a busy proxy writes them in blocks
/// instead of one write(2) per record.
inline constexpr std::chrono::milliseconds audit_flush_interval{100};

/// A thread's buffer of access records is written out as soon as it holds this much.
inline constexpr std::size_t audit_block_bytes = 64 * 1024;

/// Writes every thread's buffered access records out, and reports (on the operational
/// log) writes that failed since the last call. Thread-safe; called by the daemon's
/// control thread every audit_flush_interval, and by flush_logs(); a thread's records
/// are also written when the thread ends, and at exit().
void flush_audit_log();

/// SIGUSR1: closes the audit file and opens it again at its configured path (after
/// logrotate renamed it), logging the outcome; on failure records keep going to the
/// old file. Nothing to do when access records go to stdout, stderr or nowhere.
/// Thread-safe; records written meanwhile go to one file or the other, whole.
void reopen_audit_log();

/// Flushes both loggers (before exit).
void flush_logs();

}  // namespace egressd::proxy
