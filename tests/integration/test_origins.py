"""Self-test of the harness: every origin hit directly (no proxy), the external tools
present, and the daemon plumbing (ready line, listener addresses, audit records, signals)
driven against a stand-in script. Runs without the egressd binary."""

import http.client
import json
import os
import queue
import signal
import socket
import stat
import sys
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (Egressd, HarnessError, big_sha256, make_config, parse_endpoint, read_head,  # noqa: E402
                     read_response, recv_exact, recv_until_closed, request_bytes, to_yaml)


def setUpModule():
    harness.setup_module("curl", "socat", "nc", "openssl", need_binary=False)


def tearDownModule():
    harness.close_origins()


class ToolsTest(unittest.TestCase):
    # That the tools are present is setUpModule's check (harness.setup_module).
    def test_missing_tool_fails_loudly(self):
        with self.assertRaises(HarnessError) as cm:
            harness.require_tool("no-such-tool-egressd-test")
        self.assertIn("apt-get install", str(cm.exception))


class HttpOriginTest(unittest.TestCase):
    def setUp(self):
        self.origin = harness.origins().http
        self.conn = http.client.HTTPConnection(self.origin.host, self.origin.port, timeout=10)
        self.addCleanup(self.conn.close)

    def get_json(self, method="GET", path="/", body=None, headers=None, chunked=False):
        self.conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        r = self.conn.getresponse()
        data = r.read()
        self.assertEqual(r.status, 200, data)
        return json.loads(data)

    def test_echo_and_keep_alive(self):
        a = self.get_json(path="/a?x=1", headers={"X-Test": "1"})
        b = self.get_json(path="/b")
        self.assertEqual(a["path"], "/a?x=1")
        self.assertIn(["X-Test", "1"], a["headers"])
        self.assertEqual((a["request_no"], b["request_no"]), (1, 2))
        self.assertEqual(a["client_port"], b["client_port"])

    def test_content_length_body(self):
        r = self.get_json("POST", "/p", body=b"hello world")
        self.assertEqual((r["body"], r["framing"]), ("hello world", "content-length"))

    def test_chunked_body(self):
        r = self.get_json("POST", "/p", body=iter([b"hello ", b"chunked"]),
                          headers={"Transfer-Encoding": "chunked"}, chunked=True)
        self.assertEqual((r["body"], r["framing"]), ("hello chunked", "chunked"))

    def test_chunked_response(self):
        self.conn.request("GET", "/chunked?n=4&size=1000")
        r = self.conn.getresponse()
        self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
        self.assertEqual(len(r.read()), 4000)

    def test_big(self):
        self.conn.request("GET", "/big?n=300000")
        r = self.conn.getresponse()
        import hashlib
        self.assertEqual(hashlib.sha256(r.read()).hexdigest(), big_sha256(300000))

    def test_status_and_head(self):
        self.conn.request("GET", "/status/418")
        r = self.conn.getresponse()
        self.assertEqual((r.status, r.read()), (418, b"status 418\n"))
        self.conn.request("HEAD", "/x")
        r = self.conn.getresponse()
        self.assertEqual((r.status, r.read()), (200, b""))
        self.assertEqual(self.get_json(path="/after-head")["request_no"], 3)

    def test_websocket_raw_echo(self):
        with socket.create_connection((self.origin.host, self.origin.port), timeout=10) as s:
            s.sendall(request_bytes("GET", "/ws", [("Host", self.origin.hostport), ("Upgrade", "websocket"),
                                                   ("Connection", "Upgrade"),
                                                   ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                                   ("Sec-WebSocket-Version", "13")]) + b"early")
            head, rest = read_head(s)
            self.assertEqual(head.status, 101)
            self.assertEqual(head.get("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            self.assertEqual(recv_exact(s, 5, buf=rest), b"early")
            s.sendall(b"\x81\x02hi")
            self.assertEqual(recv_exact(s, 4), b"\x81\x02hi")

    def test_ipv6(self):
        harness.origins().require_ipv6()
        o = harness.origins().http6
        c = http.client.HTTPConnection(o.host, o.port, timeout=10)
        self.addCleanup(c.close)
        c.request("GET", "/v6")
        self.assertEqual(json.loads(c.getresponse().read())["path"], "/v6")


class TlsOriginTest(unittest.TestCase):
    def test_http_client(self):
        o = harness.origins()
        c = http.client.HTTPSConnection("localhost", o.tls.port, context=o.client_tls(), timeout=10)
        self.addCleanup(c.close)
        c.request("GET", "/tls")
        self.assertEqual(json.loads(c.getresponse().read())["path"], "/tls")

    def test_curl_cacert(self):
        o = harness.origins()
        r = harness.curl("--cacert", o.cert, o.tls.url("/curl", host="localhost"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["path"], "/curl")
        r = harness.curl("--cacert", o.cert, o.tls.url("/ip"))
        self.assertEqual(r.returncode, 0, r.stderr)


class TcpOriginsTest(unittest.TestCase):
    def test_echo_half_close(self):
        o = harness.origins().echo
        with socket.create_connection((o.host, o.port), timeout=10) as s:
            s.sendall(b"abc")
            self.assertEqual(recv_exact(s, 3), b"abc")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(recv_until_closed(s), (b"bye\n", "eof"))
        self.assertEqual(o.received.get(timeout=5), b"3")

    def test_echo6(self):
        harness.origins().require_ipv6()
        o = harness.origins().echo6
        with socket.create_connection((o.host, o.port), timeout=10) as s:
            s.sendall(b"v6")
            self.assertEqual(recv_exact(s, 2), b"v6")

    def test_send_first_half_close(self):
        o = harness.origins().sendfirst
        with socket.create_connection((o.host, o.port), timeout=10) as s:
            self.assertEqual(recv_until_closed(s), (harness.SEND_FIRST_GREETING, "eof"))
            s.sendall(b"late data")
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(o.received.get(timeout=5), b"late data")

    def test_reset(self):
        o = harness.origins().reset
        try:
            s = socket.create_connection((o.host, o.port), timeout=10)
        except ConnectionResetError:
            return  # the RST can arrive before a non-blocking connect is reported done
        with s:
            data, how = recv_until_closed(s)
            self.assertEqual(data, b"")
            self.assertEqual(how, "reset", "the reset origin closed with a FIN instead of a RST")

    def test_refused(self):
        o = harness.origins().refused
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((o.host, o.port), timeout=5).close()

    def test_blackhole(self):
        b = harness.origins().blackhole
        if not b.available:
            self.skipTest(f"no blackhole on this kernel ({b.why}); connect-timeout tests will skip")
        s = socket.socket()
        s.settimeout(0.5)
        with s, self.assertRaises((socket.timeout, TimeoutError)):
            s.connect((b.host, b.port))


class HelpersTest(unittest.TestCase):
    def test_yaml(self):
        cfg = make_config(listeners=["127.0.0.1:0", "unix:/tmp/x.sock"], allow=["a.com", "127.0.0.1:80"],
                          users=[("u", "p")], guard={"allow_private": False})
        text = to_yaml(cfg)
        self.assertIn('listeners:\n  - {"address": "127.0.0.1:0"}\n  - {"address": "unix:/tmp/x.sock"}\n', text)
        self.assertIn('  allow: ["a.com", "127.0.0.1:80"]\n', text)
        self.assertIn("    allow_private: false\n", text)
        self.assertIn('  head_timeout: "2s"\n', text)
        self.assertIn('  users:\n    - {"username": "u", "password": "p"}\n', text)

    def test_parse_endpoint(self):
        self.assertEqual(parse_endpoint("127.0.0.1:41234"), harness.Endpoint("ipv4", "127.0.0.1", 41234))
        self.assertEqual(parse_endpoint("[::1]:5"), harness.Endpoint("ipv6", "::1", 5))
        self.assertEqual(parse_endpoint("unix:/tmp/a.sock"), harness.Endpoint("unix", "/tmp/a.sock"))
        with self.assertRaises(HarnessError):
            parse_endpoint("nonsense")

    def test_read_response_chunked_after_100(self):
        a, b = socket.socketpair()
        with a, b:
            a.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"3\r\nabc\r\n0\r\n\r\nNEXT")
            head, rest = read_response(b)
            self.assertEqual((head.status, head.body, rest), (200, b"abc", b"NEXT"))


# A stand-in for egressd that honours the logging contract the harness relies on: it binds
# the configured listeners, logs "listening" and "ready" on stderr, writes an access
# record on stdout per accepted connection, "reloaded" on SIGHUP, exits 0 on SIGTERM.
# With "emit-garbage" in its config it also writes a line that is not JSON on stdout.
FAKE_DAEMON = textwrap.dedent(r'''
    #!PYTHON
    import json, os, re, selectors, signal, socket, sys
    cfg = sys.argv[sys.argv.index("--config") + 1]
    text = open(cfg).read()
    def log(**kw):
        sys.stderr.write(json.dumps(kw) + "\n"); sys.stderr.flush()
    if "bogus" in text:
        log(msg="config error"); sys.exit(2)
    socks = []
    for written in re.findall(r'"address": "(.*?)"', text):
        if written.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX); s.bind(written[5:]); actual = written
        elif written.startswith("["):
            s = socket.socket(socket.AF_INET6); h, _, p = written[1:].partition("]:"); s.bind((h, int(p)))
            actual = "[%s]:%d" % s.getsockname()[:2]
        else:
            s = socket.socket(); h, _, p = written.rpartition(":"); s.bind((h, int(p)))
            actual = "%s:%d" % s.getsockname()
        s.listen(16); socks.append(s)
        log(msg="listening", listener=written, address=actual)
    rd, wr = os.pipe(); os.set_blocking(wr, False)
    signal.set_wakeup_fd(wr)
    signal.signal(signal.SIGHUP, lambda *a: None); signal.signal(signal.SIGTERM, lambda *a: None)
    sel = selectors.DefaultSelector()
    for s in socks: sel.register(s, selectors.EVENT_READ)
    sel.register(rd, selectors.EVENT_READ)
    log(msg="ready")
    for _ in range(10000):
        for key, _ in sel.select(timeout=30):
            if key.fileobj == rd:
                sig = os.read(rd, 1)[0]
                if sig == signal.SIGHUP: log(msg="reloaded")
                if sig == signal.SIGTERM: sys.exit(0)
            else:
                c, _ = key.fileobj.accept(); c.close()
                print(json.dumps({"event": "request", "host": "h", "port": 1, "protocol": "connect",
                                  "decision": "allow", "reason": "allowed_by_rule", "rule": "h"}), flush=True)
                if "emit-garbage" in text: print("request h:1 allow", flush=True)
''').replace("#!PYTHON", "#!" + sys.executable, 1).lstrip()


class DaemonPlumbingTest(harness.EgressdTestCase):
    def setUp(self):
        d = harness.short_tempdir("egd-fake-")
        self.addCleanup(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
        path = os.path.join(d, "fake-egressd")
        with open(path, "w") as f:
            f.write(FAKE_DAEMON)
        os.chmod(path, stat.S_IRWXU)
        old = os.environ.get("EGRESSD_BIN")
        os.environ["EGRESSD_BIN"] = path
        self.addCleanup(lambda: os.environ.__setitem__("EGRESSD_BIN", old) if old is not None
                        else os.environ.pop("EGRESSD_BIN", None))
        self.sockdir = d

    def test_ready_listeners_audit_signals(self):
        unix = os.path.join(self.sockdir, "p.sock")
        listeners = ["127.0.0.1:0", "127.0.0.1:0", f"unix:{unix}"]
        if not harness.origins().ipv6_error:
            listeners.append("[::1]:0")
        d = self.start_daemon(make_config(listeners=listeners))
        self.assertEqual(len(d.listeners), len(listeners))
        self.assertNotEqual(d.listeners[0].port, d.listeners[1].port)
        self.assertEqual(d.listeners[2], harness.Endpoint("unix", unix))
        for ep in d.listeners:
            mark = d.audit_mark()
            self.assertTrue(ep.accepts())
            self.assertEqual(d.wait_audit(start=mark, port=1, decision="allow")["host"], "h")
        mark = d.log_mark()
        d.send_signal(signal.SIGHUP)
        d.wait_log("reloaded", start=mark)
        d.stop(timeout=5)
        self.assertFalse(d.alive())

    def test_stdout_line_that_is_not_json_fails(self):
        d = self.start_daemon(make_config(marker="emit-garbage"))
        mark = d.audit_mark()
        self.assertTrue(d.endpoint(0).accepts())
        d.wait_audit(start=mark, port=1)
        harness.wait_until(lambda: d.stdout.malformed_lines(), 5, "the line that is not JSON")
        with self.assertRaises(HarnessError) as cm:
            d.stop(timeout=5)
        self.assertIn("not JSON", str(cm.exception))
        self.assertIn("request h:1 allow", str(cm.exception))
        d.close()  # reported once: the cleanup does not fail the test again

    def test_startup_failure_is_reported(self):
        with self.assertRaises(HarnessError) as cm:
            self.start_daemon("version: 1\nbogus: 1\n")
        self.assertIn("did not become ready", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
