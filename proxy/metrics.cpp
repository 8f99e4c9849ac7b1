#include "proxy/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <type_traits>

#include "config/public_suffix.hpp"

#ifndef EGRESSD_VERSION
#define EGRESSD_VERSION "unknown"
#endif

namespace egressd::proxy {

namespace {

constexpr std::string_view other_domain = "_other";
constexpr std::string_view requests_family = "egressd_requests_total";
constexpr std::string_view bytes_up_family = "egressd_bytes_up_total";
constexpr std::string_view bytes_down_family = "egressd_bytes_down_total";

// Closed label values are created at zero, so a family is present (and rate() works)
// before its first event.
constexpr std::array<std::string_view, 3> dns_results = {"ok", "no_such_name", "error"};
constexpr auto last_address_class = policy::address_class::unique_local;

std::string str(std::string_view s) { return std::string(s); }

// ---- the text exposition ---------------------------------------------------------------
//
// The text format 0.0.4 exactly as prometheus::TextSerializer writes it (the same
// lines, values and escapes), but appended to one string reserved up front, without
// an ostream: with 1,000 domains that serializer's stream insertions, the buffer's
// doublings and its copy into a string were most of a scrape's time.

void append_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "Nan";
  } else if (std::isinf(v)) {
    out += v < 0 ? "-Inf" : "+Inf";
  } else if (v == std::trunc(v) && std::fabs(v) < 1e15) {
    // Counts: integral, and %.16g of them is their decimal digits.
    char buf[24];
    out.append(buf, std::to_chars(buf, buf + sizeof buf, static_cast<std::int64_t>(v)).ptr);
  } else {
    char buf[40];
    const int n = std::snprintf(buf, sizeof buf, "%.*g", std::numeric_limits<double>::max_digits10 - 1, v);
    out.append(buf, static_cast<std::size_t>(std::max(0, std::min<int>(n, sizeof buf - 1))));
  }
}

void append_count(std::string& out, std::uint64_t v) {
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
}

void append_label_value(std::string& out, std::string_view v) {
  // The format's three escapes (a line feed as `\n`).
  for (const char c : v) {
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
}

// `name_suffix{labels,extra="value"} ` (braces only when there is a label).
void append_head(std::string& out, const prometheus::MetricFamily& f, const prometheus::ClientMetric& m,
                 std::string_view suffix = {}, std::string_view extra_name = {}, std::string_view extra_value = {}) {
  out += f.name;
  out += suffix;
  if (!m.label.empty() || !extra_name.empty()) {
    out += '{';
    const char* sep = "";
    for (const auto& l : m.label) {
      out += sep;
      out += l.name;
      out += "=\"";
      append_label_value(out, l.value);
      out += '"';
      sep = ",";
    }
    if (!extra_name.empty()) {
      out += sep;
      out += extra_name;
      out += "=\"";
      append_label_value(out, extra_value);
      out += '"';
    }
    out += '}';
  }
  out += ' ';
}

void append_tail(std::string& out, const prometheus::ClientMetric& m) {
  if (m.timestamp_ms != 0) {
    out += ' ';
    char buf[24];
    out.append(buf, std::to_chars(buf, buf + sizeof buf, m.timestamp_ms).ptr);
  }
  out += '\n';
}

std::string bound_text(double b) {
  std::string s;
  append_value(s, b);
  return s;
}

// One sample line: head, value (a double as the format prints it, or a count), tail.
template <class Value>
void append_sample(std::string& out, const prometheus::MetricFamily& f, const prometheus::ClientMetric& m, Value v,
                   std::string_view suffix = {}, std::string_view extra_name = {},
                   std::string_view extra_value = {}) {
  append_head(out, f, m, suffix, extra_name, extra_value);
  if constexpr (std::is_same_v<Value, double>)
    append_value(out, v);
  else
    append_count(out, v);
  append_tail(out, m);
}

void append_family(std::string& out, const prometheus::MetricFamily& f) {
  using prometheus::MetricType;
  if (!f.help.empty()) {
    out += "# HELP ";
    out += f.name;
    out += ' ';
    out += f.help;
    out += '\n';
  }
  out += "# TYPE ";
  out += f.name;
  switch (f.type) {
    case MetricType::Counter: out += " counter\n"; break;
    case MetricType::Gauge: out += " gauge\n"; break;
    case MetricType::Summary: out += " summary\n"; break;
    case MetricType::Untyped: out += " untyped\n"; break;
    case MetricType::Histogram: out += " histogram\n"; break;
    default: out += " untyped\n"; break;
  }
  for (const auto& m : f.metric) {
    switch (f.type) {
      case MetricType::Counter: append_sample(out, f, m, m.counter.value); break;
      case MetricType::Gauge: append_sample(out, f, m, m.gauge.value); break;
      case MetricType::Untyped: append_sample(out, f, m, m.untyped.value); break;
      case MetricType::Summary:
        append_sample(out, f, m, m.summary.sample_count, "_count");
        append_sample(out, f, m, m.summary.sample_sum, "_sum");
        for (const auto& q : m.summary.quantile) append_sample(out, f, m, q.value, "", "quantile", bound_text(q.quantile));
        break;
      case MetricType::Histogram: {
        const auto& h = m.histogram;
        append_sample(out, f, m, h.sample_count, "_count");
        append_sample(out, f, m, h.sample_sum, "_sum");
        double last = -std::numeric_limits<double>::infinity();
        for (const auto& b : h.bucket) {
          append_sample(out, f, m, b.cumulative_count, "_bucket", "le", bound_text(b.upper_bound));
          last = b.upper_bound;
        }
        if (last != std::numeric_limits<double>::infinity())
          append_sample(out, f, m, h.sample_count, "_bucket", "le", "+Inf");
        break;
      }
      default: break;
    }
  }
}

}  // namespace

