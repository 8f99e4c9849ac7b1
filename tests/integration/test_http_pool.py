"""Plain HTTP's idle upstream pool (README "Wire behaviour"): an upstream connection whose
exchange ended cleanly serves a later client connection of the same worker to the same
origin, never across reload generations or proxy users; bounded per origin, closed when
idle past limits.upstream_idle_timeout, when the origin closed it, and when a reload
denies its destination. Every daemon here has one worker, so that consecutive client
connections meet the same pool."""

import os
import queue
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (EgressdTestCase, TcpOrigin, basic_auth, make_config, read_response,  # noqa: E402
                     recv_until_closed, request_bytes)

EVENT_TIMEOUT_S = 5.0  # an origin event (a connection closed) must come within this


def setUpModule():
    harness.setup_module()


def tearDownModule():
    harness.close_origins()


def _counting_origin(sock: socket.socket, server) -> None:
    """Keep-alive HTTP/1.1: answers each request head with a 200 whose body names this
    connection (its number) and the request's number on it. `/silent-close` answers,
    then closes without saying so; on its second request a connection of
    `server.drop_second` closes without answering. Reports the connection's number on
    `server.closed` when it ends (EOF from the proxy, or its own close)."""
    with server.lock:
        server.connections += 1
        n = server.connections
    data = bytearray()
    try:
        for i in range(1, 1000):
            head = harness.read_request_head(sock, data)
            if head is None:
                break
            if i == 2 and getattr(server, "drop_second", False):
                server.dropped = n
                break
            body = f"conn={n} req={i}".encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            if b" /silent-close " in head:
                break
    except OSError:
        pass
    finally:
        server.closed.put(n)


def counting_origin(**attrs) -> TcpOrigin:
    return harness.scripted_origin(_counting_origin, closed=queue.Queue(), lock=threading.Lock(), **attrs)


def pool_config(port: int, **kw) -> dict:
    limits = {"upstream_idle_timeout": "30s", **kw.pop("limits", {})}
    return make_config(allow=[f"127.0.0.1:{port}", *kw.pop("allow", [])], limits=limits, workers=1,
                       reload={"watch": False}, **kw)


