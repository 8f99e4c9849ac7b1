#include "proxy/suggest.hpp"

#include <algorithm>
#include <charconv>
#include <set>

#include "config/json.hpp"
#include "config/public_suffix.hpp"
#include "policy/host.hpp"
#include "policy/pattern.hpp"

namespace egressd::proxy::suggest {

namespace {

namespace json = config::json;

// A line longer than this is no access record of ours (they are a few hundred bytes):
// skipped as not JSON rather than parsed.
constexpr std::size_t max_line_bytes = 1 << 20;

const json::value* member(const json::value& object, std::string_view key) {
  for (const auto& m : object.members)
    if (m.key == key) return &m.value;  // the first of repeated keys
  return nullptr;
}

std::string_view string_member(const json::value& object, std::string_view key) {
  const json::value* v = member(object, key);
  return v != nullptr && v->is_string() ? std::string_view(v->text) : std::string_view();
}

// The reasons counted: no rule matched the destination (see suggest.hpp).
bool counted_reason(std::string_view decision, std::string_view reason) {
  if (decision == "deny") return reason == "unknown_denied" || reason == "no_hook";
  if (decision == "allow") return reason == "report_only";
  return false;
}

// The exact allow entry for a canonical host: IPv6 literals in brackets.
std::string exact_pattern(const policy::canonical_host& h) {
  return h.kind == policy::host_kind::ipv6 ? "[" + h.text + "]" : h.text;
}

bool valid_allow_entry(const std::string& pattern) {
  return policy::parse_pattern(pattern, policy::list_kind::allow, policy::grammar::egressd).value.has_value() &&
         policy::parse_pattern(pattern, policy::list_kind::allow, policy::grammar::srt).value.has_value();
}

// One entry over `hosts` (each with its ports) under `pattern`, with the port rule.
entry make_entry(std::string pattern, const std::vector<std::string>& hosts, const destinations& seen) {
  entry e;
  std::set<std::uint16_t> ports;
  for (const auto& h : hosts) {
    for (const auto& [port, n] : seen.at(h)) {
      ports.insert(port);
      e.requests += n;
    }
  }
  e.ports.assign(ports.begin(), ports.end());
  e.hosts = hosts;
  std::sort(e.hosts.begin(), e.hosts.end());
  // 443 is what an entry without a port is written for; any other single port is kept,
  // so the proposal opens no more than was used.
  if (e.ports.size() == 1 && e.ports.front() != 443) pattern += ":" + std::to_string(e.ports.front());
  e.pattern = std::move(pattern);
  return e;
}

void append_quoted(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

std::string ports_text(const std::vector<std::uint16_t>& ports) {
  std::string out = ports.size() == 1 ? "port " : "ports ";
  for (std::size_t i = 0; i < ports.size(); ++i) out += (i ? ", " : "") + std::to_string(ports[i]);
  return out;
}

}  // namespace

void collector::add_line(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
  if (line.find_first_not_of(" \t") == std::string_view::npos) return;
  ++counts_.lines;
  if (line.size() > max_line_bytes) {
    ++counts_.not_json;
    return;
  }
  const auto parsed = json::parse(line);
  if (!parsed.value || !parsed.value->is_object()) {
    ++counts_.not_json;
    return;
  }
  const json::value& record = *parsed.value;
  if (string_member(record, "event") != "request") {
    ++counts_.not_request;
    return;
  }
  ++counts_.requests;
  if (!counted_reason(string_member(record, "decision"), string_member(record, "reason"))) return;
  ++counts_.counted;
  const json::value* port_value = member(record, "port");
  unsigned port = 0;
  if (port_value == nullptr || port_value->kind != json::value::kind_t::number) {
    ++counts_.bad_destination;
    return;
  }
  const std::string& digits = port_value->text;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  const auto host = policy::canonicalize_host(string_member(record, "host"));
  if (ec != std::errc{} || end != digits.data() + digits.size() || port == 0 || port > 65535 || !host.ok() ||
      !valid_allow_entry(exact_pattern(*host.host))) {
    ++counts_.bad_destination;
    return;
  }
  ++seen_[host.host->text][static_cast<std::uint16_t>(port)];
}

std::vector<entry> collapse(const destinations& seen) {
  std::vector<entry> out;
  // registrable domain → the strict subdomains of it seen
  std::map<std::string, std::vector<std::string>> subdomains;
  for (const auto& [host, ports] : seen) {
    const auto canonical = policy::canonicalize_host(host);
    if (!canonical.ok()) continue;  // collector only stores canonical hosts
    const std::string domain = canonical.host->is_ip() ? std::string() : config::registrable_domain(host);
    if (domain.empty() || domain == host)
      out.push_back(make_entry(exact_pattern(*canonical.host), {host}, seen));
    else
      subdomains[domain].push_back(host);
  }
  for (const auto& [domain, hosts] : subdomains) {
    const std::string wildcard = "*." + domain;
    if (hosts.size() >= 2 && valid_allow_entry(wildcard)) {
      out.push_back(make_entry(wildcard, hosts, seen));
    } else {
      for (const auto& h : hosts) out.push_back(make_entry(h, {h}, seen));
    }
  }
  std::sort(out.begin(), out.end(), [](const entry& a, const entry& b) {
    return a.requests != b.requests ? a.requests > b.requests : a.pattern < b.pattern;
  });
  return out;
}

std::string to_yaml(const std::vector<entry>& entries, const line_counts& counts) {
  std::string out =
      "# Proposed by `egressd suggest` from " + std::to_string(counts.counted) +
      " requests that no rule allowed: denied\n"
      "# (unknown_denied, no_hook) or let through by `unknown: allow` (report_only).\n"
      "# Not included: destinations denied by a rule (denied_by_rule), refused by the\n"
      "# address guard (address_denied), answered by a hook, or invalid.\n"
      "# `*.domain` stands for two or more subdomains seen; review before use.\n"
      "policy:\n";
  if (entries.empty()) return out + "  allow: []  # nothing to suggest\n";
  out += "  allow:\n";
  for (const auto& e : entries) {
    out += "    - ";
    append_quoted(out, e.pattern);
    out += "  # " + std::to_string(e.requests) + (e.requests == 1 ? " request, " : " requests, ") + ports_text(e.ports);
    if (e.hosts.size() > 1) {
      constexpr std::size_t shown = 5;
      out += "; ";
      for (std::size_t i = 0; i < e.hosts.size() && i < shown; ++i) out += (i ? ", " : "") + e.hosts[i];
      if (e.hosts.size() > shown) out += " and " + std::to_string(e.hosts.size() - shown) + " more";
    }
    out += "\n";
  }
  return out;
}

std::string to_settings_json(const std::vector<entry>& entries) {
  std::string out = "{\n  \"network\": {\n    \"allowedDomains\": [";
  for (std::size_t i = 0; i < entries.size(); ++i) {
    out += i ? ",\n      " : "\n      ";
    append_quoted(out, entries[i].pattern);
  }
  out += entries.empty() ? "]\n  }\n}\n" : "\n    ]\n  }\n}\n";
  return out;
}

std::string summary(const line_counts& c, std::size_t entries) {
  return std::to_string(c.lines) + " lines, " + std::to_string(c.requests) + " request records, " +
         std::to_string(c.counted) + " counted; skipped " + std::to_string(c.not_json) + " lines that are not JSON, " +
         std::to_string(c.not_request) + " JSON lines that are no request record, " +
         std::to_string(c.bad_destination) + " counted records without a usable host and port; " +
         std::to_string(entries) + (entries == 1 ? " entry" : " entries");
}

}  // namespace egressd::proxy::suggest
