#include "policy/snapshot.hpp"

#include <algorithm>
#include <cstring>

#include "policy/presets.hpp"

namespace egressd::policy {

// ---- range_index ------------------------------------------------------------------

std::size_t snapshot::range_index::key_hash::operator()(const std::array<std::uint8_t, 16>& k) const noexcept {
  std::uint64_t a, b;
  std::memcpy(&a, k.data(), 8);
  std::memcpy(&b, k.data() + 8, 8);
  return std::hash<std::uint64_t>{}(a * 0x9E3779B97F4A7C15ULL ^ b);
}

void snapshot::range_index::add(const address_range& r, entry e) {
  auto& tables = r.base.is_v4() ? v4_ : v6_;
  auto it = std::find_if(tables.begin(), tables.end(), [&](const auto& t) { return t.first == r.prefix; });
  if (it == tables.end()) {
    tables.emplace_back(r.prefix, table{});
    std::sort(tables.begin(), tables.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    it = std::find_if(tables.begin(), tables.end(), [&](const auto& t) { return t.first == r.prefix; });
  }
  it->second[r.base.bytes].push_back(e);
}

namespace {
std::optional<rule_id> first_fitting(const std::vector<snapshot::entry>& entries, std::uint16_t port) noexcept {
  for (const auto& e : entries)
    if (e.port == 0 || e.port == port) return e.rule;
  return std::nullopt;
}
}  // namespace

std::optional<rule_id> snapshot::range_index::find(const ip_address& a, std::uint16_t port) const noexcept {
  const auto& tables = a.is_v4() ? v4_ : v6_;
  for (const auto& [prefix, t] : tables) {
    auto it = t.find(mask(a, prefix).bytes);
    if (it == t.end()) continue;
    if (auto r = first_fitting(it->second, port)) return r;
  }
  return std::nullopt;
}

// ---- matching ---------------------------------------------------------------------

std::optional<rule_id> snapshot::match(list_kind list, const canonical_host& host, const host_key* key,
                                       std::uint16_t port) const noexcept {
  const list_index& idx = index(list);
  if (host.is_ip()) {
    // Wildcards never match IP literals; only address entries and '*' do.
    if (auto r = idx.addresses.find(*host.address, port)) return r;
    return first_fitting(idx.any, port);
  }
  if (auto r = idx.names.match(*key, port)) return r;
  return first_fitting(idx.any, port);
}

std::optional<rule_id> snapshot::match_address(list_kind list, const ip_address& a, std::uint16_t port) const noexcept {
  return index(list).addresses.find(a, port);
}

std::optional<rule_id> snapshot::match_listed(const ip_address& a) const noexcept { return listed_.find(a, 0); }

decision decide(const snapshot& policy, const request_facts& facts) noexcept {
  if (facts.host == nullptr || !facts.host->ok() || facts.port == 0)
    return {outcome::deny, decision_reason::invalid_host, no_rule};
  const canonical_host& host = *facts.host->host;
  host_key key;
  if (!host.is_ip()) key = make_host_key(host.text);
  const host_key* k = host.is_ip() ? nullptr : &key;
  if (auto r = policy.match(list_kind::deny, host, k, facts.port))
    return {outcome::deny, decision_reason::denied_by_rule, *r};
  if (auto r = policy.match(list_kind::allow, host, k, facts.port))
    return {outcome::allow, decision_reason::allowed_by_rule, *r};
  if (facts.remembered) {
    return *facts.remembered == outcome::allow ? decision{outcome::allow, decision_reason::remembered_allow, no_rule}
                                               : decision{outcome::deny, decision_reason::remembered_deny, no_rule};
  }
  switch (policy.unknown()) {
    case unknown_mode::ask: return {outcome::ask, decision_reason::unknown_ask, no_rule};
    case unknown_mode::allow: return {outcome::allow, decision_reason::report_only, no_rule};
    case unknown_mode::deny: break;
  }
  return {outcome::deny, decision_reason::unknown_denied, no_rule};
}

// ---- compile ----------------------------------------------------------------------

namespace {

struct compiler {
  const compile_options& options;
  std::vector<rule_info>& rules;
  std::vector<compile_problem>& problems;

  void problem(bool warning, const source_location& where, std::string_view entry, std::string message,
               std::string hint = {}) {
    problems.push_back({warning, where, std::string(entry), std::move(message), std::move(hint)});
  }

  bool over_public_suffix(std::string_view suffix) const {
    if (suffix.find('.') == std::string_view::npos) return true;
    return options.is_public_suffix && options.is_public_suffix(suffix);
  }
};

}  // namespace

compile_result compile(const rules& input, const compile_options& options) {
  auto out = std::make_shared<snapshot>();
  compile_result result;
  out->unknown_ = input.unknown;
  out->syntax_ = input.syntax;
  out->allow_private_ = input.guard.allow_private;
  out->rules_.reserve(input.allow.size() + input.deny.size() + input.guard.deny_ranges.size());
  compiler c{options, out->rules_, result.problems};

  // Adds one parsed pattern to the list index; presets recurse once.
  auto add = [&](auto& self, list_kind list, const pattern& p, std::string_view text, const source_location& where,
                 std::string_view preset_name) -> void {
    auto& idx = list == list_kind::allow ? out->allow_ : out->deny_;
    auto new_rule = [&] {
      out->rules_.push_back({std::string(text), list, std::string(preset_name), where});
      return static_cast<rule_id>(out->rules_.size() - 1);
    };
    switch (p.kind) {
      case pattern_kind::exact: idx.names.add(p.name, name_index::kind::exact, {new_rule(), p.port}); break;
      case pattern_kind::subdomains:
      case pattern_kind::apex_and_subdomains: {
        // Only a broad allow is dangerous: denying every name under a public suffix
        // (`*.ru`, `*.co.uk`) is a legitimate, if blunt, rule.
        if (list == list_kind::allow && c.over_public_suffix(p.name)) {
          c.problem(false, where, text,
                    "a wildcard directly over the public suffix '" + p.name +
                        "' would cover every domain registered under it",
                    "name the registrable domain, e.g. *.example." + p.name);
          return;
        }
        if (list == list_kind::allow && preset_name.empty() && c.options.is_platform_suffix &&
            c.options.is_platform_suffix(p.name)) {
          c.problem(true, where, text,
                    "'" + p.name + "' is a hosting platform's suffix: this allows every site anyone hosts under it",
                    "name the sites you need, e.g. myproject." + p.name);
        }
        idx.names.add(p.name, p.kind == pattern_kind::subdomains ? name_index::kind::subdomains : name_index::kind::apex,
                      {new_rule(), p.port});
        break;
      }
      case pattern_kind::any: idx.any.push_back({new_rule(), p.port}); break;
      case pattern_kind::address: idx.addresses.add(p.range, {new_rule(), p.port}); break;
      case pattern_kind::never:
        c.problem(true, where, text, p.note);
        new_rule();  // kept, as sandbox-runtime keeps it, so `check` can list it
        break;
      case pattern_kind::preset: {
        if (!preset_name.empty()) {
          c.problem(false, where, text, "presets cannot include other presets");
          return;
        }
        const preset* ps = find_preset(p.name);
        if (!ps) {
          std::string known;
          for (const auto& q : presets()) known += (known.empty() ? "@" : ", @") + std::string(q.name);
          c.problem(false, where, text, "unknown preset '@" + p.name + "'", "known presets: " + known);
          return;
        }
        const std::string at_name = "@" + p.name;
        for (const auto& line : preset_entries(*ps)) {
          auto parsed = parse_pattern(line.text, list, grammar::egressd);
          if (!parsed.value) {
            c.problem(false, where, line.text,
                      "preset " + at_name + " line " + std::to_string(line.line) + ": " + parsed.error.message);
            continue;
          }
          self(self, list, *parsed.value, line.text, where, at_name);
        }
        break;
      }
    }
  };

  auto add_list = [&](list_kind list, const std::vector<rule_entry>& entries) {
    for (const auto& e : entries) {
      auto parsed = parse_pattern(e.text, list, input.syntax);
      if (!parsed.value) {
        c.problem(false, e.where, e.text, parsed.error.message, parsed.error.hint);
        continue;
      }
      add(add, list, *parsed.value, e.text, e.where, {});
    }
  };
  add_list(list_kind::deny, input.deny);
  add_list(list_kind::allow, input.allow);

  for (const auto& e : input.guard.deny_ranges) {
    auto r = parse_address_range(e.text);
    if (!r) {
      c.problem(false, e.where, e.text, "not an address or CIDR range", "write 10.0.0.0/8, 192.0.2.1 or fd00::/8");
      continue;
    }
    out->rules_.push_back({e.text, list_kind::deny, {}, e.where});
    out->listed_.add(*r, {static_cast<rule_id>(out->rules_.size() - 1), 0});
  }

  out->allow_.names.freeze();
  out->deny_.names.freeze();
  const bool failed = std::any_of(result.problems.begin(), result.problems.end(),
                                  [](const compile_problem& p) { return !p.warning; });
  if (!failed) result.policy = std::move(out);
  return result;
}

}  // namespace egressd::policy
