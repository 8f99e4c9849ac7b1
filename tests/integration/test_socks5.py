"""SOCKS5 (RFC 1928/1929, README "Wire behaviour"): IPv4, domain and IPv6 targets, reply codes,
curl socks5/socks5h, OpenBSD `nc -X 5` (git over ssh), username/password, and protocol
sniffing on every listener (HTTP CONNECT to the "SOCKS" port, SOCKS5 to the "HTTP" port)."""

import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (CONNECT_TIMEOUT_MARGIN_S, CONNECT_TIMEOUT_S, SEND_FIRST_GREETING, EgressdTestCase,  # noqa: E402
                     curl, make_config, open_connect, recv_exact, recv_until_closed, run_tool, socks5_greeting,
                     socks5_open, socks5_read_reply, socks5_request, socks5_userpass, wait_closed)

SUCCEEDED, NOT_ALLOWED, NET_UNREACHABLE, HOST_UNREACHABLE, REFUSED, TTL_EXPIRED, CMD_UNSUPPORTED, ATYP_UNSUPPORTED = \
    0x00, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08


def setUpModule():
    harness.setup_module("curl", "nc", "openssl")


def tearDownModule():
    harness.close_origins()


class Socks5Test(EgressdTestCase):
    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        allow = [f"127.0.0.1:{o.echo.port}", f"localhost:{o.echo.port}", f"localhost:{o.http.port}",
                 f"127.0.0.1:{o.http.port}", f"localhost:{o.tls.port}", f"127.0.0.1:{o.refused.port}",
                 f"127.0.0.1:{o.blackhole.port}", f"127.0.0.1:{o.sendfirst.port}"]
        if o.echo6 is not None:
            allow.append(f"[::1]:{o.echo6.port}")
        cls.d = cls.start_class_daemon(make_config(allow=allow, deny=["denied.localhost"]))
        cls.ep = cls.d.endpoint(0)
        cls.proxy = f"{cls.ep.host}:{cls.ep.port}"

    def open(self, host: str, port: int, **kw):
        sock, reply = socks5_open(self.ep, host, port, **kw)
        self.addCleanup(sock.close)
        return sock, reply

    # --- allowed ------------------------------------------------------------------
    def test_ipv4_target_and_audit(self):
        d, o = self.d, self.o
        mark = d.audit_mark()
        sock, reply = self.open("127.0.0.1", o.echo.port)
        self.assertEqual(reply.rep, SUCCEEDED, reply)
        self.assert_echo(sock)
        sock.close()
        rec = d.wait_audit(start=mark, event="request", port=o.echo.port)
        self.assertEqual((rec["host"], rec["protocol"], rec["decision"], rec["reason"]),
                         ("127.0.0.1", "socks5", "allow", "allowed_by_rule"))
        d.wait_audit(start=mark, event="tunnel_closed", port=o.echo.port, protocol="socks5")

    def test_domain_target(self):
        sock, reply = self.open("localhost", self.o.echo.port)
        self.assertEqual(reply.rep, SUCCEEDED, reply)
        self.assert_echo(sock)

    def test_ipv6_target(self):
        self.o.require_ipv6()
        sock, reply = self.open("::1", self.o.echo6.port)
        self.assertEqual(reply.rep, SUCCEEDED, reply)
        self.assert_echo(sock)

    def test_greeting_and_request_in_one_write(self):
        sock, reply = self.open("127.0.0.1", self.o.echo.port, pipelined=True)
        self.assertEqual(reply.rep, SUCCEEDED, reply)
        self.assert_echo(sock)

    def test_half_close_from_client(self):
        sock, reply = self.open("127.0.0.1", self.o.echo.port)
        self.assertEqual(reply.rep, SUCCEEDED)
        sock.sendall(b"xyz")
        self.assertEqual(recv_exact(sock, 3), b"xyz")
        sock.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_closed(sock), (b"bye\n", "eof"))

    def test_half_close_from_server(self):
        o = self.o
        sock, reply = self.open("127.0.0.1", o.sendfirst.port)
        self.assertEqual(reply.rep, SUCCEEDED)
        self.assertEqual(recv_until_closed(sock), (SEND_FIRST_GREETING, "eof"))
        sock.sendall(b"late socks bytes")
        sock.shutdown(socket.SHUT_WR)
        self.assertEqual(o.sendfirst.received.get(timeout=10), b"late socks bytes")
        wait_closed(sock, 10)

    def test_curl_socks5h(self):
        r = curl("--proxy", f"socks5h://{self.proxy}", f"http://localhost:{self.o.http.port}/socks5h")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["path"], "/socks5h")

    def test_curl_socks5_client_resolves(self):
        r = curl("--proxy", f"socks5://{self.proxy}", f"http://127.0.0.1:{self.o.http.port}/socks5")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["path"], "/socks5")

    def test_curl_socks5h_https(self):
        o = self.o
        r = curl("--proxy", f"socks5h://{self.proxy}", "--cacert", o.cert, o.tls.url("/socks-tls", host="localhost"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["path"], "/socks-tls")

    def test_nc_socks5_domain_name(self):
        """git over ssh: `nc -X 5 -x proxy %h %p` (no auth, domain name)."""
        mark = self.d.audit_mark()
        r = run_tool(["nc", "-N", "-w", "10", "-X", "5", "-x", self.proxy, "localhost", str(self.o.echo.port)],
                     input=b"hello\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"hello\nbye\n")
        rec = self.d.wait_audit(start=mark, event="request", host="localhost", port=self.o.echo.port)
        self.assertEqual((rec["protocol"], rec["decision"]), ("socks5", "allow"))

    # --- refused and failed -------------------------------------------------------
    def test_unknown_destination_not_allowed(self):
        d = self.d
        mark = d.audit_mark()
        sock, reply = self.open("127.0.0.1", self.o.tls.port)
        self.assertEqual(reply.rep, NOT_ALLOWED, reply)
        wait_closed(sock, 5)
        rec = d.wait_audit(start=mark, event="request", port=self.o.tls.port)
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"]), ("socks5", "deny", "unknown_denied"))

    def test_deny_rule_not_allowed(self):
        mark = self.d.audit_mark()
        sock, reply = self.open("denied.localhost", 22)
        self.assertEqual(reply.rep, NOT_ALLOWED, reply)
        rec = self.d.wait_audit(start=mark, event="request", host="denied.localhost")
        self.assertEqual((rec["decision"], rec["reason"]), ("deny", "denied_by_rule"))

    def test_curl_socks5h_denied(self):
        r = curl("--proxy", f"socks5h://{self.proxy}", "http://denied.localhost/")
        self.assertEqual(r.returncode, 97, r.stderr)  # CURLE_PROXY
        self.assertIn(b"(2)", r.stderr)               # the SOCKS5 reply code curl saw

    def test_nc_socks5_denied(self):
        r = run_tool(["nc", "-N", "-w", "10", "-X", "5", "-x", self.proxy, "denied.localhost", "22"], input=b"x\n")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"not allowed by ruleset", r.stderr)

    def test_refused_05(self):
        sock, reply = self.open("127.0.0.1", self.o.refused.port)
        self.assertEqual(reply.rep, REFUSED, reply)

    def test_timeout_06(self):
        # A hanging connect on loopback needs the full-backlog trick; see harness.Blackhole.
        bh = self.o.blackhole
        if not bh.available:
            self.skipTest(f"cannot make a hanging connect on loopback here: {bh.why}")
        t0 = time.monotonic()
        sock, reply = self.open("127.0.0.1", bh.port, timeout=15)
        self.assertEqual(reply.rep, TTL_EXPIRED, reply)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, CONNECT_TIMEOUT_S + CONNECT_TIMEOUT_MARGIN_S)
        self.assertGreaterEqual(elapsed, CONNECT_TIMEOUT_S - 0.5, "06 before connect_timeout")

    def test_bind_and_udp_associate_07(self):
        for cmd in (2, 3):
            with self.subTest(cmd=cmd):
                sock, reply = self.open("127.0.0.1", self.o.echo.port, cmd=cmd)
                self.assertEqual(reply.rep, CMD_UNSUPPORTED, reply)

    def test_bad_address_type_08(self):
        with self.ep.connect() as s:
            s.sendall(socks5_greeting((0,)))
            self.assertEqual(recv_exact(s, 2), b"\x05\x00")
            s.sendall(b"\x05\x01\x00\x09" + b"\x7f\x00\x00\x01\x00\x16")
            reply = socks5_read_reply(s)
            self.assertEqual(reply.rep, ATYP_UNSUPPORTED, reply)

    def test_daemon_serves_after_errors(self):
        sock, reply = self.open("127.0.0.1", self.o.echo.port)
        self.assertEqual(reply.rep, SUCCEEDED)
        self.assert_echo(sock)


