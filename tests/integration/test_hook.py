"""The confirmation hook (README "Confirmation hook") through the real binary, with real
hook programs (exec, a process per question) and real HTTP endpoints (url, plain and
TLS): a held request completes after an allow and is refused after a deny, for CONNECT,
SOCKS5 and plain HTTP; 50 concurrent identical requests cause one hook call; `ttl`
answers expire; `scope: domain` covers a sibling; `always` answers survive a restart and
a reload through decisions_file; every failure (timeout, crash, garbage, a missing
program, a refused or failing endpoint, a bad certificate, overload) denies with its own
reason while other traffic flows; a client that leaves while held, and a drain, end the
wait with their own record.

Every name resolves to 127.0.0.1 through the daemon's hosts file; `127.0.0.1` in
`allow` re-opens loopback for the guard, so an allowed name reaches the local origins."""

import concurrent.futures
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (EgressdTestCase, make_config, open_connect, roundtrip, socks5_open,  # noqa: E402
                     wait_until)

NAMES = ["allow", "deny", "slow", "ttl", "garbage", "crash", "hang", "exit0", "exit1",
         "keep", "left", "drain", "other", "a.over", "b.over", "c.over", "url", "url500", "urlbad", "tls", "badtls"]
# one.sibling.test and two.sibling.test share a registrable domain (sibling.test) with
# nothing else here: a `scope: domain` answer for one covers the other, and no other test.
HOSTS_TEXT = (harness.HOSTS_FILE_TEXT + "".join(f"127.0.0.1 {n}.hook.test\n" for n in NAMES) +
              "127.0.0.1 one.sibling.test\n127.0.0.1 two.sibling.test\n")

# A hook program (one process per question): answers from answers.json beside it, keyed
# by host, and appends every question it gets to calls.jsonl.
HOOK_PROGRAM = r'''#!/usr/bin/env python3
import json, os, signal, sys, time
here = os.path.dirname(os.path.abspath(__file__))
q = json.loads(sys.stdin.readline())
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps(q) + "\n")
with open(os.path.join(here, "answers.json")) as f:
    answers = json.load(f)
a = answers.get(q["host"], {"answer": {"decision": "deny", "reason": "not in the test's table"}})
time.sleep(a.get("sleep", 0))
if a.get("crash"):
    os.kill(os.getpid(), signal.SIGSEGV)
if "raw" in a:
    sys.stdout.write(a["raw"])
    sys.stdout.flush()
    sys.exit(a.get("exit", 0))
print(json.dumps(a["answer"]))
'''

ANSWERS = {
    "allow.hook.test": {"answer": {"decision": "allow", "reason": "listed by the test"}},
    "deny.hook.test": {"answer": {"decision": "deny", "reason": "not wanted"}},
    "slow.hook.test": {"sleep": 1.0, "answer": {"decision": "allow"}},
    "ttl.hook.test": {"answer": {"decision": "allow", "remember": "ttl", "ttl_seconds": 1}},
    "one.sibling.test": {"answer": {"decision": "allow", "remember": "ttl", "ttl_seconds": 600,
                                       "scope": "domain"}},
    "garbage.hook.test": {"raw": "yes please\n"},
    "crash.hook.test": {"crash": True},
    "hang.hook.test": {"sleep": 60, "answer": {"decision": "allow"}},
    "exit0.hook.test": {"raw": "", "exit": 0},
    "exit1.hook.test": {"raw": "", "exit": 1},
    "keep.hook.test": {"answer": {"decision": "allow", "remember": "always", "reason": "kept"}},
    "left.hook.test": {"sleep": 2.0, "answer": {"decision": "allow"}},
    "drain.hook.test": {"sleep": 60, "answer": {"decision": "allow"}},
    "a.over.hook.test": {"sleep": 60, "answer": {"decision": "allow"}},
    "b.over.hook.test": {"sleep": 60, "answer": {"decision": "allow"}},
}


def setUpModule():
    harness.setup_module()


def tearDownModule():
    harness.close_origins()


def write_hook(directory: str, answers: dict) -> str:
    path = harness.write_file(directory, "hook.py", HOOK_PROGRAM)
    os.chmod(path, 0o755)
    harness.write_file(directory, "answers.json", json.dumps(answers))
    return path