// ---- latency_histogram ------------------------------------------------------------------

void latency_histogram::observe(std::chrono::microseconds d) noexcept {
  const auto us = d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count());
  const double seconds = static_cast<double>(us) / 1e6;
  const auto at = std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin();
  slot& mine = slots_[counter_slot()].value;
  mine.counts[static_cast<std::size_t>(at)].fetch_add(1, std::memory_order_relaxed);
  mine.sum_us.fetch_add(us, std::memory_order_relaxed);
}

void latency_histogram::collect(std::string_view name, std::string_view help,
                                std::vector<prometheus::MetricFamily>& out) const {
  prometheus::MetricFamily f;
  f.name = str(name);
  f.help = str(help);
  f.type = prometheus::MetricType::Histogram;
  prometheus::ClientMetric m;
  std::array<std::uint64_t, bounds.size() + 1> counts{};
  std::uint64_t sum_us = 0;
  for (const auto& s : slots_) {
    for (std::size_t i = 0; i < counts.size(); ++i) counts[i] += s.value.counts[i].load(std::memory_order_relaxed);
    sum_us += s.value.sum_us.load(std::memory_order_relaxed);
  }
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    m.histogram.bucket.push_back(
        {cumulative, i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity()});
  }
  // The count is the +Inf bucket, so the two always agree within one scrape.
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = static_cast<double>(sum_us) / 1e6;
  f.metric.push_back(std::move(m));
  out.push_back(std::move(f));
}

// ---- domain_cache -----------------------------------------------------------------------

domain_metrics& domain_cache::lookup(std::string_view host) {
  if (auto it = map_.find(host); it != map_.end()) return *it->second;
  // A miss: libpsl and the shared map, then remember the host. Cleared when full
  // rather than evicted one by one: misses are rare once a worker has seen its hosts.
  if (map_.size() >= max_entries) map_.clear();
  domain_metrics& d = metrics_.domain(config::domain_label(host));
  map_.emplace(std::string(host), &d);
  return d;
}

// ---- metrics ----------------------------------------------------------------------------

