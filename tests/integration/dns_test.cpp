// Integration tests of the c-ares resolver and the shared DNS cache (proxy/dns.hpp),
// against an in-process DNS server on 127.0.0.1 (UDP, port 0). Its own executable,
// `dns_test`. What the fake server answers, by name:
//   slow.test      never answers                missing.test   NXDOMAIN
//   nodata.test    NOERROR, no records          servfail.test  SERVFAIL
//   refused.test   REFUSED                      dual.test      2 A + 2 AAAA
//   ttl-N.test     A 192.0.2.1 with TTL N       tc-*           truncated over UDP;
//   delay-*        as below, 50 ms late                        40 A records over TCP
//   anything else  A 192.0.2.1, TTL 300, no AAAA
// Wall-clock checks are upper bounds only, generous ones.

#define CATCH_CONFIG_MAIN
// Catch's main compiles libstdc++'s <regex>, where GCC 12 with -fsanitize=address
// reports a false -Wmaybe-uninitialized (https://gcc.gnu.org/PR105616,
// catchorg/Catch2#2423); nothing of ours is concerned.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "proxy/dns.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace asio = boost::asio;
using egressd::proxy::dns_answer;
using egressd::proxy::dns_cache;
using egressd::proxy::dns_cache_entry;
using egressd::proxy::dns_errc;
using egressd::proxy::dns_options;
using egressd::proxy::resolver;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using result = std::pair<boost::system::error_code, dns_answer>;

