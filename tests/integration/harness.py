"""Harness of egressd's integration tests.

The tests start the real `egressd` binary (environment variable EGRESSD_BIN, required)
on loopback port 0, drive it with real clients (curl, socat, OpenBSD nc, Python's
http.client, raw sockets) and check what reaches the local origins run here in threads.

Python 3.11+ standard library only. Network: loopback only (127.0.0.0/8, ::1, unix
sockets). Every wait has a deadline and every loop a bound; nothing waits by sleeping:
waits are on a condition (a log line, a closed socket, a process exit) with a deadline.

Contract with the binary (beyond the README), what this harness relies on:
  * `egressd run --config FILE` logs JSON objects, one per line, on stderr; once per
    listener `{"msg":"listening","listener":<address as written>,"address":<bound>}`
    (e.g. "127.0.0.1:41234", "[::1]:41234", "unix:/path"), then `{"msg":"ready"}`.
    SIGHUP logs `{"msg":"reloaded"}` or `{"msg":"reload failed; the previous configuration stays in force"}`.
  * `log.audit: stdout`: one JSON object per line on stdout with at least `event`
    ("request" | "tunnel_closed"), `host`, `port`, `protocol`, `decision`, `reason`,
    `rule`, and for closed tunnels `bytes_up`, `bytes_down`. With `log.format: json`
    any other stdout line fails the test when the daemon is stopped or closed.
  * EGRESSD_HOSTS_FILE names a hosts-format file read instead of /etc/hosts (the
    harness sets CARES_HOSTS to the same file as well).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import queue
import random
import resource
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs, urlsplit

# ---------------------------------------------------------------------------------
# Limits and deadlines

READY_TIMEOUT = 10.0        # egressd must log "ready" within this
IO_TIMEOUT = 10.0           # default for one client operation
AUDIT_TIMEOUT = 5.0         # an access record must appear within this
TOOL_TIMEOUT = 30.0         # one curl / socat / nc run
MAX_HEAD = 65536            # a response head larger than this is a test failure
MAX_BODY = 64 * 1024 * 1024

HEAD_TIMEOUT_S = 2.0        # limits.head_timeout of every test daemon
CONNECT_TIMEOUT_S = 2.0     # limits.connect_timeout of every test daemon
# How long after connect_timeout a 504 (or SOCKS5 06) may still come on a loaded
# machine. The daemon keeps its deadlines by a sweep every 250 ms: every upper bound
# on a deadline allows at least that much beyond it.
CONNECT_TIMEOUT_MARGIN_S = 5.0

# Limits every test daemon runs with unless a test overrides them.
DEFAULT_LIMITS: dict[str, Any] = {
    "head_timeout": f"{HEAD_TIMEOUT_S:g}s",
    "connect_timeout": f"{CONNECT_TIMEOUT_S:g}s",
    "idle_timeout": "60s",
    "max_head_bytes": 4096,
    "drain_timeout": "2s",
}

# The hosts file every test daemon gets through EGRESSD_HOSTS_FILE. No "::1 localhost":
# the origins listen on 127.0.0.1 only, and a daemon that dialled ::1 first would be
# refused for reasons that have nothing to do with the test. The names in GUARDED_NAMES
# point where the address guard must refuse to dial (nothing listens there; nothing
# is dialled when the guard works).
HOSTS_FILE_TEXT = (
    "# egressd integration tests (EGRESSD_HOSTS_FILE)\n"
    "127.0.0.1 localhost\n"
    "127.0.0.1 loopy.test\n"
    "::1 loopy6.test\n"
    "127.0.0.1 app.localhost\n"
    "127.0.0.1 wild.localhost\n"
    "127.0.0.1 app.wild.localhost\n"
    "127.0.0.1 x.denied.localhost\n"
    "10.1.2.3 private.test\n"
    "169.254.169.254 metadata.test\n"
    "100.100.100.200 metadata4.test\n"
    "fd00:ec2::254 meta6.test\n"
)

# name -> (address, address_class in the audit record and Proxy-Status, words of the
# refusal's body) for the hosts file's names behind which the guard must refuse.
# 169.254.169.254 is the metadata endpoint of most clouds: class metadata, not link_local.
GUARDED_NAMES: dict[str, tuple[str, str, str]] = {
    "private.test": ("10.1.2.3", "private_network", "private"),
    "metadata.test": ("169.254.169.254", "metadata", "metadata"),
    "metadata4.test": ("100.100.100.200", "metadata", "metadata"),
    "meta6.test": ("fd00:ec2::254", "metadata", "metadata"),
}

TOOL_HINT = "CI installs the tools with: apt-get install -y curl socat netcat-openbsd openssl"


class HarnessError(AssertionError):
    """A failure of the environment or of the daemon's contract; reported as a test failure."""


# ---------------------------------------------------------------------------------
# Tools and the binary

def egressd_binary() -> str:
    path = os.environ.get("EGRESSD_BIN", "")
    if not path:
        raise HarnessError("EGRESSD_BIN is not set: point it at the built egressd binary "
                           "(ctest sets it: ctest -L integration)")
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise HarnessError(f"EGRESSD_BIN={path!r} is not an executable file")
    return os.path.abspath(path)


_tool_cache: dict[str, str] = {}


