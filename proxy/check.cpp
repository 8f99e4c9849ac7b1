#include "proxy/check.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <charconv>

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

std::optional<check_target> parse_check_target(std::string_view text) {
  check_target t;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) {
      t.host = std::string(text);
      return t;
    }
    t.host = std::string(text.substr(0, close + 1));
    std::string_view rest = text.substr(close + 1);
    if (rest.empty()) return t;
    if (rest.front() != ':') return std::nullopt;
    auto p = parse_port(rest.substr(1));
    if (!p) return std::nullopt;
    t.port = *p;
    return t;
  }
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || text.find(':') != colon) {  // no port, or a bare IPv6 literal
    t.host = std::string(text);
    return t;
  }
  auto p = parse_port(text.substr(colon + 1));
  if (!p) return std::nullopt;
  t.host = std::string(text.substr(0, colon));
  t.port = *p;
  return t;
}

check_report check_destination(const policy::snapshot& policy, const check_target& target,
                               const dns_options* resolve) {
  check_report r;
  auto host = policy::canonicalize_host(target.host);
  r.host = host.ok() ? host.host->text : target.host;
  r.port = target.port;
  r.decision = policy::decide(policy, {&host, target.port, std::nullopt});
  if (!host.ok()) r.detail = std::string(policy::to_string(host.error));
  if (r.decision.rule != policy::no_rule) {
    const auto& rule = policy.rule(r.decision.rule);
    r.rule = rule.text;
    std::string where = rule.where.file;
    if (rule.where.line > 0) where += ":" + std::to_string(rule.where.line);
    if (!rule.where.path.empty()) where += " " + rule.where.path;
    r.rule_origin = rule.preset.empty() ? where : rule.preset + " (" + where + ")";
  }
  if (resolve && host.ok()) {
    r.resolved = true;
    const auto locals = interface_addresses();
    std::vector<policy::ip_address> addresses;
    if (host.host->is_ip()) {
      addresses.push_back(*host.host->address);
    } else {
      auto [ec, answer] = resolve_once(host.host->text, *resolve);
      if (ec)
        r.resolve_error = ec.message();
      else
        for (const auto& a : answer.addresses) addresses.push_back(to_policy(a));
    }
    for (const auto& a : addresses) {
      auto v = policy::classify(policy, *host.host, a, target.port, locals);
      r.addresses.push_back({a.to_string(), v.allowed() ? "allow" : std::string(policy::to_string(v.refused))});
    }
  }
  return r;
}

std::string to_json(const check_report& r) {
  json_object o = json_object::json();
  o.add("host", r.host).add("port", static_cast<unsigned>(r.port)).add("decision", policy::to_string(r.decision.result));
  if (r.rule.empty())
    o.add_null("rule");
  else
    o.add("rule", r.rule);
  o.add("reason", policy::to_string(r.decision.reason));
  std::string out = o.str();
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
  if (r.resolved) {
    if (!r.resolve_error.empty()) out += "\nresolve:  " + r.resolve_error;
    for (const auto& a : r.addresses) out += "\naddress:  " + a.address + " -> " + a.verdict;
  }
  return out;
}

}  // namespace egressd::proxy