metrics::metrics(std::size_t max_domains)
    : registry_(std::make_shared<prometheus::Registry>()), max_domains_(max_domains) {
  auto& guard = prometheus::BuildCounter()
                    .Name("egressd_guard_refusals_total")
                    .Help("Requests refused by the address guard, by the class of the refused address.")
                    .Register(*registry_);
  static_assert(static_cast<std::size_t>(last_address_class) < std::tuple_size_v<decltype(guard_refusals_)>);
  for (auto i = static_cast<std::size_t>(policy::address_class::none) + 1;
       i <= static_cast<std::size_t>(last_address_class); ++i)
    guard_refusals_[i] = &guard.Add({{"class", str(policy::to_string(static_cast<policy::address_class>(i)))}});
  auto& dns = prometheus::BuildCounter()
                  .Name("egressd_dns_lookups_total")
                  .Help("Name lookups a request waited for (cache misses), by result.")
                  .Register(*registry_);
  for (std::size_t i = 0; i < dns_results.size(); ++i) dns_lookups_[i] = &dns.Add({{"result", str(dns_results[i])}});
  reloads_ = &prometheus::BuildCounter()
                  .Name("egressd_reloads_total")
                  .Help("Configuration reloads (SIGHUP), by result.")
                  .Register(*registry_);
  reloads_->Add({{"result", "success"}});
  reloads_->Add({{"result", "failure"}});
  hook_questions_ = &prometheus::BuildCounter()
                        .Name("egressd_hook_questions_total")
                        .Help("Questions to the confirmation hook, by outcome (allow, deny, timeout, a failure, overloaded).")
                        .Register(*registry_);
  // Every outcome exists from the start at 0 (the set is closed), so a rate() or an
  // alert on one of them has a series before the first question.
  for (std::string_view outcome : {"allow", "deny", "by_hand", "timeout", "crashed", "bad_answer", "not_found",
                                   "refused", "http_error", "tls_error", "io_error", "shutdown", "overloaded"})
    hook_questions_->Add({{"outcome", str(outcome)}});
  config_info_ = &prometheus::BuildGauge()
                      .Name("egressd_config_info")
                      .Help("The configuration in force: its hash as a label, value 1.")
                      .Register(*registry_);
  prometheus::BuildGauge()
      .Name("egressd_build_info")
      .Help("The egressd build: its version as a label, value 1.")
      .Register(*registry_)
      .Add({{"version", EGRESSD_VERSION}})
      .Set(1);
}

metrics::~metrics() = default;

domain_metrics& metrics::domain(std::string_view registrable) {
  std::lock_guard lock(domains_mutex_);
  if (auto it = domains_.find(registrable); it != domains_.end()) return *it->second;
  // `_other` does not count against the cap: at most max_domains + 1 values.
  std::string_view name = registrable;
  if (domains_.size() - domains_.count(other_domain) >= max_domains_.load(std::memory_order_relaxed)) {
    name = other_domain;
    if (auto it = domains_.find(name); it != domains_.end()) return *it->second;
  }
  auto d = std::make_unique<domain_metrics>();
  d->name = std::string(name);
  append_label_value(d->label_text, d->name);
  auto& ref = *d;
  domains_.emplace(d->name, std::move(d));
  return ref;
}

std::size_t metrics::domain_count() const {
  std::lock_guard lock(domains_mutex_);
  return domains_.size();
}

void metrics::count_request(domain_metrics& d, const request_labels& l) {
  const std::size_t slot =
      ((static_cast<std::size_t>(l.protocol) * request_labels::decisions + l.decision) * request_labels::reasons +
       l.reason) %
      domain_metrics::request_slots;
  d.requests[slot].fetch_add(1, std::memory_order_relaxed);
  auto& seen = d.requests_seen[slot / 64];
  const std::uint64_t bit = std::uint64_t{1} << (slot % 64);
  if (seen.load(std::memory_order_relaxed) & bit) return;
  // This domain's first request of this combination: its series appears (once, under
  // the mutex render() takes, so a scrape sees the bit with the labels written).
  std::lock_guard lock(domains_mutex_);
  auto& [before, after] = request_labels_[slot];
  if (before.empty()) {
    before = "decision=\"";
    append_label_value(before, l.decision_name);
    before += "\",";
    after = ",protocol=\"";
    append_label_value(after, l.protocol_name);
    after += "\",reason=\"";
    append_label_value(after, l.reason_name);
    after += '"';
  }
  seen.fetch_or(bit, std::memory_order_relaxed);
}

