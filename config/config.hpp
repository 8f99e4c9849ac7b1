#pragma once
// The typed configuration of egressd (README "Configuration"): plain values, filled and
// validated once by config/load.hpp. After a successful load the invariants noted
// on each field hold, and nothing downstream re-validates them.
// Defaults here are the defaults of a YAML file that omits the key.

#include "config/duration.hpp"
#include "config/endpoint.hpp"
#include "policy/rules.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace egressd::config {

/// One `listeners[]` entry: a socket that serves HTTP proxy requests and/or
/// SOCKS5, told apart by the first byte (README "Using it with Claude Code and sandbox-runtime").
struct listener_config {
  /// `address:`; required. No two listeners share one (a port-0 TCP endpoint is
  /// never "the same" as another: the OS picks distinct ports).
  endpoint address;
  /// `protocols: [http, socks5]`; default both; at least one is true.
  bool http = true;
  bool socks5 = true;
  /// `mode:` permission bits of a Unix listener's socket file, 0 to 0777, set after
  /// bind (connecting needs write permission); absent: what the umask leaves. Only
  /// on Unix listeners.
  std::optional<std::uint32_t> mode;
  /// `group:` the group owning a Unix listener's socket file, written as a name (which
  /// existed when the file was loaded) or a number; absent: the daemon's group. Only
  /// on Unix listeners.
  std::optional<std::uint32_t> group;
  /// `group:` as written, for messages.
  std::string group_name;
};

/// `admin:`: /, /metrics, /healthz, /readyz (README "Admin endpoint").
struct admin_config {
  /// `address:`; required; not the address of a listener.
  endpoint address;
  /// `token_file:` a file whose first line every admin request must present as
  /// `Authorization: Bearer <token>` (the page's own requests included); empty: none.
  std::string token_file;
};

/// `hook.on_timeout`: the answer when the hook does not answer in time.
/// The zero value denies.
enum class hook_fallback : std::uint8_t { deny, allow };

/// `hook:`: the confirmation hook asked about unknown destinations (README
/// "Confirmation hook"). Exactly one of `exec`, `url`, `console` is set.
struct hook_config {
  /// `exec: [program, args...]`: JSON on stdin/stdout. When set, non-empty with a
  /// non-empty program.
  std::vector<std::string> exec;
  /// `persistent:` exec only: one long-running program answers every question by id
  /// (one JSON line each way), instead of a process per question.
  bool persistent = false;
  /// `url:`: POST the question here. When set, `http://` or `https://` with a host.
  std::string url;
  /// `ca_file:` url only: PEM CAs to verify an https:// endpoint; empty: the system store.
  std::string ca_file;
  /// `token_file:` url only: a file whose first line is sent as `Authorization: Bearer`.
  std::string token_file;
  /// `console: true`: questions wait for an answer by hand (admin /v1/decisions).
  bool console = false;
  /// `timeout:`: how long a client is held while the hook decides; > 0.
  duration timeout = std::chrono::seconds{30};
  /// `on_timeout:` `deny` | `allow`.
  hook_fallback on_timeout = hook_fallback::deny;
  /// `max_pending:` questions waiting at once before new ones are denied; >= 1.
  std::size_t max_pending = 1024;
  /// `concurrency:` exec processes (or url requests) at once; the rest queue; >= 1.
  std::size_t concurrency = 16;
  /// `ttl:` how long a `remember: ttl` answer without ttl_seconds is kept; > 0.
  duration ttl = std::chrono::hours{1};
  /// `deny_ttl:` the longest a `remember: ttl` denial is kept (shorter than approvals,
  /// so a mistaken "no" does not stick); > 0.
  duration deny_ttl = std::chrono::minutes{5};
};

/// `limits:`: resource limits and deadlines of the data path.
struct limits_config {
  /// Open client connections across all workers; >= 1.
  std::size_t max_connections = 20000;
  /// Time to receive a whole request head (HTTP) or SOCKS5 handshake; > 0.
  duration head_timeout = std::chrono::seconds{10};
  /// Time to connect upstream (after DNS); > 0.
  duration connect_timeout = std::chrono::seconds{10};
  /// A tunnel with no traffic either way for this long is closed; > 0.
  duration idle_timeout = std::chrono::minutes{10};
  /// Largest request head accepted (431 beyond); in [1024, 1 MiB].
  std::size_t max_head_bytes = 16384;
  /// Most header fields in one request head; in [1, 10000].
  std::size_t max_headers = 100;
  /// On SIGTERM, how long open tunnels may drain before they are closed; >= 0.
  duration drain_timeout = std::chrono::seconds{30};
  /// Plain HTTP's pool of idle upstream connections, shared by the client connections
  /// of one worker (README "Wire behaviour"): the most kept per origin (host, port,
  /// policy generation and user) on each worker; 0 turns the pool off; in [0, 1024].
  std::size_t upstream_idle_per_origin = 16;
  /// The most idle upstream connections kept on each worker in all; in [0, 65536].
  std::size_t upstream_idle_max = 128;
  /// An idle pooled upstream connection is closed after this long; > 0.
  duration upstream_idle_timeout = std::chrono::seconds{30};
};