def calls(directory: str, host: str | None = None) -> list[dict]:
    try:
        with open(os.path.join(directory, "calls.jsonl"), encoding="utf-8") as f:
            out = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
    return [q for q in out if host is None or q["host"] == host]


def hook_config(tmp: str, hook: dict, *, allow=("127.0.0.1",), **extra) -> dict:
    return make_config(allow=list(allow), unknown="ask", hook=hook, **extra)


class HookBase(EgressdTestCase):
    def connect_status(self, d, host: str, port: int | None = None, timeout: float = harness.IO_TIMEOUT):
        port = port or self.o.echo.port
        sock, head, rest = open_connect(d.endpoint(), f"{host}:{port}", timeout=timeout)
        with sock:
            if head.status == 200:
                self.assertEqual(roundtrip(sock, b"ping", rest), b"ping")
        return head


class ExecHookTest(HookBase):
    """One daemon, an exec hook answering from a table; questions time out after 3 s."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = harness.short_tempdir("egd-hook-")
        cls.program = write_hook(cls.tmp, ANSWERS)
        cls.d = cls.start_class_daemon(
            hook_config(cls.tmp, {"exec": [cls.program], "timeout": "3s", "max_pending": 64},
                        allow=("127.0.0.1", "app.localhost")),
            hosts_text=HOSTS_TEXT)

    def test_connect_held_then_allowed(self):
        mark = self.d.audit_mark()
        head = self.connect_status(self.d, "allow.hook.test")
        self.assertEqual(head.status, 200, head.describe())
        rec = self.d.wait_audit(start=mark, event="request", host="allow.hook.test")
        self.assertEqual(rec["decision"], "allow")
        self.assertEqual(rec["reason"], "hook_allow")
        self.assertEqual(rec["answered_by"], "hook")
        self.assertEqual(rec["hook_reason"], "listed by the test")
        self.assertGreater(rec["question"], 0)
        q = calls(self.tmp, "allow.hook.test")[-1]
        self.assertEqual(q["id"], rec["question"])
        self.assertEqual(q["port"], self.o.echo.port)
        self.assertEqual(q["protocol"], "connect")
        self.assertEqual(q["registrable_domain"], "hook.test")
        for key in ("client", "listener", "first_seen"):
            self.assertTrue(q[key], key)

    def test_connect_denied(self):
        head = self.connect_status(self.d, "deny.hook.test")
        self.assert_blocked(head, "deny.hook.test", proxy_status_has=["hook_deny"],
                            body_has=["denied by the confirmation hook", "not wanted"])

    def test_socks5_allowed_and_denied(self):
        sock, reply = socks5_open(self.d.endpoint(), "allow.hook.test", self.o.echo.port)
        with sock:
            self.assertEqual(reply.rep, 0)
            self.assertEqual(roundtrip(sock, b"hello"), b"hello")
        sock, reply = socks5_open(self.d.endpoint(), "deny.hook.test", self.o.echo.port)
        with sock:
            self.assertEqual(reply.rep, 2)
        self.assertEqual(calls(self.tmp, "deny.hook.test")[-1]["protocol"], "socks5")

    def test_plain_http_allowed_and_denied(self):
        ok = harness.curl("-sS", "-o", "-", "-w", "\n%{http_code}", "-x", self.d.endpoint().http_url,
                          self.o.http.url("/hello", host=f"allow.hook.test"))
        self.assertTrue(ok.stdout.decode().endswith("\n200"), ok.stdout[-200:])
        bad = harness.curl("-sS", "-o", "/dev/null", "-w", "%{http_code}", "-x", self.d.endpoint().http_url,
                           self.o.http.url("/hello", host="deny.hook.test"))
        self.assertEqual(bad.stdout.decode(), "403")
        self.assertEqual(calls(self.tmp, "deny.hook.test")[-1]["protocol"], "http")

    def test_fifty_identical_requests_one_call(self):
        before = len(calls(self.tmp, "slow.hook.test"))
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            heads = list(pool.map(lambda _: self.connect_status(self.d, "slow.hook.test", timeout=10), range(50)))
        self.assertEqual([h.status for h in heads], [200] * 50)
        self.assertEqual(len(calls(self.tmp, "slow.hook.test")) - before, 1)

    def test_ttl_answer_expires(self):
        before = len(calls(self.tmp, "ttl.hook.test"))
        mark = self.d.audit_mark()
        self.assertEqual(self.connect_status(self.d, "ttl.hook.test").status, 200)
        self.assertEqual(self.connect_status(self.d, "ttl.hook.test").status, 200)
        self.assertEqual(len(calls(self.tmp, "ttl.hook.test")) - before, 1)
        recs = self.d.wait_audits(2, start=mark, event="request", host="ttl.hook.test")
        self.assertEqual([r["answered_by"] for r in recs], ["hook", "remembered"])
        self.assertEqual(recs[1]["reason"], "remembered_allow")
        time.sleep(1.2)
        self.assertEqual(self.connect_status(self.d, "ttl.hook.test").status, 200)
        self.assertEqual(len(calls(self.tmp, "ttl.hook.test")) - before, 2)

    def test_domain_scope_covers_a_sibling(self):
        self.assertEqual(self.connect_status(self.d, "one.sibling.test").status, 200)
        mark = self.d.audit_mark()
        # two.sibling.test has no entry in the hook's table: the hook would deny it.
        self.assertEqual(self.connect_status(self.d, "two.sibling.test").status, 200)
        self.assertEqual(calls(self.tmp, "two.sibling.test"), [])
        rec = self.d.wait_audit(start=mark, event="request", host="two.sibling.test")
        self.assertEqual(rec["answered_by"], "remembered")

    def test_rules_win_over_the_hook(self):
        before = len(calls(self.tmp))
        head = self.connect_status(self.d, "app.localhost")
        self.assertEqual(head.status, 200, head.describe())
        self.assertEqual(len(calls(self.tmp)), before)

    def test_exit_status_alone_answers(self):
        self.assertEqual(self.connect_status(self.d, "exit0.hook.test").status, 200)
        head = self.connect_status(self.d, "exit1.hook.test")
        self.assert_blocked(head, "exit1.hook.test", proxy_status_has=["hook_deny"])

    def test_failures_deny_with_their_own_reason_while_traffic_flows(self):
        cases = {"garbage.hook.test": "hook_bad_answer", "crash.hook.test": "hook_crashed",
                 "hang.hook.test": "hook_timeout"}
        mark = self.d.audit_mark()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            held = {h: pool.submit(self.connect_status, self.d, h, None, 10) for h in cases}
            # Meanwhile a destination a rule allows, and one the hook allows, go through.
            for _ in range(3):
                self.assertEqual(self.connect_status(self.d, "app.localhost").status, 200)
            self.assertEqual(self.connect_status(self.d, "allow.hook.test").status, 200)
            for host, reason in cases.items():
                head = held[host].result()
                self.assert_blocked(head, host, proxy_status_has=[reason])
                rec = self.d.wait_audit(start=mark, event="request", host=host)
                self.assertEqual(rec["reason"], reason)
                self.assertEqual(rec["decision"], "deny")

    def test_client_leaving_while_held(self):
        mark = self.d.audit_mark()
        sock = self.d.endpoint().connect()
        sock.sendall(f"CONNECT left.hook.test:{self.o.echo.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until(lambda: calls(self.tmp, "left.hook.test"), 5, "the hook to be asked")
        sock.close()
        rec = self.d.wait_audit(start=mark, event="request", host="left.hook.test")
        self.assertEqual(rec["error"], "client_closed")
        self.assertEqual(rec["error_source"], "client")


class HookLimitsTest(HookBase):
    def test_overload_denies_new_destinations_at_once(self):
        tmp = harness.short_tempdir("egd-hook-")
        program = write_hook(tmp, ANSWERS)
        d = self.start_daemon(hook_config(tmp, {"exec": [program], "timeout": "20s", "max_pending": 2},
                                          allow=("127.0.0.1", "app.localhost")), hosts_text=HOSTS_TEXT)
        socks = []
        try:
            for h in ("a.over.hook.test", "b.over.hook.test"):
                s = d.endpoint().connect()
                s.sendall(f"CONNECT {h}:{self.o.echo.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                socks.append(s)
            wait_until(lambda: len(calls(tmp)) == 2, 5, "two questions asked")
            started = time.monotonic()
            head = self.connect_status(d, "c.over.hook.test")
            self.assertLess(time.monotonic() - started, 2.0)
            self.assert_blocked(head, "c.over.hook.test", proxy_status_has=["hook_overloaded"])
            self.assertEqual(self.connect_status(d, "app.localhost").status, 200)
        finally:
            for s in socks:
                s.close()

    def test_missing_program(self):
        d = self.start_daemon(make_config(allow=["127.0.0.1"], unknown="ask",
                                          hook={"exec": ["/nonexistent/egressd-hook"], "timeout": "3s"}),
                              hosts_text=HOSTS_TEXT)
        head = self.connect_status(d, "allow.hook.test")
        self.assert_blocked(head, "allow.hook.test", proxy_status_has=["hook_not_found"])

    def test_drain_refuses_held_requests(self):
        tmp = harness.short_tempdir("egd-hook-")
        program = write_hook(tmp, ANSWERS)
        d = self.start_daemon(hook_config(tmp, {"exec": [program], "timeout": "30s"}), hosts_text=HOSTS_TEXT)
        mark = d.audit_mark()
        sock = d.endpoint().connect()
        with sock:
            sock.sendall(f"CONNECT drain.hook.test:{self.o.echo.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            wait_until(lambda: calls(tmp, "drain.hook.test"), 5, "the hook to be asked")
            started = time.monotonic()
            d.send_signal(signal.SIGTERM)
            head, _ = harness.read_head(sock, 5)
            self.assertEqual(head.status, 403)
            self.assertIn("shutting_down", head.get("Proxy-Status") or "")
            self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(d.wait_exit(10), 0)
        rec = d.wait_audit(start=mark, event="request", host="drain.hook.test")
        self.assertEqual(rec["reason"], "shutting_down")


class DecisionsFileTest(HookBase):
    def test_always_survives_restart_and_reload(self):
        tmp = harness.short_tempdir("egd-hook-")
        program = write_hook(tmp, ANSWERS)
        decisions = os.path.join(tmp, "decisions.yaml")
        cfg = hook_config(tmp, {"exec": [program], "timeout": "3s"}, decisions_file=decisions)
        d = self.start_daemon(cfg, hosts_text=HOSTS_TEXT)
        mark = d.log_mark()
        self.assertEqual(self.connect_status(d, "keep.hook.test").status, 200)
        wait_until(lambda: os.path.exists(decisions), 5, "the decisions file")
        # egressd's own write of decisions_file is no change for its file watch
        # (reload.watch is on by default): no reload follows it. The watch waits 200 ms
        # of quiet before it reloads; 1 s is ample.
        time.sleep(1.0)
        self.assertEqual(d.stderr.find_all(lambda o: o.get("msg") == "reloaded", mark), [])
        with open(decisions, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("keep.hook.test", text)
        d.stop()

        # The hook now denies everything: only the remembered answer can allow.
        harness.write_file(tmp, "answers.json", json.dumps({}))
        d2 = self.start_daemon(cfg, hosts_text=HOSTS_TEXT)
        mark = d2.audit_mark()
        self.assertEqual(self.connect_status(d2, "keep.hook.test").status, 200)
        rec = d2.wait_audit(start=mark, event="request", host="keep.hook.test")
        self.assertEqual(rec["answered_by"], "remembered")
        self.assertEqual(len(calls(tmp, "keep.hook.test")), 1)
        mark = d2.log_mark()
        d2.send_signal(signal.SIGHUP)
        d2.wait_log("reloaded", start=mark)
        self.assertEqual(self.connect_status(d2, "keep.hook.test").status, 200)
        self.assertEqual(len(calls(tmp, "keep.hook.test")), 1)


class _HookEndpoint(http.server.BaseHTTPRequestHandler):
    """POST /decide: answers from the server's table by host; counts connections."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        q = json.loads(self.rfile.read(length))
        srv = self.server
        srv.questions.append((q, self.headers.get("Authorization")))
        status, body = srv.table.get(q["host"], (200, {"decision": "deny"}))
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, table, tls: ssl.SSLContext | None = None):
        super().__init__(("127.0.0.1", 0), _HookEndpoint)
        self.table = table
        self.questions = []
        self.connections = 0
        self.tls = tls

    def get_request(self):
        sock, addr = super().get_request()
        self.connections += 1
        if self.tls:
            sock = self.tls.wrap_socket(sock, server_side=True)
        return sock, addr


