#include "policy/memory.hpp"

#include <algorithm>

namespace egressd::policy {

std::string_view to_string(answer_scope s) noexcept {
  switch (s) {
    case answer_scope::host: return "host";
    case answer_scope::host_port: return "host_port";
    case answer_scope::domain: return "domain";
  }
  return "host";
}

std::string_view to_string(answer_lifetime l) noexcept {
  switch (l) {
    case answer_lifetime::once: return "once";
    case answer_lifetime::ttl: return "ttl";
    case answer_lifetime::always: return "always";
  }
  return "once";
}

std::optional<answer_scope> parse_answer_scope(std::string_view s) noexcept {
  if (s == "host") return answer_scope::host;
  if (s == "host_port") return answer_scope::host_port;
  if (s == "domain") return answer_scope::domain;
  return std::nullopt;
}

std::optional<answer_lifetime> parse_answer_lifetime(std::string_view s) noexcept {
  if (s == "once") return answer_lifetime::once;
  if (s == "ttl") return answer_lifetime::ttl;
  if (s == "always") return answer_lifetime::always;
  return std::nullopt;
}

// Keys are "<scope char><name>" plus "#<port>" for host_port: canonical names never
// hold '#' (IPv6 literals hold ':'), and the scope character keeps the three kinds apart.
std::string decision_memory::key_of(answer_scope scope, std::string_view name, std::uint16_t port) {
  std::string key;
  key.reserve(name.size() + 8);
  switch (scope) {
    case answer_scope::host: key += 'h'; break;
    case answer_scope::host_port: key += 'p'; break;
    case answer_scope::domain: key += 'd'; break;
  }
  key += name;
  if (scope == answer_scope::host_port) {
    key += '#';
    key += std::to_string(port);
  }
  return key;
}

bool decision_memory::remember(memory_entry e) {
  if (e.lifetime == answer_lifetime::once || e.name.empty()) return false;
  // Only allow and deny are answers; a host_port entry without a port could never be
  // looked up (port 0 is no destination).
  if (e.result == outcome::ask || (e.scope == answer_scope::host_port && e.port == 0)) return false;
  if (e.scope != answer_scope::host_port) e.port = 0;
  if (e.lifetime == answer_lifetime::always) e.expires = clock::time_point::max();
  if (e.scope == answer_scope::domain) has_domain_entries_ = true;
  if (e.scope == answer_scope::host_port) has_port_entries_ = true;
  by_key_.insert_or_assign(key_of(e.scope, e.name, e.port), std::move(e));
  return true;
}

const memory_entry* decision_memory::lookup(std::string_view host, std::uint16_t port,
                                            clock::time_point now) const noexcept {
  if (by_key_.empty()) return nullptr;
  // One key buffer, rewritten per probe: lookups allocate once at most.
  thread_local std::string key;
  const auto probe = [&](answer_scope scope, std::string_view name) -> const memory_entry* {
    key.clear();
    key += scope == answer_scope::host ? 'h' : scope == answer_scope::host_port ? 'p' : 'd';
    key += name;
    if (scope == answer_scope::host_port) {
      key += '#';
      key += std::to_string(port);
    }
    auto it = by_key_.find(key);
    if (it == by_key_.end() || it->second.expires <= now) return nullptr;
    return &it->second;
  };
  // Scopes nobody answered with cost no probe.
  if (has_port_entries_) {
    if (const auto* e = probe(answer_scope::host_port, host)) return e;
  }
  if (const auto* e = probe(answer_scope::host, host)) return e;
  if (!has_domain_entries_ || host.empty() || host.find(':') != std::string_view::npos) return nullptr;
  // Domain entries, from the longest suffix at a label boundary to the shortest. An
  // IPv4 literal never matches: its "labels" are octets, and no registrable domain is
  // numeric.
  if (host.find_first_not_of("0123456789.") == std::string_view::npos) return nullptr;
  std::string_view rest = host;
  while (!rest.empty()) {
    if (const auto* e = probe(answer_scope::domain, rest)) return e;
    const auto dot = rest.find('.');
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  return nullptr;
}

void decision_memory::note_scopes() noexcept {
  has_domain_entries_ = has_port_entries_ = false;
  for (const auto& [key, e] : by_key_) {
    has_domain_entries_ |= e.scope == answer_scope::domain;
    has_port_entries_ |= e.scope == answer_scope::host_port;
  }
}

std::size_t decision_memory::forget(std::string_view name) {
  std::size_t n = std::erase_if(by_key_, [&](const auto& kv) { return kv.second.name == name; });
  note_scopes();
  return n;
}

std::size_t decision_memory::prune(clock::time_point now) {
  std::size_t n = std::erase_if(by_key_, [&](const auto& kv) { return kv.second.expires <= now; });
  note_scopes();
  return n;
}

std::vector<memory_entry> decision_memory::entries() const {
  std::vector<memory_entry> out;
  out.reserve(by_key_.size());
  for (const auto& [key, e] : by_key_) out.push_back(e);
  std::sort(out.begin(), out.end(), [](const memory_entry& a, const memory_entry& b) {
    if (a.name != b.name) return a.name < b.name;
    if (a.scope != b.scope) return a.scope < b.scope;
    return a.port < b.port;
  });
  return out;
}

std::vector<memory_entry> decision_memory::persistent() const {
  auto all = entries();
  std::erase_if(all, [](const memory_entry& e) { return e.lifetime != answer_lifetime::always; });
  return all;
}

decision remembered_decision(const memory_entry& e) noexcept {
  return e.result == outcome::allow ? decision{outcome::allow, decision_reason::remembered_allow, no_rule}
                                    : decision{outcome::deny, decision_reason::remembered_deny, no_rule};
}

}  // namespace egressd::policy