def require_tool(name: str) -> str:
    """The path of an external client; fails (never skips) when it is missing."""
    if name in _tool_cache:
        return _tool_cache[name]
    path = shutil.which(name)
    if path is None:
        raise HarnessError(f"required tool {name!r} is not on PATH. {TOOL_HINT}")
    if name == "nc":
        out = subprocess.run([path, "-h"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        text = (out.stdout + out.stderr).decode("utf-8", "replace")
        if "proxy_protocol" not in text and "Proxy protocol" not in text:
            raise HarnessError(f"{path} is not OpenBSD netcat (no -X proxy support). {TOOL_HINT}")
    _tool_cache[name] = path
    return path


def require_tools(*names: str) -> None:
    for n in names:
        require_tool(n)


_PROXY_ENV = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy", "socks_proxy"}


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for clients and the daemon: no proxy variables of the caller's."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_ENV}
    if extra:
        env.update(extra)
    return env


def run_tool(args: list[str], input: bytes = b"", timeout: float = TOOL_TIMEOUT) -> subprocess.CompletedProcess:
    """Run an external client to completion; a hang is a test failure, not a stuck suite."""
    require_tool(args[0])
    try:
        return subprocess.run(args, input=input, capture_output=True, timeout=timeout, env=tool_env())
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"{' '.join(args)} did not finish within {timeout}s; "
                           f"stdout={e.stdout!r} stderr={e.stderr!r}") from None


def curl(*args: str, timeout: float = TOOL_TIMEOUT) -> subprocess.CompletedProcess:
    """curl with no ~/.curlrc (-q), quiet but with errors (-sS) and a time limit."""
    return run_tool(["curl", "-q", "-sS", "--max-time", str(int(timeout) - 5), *args], timeout=timeout)


def short_tempdir(prefix: str = "egd-") -> str:
    # Unix socket paths are limited to 107 bytes: stay under /tmp rather than a long $TMPDIR.
    base = "/tmp" if os.path.isdir("/tmp") else None
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def write_file(directory: str, name: str, text: str) -> str:
    """Writes `text` to directory/name and returns the path."""
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def free_port() -> int:
    """A loopback port nothing listens on now (a daemon binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hosts_env(path: str) -> dict[str, str]:
    """The daemon reads names from `path` instead of /etc/hosts: EGRESSD_HOSTS_FILE is the
    contract; CARES_HOSTS is c-ares's own variable (ARES_AI_ENVHOSTS), set too."""
    return {"EGRESSD_HOSTS_FILE": path, "CARES_HOSTS": path}


# ---------------------------------------------------------------------------------
# Deadlines

class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05,
               max_tries: int = 10000) -> Any:
    """Poll `pred` until it returns a true value, at most `timeout` seconds and `max_tries`
    times. For conditions nothing can notify us about (a port that stops accepting)."""
    deadline = Deadline(timeout)
    ev = threading.Event()
    for _ in range(max_tries):
        value = pred()
        if value:
            return value
        if deadline.expired():
            break
        ev.wait(min(interval, deadline.left()))
    raise HarnessError(f"timed out after {timeout}s waiting for {what}")


# ---------------------------------------------------------------------------------
# Output of the daemon, line by line

class LineLog:
    """Collects one pipe's lines in a reader thread; JSON objects are parsed. A line that
    is not a JSON object is kept in `lines` (objects: None) and listed in `malformed` as
    (index, line, ended by a newline)."""

    def __init__(self, name: str, pipe):
        self.name = name
        self.lines: list[str] = []
        self.objects: list[dict | None] = []
        self.malformed: list[tuple[int, str, bool]] = []
        self.closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(pipe,), name=f"egressd-{name}", daemon=True)
        self._thread.start()

    def _pump(self, pipe) -> None:
        try:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                obj = None
                s = line.strip()
                if s.startswith("{"):
                    try:
                        obj = json.loads(s)
                    except ValueError:
                        obj = None
                    if not isinstance(obj, dict):
                        obj = None
                with self._cond:
                    if obj is None:
                        self.malformed.append((len(self.lines), line, raw.endswith(b"\n")))
                    self.lines.append(line)
                    self.objects.append(obj)
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def malformed_lines(self) -> list[tuple[int, str, bool]]:
        with self._cond:
            return list(self.malformed)

    def find_all(self, pred: Callable[[dict], bool], start: int = 0) -> list[dict]:
        with self._cond:
            objs = list(self.objects[start:])
        return [o for o in objs if o is not None and _safe(pred, o)]

    def wait(self, pred: Callable[[dict], bool], timeout: float, what: str, start: int = 0) -> tuple[int, dict]:
        return self.wait_count(pred, 1, timeout, what, start)[0]

    def wait_count(self, pred: Callable[[dict], bool], count: int, timeout: float, what: str,
                   start: int = 0) -> list[tuple[int, dict]]:
        """The first `count` lines from `start` on that match, with their indices."""
        deadline = Deadline(timeout)
        i = start
        found: list[tuple[int, dict]] = []
        with self._cond:
            while True:
                while i < len(self.objects):
                    obj = self.objects[i]
                    if obj is not None and _safe(pred, obj):
                        found.append((i, obj))
                        if len(found) == count:
                            return found
                    i += 1
                if self.closed:
                    raise HarnessError(f"egressd's {self.name} closed before {what}\n--- {self.name} tail ---\n"
                                       f"{self._tail_locked(30)}")
                left = deadline.left()
                if left <= 0:
                    raise HarnessError(f"no {what} on egressd's {self.name} within {timeout}s\n"
                                       f"--- {self.name} tail ---\n{self._tail_locked(30)}")
                self._cond.wait(left)

    def wait_closed(self, timeout: float) -> bool:
        deadline = Deadline(timeout)
        with self._cond:
            while not self.closed:
                left = deadline.left()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _tail_locked(self, n: int) -> str:
        return "\n".join(self.lines[-n:])

    def tail(self, n: int = 40) -> str:
        with self._cond:
            return self._tail_locked(n)


def _safe(pred: Callable[[dict], bool], obj: dict) -> bool:
    try:
        return bool(pred(obj))
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def fields_match(obj: dict, fields: dict[str, Any]) -> bool:
    """Every field equal; ints compare with their string form too (port "443" == 443);
    a callable value is a predicate on the field."""
    for k, want in fields.items():
        if k not in obj:
            return False
        got = obj[k]
        if callable(want):
            if not want(got):
                return False
        elif isinstance(want, int) and not isinstance(want, bool):
            if str(got) != str(want):
                return False
        elif got != want:
            return False
    return True


# ---------------------------------------------------------------------------------
# Configuration files

def _yaml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar
    raise TypeError(f"cannot write {v!r} as a YAML scalar")


def to_yaml(value: dict, indent: int = 0) -> str:
    """Block-style YAML for mappings; sequences and their items as JSON flow (valid YAML)."""
    pad = " " * indent
    out: list[str] = []
    for k, v in value.items():
        if v is None:
            continue
        if isinstance(v, dict):
            if not v:
                out.append(f"{pad}{k}: {{}}")
            else:
                out.append(f"{pad}{k}:")
                out.append(to_yaml(v, indent + 2).rstrip("\n"))
        elif isinstance(v, (list, tuple)):
            if all(not isinstance(x, (dict, list, tuple)) for x in v):
                out.append(f"{pad}{k}: [{', '.join(_yaml_scalar(x) for x in v)}]")
            else:
                out.append(f"{pad}{k}:")
                for item in v:
                    out.append(f"{pad}  - {json.dumps(item)}")
        else:
            out.append(f"{pad}{k}: {_yaml_scalar(v)}")
    return "\n".join(out) + "\n"