class SniffingTest(EgressdTestCase):
    """Two listeners, nominally "HTTP" (first) and "SOCKS" (second); both serve both."""

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(
            listeners=["127.0.0.1:0", "127.0.0.1:0"],
            allow=[f"127.0.0.1:{o.echo.port}", f"localhost:{o.echo.port}", f"127.0.0.1:{o.http.port}",
                   f"localhost:{o.http.port}"]))
        cls.http_ep, cls.socks_ep = cls.d.endpoint(0), cls.d.endpoint(1)

    def test_two_listeners(self):
        self.assertNotEqual(self.http_ep.port, self.socks_ep.port)

    def test_http_connect_to_socks_listener(self):
        """rsync sends HTTP CONNECT to the SOCKS port."""
        self.connect_echo_ok(self.socks_ep, self.o.echo.hostport)

    def test_socks5_to_http_listener(self):
        sock, reply = socks5_open(self.http_ep, "localhost", self.o.echo.port)
        with sock:
            self.assertEqual(reply.rep, SUCCEEDED)
            self.assert_echo(sock)

    def test_clients_on_either_listener(self):
        url = f"http://localhost:{self.o.http.port}/sniff"
        for ep in (self.http_ep, self.socks_ep):
            for proxy in (f"http://{ep.host}:{ep.port}", f"socks5h://{ep.host}:{ep.port}"):
                with self.subTest(proxy=proxy):
                    r = curl("--proxy", proxy, url)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual(json.loads(r.stdout)["path"], "/sniff")
            for proto in ("connect", "5"):
                with self.subTest(ep=ep, nc=proto):
                    r = run_tool(["nc", "-N", "-w", "10", "-X", proto, "-x", f"{ep.host}:{ep.port}",
                                  "localhost", str(self.o.echo.port)], input=b"sniffed\n")
                    self.assertEqual((r.returncode, r.stdout), (0, b"sniffed\nbye\n"), r.stderr)

    def test_plain_get_to_socks_listener(self):
        with self.socks_ep.connect() as s:
            url = f"http://{self.o.http.hostport}/get-on-socks"
            s.sendall(harness.request_bytes("GET", url, [("Host", self.o.http.hostport)]))
            r, _ = harness.read_response(s)
            self.assertEqual(json.loads(r.body)["path"], "/get-on-socks")


