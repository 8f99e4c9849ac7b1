#pragma once
// Prometheus metrics (README "Metrics"): one registry per process, served
// as text by the admin endpoint's /metrics. prometheus-cpp's core library holds the
// counters and gauges of closed label sets (atomic, no lock to update); the latency
// histograms are our own lock-free ones, because prometheus-cpp's Histogram takes a
// mutex per observation, which every worker would share; the series by domain are
// plain atomics in each domain's handles, written into the text directly, because a
// registry Collect() copies every series' labels into new strings at each scrape.
//
// The `domain` label is the product's point and the one label not from a closed enum,
// so it is bounded: the registrable domain of the host (config::domain_label),
// at most `metrics.max_domains` distinct values, the rest under `_other`. A request
// finds its domain's handles once (domain_cache, per worker: a hash lookup, no shared
// lock on a hit) and then updates atomics only.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/guard.hpp"
#include "policy/snapshot.hpp"
#include "proxy/per_worker.hpp"
#include "proxy/string_hash.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Registry;
template <typename T>
class Family;
struct MetricFamily;
}  // namespace prometheus

namespace egressd::proxy {

/// A latency histogram with the buckets every egressd histogram shares (100 µs to 30 s).
/// observe() is lock-free (two relaxed atomic adds in the calling worker's own cache
/// line, see per_worker.hpp); a scrape sums the slots and may miss observations made
/// while it runs. Thread-safe.
class latency_histogram {
 public:
  /// Upper bounds in seconds, ascending; +Inf is implied.
  static constexpr std::array<double, 17> bounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                    0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                    1,      2.5,     5,      10,    30};
  void observe(std::chrono::microseconds d) noexcept;
  /// Appends this histogram as a MetricFamily of `name` to `out`.
  void collect(std::string_view name, std::string_view help, std::vector<prometheus::MetricFamily>& out) const;

 private:
  struct slot {
    std::array<std::atomic<std::uint64_t>, bounds.size() + 1> counts{};  // per bucket, +Inf last
    std::atomic<std::uint64_t> sum_us{0};
  };
  std::array<cache_line<slot>, counter_slots> slots_{};
};

/// The per-request labels besides the domain, as small indices (for the handle table)
/// and their names (for the series, used the first time a combination is seen).
struct request_labels {
  static constexpr std::size_t protocols = 4;
  static constexpr std::size_t decisions = 3;
  static constexpr std::size_t reasons = 32;  // 24 policy reasons, then request outcomes
  std::uint8_t protocol = 0;  ///< < protocols
  std::uint8_t decision = 0;  ///< < decisions
  std::uint8_t reason = 0;    ///< < reasons
  std::string_view protocol_name;
  std::string_view decision_name;
  std::string_view reason_name;
};

/// The handles of one `domain` label value, created once and never freed while the
/// registry lives (so pointers to it stay valid): one lookup per request, then atomics.
/// Its series are plain atomics rather than prometheus::Counter (whose double takes a
/// compare-exchange loop per increment), and render() writes them straight into the
/// text: a scrape of 1,000 domains allocates nothing per series.
struct domain_metrics {
  static constexpr std::size_t request_slots =
      request_labels::protocols * request_labels::decisions * request_labels::reasons;
  std::string name;
  /// The label value as the text format writes it (escaped).
  std::string label_text;
  /// egressd_bytes_up_total / egressd_bytes_down_total (up: client → upstream): a
  /// tunnel adds to them once per relay batch with one relaxed fetch_add.
  std::atomic<std::uint64_t> bytes_up{0};
  std::atomic<std::uint64_t> bytes_down{0};
  /// egressd_requests_total per (protocol, decision, reason); a series exists from
  /// its first request on, when its bit in `requests_seen` is set.
  std::array<std::atomic<std::uint64_t>, request_slots> requests{};
  std::array<std::atomic<std::uint64_t>, (request_slots + 63) / 64> requests_seen{};
};

class metrics;


/// One worker's cache of host → domain handles in front of metrics::domain(): a hit is
/// one hash lookup without allocation or shared lock. Bounded (cleared when full, so a
/// client inventing names cannot grow it). One thread only.
class domain_cache {
 public:
  static constexpr std::size_t max_entries = 4096;
  explicit domain_cache(metrics& m) noexcept : metrics_(m) {}
  /// The handles for `host` (a canonical host, an IP literal, or empty/invalid text).
  domain_metrics& lookup(std::string_view host);
  std::size_t size() const noexcept { return map_.size(); }

 private:
  metrics& metrics_;
  std::unordered_map<std::string, domain_metrics*, string_hash, std::equal_to<>> map_;
};

/// Every egressd metric. Thread-safe; updates take no lock shared by the workers
/// (creating a new series does, once).
class metrics {
 public:
  explicit metrics(std::size_t max_domains = 1000);
  ~metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  /// metrics.max_domains; a lower value stops new domains, it never drops series.
  void set_max_domains(std::size_t n) noexcept { max_domains_.store(n, std::memory_order_relaxed); }
  /// The handles of `registrable` (a label value from config::domain_label), or
  /// of `_other` once max_domains values exist. Takes a mutex: callers go through a
  /// domain_cache.
  domain_metrics& domain(std::string_view registrable);
  /// How many distinct domain label values exist (`_other` included once used).
  std::size_t domain_count() const;

