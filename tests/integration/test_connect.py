"""HTTP CONNECT tunnels (README "Using it with Claude Code and sandbox-runtime", "Wire behaviour"): curl, Python http.client and
requests-style raw CONNECT, socat (git over ssh), OpenBSD nc; pipelined bytes; half-close
from each side; refusals with their headers; 502/504; IPv6 and unix-socket listeners."""

import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (CONNECT_TIMEOUT_MARGIN_S, CONNECT_TIMEOUT_S, SEND_FIRST_GREETING, Deadline,  # noqa: E402
                     EgressdTestCase, curl, make_config, open_connect, read_response, recv_exact, recv_until_closed,
                     request_bytes, run_tool, socks5_open, wait_closed)


def setUpModule():
    harness.setup_module("curl", "socat", "nc", "openssl")


def tearDownModule():
    harness.close_origins()


class ConnectTest(EgressdTestCase):
    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.allow = [f"127.0.0.1:{o.echo.port}", f"127.0.0.1:{o.tls.port}", f"127.0.0.1:{o.sendfirst.port}",
                     f"127.0.0.1:{o.refused.port}", f"127.0.0.1:{o.blackhole.port}",
                     f"localhost:{o.tls.port}", f"localhost:{o.echo.port}"]
        cls.d = cls.start_class_daemon(make_config(allow=cls.allow, deny=["denied.localhost"]))
        cls.ep = cls.d.endpoint(0)
        cls.proxy_url = cls.ep.http_url

    # --- allowed ------------------------------------------------------------------
    def test_raw_connect_status_line_echo_and_audit(self):
        o, d = self.o, self.d
        mark = d.audit_mark()
        sock, head, rest = open_connect(self.ep, o.echo.hostport)
        # The class's daemon is shared: an earlier test's request may be recorded after the
        # mark, so this test's records are found by its client address.
        client = "127.0.0.1:%d" % sock.getsockname()[1]
        with sock:
            self.assertEqual(head.status_line, "HTTP/1.1 200 Connection Established")
            self.assert_echo(sock, rest)
        rec = d.wait_audit(start=mark, event="request", port=o.echo.port, client=client)
        self.assertEqual((rec["host"], rec["protocol"], rec["decision"], rec["reason"], rec["rule"]),
                         ("127.0.0.1", "connect", "allow", "allowed_by_rule", f"127.0.0.1:{o.echo.port}"))
        self.assertEqual(rec["upstream"], f"127.0.0.1:{o.echo.port}")
        closed = d.wait_audit(start=mark, event="tunnel_closed", connection=rec["connection"])
        self.assertEqual((closed["protocol"], closed["port"]), ("connect", o.echo.port))
        # One request record per decision: none repeated when the tunnel closes.
        requests = d.audit_records(mark, event="request", port=o.echo.port, client=client)
        self.assertEqual(len(requests), 1, requests)

    def test_requests_style_http10_without_host_then_tls(self):
        """Python requests: `CONNECT host:443 HTTP/1.0` and no Host header."""
        o = self.o
        sock, head, rest = open_connect(self.ep, f"localhost:{o.tls.port}", version="HTTP/1.0", host_header=None)
        with sock:
            self.assertEqual(head.status, 200, head.describe())
            self.assertIn(head.version, ("HTTP/1.0", "HTTP/1.1"))
            self.assertEqual(head.reason, "Connection Established")
            self.assertEqual(rest, b"")
            sock.settimeout(10)
            with o.client_tls().wrap_socket(sock, server_hostname="localhost") as tls:
                tls.sendall(request_bytes("GET", "/requests", [("Host", f"localhost:{o.tls.port}"),
                                                                ("Connection", "close")]))
                resp, _ = read_response(tls)
                self.assertEqual(resp.status, 200)
                self.assertEqual(json.loads(resp.body)["path"], "/requests")

    def test_java_style_host_without_port(self):
        self.connect_echo_ok(self.ep, self.o.echo.hostport, host_header="127.0.0.1")

    def test_connect_by_name_localhost(self):
        self.connect_echo_ok(self.ep, f"localhost:{self.o.echo.port}")

    def test_pipelined_bytes_after_head_go_upstream_first(self):
        payload = b"SSH-2.0-client sent with the CONNECT head\r\n"
        sock, head, rest = open_connect(self.ep, self.o.echo.hostport, payload=payload)
        with sock:
            self.assertEqual(head.status, 200, head.describe())
            self.assertEqual(recv_exact(sock, len(payload), buf=rest), payload)
            self.assert_echo(sock)

    def test_head_split_across_writes(self):
        """nc -X connect writes the request line and the final CRLF separately."""
        sock = self.ep.connect()
        with sock:
            sock.sendall(f"CONNECT {self.o.echo.hostport} HTTP/1.0\r\n".encode())
            self.assertFalse(harness.is_closed_now(sock, 0.2))
            sock.sendall(b"\r\n")
            head, rest = harness.read_head(sock)
            self.assertEqual(head.status, 200, head.describe())
            self.assert_echo(sock, rest)

    def test_curl_https_with_cacert(self):
        o = self.o
        r = curl("--proxy", self.proxy_url, "--cacert", o.cert, o.tls.url("/curl-cacert", host="localhost"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["path"], "/curl-cacert")

    def test_curl_https_insecure_ip(self):
        r = curl("--proxy", self.proxy_url, "-k", self.o.tls.url("/curl-k"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["path"], "/curl-k")

    def test_curl_https_big_download(self):
        n = 5_000_000
        r = curl("--proxy", self.proxy_url, "-k", "-o", "-", self.o.tls.url(f"/big?n={n}"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(hashlib.sha256(r.stdout).hexdigest(), harness.big_sha256(n))

    def test_http_client_set_tunnel(self):
        o = self.o
        conn = http.client.HTTPSConnection(self.ep.host, self.ep.port, context=o.client_tls(), timeout=10)
        self.addCleanup(conn.close)
        conn.set_tunnel("localhost", o.tls.port)
        conn.request("GET", "/set-tunnel")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.read())["path"], "/set-tunnel")
        conn.request("GET", "/set-tunnel-2")  # keep-alive inside the tunnel
        self.assertEqual(json.loads(conn.getresponse().read())["request_no"], 2)

    def test_socat_git_ssh_style(self):
        """git over ssh: `ProxyCommand socat - PROXY:localhost:%h:%p,proxyport=P`."""
        r = run_tool(["socat", "-t", "5", "-", f"PROXY:{self.ep.host}:127.0.0.1:{self.o.echo.port},"
                                               f"proxyport={self.ep.port}"], input=b"hello\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"hello\nbye\n")

    def test_nc_connect(self):
        r = run_tool(["nc", "-N", "-w", "10", "-X", "connect", "-x", f"{self.ep.host}:{self.ep.port}",
                      "127.0.0.1", str(self.o.echo.port)], input=b"hello\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"hello\nbye\n")

    def test_many_concurrent_tunnels(self):
        errors: list[str] = []
        socks = []
        try:
            for _ in range(50):
                sock, head, rest = open_connect(self.ep, self.o.echo.hostport)
                socks.append(sock)
                self.assertEqual(head.status, 200, head.describe())
                self.assertEqual(rest, b"")

            def use(i: int, s: socket.socket) -> None:
                try:
                    data = (b"%04d" % i) * 1000
                    if harness.roundtrip(s, data) != data:
                        errors.append(f"tunnel {i}: wrong echo")
                except Exception as e:  # noqa: BLE001 (collected, asserted below)
                    errors.append(f"tunnel {i}: {e!r}")

            threads = [threading.Thread(target=use, args=(i, s)) for i, s in enumerate(socks)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            self.assertFalse(any(t.is_alive() for t in threads), "a tunnel hung")
            self.assertEqual(errors, [])
        finally:
            for s in socks:
                s.close()

    def test_bulk_transfer_both_ways(self):
        n = 8 * 1024 * 1024
        sock, head, rest = open_connect(self.ep, self.o.echo.hostport)
        with sock:
            self.assertEqual(head.status, 200)
            sender_error: list[BaseException] = []

            def send() -> None:
                try:
                    for chunk in harness.big_chunks(n):
                        sock.sendall(chunk)
                    sock.shutdown(socket.SHUT_WR)
                except BaseException as e:  # noqa: BLE001
                    sender_error.append(e)

            t = threading.Thread(target=send)
            t.start()
            data, how = recv_until_closed(sock, timeout=60)
            t.join(timeout=30)
            self.assertEqual(sender_error, [])
            self.assertEqual(how, "eof")
            self.assertEqual(data[-4:], b"bye\n")
            self.assertEqual(len(data), n + 4)
            self.assertEqual(hashlib.sha256(data[:-4]).hexdigest(), harness.big_sha256(n))

    # --- half-close ---------------------------------------------------------------
    def test_half_close_from_client(self):
        """Client shuts down its write side: the echo sees EOF, answers "bye", closes."""
        d, o = self.d, self.o
        mark = d.audit_mark()
        sock, head, rest = open_connect(self.ep, o.echo.hostport)
        with sock:
            self.assertEqual(head.status, 200)
            sock.sendall(b"abc")
            self.assertEqual(recv_exact(sock, 3, buf=rest), b"abc")
            sock.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_closed(sock), (b"bye\n", "eof"))
        rec = d.wait_audit(start=mark, event="tunnel_closed", port=o.echo.port)
        self.assertEqual((int(rec["bytes_up"]), int(rec["bytes_down"])), (3, 7))

    def test_half_close_from_server(self):
        """The origin speaks, half-closes; the client still sends afterwards."""
        o = self.o
        sock, head, rest = open_connect(self.ep, o.sendfirst.hostport)
        with sock:
            self.assertEqual(head.status, 200)
            data, how = recv_until_closed(sock)
            self.assertEqual((rest + data, how), (SEND_FIRST_GREETING, "eof"))
            sock.sendall(b"sent after the server's FIN")
            sock.shutdown(socket.SHUT_WR)
            self.assertEqual(o.sendfirst.received.get(timeout=10), b"sent after the server's FIN")
            wait_closed(sock, 10)

    # --- refused ------------------------------------------------------------------
    def test_unknown_destination_refused(self):
        d, o = self.d, self.o
        mark = d.audit_mark()
        sock, head, _ = open_connect(self.ep, o.http.hostport)
        sock.close()
        self.assertEqual(head.version, "HTTP/1.1")
        self.assert_blocked(head, "127.0.0.1")
        rec = d.wait_audit(start=mark, event="request", port=o.http.port)
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"]), ("connect", "deny", "unknown_denied"))

    def test_deny_rule_refused(self):
        d = self.d
        mark = d.audit_mark()
        sock, head, _ = open_connect(self.ep, "denied.localhost:443")
        sock.close()
        self.assert_blocked(head, "denied.localhost")
        rec = d.wait_audit(start=mark, event="request", host="denied.localhost")
        self.assertEqual((rec["decision"], rec["reason"], rec["rule"]), ("deny", "denied_by_rule", "denied.localhost"))

    def test_curl_connect_refused(self):
        r = curl("--proxy", self.proxy_url, "-k", "-o", "/dev/null", "-w", "%{http_connect}",
                 self.o.tls.url("/", host="denied.localhost"))
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stdout, b"403")

    def test_http_client_set_tunnel_refused(self):
        conn = http.client.HTTPSConnection(self.ep.host, self.ep.port, context=self.o.client_tls(), timeout=10)
        self.addCleanup(conn.close)
        conn.set_tunnel("denied.localhost", 443)
        with self.assertRaises(OSError) as cm:
            conn.request("GET", "/")
        self.assertIn("403", str(cm.exception))

    def test_socat_refused(self):
        mark = self.d.audit_mark()
        r = run_tool(["socat", "-t", "5", "-", f"PROXY:{self.ep.host}:denied.localhost:22,"
                                               f"proxyport={self.ep.port}"], input=b"hello\n")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stdout, b"")
        self.d.wait_audit(start=mark, host="denied.localhost", port=22, decision="deny")

    def test_nc_connect_refused(self):
        r = run_tool(["nc", "-N", "-w", "10", "-X", "connect", "-x", f"{self.ep.host}:{self.ep.port}",
                      "denied.localhost", "22"], input=b"hello\n")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"403", r.stderr)

    def test_upstream_refused_502(self):
        sock, head, _ = open_connect(self.ep, self.o.refused.hostport)
        sock.close()
        self.assertEqual(head.status, 502, head.describe())

    def test_upstream_connect_timeout_504(self):
        # Needs a connect that hangs; on loopback only the full-backlog trick gives one.
        bh = self.o.blackhole
        if not bh.available:
            self.skipTest(f"cannot make a hanging connect on loopback here: {bh.why}")
        t0 = time.monotonic()
        sock, head, _ = open_connect(self.ep, f"127.0.0.1:{bh.port}", timeout=15)
        sock.close()
        self.assertEqual(head.status, 504, head.describe())
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, CONNECT_TIMEOUT_S + CONNECT_TIMEOUT_MARGIN_S,
                        f"504 long after connect_timeout ({CONNECT_TIMEOUT_S:g}s)")
        self.assertGreaterEqual(elapsed, CONNECT_TIMEOUT_S - 0.5, "504 before connect_timeout")


