#!/usr/bin/env python3
"""An approval service for egressd's `hook.url` (README "Hook examples").

A team runs one of these for many egressd replicas (a gateway Deployment, the sidecars
of many pods, several developers' machines). Every replica asks it about destinations
its own policy does not know; it answers from

  1. its rules file (`allow PATTERN` / `deny PATTERN` lines; deny wins),
  2. the answers a person gave before (kept in a JSON file, written atomically),
  3. otherwise per --default: `hold` keeps the request open until a person answers
     (the page at /, or GET /pending and POST /answer) or --hold-timeout passes;
     `deny` or `allow` answers at once.

Answers go back as `remember: ttl` (at most --replica-ttl seconds), so each replica's own
memory takes over for a while and the service sees one question per destination and
replica, not one per request; and since every replica asks here, they all share one set
of answers: a destination approved once is approved for all of them. A revoked answer
(DELETE /answers) reaches every replica within --replica-ttl. With --pass-always, a
person's `always` answers are passed on as `always` (each replica then writes them to its
own decisions_file, and revoking means forgetting them there too).

Python 3.11+ standard library only. Endpoints (JSON unless said otherwise):

  POST /decide      the question egressd sends; the answer
  GET  /pending     questions waiting for a person
  POST /answer      {"id": N | "host": H, "decision": "allow"|"deny",
                     "remember": "once"|"ttl"|"always", "ttl_seconds": N,
                     "scope": "host"|"host_port"|"domain", "domain": D, "reason": R}
  GET  /answers     remembered answers;  DELETE /answers?name=NAME forgets them
  GET  /            a small page: pending questions with Allow / Deny buttons

With --token-file every request must carry `Authorization: Bearer TOKEN` (egressd's
hook.token_file sends it) or HTTP Basic credentials with TOKEN as the password (what a
browser sends for the page, after asking once). POST /answer must also be sent as
`Content-Type: application/json`, and it and DELETE /answers must name this service in
`Host` (the listen address, `localhost`, a loopback address, or an --allow-host name),
so a web page in a browser cannot answer (CSRF, DNS rebinding).

Bounds: --max-pending requests held at once (503 beyond), --max-body bytes per request
body (413), --io-timeout per read and write on a connection, --max-connections open at
once (closed at once beyond).
"""

from __future__ import annotations

import argparse
import base64
import hmac
import ipaddress
import json
import os
import re
import socket
import ssl
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DECISIONS = ("allow", "deny")
LIFETIMES = ("once", "ttl", "always")
SCOPES = ("host", "host_port", "domain")
# What egressd sends as a canonical host: letters, digits, '.', '-', '_', and ':' for IPv6.
HOST_RE = re.compile(r"^[a-z0-9._:-]{1,253}$")
PATTERN_RE = re.compile(r"^(\*\*?\.)?[a-z0-9._:-]+$")


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log(msg: str, **fields) -> None:
    """One JSON line per event on stderr."""
    sys.stderr.write(json.dumps({"time": now_rfc3339(), "msg": msg, **fields}) + "\n")
    sys.stderr.flush()


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------
# Rules: `allow PATTERN` / `deny PATTERN`, egressd's grammar without ports.

def pattern_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("**."):
        base = pattern[3:]
        return host == base or host.endswith("." + base)
    if pattern.startswith("*."):
        return host.endswith("." + pattern[2:])
    return host == pattern


def load_rules(path: str | None) -> list[tuple[str, str, int]]:
    """(decision, pattern, line) for each rule; a bad line is an error naming it."""
    if not path:
        return []
    rules = []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            words = raw.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) != 2 or words[0] not in DECISIONS or not PATTERN_RE.match(words[1].lower()):
                raise ValueError(f"{path}:{n}: expected `allow PATTERN` or `deny PATTERN`, got {raw.strip()!r}")
            rules.append((words[0], words[1].lower(), n))
    return rules


# ------------------------------------------------------------------------------------
# Remembered answers: a JSON file, rewritten whole and atomically on every change.

