"""Plain HTTP through the proxy (DESIGN.md §2.4): absolute-form rewritten to origin-form,
hop-by-hop and Proxy-* headers dropped, keep-alive on both sides, every request on a
connection decided on its own, bodies of both framings streamed both ways, WebSocket
upgrades, refusals, 502/504, and proxy authentication (407)."""

import hashlib
import http.client
import json
import os
import socket
import sys
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
            self.assertEqual(b["request_no"], 2)

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
