#pragma once
// Loading the configuration: egressd YAML (DESIGN.md §2.2) or a Claude Code /
// sandbox-runtime settings JSON (DESIGN.md §2.1), parsed and validated in one
// pass that reports every problem with its file, path and line.
// Pure apart from reading the named file: no logging, no globals; never throws
// for bad input (std::bad_alloc aside).

#include "config/config.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace egressd::config {

enum class severity : std::uint8_t { error, warning };

/// One thing wrong with a configuration.
struct problem {
  severity level = severity::error;
  /// The file name as given ("embedded default" for the built-in config).
  std::string file;
  /// YAML/JSON path of the offending node: `policy.allow[2]`, `listeners[0].address`,
  /// `sandbox.network.allowedDomains[1]`; indices are 0-based. Empty for the document.
  std::string path;
  /// 1-based; 0 when unknown (a file that cannot be read).
  int line = 0;
  int column = 0;
  std::string message;
  /// How to fix it; may be empty.
  std::string hint;

  /// "FILE:LINE:COL: error: PATH: MESSAGE (hint: HINT)"; the parts that are empty or
  /// 0 are left out ("FILE: error: MESSAGE").
  std::string to_string() const;
};

/// The outcome of a load. `value` is present exactly when no problem is an error;
/// warnings may accompany a value.
struct load_result {
  std::optional<config> value;
  std::vector<problem> problems;

  /// Value present and no error-level problem.
  bool ok() const;
};

/// Reads and loads an egressd YAML file; `source` and every problem's `file` are `path`.
/// An unreadable file is one error problem.
load_result load_yaml_file(const std::string& path);

/// Loads egressd YAML from memory; `name` stands for the file in `source` and problems.
load_result load_yaml_string(std::string_view text, std::string_view name);

/// Reads and loads a Claude Code / sandbox-runtime settings JSON file: its
/// `network` object (top level, sandbox-runtime's own file) or `sandbox.network`
/// (Claude Code's settings.json) becomes the policy with sandbox-runtime's grammar
/// and semantics; every other setting comes from the embedded default config; all
/// other keys of the file are ignored.
load_result load_settings_file(const std::string& path);

/// As load_settings_file, from memory.
load_result load_settings_string(std::string_view text, std::string_view name);

/// The embedded default configuration, as YAML (config/default_config.yaml).
std::string_view default_config_yaml();

/// The embedded default configuration, parsed; `source` is "embedded default".
/// It is known valid (a unit test checks); an invalid one is a build defect (assert).
config default_config();

}  // namespace egressd::config
