#pragma once
// Asynchronous name resolution for the sessions (README "Policy semantics", "Life of a session"):
// c-ares driven by each worker's io_context, answers shared by all workers through a
// TTL cache. A session resolves once, the guard classifies what came back, and the
// dialer uses only those addresses: nothing here ever looks a name up twice for one
// request. How a lookup flows is told at the top of dns.cpp.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proxy/string_hash.hpp"

namespace egressd::proxy {

/// Why a lookup produced no address. Zero is not used (it means success in an error
/// code). The names are stable: logs and metric labels use them.
enum class dns_errc {
  /// The name does not exist: NXDOMAIN from DNS, and not in the hosts file. Cached
  /// for dns_options::negative_ttl.
  not_found = 1,
  /// The name exists but has neither an A nor an AAAA record. Cached for
  /// dns_options::negative_ttl.
  no_data,
  /// No answer within dns_options::timeout (the lookup's own deadline, or c-ares gave
  /// up after its retransmissions). Never cached.
  timeout,
  /// The servers answered SERVFAIL, NOTIMP or FORMERR, sent an answer c-ares could not
  /// parse, or could not be reached (connection refused). With c-ares 1.18 (Debian
  /// 12) also REFUSED: that version reports both as "could not contact DNS servers".
  /// Never cached.
  server_failure,
  /// Every server answered REFUSED (reported by c-ares 1.19 and later only; see
  /// server_failure). Never cached.
  refused,
  /// Not a name that can be queried: empty, longer than 253 characters, or a label
  /// longer than 63. Never cached.
  bad_name,
  /// resolver::shutdown() ran (or the resolver was destroyed) before the answer, or
  /// the awaiting operation was cancelled through its cancellation slot.
  cancelled,
  /// Out of memory, or a c-ares status this code does not expect: a bug or resource
  /// exhaustion, never something a client or a server can cause on purpose.
  internal,
};

/// The category of dns_errc; its name is "egressd.dns". A boost::system category,
/// because resolve() reports in a boost::system::error_code (Asio's), where a
/// std::error_category would be wrapped and report its name as "std:unknown"; it
/// converts to a std::error_category (`std::error_code(ec)` keeps name and message).
const boost::system::error_category& dns_category() noexcept;

/// Wraps a dns_errc in an error code (found by ADL). Both error code types convert
/// from the enum and compare equal to it: `ec == dns_errc::timeout`.
boost::system::error_code make_error_code(dns_errc e) noexcept;

/// The enumerator's name (`not_found`); "unknown" for a value outside the enum.
std::string_view to_string(dns_errc e) noexcept;

std::ostream& operator<<(std::ostream& os, dns_errc e);

/// How resolvers look names up. Validated by config/ before it gets here.
struct dns_options {
  /// Name servers as "ip", "ip:port" or "[ipv6]:port" ("127.0.0.1:5353",
  /// "[::1]:53"). Empty: the `nameserver` lines of /etc/resolv.conf (127.0.0.1 if it
  /// has none). Read once, when a resolver is constructed.
  std::vector<std::string> servers;
  /// Overall deadline of one lookup, all retransmissions and servers included. c-ares
  /// retransmits after a third of it. Must be positive.
  std::chrono::milliseconds timeout{5000};
  /// Longest time an answer is cached, whatever its TTL. Zero disables caching of
  /// positive answers.
  std::chrono::milliseconds max_ttl{300000};
  /// How long "no such name" and "no address" answers are cached. Zero disables
  /// negative caching.
  std::chrono::milliseconds negative_ttl{10000};
  /// Consult /etc/hosts before DNS (c-ares lookups "fb"; the environment variable
  /// CARES_HOSTS, when set, names another file, as c-ares documents for
  /// ARES_AI_ENVHOSTS). Answers from the file are cached for 5 s (capped by max_ttl).
  /// c-ares 1.18 reads the file on every cache miss.
  bool hosts_file = true;
};

/// A successful lookup.
struct dns_answer {
  /// Never empty on success. Distinct addresses in c-ares's RFC 6724 order, then
  /// interleaved by family starting with the family of the first (RFC 8305 §4), so
  /// a dialer that takes them in order alternates IPv6 and IPv4. IPv6 link-local
  /// addresses from the hosts file keep their scope id.
  std::vector<boost::asio::ip::address> addresses;
  /// The answer (or, with an error, the negative answer) came from the dns_cache.
  bool from_cache = false;
};

/// One cached outcome of a lookup.
struct dns_cache_entry {
  /// Set for a negative answer (dns_errc::not_found or no_data); then `addresses` is
  /// null.
  std::optional<dns_errc> failure;
  /// The addresses of a positive answer, shared so that a hit copies a pointer under
  /// the lock, not a vector.
  std::shared_ptr<const std::vector<boost::asio::ip::address>> addresses;
  /// The entry is valid strictly before this instant.
  std::chrono::steady_clock::time_point expires;
};

/// Answers shared by every worker's resolver, keyed by canonical name.
/// Constructed once (in main) and outlives every resolver that uses it.
/// @par Thread Safety
/// Every member function may be called from any thread at the same time: one mutex,
/// held only to copy or move an entry.
class dns_cache {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr std::size_t default_max_entries = 10'000;