class Ipv6ListenerTest(EgressdTestCase):
    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        o.require_ipv6()
        cls.d = cls.start_class_daemon(make_config(listeners=["[::1]:0"],
                                                   allow=[f"[::1]:{o.echo6.port}", f"[::1]:{o.http6.port}"]))
        cls.ep = cls.d.endpoint(0)

    def test_listener_address(self):
        self.assertEqual((self.ep.kind, self.ep.host), ("ipv6", "::1"))
        self.assertNotEqual(self.ep.port, 0)

    def test_connect_ipv6_literal(self):
        self.connect_echo_ok(self.ep, self.o.echo6.hostport)

    def test_curl_http_ipv6(self):
        r = curl("-g", "--proxy", f"http://[::1]:{self.ep.port}", self.o.http6.url("/v6"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["path"], "/v6")

    def test_ipv6_refused(self):
        sock, head, _ = open_connect(self.ep, f"[::1]:{self.o.echo.port}")
        sock.close()
        self.assert_blocked(head, "::1")

    def test_audit_upstream_of_ipv6_origin_is_bracketed(self):
        d, port = self.d, self.o.echo6.port
        mark = d.audit_mark()
        self.connect_echo_ok(self.ep, f"[::1]:{port}")
        rec = d.wait_audit(start=mark, event="request", port=port)
        self.assertEqual((rec["decision"], rec["reason"]), ("allow", "allowed_by_rule"), rec)
        self.assertEqual(rec["upstream"], f"[::1]:{port}", rec)


class WildcardRulesTest(EgressdTestCase):
    """Wildcard allow and deny entries decide on the proxy path. Names resolve through
    the hosts file: wild.localhost, app.wild.localhost and x.denied.localhost are
    127.0.0.1 (`*.localhost` names may stay on loopback). A wildcard over the top-level
    `localhost` itself (`*.localhost`) is a configuration error, as in sandbox-runtime."""

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.allow_rule = f"*.wild.localhost:{o.echo.port}"
        cls.d = cls.start_class_daemon(make_config(allow=[cls.allow_rule, f"**.denied.localhost:{o.echo.port}"],
                                                   deny=["*.denied.localhost"]))
        cls.ep = cls.d.endpoint(0)

    def test_wildcard_allow(self):
        d, o = self.d, self.o
        mark = d.audit_mark()
        self.connect_echo_ok(self.ep, f"app.wild.localhost:{o.echo.port}")
        rec = d.wait_audit(start=mark, event="request", host="app.wild.localhost")
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"], rec["rule"]),
                         ("connect", "allow", "allowed_by_rule", self.allow_rule), rec)
        self.assertEqual(rec["upstream"], f"127.0.0.1:{o.echo.port}")

    def test_wildcard_allow_socks5(self):
        sock, reply = socks5_open(self.ep, "app.wild.localhost", self.o.echo.port)
        with sock:
            self.assertEqual(reply.rep, 0, reply)
            self.assert_echo(sock)

    def test_wildcard_is_not_the_apex_nor_another_port(self):
        d, o = self.d, self.o
        for target, host in ((f"wild.localhost:{o.echo.port}", "wild.localhost"),
                             (f"app.wild.localhost:{o.http.port}", "app.wild.localhost")):
            with self.subTest(target=target):
                mark = d.audit_mark()
                sock, head, _ = open_connect(self.ep, target)
                sock.close()
                self.assert_blocked(head, host)
                rec = d.wait_audit(start=mark, event="request", host=host)
                self.assertEqual((rec["decision"], rec["reason"]), ("deny", "unknown_denied"), rec)

    def test_wildcard_deny_wins_over_allow(self):
        d, o = self.d, self.o
        mark = d.audit_mark()
        before = o.echo.server.connections
        sock, head, _ = open_connect(self.ep, f"x.denied.localhost:{o.echo.port}")
        sock.close()
        self.assert_blocked(head, "x.denied.localhost", proxy_status_has=["http_request_denied"])
        rec = d.wait_audit(start=mark, event="request", host="x.denied.localhost")
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"], rec["rule"]),
                         ("connect", "deny", "denied_by_rule", "*.denied.localhost"), rec)
        self.assertEqual(o.echo.server.connections, before, "a denied destination was dialled")


