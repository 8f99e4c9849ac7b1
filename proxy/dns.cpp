#include "proxy/dns.hpp"

// Flow: resolve(name) answers an IP literal or a cache hit without suspending. A
// miss joins the query this resolver already has in flight for the name (one
// coalesced query, many waiters) or starts one: ares_getaddrinfo (the hosts file,
// then A and AAAA over DNS, lookups "fb") plus a deadline timer of
// dns_options::timeout. c-ares says which of its sockets to watch through the socket
// state callback; each becomes a non-owning stream_descriptor whose readiness runs
// ares_process_fd, and one steady_timer follows ares_timeout() for retransmissions.
// When c-ares calls back, the answer (positive or negative) goes into the shared
// dns_cache and every waiter is completed by a post to its executor. If the deadline
// fired first, the waiters already have dns_errc::timeout and the late answer only
// fills the cache; a waiter whose coroutine was cancelled has already left. Waiters,
// queries and socket watches are held by shared_ptr and the handlers of pending
// operations reach the resolver through a weak_ptr, so a cancelled waiter, a late
// answer and a destroyed resolver never meet freed memory.
//
// Everything here except dns_cache runs on the resolver's single thread; c-ares
// calls back only from inside the ares_* calls made below, never on its own.
// Two costs are c-ares 1.18's and accepted: the hosts file is read (a small local
// file) on every cache miss, inside ares_getaddrinfo; and c-ares closes its UDP
// socket when no query is left, so each burst gets a fresh random source port (we
// do not set ARES_FLAG_STAYOPEN: one long-lived port would make spoofed answers
// easier to land, and 1.18 has no ARES_OPT_UDP_MAX_QUERIES to rotate it).

#include <ares.h>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <limits>
#include <ostream>
#include <stdexcept>
#include <tuple>

namespace egressd::proxy {

namespace asio = boost::asio;

// ---- dns_errc ---------------------------------------------------------------------

namespace {

class dns_category_impl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "egressd.dns"; }
  std::string message(int value) const override {
    return std::string(to_string(static_cast<dns_errc>(value)));
  }
};

}  // namespace

const boost::system::error_category& dns_category() noexcept {
  // One instance: error categories are compared by address.
  static const dns_category_impl category;
  return category;
}

boost::system::error_code make_error_code(dns_errc e) noexcept {
  return {static_cast<int>(e), dns_category()};
}

std::string_view to_string(dns_errc e) noexcept {
  switch (e) {
    case dns_errc::not_found: return "not_found";
    case dns_errc::no_data: return "no_data";
    case dns_errc::timeout: return "timeout";
    case dns_errc::server_failure: return "server_failure";
    case dns_errc::refused: return "refused";
    case dns_errc::bad_name: return "bad_name";
    case dns_errc::cancelled: return "cancelled";
    case dns_errc::internal: return "internal";
  }
  return "unknown";
}

std::ostream& operator<<(std::ostream& os, dns_errc e) { return os << to_string(e); }

// ---- dns_cache --------------------------------------------------------------------

dns_cache::dns_cache(std::size_t max_entries) : max_entries_(std::max<std::size_t>(max_entries, 1)) {}

std::optional<dns_cache_entry> dns_cache::find(std::string_view name,
                                               clock::time_point now) const {
  const std::lock_guard lock(mutex_);
  const auto it = entries_.find(name);
  if (it == entries_.end() || now >= it->second.expires) return std::nullopt;
  return it->second;
}

void dns_cache::store(std::string name, dns_cache_entry entry, clock::time_point now) {
  if (now >= entry.expires) return;
  const std::lock_guard lock(mutex_);
  if (const auto it = entries_.find(name); it != entries_.end()) {
    it->second = std::move(entry);
    return;
  }
  if (entries_.size() >= max_entries_) {
    std::erase_if(entries_, [now](const auto& kv) { return now >= kv.second.expires; });
    if (entries_.size() >= max_entries_) {
      // Still full of live entries (a client inventing names): drop a sixteenth,
      // whichever come first, so the next max_entries/16 stores need no sweep.
      const std::size_t keep = max_entries_ - std::max<std::size_t>(max_entries_ / 16, 1);
      while (entries_.size() > keep) entries_.erase(entries_.begin());
    }
  }
  entries_.emplace(std::move(name), std::move(entry));
}

