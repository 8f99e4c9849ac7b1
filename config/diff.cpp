#include "config/diff.hpp"

#include <algorithm>
#include <map>

namespace egressd::config {

namespace {

std::vector<std::string> rule_texts(const policy::rules& r) {
  std::vector<std::string> out;
  for (const auto& e : r.allow) out.push_back("allow " + e.text);
  for (const auto& e : r.deny) out.push_back("deny " + e.text);
  for (const auto& e : r.guard.deny_ranges) out.push_back("deny_range " + e.text);
  return out;
}

// The entries of `a` not in `b`, as multisets, in `a`'s order.
std::vector<std::string> minus(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::map<std::string, int> left;
  for (const auto& s : b) ++left[s];
  std::vector<std::string> out;
  for (const auto& s : a) {
    auto it = left.find(s);
    if (it != left.end() && it->second > 0)
      --it->second;
    else
      out.push_back(s);
  }
  return out;
}

bool same_limits(const limits_config& a, const limits_config& b) {
  return a.max_connections == b.max_connections && a.head_timeout == b.head_timeout &&
         a.connect_timeout == b.connect_timeout && a.idle_timeout == b.idle_timeout &&
         a.max_head_bytes == b.max_head_bytes && a.max_headers == b.max_headers && a.drain_timeout == b.drain_timeout &&
         a.upstream_idle_per_origin == b.upstream_idle_per_origin && a.upstream_idle_max == b.upstream_idle_max &&
         a.upstream_idle_timeout == b.upstream_idle_timeout;
}

bool same_dns(const dns_config& a, const dns_config& b) {
  return a.servers == b.servers && a.timeout == b.timeout && a.max_ttl == b.max_ttl &&
         a.negative_ttl == b.negative_ttl && a.hosts_file == b.hosts_file;
}

bool same_users(const auth_config& a, const auth_config& b) {
  return std::equal(a.users.begin(), a.users.end(), b.users.begin(), b.users.end(),
                    [](const user_credentials& x, const user_credentials& y) {
                      return x.username == y.username && x.password == y.password;
                    });
}

bool same_hook(const std::optional<hook_config>& a, const std::optional<hook_config>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return true;
  return a->exec == b->exec && a->persistent == b->persistent && a->url == b->url && a->ca_file == b->ca_file &&
         a->token_file == b->token_file && a->console == b->console && a->timeout == b->timeout &&
         a->on_timeout == b->on_timeout && a->max_pending == b->max_pending && a->concurrency == b->concurrency &&
         a->ttl == b->ttl && a->deny_ttl == b->deny_ttl;
}

}  // namespace

change_summary describe_changes(const config& before, const config& after) {
  change_summary out;
  const auto old_rules = rule_texts(before.policy);
  const auto new_rules = rule_texts(after.policy);
  out.rules_added = minus(new_rules, old_rules);
  out.rules_removed = minus(old_rules, new_rules);

  for (const auto& l : after.listeners) {
    const auto match = std::find_if(before.listeners.begin(), before.listeners.end(),
                                    [&](const listener_config& o) { return o.address == l.address; });
    if (match == before.listeners.end())
      out.listeners_added.push_back(l.address.to_string());
    else if (match->http != l.http || match->socks5 != l.socks5)
      out.listeners_changed.push_back(l.address.to_string());
  }
  for (const auto& l : before.listeners) {
    const bool kept = std::any_of(after.listeners.begin(), after.listeners.end(),
                                  [&](const listener_config& n) { return n.address == l.address; });
    if (!kept) out.listeners_removed.push_back(l.address.to_string());
  }

  // Read once at start-up: the admin server, the workers and their resolvers, the loggers.
  const auto admin_text = [](const config& c) { return c.admin ? c.admin->address.to_string() : std::string(); };
  if (admin_text(before) != admin_text(after)) out.restart_keys.push_back("admin.address");
  const auto admin_token = [](const config& c) { return c.admin ? c.admin->token_file : std::string(); };
  if (admin_token(before) != admin_token(after)) out.restart_keys.push_back("admin.token_file");
  if (before.workers != after.workers) out.restart_keys.push_back("workers");
  if (before.busy_poll_us != after.busy_poll_us) out.restart_keys.push_back("busy_poll_us");
  if (!same_dns(before.dns, after.dns)) out.restart_keys.push_back("dns");
  if (before.log.format != after.log.format) out.restart_keys.push_back("log.format");
  if (before.log.level != after.log.level) out.restart_keys.push_back("log.level");
  if (before.log.audit != after.log.audit || before.log.audit_file != after.log.audit_file ||
      before.log.audit_max_size != after.log.audit_max_size || before.log.audit_max_files != after.log.audit_max_files)
    out.restart_keys.push_back("log.audit");

  // Read by each new session from the swapped snapshot.
  if (before.policy.unknown != after.policy.unknown) out.applied_keys.push_back("policy.unknown");
  if (before.policy.guard.allow_private != after.policy.guard.allow_private)
    out.applied_keys.push_back("policy.guard.allow_private");
  if (!same_limits(before.limits, after.limits)) out.applied_keys.push_back("limits");
  if (before.metrics.max_domains != after.metrics.max_domains) out.applied_keys.push_back("metrics.max_domains");
  if (!same_users(before.auth, after.auth)) out.applied_keys.push_back("auth");
  // The hook coordinator takes the new hook at once (questions already pending keep
  // their deadline) and reads a decisions file given a new path.
  if (!same_hook(before.hook, after.hook)) out.applied_keys.push_back("hook");
  if (before.decisions_file != after.decisions_file) out.applied_keys.push_back("decisions_file");
  if (before.reload.watch != after.reload.watch) out.applied_keys.push_back("reload.watch");
  if (before.reload.revoke != after.reload.revoke) out.applied_keys.push_back("reload.revoke");
  return out;
}

}  // namespace egressd::config
