// Fuzzes the policy core's parsers: host canonicalisation, the pattern grammars,
// address ranges and the port split; then compiles what parsed and decides the input
// as a host against it. Checks invariants beyond "does not crash":
//  - a canonical host canonicalises to itself (idempotence);
//  - a canonical name contains only [a-z0-9._-], no empty label, at most 253 chars;
//  - an IP literal's text parses back to the same address.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "policy/guard.hpp"
#include "policy/host.hpp"
#include "policy/pattern.hpp"
#include "policy/snapshot.hpp"

using namespace egressd::policy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const host_result h = canonicalize_host(input);
  if (h.ok()) {
    const auto& c = *h.host;
    const host_result again = canonicalize_host(c.text);
    if (!again.ok() || again.host->text != c.text) std::abort();
    if (c.kind == host_kind::name) {
      if (c.text.empty() || c.text.size() > 253 || !is_name_text(c.text)) std::abort();
      for (char ch : c.text)
        if (ch >= 'A' && ch <= 'Z') std::abort();
    } else {
      auto parsed = parse_ip(c.text);
      if (!parsed || *parsed != *c.address) std::abort();
    }
  }

  (void)split_pattern_port(input);
  (void)parse_address_range(input);

  rules r;
  for (grammar g : {grammar::egressd, grammar::srt}) {
    for (list_kind l : {list_kind::allow, list_kind::deny}) {
      auto p = parse_pattern(input, l, g);
      if (p.value && p.value->kind == pattern_kind::never && p.value->note.empty()) std::abort();
    }
  }
  r.allow.push_back({std::string(input), {}});
  r.deny.push_back({"*.deny." + std::string(input), {}});
  auto compiled = compile(r);
  if (compiled.policy) {
    const decision d = decide(*compiled.policy, {&h, 443, std::nullopt});
    if (!h.ok() && d.reason != decision_reason::invalid_host) std::abort();
    if (h.ok() && h.host->is_ip())
      (void)classify(*compiled.policy, *h.host, d.reason, *h.host->address, 443, {});
  }
  return 0;
}
