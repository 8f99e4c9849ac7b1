"""Hostile and broken clients (README "Wire behaviour"): slow-loris heads closed at
head_timeout while other clients are served, oversized heads (431), malformed requests
(400), random garbage, resets from either side, and the idle timeout of tunnels. After
each, the daemon is still alive and serving."""

import os
import random
import shutil
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (HEAD_TIMEOUT_S, IO_TIMEOUT, Deadline, EgressdTestCase, HarnessError,  # noqa: E402
                     is_closed_now, make_config, open_connect, read_response, recv_until_closed, request_bytes,
                     rst_close, socks5_greeting, tunnel_opens, wait_closed, wait_until)

MARGIN = 3.0  # seconds allowed beyond a configured timeout


def setUpModule():
    harness.setup_module("openssl")


def tearDownModule():
    harness.close_origins()


class RobustnessTest(EgressdTestCase):
    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(
            allow=[f"127.0.0.1:{o.echo.port}", f"127.0.0.1:{o.http.port}", f"127.0.0.1:{o.reset.port}",
                   f"localhost:{o.echo.port}"]))
        cls.ep = cls.d.endpoint(0)

    def assert_still_serving(self) -> None:
        self.assertTrue(self.d.alive(), f"egressd died\n{self.d.log_tail()}")
        self.connect_echo_ok(self.ep, self.o.echo.hostport)

    # --- head timeout -------------------------------------------------------------
    def test_slowloris_closed_within_head_timeout_others_unaffected(self):
        target = self.o.echo.hostport
        trickle = (f"CONNECT {target} HTTP/1.1\r\n" + "X-Slow: loris\r\n" * 40).encode()  # never a blank line
        slow = [self.ep.connect() for _ in range(20)]
        for s in slow:
            self.addCleanup(s.close)
        closed_at: dict[int, float] = {}
        served: list[float] = []
        t0 = time.monotonic()
        deadline = Deadline(HEAD_TIMEOUT_S + MARGIN)
        pace = threading.Event()  # never set: its wait() paces the trickle
        for step in range(1000):
            if len(closed_at) == len(slow) or deadline.expired():
                break
            for i, s in enumerate(slow):
                if i in closed_at:
                    continue
                try:
                    s.sendall(trickle[step:step + 1])
                except OSError:
                    closed_at[i] = time.monotonic() - t0
                    continue
                if is_closed_now(s):
                    closed_at[i] = time.monotonic() - t0
            if step == 2:  # meanwhile a normal client is served at once
                t1 = time.monotonic()
                self.connect_echo_ok(self.ep, target)
                served.append(time.monotonic() - t1)
            pace.wait(0.25)
        self.assertEqual(len(closed_at), len(slow),
                         f"{len(slow) - len(closed_at)} slow heads still open after {HEAD_TIMEOUT_S + MARGIN}s")
        self.assertLessEqual(max(closed_at.values()), HEAD_TIMEOUT_S + MARGIN)
        self.assertGreaterEqual(min(closed_at.values()), HEAD_TIMEOUT_S - 0.5, "a slow head closed before head_timeout")
        self.assertEqual(len(served), 1)
        self.assertLess(served[0], HEAD_TIMEOUT_S, "a normal client waited behind the slow ones")
        self.assert_still_serving()

    def test_silent_connection_closed_within_head_timeout(self):
        with self.ep.connect() as s:
            t0 = time.monotonic()
            wait_closed(s, HEAD_TIMEOUT_S + MARGIN)  # MARGIN covers the 250 ms deadline sweep
            elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, HEAD_TIMEOUT_S - 0.5,
                                f"closed {elapsed:.2f}s after connecting; head_timeout is {HEAD_TIMEOUT_S:g}s")

    def test_stalled_socks5_handshake_closed(self):
        for prefix in (b"\x05", socks5_greeting((0,)) + b"\x05\x01\x00"):
            with self.subTest(prefix=prefix), self.ep.connect() as s:
                s.sendall(prefix)
                wait_closed(s, HEAD_TIMEOUT_S + MARGIN)
        self.assert_still_serving()

    # --- sizes and syntax ---------------------------------------------------------
    def test_oversized_heads_431(self):
        pad = ("X-Pad", "a" * 5000)  # max_head_bytes: 4096
        target = self.o.echo.hostport
        heads = {
            "connect": request_bytes("CONNECT", target, [("Host", target), pad]),
            "absolute-form": request_bytes("GET", f"http://{self.o.http.hostport}/",
                                           [("Host", self.o.http.hostport), pad]),
            "many headers": request_bytes("CONNECT", target, [("Host", target)] +
                                          [(f"X-H{i}", "v" * 40) for i in range(120)]),
        }
        for what, data in heads.items():
            with self.subTest(what), self.ep.connect() as s:
                s.sendall(data)
                r, _ = read_response(s)
                self.assertEqual(r.status, 431, r.describe())
        self.assert_still_serving()

    def test_head_in_single_bytes_is_served(self):
        """A head that arrives a byte per segment is still read to its end."""
        target = self.o.echo.hostport
        with self.ep.connect() as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for b in request_bytes("CONNECT", target, [("Host", target)]):
                s.send(bytes([b]))
            head, rest = harness.read_head(s, IO_TIMEOUT)
            self.assertEqual(head.status, 200, head.describe())
            self.assert_echo(s, rest)

    def test_overlong_line_refused_without_its_end(self):
        """A request line longer than any allowed, with no line end yet, is refused at
        once (431), not after head_timeout."""
        with self.ep.connect() as s:
            t0 = time.monotonic()
            s.sendall(b"GET http://" + b"a" * 5000)  # max_head_bytes: 4096
            r, _ = read_response(s)
            self.assertEqual(r.status, 431, r.describe())
            self.assertLess(time.monotonic() - t0, HEAD_TIMEOUT_S / 2)

    def test_malformed_requests_400(self):
        echo, web = self.o.echo.hostport.encode(), self.o.http.hostport.encode()
        cases = {
            "not http": b"HELLO WORLD\r\n\r\n",
            "no version": b"CONNECT " + echo + b"\r\n\r\n",
            "connect without port": b"CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            "connect port out of range": b"CONNECT 127.0.0.1:99999 HTTP/1.1\r\nHost: 127.0.0.1:99999\r\n\r\n",
            "connect empty authority": b"CONNECT :443 HTTP/1.1\r\n\r\n",
            "header without colon": b"GET http://" + web + b"/ HTTP/1.1\r\nHost: " + web + b"\r\nNoColon\r\n\r\n",
            "space before colon": b"GET http://" + web + b"/ HTTP/1.1\r\nHost : " + web + b"\r\n\r\n",
            "CL and TE": (b"POST http://" + web + b"/ HTTP/1.1\r\nHost: " + web +
                          b"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            "two content lengths": (b"POST http://" + web + b"/ HTTP/1.1\r\nHost: " + web +
                                    b"\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
            "nul in request line": b"GET http://" + web + b"/\x00 HTTP/1.1\r\nHost: " + web + b"\r\n\r\n",
        }
        for what, data in cases.items():
            with self.subTest(what), self.ep.connect() as s:
                s.sendall(data)
                r, _ = read_response(s)
                self.assertEqual(r.status, 400, r.describe())
        self.assert_still_serving()

    def test_random_garbage_never_crashes(self):
        rng = random.Random(20240501)  # fixed: a failure is reproducible
        prefixes = [b"", b"\x05", b"\x05\x01\x00", b"\x05\x02\x00\x02", b"\x05\x01\x00\x05\x01\x00",
                    b"CONNECT ", b"GET http://", b"GET ", b"POST http://127.0.0.1/ HTTP/1.1\r\n",
                    b"\x04\x01\x00\x16", b"\x16\x03\x01\x02\x00\x01", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]
        cases = []
        for _ in range(240):
            data = rng.choice(prefixes) + rng.randbytes(rng.randrange(0, 3000))
            if rng.random() < 0.3:
                data += b"\r\n\r\n"
            cases.append(data)
        failures: list[str] = []

        def one(i: int, data: bytes) -> None:
            try:
                s = self.ep.connect()
            except OSError as e:
                failures.append(f"case {i}: connect failed: {e!r}")
                return
            with s:
                try:
                    s.sendall(data)
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    return  # closed on us while we wrote: fine
                try:
                    recv_until_closed(s, HEAD_TIMEOUT_S + MARGIN)
                except HarnessError as e:
                    failures.append(f"case {i}: not closed: {e}")

        for batch in range(0, len(cases), 24):
            threads = [threading.Thread(target=one, args=(i, cases[i])) for i in range(batch, min(batch + 24, len(cases)))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=HEAD_TIMEOUT_S + MARGIN + 10)
            self.assertFalse(any(t.is_alive() for t in threads))
            self.assertTrue(self.d.alive(), f"egressd died in batch {batch // 24}\n{self.d.log_tail()}")
        self.assertEqual(failures, [])
        self.assert_still_serving()

    # --- resets -------------------------------------------------------------------
    def test_client_reset_mid_head(self):
        for _ in range(20):
            s = self.ep.connect()
            s.sendall(b"CONNECT " + self.o.echo.hostport.encode())
            rst_close(s)
        self.assert_still_serving()

    def test_client_reset_mid_tunnel(self):
        d, o = self.d, self.o
        mark = d.audit_mark()
        for _ in range(10):
            sock, head, rest = open_connect(self.ep, o.echo.hostport)
            self.assertEqual(head.status, 200)
            sock.sendall(b"x" * 100000)
            rst_close(sock)
        d.wait_audits(10, start=mark, event="tunnel_closed", port=o.echo.port)
        self.assert_still_serving()

    def test_upstream_reset(self):
        sock, head, rest = open_connect(self.ep, self.o.reset.hostport)
        with sock:
            self.assertIn(head.status, (200, 502), head.describe())
            if head.status == 200:
                wait_closed(sock, 10)
        self.assert_still_serving()

    def test_client_closes_during_upstream_connect(self):
        for _ in range(10):
            s = self.ep.connect()
            s.sendall(f"CONNECT {self.o.echo.hostport} HTTP/1.1\r\n\r\n".encode())
            s.close()
        self.assert_still_serving()


class IdleTimeoutTest(EgressdTestCase):
    IDLE = 3.0

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(allow=[f"127.0.0.1:{o.echo.port}"],
                                                   limits={"idle_timeout": "3s"}))
        cls.ep = cls.d.endpoint(0)

    def test_idle_tunnel_closed(self):
        mark = self.d.audit_mark()
        sock, head, rest = open_connect(self.ep, self.o.echo.hostport)
        with sock:
            self.assertEqual(head.status, 200)
            self.assert_echo(sock, rest)
            t0 = time.monotonic()
            wait_closed(sock, self.IDLE + MARGIN)
            self.assertGreaterEqual(time.monotonic() - t0, self.IDLE * 0.5, "closed long before idle_timeout")
        self.d.wait_audit(start=mark, event="tunnel_closed", port=self.o.echo.port)

    def test_active_tunnel_kept(self):
        sock, head, rest = open_connect(self.ep, self.o.echo.hostport)
        with sock:
            self.assertEqual(head.status, 200)
            self.assert_echo(sock, rest)
            t0 = time.monotonic()
            for _ in range(20):  # traffic every second for twice the idle timeout
                if time.monotonic() - t0 > 2 * self.IDLE:
                    break
                self.assertFalse(is_closed_now(sock, 1.0), "an active tunnel was closed")
                self.assert_echo(sock)


