#pragma once
// The admin endpoint (README "Admin endpoint"): routes from one table (path,
// methods, handler, one help line), which `GET /` and the startup log list, so they
// cannot drift: / (the route list), /healthz (the process is up), /readyz (listeners
// bound, not draining, every worker loop answering within a second), /metrics
// (Prometheus text format), the /v1 routes of the confirmation hook (pending
// questions, answers by hand, remembered answers, recent denials) and the page that
// shows them (GET / from a browser), and POST /v1/reload (reload the configuration,
// as SIGHUP does). An unknown path answers 404 and a method a route
// does not take 405 with Allow, both as JSON.
// Safety (README "Admin endpoint"): the /v1 routes and the page answer only a Host
// naming this endpoint (DNS rebinding); POST and DELETE need Content-Type:
// application/json or the page's own token (CSRF); with admin.token_file, every route
// but /healthz, /readyz and the page's shell needs `Authorization: Bearer`. No CORS.
// Runs on the control io_context (the main thread), never on a worker.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace egressd::proxy {

class worker;
struct runtime;
namespace hook {
class coordinator;
}

/// What one reload did (server.cpp), for POST /v1/reload.
struct reload_report {
  bool ok = false;
  std::string source;               ///< the configuration source, as described in logs
  std::vector<std::string> errors;  ///< every problem of a rejected file
  std::vector<std::string> warnings;
  std::uint64_t rules = 0;          ///< rules of the policy now in force
  std::uint64_t rules_added = 0;
  std::uint64_t rules_removed = 0;
  bool revoke = false;              ///< whether denied connections are being closed (reload.revoke)
};

class admin_server {
 public:
  /// Binds `cfg.address` on `control` and reads `cfg.token_file` (throws
  /// std::runtime_error with a clear message when it cannot). `workers` are probed by
  /// /readyz; `hooks` answers the /v1 routes. Both outlive the server.
  admin_server(boost::asio::io_context& control, const config::admin_config& cfg, runtime& rt,
               std::vector<worker*> workers, hook::coordinator& hooks);
  ~admin_server();

  /// The bound address ("127.0.0.1:9090").
  const std::string& address() const noexcept;
  /// The routes' paths, space-separated, from the table (for the startup log).
  std::string route_list() const;
  /// What POST /v1/reload runs (on the control thread, where the server reloads).
  void set_reload(std::function<reload_report()> reload);
  /// Starts accepting.
  void start();
  /// Stops accepting (open admin connections finish their request).
  void stop();

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace egressd::proxy
