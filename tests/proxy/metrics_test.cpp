// proxy/metrics without sockets: the domain cap, the per-worker cache, the request
// series, the histograms and the exposition text.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <chrono>
#include <string_view>
#include <limits>
#include <string>
#include <vector>

#include "proxy/metrics.hpp"

using egressd::proxy::domain_cache;
using egressd::proxy::latency_histogram;
using egressd::proxy::metrics;
using egressd::proxy::request_labels;

namespace {

request_labels deny_labels() {
  request_labels l;
  l.protocol = 1;
  l.protocol_name = "http";
  l.decision = 0;
  l.decision_name = "deny";
  l.reason = 7;
  l.reason_name = "unknown_denied";
  return l;
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("the domain label is capped, the rest counted under _other", "[unit][metrics]") {
  metrics m(3);
  domain_cache cache(m);
  for (int i = 0; i < 50; ++i) m.count_request(cache.lookup("h" + std::to_string(i) + ".example.com"), deny_labels());
  // The same registrable domain: one value.
  CHECK(m.domain_count() == 1);
  for (int i = 0; i < 50; ++i) m.count_request(cache.lookup("d" + std::to_string(i) + ".test"), deny_labels());
  CHECK(m.domain_count() == 4);  // 3 domains and _other
  const auto text = m.render();
  CHECK(count_of(text, "egressd_requests_total{") == 4);
  CHECK(text.find("domain=\"example.com\",protocol=\"http\",reason=\"unknown_denied\"} 50") != std::string::npos);
  CHECK(text.find("domain=\"_other\"") != std::string::npos);
  // Other + 2 of the d*.test names: 50 requests in all besides example.com's.
  CHECK(text.find("domain=\"_other\",protocol=\"http\",reason=\"unknown_denied\"} 48") != std::string::npos);
  // A raised cap lets new domains in again; a known one keeps its series.
  m.set_max_domains(4);
  CHECK(m.domain(std::string_view("new.test")).name == "new.test");
  CHECK(&m.domain(std::string_view("example.com")) == &cache.lookup("www.example.com"));
}

TEST_CASE("the worker cache is bounded and hits return the same handles", "[unit][metrics]") {
  metrics m(100000);
  domain_cache cache(m);
  auto& a = cache.lookup("a.example.org");
  CHECK(&cache.lookup("a.example.org") == &a);
  CHECK(&cache.lookup("b.example.org") == &a);  // same registrable domain
  CHECK(cache.lookup("127.0.0.1").name == "ip");
  CHECK(cache.lookup("bad host").name == "invalid");
  CHECK(cache.lookup("").name == "invalid");
  for (std::size_t i = 0; i < domain_cache::max_entries * 2; ++i) cache.lookup("x" + std::to_string(i) + ".org");
  CHECK(cache.size() <= domain_cache::max_entries);
  CHECK(&cache.lookup("a.example.org") == &a);  // recomputed after a clear: same handles
}

TEST_CASE("latency histograms: cumulative buckets, count and sum", "[unit][metrics]") {
  metrics m;
  m.observe_connect(std::chrono::microseconds(50));       // <= 100 us
  m.observe_connect(std::chrono::microseconds(2000));     // <= 2.5 ms
  m.observe_connect(std::chrono::microseconds(60000000)); // +Inf
  const auto text = m.render();
  CHECK(text.find("egressd_upstream_connect_seconds_bucket{le=\"0.0001\"} 1") != std::string::npos);
  CHECK(text.find("egressd_upstream_connect_seconds_bucket{le=\"0.001\"} 1") != std::string::npos);
  CHECK(text.find("egressd_upstream_connect_seconds_bucket{le=\"0.0025\"} 2") != std::string::npos);
  CHECK(text.find("egressd_upstream_connect_seconds_bucket{le=\"30\"} 2") != std::string::npos);
  CHECK(text.find("egressd_upstream_connect_seconds_bucket{le=\"+Inf\"} 3") != std::string::npos);
  CHECK(text.find("egressd_upstream_connect_seconds_count 3") != std::string::npos);
  CHECK(text.find("egressd_upstream_connect_seconds_sum 60.00205") != std::string::npos);
}

TEST_CASE("reloads, config hash, guard refusals and gauges", "[unit][metrics]") {
  metrics m;
  std::atomic<std::size_t> open{7};
  m.set_connections_source(&open);
  m.set_config_hash("aaaa");
  m.set_config_hash("bbbb");
  m.count_reload(true);
  m.count_reload(false);
  m.count_reload(false);
  m.count_guard_refusal(egressd::policy::address_class::loopback);
  m.count_guard_refusal(egressd::policy::address_class::none);  // not a class: ignored
  m.tunnel_opened();
  m.tunnel_opened();
  m.tunnel_closed();
  const auto text = m.render();
  CHECK(text.find("egressd_config_info{hash=\"bbbb\"} 1") != std::string::npos);
  CHECK(text.find("hash=\"aaaa\"") == std::string::npos);
  CHECK(text.find("egressd_reloads_total{result=\"success\"} 1") != std::string::npos);
  CHECK(text.find("egressd_reloads_total{result=\"failure\"} 2") != std::string::npos);
  CHECK(text.find("egressd_guard_refusals_total{class=\"loopback\"} 1") != std::string::npos);
  CHECK(text.find("egressd_guard_refusals_total{class=\"private_network\"} 0") != std::string::npos);
  CHECK(text.find("egressd_connections_open 7") != std::string::npos);
  CHECK(text.find("egressd_tunnels_open 1") != std::string::npos);
  CHECK(text.find("egressd_build_info{version=") != std::string::npos);
}

TEST_CASE("exposition_text writes what prometheus-cpp's TextSerializer writes", "[unit][metrics]") {
  using prometheus::ClientMetric;
  using prometheus::MetricFamily;
  using prometheus::MetricType;
  std::vector<MetricFamily> families;
  auto metric = [](std::vector<ClientMetric::Label> labels) {
    ClientMetric m;
    m.label = std::move(labels);
    return m;
  };
  MetricFamily counter{"egressd_x_total", "Help with \\ and \"quotes\".", MetricType::Counter, {}};
  for (double v : {0.0, 1.0, 42.0, 123456789012.0, 1e15, 1e16, 2.5e-7, 0.1 + 0.2, -3.0,
                   std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                   std::numeric_limits<double>::quiet_NaN()}) {
    auto m = metric({{"domain", "a\\b\"c\nd.example"}, {"reason", "r"}});
    m.counter.value = v;
    counter.metric.push_back(m);
  }
  auto stamped = metric({});
  stamped.counter.value = 7;
  stamped.timestamp_ms = 1700000000123;
  counter.metric.push_back(stamped);
  MetricFamily gauge{"egressd_g", "", MetricType::Gauge, {}};
  auto g = metric({});
  g.gauge.value = 0.25;
  gauge.metric.push_back(g);
  MetricFamily untyped{"egressd_u", "u", MetricType::Untyped, {}};
  auto u = metric({{"k", "v"}});
  u.untyped.value = 3;
  untyped.metric.push_back(u);
  MetricFamily summary{"egressd_s", "s", MetricType::Summary, {}};
  auto sm = metric({{"k", "v"}});
  sm.summary.sample_count = 3;
  sm.summary.sample_sum = 1.5;
  sm.summary.quantile = {{0.5, 0.4}, {0.99, 1.0}};
  summary.metric.push_back(sm);
  MetricFamily hist{"egressd_h_seconds", "h", MetricType::Histogram, {}};
  auto h = metric({{"k", "v"}});
  h.histogram.sample_count = 9;
  h.histogram.sample_sum = 0.123456;
  h.histogram.bucket = {{1, 0.0001}, {4, 0.00025}, {9, 30}};  // no +Inf: the serializer adds it
  hist.metric.push_back(h);
  auto h2 = metric({});
  h2.histogram.sample_count = 2;
  h2.histogram.bucket = {{1, 1}, {2, std::numeric_limits<double>::infinity()}};
  hist.metric.push_back(h2);
  families = {counter, gauge, untyped, summary, hist};
  CHECK(egressd::proxy::exposition_text(families) == prometheus::TextSerializer().Serialize(families));
}

TEST_CASE("render() is the TextSerializer text of 1,000 domains' series", "[unit][metrics]") {
  metrics m(1000);
  domain_cache cache(m);
  for (int i = 0; i < 1000; ++i) {
    auto& d = cache.lookup("www.site" + std::to_string(i) + ".com");
    m.count_request(d, deny_labels());
    d.bytes_down.fetch_add(static_cast<std::uint64_t>(i) * 1000003, std::memory_order_relaxed);
  }
  m.observe_connect(std::chrono::microseconds(1234));
  m.count_request(cache.lookup("www.site7.com"), deny_labels());
  const auto text = m.render();
  CHECK(count_of(text, "egressd_requests_total{") == 1000);
  CHECK(count_of(text, "egressd_bytes_down_total{") == 1000);
  // The series by domain are written straight from the handles: each family's lines
  // are the ones TextSerializer writes for the same samples (in another order).
  prometheus::MetricFamily requests{"egressd_requests_total",
                                    "Requests by registrable domain, protocol, decision and reason (denials: "
                                    "decision=deny).",
                                    prometheus::MetricType::Counter,
                                    {}};
  prometheus::MetricFamily down{"egressd_bytes_down_total",
                                "Bytes from upstreams to clients by registrable domain (tunnels per relay batch, "
                                "plain HTTP responses).",
                                prometheus::MetricType::Counter,
                                {}};
  for (int i = 0; i < 1000; ++i) {
    const std::string domain = "site" + std::to_string(i) + ".com";
    prometheus::ClientMetric r;
    r.label = {{"decision", "deny"}, {"domain", domain}, {"protocol", "http"}, {"reason", "unknown_denied"}};
    r.counter.value = i == 7 ? 2 : 1;
    requests.metric.push_back(r);
    prometheus::ClientMetric b;
    b.label = {{"domain", domain}};
    b.counter.value = static_cast<double>(static_cast<std::uint64_t>(i) * 1000003);
    down.metric.push_back(b);
  }
  for (const auto* f : {&requests, &down}) {
    const auto expected = prometheus::TextSerializer().Serialize({*f});
    // render()'s section of this family: its HELP line to the next family's.
    const auto from = text.find("# HELP " + f->name + " ");
    REQUIRE(from != std::string::npos);
    const auto to = text.find("# HELP ", from + 1);
    auto lines = [](std::string_view t) {
      std::vector<std::string> v;
      for (std::size_t at = 0; at < t.size();) {
        const auto nl = t.find('\n', at);
        v.emplace_back(t.substr(at, nl - at));
        at = nl == std::string_view::npos ? t.size() : nl + 1;
      }
      std::sort(v.begin(), v.end());
      return v;
    };
    CHECK(lines(std::string_view(text).substr(from, to - from)) == lines(expected));
  }
  CHECK(text.find("egressd_bytes_down_total{domain=\"site999.com\"} 999002997\n") != std::string::npos);
  CHECK(text.find("egressd_upstream_connect_seconds_sum 0.001234\n") != std::string::npos);
}
