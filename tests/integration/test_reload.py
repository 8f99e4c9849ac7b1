"""Live reload (README "Reload and shutdown"), through the real binary:

  * POST /v1/reload on the admin endpoint: refused without the bearer token (401), with
    a foreign Host (421) or without a JSON content type (415), each changing nothing; a
    valid change applies the new policy (200 with the outcome); an invalid file keeps
    the old policy, answers 422 with every problem and counts
    egressd_reloads_total{result="failure"};
  * watching files: a ConfigMap-style mount (dir/..2026_x/egressd.yaml, dir/..data ->
    ..2026_x, dir/egressd.yaml -> ..data/egressd.yaml) whose ..data symlink is swapped
    atomically reloads the policy within a second; an invalid new file keeps the old
    policy, logs the problem and counts a failure; `reload.watch: false` does not watch;
  * revocation: on a reload, open tunnels (CONNECT and SOCKS5) whose destination the
    new policy denies are closed with `close_cause: revoked`, while a bulk transfer on
    a tunnel still allowed completes intact.

Destinations are the harness's loopback origins, told apart by port."""

import hashlib
import json
import http.client
import os
import re
import shutil
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_admin_api  # noqa: E402  (its helpers only)
from harness import (EgressdTestCase, TempDirTest, make_config, open_connect, socks5_open,  # noqa: E402
                     to_yaml, tunnel_opens, wait_until)

TOKEN = "reload-token-value"
JSON = {"Content-Type": "application/json"}


def setUpModule():
    harness.setup_module()


def tearDownModule():
    harness.close_origins()


def admin_call(address: str, method: str, path: str, body: str | None = None,
               headers: dict[str, str] | None = None, host: str = "") -> tuple[int, str]:
    """One request to the admin endpoint (test_admin_api's), as (status, body)."""
    status, _, text = test_admin_api.admin_call(address, method, path, body, headers, host)
    return status, text