def make_config(listeners: Iterable[str] = ("127.0.0.1:0",), allow: Iterable[str] = (),
                deny: Iterable[str] = (), unknown: str = "deny", guard: dict | None = None,
                limits: dict | None = None, users: Iterable[tuple[str, str]] = (),
                **extra: Any) -> dict:
    """A config (README "Configuration") as a dict: loopback listeners, no admin, audit on stdout."""
    policy: dict[str, Any] = {"allow": list(allow), "deny": list(deny), "unknown": unknown}
    if guard is not None:
        policy["guard"] = guard
    cfg: dict[str, Any] = {
        "version": 1,
        "listeners": [{"address": a} for a in listeners],
        "policy": policy,
        "limits": {**DEFAULT_LIMITS, **(limits or {})},
        "log": {"format": "json", "level": "info", "audit": "stdout"},
    }
    users = list(users)
    if users:
        cfg["auth"] = {"users": [{"username": u, "password": p} for u, p in users]}
    cfg.update(extra)
    return cfg


# ---------------------------------------------------------------------------------
# Listener addresses

@dataclass(frozen=True)
class Endpoint:
    kind: str        # "ipv4" | "ipv6" | "unix"
    host: str        # address, or the socket path for "unix"
    port: int = 0

    @property
    def hostport(self) -> str:
        if self.kind == "ipv6":
            return f"[{self.host}]:{self.port}"
        if self.kind == "unix":
            return f"unix:{self.host}"
        return f"{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.hostport}"

    def connect(self, timeout: float = IO_TIMEOUT) -> socket.socket:
        if self.kind == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(self.host)
            except BaseException:
                s.close()
                raise
            return s
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def accepts(self, timeout: float = 1.0) -> bool:
        """True when a connection is accepted now (and closed at once)."""
        try:
            s = self.connect(timeout)
        except OSError:
            return False
        s.close()
        return True


def parse_endpoint(text: str) -> Endpoint:
    text = text.strip()
    if text.startswith("unix:"):
        return Endpoint("unix", text[len("unix:"):])
    if text.startswith("/"):
        return Endpoint("unix", text)
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise HarnessError(f"cannot parse listener address {text!r}")
        return Endpoint("ipv6", host, int(port))
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise HarnessError(f"cannot parse listener address {text!r}")
    return Endpoint("ipv4", host, int(port))


# ---------------------------------------------------------------------------------
# The daemon

