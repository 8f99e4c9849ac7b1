"""Plain HTTP through the proxy (README "Wire behaviour"): absolute-form rewritten to origin-form,
hop-by-hop and Proxy-* headers dropped, keep-alive on both sides, every request on a
connection decided on its own, bodies of both framings streamed both ways, WebSocket
upgrades, refusals, 502/504, and proxy authentication (407)."""

import fcntl
import hashlib
import http.client
import json
import os
import queue
import signal
import socket
import sys
import termios
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (CONNECT_TIMEOUT_MARGIN_S, CONNECT_TIMEOUT_S, EgressdTestCase, TcpOrigin, basic_auth,  # noqa: E402
                     curl, make_config, open_connect, read_head, read_response, recv_exact, recv_until_closed,
                     request_bytes, socks5_greeting)

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def setUpModule():
    harness.setup_module("curl", "openssl")


def tearDownModule():
    harness.close_origins()


def header_names(record: dict) -> set[str]:
    return {k.lower() for k, _ in record["headers"]}


def header(record: dict, name: str) -> str | None:
    for k, v in record["headers"]:
        if k.lower() == name.lower():
            return v
    return None


class HttpForwardTest(EgressdTestCase):
    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(
            allow=[f"127.0.0.1:{o.http.port}", f"localhost:{o.http.port}", f"127.0.0.1:{o.refused.port}",
                   f"127.0.0.1:{o.blackhole.port}"],
            deny=["denied.localhost"]))
        cls.ep = cls.d.endpoint(0)

    def origin_url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.o.http.port}{path}"

    def exchange(self, sock: socket.socket, method: str, url: str, headers=(), body: bytes = b"",
                 buf: bytes = b"") -> tuple[harness.Head, bytes]:
        host = url.split("/")[2]
        sock.sendall(request_bytes(method, url, [("Host", host), *headers], body))
        return read_response(sock, buf=buf, method=method)

    # --- forwarding ---------------------------------------------------------------
    def test_curl_get_origin_form_and_audit(self):
        d, o = self.d, self.o
        mark = d.audit_mark()
        r = curl("--proxy", self.ep.http_url, self.origin_url("/path/x?q=1&r=2"))
        self.assertEqual(r.returncode, 0, r.stderr)
        rec = json.loads(r.stdout)
        self.assertEqual(rec["path"], "/path/x?q=1&r=2")
        self.assertEqual(header(rec, "Host"), f"127.0.0.1:{o.http.port}")
        self.assertNotIn("proxy-connection", header_names(rec))  # curl sends Proxy-Connection
        # By host too: the record of the previous test's request (localhost) is written
        # after its response, so it may still arrive after the mark.
        a = d.wait_audit(start=mark, event="request", port=o.http.port, host="127.0.0.1")
        self.assertEqual((a["host"], a["protocol"], a["decision"], a["reason"]),
                         ("127.0.0.1", "http", "allow", "allowed_by_rule"))

    def test_curl_get_by_name(self):
        r = curl("--proxy", self.ep.http_url, self.origin_url("/by-name", host="localhost"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["path"], "/by-name")

    def test_hop_by_hop_and_proxy_headers_dropped(self):
        with self.ep.connect() as s:
            resp, _ = self.exchange(s, "GET", self.origin_url("/hop"), [
                ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"), ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
                ("TE", "trailers"), ("X-Keep", "kept"), ("User-Agent", "egressd-test")])
            self.assertEqual(resp.status, 200, resp.describe())
            rec = json.loads(resp.body)
            names = header_names(rec)
            for gone in ("x-hop", "keep-alive", "proxy-connection", "proxy-authorization", "te"):
                self.assertNotIn(gone, names, rec["headers"])
            self.assertEqual(header(rec, "X-Keep"), "kept")
            self.assertEqual(header(rec, "User-Agent"), "egressd-test")
            self.assertEqual(rec["path"], "/hop")
            self.assertIsNone(resp.get("X-Proxy-Error"))

    def test_keep_alive_both_sides(self):
        with self.ep.connect() as s:
            r1, rest = self.exchange(s, "GET", self.origin_url("/ka1"))
            r2, rest = self.exchange(s, "GET", self.origin_url("/ka2"), buf=rest)
            self.assertEqual((r1.status, r2.status), (200, 200))
            a, b = json.loads(r1.body), json.loads(r2.body)
            self.assertEqual((a["path"], b["path"]), ("/ka1", "/ka2"))
            self.assertEqual(a["client_port"], b["client_port"], "the upstream connection was not kept alive")
            # The first may have gone over a connection an earlier test left in the idle pool.
            self.assertEqual(b["request_no"], a["request_no"] + 1)

    def test_pipelined_requests(self):
        with self.ep.connect() as s:
            host = f"127.0.0.1:{self.o.http.port}"
            s.sendall(request_bytes("GET", self.origin_url("/p1"), [("Host", host)]) +
                      request_bytes("GET", self.origin_url("/p2"), [("Host", host)]))
            r1, rest = read_response(s)
            r2, _ = read_response(s, buf=rest)
            self.assertEqual([json.loads(r.body)["path"] for r in (r1, r2)], ["/p1", "/p2"])

    def test_each_request_decided_on_its_own(self):
        """A second request on the same client connection naming a denied host is refused."""
        d = self.d
        mark = d.audit_mark()
        with self.ep.connect() as s:
            r1, rest = self.exchange(s, "GET", self.origin_url("/first"))
            self.assertEqual(r1.status, 200)
            other = f"http://127.0.0.1:{self.o.echo.port}/second"
            r2, _ = self.exchange(s, "GET", other, buf=rest)
            self.assert_blocked(r2, "127.0.0.1")
        rec = d.wait_audit(start=mark, event="request", port=self.o.echo.port)
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"]), ("http", "deny", "unknown_denied"))

    def test_allowed_after_denied_on_same_connection(self):
        with self.ep.connect() as s:
            r1, rest = self.exchange(s, "GET", self.origin_url("/x", host="denied.localhost"))
            self.assert_blocked(r1, "denied.localhost")
            # A bodyless keep-alive request that is refused leaves the connection usable.
            self.assertNotEqual((r1.get("Connection") or "").lower(), "close",
                                f"the proxy closed after refusing a bodyless request: {r1.describe()}")
            r2, _ = self.exchange(s, "GET", self.origin_url("/after-deny"), buf=rest)
            self.assertEqual(r2.status, 200, r2.describe())
            self.assertEqual(json.loads(r2.body)["path"], "/after-deny")

    def test_deny_rule(self):
        mark = self.d.audit_mark()
        r = curl("--proxy", self.ep.http_url, "-o", "/dev/null", "-w", "%{http_code}",
                 self.origin_url("/", host="denied.localhost"))
        self.assertEqual(r.stdout, b"403", r.stderr)
        rec = self.d.wait_audit(start=mark, event="request", host="denied.localhost")
        self.assertEqual((rec["decision"], rec["reason"], rec["rule"]), ("deny", "denied_by_rule", "denied.localhost"))

    def test_refusal_headers_and_body(self):
        with self.ep.connect() as s:
            r, _ = self.exchange(s, "GET", self.origin_url("/", host="denied.localhost"))
        self.assert_blocked(r, "denied.localhost")
        self.assertTrue((r.get("Content-Type") or "").startswith("text/"), r.describe())

    def test_origin_status_passes_through(self):
        with self.ep.connect() as s:
            r, _ = self.exchange(s, "GET", self.origin_url("/status/404"))
        self.assertEqual((r.status, r.body), (404, b"status 404\n"))
        self.assertIsNone(r.get("X-Proxy-Error"))

    def test_head_then_get_on_one_connection(self):
        with self.ep.connect() as s:
            r1, rest = self.exchange(s, "HEAD", self.origin_url("/head"))
            self.assertEqual((r1.status, r1.body), (200, b""))
            self.assertIsNotNone(r1.get("Content-Length"))
            r2, _ = self.exchange(s, "GET", self.origin_url("/after-head"), buf=rest)
            self.assertEqual(json.loads(r2.body)["path"], "/after-head")

    # --- bodies -------------------------------------------------------------------
    def proxy_conn(self) -> http.client.HTTPConnection:
        c = http.client.HTTPConnection(self.ep.host, self.ep.port, timeout=30)
        self.addCleanup(c.close)
        return c

    def test_content_length_request_body(self):
        body = bytes(range(256)) * 12000  # 3 MB
        c = self.proxy_conn()
        c.request("POST", self.origin_url("/upload"), body=body)
        r = c.getresponse()
        rec = json.loads(r.read())
        self.assertEqual(r.status, 200)
        self.assertEqual((rec["body_len"], rec["framing"]), (len(body), "content-length"))
        self.assertEqual(rec["body_sha256"], hashlib.sha256(body).hexdigest())

    def test_chunked_request_body(self):
        pieces = [b"a" * 1000, b"b" * 70000, b"c" * 3, b"d" * 500000]
        c = self.proxy_conn()
        c.request("POST", self.origin_url("/chunked-upload"), body=iter(pieces), encode_chunked=True,
                  headers={"Transfer-Encoding": "chunked"})
        r = c.getresponse()
        rec = json.loads(r.read())
        self.assertEqual(r.status, 200)
        self.assertEqual((rec["body_len"], rec["framing"]), (sum(map(len, pieces)), "chunked"))
        self.assertEqual(rec["body_sha256"], hashlib.sha256(b"".join(pieces)).hexdigest())

    def test_chunked_response(self):
        c = self.proxy_conn()
        c.request("GET", self.origin_url("/chunked?n=50&size=1000"))
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.read()), 50_000)
        c.request("GET", self.origin_url("/after-chunked"))  # the connection is still in step
        self.assertEqual(json.loads(c.getresponse().read())["path"], "/after-chunked")

    def test_big_response_streamed(self):
        n = 16 * 1024 * 1024
        c = self.proxy_conn()
        c.request("GET", self.origin_url(f"/big?n={n}"))
        r = c.getresponse()
        h = hashlib.sha256()
        total = 0
        for _ in range(100_000):
            chunk = r.read(1 << 16)
            if not chunk:
                break
            h.update(chunk)
            total += len(chunk)
        self.assertEqual((total, h.hexdigest()), (n, harness.big_sha256(n)))

    def test_curl_post_expect_100_continue(self):
        path = os.path.join(harness.short_tempdir("egd-body-"), "body.bin")
        self.addCleanup(lambda: __import__("shutil").rmtree(os.path.dirname(path), ignore_errors=True))
        body = os.urandom(2 * 1024 * 1024)
        with open(path, "wb") as f:
            f.write(body)
        r = curl("--proxy", self.ep.http_url, "-H", "Expect: 100-continue", "--data-binary", f"@{path}",
                 self.origin_url("/expect"))
        self.assertEqual(r.returncode, 0, r.stderr)
        rec = json.loads(r.stdout)
        self.assertEqual((rec["body_len"], rec["body_sha256"]), (len(body), hashlib.sha256(body).hexdigest()))

    # --- websocket ----------------------------------------------------------------
    def ws_request(self, url: str) -> bytes:
        host = url.split("/")[2]
        return request_bytes("GET", url, [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                          ("Sec-WebSocket-Key", WS_KEY), ("Sec-WebSocket-Version", "13")])

    def test_websocket_upgrade(self):
        with self.ep.connect() as s:
            s.sendall(self.ws_request(self.origin_url("/ws")))
            head, rest = read_head(s)
            self.assertEqual(head.status, 101, head.describe())
            self.assertEqual((head.get("Upgrade") or "").lower(), "websocket")
            self.assertEqual(head.get("Sec-WebSocket-Accept"), WS_ACCEPT)
            frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # a masked "Hello" text frame
            s.sendall(frame)
            self.assertEqual(recv_exact(s, len(frame), buf=rest), frame)
            s.sendall(b"raw bytes after the upgrade")
            self.assertEqual(recv_exact(s, 27), b"raw bytes after the upgrade")

    def test_websocket_refused(self):
        with self.ep.connect() as s:
            s.sendall(self.ws_request(self.origin_url("/ws", host="denied.localhost")))
            r, _ = read_response(s)
        self.assert_blocked(r, "denied.localhost")

    # --- upstream failures --------------------------------------------------------
    def test_upstream_refused_502(self):
        with self.ep.connect() as s:
            r, _ = self.exchange(s, "GET", f"http://127.0.0.1:{self.o.refused.port}/")
        self.assertEqual(r.status, 502, r.describe())

    def test_upstream_connect_timeout_504(self):
        # A hanging connect on loopback needs the full-backlog trick; see harness.Blackhole.
        bh = self.o.blackhole
        if not bh.available:
            self.skipTest(f"cannot make a hanging connect on loopback here: {bh.why}")
        t0 = time.monotonic()
        with self.ep.connect(timeout=15) as s:
            s.sendall(request_bytes("GET", f"http://127.0.0.1:{bh.port}/", [("Host", f"127.0.0.1:{bh.port}")]))
            r, _ = read_response(s, timeout=15)
        self.assertEqual(r.status, 504, r.describe())
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, CONNECT_TIMEOUT_S + CONNECT_TIMEOUT_MARGIN_S)
        self.assertGreaterEqual(elapsed, CONNECT_TIMEOUT_S - 0.5, "504 before connect_timeout")


