#pragma once
// The decisions file (`decisions_file:`; README "Decisions file"): where answers given
// with `remember: always` persist across restarts. Human-readable YAML:
//
//   # egressd decisions file ... (a header saying what the file is)
//   decisions:
//     - domain: npmjs.org
//       scope: domain
//       decision: allow
//       answered_by: "admin"
//       answered_at: 2026-12-03T18:32:23Z
//       reason: "npm install"
//     - host: api.example.com
//       port: 443
//       scope: host_port
//       ...
//
// Each entry names `host` (scopes host and host_port, with `port` for host_port only)
// or `domain` (scope domain); `scope` may be left out and is then what those keys say.
// `answered_at` is RFC 3339 (written in UTC, read with any offset), `reason` and
// `answered_by` may be left out. Unknown keys are errors, as in the configuration.
//
// Reading and writing files is all the I/O here; no logging, no globals, no throwing
// for bad input.

#include "config/load.hpp"
#include "policy/memory.hpp"
#include "policy/rules.hpp"

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace egressd::config::decisions_file {

struct load_result {
  /// The entries (lifetime `always`, no expiry), in file order, names canonical. Empty
  /// whenever a problem is an error: a corrupt file gives nothing, never half of it.
  std::vector<policy::memory_entry> entries;
  /// Where each entry was written (file, `decisions[2]`, line, column), as `entries`.
  std::vector<policy::source_location> where;
  /// Errors and warnings (an entry written twice: the later one is kept), each with
  /// the file, the entry's path (`decisions[2].scope`) and its line and column.
  std::vector<problem> problems;

  /// No error-level problem.
  bool ok() const;
};

/// Reads the file at `path`. A file that does not exist is an empty memory (no
/// problem); one that cannot be read, a directory, or a corrupt one is an error.
load_result load(const std::string& path);

/// As load(), from memory; `name` stands for the file in problems.
load_result parse(std::string_view text, std::string_view name);

/// The file's text for `entries`: the header, then `decisions:` with the entries of
/// lifetime `always`, in the order given (others are skipped: they do not persist).
/// parse(to_yaml(e)) gives back `e` exactly for canonical names.
std::string to_yaml(std::span<const policy::memory_entry> entries);

/// Writes to_yaml(entries) to `path` atomically: a temporary file in the same
/// directory (mode 0600, close-on-exec), fsync, rename over `path`, fsync of the
/// directory. After a crash at any point the file is the old one or the new one,
/// never a part. Returns why it failed (naming the path), or nothing; on failure no
/// temporary file is left behind and `path` is unchanged.
std::optional<std::string> save(const std::string& path, std::span<const policy::memory_entry> entries);

/// RFC 3339 in UTC: `2026-12-03T18:32:23Z`, with a fraction of a second only when
/// there is one (`...23.25Z`, up to nanoseconds).
std::string format_time(std::chrono::system_clock::time_point t);
/// RFC 3339 §5.6 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`; `t`/`z`
/// in lower case too. Nothing when malformed or out of range.
std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view text);

}  // namespace egressd::config::decisions_file