std::size_t dns_cache::size() const {
  const std::lock_guard lock(mutex_);
  return entries_.size();
}

// ---- resolver ---------------------------------------------------------------------

namespace {

using address = asio::ip::address;
using clock = std::chrono::steady_clock;
using result_signature = void(boost::system::error_code, dns_answer);
using result_handler = asio::any_completion_handler<result_signature>;
using result_pair = std::pair<boost::system::error_code, dns_answer>;

// RFC 1035 §2.3.4, as the canonical host of README "Policy semantics".
constexpr std::size_t max_name_bytes = 253;
// Answers from the hosts file carry no TTL (c-ares reports 0).
constexpr std::chrono::milliseconds hosts_ttl{5000};
// A DNS TTL of 0 would make every request a query; RFC 8767 §4 allows a short floor.
constexpr std::chrono::milliseconds min_ttl{1000};
// c-ares tries each server this many times; with the per-try timeout at a third of
// the deadline, one server gets a retransmission before the deadline.
constexpr int tries = 2;

// ares_library_init once per process, from whichever resolver comes first (a magic
// static: initialised exactly once even when workers race). Never cleaned up: the
// library lives as long as the process.
int library_status() {
  static const int status = ares_library_init(ARES_LIB_INIT_ALL);
  return status;
}

dns_errc errc_from_ares(int status) noexcept {
  switch (status) {
    case ARES_ENOTFOUND: return dns_errc::not_found;
    case ARES_ENODATA: return dns_errc::no_data;
    case ARES_ETIMEOUT: return dns_errc::timeout;
    // c-ares 1.18 reports a lookup whose every try got SERVFAIL or REFUSED as
    // ARES_ECONNREFUSED ("could not contact DNS servers"); later versions keep the
    // rcode's own status.
    case ARES_ESERVFAIL:
    case ARES_ENOTIMP:
    case ARES_EFORMERR:
    case ARES_EBADRESP:
    case ARES_ECONNREFUSED:
    case ARES_EOF:
      return dns_errc::server_failure;
    case ARES_EREFUSED: return dns_errc::refused;
    case ARES_EBADNAME:
    case ARES_EBADSTR:
    case ARES_ENONAME:
      return dns_errc::bad_name;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
      return dns_errc::cancelled;
    default: return dns_errc::internal;
  }
}

result_pair failure(dns_errc e, bool from_cache = false) {
  dns_answer answer;
  answer.from_cache = from_cache;
  return {boost::system::error_code(e), std::move(answer)};
}

std::optional<address> parse_ip_literal(std::string_view name) {
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);
  }
  boost::system::error_code ec;
  const address parsed = asio::ip::make_address(name, ec);
  if (ec) return std::nullopt;
  return parsed;
}

std::optional<address> to_address(const ares_addrinfo_node& node) {
  if (node.ai_addr == nullptr) return std::nullopt;
  if (node.ai_family == AF_INET && node.ai_addrlen >= sizeof(sockaddr_in)) {
    sockaddr_in sin{};
    std::memcpy(&sin, node.ai_addr, sizeof sin);  // ai_addr may be unaligned for sockaddr_in
    asio::ip::address_v4::bytes_type bytes{};
    std::memcpy(bytes.data(), &sin.sin_addr, bytes.size());
    return asio::ip::address_v4(bytes);
  }
  if (node.ai_family == AF_INET6 && node.ai_addrlen >= sizeof(sockaddr_in6)) {
    sockaddr_in6 sin6{};
    std::memcpy(&sin6, node.ai_addr, sizeof sin6);
    asio::ip::address_v6::bytes_type bytes{};
    std::memcpy(bytes.data(), &sin6.sin6_addr, bytes.size());
    return asio::ip::address_v6(bytes, sin6.sin6_scope_id);
  }
  return std::nullopt;
}