class Egressd:
    """One `egressd run --config FILE` process with its stderr (logs) and stdout (audit)."""

    def __init__(self, config: dict | str, *, env: dict[str, str] | None = None,
                 hosts_text: str = HOSTS_FILE_TEXT, args: Iterable[str] = (), fd_limit: int | None = None):
        self.bin = egressd_binary()
        self.fd_limit = fd_limit  # soft and hard RLIMIT_NOFILE for the daemon, to provoke EMFILE
        self.dir = short_tempdir("egd-")
        self.config_path = os.path.join(self.dir, "egressd.yaml")
        self.hosts_path = os.path.join(self.dir, "hosts")
        with open(self.hosts_path, "w", encoding="utf-8") as f:
            f.write(hosts_text)
        self.env = dict(env or {})
        self.args = list(args)
        self.config: dict | None = None
        self.config_text = ""
        self.write_config(config)
        self.proc: subprocess.Popen | None = None
        self.stderr: LineLog | None = None
        self.stdout: LineLog | None = None
        self.listeners: list[Endpoint] = []
        self.exit_code: int | None = None
        self._stdout_checked = False

    # configuration -------------------------------------------------------------
    def write_config(self, config: dict | str) -> None:
        """(Re)write the config file atomically; SIGHUP makes the daemon read it."""
        text = config if isinstance(config, str) else to_yaml(config)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, self.config_path)
        self.config_text = text
        if isinstance(config, dict):
            self.config = config

    def path(self, name: str) -> str:
        """A path in this daemon's private temp dir (for unix sockets)."""
        return os.path.join(self.dir, name)

    # process -------------------------------------------------------------------
    def start(self, wait_ready: bool = True) -> "Egressd":
        env = tool_env({**hosts_env(self.hosts_path), **self.env})
        cmd = [self.bin, "run", "--config", self.config_path, *self.args]
        limit = self.fd_limit
        preexec = None if limit is None else (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, cwd=self.dir, start_new_session=True,
                                     preexec_fn=preexec)
        self.stderr = LineLog("stderr", self.proc.stderr)
        self.stdout = LineLog("stdout", self.proc.stdout)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> list[Endpoint]:
        assert self.stderr is not None
        try:
            ready_at, _ = self.stderr.wait(lambda o: o.get("msg") == "ready", timeout, 'a {"msg":"ready"} line')
        except HarnessError as e:
            rc = self.proc.poll() if self.proc else None
            raise HarnessError(f"egressd did not become ready (exit code {rc}); config:\n"
                               f"{self.config_text}\n{e}") from None
        self.listeners = self._endpoints(ready_at)
        return self.listeners

    def _endpoints(self, ready_at: int) -> list[Endpoint]:
        assert self.stderr is not None
        pairs: list[tuple[str, str]] = []
        for o in self.stderr.find_all(lambda o: o.get("msg") == "listening"):
            pair = (str(o.get("listener", "")), str(o.get("address", "") or o.get("listener", "")))
            if pair not in pairs:  # a line per worker would repeat the same pair
                pairs.append(pair)
        if self.config is None:
            return [parse_endpoint(a) for _, a in pairs]
        endpoints: list[Endpoint] = []
        used: set[int] = set()
        for entry in self.config["listeners"]:
            written = entry["address"]
            for j, (lw, la) in enumerate(pairs):
                if j not in used and lw == written:
                    used.add(j)
                    endpoints.append(parse_endpoint(la))
                    break
            else:
                raise HarnessError(f'no {{"msg":"listening","listener":"{written}"}} line before "ready"; '
                                   f"listening lines: {pairs}\n{self.stderr.tail()}")
        return endpoints

    def endpoint(self, i: int = 0) -> Endpoint:
        return self.listeners[i]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            self.exit_code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.exit_code

    def stop(self, timeout: float = 10.0, expect_rc: int | None = 0, sig: int = signal.SIGTERM) -> int:
        """Signal, wait up to `timeout`, SIGKILL if it is still running (a failure)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.wait_exit(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise HarnessError(f"egressd did not exit within {timeout}s of {signal.Signals(sig).name}; killed\n"
                               f"{self.log_tail()}")
        self._join_readers()
        if expect_rc is not None and rc != expect_rc:
            raise HarnessError(f"egressd exited with {rc}, expected {expect_rc}\n{self.log_tail()}")
        self.check_audit_stream(killed=False)
        return rc

    def close(self) -> None:
        """Kill if still running, reap, drop the temp dir; then check the audit stream
        (check_audit_stream). Idempotent; logs stay readable."""
        killed = False
        if self.proc is not None:
            if self.proc.poll() is None:
                killed = True
                self.proc.kill()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            self._join_readers()
            for p in (self.proc.stdout, self.proc.stderr):
                try:
                    if p:
                        p.close()
                except OSError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.check_audit_stream(killed=killed)

    def audits_json_on_stdout(self) -> bool:
        """Whether the config asks for JSON access records on stdout (make_config's
        default); a raw-text config or `log.format: text` is not checked."""
        log = (self.config or {}).get("log") or {}
        return self.config is not None and log.get("audit") == "stdout" and log.get("format", "json") == "json"

    def check_audit_stream(self, killed: bool) -> None:
        """Fails (once) if a stdout line was not a JSON object while access records go
        there as JSON: every line is one record. After a SIGKILL a last line cut short
        (no newline) is not held against the daemon."""
        if self._stdout_checked or self.stdout is None or not self.audits_json_on_stdout():
            return
        if not self.stdout.closed:
            return  # still being read: checked by the stop() or close() that ends it
        self._stdout_checked = True
        bad = [(i, line) for i, line, ended in self.stdout.malformed_lines() if ended or not killed]
        if bad:
            listing = "\n".join(f"  line {i + 1}: {line[:300]!r}" for i, line in bad[:10])
            raise HarnessError(f"egressd wrote {len(bad)} line(s) on stdout that are not JSON access records:\n"
                               f"{listing}\n{self.log_tail()}")

    def _join_readers(self) -> None:
        for log in (self.stderr, self.stdout):
            if log is not None:
                log.wait_closed(5.0)

    # logs ----------------------------------------------------------------------
    def log_mark(self) -> int:
        assert self.stderr is not None
        return self.stderr.mark()

    def wait_log(self, msg: str, timeout: float = 5.0, start: int = 0) -> dict:
        assert self.stderr is not None
        return self.stderr.wait(lambda o: o.get("msg") == msg, timeout, f'a {{"msg":"{msg}"}} line', start)[1]

    def audit_mark(self) -> int:
        assert self.stdout is not None
        return self.stdout.mark()

    def audit_records(self, start: int = 0, **fields: Any) -> list[dict]:
        assert self.stdout is not None
        return self.stdout.find_all(lambda o: "event" in o and fields_match(o, fields), start)

    def wait_audit(self, timeout: float = AUDIT_TIMEOUT, start: int = 0, **fields: Any) -> dict:
        """The first access record from `start` on whose fields match."""
        return self.wait_audits(1, timeout, start, **fields)[0]

    def wait_audits(self, count: int, timeout: float = AUDIT_TIMEOUT, start: int = 0, **fields: Any) -> list[dict]:
        """The first `count` access records from `start` on whose fields match: records
        are written before the reply, but reach the test through a reader thread."""
        assert self.stdout is not None
        found = self.stdout.wait_count(lambda o: "event" in o and fields_match(o, fields), count, timeout,
                                       f"{count} access record(s) with {fields}", start)
        return [obj for _, obj in found]

    def exit_status(self) -> str:
        rc = self.proc.poll() if self.proc is not None else None
        if self.proc is None:
            return "egressd was not started"
        if rc is None:
            return f"egressd (pid {self.proc.pid}) is running"
        if rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            return f"egressd was killed by {name} (exit code {rc})"
        return f"egressd exited with code {rc}"

    def log_tail(self, n: int = 40) -> str:
        parts = [f"--- {self.exit_status()} ---"]
        for log in (self.stderr, self.stdout):
            if log is not None:
                parts.append(f"--- egressd {log.name} (last {n} lines) ---\n{log.tail(n)}")
        return "\n".join(parts)


# ---------------------------------------------------------------------------------
# Client side: bytes, heads, bodies

def set_deadline(sock: socket.socket, deadline: Deadline) -> None:
    left = deadline.left()
    if left <= 0:
        raise HarnessError(f"deadline of {deadline.seconds}s passed")
    sock.settimeout(left)


def recv_some(sock: socket.socket, deadline: Deadline, n: int = 65536) -> bytes:
    set_deadline(sock, deadline)
    try:
        return sock.recv(n)
    except (socket.timeout, TimeoutError):
        raise HarnessError(f"nothing received within {deadline.seconds}s") from None


def recv_exact(sock: socket.socket, n: int, timeout: float = IO_TIMEOUT, buf: bytes = b"") -> bytes:
    deadline = Deadline(timeout)
    data = bytearray(buf)
    for _ in range(1_000_000):
        if len(data) >= n:
            break
        chunk = recv_some(sock, deadline, min(65536, n - len(data)))
        if not chunk:
            raise HarnessError(f"connection closed after {len(data)} of {n} bytes: {bytes(data[:200])!r}")
        data += chunk
    if len(data) > n:
        raise HarnessError(f"received {len(data)} bytes, expected {n}: {bytes(data[:200])!r}")
    return bytes(data)


def recv_until_closed(sock: socket.socket, timeout: float = IO_TIMEOUT, limit: int = MAX_BODY) -> tuple[bytes, str]:
    """Read until the peer closes. Returns (data, "eof" | "reset")."""
    deadline = Deadline(timeout)
    data = bytearray()
    for _ in range(1_000_000):
        try:
            chunk = recv_some(sock, deadline)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return bytes(data), "reset"
        if not chunk:
            return bytes(data), "eof"
        data += chunk
        if len(data) > limit:
            raise HarnessError(f"more than {limit} bytes before close")
    raise HarnessError("too many reads")


def wait_closed(sock: socket.socket, timeout: float) -> tuple[bytes, str]:
    """Wait for the peer to close (EOF or reset) within `timeout`; data it sent first."""
    try:
        return recv_until_closed(sock, timeout)
    except HarnessError as e:
        raise HarnessError(f"connection still open after {timeout}s ({e})") from None


def is_closed_now(sock: socket.socket, wait: float = 0.0) -> bool:
    """True when the peer has closed (EOF or reset) — data is read and discarded."""
    sock.settimeout(wait if wait > 0 else 0.0001)
    try:
        chunk = sock.recv(65536, socket.MSG_PEEK)
    except (socket.timeout, TimeoutError, BlockingIOError):
        return False
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        return True
    if not chunk:
        return True
    sock.recv(len(chunk))
    return False


@dataclass
class Head:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    raw: bytes
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def status_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}".rstrip()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def describe(self) -> str:
        return f"{self.raw.decode('latin-1')!r} body={self.body[:500]!r}"


def parse_head(raw: bytes) -> Head:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HarnessError(f"not an HTTP response head: {raw[:300]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, sep, v = line.partition(":")
        if not sep:
            raise HarnessError(f"malformed header line {line!r} in {raw[:300]!r}")
        headers.append((k.strip(), v.strip()))
    return Head(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", headers, raw)


def read_request_head(sock: socket.socket, data: bytearray) -> bytes | None:
    """For scripted origins: one request head from `data` + the socket (None on EOF); what follows stays in `data`."""
    for _ in range(1000):
        i = data.find(b"\r\n\r\n")
        if i >= 0:
            head = bytes(data[:i + 4])
            del data[:i + 4]
            return head
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    return None


def read_head(sock: socket.socket, timeout: float = IO_TIMEOUT, buf: bytes = b"") -> tuple[Head, bytes]:
    """One response head; returns it and the bytes received after it."""
    deadline = Deadline(timeout)
    data = bytearray(buf)
    for _ in range(100_000):
        if b"\r\n\r\n" in data:
            break
        if len(data) > MAX_HEAD:
            raise HarnessError(f"response head larger than {MAX_HEAD} bytes")
        chunk = recv_some(sock, deadline)
        if not chunk:
            raise HarnessError(f"connection closed before a whole response head; got {bytes(data[:300])!r}")
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    return parse_head(head), rest


def read_body(sock: socket.socket, head: Head, rest: bytes = b"", timeout: float = IO_TIMEOUT,
              method: str = "GET") -> tuple[bytes, bytes]:
    """The body of a response whose head was read; returns (body, bytes after it)."""
    if method == "HEAD" or head.status in (101, 204, 304) or 100 <= head.status < 200:
        return b"", rest
    deadline = Deadline(timeout)
    te = (head.get("Transfer-Encoding") or "").lower()
    if "chunked" in te:
        return _read_chunked(sock, rest, deadline)
    cl = head.get("Content-Length")
    if cl is not None:
        n = int(cl)
        data = recv_exact(sock, n, deadline.left(), rest[:n]) if len(rest) < n else rest[:n]
        return data, rest[n:]
    body, _ = recv_until_closed(sock, deadline.left())
    return rest + body, b""


def _read_chunked(sock: socket.socket, buf: bytes, deadline: Deadline) -> tuple[bytes, bytes]:
    data = bytearray(buf)
    body = bytearray()

    def need(n: int) -> None:
        for _ in range(1_000_000):
            if len(data) >= n:
                return
            chunk = recv_some(sock, deadline)
            if not chunk:
                raise HarnessError("connection closed inside a chunked body")
            data.extend(chunk)

    def line() -> bytes:
        for _ in range(1_000_000):
            i = data.find(b"\r\n")
            if i >= 0:
                out = bytes(data[:i])
                del data[:i + 2]
                return out
            need(len(data) + 1)
        raise HarnessError("chunk line too long")

    for _ in range(1_000_000):
        size = int(line().split(b";")[0].strip(), 16)
        if size == 0:
            for _ in range(1000):  # trailers, then the empty line
                if line() == b"":
                    return bytes(body), bytes(data)
            raise HarnessError("too many trailer lines")
        need(size + 2)
        body.extend(data[:size])
        del data[:size + 2]
        if len(body) > MAX_BODY:
            raise HarnessError("chunked body too large")
    raise HarnessError("too many chunks")


def read_response(sock: socket.socket, timeout: float = IO_TIMEOUT, buf: bytes = b"",
                  method: str = "GET", skip_interim: bool = True) -> tuple[Head, bytes]:
    """A whole response (head and body); interim 1xx heads other than 101 are skipped."""
    deadline = Deadline(timeout)
    for _ in range(10):
        head, rest = read_head(sock, deadline.left(), buf)
        if skip_interim and 100 <= head.status < 200 and head.status != 101:
            buf = rest
            continue
        head.body, rest = read_body(sock, head, rest, deadline.left(), method)
        return head, rest
    raise HarnessError("more than 10 interim responses")


def request_bytes(method: str, target: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                  version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {target} {version}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def open_connect(ep: Endpoint, target: str, *, version: str = "HTTP/1.1", host_header: str | None = "",
                 headers: Iterable[tuple[str, str]] = (), payload: bytes = b"",
                 timeout: float = IO_TIMEOUT) -> tuple[socket.socket, Head, bytes]:
    """Send `CONNECT target version` (+ Host: target unless host_header is None, or the
    given Host) and the payload in the same write; read the response head. A non-2xx
    response's body is read too (into head.body). Returns (socket, head, bytes after)."""
    hdrs: list[tuple[str, str]] = []
    if host_header is not None:
        hdrs.append(("Host", host_header or target))
    hdrs.extend(headers)
    sock = ep.connect(timeout)
    try:
        sock.sendall(request_bytes("CONNECT", target, hdrs, version=version) + payload)
        head, rest = read_head(sock, timeout)
        if not 200 <= head.status < 300:
            head.body, rest = read_body(sock, head, rest, timeout)
    except BaseException:
        sock.close()
        raise
    return sock, head, rest