TRUNCATED_BODY = next(harness.big_chunks(1000))


def _truncating_origin(sock: socket.socket, server) -> None:
    """Reads one request head, promises 100000 bytes, sends 1000 and closes."""
    server.connections += 1
    data = bytearray()
    for _ in range(1000):
        if b"\r\n\r\n" in data:
            break
        chunk = sock.recv(65536)
        if not chunk:
            return
        data += chunk
    server.received.put(bytes(data))
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + TRUNCATED_BODY)


class HttpUpstreamClosesEarlyTest(EgressdTestCase):
    """An origin that closes in the middle of a body whose head is already forwarded:
    the client gets what came and then a closed connection, never a second response."""

    @classmethod
    def setUpClass(cls):
        cls.origin = TcpOrigin(_truncating_origin)
        cls.addClassCleanup(cls.origin.close)
        cls.d = cls.start_class_daemon(make_config(allow=[f"127.0.0.1:{cls.origin.port}"]))
        cls.ep = cls.d.endpoint(0)

    def test_truncated_body_then_close_without_502(self):
        d, port = self.d, self.origin.port
        mark = d.audit_mark()
        with self.ep.connect() as s:
            target = f"127.0.0.1:{port}"
            s.sendall(request_bytes("GET", f"http://{target}/truncated", [("Host", target)]))
            data, how = recv_until_closed(s, timeout=10)
        self.assertNotIn(b"HTTP/1.1 502", data, f"a 502 was appended to a response already under way: {data[:300]!r}")
        self.assertNotIn(b"502 Bad Gateway", data)
        head_end = data.find(b"\r\n\r\n")
        self.assertGreater(head_end, 0, f"no response head: {data[:300]!r}")
        head = harness.parse_head(data[:head_end])
        self.assertEqual(head.status, 200, head.describe())
        self.assertEqual(head.get("Content-Length"), "100000", head.describe())
        self.assertEqual(data[head_end + 4:], TRUNCATED_BODY, "the partial body did not come through as sent")
        self.assertIn(how, ("eof", "reset"))
        rec = d.wait_audit(start=mark, event="request", port=port)
        self.assertEqual((rec["protocol"], rec["decision"], rec["status"], rec.get("error_source")),
                         ("http", "allow", 200, "upstream"), rec)
        self.assertEqual(len(d.audit_records(mark, event="request", port=port)), 1)