// The addresses of a c-ares answer, distinct, in c-ares's RFC 6724 order
// (ares__sortaddrinfo) and then interleaved by family starting with the first
// address's family (RFC 8305 §4), and the smallest TTL of the records and CNAMEs.
std::pair<std::vector<address>, std::chrono::seconds> read_answer(const ares_addrinfo* result) {
  std::vector<address> first_family;
  std::vector<address> other_family;
  int ttl = std::numeric_limits<int>::max();
  if (result == nullptr) return {};
  for (const ares_addrinfo_node* node = result->nodes; node != nullptr; node = node->ai_next) {
    const auto parsed = to_address(*node);
    if (!parsed) continue;
    ttl = std::min(ttl, node->ai_ttl);
    const bool same_family =
        first_family.empty() || first_family.front().is_v4() == parsed->is_v4();
    auto& list = same_family ? first_family : other_family;
    if (std::find(list.begin(), list.end(), *parsed) == list.end()) list.push_back(*parsed);
  }
  for (const ares_addrinfo_cname* cname = result->cnames; cname != nullptr;
       cname = cname->next) {
    ttl = std::min(ttl, cname->ttl);
  }
  std::vector<address> ordered;
  ordered.reserve(first_family.size() + other_family.size());
  for (std::size_t i = 0; i < std::max(first_family.size(), other_family.size()); ++i) {
    if (i < first_family.size()) ordered.push_back(first_family[i]);
    if (i < other_family.size()) ordered.push_back(other_family[i]);
  }
  return {std::move(ordered), std::chrono::seconds(std::max(ttl, 0))};
}

struct addrinfo_deleter {
  void operator()(ares_addrinfo* p) const noexcept { ares_freeaddrinfo(p); }
};

}  // namespace

struct resolver::impl : std::enable_shared_from_this<resolver::impl> {
  // One coroutine awaiting a query. The handler is only ever move-constructed, never
  // move-assigned: Boost 1.81's any_completion_handler::operator=(&&) copies `other`
  // as an lvalue into its converting constructor and recurses until the stack ends.
  struct waiter {
    explicit waiter(result_handler h) : handler(std::move(h)) {}
    result_handler handler;        // empty once completed
    asio::cancellation_slot slot;  // the awaiting operation's slot, if connected
  };

  // One ares_getaddrinfo in flight, shared by every waiter for its name. Owned by
  // `inflight` until answered, by the argument c-ares holds until it calls back, and
  // by the deadline's handler until that runs.
  struct query {
    query(const asio::any_io_executor& ex, std::string n, std::weak_ptr<impl> o)
        : name(std::move(n)), owner(std::move(o)), deadline(ex) {}
    std::string name;
    std::weak_ptr<impl> owner;
    std::vector<std::shared_ptr<waiter>> waiters;
    asio::steady_timer deadline;
    // True while ares_getaddrinfo runs: an answer then comes from the hosts file
    // (DNS never answers synchronously), which is how its TTL 0 is told apart from a
    // DNS TTL 0.
    bool starting = false;
    // The waiters have their answer (or timed out, or were cancelled); a later c-ares
    // callback only fills the cache.
    bool finished = false;
  };

  // One c-ares socket watched by the reactor. c-ares owns the descriptor: it is
  // released before the stream_descriptor is destroyed, never closed by Asio.
  struct watch {
    watch(const asio::any_io_executor& ex, ares_socket_t s, std::weak_ptr<impl> o)
        : fd(s), owner(std::move(o)), descriptor(ex) {}
    ~watch() { descriptor.release(); }
    watch(const watch&) = delete;
    watch& operator=(const watch&) = delete;
    ares_socket_t fd;
    std::weak_ptr<impl> owner;
    asio::posix::stream_descriptor descriptor;
    bool want_read = false;
    bool want_write = false;
    bool read_armed = false;
    bool write_armed = false;
    bool closed = false;  // c-ares closed it; pending handlers must not process it
  };