namespace {

constexpr std::uint16_t type_a = 1;
constexpr std::uint16_t type_aaaa = 28;

// A DNS server on 127.0.0.1 (UDP and TCP on one port) in its own thread, counting
// the questions it gets.
class fake_dns_server {
 public:
  fake_dns_server() {
    // The TCP port must be free too; a few tries find one.
    for (int attempt = 0; attempt < 20 && tcp_ < 0; ++attempt) {
      if (udp_ >= 0) ::close(udp_);
      udp_ = bound_socket(SOCK_DGRAM, 0);
      tcp_ = bound_socket(SOCK_STREAM, port_);
    }
    if (tcp_ < 0 || ::listen(tcp_, 16) != 0) throw std::runtime_error("fake DNS server: no port");
    thread_ = std::thread([this] { run(); });
  }
  ~fake_dns_server() {
    stop_ = true;
    thread_.join();
    for (const int fd : connections_) ::close(fd);
    ::close(tcp_);
    ::close(udp_);
  }
  fake_dns_server(const fake_dns_server&) = delete;
  fake_dns_server& operator=(const fake_dns_server&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Questions received for `name` (A and AAAA together), or of one type.
  int queries(const std::string& name, std::uint16_t type = 0) const {
    const std::lock_guard lock(mutex_);
    int n = 0;
    for (const auto& [key, count] : counts_) {
      if (key.first == name && (type == 0 || key.second == type)) n += count;
    }
    return n;
  }
  int total() const {
    const std::lock_guard lock(mutex_);
    int n = 0;
    for (const auto& entry : counts_) n += entry.second;
    return n;
  }
  int tcp_queries() const { return tcp_queries_; }

 private:
  struct delayed {
    clock_type::time_point due;
    std::vector<unsigned char> reply;
    sockaddr_in to;
  };

  // Binds 127.0.0.1:port (0: any) and records the port; -1 on failure.
  int bound_socket(int type, std::uint16_t port) {
    const int fd = ::socket(AF_INET, type, 0);
    if (fd < 0) return -1;
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(port);
    socklen_t len = sizeof sin;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), len) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len) != 0) {
      ::close(fd);
      return -1;
    }
    port_ = ntohs(sin.sin_port);
    return fd;
  }

  void run() {
    std::array<unsigned char, 65536> buffer{};
    std::vector<delayed> later;
    while (!stop_) {
      std::vector<pollfd> fds{{udp_, POLLIN, 0}, {tcp_, POLLIN, 0}};
      for (const int fd : connections_) fds.push_back({fd, POLLIN, 0});
      ::poll(fds.data(), fds.size(), 5);

      const auto now = clock_type::now();
      for (auto it = later.begin(); it != later.end();) {
        if (it->due > now) {
          ++it;
          continue;
        }
        ::sendto(udp_, it->reply.data(), it->reply.size(), 0,
                 reinterpret_cast<const sockaddr*>(&it->to), sizeof it->to);
        it = later.erase(it);
      }
      if (fds[0].revents & POLLIN) {
        sockaddr_in from{};
        socklen_t from_len = sizeof from;
        const auto n = ::recvfrom(udp_, buffer.data(), buffer.size(), 0,
                                  reinterpret_cast<sockaddr*>(&from), &from_len);
        if (n >= 12) {
          const std::vector<unsigned char> q(buffer.begin(), buffer.begin() + n);
          auto reply = answer(q, false);
          if (!reply.empty()) {
            // delay-*: answered 50 ms later, so a racing timer wins deterministically.
            later.push_back({now + (question_name(q).rfind("delay-", 0) == 0 ? 50ms : 0ms),
                             std::move(reply), from});
          }
        }
      }
      if (fds[1].revents & POLLIN) {
        const int fd = ::accept(tcp_, nullptr, nullptr);
        if (fd >= 0) {
          // No Nagle: the second half of a split answer must not wait for an ACK.
          const int one = 1;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          connections_.push_back(fd);
        }
      }
      for (std::size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        if (!serve_tcp(fds[i].fd)) {
          ::close(fds[i].fd);
          std::erase(connections_, fds[i].fd);
        }
      }
    }
  }

  // One length-prefixed message (RFC 1035 §4.2.2) on a TCP connection; false at EOF.
  bool serve_tcp(int fd) {
    std::array<unsigned char, 2> prefix{};
    if (::recv(fd, prefix.data(), prefix.size(), MSG_WAITALL) != 2) return false;
    std::vector<unsigned char> q((prefix[0] << 8) | prefix[1]);
    if (q.size() < 12 || ::recv(fd, q.data(), q.size(), MSG_WAITALL) != static_cast<ssize_t>(q.size())) {
      return false;
    }
    ++tcp_queries_;
    const auto reply = answer(q, true);
    if (reply.empty()) return true;
    std::vector<unsigned char> out{static_cast<unsigned char>(reply.size() >> 8),
                                   static_cast<unsigned char>(reply.size())};
    out.insert(out.end(), reply.begin(), reply.end());
    // Two writes, so the client may see the answer in pieces.
    const std::size_t half = out.size() / 2;
    ::send(fd, out.data(), half, MSG_NOSIGNAL);
    std::this_thread::sleep_for(2ms);
    ::send(fd, out.data() + half, out.size() - half, MSG_NOSIGNAL);
    return true;
  }

  static void put16(std::vector<unsigned char>& out, unsigned v) {
    out.push_back(static_cast<unsigned char>(v >> 8));
    out.push_back(static_cast<unsigned char>(v));
  }

  // The question's name; its end is at `*end` (QTYPE follows).
  static std::string question_name(const std::vector<unsigned char>& q, std::size_t* end = nullptr) {
    std::size_t pos = 12;  // labels from offset 12 (RFC 1035 §4.1.2)
    std::string name;
    while (pos < q.size() && q[pos] != 0) {
      const std::size_t len = q[pos++];
      if (pos + len > q.size()) return {};
      if (!name.empty()) name += '.';
      name.append(reinterpret_cast<const char*>(&q[pos]), len);
      pos += len;
    }
    if (end != nullptr) *end = pos;
    return name;
  }

  std::vector<unsigned char> answer(const std::vector<unsigned char>& q, bool tcp) {
    std::size_t pos = 0;
    const std::string name = question_name(q, &pos);
    if (pos + 5 > q.size()) return {};
    const std::size_t question_end = pos + 5;
    const unsigned qtype = (q[pos + 1] << 8) | q[pos + 2];
    {
      const std::lock_guard lock(mutex_);
      ++counts_[{name, static_cast<std::uint16_t>(qtype)}];
    }
    if (name == "slow.test") return {};

    unsigned flags = 0x8000 | (q[2] << 8 & 0x0100) | 0x0080;  // QR, RD copied, RA
    unsigned ttl = 300;
    std::vector<std::vector<unsigned char>> rdata;
    if (name == "missing.test") {
      flags |= 3;  // NXDOMAIN
    } else if (name == "servfail.test") {
      flags |= 2;
    } else if (name == "refused.test") {
      flags |= 5;
    } else if (name == "nodata.test") {
    } else if (name == "dual.test") {
      if (qtype == type_a) rdata = {{192, 0, 2, 10}, {192, 0, 2, 11}};
      if (qtype == type_aaaa) {
        rdata = {{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10},
                 {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11}};
      }
    } else if (name.rfind("tc-", 0) == 0 && !tcp) {
      flags |= 0x0200;  // TC: truncated, ask again over TCP (RFC 1035 §4.2.1)
    } else if (name.rfind("tc-", 0) == 0) {
      if (qtype == type_a) {
        for (unsigned char i = 1; i <= 40; ++i) rdata.push_back({192, 0, 2, i});
      }
    } else {
      if (name.rfind("ttl-", 0) == 0) ttl = static_cast<unsigned>(std::stoul(name.substr(4)));
      if (qtype == type_a) rdata = {{192, 0, 2, 1}};
    }

    std::vector<unsigned char> out(q.begin(), q.begin() + 2);  // ID
    put16(out, flags);
    put16(out, 1);
    put16(out, static_cast<unsigned>(rdata.size()));
    put16(out, 0);
    put16(out, 0);
    out.insert(out.end(), q.begin() + 12, q.begin() + static_cast<std::ptrdiff_t>(question_end));
    for (const auto& rr : rdata) {
      put16(out, 0xC00C);  // the name of the question
      put16(out, qtype);
      put16(out, 1);
      put16(out, ttl >> 16);
      put16(out, ttl & 0xFFFF);
      put16(out, static_cast<unsigned>(rr.size()));
      out.insert(out.end(), rr.begin(), rr.end());
    }
    return out;
  }

  int udp_ = -1;
  int tcp_ = -1;
  std::uint16_t port_ = 0;
  std::vector<int> connections_;  // the server thread's only
  std::atomic<bool> stop_{false};
  std::atomic<int> tcp_queries_{0};
  std::thread thread_;
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::uint16_t>, int> counts_;
};

