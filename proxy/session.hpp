#pragma once
// One client connection, from its first byte to its close (README "Life of a session"):
//   sniff -> parse head -> decide -> [hook] -> resolve -> guard -> dial -> reply -> relay
// with exactly one access record per decision and one per closed tunnel.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/generic/stream_protocol.hpp>

#include <string>

namespace egressd::proxy {

class worker;

/// How a listener was configured: its name (the configured address) and which
/// protocols it serves. Every listener sniffs the first byte: 0x05 is SOCKS5.
struct listener_info {
  std::string name;
  bool http = true;
  bool socks5 = true;
};

/// Serves `client` until it closes. Runs on the worker's thread; never throws for
/// anything the network does (an escaped exception is logged by the caller and ends
/// only this session). `peer` is the client's address for the access record.
boost::asio::awaitable<void> run_session(worker& w, const listener_info& listener,
                                         boost::asio::generic::stream_protocol::socket client, std::string peer);

}  // namespace egressd::proxy
