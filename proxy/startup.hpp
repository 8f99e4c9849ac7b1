#pragma once
// Loading a configuration source (egressd YAML, a settings JSON, or the embedded
// default) all the way to a compiled policy, with every problem as one line of text.
// Used by `run`, `check`, `check-config` and reload alike.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "policy/snapshot.hpp"

namespace egressd::proxy {

/// What `--config` and `--settings` named; neither: the embedded default. Both: the
/// YAML with the settings' policy layered on top (config::load_layered_files).
struct config_source {
  std::string yaml;      ///< --config FILE; empty when not given
  std::string settings;  ///< --settings FILE; empty when not given

  bool embedded() const noexcept { return yaml.empty() && settings.empty(); }
  /// "FILE", "YAML + JSON", or "embedded default", for messages.
  std::string describe() const;
};

struct loaded_config {
  std::shared_ptr<const config::config> config;    ///< null on error
  std::shared_ptr<const policy::snapshot> policy;  ///< null on error
  std::vector<std::string> errors;                 ///< "FILE:LINE:COL: error: PATH: MESSAGE (hint: ...)"
  std::vector<std::string> warnings;

  bool ok() const noexcept { return config && policy && errors.empty(); }
};

/// Loads, validates and compiles. Never throws for bad input.
loaded_config load_config_source(const config_source& source);

}  // namespace egressd::proxy