class Memory:
    def __init__(self, path: str | None):
        self.path = path
        self.entries: list[dict] = []
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                try:
                    data = json.load(f)
                except ValueError as e:
                    raise ValueError(f"{path}: not JSON: {e}") from None
            if not isinstance(data, dict) or not isinstance(data.get("answers"), list):
                raise ValueError(f"{path}: expected {{\"answers\": [...]}}")
            for i, e in enumerate(data["answers"]):
                if not (isinstance(e, dict) and isinstance(e.get("name"), str) and e.get("scope") in SCOPES
                        and e.get("decision") in DECISIONS
                        and (e.get("expires") is None or isinstance(e.get("expires"), (int, float)))):
                    raise ValueError(f"{path}: answers[{i}] needs name, scope (host|host_port|domain), "
                                     f"decision (allow|deny) and expires (a time or null)")
            self.entries = data["answers"]

    @staticmethod
    def covers(e: dict, host: str, port: int) -> bool:
        if e["scope"] == "domain":
            return host == e["name"] or host.endswith("." + e["name"])
        if e["scope"] == "host_port":
            return host == e["name"] and port == e.get("port")
        return host == e["name"]

    def lookup(self, host: str, port: int, now: float) -> dict | None:
        """The most specific live entry: host_port, host, then the longest domain."""
        rank = {"host_port": 0, "host": 1, "domain": 2}
        live = [e for e in self.entries
                if (e.get("expires") is None or e["expires"] > now) and self.covers(e, host, port)]
        live.sort(key=lambda e: (rank[e["scope"]], -len(e["name"])))
        return live[0] if live else None

    def remember(self, entry: dict) -> None:
        key = (entry["name"], entry["scope"], entry.get("port"))
        self.entries = [e for e in self.entries if (e["name"], e["scope"], e.get("port")) != key]
        self.entries.append(entry)
        self.save()

    def forget(self, name: str) -> int:
        before = len(self.entries)
        self.entries = [e for e in self.entries if e["name"] != name]
        if len(self.entries) != before:
            self.save()
        return before - len(self.entries)

    def prune(self, now: float) -> None:
        self.entries = [e for e in self.entries if e.get("expires") is None or e["expires"] > now]

    def save(self) -> None:
        """Temporary file in the same directory, fsync, rename, fsync the directory: a
        crash leaves the old file or the new one, never half of one."""
        if not self.path:
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".answers-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"answers": self.entries}, f, indent=1, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# ------------------------------------------------------------------------------------
# Held questions.

class Pending:
    """One destination waiting for a person; every request asking about it waits here."""

    def __init__(self, pid: int, q: dict):
        self.id = pid
        self.host = q["host"]
        self.port = q["port"]
        self.domain = q.get("registrable_domain", "")
        self.protocol = q.get("protocol", "")
        self.clients: list[str] = []
        self.first_seen = now_rfc3339()
        self.waiting = 0
        self.answer: dict | None = None
        self.done = threading.Event()

    def view(self) -> dict:
        return {"id": self.id, "host": self.host, "port": self.port, "registrable_domain": self.domain,
                "protocol": self.protocol, "clients": self.clients[:10], "waiting": self.waiting,
                "first_seen": self.first_seen}