def reloads(address: str, result: str, token: str | None = None) -> int:
    """egressd_reloads_total{result=...} as /metrics shows it now."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, text = admin_call(address, "GET", "/metrics", headers=headers)
    if status != 200:
        raise harness.HarnessError(f"GET /metrics: {status} {text[:300]}")
    m = re.search(r'^egressd_reloads_total\{result="' + result + r'"\} (\d+)', text, re.M)
    if not m:
        raise harness.HarnessError(f"no egressd_reloads_total{{result={result!r}}} in /metrics")
    return int(m.group(1))


class AdminReloadTest(TempDirTest):
    """POST /v1/reload with admin.token_file set."""

    def setUp(self):
        super().setUp()
        self.token_file = self.write("admin.token", TOKEN + "\n")
        self.admin_cfg = {"address": "127.0.0.1:0", "token_file": self.token_file}
        o = self.o
        # reload.watch off: the files written here reload only when the test asks.
        self.d = self.start_daemon(make_config(allow=[f"127.0.0.1:{o.echo.port}"], admin=self.admin_cfg,
                                               reload={"watch": False}))
        self.admin = self.d.wait_log("admin listening")["address"]
        self.ep = self.d.endpoint(0)
        self.auth = {**JSON, "Authorization": f"Bearer {TOKEN}"}

    def config(self, allow: list[str]) -> dict:
        # The admin address as bound, so that a reload changes nothing that needs a restart.
        return make_config(allow=allow, admin={**self.admin_cfg, "address": self.admin}, reload={"watch": False})

    def test_refusals_change_nothing(self):
        o = self.o
        self.d.write_config(self.config([f"127.0.0.1:{o.http.port}"]))  # would close the echo
        for what, headers, host, want in (
                ("no token", JSON, "", 401),
                ("wrong token", {**JSON, "Authorization": "Bearer nope"}, "", 401),
                ("foreign Host", self.auth, "evil.example:80", 421),
                ("text/plain", {**self.auth, "Content-Type": "text/plain"}, "", 415),
                ("no content type", {"Authorization": f"Bearer {TOKEN}"}, "", 415)):
            with self.subTest(what):
                status, text = admin_call(self.admin, "POST", "/v1/reload", "{}", headers, host)
                self.assertEqual(status, want, text)
        status, text = admin_call(self.admin, "GET", "/v1/reload", headers=self.auth)
        self.assertEqual(status, 405, text)
        self.assertTrue(tunnel_opens(self.ep, o.echo.hostport), "a refused reload changed the policy")
        self.assertFalse(tunnel_opens(self.ep, o.http.hostport))
        self.assertEqual(reloads(self.admin, "success", TOKEN), 0)

    def test_valid_change_applies(self):
        o = self.o
        self.assertFalse(tunnel_opens(self.ep, o.http.hostport))
        self.d.write_config(self.config([f"127.0.0.1:{o.http.port}"]))
        mark = self.d.log_mark()
        status, text = admin_call(self.admin, "POST", "/v1/reload", "{}", self.auth)
        self.assertEqual(status, 200, text)
        body = json.loads(text)
        self.assertEqual(body["result"], "success")
        self.assertEqual(body["errors"], [])
        self.assertEqual((body["rules_added"], body["rules_removed"]), (1, 1))
        line = self.d.wait_log("reloaded", start=mark)
        self.assertEqual(line.get("trigger"), "admin")
        self.assertTrue(tunnel_opens(self.ep, o.http.hostport))
        self.assertFalse(tunnel_opens(self.ep, o.echo.hostport))
        self.assertEqual(reloads(self.admin, "success", TOKEN), 1)

    def test_invalid_file_keeps_old_policy(self):
        o = self.o
        before = reloads(self.admin, "failure", TOKEN)
        self.d.write_config(to_yaml(self.config([f"127.0.0.1:{o.http.port}"])) + "no_such_key: 1\n")
        mark = self.d.log_mark()
        status, text = admin_call(self.admin, "POST", "/v1/reload", "{}", self.auth)
        self.assertEqual(status, 422, text)
        body = json.loads(text)
        self.assertEqual(body["result"], "failure")
        self.assertTrue(any("no_such_key" in e for e in body["errors"]), body)
        self.d.wait_log("reload failed; the previous configuration stays in force", start=mark)
        self.assertTrue(tunnel_opens(self.ep, o.echo.hostport), "the old policy is no longer in force")
        self.assertFalse(tunnel_opens(self.ep, o.http.hostport))
        self.assertEqual(reloads(self.admin, "failure", TOKEN), before + 1)


class ConfigMap:
    """A directory laid out as the kubelet mounts a ConfigMap: dir/..TS/egressd.yaml,
    dir/..data -> ..TS, dir/egressd.yaml -> ..data/egressd.yaml; update() swaps ..data
    atomically (a temporary symlink renamed over it) and removes the old ..TS, as the
    kubelet's atomic writer does."""

    def __init__(self, directory: str, text: str):
        self.dir = directory
        os.mkdir(directory)
        self.n = 0
        self.current = self._version(text)
        os.symlink(self.current, os.path.join(directory, "..data"))
        os.symlink(os.path.join("..data", "egressd.yaml"), self.path)

    @property
    def path(self) -> str:
        return os.path.join(self.dir, "egressd.yaml")

    def _version(self, text: str) -> str:
        self.n += 1
        name = f"..2026_12_03_20_00_0{self.n}.{os.getpid()}"
        os.mkdir(os.path.join(self.dir, name))
        with open(os.path.join(self.dir, name, "egressd.yaml"), "w", encoding="utf-8") as f:
            f.write(text)
        return name

    def update(self, text: str) -> None:
        old, self.current = self.current, self._version(text)
        tmp = os.path.join(self.dir, "..data_tmp")
        os.symlink(self.current, tmp)
        os.rename(tmp, os.path.join(self.dir, "..data"))
        shutil.rmtree(os.path.join(self.dir, old))