  impl(asio::any_io_executor ex, dns_cache& c, const dns_options& o)
      : executor(std::move(ex)), cache(c), options(o), timer(executor) {}

  ~impl() {
    // Normally close() has run; this covers a constructor that threw after
    // ares_init_options succeeded.
    if (channel != nullptr) ares_destroy(channel);
    for (auto& entry : watches) entry.second->descriptor.release();
  }

  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  void open() {
    if (const int status = library_status(); status != ARES_SUCCESS) {
      throw std::runtime_error(std::string("c-ares: library initialisation failed: ") +
                               ares_strerror(status));
    }
    ares_options opts{};
    int mask = 0;
    opts.sock_state_cb = &on_socket_state;
    opts.sock_state_cb_data = this;
    mask |= ARES_OPT_SOCK_STATE_CB;
    std::string lookups = options.hosts_file ? "fb" : "b";
    opts.lookups = lookups.data();
    mask |= ARES_OPT_LOOKUPS;
    // No search domains (resolv.conf `search`, LOCALDOMAIN) and no HOSTALIASES: the
    // name policy allowed is the name resolved, never "name.corp.example".
    opts.domains = nullptr;
    opts.ndomains = 0;
    mask |= ARES_OPT_DOMAINS;
    opts.flags = ARES_FLAG_NOALIASES;
    mask |= ARES_OPT_FLAGS;
    // ARES_OPT_TIMEOUTMS is per try; the overall deadline is our own timer. A third of
    // it for the first try and twice that for the second (c-ares doubles per round)
    // make c-ares give up at about the deadline per server, so a query abandoned at
    // the deadline does not linger.
    const auto per_try = std::clamp<long long>(options.timeout.count() / 3, 1, INT_MAX);
    opts.timeout = static_cast<int>(per_try);
    mask |= ARES_OPT_TIMEOUTMS;
    opts.tries = tries;
    mask |= ARES_OPT_TRIES;

    if (const int status = ares_init_options(&channel, &opts, mask); status != ARES_SUCCESS) {
      channel = nullptr;
      throw std::runtime_error(std::string("c-ares: cannot initialise a channel: ") +
                               ares_strerror(status));
    }
    if (!options.servers.empty()) {
      std::string csv;
      for (const auto& server : options.servers) {
        if (server.empty() || server.find(',') != std::string::npos) {
          throw std::runtime_error("invalid DNS server \"" + server + "\"");
        }
        if (!csv.empty()) csv += ',';
        csv += server;
      }
      if (const int status = ares_set_servers_ports_csv(channel, csv.c_str());
          status != ARES_SUCCESS) {
        throw std::runtime_error("invalid DNS server list \"" + csv + "\": " +
                                 ares_strerror(status));
      }
    }
  }

  // ---- waiters ----

  // Posts the waiter's completion (never invokes it inline: we may be inside the
  // initiating function or inside c-ares). `clear_slot` is false only when called
  // from the slot's own handler, which must not destroy itself.
  static void complete(const asio::any_io_executor& ex, waiter& w,
                       boost::system::error_code ec, dns_answer answer, bool clear_slot) {
    if (!w.handler) return;
    if (clear_slot && w.slot.is_connected()) w.slot.clear();
    result_handler handler(std::move(w.handler));  // leaves w.handler empty
    asio::post(ex, asio::append(std::move(handler), ec, std::move(answer)));
  }