# ---------------------------------------------------------------------------------
# Raw origins for the keep-alive, deadline, framing and retry cases (issue #8)

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _keep_alive_origin(sock: socket.socket, server) -> None:
    """Answers every request head with a 2-byte 200, keep-alive; reports EOF on `closed`."""
    server.connections += 1
    data = bytearray()
    for _ in range(1000):
        head = harness.read_request_head(sock, data)
        if head is None:
            break
        server.received.put(head)
        sock.sendall(OK_RESPONSE)
    server.closed.put(True)


def _close_after_response_origin(sock: socket.socket, server) -> None:
    """Answers one request, then closes without a byte more; reports the close."""
    server.connections += 1
    data = bytearray()
    head = harness.read_request_head(sock, data)
    if head is not None:
        server.received.put(head)
        sock.sendall(OK_RESPONSE)
    sock.close()
    server.closed.put(True)


def _early_answer_origin(sock: socket.socket, server) -> None:
    """Reads a request head, answers at once and never reads again: with `slow_chunks`
    the response is a chunked one that trickles on, else a complete 200."""
    server.connections += 1
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    if harness.read_request_head(sock, bytearray()) is None:
        return
    if not server.slow_chunks:
        # Answer once the proxy's writes to us are stuck: our receive queue is full when
        # it stops growing while the client keeps sending (at most 10 s of polling).
        last, stable = -1, 0
        for _ in range(200):
            queued = int.from_bytes(fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4), "little")
            stable = stable + 1 if queued == last and queued > 0 else 0
            last = queued
            if stable >= 4 or server.stop.wait(0.05):
                break
        sock.sendall(OK_RESPONSE)
    else:
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(200):  # at most 60 s
            if server.stop.wait(0.3):
                break
            try:
                sock.sendall(b"1\r\nx\r\n")
            except OSError:
                break
    server.stop.wait(30)