class Service:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rules = load_rules(args.rules)
        self.memory = Memory(args.state)
        self.lock = threading.Lock()
        self.pending: dict[tuple[str, int], Pending] = {}
        self.next_id = 1
        self.held = 0  # requests held right now (each is a thread)
        self.token = None
        if args.token_file:
            with open(args.token_file, encoding="utf-8") as f:
                self.token = f.readline().strip()
            if not self.token:
                raise ValueError(f"{args.token_file}: the first line (the token) is empty")

    # -- the answer egressd gets ------------------------------------------------------
    def reply(self, decision: str, reason: str, scope: str = "host", seconds: float | None = None,
              always: bool = False) -> dict:
        if decision == "allow" and always and self.args.pass_always:
            return {"decision": decision, "remember": "always", "scope": scope, "reason": reason}
        if seconds is not None and seconds < 1:
            return {"decision": decision, "remember": "once", "scope": scope, "reason": reason}
        ttl = self.args.replica_ttl if seconds is None else min(self.args.replica_ttl, int(seconds))
        return {"decision": decision, "remember": "ttl", "ttl_seconds": max(1, ttl), "scope": scope,
                "reason": reason}

    def from_entry(self, e: dict, now: float) -> dict:
        left = None if e.get("expires") is None else e["expires"] - now
        why = e.get("reason") or f"answered by {e.get('answered_by', 'a person')}"
        return self.reply(e["decision"], f"approval service: {why}", e["scope"], left,
                          always=e.get("expires") is None)

    def known(self, host: str, port: int, now: float) -> dict | None:
        """Rules, then remembered answers."""
        verdict = None
        for decision, pattern, line in self.rules:
            if pattern_matches(pattern, host) and (verdict is None or decision == "deny"):
                verdict = (decision, pattern, line)
                if decision == "deny":
                    break
        if verdict:
            # A rule covers the host only: another host of the domain may be ruled otherwise.
            return self.reply(verdict[0], f"approval service rule `{verdict[0]} {verdict[1]}` "
                                          f"({self.args.rules}:{verdict[2]})")
        e = self.memory.lookup(host, port, now)
        return self.from_entry(e, now) if e else None

    def decide(self, q: dict) -> dict | None:
        """The answer to a question, holding the caller while a person decides. None when
        too many are held (the caller answers 503)."""
        host, port = q["host"], q["port"]
        with self.lock:
            a = self.known(host, port, time.time())
            if a is not None:
                return a
            if self.args.default != "hold":
                return {"decision": self.args.default, "remember": "once",
                        "reason": f"approval service: no rule for {host}; default {self.args.default}"}
            if self.held >= self.args.max_pending:
                return None
            p = self.pending.get((host, port))
            if p is None:
                p = Pending(self.next_id, q)
                self.next_id += 1
                self.pending[(host, port)] = p
                log("pending", id=p.id, host=host, port=port, client=q.get("client", ""))
            client = str(q.get("client", ""))
            if client and client not in p.clients:
                p.clients.append(client)
            p.waiting += 1
            self.held += 1
            log("held", id=p.id, host=host, port=port, waiting=p.waiting)
        try:
            answered = p.done.wait(self.args.hold_timeout)
        finally:
            with self.lock:
                self.held -= 1
                p.waiting -= 1
                if p.waiting == 0 and self.pending.get((host, port)) is p:
                    del self.pending[(host, port)]  # nobody waits: the page stops listing it
        if answered and p.answer is not None:
            return p.answer
        # Unanswered: deny this time only, so the next request asks again.
        return {"decision": "deny", "remember": "once",
                "reason": f"approval service: nobody answered within {self.args.hold_timeout:g}s"}

    # -- a person's answer ------------------------------------------------------------
    def answer(self, body: dict) -> dict:
        decision = body.get("decision")
        remember = body.get("remember", "once")
        scope = body.get("scope", "host")
        if decision not in DECISIONS:
            raise BadRequest(400, "decision must be allow or deny")
        if remember not in LIFETIMES:
            raise BadRequest(400, "remember must be once, ttl or always")
        if scope not in SCOPES:
            raise BadRequest(400, "scope must be host, host_port or domain")
        ttl = body.get("ttl_seconds", 3600)
        if remember == "ttl" and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1):
            raise BadRequest(400, "ttl_seconds must be an integer >= 1")
        reason = str(body.get("reason", ""))[:200]
        by = str(body.get("by", "a person"))[:100]
        with self.lock:
            target = None
            if "id" in body:
                target = next((p for p in self.pending.values() if p.id == body["id"]), None)
                if target is None:
                    raise BadRequest(404, f"no pending question with id {body['id']!r}")
                host, port, domain = target.host, target.port, target.domain
            elif isinstance(body.get("host"), str) and HOST_RE.match(body["host"].lower()):
                host = body["host"].lower()
                port = body.get("port", 443)
                if not isinstance(port, int) or not 1 <= port <= 65535:
                    raise BadRequest(400, "port must be an integer from 1 to 65535")
                target = self.pending.get((host, port))
                domain = body.get("domain") or (target.domain if target else "")
            else:
                raise BadRequest(400, "name the question: id, or host (and port)")
            if target is None and remember == "once":
                raise BadRequest(404, f"nothing waits for {host}:{port}; a `once` answer would answer nothing")
            if scope == "domain":
                domain = str(domain).lower()
                if not domain or not HOST_RE.match(domain) or not (host == domain or host.endswith("." + domain)):
                    raise BadRequest(400, "scope domain needs the host's registrable domain (`domain`)")
            name = domain if scope == "domain" else host
            now = time.time()
            entry = {"name": name, "scope": scope, "port": port if scope == "host_port" else None,
                     "decision": decision, "expires": None if remember == "always" else now + ttl,
                     "answered_at": now_rfc3339(), "answered_by": by, "reason": reason}
            if remember != "once":
                self.memory.prune(now)
                self.memory.remember(entry)
            why = reason or f"{decision} by {by}"
            # Release every held question the answer covers: the one named, and for a
            # domain answer its siblings.
            released = []
            for p in list(self.pending.values()):
                if p is target or (remember != "once" and Memory.covers(entry, p.host, p.port)):
                    if remember == "once":
                        p.answer = {"decision": decision, "remember": "once", "reason": f"approval service: {why}"}
                    else:
                        p.answer = self.from_entry({**entry, "reason": why}, now)
                    p.done.set()
                    released.append(p.id)
                    del self.pending[(p.host, p.port)]
        log("answered", host=host, port=port, decision=decision, remember=remember, scope=scope, by=by,
            released=released)
        return {"ok": True, "released": released, "remembered": remember != "once", "name": name}

    def views(self) -> list[dict]:
        with self.lock:
            return [p.view() for p in sorted(self.pending.values(), key=lambda p: p.id)]

    def answers(self) -> list[dict]:
        with self.lock:
            self.memory.prune(time.time())
            return list(self.memory.entries)

    def forget(self, name: str) -> int:
        with self.lock:
            return self.memory.forget(name.lower())