/// `dns:`: the resolver (README "Life of a session").
struct dns_config {
  /// Name servers as IP literals, optionally with a port (`1.1.1.1`,
  /// `127.0.0.1:5353`, `[::1]:53`); empty: those of /etc/resolv.conf.
  std::vector<std::string> servers;
  /// One lookup's deadline; > 0.
  duration timeout = std::chrono::seconds{5};
  /// Cap on how long an answer is cached, whatever its TTL; >= 0 (0: no cache).
  duration max_ttl = std::chrono::minutes{5};
  /// How long "no such name" is cached; >= 0.
  duration negative_ttl = std::chrono::seconds{10};
  /// `hosts_file:` honour /etc/hosts.
  bool hosts_file = true;
};

/// `metrics:`.
struct metrics_config {
  /// Distinct values of the `domain` label before the rest count as `_other`;
  /// 1..100000. Takes effect on SIGHUP for new domains (existing series stay).
  std::size_t max_domains = 1000;
};

/// `reload:`: live reload (README "Reload and shutdown").
struct reload_config {
  /// `watch:` reload when the config file, the settings file or decisions_file changes
  /// (inotify on their directories, so a Kubernetes ConfigMap's `..data` swap counts).
  bool watch = true;
  /// `revoke:` on a reload, close open tunnels and pooled upstream connections whose
  /// destination the new policy denies.
  bool revoke = true;
};

/// `log.format`.
enum class log_format : std::uint8_t { json, text };

/// `log.audit`: where access records go (always JSON lines, whatever `format` says).
/// Not `stdout`/`stderr`: those are macros of <cstdio>.
enum class audit_target : std::uint8_t { standard_output, standard_error, off, file };

/// `log:`.
struct log_config {
  /// The operational log's format only.
  log_format format = log_format::json;
  /// One of trace, debug, info, warn, error, critical, off (spdlog's names).
  std::string level = "info";
  /// `audit:` `stdout` | `stderr` | `off` | a file path.
  audit_target audit = audit_target::standard_output;
  /// The path when `audit` is `file` (non-empty, its directory existed and was
  /// writable at load); empty otherwise.
  std::string audit_file;
  /// `audit_max_size:` rotate the audit file before it grows beyond this many bytes;
  /// 0 (the default): never rotate (logrotate and SIGUSR1 instead). Non-zero only with
  /// a file, and then at least 1 KiB.
  std::uint64_t audit_max_size = 0;
  /// `audit_max_files:` rotated files kept (`audit.1.log` ... `audit.N.log`); in
  /// [1, 1000]; given only together with `audit_max_size`.
  std::size_t audit_max_files = 5;
};

/// `log.audit` as written: "stdout", "stderr", "off" or the file's path.
std::string audit_text(const log_config& log);

/// One `auth.users[]` entry (HTTP Basic `Proxy-Authorization` and SOCKS5
/// username/password, RFC 1929). Both 1..255 bytes; the username has no `:`.
struct user_credentials {
  std::string username;
  std::string password;
};

/// `auth:`: proxy authentication.
struct auth_config {
  /// Empty: no proxy authentication. Usernames are unique.
  std::vector<user_credentials> users;
};

/// The whole configuration.
struct config {
  /// `version:`; required; always 1.
  int version = 1;
  /// `listeners:`; at least one.
  std::vector<listener_config> listeners;
  /// `admin:`; absent: no admin server.
  std::optional<admin_config> admin;
  /// `policy:`; entries carry their file, path and line; the patterns themselves
  /// are validated by policy::compile, not here.
  policy::rules policy;
  /// `hook:`; absent: unknown destinations are never asked about (denied).
  std::optional<hook_config> hook;
  /// `decisions_file:` where "always" hook answers persist; empty: not persisted.
  std::string decisions_file;
  limits_config limits;
  dns_config dns;
  metrics_config metrics;
  log_config log;
  auth_config auth;
  reload_config reload;
  /// `workers:` event-loop threads; 0 = one per core; at most 1024.
  unsigned workers = 0;
  /// `busy_poll_us:` how long a worker keeps polling without sleeping after its last
  /// event, in microseconds; 0 (the default) sleeps at once. Trades CPU for latency
  /// on machines where waking a sleeping CPU is slow (virtual machines); at most
  /// 100000. Read at startup.
  unsigned busy_poll_us = 0;
  /// Where this came from, for messages: "embedded default", the file path given, or
  /// "YAML + SETTINGS" when a settings file is layered onto a YAML config.
  std::string source;
  /// The files given (--config, --settings); empty when not given.
  std::string yaml_file;
  std::string settings_file;
};

}  // namespace egressd::config