def _scripted_origin(sock: socket.socket, server) -> None:
    """Reads a request head, sends `server.script` and keeps the connection open until stopped."""
    server.connections += 1
    if harness.read_request_head(sock, bytearray()) is None:
        return
    sock.sendall(server.script)
    if not getattr(server, "close_after", False):
        server.stop.wait(30)


def raw_origin(handler, **attrs) -> TcpOrigin:
    return harness.scripted_origin(handler, closed=queue.Queue(), stop=threading.Event(), **attrs)


def get_bytes(target: str, path: str = "/", version: str = "HTTP/1.1", headers=()) -> bytes:
    return request_bytes("GET", f"http://{target}{path}", [("Host", target), *headers], version=version)


class HttpReloadKeepAliveTest(EgressdTestCase):
    """#8.4: a request on a kept-alive connection is decided by the policy current when
    its head arrived, the address rules of the pooled upstream included."""

    def setUp(self):
        self.origin = raw_origin(_keep_alive_origin)
        self.addCleanup(self.origin.close)

    def test_reload_deny_address_closes_pooled_upstream(self):
        port = self.origin.port
        allow = [f"localhost:{port}"]  # by name: localhost may reach loopback
        d = self.start_daemon(make_config(allow=allow))
        ep = d.endpoint(0)
        target = f"localhost:{port}"
        with ep.connect() as s:
            s.sendall(get_bytes(target, "/before"))
            r1, rest = read_response(s)
            self.assertEqual((r1.status, r1.body), (200, b"ok"), r1.describe())
            mark, amark = d.log_mark(), d.audit_mark()
            d.write_config(make_config(allow=allow, deny=["127.0.0.1/32"]))
            d.send_signal(signal.SIGHUP)
            d.wait_log("reloaded", start=mark)
            s.sendall(get_bytes(target, "/after"))
            r2, _ = read_response(s, buf=rest)
            self.assert_blocked(r2, "localhost", proxy_status_has=["destination_ip_prohibited"])
        self.assertTrue(self.origin.server.closed.get(timeout=5), "the origin did not see the pooled upstream close")
        self.assertEqual(self.origin.server.connections, 1, "the denied request reached the origin anew")
        heads = []
        while not self.origin.server.received.empty():
            heads.append(self.origin.server.received.get_nowait())
        self.assertEqual(len(heads), 1, f"the origin got a request after the reload: {heads}")
        rec = d.wait_audit(start=amark, event="request", port=port, status=403)
        self.assertEqual((rec["decision"], rec.get("refused_address")), ("deny", "127.0.0.1"), rec)

    def test_reload_config_applies_to_next_request(self):
        """The config (here: proxy auth) is re-read with the policy for each request."""
        port = self.origin.port
        allow = [f"localhost:{port}"]
        d = self.start_daemon(make_config(allow=allow))
        target = f"localhost:{port}"
        with d.endpoint(0).connect() as s:
            s.sendall(get_bytes(target, "/before"))
            r1, rest = read_response(s)
            self.assertEqual(r1.status, 200, r1.describe())
            mark = d.log_mark()
            d.write_config(make_config(allow=allow, users=[("alice", "pw")]))
            d.send_signal(signal.SIGHUP)
            d.wait_log("reloaded", start=mark)
            s.sendall(get_bytes(target, "/after"))
            r2, _ = read_response(s, buf=rest)
            self.assertEqual(r2.status, 407, r2.describe())