# ------------------------------------------------------------------------------------
# HTTP

def parse_question(body: dict) -> dict:
    host = body.get("host")
    if not isinstance(host, str) or not HOST_RE.match(host.lower()):
        raise BadRequest(400, "host must be a canonical host name or IP literal")
    port = body.get("port", 443)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise BadRequest(400, "port must be an integer from 1 to 65535")
    domain = body.get("registrable_domain", "")
    if not isinstance(domain, str) or (domain and not HOST_RE.match(domain.lower())):
        raise BadRequest(400, "registrable_domain must be a domain name or empty")
    return {**body, "host": host.lower(), "port": port, "registrable_domain": domain.lower()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: egressd reuses its connections
    server_version = "egressd-approval-service"
    service: Service  # set on the class by main()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        pass  # decisions are logged as JSON lines; no access log

    # -- plumbing -----------------------------------------------------------------
    def send_json(self, status: int, obj, extra: dict | None = None) -> None:
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def fail(self, status: int, message: str) -> None:
        extra = {}
        if status == 401:
            extra["WWW-Authenticate"] = 'Basic realm="egressd approvals", charset="UTF-8"'
        self.close_connection = True  # the rest of the body, if any, was not read
        self.send_json(status, {"error": message}, extra)

    def authorized(self) -> bool:
        token = self.service.token
        if token is None:
            return True
        got = self.headers.get("Authorization", "")
        scheme, _, cred = got.partition(" ")
        if scheme.lower() == "bearer":
            offered = cred.strip()
        elif scheme.lower() == "basic":
            try:
                offered = base64.b64decode(cred.strip(), validate=True).decode("utf-8").partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                return False
        else:
            return False
        return hmac.compare_digest(offered.encode(), token.encode())

    def host_allowed(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        return host in self.server.allowed_hosts  # type: ignore[attr-defined]

    def read_json(self) -> dict:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BadRequest(411, "send the body with a Content-Length")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise BadRequest(411, "Content-Length required")
        if int(length) > self.service.args.max_body:
            raise BadRequest(413, f"body larger than {self.service.args.max_body} bytes")
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(400, f"not JSON: {e}") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "expected a JSON object")
        return body

    def route(self, method: str) -> None:
        path = urlsplit(self.path).path
        try:
            if not self.authorized():
                raise BadRequest(401, "a bearer token (or the token as the Basic password) is required")
            handler = ROUTES.get(path)
            if handler is None:
                raise BadRequest(404, f"no such path: {path}")
            fn = handler.get(method)
            if fn is None:
                self.send_json(405, {"error": f"{method} not allowed on {path}"},
                               {"Allow": ", ".join(sorted(handler))})
                return
            fn(self)
        except BadRequest as e:
            self.fail(e.status, str(e))

    def do_GET(self) -> None:
        self.route("GET")

    def do_HEAD(self) -> None:
        self.route("GET")

    def do_POST(self) -> None:
        self.route("POST")

    def do_DELETE(self) -> None:
        self.route("DELETE")

    # -- routes ---------------------------------------------------------------------
    def decide(self) -> None:
        q = parse_question(self.read_json())
        a = self.service.decide(q)
        if a is None:
            self.fail(503, f"more than {self.service.args.max_pending} requests held; try later")
            return
        if "id" in q:
            a = {**a, "id": q["id"]}
        log("decided", host=q["host"], port=q["port"], decision=a["decision"], reason=a.get("reason", ""))
        self.send_json(200, a)

    def get_pending(self) -> None:
        self.send_json(200, {"pending": self.service.views()})

    def post_answer(self) -> None:
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise BadRequest(415, "Content-Type must be application/json")
        if not self.host_allowed():
            raise BadRequest(403, "the Host header does not name this service (see --allow-host)")
        body = self.read_json()
        body.setdefault("by", f"{self.client_address[0]}")
        self.send_json(200, self.service.answer(body))

    def get_answers(self) -> None:
        self.send_json(200, {"answers": self.service.answers()})

    def delete_answers(self) -> None:
        if not self.host_allowed():
            raise BadRequest(403, "the Host header does not name this service (see --allow-host)")
        names = parse_qs(urlsplit(self.path).query).get("name", [])
        if len(names) != 1:
            raise BadRequest(400, "name exactly one answer: DELETE /answers?name=NAME")
        self.send_json(200, {"forgotten": self.service.forget(names[0])})

    def page(self) -> None:
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; "
                                                    "style-src 'unsafe-inline'; frame-ancestors 'none'")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