class UrlHookTest(HookBase):
    TABLE = {"url.hook.test": (200, {"decision": "allow", "reason": "approved centrally"}),
             "url500.hook.test": (500, {"error": "boom"}),
             "urlbad.hook.test": (200, b"<html>not json</html>"),
             "tls.hook.test": (200, {"decision": "allow"})}

    def serve(self, tls=None) -> _Server:
        srv = _Server(dict(self.TABLE), tls)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        return srv

    def test_plain_endpoint_answers_and_fails(self):
        srv = self.serve()
        tmp = harness.short_tempdir("egd-hook-")
        token = harness.write_file(tmp, "token", "s3cret-token\n")
        d = self.start_daemon(hook_config(tmp, {"url": f"http://127.0.0.1:{srv.server_port}/decide",
                                                 "token_file": token, "timeout": "3s"}), hosts_text=HOSTS_TEXT)
        self.assertEqual(self.connect_status(d, "url.hook.test").status, 200)
        self.assertEqual(srv.questions[-1][1], "Bearer s3cret-token")
        self.assert_blocked(self.connect_status(d, "url500.hook.test"), "url500.hook.test",
                            proxy_status_has=["hook_http_error"])
        self.assert_blocked(self.connect_status(d, "urlbad.hook.test"), "urlbad.hook.test",
                            proxy_status_has=["hook_bad_answer"])
        # Keep-alive: the questions above came over fewer connections than questions.
        self.assertLess(srv.connections, len(srv.questions))

    def test_refused_endpoint(self):
        tmp = harness.short_tempdir("egd-hook-")
        d = self.start_daemon(hook_config(tmp, {"url": f"http://127.0.0.1:{self.o.refused.port}/decide",
                                                 "timeout": "3s"}), hosts_text=HOSTS_TEXT)
        self.assert_blocked(self.connect_status(d, "url.hook.test"), "url.hook.test",
                            proxy_status_has=["hook_refused"])

    def test_endpoint_name_that_does_not_resolve(self):
        # `.invalid` never resolves (RFC 6761 §6.4). The hook client asks the system
        # resolver; RES_OPTIONS bounds a resolver that does not answer to about 2 s, so
        # either way the answer (NXDOMAIN or no server) comes well inside the hook timeout
        # and is told apart from a timeout.
        tmp = harness.short_tempdir("egd-hook-")
        d = self.start_daemon(hook_config(tmp, {"url": "http://hook-endpoint.invalid:8080/decide",
                                                 "timeout": "8s"}), hosts_text=HOSTS_TEXT,
                              env={"RES_OPTIONS": "timeout:1 attempts:1"})
        self.assert_blocked(self.connect_status(d, "url.hook.test"), "url.hook.test",
                            proxy_status_has=["hook_refused"])
        _, line = d.stderr.wait(lambda r: r.get("msg") == "the hook gave no answer", 5, "the hook's failure line")
        self.assertEqual(line["failure"], "refused")
        self.assertIn("hook-endpoint.invalid does not resolve", line["detail"])

    def test_tls_endpoint_and_a_bad_certificate(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.o.cert, self.o.key)
        srv = self.serve(ctx)
        tmp = harness.short_tempdir("egd-hook-")
        d = self.start_daemon(hook_config(tmp, {"url": f"https://127.0.0.1:{srv.server_port}/decide",
                                                 "ca_file": self.o.cert, "timeout": "3s"}), hosts_text=HOSTS_TEXT)
        self.assertEqual(self.connect_status(d, "tls.hook.test").status, 200)
        other_dir = harness.short_tempdir("egd-ca-")
        other_cert, _ = harness.make_cert(other_dir)
        d2 = self.start_daemon(hook_config(tmp, {"url": f"https://127.0.0.1:{srv.server_port}/decide",
                                                  "ca_file": other_cert, "timeout": "3s"}), hosts_text=HOSTS_TEXT)
        self.assert_blocked(self.connect_status(d2, "tls.hook.test"), "tls.hook.test",
                            proxy_status_has=["hook_tls_error"])


if __name__ == "__main__":
    unittest.main()