// Runs `body` (a coroutine factory) on `ctx` until everything on it is done,
// rethrowing what escaped the coroutine (a failed REQUIRE).
template <class Body>
void run(asio::io_context& ctx, Body body) {
  std::exception_ptr escaped;
  asio::co_spawn(ctx, body(), [&](std::exception_ptr e) { escaped = e; });
  ctx.run();
  if (escaped) std::rethrow_exception(escaped);
}

asio::awaitable<void> sleep_for(clock_type::duration d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(asio::use_awaitable);
}

dns_options options_for(const fake_dns_server& server) {
  dns_options options;
  options.servers = {server.address()};
  options.timeout = 300ms;
  return options;
}

asio::ip::address ip(const char* text) { return asio::ip::make_address(text); }

bool contains(const std::vector<asio::ip::address>& list, const asio::ip::address& a) {
  return std::find(list.begin(), list.end(), a) != list.end();
}

// Sets an environment variable for one scope.
class scoped_env {
 public:
  scoped_env(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~scoped_env() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace

TEST_CASE("dns_errc has its own category and compares through boost::system", "[integration][dns]") {
  const boost::system::error_code ec = dns_errc::timeout;
  CHECK(ec == dns_errc::timeout);
  CHECK(ec != dns_errc::not_found);
  CHECK(std::string(ec.category().name()) == "egressd.dns");
  CHECK(ec.message() == "timeout");
  const std::error_code std_ec = ec;
  CHECK(std_ec == dns_errc::timeout);
  CHECK(std::string(std_ec.category().name()) == "egressd.dns");
  CHECK(std_ec.message() == "timeout");
  std::ostringstream os;
  os << dns_errc::no_data;
  CHECK(os.str() == "no_data");
}

TEST_CASE("dns_cache: expiry, replacement and a bounded size", "[integration][dns]") {
  const auto t0 = clock_type::now();
  const auto addresses = std::make_shared<const std::vector<asio::ip::address>>(
      std::vector{ip("192.0.2.1")});

  SECTION("an entry is valid strictly before its expiry") {
    dns_cache cache;
    cache.store("a.test", dns_cache_entry{std::nullopt, addresses, t0 + 10s}, t0);
    REQUIRE(cache.find("a.test", t0 + 9s));
    CHECK(*cache.find("a.test", t0 + 9s)->addresses == *addresses);
    CHECK_FALSE(cache.find("a.test", t0 + 10s));
    CHECK_FALSE(cache.find("b.test", t0));
  }
  SECTION("an expired entry is not stored; a new one replaces the old") {
    dns_cache cache;
    cache.store("a.test", dns_cache_entry{std::nullopt, addresses, t0}, t0);
    CHECK(cache.size() == 0);
    cache.store("a.test", dns_cache_entry{std::nullopt, addresses, t0 + 10s}, t0);
    cache.store("a.test", dns_cache_entry{dns_errc::not_found, nullptr, t0 + 20s}, t0);
    REQUIRE(cache.find("a.test", t0 + 15s));
    CHECK(cache.find("a.test", t0 + 15s)->failure == dns_errc::not_found);
    CHECK(cache.size() == 1);
  }
  SECTION("full: expired entries go first, then arbitrary ones; the bound holds") {
    dns_cache cache(32);
    for (int i = 0; i < 32; ++i) {
      cache.store("old" + std::to_string(i), dns_cache_entry{std::nullopt, addresses, t0 + 1s}, t0);
    }
    CHECK(cache.size() == 32);
    cache.store("new.test", dns_cache_entry{std::nullopt, addresses, t0 + 60s}, t0 + 2s);
    CHECK(cache.size() == 1);  // every old entry had expired
    for (int i = 0; i < 1000; ++i) {
      cache.store("n" + std::to_string(i), dns_cache_entry{std::nullopt, addresses, t0 + 60s}, t0 + 2s);
      REQUIRE(cache.size() <= 32);
    }
    CHECK(cache.find("n999", t0 + 3s));  // the newest is always kept
  }
}

TEST_CASE("resolver: IP literals and bad names need no query", "[integration][dns]") {
  fake_dns_server server;
  asio::io_context ctx;
  dns_cache cache;
  resolver r(ctx.get_executor(), cache, options_for(server));
  run(ctx, [&]() -> asio::awaitable<void> {
    const std::pair<const char*, const char*> literals[] = {
        {"192.0.2.5", "192.0.2.5"}, {"2001:db8::1", "2001:db8::1"}, {"[2001:db8::1]", "2001:db8::1"}};
    for (const auto& [literal, expected] : literals) {
      auto [ec, answer] = co_await r.resolve(literal);
      CHECK_FALSE(ec);
      CHECK(answer.addresses == std::vector{ip(expected)});
      CHECK_FALSE(answer.from_cache);
    }
    auto [ec1, a1] = co_await r.resolve("");
    CHECK(ec1 == dns_errc::bad_name);
    auto [ec2, a2] = co_await r.resolve(std::string(254, 'a'));
    CHECK(ec2 == dns_errc::bad_name);
    auto [ec3, a3] = co_await r.resolve(std::string(64, 'a') + ".test");  // label > 63
    CHECK(ec3 == dns_errc::bad_name);
  });
  CHECK(server.total() == 0);
  CHECK(cache.size() == 0);
}

TEST_CASE("resolver: localhost comes from /etc/hosts, never from DNS", "[integration][dns]") {
  fake_dns_server server;
  asio::io_context ctx;
  dns_cache cache;
  resolver r(ctx.get_executor(), cache, options_for(server));
  run(ctx, [&]() -> asio::awaitable<void> {
    auto [ec, answer] = co_await r.resolve("localhost");
    REQUIRE_FALSE(ec);
    CHECK((contains(answer.addresses, ip("127.0.0.1")) || contains(answer.addresses, ip("::1"))));
    CHECK_FALSE(answer.from_cache);
    auto [ec2, again] = co_await r.resolve("localhost");
    CHECK_FALSE(ec2);
    CHECK(again.from_cache);
    CHECK(again.addresses == answer.addresses);
  });
  CHECK(server.queries("localhost") == 0);
}

TEST_CASE("resolver: a hosts file (CARES_HOSTS) is read before DNS and cached 5 s",
          "[integration][dns]") {
  fake_dns_server server;
  char path[] = "/tmp/egressd-dns-test-hosts-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::ofstream(path) << "192.0.2.77 both.test\n2001:db8::77 both.test\n";
  const scoped_env hosts("CARES_HOSTS", path);

  SECTION("hosts_file = true") {
    asio::io_context ctx;
    dns_cache cache;
    resolver r(ctx.get_executor(), cache, options_for(server));
    const auto t0 = clock_type::now();
    run(ctx, [&]() -> asio::awaitable<void> {
      auto [ec, answer] = co_await r.resolve("both.test");
      REQUIRE_FALSE(ec);
      CHECK(contains(answer.addresses, ip("192.0.2.77")));
      CHECK(contains(answer.addresses, ip("2001:db8::77")));
    });
    const auto t1 = clock_type::now();
    CHECK(server.queries("both.test") == 0);
    CHECK(cache.find("both.test", t0 + 4900ms));
    CHECK_FALSE(cache.find("both.test", t1 + 5s));
  }
  SECTION("hosts_file = false") {
    asio::io_context ctx;
    dns_cache cache;
    auto options = options_for(server);
    options.hosts_file = false;
    resolver r(ctx.get_executor(), cache, options);
    run(ctx, [&]() -> asio::awaitable<void> {
      auto [ec, answer] = co_await r.resolve("both.test");
      REQUIRE_FALSE(ec);
      CHECK(answer.addresses == std::vector{ip("192.0.2.1")});
    });
    CHECK(server.queries("both.test") == 2);
  }
  ::unlink(path);
}

TEST_CASE("resolver: answers are cached for their TTL, capped and floored", "[integration][dns]") {
  fake_dns_server server;
  asio::io_context ctx;
  dns_cache cache;
  auto options = options_for(server);
  options.max_ttl = 120s;
  resolver r(ctx.get_executor(), cache, options);
  const auto t0 = clock_type::now();
  run(ctx, [&]() -> asio::awaitable<void> {
    auto [ec, answer] = co_await r.resolve("ttl-60.test");
    REQUIRE_FALSE(ec);
    CHECK(answer.addresses == std::vector{ip("192.0.2.1")});
    CHECK_FALSE(answer.from_cache);
    CHECK(server.queries("ttl-60.test", type_a) == 1);
    CHECK(server.queries("ttl-60.test", type_aaaa) == 1);

    auto [ec2, again] = co_await r.resolve("ttl-60.test");
    CHECK_FALSE(ec2);
    CHECK(again.from_cache);
    CHECK(again.addresses == answer.addresses);
    CHECK(server.queries("ttl-60.test") == 2);  // no second query

    for (const char* name : {"ttl-100000.test", "ttl-0.test"}) {
      auto [ec3, other] = co_await r.resolve(name);
      CHECK_FALSE(ec3);
    }
  });
  const auto t1 = clock_type::now();
  CHECK(cache.find("ttl-60.test", t0 + 59s));
  CHECK_FALSE(cache.find("ttl-60.test", t1 + 60s));
  CHECK(cache.find("ttl-100000.test", t0 + 119s));      // capped by max_ttl
  CHECK_FALSE(cache.find("ttl-100000.test", t1 + 120s));
  CHECK(cache.find("ttl-0.test", t0 + 900ms));            // 1 s floor
  CHECK_FALSE(cache.find("ttl-0.test", t1 + 1s));
}

TEST_CASE("resolver: the worker's own copy of an answer expires with the shared entry", "[integration][dns]") {
  fake_dns_server server;
  asio::io_context ctx;
  dns_cache cache;
  resolver r(ctx.get_executor(), cache, options_for(server));
  run(ctx, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) {  // a query, a hit in the shared cache, a hit in the worker's copy
      auto [ec, answer] = co_await r.resolve("ttl-0.test");
      REQUIRE_FALSE(ec);
      CHECK(answer.from_cache == (i > 0));
    }
    CHECK(server.queries("ttl-0.test") == 2);  // A and AAAA, once
    asio::steady_timer t(co_await asio::this_coro::executor, 1100ms);  // past the 1 s floor
    co_await t.async_wait(asio::use_awaitable);
    auto [ec, answer] = co_await r.resolve("ttl-0.test");
    REQUIRE_FALSE(ec);
    CHECK_FALSE(answer.from_cache);
    CHECK(server.queries("ttl-0.test") == 4);  // asked again
  });
}