def tunnel_opens(ep: Endpoint, target: str, timeout: float = 1.0) -> bool:
    """Whether a new client gets a CONNECT tunnel to `target` now (200): False when the
    connection is refused, or accepted but refused, closed or left unanswered for
    `timeout` seconds. For wait_until (a listener closed by a drain, a freed slot, a
    recovery) and for checking that a destination is not served."""
    try:
        sock, head, _ = open_connect(ep, target, timeout=timeout)
    except (OSError, HarnessError):
        return False
    with sock:
        return head.status == 200


def roundtrip(sock: socket.socket, data: bytes, rest: bytes = b"", timeout: float = IO_TIMEOUT) -> bytes:
    """Send `data` through an echo and return as many bytes back (after `rest`)."""
    sock.sendall(data)
    return recv_exact(sock, len(rest) + len(data), timeout, rest)


# ---------------------------------------------------------------------------------
# SOCKS5 client (RFC 1928 / 1929)

@dataclass
class Socks5Reply:
    rep: int
    atyp: int = 0
    addr: str = ""
    port: int = 0
    raw: bytes = b""


def socks5_address(host: str) -> bytes:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        name = host.encode("ascii")
        return bytes([3, len(name)]) + name
    return (bytes([1]) if ip.version == 4 else bytes([4])) + ip.packed


def socks5_request(host: str, port: int, cmd: int = 1) -> bytes:
    return bytes([5, cmd, 0]) + socks5_address(host) + port.to_bytes(2, "big")


def socks5_greeting(methods: Iterable[int] = (0,)) -> bytes:
    m = bytes(methods)
    return bytes([5, len(m)]) + m