  void join(std::string name, result_handler handler, asio::cancellation_slot slot) {
    const auto w = std::make_shared<waiter>(std::move(handler));
    if (stopped) {
      complete(executor, *w, dns_errc::cancelled, {}, false);
      return;
    }
    auto [it, created] = inflight.try_emplace(name);
    if (created) it->second = std::make_shared<query>(executor, std::move(name), weak_from_this());
    const std::shared_ptr<query> q = it->second;  // start() may answer and erase the entry
    q->waiters.push_back(w);
    if (slot.is_connected()) {
      w->slot = slot;
      slot.assign([ex = executor, weak_w = std::weak_ptr<waiter>(w),
                   weak_q = std::weak_ptr<query>(q)](asio::cancellation_type) {
        // Every cancellation type is honoured the same way: this waiter leaves with
        // `cancelled`; the query goes on for the other waiters and for the cache.
        const auto leaving = weak_w.lock();
        if (!leaving || !leaving->handler) return;
        if (const auto from = weak_q.lock()) std::erase(from->waiters, leaving);
        complete(ex, *leaving, dns_errc::cancelled, {}, false);
      });
    }
    if (created) start(q);
  }

  // ---- queries ----

  void start(const std::shared_ptr<query>& q) {
    q->deadline.expires_after(options.timeout);
    q->deadline.async_wait([q](const boost::system::error_code& ec) {
      if (ec || q->finished) return;
      if (const auto self = q->owner.lock()) self->finish(*q, dns_errc::timeout, {});
    });

    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;  // A and AAAA
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_ENVHOSTS;  // CARES_HOSTS, when set, names the hosts file
    auto arg = std::make_unique<std::shared_ptr<query>>(q);
    q->starting = true;
    ares_getaddrinfo(channel, q->name.c_str(), nullptr, &hints, &on_addrinfo, arg.release());
    q->starting = false;
    update_timer();
  }

  static void on_addrinfo(void* arg, int status, int /*timeouts*/,
                          ares_addrinfo* result) noexcept {
    const std::unique_ptr<std::shared_ptr<query>> holder(static_cast<std::shared_ptr<query>*>(arg));
    const std::unique_ptr<ares_addrinfo, addrinfo_deleter> owned(result);
    query& q = **holder;
    const auto self = q.owner.lock();
    if (!self) return;
    try {
      self->on_answer(q, status, result);
    } catch (...) {
      // Out of memory (no exception may cross c-ares's C frames). Answer what can be
      // answered; failing that, the deadline answers the waiters.
      try {
        if (!q.finished) self->finish(q, dns_errc::internal, {});
      } catch (...) {
      }
    }
  }

  void on_answer(query& q, int status, const ares_addrinfo* result) {
    if (status == ARES_ECANCELLED || status == ARES_EDESTRUCTION) {
      if (!q.finished) finish(q, dns_errc::cancelled, {});
      return;
    }
    const auto now = clock::now();
    if (status == ARES_SUCCESS) {
      auto [addresses, record_ttl] = read_answer(result);
      if (!addresses.empty()) {
        const std::chrono::milliseconds ttl =
            std::min(q.starting ? hosts_ttl
                                : std::max<std::chrono::milliseconds>(record_ttl, min_ttl),
                     options.max_ttl);
        cache.store(q.name,
                    dns_cache_entry{std::nullopt,
                                    std::make_shared<const std::vector<address>>(addresses),
                                    now + ttl},
                    now);
        if (!q.finished) finish(q, {}, dns_answer{std::move(addresses), false});
        return;
      }
      status = ARES_ENODATA;  // success without a usable address
    }
    const dns_errc code = errc_from_ares(status);
    if (code == dns_errc::not_found || code == dns_errc::no_data) {
      // c-ares 1.18 does not expose the SOA minimum (RFC 2308 §5), hence a fixed TTL.
      cache.store(q.name, dns_cache_entry{code, nullptr, now + options.negative_ttl}, now);
    }
    if (!q.finished) finish(q, code, {});
  }

