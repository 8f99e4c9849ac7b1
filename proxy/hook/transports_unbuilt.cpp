// Until the exec and url transports land, every hook kind behaves like console: a
// question waits for an answer by hand or its timeout. Replaced by wire.cpp, exec.cpp
// and http.cpp.
#include "proxy/hook/transport.hpp"

namespace egressd::proxy::hook {

std::string_view to_string(failure f) noexcept {
  switch (f) {
    case failure::none: return "none";
    case failure::timeout: return "timeout";
    case failure::crashed: return "crashed";
    case failure::bad_answer: return "bad_answer";
    case failure::not_found: return "not_found";
    case failure::refused: return "refused";
    case failure::http_error: return "http_error";
    case failure::tls_error: return "tls_error";
    case failure::io_error: return "io_error";
  }
  return "io_error";
}

std::unique_ptr<transport> make_exec_transport(boost::asio::any_io_executor, const config::hook_config&) { return {}; }
std::unique_ptr<transport> make_http_transport(boost::asio::any_io_executor, const config::hook_config&) { return {}; }

}  // namespace egressd::proxy::hook