class UnixListenerTest(EgressdTestCase):
    """curl --unix-socket does not proxy: raw AF_UNIX clients speak CONNECT and SOCKS5."""

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        sockdir = harness.short_tempdir("egd-unix-")
        cls.addClassCleanup(shutil.rmtree, sockdir, True)
        cls.path = os.path.join(sockdir, "proxy.sock")
        cls.d = cls.start_class_daemon(make_config(listeners=[f"unix:{cls.path}"],
                                                   allow=[f"127.0.0.1:{o.echo.port}", f"localhost:{o.echo.port}"]))
        cls.ep = cls.d.endpoint(0)

    def test_listener_address(self):
        self.assertEqual(self.ep, harness.Endpoint("unix", self.path))

    def test_connect_over_unix_socket(self):
        self.connect_echo_ok(self.ep, self.o.echo.hostport)

    def test_socks5_over_unix_socket(self):
        sock, reply = socks5_open(self.ep, "localhost", self.o.echo.port)
        with sock:
            self.assertEqual(reply.rep, 0)
            self.assert_echo(sock)

    def test_refused_over_unix_socket(self):
        sock, head, _ = open_connect(self.ep, self.o.http.hostport)
        sock.close()
        self.assert_blocked(head, "127.0.0.1")


if __name__ == "__main__":
    unittest.main()