  // Answers every waiter of `q` and forgets it. The caller holds a reference to `q`.
  void finish(query& q, boost::system::error_code ec, const dns_answer& answer) {
    q.finished = true;
    q.deadline.cancel();
    if (const auto it = inflight.find(q.name); it != inflight.end() && it->second.get() == &q) {
      inflight.erase(it);
    }
    const auto waiters = std::move(q.waiters);
    q.waiters.clear();
    for (const auto& w : waiters) complete(executor, *w, ec, answer, true);
  }

  // ---- sockets ----

  static void on_socket_state(void* data, ares_socket_t fd, int readable,
                              int writable) noexcept {
    try {
      static_cast<impl*>(data)->watch_socket(fd, readable != 0, writable != 0);
    } catch (...) {
      // Out of memory: the socket goes unwatched and the lookups' deadlines answer
      // their waiters. Closing (0, 0) allocates nothing and cannot get here.
    }
  }

  void watch_socket(ares_socket_t fd, bool readable, bool writable) {
    auto it = watches.find(fd);
    if (!readable && !writable) {
      // c-ares closes the socket right after this call. Deregister it now: pending
      // waits end with operation_aborted, and a new socket reusing the number gets
      // a new watch.
      if (it != watches.end()) {
        it->second->closed = true;
        it->second->descriptor.release();
        watches.erase(it);
      }
      return;
    }
    if (it == watches.end()) {
      auto w = std::make_shared<watch>(executor, fd, weak_from_this());
      boost::system::error_code ec;
      w->descriptor.assign(fd, ec);
      if (ec) return;  // not expected for a fresh socket; c-ares's own timeouts end the query
      it = watches.emplace(fd, std::move(w)).first;
    }
    it->second->want_read = readable;
    it->second->want_write = writable;
    arm(it->second);
  }

  // Asio's epoll reactor is edge-triggered, but queuing a wait re-arms the descriptor
  // (EPOLL_CTL_MOD), and the kernel then reports a socket that is already ready: bytes
  // that came while no wait was queued, or the rest of a TCP answer c-ares read only
  // part of, are seen at once.
  void arm(const std::shared_ptr<watch>& w) {
    if (w->want_read && !w->read_armed) {
      w->read_armed = true;
      w->descriptor.async_wait(asio::posix::descriptor_base::wait_read,
                               [w](const boost::system::error_code& ec) {
                                 w->read_armed = false;
                                 if (ec || w->closed || !w->want_read) return;
                                 if (const auto self = w->owner.lock()) self->process(w, true, false);
                               });
    }
    if (w->want_write && !w->write_armed) {
      w->write_armed = true;
      w->descriptor.async_wait(asio::posix::descriptor_base::wait_write,
                               [w](const boost::system::error_code& ec) {
                                 w->write_armed = false;
                                 if (ec || w->closed || !w->want_write) return;
                                 if (const auto self = w->owner.lock()) self->process(w, false, true);
                               });
    }
  }

  void process(const std::shared_ptr<watch>& w, bool readable, bool writable) {
    if (channel == nullptr) return;
    ares_process_fd(channel, readable ? w->fd : ARES_SOCKET_BAD, writable ? w->fd : ARES_SOCKET_BAD);
    if (!w->closed) arm(w);
    update_timer();
  }

  // ---- c-ares's own timeouts (retransmission, next server) ----