class Socks5AuthTest(EgressdTestCase):
    USER, PASSWORD = "alice", "s3cret-Pa55"

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(
            allow=[f"127.0.0.1:{o.echo.port}", f"localhost:{o.http.port}"],
            users=[(cls.USER, cls.PASSWORD)]))
        cls.ep = cls.d.endpoint(0)
        cls.proxy = f"{cls.ep.host}:{cls.ep.port}"

    def test_no_auth_only_is_rejected(self):
        with self.ep.connect() as s:
            s.sendall(socks5_greeting((0,)))
            self.assertEqual(recv_exact(s, 2), b"\x05\xff")
            wait_closed(s, 5)

    def test_username_password_right(self):
        with self.ep.connect() as s:
            s.sendall(socks5_greeting((0, 2)))
            self.assertEqual(recv_exact(s, 2), b"\x05\x02")
            s.sendall(socks5_userpass(self.USER, self.PASSWORD))
            self.assertEqual(recv_exact(s, 2), b"\x01\x00")
            s.sendall(socks5_request("127.0.0.1", self.o.echo.port))
            self.assertEqual(socks5_read_reply(s).rep, SUCCEEDED)
            self.assert_echo(s)

    def test_username_password_wrong(self):
        for user, pw in ((self.USER, "wrong"), ("mallory", self.PASSWORD), (self.USER, self.PASSWORD + "x")):
            with self.subTest(user=user, pw=pw), self.ep.connect() as s:
                s.sendall(socks5_greeting((2,)))
                self.assertEqual(recv_exact(s, 2), b"\x05\x02")
                s.sendall(socks5_userpass(user, pw))
                status = recv_exact(s, 2)
                self.assertEqual(status[0], 1)
                self.assertNotEqual(status[1], 0)
                wait_closed(s, 5)

    def test_curl_with_credentials(self):
        url = f"http://localhost:{self.o.http.port}/socks-auth"
        r = curl("--proxy", f"socks5h://{self.USER}:{self.PASSWORD}@{self.proxy}", url)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["path"], "/socks-auth")
        r = curl("--proxy", f"socks5h://{self.USER}:nope@{self.proxy}", url)
        self.assertNotEqual(r.returncode, 0)

    def test_http_connect_needs_credentials_too(self):
        sock, head, _ = open_connect(self.ep, self.o.echo.hostport)
        sock.close()
        self.assertEqual(head.status, 407, head.describe())


if __name__ == "__main__":
    unittest.main()
