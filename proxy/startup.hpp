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

struct config_source {
  enum class kind_t : std::uint8_t { embedded, yaml, settings };
  kind_t kind = kind_t::embedded;
  std::string path;
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