class HttpPoolTest(EgressdTestCase):
    def setUp(self):
        self.origin = counting_origin()
        self.addCleanup(self.origin.close)
        self.target = f"127.0.0.1:{self.origin.port}"

    def one_shot(self, ep: harness.Endpoint, path: str = "/", headers=()) -> harness.Head:
        """One request with `Connection: close` on a new client connection, read to the
        proxy's close (by then the session has let go of its upstream)."""
        with ep.connect() as s:
            s.sendall(request_bytes("GET", f"http://{self.target}{path}",
                                    [("Host", self.target), ("Connection", "close"), *headers]))
            r, rest = read_response(s)
            tail, how = recv_until_closed(s)
            self.assertEqual((rest + tail, how), (b"", "eof"), "the proxy did not close the client connection")
        return r

    def conn_of(self, r: harness.Head) -> int:
        self.assertEqual(r.status, 200, r.describe())
        return int(r.body.decode().split()[0].split("=")[1])

    def reload(self, d: harness.Egressd, cfg: dict) -> None:
        mark = d.log_mark()
        d.write_config(cfg)
        d.send_signal(signal.SIGHUP)
        d.wait_log("reloaded", start=mark)

    def expect_closed(self, *conns: int) -> None:
        """The origin sees exactly `conns` close next, in any order: each connection has
        its own thread at the origin, and which of them runs first is the scheduler's."""
        got = []
        for _ in conns:
            try:
                got.append(self.origin.server.closed.get(timeout=EVENT_TIMEOUT_S))
            except queue.Empty:
                self.fail(f"the origin saw {got} of upstream connections {conns} close")
        self.assertEqual(sorted(got), sorted(conns))

    # --- sharing ----------------------------------------------------------------------
    def test_sequential_clients_share_one_upstream(self):
        d = self.start_daemon(pool_config(self.origin.port))
        ep = d.endpoint(0)
        mark = d.audit_mark()
        conns = [self.conn_of(self.one_shot(ep, f"/n{i}")) for i in range(3)]
        self.assertEqual(conns, [1, 1, 1])
        self.assertEqual(self.origin.server.connections, 1)
        recs = [d.wait_audit(start=mark, event="request", path=f"/n{i}") for i in range(3)]
        self.assertNotIn("upstream_reused", recs[0])
        self.assertIn("connect_us", recs[0])
        for r in recs[1:]:
            self.assertIs(r.get("upstream_reused"), True, r)
            self.assertNotIn("connect_us", r, "a reused upstream was not connected for this request")
            self.assertEqual((r["decision"], r["status"]), ("allow", 200), r)

    def test_keep_alive_client_closing_hands_its_upstream_on(self):
        """A keep-alive client that just closes (as curl does at exit) leaves its upstream to the next."""
        d = self.start_daemon(pool_config(self.origin.port))
        ep = d.endpoint(0)
        mark = d.audit_mark()
        with ep.connect() as s:
            s.sendall(request_bytes("GET", f"http://{self.target}/ka1", [("Host", self.target)]))
            r1, rest = read_response(s)
            s.sendall(request_bytes("GET", f"http://{self.target}/ka2", [("Host", self.target)]))
            r2, rest = read_response(s, buf=rest)
            # The client is done: the session ends on its EOF (and closes its side).
            s.shutdown(socket.SHUT_WR)
            tail, how = recv_until_closed(s)
            self.assertEqual((rest + tail, how), (b"", "eof"))
        self.assertEqual((self.conn_of(r1), self.conn_of(r2)), (1, 1))
        rec = d.wait_audit(start=mark, event="request", path="/ka2")
        self.assertIs(rec.get("upstream_reused"), True, rec)  # a client connection's own reuse says so too
        self.assertEqual(self.conn_of(self.one_shot(ep, "/after")), 1)
        self.assertEqual(self.origin.server.connections, 1)

    def test_pool_off(self):
        d = self.start_daemon(pool_config(self.origin.port, limits={"upstream_idle_per_origin": 0}))
        ep = d.endpoint(0)
        self.assertEqual([self.conn_of(self.one_shot(ep)) for _ in range(2)], [1, 2])
        self.expect_closed(1, 2)  # neither kept

    def test_not_shared_across_users(self):
        users = [("alice", "a-secret"), ("bob", "b-secret")]
        d = self.start_daemon(pool_config(self.origin.port, users=users))
        ep = d.endpoint(0)
        auth = {u: [("Proxy-Authorization", basic_auth(u, p))] for u, p in users}
        self.assertEqual(self.conn_of(self.one_shot(ep, "/a1", auth["alice"])), 1)
        self.assertEqual(self.conn_of(self.one_shot(ep, "/b1", auth["bob"])), 2)
        self.assertEqual(self.conn_of(self.one_shot(ep, "/a2", auth["alice"])), 1)
        self.assertEqual(self.conn_of(self.one_shot(ep, "/b2", auth["bob"])), 2)
        self.assertEqual(self.origin.server.connections, 2)

    def test_not_shared_across_reloads(self):
        cfg = pool_config(self.origin.port)
        d = self.start_daemon(cfg)
        ep = d.endpoint(0)
        self.assertEqual(self.conn_of(self.one_shot(ep)), 1)
        # A reload that still allows the origin: a new generation, a new pool key. The
        # old connection can serve nobody now: closed at the next sweep.
        self.reload(d, pool_config(self.origin.port, allow=["example.com"]))
        self.assertEqual(self.conn_of(self.one_shot(ep)), 2)
        self.expect_closed(1)
        self.assertEqual(self.conn_of(self.one_shot(ep)), 2)

    def test_metrics_count_reuse_and_idle_connections(self):
        """egressd_upstream_reused_total counts requests that paid no connect, and
        egressd_upstream_idle_connections follows the pool: 1 while the connection
        waits, 0 once the idle timeout closed it."""
        from test_metrics import admin_request, parse_metrics, value  # noqa: PLC0415

        d = self.start_daemon(pool_config(self.origin.port, admin={"address": "127.0.0.1:0"},
                                          limits={"upstream_idle_timeout": "2s"}))
        admin = d.wait_log("admin listening")["address"]

        def sample(name: str) -> float | None:
            status, _, body = admin_request(admin, "GET", "/metrics")
            self.assertEqual(status, 200)
            return value(parse_metrics(body)[1], name)

        self.assertEqual((sample("egressd_upstream_reused_total"), sample("egressd_upstream_idle_connections")),
                         (0, 0))
        ep = d.endpoint(0)
        self.assertEqual([self.conn_of(self.one_shot(ep, f"/m{i}")) for i in range(3)], [1, 1, 1])
        self.assertEqual(sample("egressd_upstream_reused_total"), 2)
        self.assertEqual(sample("egressd_upstream_connect_seconds_count"), 1)
        self.assertEqual(sample("egressd_upstream_idle_connections"), 1)
        self.expect_closed(1)  # 2 s idle (+ the 250 ms sweep)
        # The gauge follows right after the close the origin saw: a short bounded wait.
        deadline = time.monotonic() + EVENT_TIMEOUT_S
        while sample("egressd_upstream_idle_connections") != 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(sample("egressd_upstream_idle_connections"), 0)

    # --- closing ----------------------------------------------------------------------
    def test_idle_timeout_closes(self):
        d = self.start_daemon(pool_config(self.origin.port, limits={"upstream_idle_timeout": "2s"}))
        ep = d.endpoint(0)
        self.assertEqual([self.conn_of(self.one_shot(ep)) for _ in range(2)], [1, 1])
        self.expect_closed(1)  # 2 s idle (+ the 250 ms sweep)
        self.assertEqual(self.conn_of(self.one_shot(ep)), 2)

    def test_origin_closing_an_idle_connection(self):
        d = self.start_daemon(pool_config(self.origin.port))
        ep = d.endpoint(0)
        mark = d.audit_mark()
        self.assertEqual(self.conn_of(self.one_shot(ep, "/silent-close")), 1)
        self.expect_closed(1)  # the origin closed it without a word, while it was idle in the pool
        r = self.one_shot(ep, "/next")
        self.assertEqual(self.conn_of(r), 2)
        rec = d.wait_audit(start=mark, event="request", path="/next")
        self.assertEqual(rec["status"], 200, rec)

    def test_stale_pooled_connection_is_retried(self):
        """The origin drops a pooled connection as the request arrives: one retry on a fresh
        connection (a bodyless idempotent request), and the client sees a 200."""
        self.origin.server.drop_second = True
        d = self.start_daemon(pool_config(self.origin.port))
        ep = d.endpoint(0)
        mark = d.audit_mark()
        self.assertEqual(self.conn_of(self.one_shot(ep, "/first")), 1)
        r = self.one_shot(ep, "/second")
        self.assertEqual(self.conn_of(r), 2)
        self.expect_closed(1)
        self.assertEqual(getattr(self.origin.server, "dropped", None), 1, "the pooled connection was not tried first")
        rec = d.wait_audit(start=mark, event="request", path="/second")
        self.assertEqual(rec["status"], 200, rec)
        self.assertNotIn("upstream_reused", rec, "the response came over the fresh connection")

    def test_reload_denying_the_destination_closes_it(self):
        d = self.start_daemon(pool_config(self.origin.port))
        ep = d.endpoint(0)
        self.assertEqual(self.conn_of(self.one_shot(ep)), 1)
        mark = d.log_mark()
        self.reload(d, make_config(allow=["example.com"], deny=[self.target], workers=1, reload={"watch": False}))
        line = d.wait_log("pooled upstream connection closed: revoked", start=mark)
        self.assertEqual((line.get("host"), line.get("port"), line.get("idle_pool")),
                         ("127.0.0.1", self.origin.port, True), line)
        self.expect_closed(1)
        r = self.one_shot(ep)
        self.assert_blocked(r, "127.0.0.1")
        self.assertEqual(self.origin.server.connections, 1)

    def test_bounded_per_origin(self):
        d = self.start_daemon(pool_config(self.origin.port, limits={"upstream_idle_per_origin": 2}))
        ep = d.endpoint(0)
        mark = d.audit_mark()
        # Three client connections at once, each with its own upstream.
        clients = [ep.connect() for _ in range(3)]
        try:
            for i, s in enumerate(clients):
                s.sendall(request_bytes("GET", f"http://{self.target}/c{i}", [("Host", self.target)]))
            self.assertEqual(sorted(self.conn_of(read_response(s)[0]) for s in clients), [1, 2, 3])
        finally:
            for s in clients:
                s.close()
        # All three go to the pool; it keeps two: the one parked first is closed.
        first = self.origin.server.closed.get(timeout=EVENT_TIMEOUT_S)
        self.assertIn(first, (1, 2, 3))
        # Three clients at once again: two get the pooled ones, the third a new connection.
        clients = [ep.connect() for _ in range(3)]
        try:
            for i, s in enumerate(clients):
                s.sendall(request_bytes("GET", f"http://{self.target}/d{i}", [("Host", self.target)]))
            got = sorted(self.conn_of(read_response(s)[0]) for s in clients)
        finally:
            for s in clients:
                s.close()
        self.assertEqual(got, sorted([c for c in (1, 2, 3) if c != first] + [4]))
        recs = [d.wait_audit(start=mark, event="request", path=f"/d{i}") for i in range(3)]
        self.assertEqual(sum(1 for r in recs if r.get("upstream_reused")), 2, recs)


if __name__ == "__main__":
    unittest.main()