TEST_CASE("resolver: negative answers are cached for negative_ttl, failures are not",
          "[integration][dns]") {
  fake_dns_server server;
  asio::io_context ctx;
  dns_cache cache;
  resolver r(ctx.get_executor(), cache, options_for(server));
  const auto t0 = clock_type::now();
  run(ctx, [&]() -> asio::awaitable<void> {
    auto [ec, answer] = co_await r.resolve("missing.test");
    CHECK(ec == dns_errc::not_found);
    CHECK_FALSE(answer.from_cache);
    const int asked = server.queries("missing.test");
    CHECK(asked >= 1);
    auto [ec2, again] = co_await r.resolve("missing.test");
    CHECK(ec2 == dns_errc::not_found);
    CHECK(again.from_cache);
    CHECK(server.queries("missing.test") == asked);

    auto [ec3, nodata] = co_await r.resolve("nodata.test");
    CHECK(ec3 == dns_errc::no_data);
    auto [ec4, nodata2] = co_await r.resolve("nodata.test");
    CHECK(ec4 == dns_errc::no_data);
    CHECK(nodata2.from_cache);

    auto [ec5, fail] = co_await r.resolve("servfail.test");
    CHECK(ec5 == dns_errc::server_failure);
    auto [ec6, fail2] = co_await r.resolve("servfail.test");
    CHECK(ec6 == dns_errc::server_failure);
    CHECK_FALSE(fail2.from_cache);

    auto [ec7, refused] = co_await r.resolve("refused.test");
    // c-ares 1.18 reports REFUSED from every try as "could not contact DNS servers".
    CHECK((ec7 == dns_errc::refused || ec7 == dns_errc::server_failure));
    CHECK_FALSE(refused.from_cache);
  });
  const auto t1 = clock_type::now();
  CHECK(cache.find("missing.test", t0 + 9s));
  CHECK_FALSE(cache.find("missing.test", t1 + 10s));
  CHECK_FALSE(cache.find("servfail.test", t0));
}