class WatchTest(EgressdTestCase):
    """reload.watch (on by default): changed files reload the policy."""

    def start_mounted(self, cfg: dict) -> tuple[harness.Egressd, ConfigMap]:
        d = harness.Egressd(cfg)
        self._own_daemons().append(d)
        self.addCleanup(d.close)
        cm = ConfigMap(os.path.join(d.dir, "config"), to_yaml(cfg))
        d.config_path = cm.path  # `run --config DIR/egressd.yaml`, the symlink
        d.start()
        return d, cm

    def test_configmap_swap_reloads_within_a_second(self):
        o = self.o
        cfg = make_config(allow=[f"127.0.0.1:{o.echo.port}"], admin={"address": "127.0.0.1:0"})
        d, cm = self.start_mounted(cfg)
        admin = d.wait_log("admin listening")["address"]
        ep = d.endpoint(0)
        self.assertFalse(tunnel_opens(ep, o.http.hostport))
        mark = d.log_mark()
        start = time.monotonic()
        cm.update(to_yaml({**cfg, "policy": {**cfg["policy"], "allow": [f"127.0.0.1:{o.http.port}"]}}))
        wait_until(lambda: tunnel_opens(ep, o.http.hostport), 1.0, "the new policy within 1 s of the swap")
        elapsed = time.monotonic() - start
        self.assertLess(elapsed, 1.0)
        self.assertEqual(d.wait_log("reloaded", start=mark).get("trigger"), "watch")
        self.assertFalse(tunnel_opens(ep, o.echo.hostport))
        self.assertEqual(reloads(admin, "success"), 1)

        # An invalid new file: the old policy stays, the problem is logged, a failure counted.
        mark = d.log_mark()
        cm.update(to_yaml(cfg) + "no_such_key: 1\n")
        failed = d.wait_log("reload failed; the previous configuration stays in force", timeout=5.0, start=mark)
        self.assertEqual(failed.get("trigger"), "watch")
        self.assertIn("no_such_key", failed.get("first_error", ""))
        d.stderr.wait(lambda x: x.get("msg") == "config problem" and "no_such_key" in x.get("problem", ""),
                      5.0, "the problem logged", mark)
        self.assertEqual(reloads(admin, "failure"), 1)
        self.assertTrue(tunnel_opens(ep, o.http.hostport), "the old policy is no longer in force")
        self.assertFalse(tunnel_opens(ep, o.echo.hostport))

        # Fixed again: reloads.
        cm.update(to_yaml(cfg))
        wait_until(lambda: tunnel_opens(ep, o.echo.hostport), 5.0, "the fixed file's policy")

    def test_plain_file_replaced_and_same_bytes(self):
        o = self.o
        cfg = make_config(allow=[f"127.0.0.1:{o.echo.port}"])
        d = self.start_daemon(cfg)
        ep = d.endpoint(0)
        mark = d.log_mark()
        d.write_config(cfg)  # the same bytes again (an atomic rename): no reload
        time.sleep(0.6)  # three times the 200 ms quiet period: a reload would have started
        d.write_config(make_config(allow=[f"127.0.0.1:{o.http.port}"]))  # an editor's save
        wait_until(lambda: tunnel_opens(ep, o.http.hostport), 2.0, "the new policy")
        d.wait_log("reloaded", start=mark)
        self.assertEqual(len(d.stderr.find_all(lambda x: x.get("msg") == "reloaded", mark)), 1,
                         "the same content reloaded")

    def test_watch_off(self):
        o = self.o
        cfg = make_config(allow=[f"127.0.0.1:{o.echo.port}"], reload={"watch": False})
        d = self.start_daemon(cfg)
        ep = d.endpoint(0)
        mark = d.log_mark()
        d.write_config(make_config(allow=[f"127.0.0.1:{o.http.port}"], reload={"watch": False}))
        time.sleep(0.6)  # three times the quiet period
        self.assertTrue(tunnel_opens(ep, o.echo.hostport), "reloaded with reload.watch: false")
        self.assertEqual(d.stderr.find_all(lambda x: x.get("msg") == "reloaded", mark), [])
        d.send_signal(signal.SIGHUP)
        d.wait_log("reloaded", start=mark)
        self.assertTrue(tunnel_opens(ep, o.http.hostport))


