#pragma once
// Socket addresses as the daemon converts, writes and binds them: one text form for every log
// and record ("127.0.0.1:3128", "[::1]:3128", "unix"), and one way to turn a configured
// host:port into an address to bind, shared by the listeners and the admin endpoint.

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "config/endpoint.hpp"
#include "policy/address.hpp"

namespace egressd::proxy {

/// An address as the policy core sees it, and back.
policy::ip_address to_policy(const boost::asio::ip::address& a);
boost::asio::ip::address to_asio(const policy::ip_address& a);

/// The IP endpoint of a generic one (an accepted peer, a bound listener); nullopt for
/// a Unix socket.
std::optional<boost::asio::ip::tcp::endpoint> ip_endpoint(const boost::asio::generic::stream_protocol::endpoint& ep);

/// `a:port`, with brackets around an IPv6 address.
std::string endpoint_text(const boost::asio::ip::address& a, std::uint16_t port);
/// The same for an accepted peer or a bound socket; "unix" for a Unix socket.
std::string endpoint_text(const boost::asio::generic::stream_protocol::endpoint& ep);

/// The address a TCP `host:port` binds to: an IP literal as it is, a name through
/// getaddrinfo (first answer). Throws std::runtime_error when a name does not resolve.
boost::asio::ip::tcp::endpoint resolve_listen_address(const config::endpoint& e);

}  // namespace egressd::proxy