void metrics::append_requests(std::string& out) const {
  std::lock_guard lock(domains_mutex_);
  for (const auto& [name, d] : domains_) {
    for (std::size_t w = 0; w < d->requests_seen.size(); ++w) {
      for (std::uint64_t bits = d->requests_seen[w].load(std::memory_order_relaxed); bits != 0; bits &= bits - 1) {
        const std::size_t slot = w * 64 + static_cast<std::size_t>(std::countr_zero(bits));
        out += "egressd_requests_total{";
        out += request_labels_[slot].first;
        out += "domain=\"";
        out += d->label_text;
        out += '"';
        out += request_labels_[slot].second;
        out += "} ";
        append_count(out, d->requests[slot].load(std::memory_order_relaxed));
        out += '\n';
      }
    }
  }
}

void metrics::append_bytes(std::string& out, bool up) const {
  const std::string_view name = up ? "egressd_bytes_up_total{domain=\"" : "egressd_bytes_down_total{domain=\"";
  std::lock_guard lock(domains_mutex_);
  for (const auto& [n, d] : domains_) {
    out += name;
    out += d->label_text;
    out += "\"} ";
    append_count(out, (up ? d->bytes_up : d->bytes_down).load(std::memory_order_relaxed));
    out += '\n';
  }
}

void metrics::count_guard_refusal(policy::address_class c) noexcept {
  const auto i = static_cast<std::size_t>(c);
  if (i < guard_refusals_.size() && guard_refusals_[i]) guard_refusals_[i]->Increment();
}

void metrics::count_dns_lookup(dns_result r) noexcept {
  const auto i = static_cast<std::size_t>(r);
  if (i < dns_lookups_.size()) dns_lookups_[i]->Increment();
}

void metrics::count_hook_question(std::string_view outcome) {
  hook_questions_->Add({{"outcome", str(outcome)}}).Increment();
}

void metrics::count_reload(bool ok) { reloads_->Add({{"result", ok ? "success" : "failure"}}).Increment(); }

void metrics::set_config_hash(std::string_view hash) {
  std::lock_guard lock(config_mutex_);
  if (config_series_ && config_hash_ == hash) return;
  if (config_series_) config_info_->Remove(config_series_);
  config_hash_ = std::string(hash);
  config_series_ = &config_info_->Add({{"hash", config_hash_}});
  config_series_->Set(1);
}