  /// One finished request (account()).
  void count_request(domain_metrics& d, const request_labels& l);
  void observe_connect(std::chrono::microseconds d) noexcept { connect_seconds_.observe(d); }
  void observe_request(std::chrono::microseconds d) noexcept { request_seconds_.observe(d); }
  void observe_dns(std::chrono::microseconds d) noexcept { dns_seconds_.observe(d); }
  /// A request the guard refused, by the class of the refused address.
  void count_guard_refusal(policy::address_class c) noexcept;
  /// A DNS lookup's result.
  enum class dns_result : std::uint8_t { ok, no_such_name, error };
  void count_dns_lookup(dns_result r) noexcept;
  /// A plain-HTTP request sent over an upstream connection an earlier request opened.
  void count_upstream_reuse() noexcept { upstream_reused_.add(1); }
  /// The workers' idle upstream pools grew or shrank by `delta` connections.
  void upstream_idle_changed(std::int64_t delta) noexcept { upstream_idle_.add(delta); }
  void tunnel_opened() noexcept { tunnels_open_.add(1); }
  void tunnel_closed() noexcept { tunnels_open_.add(-1); }
  /// A reload attempt; on success `config_hash` replaces the egressd_config_info series.
  void count_reload(bool ok);
  /// egressd_config_info{hash} 1 for the configuration now in force.
  void set_config_hash(std::string_view hash);
  /// The hook (README "Confirmation hook"): a question's outcome (allow, deny, timeout,
  /// crashed, ..., overloaded) and how long it took to answer.
  void count_hook_question(std::string_view outcome);
  void observe_hook(std::chrono::microseconds d) noexcept { hook_seconds_.observe(d); }
  void hook_pending_changed(std::int64_t delta) noexcept { hook_pending_.fetch_add(delta, std::memory_order_relaxed); }
  void held_changed(std::int64_t delta) noexcept { held_.add(delta); }
  void set_remembered(std::size_t n) noexcept { remembered_.store(static_cast<std::int64_t>(n), std::memory_order_relaxed); }
  /// Where egressd_connections_open comes from (the runtime's counter), read at scrape.
  void set_connections_source(const std::atomic<std::size_t>* open) noexcept { connections_open_ = open; }

  /// The whole exposition, Prometheus text format 0.0.4.
  std::string render() const;
  /// The Content-Type of render()'s text.
  static constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

 private:
  // The text of the domain families' series, under domains_mutex_.
  void append_requests(std::string& out) const;
  void append_bytes(std::string& out, bool up) const;

  std::shared_ptr<prometheus::Registry> registry_;
  std::array<prometheus::Counter*, 32> guard_refusals_{};  // by address_class
  std::array<prometheus::Counter*, 3> dns_lookups_{};      // by dns_result
  prometheus::Family<prometheus::Counter>* reloads_;
  prometheus::Family<prometheus::Gauge>* config_info_;
  prometheus::Gauge* config_series_ = nullptr;
  std::string config_hash_;
  latency_histogram connect_seconds_;
  latency_histogram request_seconds_;
  latency_histogram dns_seconds_;
  latency_histogram hook_seconds_;
  prometheus::Family<prometheus::Counter>* hook_questions_;
  std::atomic<std::int64_t> hook_pending_{0};
  sharded_count held_;
  std::atomic<std::int64_t> remembered_{0};
  sharded_count tunnels_open_;
  sharded_count upstream_reused_;
  sharded_count upstream_idle_;
  const std::atomic<std::size_t>* connections_open_ = nullptr;

  std::atomic<std::size_t> max_domains_;
  mutable std::mutex domains_mutex_;  // domains_, request_labels_ and each domain's requests_seen bits
  std::unordered_map<std::string, std::unique_ptr<domain_metrics>, string_hash, std::equal_to<>> domains_;
  // Per request slot, the labels around `domain`, in the text format's (sorted) order:
  // `decision="allow",` before it and `,protocol="http",reason="rule"` after it;
  // written the first time any domain uses the slot.
  std::array<std::pair<std::string, std::string>, domain_metrics::request_slots> request_labels_;
  mutable std::mutex config_mutex_;  // config_series_, config_hash_
  mutable std::atomic<std::size_t> last_render_size_{0};  // render()'s reservation
};

/// `families` in the Prometheus text format 0.0.4, the very text
/// prometheus::TextSerializer writes, built in one string of `reserve` bytes to start
/// with (no stream: a scrape of 1,000 domains' series takes a fraction of the time).
std::string exposition_text(const std::vector<prometheus::MetricFamily>& families, std::size_t reserve = 0);

/// The egressd_config_info hash of a policy: 16 hex digits of FNV-1a 64 over its rules
/// (list, entry text, preset) in order and its `unknown` and `allow_private` settings, so
/// two hosts, or a host before and after a reload, compare by it.
std::string policy_hash(const policy::snapshot& p);

}  // namespace egressd::proxy