class RevokeTest(EgressdTestCase):
    """reload.revoke (on by default): exactly the connections the new policy denies close."""

    def reload(self, d: harness.Egressd, cfg: dict) -> None:
        mark = d.log_mark()
        d.write_config(cfg)
        d.send_signal(signal.SIGHUP)
        d.wait_log("reloaded", start=mark)

    def test_denied_tunnels_close_bulk_transfer_completes(self):
        o = self.o
        allow_http = f"127.0.0.1:{o.http.port}"
        both = make_config(allow=[allow_http, f"127.0.0.1:{o.echo.port}"], reload={"watch": False})
        d = self.start_daemon(both)
        ep = d.endpoint(0)
        denied_connect, head, rest = open_connect(ep, o.echo.hostport)
        self.addCleanup(denied_connect.close)
        self.assertEqual(head.status, 200)
        self.assert_echo(denied_connect, rest)
        denied_socks, reply = socks5_open(ep, "127.0.0.1", o.echo.port)
        self.addCleanup(denied_socks.close)
        self.assertEqual(reply.rep, 0)
        self.assert_echo(denied_socks)

        # The bulk transfer: 32 MiB from the origin through a tunnel that stays allowed,
        # read in a thread that is still reading when the reload comes.
        n = 32 << 20
        bulk, head, rest = open_connect(ep, o.http.hostport)
        self.addCleanup(bulk.close)
        self.assertEqual(head.status, 200)
        bulk.sendall(f"GET /big?n={n} HTTP/1.1\r\nHost: {o.http.hostport}\r\n\r\n".encode())
        started = threading.Event()
        go_on = threading.Event()
        result: dict = {}

        def read_bulk() -> None:
            try:
                h, body = harness.read_head(bulk, buf=rest)
                digest = hashlib.sha256()
                got = 0
                for chunk in [body]:
                    digest.update(chunk)
                    got += len(chunk)
                while got < n:
                    if got >= 1 << 20 and not started.is_set():
                        started.set()
                        go_on.wait(30)  # hold the rest in the socket buffers over the reload
                    data = bulk.recv(min(1 << 20, n - got))
                    if not data:
                        break
                    digest.update(data)
                    got += len(data)
                result.update(status=h.status, got=got, sha=digest.hexdigest())
            except Exception as e:  # reported by the assertions below
                result["error"] = repr(e)
            finally:
                started.set()

        reader = threading.Thread(target=read_bulk, daemon=True)
        reader.start()
        self.assertTrue(started.wait(30), "the bulk transfer did not start")
        mark = d.audit_mark()
        self.reload(d, make_config(allow=[allow_http], reload={"watch": False}))
        revoked = d.wait_audits(2, start=mark, event="tunnel_closed", close_cause="revoked")
        go_on.set()
        reader.join(60)
        self.assertFalse(reader.is_alive(), "the bulk transfer did not finish")
        self.assertNotIn("error", result, result)
        self.assertEqual((result["status"], result["got"]), (200, n))
        self.assertEqual(result["sha"], harness.big_sha256(n))

        self.assertEqual(d.audit_records(mark, event="tunnel_closed", close_cause="revoked"), revoked)
        self.assertEqual(sorted(r["protocol"] for r in revoked), ["connect", "socks5"], revoked)
        for r in revoked:
            self.assertEqual((r["port"], r["closed_by"]), (o.echo.port, "proxy"), r)
        for sock in (denied_connect, denied_socks):
            harness.wait_closed(sock, 5.0)
        # The allowed tunnel is untouched: it carries another exchange.
        bulk.sendall(f"GET /big?n=1000 HTTP/1.1\r\nHost: {o.http.hostport}\r\n\r\n".encode())
        h, body = harness.read_head(bulk)
        self.assertEqual(h.status, 200)
        self.assertEqual(d.audit_records(mark, event="tunnel_closed", port=o.http.port), [])

    def test_pooled_upstream_closed(self):
        o = self.o
        d = self.start_daemon(make_config(allow=[f"127.0.0.1:{o.http.port}", f"127.0.0.1:{o.echo.port}"],
                                          reload={"watch": False}))
        ep = d.endpoint(0)
        conn = http.client.HTTPConnection(ep.host, ep.port, timeout=10)  # keep-alive to the proxy
        self.addCleanup(conn.close)
        conn.request("GET", f"http://{o.http.hostport}/pooled")
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        mark = d.log_mark()
        self.reload(d, make_config(allow=[f"127.0.0.1:{o.echo.port}"], reload={"watch": False}))
        line = d.wait_log("pooled upstream connection closed: revoked", start=mark)
        self.assertEqual(line["port"], o.http.port)
        conn.request("GET", f"http://{o.http.hostport}/after")  # the same client connection, refused
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 403)

    def test_revoke_off_keeps_tunnels(self):
        o = self.o
        d = self.start_daemon(make_config(allow=[f"127.0.0.1:{o.echo.port}"], reload={"revoke": False}))
        ep = d.endpoint(0)
        sock, head, rest = open_connect(ep, o.echo.hostport)
        self.addCleanup(sock.close)
        self.assertEqual(head.status, 200)
        self.reload(d, make_config(allow=[], reload={"revoke": False}))
        self.assertFalse(tunnel_opens(ep, o.echo.hostport))
        self.assert_echo(sock, rest)


if __name__ == "__main__":
    unittest.main()