class ConnectionLimitTest(EgressdTestCase):
    """limits.max_connections: connections beyond it are closed at once and logged;
    those already open keep working, and a freed slot is usable again."""

    def test_connections_beyond_the_limit_are_closed(self):
        o = self.o
        # A unix socket in a directory of its own: only this test can connect to it. On a
        # loopback port the limit was once reached with two of this test's connections
        # open and no record of a third: a client of a test running in parallel, with a
        # stale port number, had taken the slot.
        sockdir = harness.short_tempdir("egd-limit-")
        self.addCleanup(shutil.rmtree, sockdir, True)
        d = self.start_daemon(make_config(listeners=[f"unix:{os.path.join(sockdir, 'proxy.sock')}"],
                                          allow=[f"127.0.0.1:{o.echo.port}"], limits={"max_connections": 3}))
        ep = d.endpoint(0)
        held = []
        for _ in range(3):
            sock, head, rest = open_connect(ep, o.echo.hostport)
            self.addCleanup(sock.close)
            self.assertEqual(head.status, 200, head.describe())
            held.append((sock, rest))
        mark = d.log_mark()
        extra = ep.connect()
        self.addCleanup(extra.close)
        data, how = wait_closed(extra, 5.0)
        self.assertEqual(data, b"", "a connection over the limit must be closed without an answer")
        d.wait_log("connection limit reached", start=mark)
        for sock, rest in held:  # the open tunnels are untouched
            self.assert_echo(sock, rest)
        held[0][0].close()
        wait_until(lambda: tunnel_opens(ep, o.echo.hostport, timeout=IO_TIMEOUT), 5.0, "a freed slot to be usable")


