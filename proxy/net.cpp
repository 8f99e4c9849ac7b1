#include "proxy/net.hpp"

#include <netdb.h>

#include <cstring>
#include <stdexcept>

namespace egressd::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

policy::ip_address to_policy(const asio::ip::address& a) {
  if (a.is_v4()) return policy::ip_address::from_v4(a.to_v4().to_uint());
  return policy::ip_address::from_v6(a.to_v6().to_bytes());
}

asio::ip::address to_asio(const policy::ip_address& a) {
  if (a.is_v4()) return asio::ip::address_v4(a.v4());
  return asio::ip::address_v6(a.bytes);
}

std::optional<tcp::endpoint> ip_endpoint(const asio::generic::stream_protocol::endpoint& ep) {
  const int family = ep.data()->sa_family;
  if (family != AF_INET && family != AF_INET6) return std::nullopt;
  tcp::endpoint out;
  if (ep.size() > out.capacity()) return std::nullopt;
  std::memcpy(out.data(), ep.data(), ep.size());
  out.resize(ep.size());
  return out;
}

std::string endpoint_text(const asio::ip::address& a, std::uint16_t port) {
  const std::string text = a.to_string();
  return (a.is_v6() ? "[" + text + "]" : text) + ":" + std::to_string(port);
}

std::string endpoint_text(const asio::generic::stream_protocol::endpoint& ep) {
  const auto ip = ip_endpoint(ep);
  return ip ? endpoint_text(ip->address(), ip->port()) : "unix";
}

tcp::endpoint resolve_listen_address(const config::endpoint& e) {
  boost::system::error_code ec;
  const auto literal = asio::ip::make_address(e.host, ec);
  if (!ec) return {literal, e.port};
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  if (::getaddrinfo(e.host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr)
    throw std::runtime_error("cannot resolve listener host '" + e.host + "'");
  tcp::endpoint ep;
  std::memcpy(ep.data(), res->ai_addr, res->ai_addrlen);
  ep.resize(res->ai_addrlen);
  ::freeaddrinfo(res);
  ep.port(e.port);
  return ep;
}

}  // namespace egressd::proxy