  /// A cache that never holds more than `max_entries` names (at least 1).
  explicit dns_cache(std::size_t max_entries = default_max_entries);

  dns_cache(const dns_cache&) = delete;
  dns_cache& operator=(const dns_cache&) = delete;

  /// The entry for `name` if there is one and `now` is before its expiry.
  std::optional<dns_cache_entry> find(std::string_view name, clock::time_point now) const;

  /// Stores (or replaces) the entry for `name`. When the cache is full, expired
  /// entries are dropped first; if that frees nothing, about 1/16 of the entries,
  /// chosen arbitrarily, so that a flood of distinct names costs one sweep per
  /// max_entries/16 insertions, not one per insertion. An entry that has already
  /// expired at `now` is not stored.
  void store(std::string name, dns_cache_entry entry, clock::time_point now);

  /// Number of entries held, expired ones included.
  std::size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, dns_cache_entry, string_hash, std::equal_to<>> entries_;
  std::size_t max_entries_;
};

/// Resolves host names to addresses for the sessions of one worker: one resolver per
/// worker thread, bound to that worker's single-threaded io_context. Lookups run
/// concurrently (a slow name never delays another); concurrent lookups of the same
/// name on one resolver share one query.
/// @par Thread Safety
/// Not thread-safe: construct, use and destroy it on its executor's thread only (a
/// worker's sessions never leave that thread, README "Life of a session"). The dns_cache it shares
/// is thread-safe.
class resolver {
 public:
  /// Opens a c-ares channel reading /etc/resolv.conf (or using options.servers).
  /// `cache` must outlive the resolver. Search domains from resolv.conf are not
  /// applied: the name policy judged is the name that is resolved.
  /// @throws std::runtime_error if c-ares cannot initialise or a server in
  /// options.servers is malformed.
  resolver(boost::asio::any_io_executor ex, dns_cache& cache, const dns_options& options);

  /// Cancels pending lookups as shutdown() does, then closes the channel. Sockets are
  /// c-ares's: they are deregistered from the reactor, never closed by Asio.
  ~resolver();

  resolver(const resolver&) = delete;
  resolver& operator=(const resolver&) = delete;

  /// Resolves `name`, a canonical host (lower-case, no trailing dot; README "Policy semantics")
  /// to its A and AAAA addresses. An IP literal (bracketed IPv6 too) comes back at
  /// once, uncached, without a query. Must be awaited by a coroutine running on this
  /// resolver's executor; completes there.
  /// Returns an empty error code and at least one address, or a dns_errc (with
  /// `from_cache` set when a cached negative answer was used). Never throws for a
  /// bad name or a DNS failure.
  /// Cancellation: terminal, partial and total cancellation complete this operation
  /// at once with dns_errc::cancelled; the query itself continues (c-ares cannot stop
  /// one query) and its answer still fills the cache.
  boost::asio::awaitable<std::pair<boost::system::error_code, dns_answer>> resolve(
      std::string name);

  /// Completes every pending lookup with dns_errc::cancelled; later calls to
  /// resolve() still answer IP literals and cache hits but complete anything that
  /// would need a query with dns_errc::cancelled. Used on stop. Idempotent.
  void shutdown();

 private:
  struct impl;
  std::shared_ptr<impl> impl_;  // shared with the handlers of pending operations
};

}  // namespace egressd::proxy

template <>
struct boost::system::is_error_code_enum<egressd::proxy::dns_errc> : std::true_type {};
template <>
struct std::is_error_code_enum<egressd::proxy::dns_errc> : std::true_type {};