class DescriptorExhaustionTest(EgressdTestCase):
    """Under a small descriptor limit, max_connections is lowered at start-up so that the
    connections fit: clients beyond it are closed at once instead of waiting in the
    backlog while accept() fails with EMFILE, and the daemon serves again after."""

    def test_descriptor_limit_refuses_at_once_and_recovers(self):
        if os.environ.get("EGRESSD_SANITIZED") == "1":
            # The sanitizer runtime needs descriptors of its own (to read /proc/self/maps
            # for its checks) and reports false errors when none are left.
            self.skipTest("descriptor exhaustion starves the sanitizer runtime itself")
        o = self.o
        d = self.start_daemon(make_config(allow=[f"127.0.0.1:{o.echo.port}"]), fd_limit=128)
        lowered = d.wait_log("max_connections lowered to fit the descriptor limit")
        self.assertLess(lowered["max_connections"], 64, lowered)
        ep = d.endpoint(0)
        mark = d.log_mark()
        clients = []
        for _ in range(160):  # more than the daemon has descriptors
            clients.append(ep.connect())
            self.addCleanup(clients[-1].close)
        d.wait_log("connection limit reached", start=mark, timeout=5.0)
        for c in clients:  # beyond the limit at once; the others at head_timeout
            wait_closed(c, HEAD_TIMEOUT_S + MARGIN)
        self.assertEqual(d.stderr.find_all(lambda r: r.get("msg") == "accept failed", start=mark), [],
                         d.log_tail())
        self.assertTrue(d.alive(), d.log_tail())
        wait_until(lambda: tunnel_opens(ep, o.echo.hostport, timeout=IO_TIMEOUT), 10.0, "egressd to serve again")


if __name__ == "__main__":
    unittest.main()
