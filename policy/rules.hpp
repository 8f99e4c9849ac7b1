#pragma once
// Typed policy rules as the configuration layer hands them to policy::compile.
// Plain values: nothing here is validated yet; compile() validates and reports
// every problem with the entry's source location.

#include <cstdint>
#include <string>
#include <vector>

namespace egressd::policy {

/// Which pattern grammar the entries were written in.
/// `egressd`: our YAML grammar (x, *.x, **.x, :port, IP, CIDR, @preset, `*` in deny).
/// `srt`: a Claude Code / sandbox-runtime settings file, with its semantics exactly
/// (no CIDR, no `**.`, no presets; schema-valid entries that can never match are kept,
/// with a warning, as sandbox-runtime keeps them).
enum class grammar : std::uint8_t { egressd, srt };

/// Where an entry came from, for error messages: `file:line:column` and the YAML or
/// JSON path (`policy.allow[3]`). Line and column are 1-based; 0 means unknown.
struct source_location {
  std::string file;
  std::string path;
  int line = 0;
  int column = 0;
};

/// One list entry as written.
struct rule_entry {
  std::string text;
  source_location where;
};

/// What happens to a destination that no rule names.
/// The zero value denies.
enum class unknown_mode : std::uint8_t {
  deny,   ///< refuse it
  ask,    ///< ask the confirmation hook
  allow,  ///< report-only: let it through and record that it would have been denied
};

/// Rules for the address guard (README "Policy semantics"), applied to every address a name
/// resolves to.
struct guard_rules {
  /// Extra ranges to refuse (CIDR or single addresses), on top of the built-in classes.
  std::vector<rule_entry> deny_ranges;
  /// Re-open RFC 1918, CGNAT 100.64/10 and IPv6 ULA (loopback, link-local, metadata
  /// and the rest stay closed).
  bool allow_private = false;
};

/// The whole policy section.
struct rules {
  grammar syntax = grammar::egressd;
  std::vector<rule_entry> allow;
  std::vector<rule_entry> deny;
  unknown_mode unknown = unknown_mode::deny;
  guard_rules guard;
};

}  // namespace egressd::policy