class HttpDeadlinesTest(EgressdTestCase):
    """#8.5: an origin that answers early and stops reading cannot pin a session."""

    IDLE_S = 1.0

    def run_pinned(self, slow_chunks: bool, drain: bool) -> None:
        origin = raw_origin(_early_answer_origin, slow_chunks=slow_chunks)
        self.addCleanup(origin.close)
        self.addCleanup(origin.server.stop.set)
        d = self.start_daemon(make_config(allow=[f"127.0.0.1:{origin.port}"],
                                          limits={"idle_timeout": f"{self.IDLE_S:g}s", "drain_timeout": "30s"}))
        target = f"127.0.0.1:{origin.port}"
        s = d.endpoint(0).connect(timeout=30)
        self.addCleanup(s.close)
        s.sendall(request_bytes("POST", f"http://{target}/upload",
                                [("Host", target), ("Content-Length", str(64 << 20))]))

        def pump():
            block = b"b" * 65536
            try:
                for _ in range(1024):
                    s.sendall(block)
            except OSError:
                pass
        t = threading.Thread(target=pump, daemon=True)
        t.start()
        head, rest = read_head(s, timeout=10)
        self.assertEqual(head.status, 200, head.describe())
        t0 = time.monotonic()
        if drain:
            d.send_signal(signal.SIGTERM)
            rc = d.wait_exit(20)
            self.assertEqual(rc, 0, f"egressd did not drain within 20 s (drain_timeout is 30 s)\n{d.log_tail()}")
            self.assertLess(time.monotonic() - t0, self.IDLE_S + 5)
            return
        _, how = harness.wait_closed(s, timeout=self.IDLE_S + 8)
        self.assertIn(how, ("eof", "reset"))
        self.assertLess(time.monotonic() - t0, self.IDLE_S + 8)

    def test_early_complete_answer_then_origin_stops_reading(self):
        self.run_pinned(slow_chunks=False, drain=False)

    def test_trickling_answer_and_origin_never_reads(self):
        self.run_pinned(slow_chunks=True, drain=False)

    def test_sigterm_drains_a_session_whose_origin_stops_reading(self):
        self.run_pinned(slow_chunks=True, drain=True)


