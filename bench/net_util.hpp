// Small helpers shared by the benchmark's network programs (load generator, origin,
// splice relay). Plain POSIX/Linux; loopback only by convention of the callers.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace bench {

inline uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "fatal: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

[[noreturn]] inline void usage_error(const std::string& msg) {
  std::fprintf(stderr, "usage error: %s\n", msg.c_str());
  std::exit(2);
}

// Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
inline rlim_t raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

// Parses "A.B.C.D:PORT" (IPv4) or "[v6]:PORT" into a sockaddr_storage.
inline bool parse_endpoint(std::string_view s, sockaddr_storage& out, socklen_t& len) {
  std::memset(&out, 0, sizeof out);
  std::string host;
  std::string port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    host = std::string(s.substr(1, close - 1));
    port = std::string(s.substr(close + 2));
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&out);
    a6->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) != 1) return false;
    a6->sin6_port = htons(uint16_t(std::atoi(port.c_str())));
    len = sizeof(sockaddr_in6);
    return true;
  }
  auto colon = s.rfind(':');
  if (colon == std::string_view::npos) return false;
  host = std::string(s.substr(0, colon));
  port = std::string(s.substr(colon + 1));
  auto* a4 = reinterpret_cast<sockaddr_in*>(&out);
  a4->sin_family = AF_INET;
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1) return false;
  a4->sin_port = htons(uint16_t(std::atoi(port.c_str())));
  len = sizeof(sockaddr_in);
  return true;
}

inline uint16_t endpoint_port(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port);
}

inline void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// A non-blocking listening socket on `addr` (port 0 = any), SO_REUSEADDR and,
// when `reuseport`, SO_REUSEPORT so that several threads can each own one.
inline int listen_on(const sockaddr_storage& addr, socklen_t len, bool reuseport, int backlog = 4096) {
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) die("bind");
  if (listen(fd, backlog) != 0) die("listen");
  return fd;
}

inline uint16_t local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return endpoint_port(ss);
}

}  // namespace bench
