// Micro-benchmark of the policy core (no network): compile time for N rules and the
// cost of one decision and one guard classification against them, for N = 10 ... 100,000;
// and the cost of a decision-memory lookup (a remembered hook answer) with N answers
// remembered, half for hosts and half for whole domains, clock read included.
// README "Performance": a decision against 100,000 rules in under 1 µs; compiling 100,000 rules
// in under 200 ms; the cost flat in N.
//
//   bench_policy [--quick]

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "policy/guard.hpp"
#include "policy/host.hpp"
#include "policy/memory.hpp"
#include "policy/snapshot.hpp"

using namespace egressd::policy;
using clock_type = std::chrono::steady_clock;

namespace {

// A realistic mix: exact names, *. and **. wildcards, ports, addresses and CIDRs.
rules make_rules(std::size_t n) {
  rules r;
  r.unknown = unknown_mode::deny;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string base = "svc" + std::to_string(i) + ".tenant" + std::to_string(i % 97) + ".example";
    switch (i % 6) {
      case 0: r.allow.push_back({base, {}}); break;
      case 1: r.allow.push_back({"*." + base, {}}); break;
      case 2: r.allow.push_back({"**." + base, {}}); break;
      case 3: r.allow.push_back({base + ":443", {}}); break;
      case 4: r.deny.push_back({"bad." + base, {}}); break;
      case 5:
        r.allow.push_back({std::to_string(10 + (i >> 16) % 200) + "." + std::to_string((i >> 8) & 255) + "." +
                               std::to_string(i & 255) + ".0/24",
                           {}});
        break;
    }
  }
  return r;
}

volatile unsigned sink = 0;

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const std::size_t lookups = quick ? 200000 : 2000000;
  std::printf("%-9s %12s %14s %14s %14s %14s\n", "rules", "compile_ms", "decide_ns", "decide_ip_ns", "classify_ns",
              "remembered_ns");
  for (std::size_t n : {10u, 1000u, 10000u, 100000u}) {
    const rules r = make_rules(n);
    const auto t0 = clock_type::now();
    auto compiled = compile(r);
    const auto t1 = clock_type::now();
    if (!compiled.policy) {
      std::fprintf(stderr, "compile failed: %s\n", compiled.problems.front().message.c_str());
      return 1;
    }
    const snapshot& s = *compiled.policy;

    // Hosts: subdomains of the name of a random rule k, alternately two labels deep
    // ("deep.a.") and one label deep ("nomatch."). Both kinds match when rule k is a
    // *. or **. wildcard (k % 6 == 1 or 2: about a third of the lookups, allowed) and
    // match no rule otherwise (denied as unknown): the "nomatch." prefix does not
    // make a miss. The addresses 10.X.3.4 below are in a rule's /24 when X % 3 == 2 and
    // that rule exists (rule X * 256 + 3 < N): none at N = 10, about a third at 100,000.
    std::vector<host_result> hosts;
    std::mt19937 rng(42);
    for (int i = 0; i < 1024; ++i) {
      const std::size_t k = rng() % n;
      std::string h = (i % 2 ? "deep.a.svc" : "nomatch.svc") + std::to_string(k) + ".tenant" + std::to_string(k % 97) +
                      ".example";
      hosts.push_back(canonicalize_host(h));
    }
    std::vector<host_result> ips;
    for (int i = 0; i < 1024; ++i) ips.push_back(canonicalize_host("10." + std::to_string(rng() % 256) + ".3.4"));

    const auto t2 = clock_type::now();
    for (std::size_t i = 0; i < lookups; ++i) {
      sink = sink + static_cast<unsigned>(decide(s, {&hosts[i & 1023], 443, std::nullopt}).result);
    }
    const auto t3 = clock_type::now();
    for (std::size_t i = 0; i < lookups; ++i) {
      sink = sink + static_cast<unsigned>(decide(s, {&ips[i & 1023], 443, std::nullopt}).result);
    }
    const auto t4 = clock_type::now();
    const canonical_host name = *canonicalize_host("svc1.tenant1.example").host;
    for (std::size_t i = 0; i < lookups; ++i) {
      const auto& address = *ips[i & 1023].host->address;
      const auto verdict = classify(s, name, decision_reason::allowed_by_rule, address, 443, {});
      sink = sink + static_cast<unsigned>(verdict.refused);
    }
    const auto t5 = clock_type::now();
    // The memory: N answers, for the hosts and domains the lookups name (about half hit).
    decision_memory memory;
    for (std::size_t i = 0; i < n; ++i) {
      memory_entry e;
      e.scope = i % 2 ? answer_scope::domain : answer_scope::host;
      e.name = (i % 2 ? "tenant" + std::to_string(i % 97) + ".example"
                      : "deep.a.svc" + std::to_string(i) + ".tenant" + std::to_string(i % 97) + ".example");
      e.result = outcome::allow;
      e.lifetime = answer_lifetime::always;
      memory.remember(std::move(e));
    }
    const auto t6 = clock_type::now();
    for (std::size_t i = 0; i < lookups; ++i) {
      const auto* hit = memory.lookup(hosts[i & 1023].host->text, 443, std::chrono::system_clock::now());
      sink = sink + (hit ? 1u : 0u);
    }
    const auto t7 = clock_type::now();
    auto ns = [&](auto a, auto b) {
      return std::chrono::duration<double, std::nano>(b - a).count() / static_cast<double>(lookups);
    };
    std::printf("%-9zu %12.1f %14.1f %14.1f %14.1f %14.1f\n", n,
                std::chrono::duration<double, std::milli>(t1 - t0).count(), ns(t2, t3), ns(t3, t4), ns(t4, t5),
                ns(t6, t7));
  }
  return 0;
}