  void update_timer() {
    if (channel == nullptr) return;
    timeval tv{};
    if (ares_timeout(channel, nullptr, &tv) == nullptr) {
      // Nothing pending: an idle worker keeps no timer (and an io_context whose
      // only work was DNS may return from run()).
      if (timer_armed) {
        timer.cancel();
        timer_armed = false;
      }
      return;
    }
    const auto when = clock::now() + std::chrono::seconds(tv.tv_sec) +
                      std::chrono::microseconds(tv.tv_usec);
    // An armed timer that fires earlier than needed only costs a spare
    // ares_process_fd, which re-arms it; re-arming on every event would not be cheaper.
    if (timer_armed && timer_expiry <= when) return;
    timer_armed = true;
    timer_expiry = when;
    timer.expires_at(when);
    timer.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
      if (ec) return;  // re-armed for an earlier instant, or shutting down
      const auto self = weak.lock();
      if (!self || self->channel == nullptr) return;
      self->timer_armed = false;
      ares_process_fd(self->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      self->update_timer();
    });
  }

  // ---- stop ----

  void shutdown() {
    if (stopped) return;
    stopped = true;
    const auto pending = std::move(inflight);
    inflight.clear();
    for (const auto& entry : pending) {
      if (!entry.second->finished) finish(*entry.second, dns_errc::cancelled, {});
    }
    // c-ares calls each query back with ARES_ECANCELLED; all are finished already.
    if (channel != nullptr) ares_cancel(channel);
    timer.cancel();
    timer_armed = false;
  }

  void close() {
    shutdown();
    if (channel != nullptr) {
      ares_destroy(channel);  // reports each socket closed through on_socket_state
      channel = nullptr;
    }
    for (auto& entry : watches) {
      entry.second->closed = true;
      entry.second->descriptor.release();
    }
    watches.clear();
  }

  asio::any_io_executor executor;
  dns_cache& cache;
  // This worker's copy of the shared cache's entries it has used, in front of it: a hit
  // takes no lock and touches no reference count another worker updates (README
  // "Performance", many cores). Same expiry as the shared entry; cleared when full.
  static constexpr std::size_t max_local_entries = 4096;
  std::unordered_map<std::string, dns_cache_entry, string_hash, std::equal_to<>> local;
  dns_options options;
  ares_channel channel = nullptr;
  asio::steady_timer timer;  // follows ares_timeout()
  bool timer_armed = false;
  clock::time_point timer_expiry{};
  std::unordered_map<ares_socket_t, std::shared_ptr<watch>> watches;
  std::unordered_map<std::string, std::shared_ptr<query>> inflight;
  bool stopped = false;
};

resolver::resolver(asio::any_io_executor ex, dns_cache& cache, const dns_options& options)
    : impl_(std::make_shared<impl>(std::move(ex), cache, options)) {
  impl_->open();
}

resolver::~resolver() { impl_->close(); }

void resolver::shutdown() { impl_->shutdown(); }

asio::awaitable<std::pair<boost::system::error_code, dns_answer>> resolver::resolve(
    std::string name) {
  // Callers canonicalise first and judge IP literals by the IP rules alone
  // (README "Policy semantics"), so this is only a safety net: no query, no cache.
  if (const auto literal = parse_ip_literal(name)) {
    co_return result_pair{boost::system::error_code{}, dns_answer{{*literal}, false}};
  }
  if (name.empty() || name.size() > max_name_bytes) co_return failure(dns_errc::bad_name);

  const auto now = clock::now();
  auto& local = impl_->local;
  if (const auto it = local.find(name); it != local.end()) {
    if (now < it->second.expires) {
      if (it->second.failure) co_return failure(*it->second.failure, true);
      co_return result_pair{boost::system::error_code{}, dns_answer{*it->second.addresses, true}};
    }
    local.erase(it);
  }
  if (auto hit = impl_->cache.find(name, now)) {
    if (local.size() >= impl::max_local_entries) local.clear();
    const auto& entry = local.insert_or_assign(name, std::move(*hit)).first->second;
    if (entry.failure) co_return failure(*entry.failure, true);
    co_return result_pair{boost::system::error_code{}, dns_answer{*entry.addresses, true}};
  }

  // as_tuple: an error is a value here, not an exception.
  const std::shared_ptr<impl> self = impl_;
  const auto token = asio::as_tuple(asio::use_awaitable);
  auto [ec, answer] = co_await asio::async_initiate<decltype(token), result_signature>(
      [&self, &name](auto handler) {
        auto slot = asio::get_associated_cancellation_slot(handler);
        self->join(std::move(name), result_handler(std::move(handler)), slot);
      },
      token);
  co_return result_pair{std::move(ec), std::move(answer)};
}

}  // namespace egressd::proxy