std::string metrics::render() const {
  auto families = registry_->Collect();
  // A family of egressd's own (not in the registry), appended to `families`.
  auto family = [&](prometheus::MetricType type, std::string_view name,
                    std::string_view help) -> prometheus::MetricFamily& {
    auto& f = families.emplace_back();
    f.name = str(name);
    f.help = str(help);
    f.type = type;
    return f;
  };
  // One of one unlabelled sample.
  auto single = [&](prometheus::MetricType type, std::string_view name, std::string_view help, double value) {
    prometheus::ClientMetric m;
    (type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value) = value;
    family(type, name, help).metric.push_back(std::move(m));
  };
  auto gauge = [&](std::string_view name, std::string_view help, double value) {
    single(prometheus::MetricType::Gauge, name, help, value);
  };
  gauge("egressd_connections_open", "Open client connections (tunnels included).",
        connections_open_ ? static_cast<double>(connections_open_->load(std::memory_order_relaxed)) : 0.0);
  gauge("egressd_tunnels_open", "Open tunnels (CONNECT and SOCKS5 after their success reply).",
        static_cast<double>(std::max<std::int64_t>(0, tunnels_open_.sum())));
  gauge("egressd_hook_pending", "Questions waiting for the confirmation hook's answer.",
        static_cast<double>(std::max<std::int64_t>(0, hook_pending_.load(std::memory_order_relaxed))));
  gauge("egressd_requests_held", "Client requests held while the confirmation hook decides.",
        static_cast<double>(std::max<std::int64_t>(0, held_.sum())));
  gauge("egressd_upstream_idle_connections",
        "Idle upstream connections in the workers' pools, kept for later plain-HTTP requests.",
        static_cast<double>(std::max<std::int64_t>(0, upstream_idle_.sum())));
  single(prometheus::MetricType::Counter, "egressd_upstream_reused_total",
         "Plain-HTTP requests sent over an upstream connection an earlier request opened (kept alive, or from the "
         "idle pool).",
         static_cast<double>(std::max<std::int64_t>(0, upstream_reused_.sum())));
  gauge("egressd_remembered_answers", "Hook answers remembered (ttl and always).",
        static_cast<double>(remembered_.load(std::memory_order_relaxed)));
  // The families by domain: their HELP and TYPE here, their series written below
  // straight from the domain handles.
  auto by_domain = [&](std::string_view name, std::string_view help) {
    family(prometheus::MetricType::Counter, name, help);
  };
  by_domain(requests_family, "Requests by registrable domain, protocol, decision and reason (denials: decision=deny).");
  by_domain(bytes_up_family,
            "Bytes from clients to upstreams by registrable domain (tunnels per relay batch, plain HTTP request bodies).");
  by_domain(bytes_down_family,
            "Bytes from upstreams to clients by registrable domain (tunnels per relay batch, plain HTTP responses).");
  connect_seconds_.collect("egressd_upstream_connect_seconds", "Time to connect to the upstream (TCP handshake).",
                           families);
  request_seconds_.collect("egressd_request_duration_seconds",
                           "Time from a request's head to its decision and reply (tunnels: until established).",
                           families);
  dns_seconds_.collect("egressd_dns_lookup_seconds", "How long a request waited for a name lookup (cache misses).", families);
  hook_seconds_.collect("egressd_hook_seconds", "Time from a question to the hook's answer (or its timeout).", families);
  std::sort(families.begin(), families.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  // One allocation of about the last scrape's size.
  std::string out;
  out.reserve(last_render_size_.load(std::memory_order_relaxed) + 4096);
  for (const auto& f : families) {
    append_family(out, f);
    if (f.name == requests_family) append_requests(out);
    else if (f.name == bytes_up_family) append_bytes(out, true);
    else if (f.name == bytes_down_family) append_bytes(out, false);
  }
  last_render_size_.store(out.size(), std::memory_order_relaxed);
  return out;
}

std::string exposition_text(const std::vector<prometheus::MetricFamily>& families, std::size_t reserve) {
  std::string out;
  out.reserve(reserve);
  for (const auto& f : families) append_family(out, f);
  return out;
}

std::string policy_hash(const policy::snapshot& p) {
  std::uint64_t h = 14695981039346656037ULL;
  auto mix = [&h](std::string_view bytes) {
    for (const unsigned char c : bytes) {
      h ^= c;
      h *= 1099511628211ULL;
    }
    h ^= 0xff;  // a separator no entry contains, so ("ab","c") and ("a","bc") differ
    h *= 1099511628211ULL;
  };
  for (std::size_t i = 0; i < p.rule_count(); ++i) {
    const auto& r = p.rule(static_cast<policy::rule_id>(i));
    mix(r.list == policy::list_kind::allow ? "allow" : "deny");
    mix(r.text);
    mix(r.preset);
  }
  mix(std::to_string(static_cast<int>(p.unknown())));
  mix(p.allow_private() ? "private" : "");
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<std::size_t>(i)] = digits[h & 0xf];
  return out;
}

}  // namespace egressd::proxy