TEST_CASE("resolver: both families, interleaved", "[integration][dns]") {
  fake_dns_server server;
  asio::io_context ctx;
  dns_cache cache;
  resolver r(ctx.get_executor(), cache, options_for(server));
  run(ctx, [&]() -> asio::awaitable<void> {
    auto [ec, answer] = co_await r.resolve("dual.test");
    REQUIRE_FALSE(ec);
    REQUIRE(answer.addresses.size() == 4);
    for (const char* a : {"192.0.2.10", "192.0.2.11", "2001:db8::10", "2001:db8::11"}) {
      CHECK(contains(answer.addresses, ip(a)));
    }
    for (std::size_t i = 1; i < answer.addresses.size(); ++i) {
      CHECK(answer.addresses[i].is_v4() != answer.addresses[i - 1].is_v4());
    }
  });
}

TEST_CASE("resolver: a truncated answer is asked again over TCP", "[integration][dns]") {
  fake_dns_server server;
  asio::io_context ctx;
  dns_cache cache;
  resolver r(ctx.get_executor(), cache, options_for(server));
  run(ctx, [&]() -> asio::awaitable<void> {
    for (const char* name : {"tc-one.test", "tc-two.test"}) {
      auto [ec, answer] = co_await r.resolve(name);
      CHECK_FALSE(ec);
      CHECK(answer.addresses.size() == 40);
    }
  });
  CHECK(server.tcp_queries() == 4);  // A and AAAA of each name
}

