#pragma once
// The admin endpoint (README "Admin endpoint"): routes from one table (path,
// methods, handler, one help line), which `GET /` and the startup log list, so they
// cannot drift: / (the route list), /healthz (the process is up), /readyz (listeners
// bound, not draining, every worker loop answering within a second), /metrics
// (Prometheus text format). An unknown path answers 404 and a method a route does not
// take 405 with Allow, both as JSON. The /v1 endpoints arrive with the hook work.
// Runs on the control io_context (the main thread), never on a worker.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <memory>
#include <string>
#include <vector>

#include "config/endpoint.hpp"

namespace egressd::proxy {

class worker;
struct runtime;

class admin_server {
 public:
  /// Binds `address` on `control` (throws std::runtime_error with a clear message when
  /// it cannot). `workers` are probed by /readyz.
  admin_server(boost::asio::io_context& control, const config::endpoint& address, runtime& rt,
               std::vector<worker*> workers);
  ~admin_server();

  /// The bound address ("127.0.0.1:9090").
  const std::string& address() const noexcept;
  /// The routes' paths, space-separated, from the table (for the startup log).
  std::string route_list() const;
  /// Starts accepting.
  void start();
  /// Stops accepting (open admin connections finish their request).
  void stop();

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace egressd::proxy
