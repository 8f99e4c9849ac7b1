#pragma once
// The commands that answer the confirmation hook by hand through a running daemon's
// admin endpoint (README "Answering by hand"):
//   egressd pending   [common options]
//   egressd allow     HOST[:PORT] [--always | --ttl DURATION] [--domain | --port] [--reason TEXT] [common]
//   egressd deny      HOST[:PORT] [same]
//   egressd decisions [--forget NAME] [common]
// common: --admin ADDRESS, --config FILE, --settings FILE, --token-file FILE, --json.
// Exit status: 0 done; 1 the daemon refused (no such pending question, nothing to
// forget, a bad answer, a missing or wrong token); 2 usage error, or no daemon
// answering at the address; 4 the configuration named does not load.

#include <string>
#include <vector>

namespace egressd::proxy {

/// Whether `command` is one of the commands above.
bool is_admin_command(const std::string& command);

/// Runs `command` with its arguments (after the command name). Writes to stdout and
/// stderr; returns the exit status.
int run_admin_command(const std::string& command, const std::vector<std::string>& args);

}  // namespace egressd::proxy
