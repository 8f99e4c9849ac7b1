// proxy/idle_pool.hpp without sockets: which entry a take gets, what a put evicts, expiry.

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>

#include "proxy/idle_pool.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct conn {
  std::string key;
  int id = 0;
};

using pool_type = egressd::proxy::idle_pool<conn>;

const clock_type::time_point t0{};

std::size_t hash_of(const std::string& key) { return std::hash<std::string>{}(key); }

std::optional<conn> put(pool_type& p, const std::string& key, int id, clock_type::time_point expires,
                        pool_type::bounds b = {4, 16}) {
  return p.put(hash_of(key), conn{key, id}, expires, b, [&](const conn& c) { return c.key == key; });
}

std::optional<conn> take(pool_type& p, const std::string& key, clock_type::time_point now) {
  return p.take(hash_of(key), now, [&](const conn& c) { return c.key == key; });
}

}  // namespace

TEST_CASE("a take gets the entry of its key parked last, once", "[unit][idle_pool]") {
  pool_type p;
  CHECK_FALSE(put(p, "a:80", 1, t0 + 10s));
  CHECK_FALSE(put(p, "b:80", 2, t0 + 11s));
  CHECK_FALSE(put(p, "a:80", 3, t0 + 12s));
  REQUIRE(p.size() == 3);
  auto c = take(p, "a:80", t0);
  REQUIRE(c);
  CHECK(c->id == 3);
  c = take(p, "a:80", t0);
  REQUIRE(c);
  CHECK(c->id == 1);
  CHECK_FALSE(take(p, "a:80", t0));
  CHECK(p.size() == 1);
  CHECK(take(p, "b:80", t0)->id == 2);
  CHECK(p.empty());
}

TEST_CASE("a take never gets another key's entry, even with the same hash", "[unit][idle_pool]") {
  pool_type p;
  p.put(42, conn{"a", 1}, t0 + 10s, {4, 16}, [](const conn& c) { return c.key == "a"; });
  CHECK_FALSE(p.take(42, t0, [](const conn& c) { return c.key == "b"; }));
  CHECK_FALSE(p.take(43, t0, [](const conn& c) { return c.key == "a"; }));
  CHECK(p.take(42, t0, [](const conn& c) { return c.key == "a"; }));
}

TEST_CASE("an expired entry is not taken and is removed by remove_expired", "[unit][idle_pool]") {
  pool_type p;
  put(p, "a:80", 1, t0 + 10s);
  put(p, "a:80", 2, t0 + 20s);
  CHECK(take(p, "a:80", t0 + 15s)->id == 2);
  CHECK_FALSE(take(p, "a:80", t0 + 15s));  // id 1 expired at 10 s
  CHECK(p.size() == 1);
  CHECK(p.remove_expired(t0 + 9s) == 0);
  CHECK(p.remove_expired(t0 + 10s) == 1);
  CHECK(p.empty());
}

TEST_CASE("a full key evicts its oldest entry, not another key's", "[unit][idle_pool]") {
  pool_type p;
  const pool_type::bounds b{2, 16};
  put(p, "b:80", 100, t0 + 1s, b);
  CHECK_FALSE(put(p, "a:80", 1, t0 + 10s, b));
  CHECK_FALSE(put(p, "a:80", 2, t0 + 11s, b));
  auto out = put(p, "a:80", 3, t0 + 12s, b);
  REQUIRE(out);
  CHECK(out->id == 1);
  CHECK(p.size() == 3);
  CHECK(take(p, "a:80", t0)->id == 3);
  CHECK(take(p, "a:80", t0)->id == 2);
  CHECK(take(p, "b:80", t0)->id == 100);
}

TEST_CASE("a full pool evicts its oldest entry of any key", "[unit][idle_pool]") {
  pool_type p;
  const pool_type::bounds b{4, 3};
  put(p, "a:80", 1, t0 + 12s, b);
  put(p, "b:80", 2, t0 + 10s, b);
  put(p, "c:80", 3, t0 + 11s, b);
  auto out = put(p, "d:80", 4, t0 + 13s, b);
  REQUIRE(out);
  CHECK(out->id == 2);
  CHECK(p.size() == 3);
  CHECK_FALSE(take(p, "b:80", t0));
}

TEST_CASE("bounds of zero keep nothing; a lowered total shrinks the pool", "[unit][idle_pool]") {
  pool_type p;
  auto out = put(p, "a:80", 1, t0 + 10s, {0, 16});
  REQUIRE(out);
  CHECK(out->id == 1);
  out = put(p, "a:80", 2, t0 + 10s, {4, 0});
  REQUIRE(out);
  CHECK(out->id == 2);
  CHECK(p.empty());

  for (int i = 0; i < 5; ++i) put(p, "k" + std::to_string(i), i, t0 + std::chrono::seconds(10 + i), {4, 16});
  REQUIRE(p.size() == 5);
  put(p, "new", 9, t0 + 30s, {4, 2});
  CHECK(p.size() == 2);
  CHECK(take(p, "new", t0)->id == 9);
  CHECK(take(p, "k4", t0)->id == 4);  // the newest of the old ones stayed
}

TEST_CASE("remove_if hands each removed entry to the sink", "[unit][idle_pool]") {
  pool_type p;
  for (int i = 0; i < 6; ++i) put(p, "k" + std::to_string(i % 3), i, t0 + 10s);
  int sum = 0;
  const auto n = p.remove_if([](const conn& c) { return c.key == "k1"; }, [&](conn&& c) { sum += c.id; });
  CHECK(n == 2);
  CHECK(sum == 1 + 4);
  CHECK(p.size() == 4);
  CHECK_FALSE(take(p, "k1", t0));
}
