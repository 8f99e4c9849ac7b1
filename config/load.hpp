#pragma once
// Loading the configuration: egressd YAML (README "Configuration") or a Claude Code /
// sandbox-runtime settings JSON (README "Command line"), parsed and validated in one
// pass that reports every problem with its file, path and line.
// Pure apart from reading the named files (the config, token files, a hook's CA file,
// the decisions file) and checking, with stat(2)/access(2), that a `log.audit` file
// and the decisions file can be written: no logging, no globals; never throws for
// bad input (std::bad_alloc aside).

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

/// Reads and loads a Claude Code / sandbox-runtime settings JSON file, parsed as
/// strict JSON (as JSON.parse reads it: no comments, no trailing commas): its
/// `network` object (top level, sandbox-runtime's own file) or `sandbox.network`
/// (Claude Code's settings.json) becomes the policy with sandbox-runtime's grammar
/// and semantics, and its `httpProxyPort` / `socksProxyPort` replace the default
/// listeners 127.0.0.1:3128 / 127.0.0.1:1080 (each given one alone); every other
/// setting comes from the embedded default config. Unknown keys under the network
/// object are warnings; the network keys one level off are errors; the file's
/// other keys are ignored.
load_result load_settings_file(const std::string& path);

/// As load_settings_file, from memory.
load_result load_settings_string(std::string_view text, std::string_view name);

/// `--config YAML --settings JSON`: the YAML config with the settings' policy layered
/// on top. `allowedDomains`/`deniedDomains` (when either is given) replace
/// `policy.allow`/`policy.deny` (a warning says so when those were not empty);
/// `deniedResolvedAddresses` adds to `policy.guard.deny_ranges`; `strictAllowlist`
/// (when given) sets `policy.unknown` (true: deny, false: ask). Listeners, admin,
/// logs and the rest come from the YAML; only a YAML without a `listeners` key takes
/// them from the settings' ports (as load_settings_file); otherwise a port no YAML
/// listener serves is a warning. `source` is "YAML + JSON".
load_result load_layered_files(const std::string& yaml_path, const std::string& settings_path);

/// As load_layered_files, from memory.
load_result load_layered_strings(std::string_view yaml_text, std::string_view yaml_name,
                                 std::string_view settings_text, std::string_view settings_name);

/// The token of a token file (`hook.token_file`, `admin.token_file`): its first line
/// without the line break and surrounding spaces and tabs. Nothing, with `error`
/// naming the path, when the file cannot be read, its first line is empty, or the
/// token holds a space or control character (an `Authorization: Bearer` value cannot).
std::optional<std::string> read_token_file(const std::string& path, std::string& error);

/// Two lines for `check-config`: `hook: ` the kind and its settings (or `none`), and
/// `decisions_file: ` the path (or `none`).
std::string hook_summary(const config& c);

/// The embedded default configuration, as YAML (config/default_config.yaml).
std::string_view default_config_yaml();

/// The embedded default configuration, parsed; `source` is "embedded default".
/// It is known valid (a unit test checks); an invalid one is a build defect (assert).
config default_config();

}  // namespace egressd::config