TEST_CASE("resolver: a name that never answers times out within the deadline",
          "[integration][dns]") {
  fake_dns_server server;
  asio::io_context ctx;
  dns_cache cache;
  resolver r(ctx.get_executor(), cache, options_for(server));  // timeout 300 ms
  run(ctx, [&]() -> asio::awaitable<void> {
    const auto start = clock_type::now();
    auto [ec, answer] = co_await r.resolve("slow.test");
    const auto elapsed = clock_type::now() - start;
    CHECK(ec == dns_errc::timeout);
    CHECK(answer.addresses.empty());
    CHECK(elapsed < 300ms + 700ms);
  });
  CHECK_FALSE(cache.find("slow.test", clock_type::now()));
}

TEST_CASE("resolver: a slow name does not delay another", "[integration][dns]") {
  fake_dns_server server;
  asio::io_context ctx;
  dns_cache cache;
  resolver r(ctx.get_executor(), cache, options_for(server));
  std::vector<std::string> order;
  std::map<std::string, boost::system::error_code> outcome;
  for (const char* name : {"slow.test", "fast.test"}) {
    asio::co_spawn(ctx, [&, name]() -> asio::awaitable<void> {
      auto [ec, answer] = co_await r.resolve(name);
      order.emplace_back(name);
      outcome[name] = ec;
    }, asio::detached);
  }
  ctx.run();
  CHECK(order == std::vector<std::string>{"fast.test", "slow.test"});
  CHECK_FALSE(outcome["fast.test"]);
  CHECK(outcome["slow.test"] == dns_errc::timeout);
}

