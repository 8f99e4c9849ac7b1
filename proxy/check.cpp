#include "proxy/check.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>

#include "config/decisions_file.hpp"
#include "policy/guard.hpp"
#include "policy/host.hpp"
#include "proxy/log.hpp"
#include "proxy/net.hpp"
#include "proxy/runtime.hpp"

namespace egressd::proxy {

namespace {
std::optional<std::uint16_t> parse_port(std::string_view s) {
  unsigned v = 0;
  if (s.empty() || s.size() > 5) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v == 0 || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

// One lookup with the daemon's resolver, on a loop of its own.
std::pair<boost::system::error_code, dns_answer> resolve_once(const std::string& name, const dns_options& options) {
  boost::asio::io_context io;
  dns_cache cache;
  resolver res(io.get_executor(), cache, options);
  std::pair<boost::system::error_code, dns_answer> out;
  boost::asio::co_spawn(
      io, [&]() -> boost::asio::awaitable<void> { out = co_await res.resolve(name); }, boost::asio::detached);
  io.run();
  return out;
}
}  // namespace

namespace {
// HOST[:PORT], [V6][:PORT] or a bare IPv6 literal, with `port` as the default.
check_target_result parse_authority(std::string_view text, std::uint16_t port) {
  check_target t;
  t.port = port;
  const auto bad_port = [&](std::string_view p) {
    return check_target_result{std::nullopt, "'" + std::string(p) + "' is not a port of 1-65535"};
  };
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) {
      t.host = std::string(text);
      return {t, {}};
    }
    t.host = std::string(text.substr(0, close + 1));
    std::string_view rest = text.substr(close + 1);
    if (rest.empty()) return {t, {}};
    if (rest.front() != ':') return {std::nullopt, "'" + std::string(text) + "' is not [IPv6]:PORT"};
    auto p = parse_port(rest.substr(1));
    if (!p) return bad_port(rest.substr(1));
    t.port = *p;
    return {t, {}};
  }
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || text.find(':') != colon) {  // no port, or a bare IPv6 literal
    t.host = std::string(text);
    return {t, {}};
  }
  auto p = parse_port(text.substr(colon + 1));
  if (!p) return bad_port(text.substr(colon + 1));
  t.host = std::string(text.substr(0, colon));
  t.port = *p;
  return {t, {}};
}
}  // namespace