def socks5_userpass(user: str, password: str) -> bytes:
    u, p = user.encode(), password.encode()
    return bytes([1, len(u)]) + u + bytes([len(p)]) + p


def socks5_read_reply(sock: socket.socket, timeout: float = IO_TIMEOUT) -> Socks5Reply:
    """The reply to a request. A server that sends only VER REP and closes still gives REP."""
    deadline = Deadline(timeout)
    data = bytearray()
    for _ in range(10_000):
        if len(data) >= 4:
            break
        chunk = recv_some(sock, deadline, 4 - len(data))
        if not chunk:
            if len(data) >= 2:
                return Socks5Reply(data[1], raw=bytes(data))
            raise HarnessError(f"connection closed before a SOCKS5 reply: {bytes(data)!r}")
        data += chunk
    if data[0] != 5:
        raise HarnessError(f"SOCKS5 reply with version {data[0]}: {bytes(data)!r}")
    rep, atyp = data[1], data[3]
    if atyp == 1:
        rest = recv_exact(sock, 6, deadline.left())
        return Socks5Reply(rep, atyp, str(ipaddress.IPv4Address(rest[:4])), int.from_bytes(rest[4:], "big"),
                           bytes(data) + rest)
    if atyp == 4:
        rest = recv_exact(sock, 18, deadline.left())
        return Socks5Reply(rep, atyp, str(ipaddress.IPv6Address(rest[:16])), int.from_bytes(rest[16:], "big"),
                           bytes(data) + rest)
    if atyp == 3:
        n = recv_exact(sock, 1, deadline.left())[0]
        rest = recv_exact(sock, n + 2, deadline.left())
        return Socks5Reply(rep, atyp, rest[:n].decode("latin-1"), int.from_bytes(rest[n:], "big"),
                           bytes(data) + bytes([n]) + rest)
    return Socks5Reply(rep, atyp, raw=bytes(data))


def socks5_open(ep: Endpoint, host: str, port: int, *, auth: tuple[str, str] | None = None,
                cmd: int = 1, pipelined: bool = False,
                timeout: float = IO_TIMEOUT) -> tuple[socket.socket, Socks5Reply]:
    """Greet (no-auth, or username/password when `auth`), send the request, read the reply.
    `pipelined`: greeting and request (no-auth only) in a single write."""
    sock = ep.connect(timeout)
    try:
        methods = (2,) if auth else (0,)
        req = socks5_request(host, port, cmd)
        if pipelined and not auth:
            sock.sendall(socks5_greeting(methods) + req)
            choice = recv_exact(sock, 2, timeout)
            if choice != b"\x05\x00":
                raise HarnessError(f"SOCKS5 method reply {choice!r}, expected 05 00")
        else:
            sock.sendall(socks5_greeting(methods))
            choice = recv_exact(sock, 2, timeout)
            if choice != bytes([5, methods[0]]):
                raise HarnessError(f"SOCKS5 method reply {choice!r}, expected 05 {methods[0]:02x}")
            if auth:
                sock.sendall(socks5_userpass(*auth))
                status = recv_exact(sock, 2, timeout)
                if status != b"\x01\x00":
                    raise HarnessError(f"SOCKS5 username/password refused: {status!r}")
            sock.sendall(req)
        reply = socks5_read_reply(sock, timeout)
    except BaseException:
        sock.close()
        raise
    return sock, reply


# ---------------------------------------------------------------------------------
# Origins: real local servers in threads, on loopback port 0

