#pragma once
// A worker's pool of idle upstream connections for plain HTTP (README "Wire
// behaviour"): a connection whose exchange ended cleanly (a complete response, both
// sides willing to keep it) outlives its client connection and carries a later
// request of another client connection of the same worker to the same origin, as
// one-shot clients (curl, pip, package managers: a new connection per request) would
// otherwise pay a connect per request.
//
// An entry is only ever handed to a request with the same key: the canonical host
// and port as judged, the reload generation (config and policy) that allowed it, and
// the authenticated user; never across policies or credentials. The address it was
// dialled to comes with it and is judged again by the request's guard. Bounded per
// key (limits.upstream_idle_per_origin) and in total (limits.upstream_idle_max, and
// what the descriptor plan leaves), closed when idle past limits.upstream_idle_timeout,
// when a reload replaces its generation (at once and with a log line when
// reload.revoke finds its destination denied, else at the next sweep), on drain and
// at shutdown. One thread: no locks.

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "policy/decision.hpp"
#include "proxy/idle_pool.hpp"
#include "proxy/worker.hpp"

namespace egressd::config {
struct limits_config;
}

namespace egressd::proxy {

struct generation;

/// An idle upstream connection and what it may be used for.
struct pooled_connection {
  boost::asio::ip::tcp::socket socket;
  std::string host;  ///< canonical host
  std::uint16_t port = 0;
  boost::asio::ip::tcp::endpoint remote;
  /// The reason of the decision it was last used under (revocation's `was`).
  policy::decision_reason allowed_for{};
  /// The generation that allowed it, held (so its address names no other generation)
  /// by a pin counted in this worker alone.
  generation_pin gen;
  std::string user;  ///< the authenticated user; empty without proxy auth
};

class upstream_pool final : public worker_task {
 public:
  /// `max_total`: the most idle connections this worker may hold (the descriptor
  /// plan's share); limits.upstream_idle_max lowers it further.
  upstream_pool(worker& w, std::size_t max_total);
  ~upstream_pool();

  /// A live idle connection to host:port allowed by `gen` for `user`, or nullopt.
  /// Connections the origin closed (or wrote to) while idle are closed on the way.
  std::optional<pooled_connection> take(std::string_view host, std::uint16_t port, const generation& gen,
                                        std::string_view user);
  /// Parks `c` (open, its last response complete) for limits.upstream_idle_timeout of
  /// `limits`, unless the pool is off or the proxy drains; what does not fit is closed.
  void put(pooled_connection&& c, const config::limits_config& limits);

  std::size_t size() const noexcept { return pool_.size(); }

  void abort() noexcept override;
  void check_deadline(std::chrono::steady_clock::time_point now) noexcept override;
  bool revoke(const revocation& r) override;

 private:
  void sync() noexcept;

  worker& w_;
  std::size_t max_total_;
  idle_pool<pooled_connection> pool_;
  bool attached_ = false;
  std::size_t counted_ = 0;  // the size egressd_upstream_idle_connections has of this pool
};

}  // namespace egressd::proxy