ROUTES = {
    "/decide": {"POST": Handler.decide},
    "/pending": {"GET": Handler.get_pending},
    "/answer": {"POST": Handler.post_answer},
    "/answers": {"GET": Handler.get_answers, "DELETE": Handler.delete_answers},
    "/": {"GET": Handler.page},
}

PAGE = """<!doctype html>
<meta charset="utf-8"><title>egressd approvals</title>
<style>body{font:15px system-ui,sans-serif;margin:2em;max-width:60em}
table{border-collapse:collapse;width:100%}td,th{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left}
button{margin:.1em}.none{color:#777}</style>
<h1>egressd approvals</h1>
<h2>Waiting</h2><table id="pending"></table>
<h2>Remembered</h2><table id="answers"></table>
<script>
const esc = s => String(s).replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");
async function answer(id, decision, remember, scope) {
  const body = {id, decision, remember, scope, ttl_seconds: 3600, by: "page"};
  const r = await fetch("/answer", {method: "POST", headers: {"Content-Type": "application/json"},
                                    body: JSON.stringify(body)});
  if (!r.ok) alert((await r.json()).error);
  refresh();
}
function buttons(p) {
  const b = (label, d, rem, scope) =>
    `<button onclick='answer(${p.id},"${d}","${rem}","${scope}")'>${esc(label)}</button>`;
  const dom = p.registrable_domain ? b("Always allow *." + p.registrable_domain, "allow", "always", "domain") : "";
  return b("Allow once", "allow", "once", "host") + b("Allow for an hour", "allow", "ttl", "host") +
         b("Always allow " + p.host, "allow", "always", "host") + dom + b("Deny", "deny", "ttl", "host");
}
async function refresh() {
  const [p, a] = await Promise.all([fetch("/pending").then(r => r.json()), fetch("/answers").then(r => r.json())]);
  document.getElementById("pending").innerHTML = p.pending.length ? p.pending.map(q =>
    `<tr><td><b>${esc(q.host)}:${q.port}</b><br><small>${esc(q.protocol)} from ${esc(q.clients.join(", "))},
     ${q.waiting} waiting since ${esc(q.first_seen)}</small></td><td>${buttons(q)}</td></tr>`).join("")
    : "<tr><td class=none>nothing waiting</td></tr>";
  document.getElementById("answers").innerHTML = a.answers.length ? a.answers.map(e =>
    `<tr><td>${esc(e.decision)}</td><td>${e.scope === "domain" ? "*." : ""}${esc(e.name)}${e.port ? ":" + e.port : ""}</td>
     <td>${e.expires ? "until " + new Date(e.expires * 1000).toLocaleString() : "always"}</td>
     <td><small>${esc(e.answered_by)} ${esc(e.answered_at)}</small></td></tr>`).join("")
    : "<tr><td class=none>none</td></tr>";
}
refresh(); setInterval(refresh, 2000);
</script>
"""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: Service, tls: ssl.SSLContext | None,
                 allowed_hosts: set[str]):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.tls = tls
        self.service = service
        self.open = 0
        self.open_lock = threading.Lock()
        super().__init__(address, Handler)
        port = self.server_address[1]
        host = address[0]
        shown = f"[{host}]" if ":" in host else host
        self.allowed_hosts = {f"{shown}:{port}", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
        for h in allowed_hosts:  # without a port too: browsers leave out 80 and 443
            self.allowed_hosts |= {h, f"{h}:{port}"}

    def server_bind(self) -> None:  # no getfqdn(): a reverse lookup may hang where there is no DNS
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request, client_address) -> None:
        with self.open_lock:
            if self.open >= self.service.args.max_connections:
                self.shutdown_request(request)  # over the cap: closed at once, no thread
                return
            self.open += 1
        super().process_request(request, client_address)

    def finish_request(self, request, client_address) -> None:
        # Per connection, in its own thread: the TLS handshake (never in the accept loop,
        # where a slow client would stall everyone) and the read/write deadline.
        request.settimeout(self.service.args.io_timeout)
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
        Handler(request, client_address, self)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.open_lock:
                self.open -= 1

    def handle_error(self, request, client_address) -> None:
        # Resets and timeouts of clients are routine; anything else is logged, the
        # connection closed, and the service keeps serving.
        err = sys.exc_info()[1]
        if not isinstance(err, (ConnectionError, TimeoutError, ssl.SSLError)):
            log("error", client=str(client_address), error=repr(err))


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, [V6]:PORT, got {text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"HOST must be an IP address, got {host!r}") from None
    return host, int(port)


