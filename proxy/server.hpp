#pragma once
// The daemon: workers, listeners, signals, reload and drain (README "Command line", "Life of a session").

#include <memory>

#include "proxy/startup.hpp"

namespace egressd::proxy {

class server {
 public:
  /// `initial` must be ok(). `source` is re-read on SIGHUP.
  server(config_source source, loaded_config initial);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds every listener (failing fast with a clear message), serves until SIGTERM
  /// or SIGINT, drains, and returns the process exit code.
  int run();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace egressd::proxy
