"""Process lifecycle (README "Command line"): ready and listening lines, listeners of every kind,
SIGHUP reload (good, bad, under traffic, with open tunnels), SIGTERM/SIGINT drain, and
the `check-config` and `check --json` commands."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (Deadline, EgressdTestCase, HarnessError, make_config, open_connect,  # noqa: E402
                     recv_until_closed, socks5_open, to_yaml, tunnel_opens, wait_closed, wait_until)


def setUpModule():
    harness.setup_module("openssl")


def tearDownModule():
    harness.close_origins()


class ListenersTest(EgressdTestCase):
    def test_every_kind_of_listener(self):
        o = self.o
        sockdir = harness.short_tempdir("egd-l-")
        self.addCleanup(shutil.rmtree, sockdir, True)
        listeners = ["127.0.0.1:0", "127.0.0.1:0", f"unix:{os.path.join(sockdir, 'p.sock')}"]
        if not o.ipv6_error:
            listeners.append("[::1]:0")
        d = self.start_daemon(make_config(listeners=listeners,
                                          allow=[f"127.0.0.1:{o.echo.port}", f"localhost:{o.echo.port}"]))
        lines = d.stderr.find_all(lambda x: x.get("msg") == "listening")
        self.assertEqual(sorted({x["listener"] for x in lines}), sorted(set(listeners)))
        ports = [ep.port for ep in d.listeners if ep.kind != "unix"]
        self.assertNotIn(0, ports)
        self.assertEqual(len(set(ports)), len(ports))
        for ep in d.listeners:
            with self.subTest(listener=ep.hostport):
                self.connect_echo_ok(ep, o.echo.hostport)
                sock, reply = socks5_open(ep, "127.0.0.1", o.echo.port)
                with sock:
                    self.assertEqual(reply.rep, 0)
                    self.assert_echo(sock)

    def test_ready_comes_after_listening(self):
        d = self.start_daemon(make_config(listeners=["127.0.0.1:0", "127.0.0.1:0"]))
        msgs = [x.get("msg") for x in d.stderr.find_all(lambda x: x.get("msg") in ("listening", "ready"))]
        self.assertEqual(msgs[:3], ["listening", "listening", "ready"])

    def test_bad_config_fails_to_start(self):
        d = self.start_daemon("version: 1\nlisteners: [{address: \"127.0.0.1:0\"}]\nno_such_key: 1\n",
                              wait_ready=False)
        rc = d.wait_exit(10)
        self.assertIsNotNone(rc, "egressd kept running on a config with an unknown key")
        self.assertNotEqual(rc, 0)


class ReloadTest(EgressdTestCase):
    def reload(self, d: harness.Egressd, config, expect: str = "reloaded") -> None:
        d.write_config(config)
        mark = d.log_mark()
        d.send_signal(signal.SIGHUP)
        d.wait_log(expect, start=mark)

    def test_open_tunnel_survives_and_new_policy_applies(self):
        o = self.o
        # reload.revoke off: open tunnels outlive a policy that denies them (test_reload
        # covers revocation, the default).
        d = self.start_daemon(make_config(allow=[f"127.0.0.1:{o.echo.port}", f"127.0.0.1:{o.http.port}"],
                                          reload={"revoke": False}))
        ep = d.endpoint(0)
        sock, head, rest = open_connect(ep, o.echo.hostport)
        self.addCleanup(sock.close)
        self.assertEqual(head.status, 200)
        self.assert_echo(sock, rest)
        conn = http.client.HTTPConnection(ep.host, ep.port, timeout=10)  # a keep-alive client connection
        self.addCleanup(conn.close)
        conn.request("GET", f"http://{o.http.hostport}/before")
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)

        self.reload(d, make_config(allow=[f"127.0.0.1:{o.http.port}"], reload={"revoke": False}))  # echo denied

        self.assert_echo(sock)  # the open tunnel keeps working
        s2, head, _ = open_connect(ep, o.echo.hostport)
        s2.close()
        self.assert_blocked(head, "127.0.0.1")
        conn.request("GET", f"http://{o.echo.hostport}/after")  # same client connection, new policy
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 403)
        self.assert_echo(sock)

    def test_reload_can_open_a_destination(self):
        o = self.o
        d = self.start_daemon(make_config(allow=[f"127.0.0.1:{o.http.port}"]))
        ep = d.endpoint(0)
        self.assertFalse(tunnel_opens(ep, o.echo.hostport))
        self.reload(d, make_config(allow=[f"127.0.0.1:{o.http.port}", f"127.0.0.1:{o.echo.port}"]))
        self.connect_echo_ok(ep, o.echo.hostport)
        self.assertEqual(ep, d.endpoint(0))

    def test_bad_file_keeps_old_policy(self):
        o = self.o
        good = make_config(allow=[f"127.0.0.1:{o.echo.port}"])
        d = self.start_daemon(good)
        ep = d.endpoint(0)
        bad_files = {
            "unknown key": to_yaml(good) + "no_such_key: 1\n",
            "yaml syntax": "version: 1\nlisteners: [\n",
            "bad pattern": to_yaml(make_config(allow=["exa mple.com"])),
            "empty": "",
        }
        for what, text in bad_files.items():
            with self.subTest(what):
                self.reload(d, text, expect="reload failed; the previous configuration stays in force")
                self.assertTrue(d.alive())
                self.connect_echo_ok(ep, o.echo.hostport)
        self.reload(d, make_config(allow=[]))
        self.assertFalse(tunnel_opens(ep, o.echo.hostport))

    def test_reload_under_traffic(self):
        o = self.o
        cfg = make_config(allow=[f"127.0.0.1:{o.http.port}", f"127.0.0.1:{o.echo.port}"])
        d = self.start_daemon(cfg)
        ep = d.endpoint(0)
        stop = threading.Event()
        statuses: list[int] = []
        errors: list[str] = []

        def traffic() -> None:
            deadline = Deadline(30)
            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=10)
            try:
                for i in range(2000):
                    if stop.is_set() or deadline.expired():
                        break
                    try:
                        if i % 10 == 0:  # a fresh client connection now and then
                            conn.close()
                            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=10)
                        conn.request("GET", f"http://{o.http.hostport}/t{i}")
                        r = conn.getresponse()
                        r.read()
                        statuses.append(r.status)
                    except (OSError, http.client.HTTPException) as e:
                        errors.append(f"request {i}: {e!r}")
                        conn.close()
                        conn = http.client.HTTPConnection(ep.host, ep.port, timeout=10)
            finally:
                conn.close()

        t = threading.Thread(target=traffic)
        t.start()
        try:
            wait_until(lambda: len(statuses) >= 5, 10, "traffic before the reloads")
            for i in range(5):
                cfg["policy"]["allow"] = list(reversed(cfg["policy"]["allow"]))
                self.reload(d, cfg)
            seen = len(statuses)
            wait_until(lambda: len(statuses) >= seen + 5, 10, "traffic after the reloads")
        finally:
            stop.set()
            t.join(timeout=30)
        self.assertFalse(t.is_alive())
        self.assertEqual(errors, [])
        self.assertEqual(set(statuses), {200})


class ShutdownTest(EgressdTestCase):
    def test_sigterm_drains_open_tunnel_then_exits_0(self):
        o, drain = self.o, 6.0
        d = self.start_daemon(make_config(allow=[f"127.0.0.1:{o.echo.port}"], limits={"drain_timeout": "6s"}))
        ep = d.endpoint(0)
        sock, head, rest = open_connect(ep, o.echo.hostport)
        self.addCleanup(sock.close)
        self.assertEqual(head.status, 200)
        self.assert_echo(sock, rest)

        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        wait_until(lambda: not tunnel_opens(ep, o.echo.hostport), drain - 2,
                   "new connections to be refused after SIGTERM")
        self.assertTrue(d.alive(), "egressd exited at once instead of draining the open tunnel")
        self.assert_echo(sock)  # the open tunnel keeps working while draining

        rc = d.wait_exit(drain + 5)
        elapsed = time.monotonic() - t0
        self.assertIsNotNone(rc, f"egressd still running {drain + 5}s after SIGTERM (drain_timeout {drain}s)")
        self.assertEqual(rc, 0, d.log_tail())
        self.assertLessEqual(elapsed, drain + 5)  # the 250 ms deadline sweep is well inside this
        self.assertGreaterEqual(elapsed, drain - 1,
                                f"egressd exited {elapsed:.2f}s after SIGTERM with a tunnel open; "
                                f"drain_timeout is {drain}s")
        wait_closed(sock, 5)  # closed at the drain deadline
        d.stdout.wait_closed(5)
        self.assertTrue(d.audit_records(event="tunnel_closed", port=o.echo.port),
                        "no tunnel_closed record for the tunnel closed at the drain deadline")

    def test_sigterm_exits_when_last_tunnel_closes(self):
        o = self.o
        d = self.start_daemon(make_config(allow=[f"127.0.0.1:{o.echo.port}"], limits={"drain_timeout": "30s"}))
        ep = d.endpoint(0)
        sock, head, rest = open_connect(ep, o.echo.hostport)
        self.addCleanup(sock.close)
        self.assertEqual(head.status, 200)
        d.send_signal(signal.SIGTERM)
        wait_until(lambda: not tunnel_opens(ep, o.echo.hostport), 10,
                   "new connections to be refused after SIGTERM")
        self.assert_echo(sock, rest)
        sock.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_closed(sock), (b"bye\n", "eof"))
        sock.close()
        rc = d.wait_exit(5)
        self.assertEqual(rc, 0, "egressd did not exit within 5s of its last tunnel closing")

    def test_sigterm_without_tunnels_exits_promptly(self):
        d = self.start_daemon(make_config(limits={"drain_timeout": "30s"}))
        self.assertEqual(d.stop(timeout=5), 0)

    def test_sigint_exits_0(self):
        d = self.start_daemon(make_config(limits={"drain_timeout": "30s"}))
        self.assertEqual(d.stop(timeout=5, sig=signal.SIGINT), 0)


class CliTest(harness.TempDirTest):
    """`egressd check-config` and `egressd check --json` (no network)."""

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([harness.egressd_binary(), *args], stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=30, env=harness.tool_env(harness.hosts_env(self.write(
                                      "hosts", harness.HOSTS_FILE_TEXT))))
        except subprocess.TimeoutExpired:
            raise HarnessError(f"egressd {' '.join(args)} did not finish within 30s") from None

    POLICY = ('version: 1\n'
              'listeners:\n'
              '  - address: "127.0.0.1:0"\n'
              'policy:\n'
              '  allow: ["github.com", "*.example.com", "**.example.org", "registry.npmjs.org:443", "10.0.0.0/8"]\n'
              '  deny: ["bad.example.com"]\n'
              '  unknown: deny\n')

    def test_check_config_good(self):
        r = self.cli("check-config", "--config", self.write("good.yaml", self.POLICY))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def assert_bad(self, text: str, line: int, *words: str) -> None:
        r = self.cli("check-config", "--config", self.write("bad.yaml", text))
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        self.assertNotEqual(r.returncode, 0, out)
        self.assertRegex(out, rf"(?i)(line\s*{line}\b|:{line}\b)", f"line {line} not named in:\n{out}")
        for w in words:
            self.assertIn(w, out)

    def test_check_config_unknown_key_names_line(self):
        self.assert_bad(self.POLICY + "  colour: blue\n", 8, "colour")

    def test_check_config_bad_pattern_names_line(self):
        self.assert_bad(self.POLICY.replace('"10.0.0.0/8"', '"exa mple.com"'), 5, "exa mple.com")

    def test_check_config_bad_duration_names_line(self):
        self.assert_bad(self.POLICY + "limits:\n  head_timeout: soon\n", 9)

    def test_check_config_yaml_syntax_error(self):
        r = self.cli("check-config", "--config", self.write("syntax.yaml", "version: 1\nlisteners: [\n"))
        self.assertNotEqual(r.returncode, 0)

    def check(self, config: str, target: str, *extra: str) -> dict:
        r = self.cli("check", "--config", config, target, "--json", *extra)
        text = r.stdout.decode().strip()
        try:
            out = json.loads(text)
        except ValueError:
            out = json.loads([line for line in text.splitlines() if line.startswith("{")][-1])
        self.assertLessEqual({"host", "port", "decision", "rule", "reason"}, set(out), out)
        # The answer is also the exit status: 0 allow, 1 deny, 3 ask (test_cli.py says more).
        self.assertEqual(r.returncode, {"allow": 0, "deny": 1, "ask": 3}[out["decision"]], r.stdout + r.stderr)
        return out

    def test_check_resolve_uses_the_daemons_resolver(self):
        """--resolve resolves as the daemon does: the hosts file it is given (CARES_HOSTS,
        which getaddrinfo ignores) and the configured servers, and judges each address."""
        cfg = self.write("resolve.yaml", 'version: 1\nlisteners: [{address: "127.0.0.1:0"}]\n'
                         'policy: {allow: ["loopy.test", "private.test", "nosuch.test"]}\n'
                         'dns: {servers: ["127.0.0.1:9"], timeout: 500ms}\n')
        out = self.check(cfg, "loopy.test:443", "--resolve")
        self.assertEqual(out["addresses"], [{"address": "127.0.0.1", "verdict": "loopback"}], out)
        out = self.check(cfg, "private.test:443", "--resolve")
        self.assertEqual(out["addresses"], [{"address": "10.1.2.3", "verdict": "private_network"}], out)
        out = self.check(cfg, "nosuch.test:443", "--resolve")  # not in the file; no server answers
        self.assertEqual(out["addresses"], [], out)
        self.assertTrue(out.get("resolve_error"), out)

    def test_check_json(self):
        cfg = self.write("policy.yaml", self.POLICY)
        cases = [
            ("github.com:443", "github.com", 443, "allow", "allowed_by_rule", "github.com"),
            ("GitHub.COM.:443", "github.com", 443, "allow", "allowed_by_rule", "github.com"),
            ("api.example.com:443", "api.example.com", 443, "allow", "allowed_by_rule", "*.example.com"),
            ("example.com:443", "example.com", 443, "deny", "unknown_denied", None),
            ("example.org:80", "example.org", 80, "allow", "allowed_by_rule", "**.example.org"),
            ("bad.example.com:443", "bad.example.com", 443, "deny", "denied_by_rule", "bad.example.com"),
            ("registry.npmjs.org:443", "registry.npmjs.org", 443, "allow", "allowed_by_rule",
             "registry.npmjs.org:443"),
            ("registry.npmjs.org:80", "registry.npmjs.org", 80, "deny", "unknown_denied", None),
            ("10.1.2.3:22", "10.1.2.3", 22, "allow", "allowed_by_rule", "10.0.0.0/8"),
            ("2130706433:80", "127.0.0.1", 80, "deny", "unknown_denied", None),
        ]
        for target, host, port, decision, reason, rule in cases:
            with self.subTest(target=target):
                out = self.check(cfg, target)
                self.assertEqual((out["host"], int(out["port"]), out["decision"], out["reason"]),
                                 (host, port, decision, reason), out)
                if rule is not None:
                    self.assertEqual(out["rule"], rule, out)

    def test_check_json_ask(self):
        # No `hook:`: `check` still says what the policy decides.
        cfg = self.write("ask.yaml", self.POLICY.replace("unknown: deny", "unknown: ask"))
        out = self.check(cfg, "unknown.example.net:443")
        self.assertEqual((out["decision"], out["reason"]), ("ask", "unknown_ask"))
        self.assertEqual(self.check(cfg, "github.com:443")["decision"], "allow")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class BusyPollTest(EgressdTestCase):
    """busy_poll_us: workers keep polling after activity, and sleep once it stops."""

    def test_busy_poll_serves_and_goes_idle(self):
        o = self.o
        d = self.start_daemon(make_config(allow=[f"127.0.0.1:{o.echo.port}"], workers=2, busy_poll_us=20000))
        self.assertEqual(d.wait_log("ready")["busy_poll_us"], 20000)
        sock, head, rest = open_connect(d.endpoint(0), o.echo.hostport)
        with sock:
            self.assertEqual(head.status, 200)
            # A round trip every 5 ms: each lands within the 20 ms spin of the one
            # before, so the tunnel's worker never sleeps. Without busy polling these
            # 200 round trips cost a few milliseconds of CPU.
            before = process_cpu_seconds(d.pid)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                self.assert_echo(sock, rest)
                rest = b""
                time.sleep(0.005)
            busy = process_cpu_seconds(d.pid) - before
        # 20 ms after the last event the workers block again: an idle second costs
        # next to nothing, where a worker that kept spinning would burn a whole core.
        time.sleep(0.2)
        before = process_cpu_seconds(d.pid)
        time.sleep(1.0)
        idle = process_cpu_seconds(d.pid) - before
        self.assertGreater(busy, 0.3, "no busy polling while traffic flowed")
        self.assertLess(idle, 0.1, "workers kept spinning with no traffic")

    def test_busy_poll_out_of_range_is_a_config_error(self):
        d = self.start_daemon(make_config(busy_poll_us=100001), wait_ready=False)
        rc = d.wait_exit(10.0)
        self.assertIsNotNone(rc, "egressd kept running with busy_poll_us out of range")
        self.assertNotEqual(rc, 0)
        d.stderr.wait_closed(5.0)
        self.assertIn("busy_poll_us", d.stderr.tail(40), "the error does not name busy_poll_us")


class AdminEndpointTest(EgressdTestCase):
    """/healthz and /readyz on the admin address; /readyz turns 503 while draining."""

    def admin_get(self, address: str, path: str) -> tuple[int, str]:
        host, port = address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", path)
            res = conn.getresponse()
            return res.status, res.read().decode()
        finally:
            conn.close()

    def test_health_and_readiness(self):
        o = self.o
        d = self.start_daemon(make_config(allow=[f"127.0.0.1:{o.echo.port}"], admin={"address": "127.0.0.1:0"},
                                          limits={"drain_timeout": "10s"}))
        address = d.wait_log("admin listening")["address"]
        self.assertEqual(self.admin_get(address, "/healthz"), (200, "ok\n"))
        self.assertEqual(self.admin_get(address, "/readyz"), (200, "ready\n"))
        self.assertEqual(self.admin_get(address, "/nope")[0], 404)
        sock, head, rest = open_connect(d.endpoint(0), o.echo.hostport)  # keeps the drain going
        self.addCleanup(sock.close)
        self.assertEqual(head.status, 200)
        mark = d.log_mark()
        d.send_signal(signal.SIGTERM)
        d.wait_log("draining", start=mark)
        status, body = self.admin_get(address, "/readyz")
        self.assertEqual(status, 503)
        self.assertIn("draining", body)
        sock.close()
        self.assertEqual(d.wait_exit(10.0), 0)


if __name__ == "__main__":
    unittest.main()