def big_chunks(n: int, block: int = 65536) -> Iterator[bytes]:
    """A deterministic body of n bytes, in blocks."""
    unit = bytes(range(256)) * (block // 256)
    full, part = divmod(n, block)
    for _ in range(full):
        yield unit
    if part:
        yield unit[:part]


def big_sha256(n: int) -> str:
    h = hashlib.sha256()
    for c in big_chunks(n):
        h.update(c)
    return h.hexdigest()


WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _OriginHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 origin with keep-alive.
    /ws          101 Switching Protocols on `Upgrade: websocket`, then echoes raw bytes
    /big?n=N     N deterministic bytes (big_chunks), Content-Length
    /chunked?n=K&size=S   K chunks of S bytes, Transfer-Encoding: chunked
    /status/NNN  that status, a short text body
    /close       the echo below, then `Connection: close`
    anything     JSON: method, path, version, headers, body (both framings read), client_port,
                 request_no (requests so far on this connection: keep-alive is visible)
    """

    protocol_version = "HTTP/1.1"
    server_version = "egressd-test-origin/1"
    sys_version = ""
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        pass

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def do_HEAD(self) -> None:
        self._serve(head_only=True)

    def _read_body(self) -> tuple[bytes, str]:
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            body = bytearray()
            for _ in range(1_000_000):
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionError("EOF in chunked body")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    for _ in range(1000):
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                body += self.rfile.read(size)
                self.rfile.readline(8)
                if len(body) > MAX_BODY:
                    raise ConnectionError("body too large")
            return bytes(body), "chunked"
        cl = self.headers.get("Content-Length")
        if cl is not None:
            n = int(cl)
            if n > MAX_BODY:
                raise ConnectionError("body too large")
            return self.rfile.read(n), "content-length"
        return b"", "none"

    def _serve(self, head_only: bool = False) -> None:
        self._n = getattr(self, "_n", 0) + 1
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        body, framing = self._read_body()
        record = {
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body": body.decode("latin-1") if len(body) <= 65536 else None,
            "framing": framing,
            "client_port": self.client_address[1],
            "request_no": self._n,
        }
        self.server.record(record)  # type: ignore[attr-defined]
        if url.path == "/ws":
            self._websocket()
        elif url.path == "/big":
            n = int(q.get("n", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if not head_only:
                for chunk in big_chunks(n):
                    self.wfile.write(chunk)
        elif url.path == "/chunked":
            n = int(q.get("n", ["3"])[0])
            size = int(q.get("size", ["1000"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if not head_only:
                piece = next(big_chunks(size)) if size else b""
                for _ in range(n):
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
        elif url.path.startswith("/status/"):
            code = int(url.path.rsplit("/", 1)[1])
            payload = f"status {code}\n".encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if not head_only:
                self.wfile.write(payload)
        else:
            payload = json.dumps(record).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if url.path == "/close":
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if not head_only:
                self.wfile.write(payload)

    def _websocket(self) -> None:
        if (self.headers.get("Upgrade") or "").lower() != "websocket":
            payload = b"expected Upgrade: websocket\n"
            self.send_response(400)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.close_connection = True
        try:  # raw echo until EOF (read1: bytes already buffered come first)
            for _ in range(1_000_000):
                data = self.rfile.read1(65536)
                if not data:
                    break
                self.wfile.write(data)
        except OSError:
            pass


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class _HTTPOriginServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, tls_context: ssl.SSLContext | None = None):
        self.address_family = _family(host)
        self.tls_context = tls_context
        self.seen: list[dict] = []
        self._seen_lock = threading.Lock()
        super().__init__((host, 0), _OriginHandler)

    def server_bind(self) -> None:  # no getfqdn(): no DNS in a sandbox
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = self.server_address[1]

    def finish_request(self, request, client_address) -> None:
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10)
        try:  # handshake in the connection's thread, not the accept loop
            tls = self.tls_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:  # resets are expected in tests
        pass

    def record(self, r: dict) -> None:
        with self._seen_lock:
            self.seen.append(r)


class _FnHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(30)
        try:
            self.server.handler_fn(self.request, self.server)  # type: ignore[attr-defined]
        except OSError:
            pass


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, handler_fn: Callable[[socket.socket, Any], None]):
        self.address_family = _family(host)
        self.handler_fn = handler_fn
        self.received: "queue.Queue[bytes]" = queue.Queue()
        self.connections = 0
        super().__init__((host, 0), _FnHandler)

    def handle_error(self, request, client_address) -> None:
        pass

    def shutdown_request(self, request) -> None:
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.close_request(request)


class Origin:
    """A server running in a thread; `.host`, `.port`, `.hostport`."""

    def __init__(self, server: socketserver.BaseServer):
        self.server = server
        addr = server.server_address
        self.host: str = addr[0]  # type: ignore[index]
        self.port: int = addr[1]  # type: ignore[index]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"origin-{self.port}", daemon=True)
        self._thread.start()

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


class HttpOrigin(Origin):
    def __init__(self, host: str = "127.0.0.1", tls_context: ssl.SSLContext | None = None):
        super().__init__(_HTTPOriginServer(host, tls_context))
        self.tls = tls_context is not None

    def url(self, path: str = "/", host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        h = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{scheme}://{h}:{self.port}{path}"

    @property
    def seen(self) -> list[dict]:
        srv: _HTTPOriginServer = self.server  # type: ignore[assignment]
        with srv._seen_lock:
            return list(srv.seen)


def _echo(sock: socket.socket, server: _TCPServer) -> None:
    """Echo until EOF, then "bye\\n" and close: half-close from the client is observable."""
    server.connections += 1
    total = 0
    for _ in range(10_000_000):
        data = sock.recv(65536)
        if not data:
            break
        total += len(data)
        sock.sendall(data)
    sock.sendall(b"bye\n")
    server.received.put(str(total).encode())


class EchoServer(Origin):
    """Stands in for ssh: echoes; after reading EOF sends b"bye\\n" and closes.
    `received` gets the byte count of every finished connection."""

    def __init__(self, host: str = "127.0.0.1"):
        super().__init__(_TCPServer(host, _echo))

    @property
    def received(self) -> "queue.Queue[bytes]":
        return self.server.received  # type: ignore[attr-defined]


SEND_FIRST_GREETING = b"SSH-2.0-egressd-test greeting\r\n"


def _send_first(sock: socket.socket, server: _TCPServer) -> None:
    """Sends the greeting, half-closes its write side, then reads until EOF and reports."""
    server.connections += 1
    sock.sendall(SEND_FIRST_GREETING)
    sock.shutdown(socket.SHUT_WR)
    data = bytearray()
    for _ in range(1_000_000):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > 1 << 20:
            break
    server.received.put(bytes(data))


class SendFirstServer(Origin):
    """Speaks first, half-closes its write side, keeps reading: `received` gets what the
    client sent after that, once the client closes its side."""

    def __init__(self, host: str = "127.0.0.1"):
        super().__init__(_TCPServer(host, _send_first))

    @property
    def received(self) -> "queue.Queue[bytes]":
        return self.server.received  # type: ignore[attr-defined]


def rst_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, (1).to_bytes(4, "little") + (0).to_bytes(4, "little"))
    sock.close()


def _reset(sock: socket.socket, server: _TCPServer) -> None:
    server.connections += 1
    rst_close(sock)


class ResetServer(Origin):
    """Accepts, then resets the connection at once."""

    def __init__(self, host: str = "127.0.0.1"):
        super().__init__(_TCPServer(host, _reset))


class TcpOrigin(Origin):
    """A test's own raw TCP origin: `handler(sock, server)` runs for every connection in
    a thread of its own; after it returns the connection is half-closed and closed.
    `.server.connections` counts what the handler counts."""

    def __init__(self, handler: Callable[[socket.socket, Any], None], host: str = "127.0.0.1"):
        super().__init__(_TCPServer(host, handler))


def scripted_origin(handler, **attrs) -> "TcpOrigin":
    """A TcpOrigin whose handler finds `attrs` (queues, events, scripts) on its server."""
    o = TcpOrigin(handler)
    for k, v in attrs.items():
        setattr(o.server, k, v)
    return o


class _HostPort:
    host: str
    port: int

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class RefusedPort(_HostPort):
    """A port that refuses connections: bound (so nobody else takes it), never listening."""

    def __init__(self, host: str = "127.0.0.1"):
        self.sock = socket.socket(_family(host), socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.host, self.port = self.sock.getsockname()[:2]

    def close(self) -> None:
        self.sock.close()


class Blackhole(_HostPort):
    """A port whose connects hang (for connect timeouts), on loopback: a listener with
    backlog 0 whose accept queue is filled and never accepted, so further SYNs are
    dropped. This depends on the kernel; `available` is False (and tests needing it
    skip, saying so) when a probe connect does not hang. There is no other way to make a
    connect hang without a non-loopback address."""

    def __init__(self, host: str = "127.0.0.1", fillers: int = 8):
        self.listener = socket.socket(_family(host), socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(0)
        self.host, self.port = self.listener.getsockname()[:2]
        self.fill: list[socket.socket] = []
        for _ in range(fillers):
            c = socket.socket(_family(host), socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex((host, self.port))
            self.fill.append(c)
        probe = socket.socket(_family(host), socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect((host, self.port))
            self.available = False
            self.why = "a probe connect to the full backlog succeeded"
        except (socket.timeout, TimeoutError):
            self.available = True
            self.why = ""
        except OSError as e:
            self.available = False
            self.why = f"a probe connect failed with {e!r} instead of hanging"
        finally:
            probe.close()

    def close(self) -> None:
        for c in self.fill:
            c.close()
        self.listener.close()


def make_cert(directory: str) -> tuple[str, str]:
    """A throwaway self-signed certificate for localhost, app.localhost, loopy.test,
    127.0.0.1 and ::1 (openssl CLI). Returns (cert path, key path)."""
    openssl = require_tool("openssl")
    cert, key = os.path.join(directory, "origin-cert.pem"), os.path.join(directory, "origin-key.pem")
    r = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,DNS:app.localhost,DNS:loopy.test,"
                                   "IP:127.0.0.1,IP:::1"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise HarnessError(f"openssl req failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
    return cert, key


class Origins:
    """Every origin the tests use, started once per test module."""

    def __init__(self) -> None:
        self.dir = short_tempdir("egd-origins-")
        self._closers: list[Callable[[], None]] = []
        try:
            self.cert, self.key = make_cert(self.dir)
            server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_ctx.load_cert_chain(self.cert, self.key)
            self.http = self._keep(HttpOrigin("127.0.0.1"))
            self.tls = self._keep(HttpOrigin("127.0.0.1", server_ctx))
            self.echo = self._keep(EchoServer("127.0.0.1"))
            self.sendfirst = self._keep(SendFirstServer("127.0.0.1"))
            self.reset = self._keep(ResetServer("127.0.0.1"))
            self.refused = self._keep(RefusedPort("127.0.0.1"))
            self.blackhole = self._keep(Blackhole("127.0.0.1"))
            self.ipv6_error = ""
            self.http6: HttpOrigin | None = None
            self.echo6: EchoServer | None = None
            try:
                self.http6 = self._keep(HttpOrigin("::1"))
                self.echo6 = self._keep(EchoServer("::1"))
            except OSError as e:
                self.ipv6_error = f"cannot listen on [::1]: {e!r}"
        except BaseException:
            self.close()
            raise

    def _keep(self, thing):
        self._closers.append(thing.close)
        return thing

    def client_tls(self) -> ssl.SSLContext:
        """A client context that trusts the throwaway certificate."""
        return ssl.create_default_context(cafile=self.cert)

    def require_ipv6(self) -> None:
        if self.ipv6_error:
            raise HarnessError(f"IPv6 loopback is required by this test: {self.ipv6_error}")

    def close(self) -> None:
        for c in reversed(self._closers):
            try:
                c()
            except OSError:
                pass
        self._closers.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


_origins: Origins | None = None


def origins() -> Origins:
    """The origins of the current test module (setUpModule starts them)."""
    global _origins
    if _origins is None:
        _origins = Origins()
    return _origins


def close_origins() -> None:
    global _origins
    if _origins is not None:
        _origins.close()
        _origins = None


def setup_module(*tools: str, need_binary: bool = True) -> Origins:
    """For setUpModule: the tools and the binary must exist (else the module fails), and
    the origins are started."""
    require_tools(*tools)
    if need_binary:
        egressd_binary()
    return origins()


# ---------------------------------------------------------------------------------
# Test case base

class EgressdTestCase(unittest.TestCase):
    """Starts daemons whose logs are printed when a test fails; assertion helpers."""

    maxDiff = 4000
    _class_daemons: list[Egressd] = []

    @property
    def o(self) -> Origins:
        return origins()

    @classmethod
    def start_class_daemon(cls, config: dict | str, **kw: Any) -> Egressd:
        """A daemon shared by the tests of a class (call from setUpClass)."""
        d = Egressd(config, **kw)
        if "_class_daemons" not in cls.__dict__:
            cls._class_daemons = []
        cls._class_daemons.append(d)
        cls.addClassCleanup(d.close)
        d.start()
        return d

    def start_daemon(self, config: dict | str, wait_ready: bool = True, **kw: Any) -> Egressd:
        """A daemon for this test alone; killed at cleanup if the test did not stop it."""
        d = Egressd(config, **kw)
        self._own_daemons().append(d)
        self.addCleanup(d.close)
        d.start(wait_ready=wait_ready)
        return d

    def _own_daemons(self) -> list[Egressd]:
        if "_daemons" not in self.__dict__:
            self._daemons: list[Egressd] = []
        return self._daemons

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            for d in self._own_daemons() + list(type(self).__dict__.get("_class_daemons", [])):
                state = (d.stderr.mark() if d.stderr else 0, d.stdout.mark() if d.stdout else 0, d.exit_status())
                if getattr(d, "_dumped", None) == state:
                    sys.stderr.write(f"\n=== {self.id()}: {state[2]}; its logs are unchanged since the "
                                     f"previous dump ===\n")
                    continue
                d._dumped = state  # type: ignore[attr-defined]
                sys.stderr.write(f"\n=== egressd logs for {self.id()} (config {d.config_path}) ===\n"
                                 f"{d.config_text}{d.log_tail(60)}\n")
        return out

    # assertions ------------------------------------------------------------------
    def assert_blocked(self, head: Head, host: str, *, body_has: Iterable[str] = (),
                       proxy_status_has: Iterable[str] = ()) -> None:
        """A 403 refusal as README "Wire behaviour" words it."""
        self.assertEqual(head.status, 403, head.describe())
        self.assertEqual(head.get("X-Proxy-Error"), "blocked-by-allowlist", head.describe())
        ps = head.get("Proxy-Status")
        self.assertIsNotNone(ps, f"no Proxy-Status header: {head.describe()}")
        self.assertTrue(ps.startswith("egressd"), f"Proxy-Status {ps!r} does not start with 'egressd'")
        for s in proxy_status_has:
            self.assertIn(s, ps)
        self.assertIn(host, head.text, f"the refusal's body does not name {host!r}")
        for s in body_has:
            self.assertIn(s, head.text, f"the refusal's body does not say {s!r}")

    def assert_echo(self, sock: socket.socket, rest: bytes = b"", data: bytes | None = None) -> None:
        payload = data if data is not None else b"ping %d\n" % random.randrange(1 << 30)
        self.assertEqual(roundtrip(sock, payload, rest), rest + payload)

    def connect_echo_ok(self, ep: Endpoint, target: str, **kw: Any) -> None:
        """CONNECT works end to end: 200, then an echo round trip."""
        sock, head, rest = open_connect(ep, target, **kw)
        with sock:
            self.assertEqual(head.status, 200, head.describe())
            self.assert_echo(sock, rest)


class TempDirTest(EgressdTestCase):
    """A test with a private temporary directory for the files it writes."""

    def setUp(self) -> None:
        self.dir = short_tempdir("egd-files-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name: str, text: str) -> str:
        return write_file(self.dir, name, text)