def positive(kind):
    def parse(text: str):
        v = kind(text)
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v
    return parse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8081),
                    help="HOST:PORT to listen on (default 127.0.0.1:8081; port 0: any free port)")
    ap.add_argument("--rules", help="rules file: `allow PATTERN` / `deny PATTERN` lines, # comments")
    ap.add_argument("--state", help="JSON file of remembered answers (written atomically); "
                                    "none: they last until the service stops")
    ap.add_argument("--default", choices=("hold", "deny", "allow"), default="hold",
                    help="for a destination neither rules nor answers know (default hold)")
    ap.add_argument("--hold-timeout", type=positive(float), default=25.0,
                    help="seconds a request is held for a person; keep it below egressd's hook.timeout "
                         "(default 25)")
    ap.add_argument("--replica-ttl", type=positive(int), default=600,
                    help="the longest a replica remembers an answer before asking again (default 600)")
    ap.add_argument("--pass-always", action="store_true",
                    help="pass a person's `always` allow answers on as `always` (replicas persist them)")
    ap.add_argument("--token-file", help="file whose first line every request must present")
    ap.add_argument("--cert", help="PEM certificate chain: serve HTTPS")
    ap.add_argument("--key", help="PEM private key for --cert")
    ap.add_argument("--allow-host", action="append", default=[],
                    help="another name POST /answer may be addressed to (Host header), e.g. approvals.corp")
    ap.add_argument("--max-pending", type=positive(int), default=256, help="requests held at once (default 256)")
    ap.add_argument("--max-body", type=positive(int), default=16384, help="largest request body (default 16384)")
    ap.add_argument("--io-timeout", type=positive(float), default=30.0,
                    help="seconds per read or write on a connection (default 30)")
    ap.add_argument("--max-connections", type=positive(int), default=512, help="open connections (default 512)")
    args = ap.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")
    if args.io_timeout <= args.hold_timeout:
        args.io_timeout = args.hold_timeout + 5  # a held reply must not hit the write deadline
    try:
        service = Service(args)
        tls = None
        if args.cert:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(args.cert, args.key)
        Handler.service = service
        server = Server(args.listen, service, tls, {h.lower() for h in args.allow_host})
    except (OSError, ValueError, ssl.SSLError) as e:
        print(f"approval_service: {e}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    log("listening", address=f"{shown}:{port}", scheme="https" if tls else "http", rules=len(service.rules),
        answers=len(service.memory.entries), default=args.default)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