check_target_result parse_check_target(std::string_view text) {
  const auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return parse_authority(text, 443);
  // A URL, as a client would be given it (RFC 3986 §3): scheme, authority, then path,
  // query or fragment, which do not matter to the policy. Only what an HTTP proxy is
  // asked for has a default port: http 80, https 443 (RFC 9110 §4.2).
  std::string scheme(text.substr(0, scheme_end));
  for (auto& c : scheme) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  std::uint16_t port = 0;
  if (scheme == "https")
    port = 443;
  else if (scheme == "http")
    port = 80;
  else
    return {std::nullopt, "'" + scheme + "://' is not a scheme check knows; give HOST:PORT or an http(s) URL"};
  std::string_view authority = text.substr(scheme_end + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  if (authority.empty()) return {std::nullopt, "'" + std::string(text) + "' names no host"};
  return parse_authority(authority, port);
}

int exit_status(const check_report& r) noexcept {
  switch (r.decision.result) {
    case policy::outcome::allow: return 0;
    case policy::outcome::ask: return 3;
    case policy::outcome::deny: break;
  }
  return 1;
}

std::optional<remembered_answers> load_remembered(const config::config& c, std::vector<std::string>& problems) {
  if (c.decisions_file.empty()) return std::nullopt;
  auto loaded = config::decisions_file::load(c.decisions_file);
  for (const auto& p : loaded.problems) problems.push_back(p.to_string());
  if (!loaded.ok()) return std::nullopt;
  remembered_answers out;
  out.file = c.decisions_file;
  for (const auto& e : loaded.entries) out.memory.remember(e);
  out.entries = std::move(loaded.entries);
  out.where = std::move(loaded.where);
  return out;
}

std::string remembered_rule_text(const policy::memory_entry& e) {
  std::string out = e.result == policy::outcome::allow ? "remembered allow " : "remembered deny ";
  switch (e.scope) {
    case policy::answer_scope::domain: return out + "**." + e.name;  // the apex and every subdomain
    case policy::answer_scope::host: return out + e.name;
    case policy::answer_scope::host_port:
      break;
  }
  const bool v6 = e.name.find(':') != std::string::npos;
  return out + (v6 ? "[" + e.name + "]" : e.name) + ":" + std::to_string(e.port);
}

check_report check_destination(const policy::snapshot& policy, const check_target& target,
                               const dns_options* resolve, const remembered_answers* remembered) {
  check_report r;
  auto host = policy::canonicalize_host(target.host);
  r.host = host.ok() ? host.host->text : target.host;
  r.port = target.port;
  // The memory is consulted as the daemon does: decide() lets a rule win over it.
  const policy::memory_entry* recalled =
      remembered != nullptr && host.ok()
          ? remembered->memory.lookup(host.host->text, target.port, std::chrono::system_clock::now())
          : nullptr;
  std::optional<policy::outcome> recalled_outcome;
  if (recalled != nullptr) recalled_outcome = recalled->result;
  r.policy_decision = policy::decide(policy, {&host, target.port, recalled_outcome});
  r.decision = r.policy_decision;
  if (!host.ok()) r.detail = std::string(policy::to_string(host.error));
  const bool by_memory = r.decision.reason == policy::decision_reason::remembered_allow ||
                         r.decision.reason == policy::decision_reason::remembered_deny;
  if (by_memory && recalled != nullptr) {
    r.remembered = *recalled;
    r.rule = remembered_rule_text(*recalled);
    r.rule_file = remembered->file;
    r.rule_origin = remembered->file;
    const auto it = std::find(remembered->entries.begin(), remembered->entries.end(), *recalled);
    if (it != remembered->entries.end()) {
      const auto& w = remembered->where[static_cast<std::size_t>(it - remembered->entries.begin())];
      r.rule_line = w.line;
      r.rule_path = w.path;
      if (w.line > 0) r.rule_origin += ":" + std::to_string(w.line);
      if (!w.path.empty()) r.rule_origin += " " + w.path;
    }
  }
  if (r.decision.rule != policy::no_rule) {
    const auto& rule = policy.rule(r.decision.rule);
    r.rule = rule.text;
    r.rule_file = rule.where.file;
    r.rule_line = rule.where.line;
    r.rule_path = rule.where.path;
    r.rule_preset = rule.preset;
    std::string where = rule.where.file;
    if (rule.where.line > 0) where += ":" + std::to_string(rule.where.line);
    if (!rule.where.path.empty()) where += " " + rule.where.path;
    r.rule_origin = rule.preset.empty() ? where : rule.preset + " (" + where + ")";
  }
  if (!host.ok()) return r;
  // The proxy judges the addresses of what it would dial: an IP literal always, a name
  // once resolved. Without --resolve a name's answer is the policy's.
  const bool literal = host.host->is_ip();
  if (!literal && !resolve) return r;
  std::vector<policy::ip_address> addresses;
  if (literal) {
    addresses.push_back(*host.host->address);
  } else {
    auto [ec, answer] = resolve_once(host.host->text, *resolve);
    if (ec)
      r.resolve_error = ec.message();
    else
      for (const auto& a : answer.addresses) addresses.push_back(to_policy(a));
  }
  r.resolved = resolve != nullptr;
  const auto locals = interface_addresses();
  bool any_allowed = false;
  for (const auto& a : addresses) {
    auto v = policy::classify(policy, *host.host, r.policy_decision.reason, a, target.port, locals);
    if (r.resolved)
      r.addresses.push_back({a.to_string(), v.allowed() ? "allow" : std::string(policy::to_string(v.refused))});
    if (v.allowed()) {
      any_allowed = true;
    } else if (r.refused_class == policy::address_class::none) {
      r.refused_class = v.refused;
      r.refused_address = a.to_string();
    }
  }
  // Only an allow goes on to resolve, guard and dial (proxy/session.cpp, dial()).
  if (r.policy_decision.result != policy::outcome::allow) return r;
  if (addresses.empty())
    r.decision = {policy::outcome::deny, policy::decision_reason::resolve_failed, r.policy_decision.rule};
  else if (!any_allowed)
    r.decision = {policy::outcome::deny, policy::decision_reason::address_denied, r.policy_decision.rule};
  return r;
}

std::string to_json(const check_report& r) {
  json_object o = json_object::json();
  o.add("host", r.host).add("port", static_cast<unsigned>(r.port)).add("decision", policy::to_string(r.decision.result));
  o.add("reason", policy::to_string(r.decision.reason));
  if (r.rule.empty()) {
    o.add_null("rule");
  } else {
    o.add("rule", r.rule).add("rule_file", r.rule_file).add("rule_line", r.rule_line).add("rule_path", r.rule_path);
    if (r.rule_preset.empty())
      o.add_null("preset");
    else
      o.add("preset", r.rule_preset);
  }

  if (r.decision != r.policy_decision) {
    o.add("policy_decision", policy::to_string(r.policy_decision.result))
        .add("policy_reason", policy::to_string(r.policy_decision.reason));
    if (r.refused_class != policy::address_class::none)
      o.add("address_class", policy::to_string(r.refused_class)).add("refused_address", r.refused_address);
  }
  std::string out = o.str();
  if (r.remembered) {
    out.pop_back();
    out += ",\"remembered\":" + json_object::json()
                                     .add("scope", policy::to_string(r.remembered->scope))
                                     .add("answered_by", r.remembered->answered_by)
                                     .add("answered_at", config::decisions_file::format_time(r.remembered->answered_at))
                                     .add("reason", r.remembered->reason)
                                     .str();
    out += "}";
  }
  if (r.resolved) {
    out.pop_back();
    out += ",\"addresses\":[";
    for (std::size_t i = 0; i < r.addresses.size(); ++i) {
      if (i) out += ',';
      out += json_object::json().add("address", r.addresses[i].address).add("verdict", r.addresses[i].verdict).str();
    }
    out += "]";
    if (!r.resolve_error.empty()) {
      out += ",\"resolve_error\":";
      append_json_string(out, r.resolve_error);
    }
    out += "}";
  }
  return out;
}

std::string to_text(const check_report& r) {
  std::string out;
  out += "host:     " + r.host + "\n";
  out += "port:     " + std::to_string(r.port) + "\n";
  out += "decision: " + std::string(policy::to_string(r.decision.result)) + "\n";
  out += "rule:     " + (r.rule.empty() ? std::string("(none)") : r.rule + "  [" + r.rule_origin + "]") + "\n";
  out += "reason:   " + std::string(policy::to_string(r.decision.reason));
  if (!r.detail.empty()) out += " (" + r.detail + ")";
  if (r.refused_class != policy::address_class::none && r.decision.reason == policy::decision_reason::address_denied)
    out += " (" + std::string(policy::to_string(r.refused_class)) + ": " + r.refused_address + ")";
  if (r.decision != r.policy_decision) {
    const bool unresolved = r.decision.reason == policy::decision_reason::resolve_failed;
    out += "\npolicy:   " + std::string(policy::to_string(r.policy_decision.result)) + " (" +
           std::string(policy::to_string(r.policy_decision.reason)) + "), " +
           (unresolved ? "but the name did not resolve" : "then refused by the address guard");
  }
  if (r.resolved) {
    if (!r.resolve_error.empty()) out += "\nresolve:  " + r.resolve_error;
    for (const auto& a : r.addresses) out += "\naddress:  " + a.address + " -> " + a.verdict;
  }
  return out;
}

}  // namespace egressd::proxy