class HttpFramingTest(EgressdTestCase):
    """#8.8: HTTP/1.1 framing as HTTP/1.0 clients see it, malformed chunk sizes, and
    ambiguous framing fields."""

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.scripted = raw_origin(_scripted_origin, script=b"")
        cls.addClassCleanup(cls.scripted.close)
        cls.addClassCleanup(cls.scripted.server.stop.set)
        # The scripted origin answers one request per connection and then holds it
        # open without reading: an upstream connection kept for a later client
        # connection (the idle pool) would wait there for an answer that never comes.
        cls.d = cls.start_class_daemon(make_config(allow=[f"127.0.0.1:{o.http.port}",
                                                          f"127.0.0.1:{cls.scripted.port}"],
                                                   limits={"upstream_idle_per_origin": 0}))
        cls.ep = cls.d.endpoint(0)

    def scripted_exchange(self, script: bytes, version: str = "HTTP/1.1") -> tuple[bytes, str, float]:
        self.scripted.server.script = script
        target = f"127.0.0.1:{self.scripted.port}"
        with self.ep.connect() as s:
            t0 = time.monotonic()
            s.sendall(get_bytes(target, "/scripted", version=version))
            data, how = recv_until_closed(s, timeout=10)
            return data, how, time.monotonic() - t0

    def test_http10_client_gets_chunked_response_dechunked(self):
        data, how, _ = self.scripted_exchange(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Origin: yes\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", version="HTTP/1.0")
        head_end = data.find(b"\r\n\r\n")
        self.assertGreater(head_end, 0, data[:300])
        head = harness.parse_head(data[:head_end])
        self.assertEqual(head.status, 200, head.describe())
        self.assertIsNone(head.get("Transfer-Encoding"), head.describe())
        self.assertEqual(head.get("X-Origin"), "yes")
        self.assertEqual((head.get("Connection") or "").lower(), "close")
        self.assertEqual(data[head_end + 4:], b"hello world", "the body is not the de-chunked body, close-delimited")

    def test_http10_client_chunked_from_real_origin(self):
        with self.ep.connect() as s:
            s.sendall(get_bytes(f"127.0.0.1:{self.o.http.port}", "/chunked?n=5&size=100", version="HTTP/1.0"))
            data, _ = recv_until_closed(s, timeout=10)
        head_end = data.find(b"\r\n\r\n")
        head = harness.parse_head(data[:head_end])
        self.assertIsNone(head.get("Transfer-Encoding"), head.describe())
        self.assertEqual(len(data) - head_end - 4, 500)

    def test_close_delimited_response_closes_keep_alive_client(self):
        """A body that ends with the origin's close ends with the client's close too: a
        keep-alive client has no other way to see where it ends."""
        self.scripted.server.close_after = True
        self.addCleanup(setattr, self.scripted.server, "close_after", False)
        data, how, elapsed = self.scripted_exchange(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:200])
        self.assertTrue(data.endswith(b"\r\n\r\nuntil close"), data[:200])
        self.assertLess(elapsed, 5, "the client connection was not closed at the end of a close-delimited body")

    def test_http10_client_gets_no_interim_response(self):
        data, _, _ = self.scripted_exchange(b"HTTP/1.1 100 Continue\r\n\r\n"
                                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", version="HTTP/1.0")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:200])

    def test_malformed_response_chunk_size_closes_at_once(self):
        for size in (b"+5", b"-5", b"zz", b"1" * 40):
            for bare_lf in (False, True):
                with self.subTest(size=size, bare_lf=bare_lf):
                    if bare_lf:
                        script = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n"
                    else:
                        script = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size +
                                  b"\r\nhello\r\n0\r\n\r\n")
                    data, how, elapsed = self.scripted_exchange(script)
                    self.assertLess(elapsed, 5, "not refused before the idle timeout")
                    self.assertNotIn(b"hello", data)
                    if data:
                        head = harness.parse_head(data[:data.find(b"\r\n\r\n")])
                        self.assertIn(head.status, (200, 502), head.describe())

    def test_malformed_response_framing_fields_502(self):
        for fields in (b"Content-Length: 2, 2\r\n", b"Content-Length: 2\r\nContent-Length: 2\r\n",
                       b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n",
                       b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n"):
            with self.subTest(fields=fields):
                data, _, elapsed = self.scripted_exchange(b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n2\r\nok\r\n0\r\n\r\n")
                self.assertTrue(data.startswith(b"HTTP/1.1 502"), data[:300])

    def test_malformed_request_chunk_size_400_at_once(self):
        target = f"127.0.0.1:{self.o.http.port}"
        for body in (b"+5\r\nhello\r\n0\r\n\r\n", b"-5\r\nhello\r\n0\r\n\r\n",
                     b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n", b"zz\r\nhello\r\n0\r\n\r\n",
                     b"5\nhello\n0\n\n", b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n"):
            with self.subTest(body=body):
                with self.ep.connect() as s:
                    t0 = time.monotonic()
                    s.sendall(request_bytes("POST", f"http://{target}/bad-chunk",
                                            [("Host", target), ("Transfer-Encoding", "chunked")]) + body)
                    data, how = recv_until_closed(s, timeout=10)
                self.assertLess(time.monotonic() - t0, 5, "not refused before the idle timeout")
                self.assertTrue(data.startswith(b"HTTP/1.1 400"), data[:300])

    def test_ambiguous_request_framing_refused_before_upstream(self):
        target = f"127.0.0.1:{self.o.http.port}"
        seen_before = len(self.o.http.seen)
        for fields in ((("Transfer-Encoding", "identity, chunked"),),
                       (("Transfer-Encoding", "gzip, chunked"),),
                       (("Content-Length", "4, 4"),),
                       (("Content-Length", "4"), ("Content-Length", "4")),
                       (("Content-Length", "4"), ("Transfer-Encoding", "chunked"))):
            with self.subTest(fields=fields):
                with self.ep.connect() as s:
                    s.sendall(request_bytes("POST", f"http://{target}/ambiguous", [("Host", target), *fields],
                                            b"4\r\nbody\r\n0\r\n\r\n"))
                    r, _ = read_response(s)
                self.assertEqual(r.status, 400, r.describe())
        self.assertFalse([x for x in self.o.http.seen[seen_before:] if x.get("path") == "/ambiguous"])


class HttpRetryTest(EgressdTestCase):
    """#8.9: a reused upstream the origin closed while idle is retried once on a fresh
    connection for a bodyless idempotent request, and never otherwise."""

    def setUp(self):
        self.origin = raw_origin(_close_after_response_origin)
        self.addCleanup(self.origin.close)
        self.d = self.start_daemon(make_config(allow=[f"127.0.0.1:{self.origin.port}"]))
        self.target = f"127.0.0.1:{self.origin.port}"

    def first_then_closed(self, s: socket.socket) -> bytes:
        s.sendall(get_bytes(self.target, "/first"))
        r1, rest = read_response(s)
        self.assertEqual((r1.status, r1.body), (200, b"ok"), r1.describe())
        self.assertTrue(self.origin.server.closed.get(timeout=5))  # the pooled upstream is dead now
        return rest

    def test_get_retried_on_fresh_connection(self):
        with self.d.endpoint(0).connect() as s:
            rest = self.first_then_closed(s)
            s.sendall(get_bytes(self.target, "/second"))
            r2, _ = read_response(s, buf=rest)
        self.assertEqual((r2.status, r2.body), (200, b"ok"), r2.describe())
        self.assertEqual(self.origin.server.connections, 2)

    def test_post_with_body_not_retried(self):
        with self.d.endpoint(0).connect() as s:
            rest = self.first_then_closed(s)
            s.sendall(request_bytes("POST", f"http://{self.target}/post",
                                    [("Host", self.target), ("Content-Length", "3")], b"abc"))
            r2, _ = read_response(s, buf=rest)
        self.assertEqual(r2.status, 502, r2.describe())
        self.assertEqual(self.origin.server.connections, 1, "a request with a body was retried")

    def test_fresh_connection_not_retried(self):
        reset = self.o.reset
        d = self.start_daemon(make_config(allow=[f"127.0.0.1:{reset.port}"]))
        before = reset.server.connections
        with d.endpoint(0).connect() as s:
            s.sendall(get_bytes(f"127.0.0.1:{reset.port}", "/"))
            r, _ = read_response(s)
        self.assertEqual(r.status, 502, r.describe())
        self.assertEqual(reset.server.connections - before, 1)


class HttpAuthTest(EgressdTestCase):
    USER, PASSWORD = "alice", "s3cret-Pa55"

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(
            allow=[f"127.0.0.1:{o.http.port}", f"127.0.0.1:{o.echo.port}", f"127.0.0.1:{o.tls.port}"],
            users=[(cls.USER, cls.PASSWORD), ("bob", "other")]))
        cls.ep = cls.d.endpoint(0)

    def assert_407(self, head: harness.Head) -> None:
        self.assertEqual(head.status, 407, head.describe())
        self.assertEqual(head.get("Proxy-Authenticate"), 'Basic realm="egressd"')

    def test_connect_without_credentials_407(self):
        sock, head, _ = open_connect(self.ep, self.o.echo.hostport)
        sock.close()
        self.assert_407(head)

    def test_connect_wrong_credentials_407(self):
        for user, pw in ((self.USER, "wrong"), ("mallory", self.PASSWORD), ("bob", self.PASSWORD)):
            with self.subTest(user=user):
                sock, head, _ = open_connect(self.ep, self.o.echo.hostport,
                                             headers=[("Proxy-Authorization", basic_auth(user, pw))])
                sock.close()
                self.assert_407(head)

    def test_connect_right_credentials(self):
        self.connect_echo_ok(self.ep, self.o.echo.hostport,
                             headers=[("Proxy-Authorization", basic_auth(self.USER, self.PASSWORD))])
        self.connect_echo_ok(self.ep, self.o.echo.hostport, headers=[("Proxy-Authorization", basic_auth("bob", "other"))])

    def test_get_credentials_not_forwarded(self):
        with self.ep.connect() as s:
            url = f"http://{self.o.http.hostport}/auth"
            s.sendall(request_bytes("GET", url, [("Host", self.o.http.hostport)]))
            r, rest = read_response(s)
            self.assert_407(r)
        with self.ep.connect() as s:
            s.sendall(request_bytes("GET", url, [("Host", self.o.http.hostport),
                                                 ("Proxy-Authorization", basic_auth(self.USER, self.PASSWORD))]))
            r, _ = read_response(s)
            self.assertEqual(r.status, 200, r.describe())
            self.assertNotIn("proxy-authorization", header_names(json.loads(r.body)))

    def test_curl_proxy_user(self):
        r = curl("--proxy", self.ep.http_url, "--proxy-user", f"{self.USER}:{self.PASSWORD}",
                 f"http://{self.o.http.hostport}/curl-auth")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["path"], "/curl-auth")
        r = curl("--proxy", self.ep.http_url, "--proxy-user", f"{self.USER}:{self.PASSWORD}", "-k",
                 self.o.tls.url("/curl-auth-tls"))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = curl("--proxy", self.ep.http_url, "-o", "/dev/null", "-w", "%{http_code}",
                 f"http://{self.o.http.hostport}/no-auth")
        self.assertEqual(r.stdout, b"407")

    def test_socks5_requires_auth_when_users_configured(self):
        with self.ep.connect() as s:
            s.sendall(socks5_greeting((0,)))
            self.assertEqual(recv_exact(s, 2), b"\x05\xff")

    def test_secrets_never_logged(self):
        sock, head, _ = open_connect(self.ep, self.o.echo.hostport,
                                     headers=[("Proxy-Authorization", basic_auth(self.USER, self.PASSWORD))])
        sock.close()
        sock, head, _ = open_connect(self.ep, self.o.echo.hostport,
                                     headers=[("Proxy-Authorization", basic_auth(self.USER, "wrong-Secret-42"))])
        sock.close()
        mark = self.d.audit_mark()
        sock, head, _ = open_connect(self.ep, f"127.0.0.1:{self.o.refused.port}",  # flushes the audit stream
                                     headers=[("Proxy-Authorization", basic_auth(self.USER, self.PASSWORD))])
        sock.close()
        self.d.wait_audit(start=mark, port=self.o.refused.port)
        secrets = (self.PASSWORD, "wrong-Secret-42", basic_auth(self.USER, self.PASSWORD).split()[1])
        for line in self.d.stderr.lines + self.d.stdout.lines:
            for secret in secrets:
                self.assertNotIn(secret, line)


if __name__ == "__main__":
    unittest.main()
