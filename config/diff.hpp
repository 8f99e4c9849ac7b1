#pragma once
// What a reload changes (README "Reload and shutdown"): the rules added and removed,
// the listeners that would need a restart, and the other keys that only a restart
// applies. Pure: compares two loaded configurations.

#include "config/config.hpp"

#include <string>
#include <vector>

namespace egressd::config {

struct change_summary {
  /// Rules as `allow github.com`, `deny *.evil.example`, `deny_range 10.0.0.0/8`, in
  /// file order; an entry written twice and removed once counts once.
  std::vector<std::string> rules_added;
  std::vector<std::string> rules_removed;
  /// Listener addresses (`127.0.0.1:3128`): in the new file only, in the old only,
  /// and in both with other protocols. All need a restart.
  std::vector<std::string> listeners_added;
  std::vector<std::string> listeners_removed;
  std::vector<std::string> listeners_changed;
  /// Other keys whose new value needs a restart (`admin.address`, `admin.token_file`,
  /// `dns`, `log.audit`, `workers`, ...).
  std::vector<std::string> restart_keys;
  /// Other keys whose new value applies to new sessions at once (`limits`, `auth`,
  /// `policy.unknown`, `policy.guard.allow_private`, `hook`, `decisions_file`).
  std::vector<std::string> applied_keys;

  bool listeners_need_restart() const {
    return !listeners_added.empty() || !listeners_removed.empty() || !listeners_changed.empty();
  }
};

/// The changes from `before` to `after` (both valid configurations).
change_summary describe_changes(const config& before, const config& after);

}  // namespace egressd::config