TEST_CASE("resolver: concurrent lookups of one name share one query", "[integration][dns]") {
  fake_dns_server server;
  asio::io_context ctx;
  dns_cache cache;
  resolver r(ctx.get_executor(), cache, options_for(server));
  std::vector<result> results;
  for (int i = 0; i < 10; ++i) {
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
      results.push_back(co_await r.resolve("coalesce.test"));
    }, asio::detached);
  }
  ctx.run();
  REQUIRE(results.size() == 10);
  for (const auto& [ec, answer] : results) {
    CHECK_FALSE(ec);
    CHECK(answer.addresses == std::vector{ip("192.0.2.1")});
    CHECK_FALSE(answer.from_cache);
  }
  CHECK(server.queries("coalesce.test", type_a) == 1);
  CHECK(server.queries("coalesce.test", type_aaaa) == 1);
}

TEST_CASE("resolver: search domains and LOCALDOMAIN are not applied", "[integration][dns]") {
  fake_dns_server server;
  const scoped_env domain("LOCALDOMAIN", "corp.test");
  asio::io_context ctx;
  dns_cache cache;
  resolver r(ctx.get_executor(), cache, options_for(server));
  run(ctx, [&]() -> asio::awaitable<void> {
    auto [ec, answer] = co_await r.resolve("single");
    CHECK_FALSE(ec);
  });
  CHECK(server.queries("single") == 2);
  CHECK(server.queries("single.corp.test") == 0);
}

TEST_CASE("resolver: a cancelled waiter leaves; the others and the cache carry on",
          "[integration][dns]") {
  using namespace asio::experimental::awaitable_operators;
  fake_dns_server server;
  asio::io_context ctx;
  dns_cache cache;
  resolver r(ctx.get_executor(), cache, options_for(server));
  std::optional<result> patient;
  asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
    patient = co_await r.resolve("slow.test");
  }, asio::detached);
  run(ctx, [&]() -> asio::awaitable<void> {
    asio::steady_timer timer(ctx, 50ms);
    const auto start = clock_type::now();
    auto raced = co_await (r.resolve("slow.test") || timer.async_wait(asio::use_awaitable));
    CHECK(raced.index() == 1);
    CHECK(clock_type::now() - start < 250ms);
    // A lookup cancelled by the race, whose query then fills the cache: no waiter is
    // left when the answer arrives (50 ms after the question).
    asio::steady_timer quick(ctx, 0ms);
    auto raced2 = co_await (r.resolve("delay-late.test") || quick.async_wait(asio::use_awaitable));
    CHECK(raced2.index() == 1);
    CHECK_FALSE(cache.find("delay-late.test", clock_type::now()));
    co_await sleep_for(150ms);
    CHECK(cache.find("delay-late.test", clock_type::now()));
    co_await sleep_for(400ms);  // past the slow query's deadline
  });
  REQUIRE(patient);
  CHECK(patient->first == dns_errc::timeout);
}

TEST_CASE("resolver: shutdown and destruction cancel pending lookups", "[integration][dns]") {
  fake_dns_server server;
  asio::io_context ctx;
  dns_cache cache;
  auto options = options_for(server);
  options.timeout = 5s;

  SECTION("shutdown") {
    resolver r(ctx.get_executor(), cache, options);
    std::optional<result> pending;
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
      pending = co_await r.resolve("slow.test");
    }, asio::detached);
    const auto start = clock_type::now();
    run(ctx, [&]() -> asio::awaitable<void> {
      co_await r.resolve("warm.test");
      co_await sleep_for(20ms);
      r.shutdown();
      r.shutdown();  // idempotent
      auto [ec, answer] = co_await r.resolve("other.test");
      CHECK(ec == dns_errc::cancelled);
      auto [ec2, cached] = co_await r.resolve("warm.test");
      CHECK_FALSE(ec2);
      CHECK(cached.from_cache);
      auto [ec3, literal] = co_await r.resolve("192.0.2.9");
      CHECK_FALSE(ec3);
    });
    REQUIRE(pending);
    CHECK(pending->first == dns_errc::cancelled);
    CHECK(clock_type::now() - start < 2s);
  }
  SECTION("destruction") {
    auto r = std::make_unique<resolver>(ctx.get_executor(), cache, options);
    std::optional<result> pending;
    asio::co_spawn(ctx, [&]() -> asio::awaitable<void> {
      pending = co_await r->resolve("slow.test");
    }, asio::detached);
    const auto start = clock_type::now();
    run(ctx, [&]() -> asio::awaitable<void> {
      co_await sleep_for(20ms);
      r.reset();
      co_return;
    });
    REQUIRE(pending);
    CHECK(pending->first == dns_errc::cancelled);
    CHECK(clock_type::now() - start < 2s);
  }
}

TEST_CASE("resolver: workers on their own threads share the cache", "[integration][dns]") {
  fake_dns_server server;
  dns_cache cache;
  constexpr int names = 40;
  auto name = [](int i) { return "w" + std::to_string(i) + ".test"; };
  // One worker: its own thread, io_context and resolver over the shared cache; every
  // name looked up at once. Counts the failures and the answers that came from the cache.
  struct tally {
    std::atomic<int> failures{0};
    std::atomic<int> from_cache{0};
  };
  auto worker = [&](tally& t) {
    asio::io_context ctx;
    resolver r(ctx.get_executor(), cache, options_for(server));
    for (int i = 0; i < names; ++i) {
      asio::co_spawn(ctx, [&, i]() -> asio::awaitable<void> {
        auto [ec, answer] = co_await r.resolve(name(i));
        if (ec || answer.addresses != std::vector{ip("192.0.2.1")}) ++t.failures;
        if (answer.from_cache) ++t.from_cache;
      }, asio::detached);
    }
    ctx.run();
  };

  SECTION("one after the other: the second worker is answered from the first's cache") {
    tally ta, tb;
    std::thread a(worker, std::ref(ta));
    a.join();
    CHECK(ta.failures == 0);
    CHECK(ta.from_cache == 0);
    CHECK(cache.size() == names);
    std::thread b(worker, std::ref(tb));
    b.join();
    CHECK(tb.failures == 0);
    CHECK(tb.from_cache == names);  // none of b's answers needed a query
    CHECK(cache.size() == names);
    for (int i = 0; i < names; ++i) {
      INFO(name(i));
      CHECK(server.queries(name(i), type_a) == 1);  // coalesced in a, cached for b
    }
  }
  SECTION("at the same time") {
    tally ta, tb;
    std::thread a(worker, std::ref(ta));
    std::thread b(worker, std::ref(tb));
    a.join();
    b.join();
    CHECK(ta.failures == 0);
    CHECK(tb.failures == 0);
    CHECK(cache.size() == names);
    for (int i = 0; i < names; ++i) {
      INFO(name(i));
      // At most one query per worker: coalesced within a worker; both may miss the
      // cache when their lookups overlap.
      CHECK(server.queries(name(i), type_a) >= 1);
      CHECK(server.queries(name(i), type_a) <= 2);
    }
  }
}

TEST_CASE("resolver: the server list is validated", "[integration][dns]") {
  asio::io_context ctx;
  dns_cache cache;
  dns_options options;
  options.servers = {"127.0.0.1:5353", "[::1]:53", "192.0.2.53"};
  CHECK_NOTHROW(resolver(ctx.get_executor(), cache, options));
  options.servers = {"not-an-address"};
  CHECK_THROWS_AS(resolver(ctx.get_executor(), cache, options), std::runtime_error);
  options.servers = {"127.0.0.1,127.0.0.2"};
  CHECK_THROWS_AS(resolver(ctx.get_executor(), cache, options), std::runtime_error);
}
