"""Access records field by field (README "Logs and access records"):
every request ends in exactly one record, on every exit (400, 407, 408, 431, a failed
SOCKS5 authentication, SOCKS4 included); the decision is what policy said and an
upstream failure is a field of its own; SOCKS5 records carry `socks_reply`, not
`status`; authenticated records name the user; plain-HTTP records carry method, path
(no query) and bytes; no credential ever appears in the daemon's output. Refusals say
what would allow the destination (README "Wire behaviour")."""

import json
import os
import re
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (EgressdTestCase, basic_auth, curl, make_config, open_connect, read_head, recv_exact,  # noqa: E402
                     recv_until_closed, request_bytes, socks5_greeting, socks5_open, socks5_userpass)


def setUpModule():
    harness.setup_module("curl")


def tearDownModule():
    harness.close_origins()


def config_line(d: harness.Egressd, needle: str) -> int:
    """The 1-based line of the daemon's config file that holds `needle`."""
    for i, line in enumerate(d.config_text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} is not in the config:\n{d.config_text}")


class RecordsTest(EgressdTestCase):
    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(
            allow=[f"127.0.0.1:{o.refused.port}", f"127.0.0.1:{o.http.port}", f"localhost:{o.echo.port}",
                   "loopy.test", "loopy6.test", "private.test"],
            deny=["denied.localhost"]))
        cls.ep = cls.d.endpoint(0)

    def only_record(self, mark: int, **fields) -> dict:
        """The one request record from `mark` on matching `fields` (waits for it)."""
        rec = self.d.wait_audit(start=mark, event="request", **fields)
        self.assertEqual(len(self.d.audit_records(mark, event="request", **fields)), 1,
                         self.d.audit_records(mark, event="request"))
        return rec

    # --- #13.2: an upstream failure keeps the policy's decision ---------------------
    def test_refused_upstream_connect_is_allow_with_error(self):
        port = self.o.refused.port
        mark = self.d.audit_mark()
        sock, head, _ = open_connect(self.ep, f"127.0.0.1:{port}")
        sock.close()
        self.assertEqual(head.status, 502, head.describe())
        rec = self.only_record(mark, port=port)
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"], rec["rule"], rec["answered_by"]),
                         ("connect", "allow", "allowed_by_rule", f"127.0.0.1:{port}", "rule"), rec)
        self.assertEqual((rec["error"], rec["error_source"], rec["status"]),
                         ("connection_refused", "upstream", 502), rec)
        self.assertNotIn("socks_reply", rec)
        self.assertIsInstance(rec["connect_us"], int)
        self.assertIsInstance(rec["duration_ms"], int)

    def test_refused_upstream_socks5_has_socks_reply_not_status(self):
        port = self.o.refused.port
        mark = self.d.audit_mark()
        sock, reply = socks5_open(self.ep, "127.0.0.1", port)
        sock.close()
        self.assertEqual(reply.rep, 5)
        rec = self.only_record(mark, port=port)
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"], rec["error"], rec["error_source"]),
                         ("socks5", "allow", "allowed_by_rule", "connection_refused", "upstream"), rec)
        self.assertEqual(rec["socks_reply"], "connection_refused", rec)
        self.assertNotIn("status", rec)

    def test_socks5_success_record(self):
        port = self.o.echo.port
        mark = self.d.audit_mark()
        sock, reply = socks5_open(self.ep, "localhost", port)
        with sock:
            self.assertEqual(reply.rep, 0)
            self.assert_echo(sock)
        rec = self.only_record(mark, port=port, protocol="socks5")
        self.assertEqual((rec["decision"], rec["socks_reply"], rec["host"]), ("allow", "succeeded", "localhost"), rec)
        self.assertNotIn("status", rec)
        self.assertNotIn("error", rec)
        self.assertNotIn("user", rec)
        closed = self.d.wait_audit(start=mark, event="tunnel_closed", connection=rec["connection"])
        self.assertEqual((closed["protocol"], closed["decision"], closed["bytes_up"] > 0), ("socks5", "allow", True))

    def test_policy_and_guard_refusals_stay_deny(self):
        mark = self.d.audit_mark()
        sock, head, _ = open_connect(self.ep, "denied.localhost:22")
        sock.close()
        self.assertEqual(head.status, 403)
        rec = self.only_record(mark, host="denied.localhost")
        self.assertEqual((rec["decision"], rec["reason"], rec["error_source"]), ("deny", "denied_by_rule", "policy"))
        sock, head, _ = open_connect(self.ep, "loopy.test:443")
        sock.close()
        self.assertEqual(head.status, 403)
        rec = self.only_record(mark, host="loopy.test")
        self.assertEqual((rec["decision"], rec["reason"], rec["error"], rec["error_source"], rec["address_class"]),
                         ("deny", "address_denied", "guard_refused", "policy", "loopback"), rec)

    # --- #13.3: records for the early exits -----------------------------------------
    def test_400_malformed_head_record(self):
        mark = self.d.audit_mark()
        with self.ep.connect() as s:
            s.sendall(b"GET /origin-form HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic c2VjcmV0\r\n\r\n")
            head, _ = read_head(s)
        self.assertEqual(head.status, 400, head.describe())
        rec = self.d.wait_audit(start=mark, event="request", status=400)
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"], rec["error"], rec["error_source"]),
                         ("http", "deny", "bad_request", "not_a_proxy_request", "client"), rec)
        self.assertIsNone(rec["rule"])
        self.assertNotIn("host", rec)
        self.assertNotIn("c2VjcmV0", json.dumps(rec))

    def test_431_oversized_head_record(self):
        mark = self.d.audit_mark()
        with self.ep.connect() as s:
            s.sendall(b"GET http://127.0.0.1/ HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 3000 + b"\r\n" +
                      b"X-Pad2: " + b"b" * 3000 + b"\r\n\r\n")
            head, _ = read_head(s)
        self.assertEqual(head.status, 431, head.describe())
        rec = self.d.wait_audit(start=mark, event="request", status=431)
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"], rec["error_source"]),
                         ("http", "deny", "bad_request", "client"), rec)
        self.assertIn(rec["error"], ("head_too_large", "line_too_long", "too_many_headers"), rec)

    def test_408_head_timeout_record(self):
        mark = self.d.audit_mark()
        with self.ep.connect() as s:
            s.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n")
            head, _ = read_head(s, timeout=harness.HEAD_TIMEOUT_S + 10)
        self.assertEqual(head.status, 408, head.describe())
        rec = self.d.wait_audit(start=mark, event="request", status=408)
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"], rec["error"], rec["error_source"]),
                         ("http", "deny", "head_timeout", "head_timeout", "client"), rec)

    def test_plain_http_record_method_path_bytes(self):
        port = self.o.http.port
        body = b"x" * 1234
        mark = self.d.audit_mark()
        with self.ep.connect() as s:
            url = f"http://127.0.0.1:{port}/up/load?token=SECRET-QUERY"
            s.sendall(request_bytes("POST", url, [("Host", f"127.0.0.1:{port}"), ("Connection", "close"),
                                                  ("Content-Length", str(len(body)))], body))
            data, _ = recv_until_closed(s)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
        rec = self.only_record(mark, port=port)
        self.assertEqual((rec["protocol"], rec["decision"], rec["method"], rec["path"], rec["status"]),
                         ("http", "allow", "POST", "/up/load", 200), rec)
        self.assertEqual((rec["bytes_up"], rec["bytes_down"]), (len(body), len(data)), rec)
        self.assertNotIn("SECRET-QUERY", json.dumps(rec))

    def test_socks4_is_refused_with_a_record(self):
        port = self.o.echo.port
        mark = self.d.audit_mark()
        with self.ep.connect() as s:
            s.sendall(b"\x04\x01" + port.to_bytes(2, "big") + bytes([127, 0, 0, 1]) + b"user\x00")
            reply = recv_exact(s, 8)
        self.assertEqual(reply, b"\x00\x5b" + b"\x00" * 6)
        rec = self.d.wait_audit(start=mark, event="request", protocol="socks4")
        self.assertEqual((rec["decision"], rec["reason"], rec["error_source"], rec["host"], rec["port"]),
                         ("deny", "unsupported_protocol", "client", "127.0.0.1", port), rec)
        self.d.wait_log("socks4 refused: this proxy speaks SOCKS5 and HTTP", start=0)

    def test_protocol_not_served_is_accounted(self):
        cfg = make_config()
        cfg["listeners"] = [{"address": "127.0.0.1:0", "protocols": ["http"]}]
        d = self.start_daemon(cfg)
        mark = d.audit_mark()
        with d.endpoint(0).connect() as s:
            s.sendall(socks5_greeting((0,)))
            data, _ = recv_until_closed(s)
        self.assertEqual(data, b"")
        rec = d.wait_audit(start=mark, event="request")
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"], rec["error"], rec["error_source"]),
                         ("socks5", "deny", "unsupported_protocol", "protocol_not_served", "client"), rec)

    # --- #13.11: refusals say what would allow the destination -----------------------
    def test_refusal_names_the_allow_key_and_the_check_command(self):
        path = self.d.config_path
        sock, head, _ = open_connect(self.ep, "unlisted.localhost:8443")
        sock.close()
        self.assert_blocked(head, "unlisted.localhost", body_has=[
            f"add 'unlisted.localhost' to policy.allow in {path}",
            f"egressd check --config {path} unlisted.localhost:8443"])
        self.assertIn(f"policy.allow in {path}", head.get("Proxy-Status"))
        # An IPv6 literal is written as an allow entry and a check target take it.
        sock, head, _ = open_connect(self.ep, "[fd00::7]:8443")
        sock.close()
        self.assert_blocked(head, "[fd00::7]:8443", body_has=[
            f"add '[fd00::7]:8443' to policy.allow in {path}", f"egressd check --config {path} [fd00::7]:8443"])

    def test_refusal_names_the_deny_rule_and_its_line(self):
        path = self.d.config_path
        sock, head, _ = open_connect(self.ep, "denied.localhost:22")
        sock.close()
        line = config_line(self.d, "denied.localhost")
        self.assert_blocked(head, "denied.localhost", body_has=[
            f"deny rule 'denied.localhost' ({path}:{line})", f"egressd check --config {path} denied.localhost:22"])

    def test_guard_refusal_names_the_entry_that_reopens_it(self):
        path = self.d.config_path
        port = self.o.echo.port
        sock, head, _ = open_connect(self.ep, f"loopy.test:{port}")
        sock.close()
        self.assert_blocked(head, "loopy.test", body_has=[f"add '127.0.0.1:{port}' to policy.allow in {path}"])
        self.assertNotIn("allow_private", head.text)
        sock, head, _ = open_connect(self.ep, "private.test:443")
        sock.close()
        self.assert_blocked(head, "private.test", body_has=[
            "add '10.1.2.3:443' to policy.allow, or set policy.guard.allow_private: true, in " + path])
        sock, head, _ = open_connect(self.ep, "loopy6.test:443")
        sock.close()
        self.assert_blocked(head, "loopy6.test", body_has=[f"add '[::1]:443' to policy.allow in {path}"])
        # The advice is true: with the entry it names, the tunnel opens.
        d2 = self.start_daemon(make_config(allow=["loopy.test", f"127.0.0.1:{port}"]))
        self.connect_echo_ok(d2.endpoint(0), f"loopy.test:{port}")


class SettingsAdviceTest(EgressdTestCase):
    """#13.11 for a settings file: the advice names its allowedDomains key, at the level
    the file uses, and the options that load the same policy into `egressd check`."""

    def test_settings_alone_on_its_own_port(self):
        tmp = harness.short_tempdir("egd-settings-")
        path = os.path.join(tmp, "settings.json")
        port = harness.free_port()  # for httpProxyPort
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"sandbox": {"network": {"httpProxyPort": port, "socksProxyPort": port,
                                               "allowedDomains": ["github.com"]}}}, f)
        # `egressd run --settings FILE` alone: no YAML, the listener from the file.
        proc = subprocess.Popen([harness.egressd_binary(), "run", "--settings", path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self.addCleanup(lambda: (proc.kill(), proc.wait(), proc.stderr.close()))
        log = harness.LineLog("stderr", proc.stderr)
        log.wait(lambda o: o.get("msg") == "ready", harness.READY_TIMEOUT, "ready")
        ep = harness.parse_endpoint(f"127.0.0.1:{port}")
        sock, head, _ = open_connect(ep, "unlisted.localhost:443")
        sock.close()
        self.assert_blocked(head, "unlisted.localhost", body_has=[
            f"add 'unlisted.localhost' to sandbox.network.allowedDomains in {path}",
            f"egressd check --settings {path} unlisted.localhost:443"])

    def test_settings_layered_on_yaml(self):
        tmp = harness.short_tempdir("egd-settings-")
        path = os.path.join(tmp, "settings.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"network": {"allowedDomains": ["github.com"]}}, f)
        d = self.start_daemon(make_config(allow=[]), args=["--settings", path])
        sock, head, _ = open_connect(d.endpoint(0), "unlisted.localhost:443")
        sock.close()
        self.assert_blocked(head, "unlisted.localhost", body_has=[
            f"add 'unlisted.localhost' to network.allowedDomains in {path}",
            f"egressd check --config {d.config_path} --settings {path} unlisted.localhost:443"])


class AuthRecordsTest(EgressdTestCase):
    USER, PASSWORD = "alice", "Pa55-w0rd-never-logged"
    WRONG = "Wr0ng-pa55-never-logged"

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(
            allow=[f"127.0.0.1:{o.http.port}", f"127.0.0.1:{o.echo.port}"], users=[(cls.USER, cls.PASSWORD)]))
        cls.ep = cls.d.endpoint(0)

    def test_407_wrong_credentials_curl(self):
        port = self.o.http.port
        mark = self.d.audit_mark()
        r = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "--proxy", self.ep.http_url,
                 "--proxy-user", f"{self.USER}:{self.WRONG}", f"http://127.0.0.1:{port}/secret/path?q=1")
        self.assertEqual(r.stdout.strip(), b"407", r.stderr)
        rec = self.d.wait_audit(start=mark, event="request", status=407)
        self.assertEqual((rec["protocol"], rec["decision"], rec["reason"], rec["error"], rec["error_source"]),
                         ("http", "deny", "auth_failed", "credentials_invalid", "client"), rec)
        self.assertEqual((rec["host"], rec["port"], rec["method"], rec["path"]),
                         ("127.0.0.1", port, "GET", "/secret/path"), rec)
        self.assertNotIn("user", rec)

    def test_407_missing_credentials_connect(self):
        mark = self.d.audit_mark()
        sock, head, _ = open_connect(self.ep, self.o.echo.hostport)
        sock.close()
        self.assertEqual(head.status, 407)
        rec = self.d.wait_audit(start=mark, event="request", status=407)
        self.assertEqual((rec["protocol"], rec["reason"], rec["error"], rec["port"]),
                         ("connect", "auth_failed", "credentials_missing", self.o.echo.port), rec)

    def test_authenticated_records_name_the_user(self):
        port = self.o.http.port
        mark = self.d.audit_mark()
        r = curl("-s", "--proxy", self.ep.http_url, "--proxy-user", f"{self.USER}:{self.PASSWORD}",
                 f"http://127.0.0.1:{port}/ok")
        self.assertEqual(r.returncode, 0, r.stderr)
        rec = self.d.wait_audit(start=mark, event="request", port=port)
        self.assertEqual((rec["user"], rec["decision"], rec["status"]), (self.USER, "allow", 200), rec)
        sock, reply = socks5_open(self.ep, "127.0.0.1", self.o.echo.port, auth=(self.USER, self.PASSWORD))
        sock.close()
        self.assertEqual(reply.rep, 0)
        rec = self.d.wait_audit(start=mark, event="request", protocol="socks5")
        self.assertEqual((rec["user"], rec["decision"], rec["socks_reply"]), (self.USER, "allow", "succeeded"), rec)

    def test_socks5_wrong_password_record(self):
        mark = self.d.audit_mark()
        with self.ep.connect() as s:
            s.sendall(socks5_greeting((2,)))
            self.assertEqual(recv_exact(s, 2), b"\x05\x02")
            s.sendall(socks5_userpass(self.USER, self.WRONG))
            self.assertEqual(recv_exact(s, 2), b"\x01\x01")
        rec = self.d.wait_audit(start=mark, event="request", protocol="socks5")
        self.assertEqual((rec["decision"], rec["reason"], rec["error"], rec["error_source"]),
                         ("deny", "auth_failed", "credentials_invalid", "client"), rec)
        self.assertNotIn("user", rec)
        self.assertNotIn("status", rec)

    def test_socks5_no_acceptable_method_record(self):
        mark = self.d.audit_mark()
        with self.ep.connect() as s:
            s.sendall(socks5_greeting((0,)))
            self.assertEqual(recv_exact(s, 2), b"\x05\xff")
        rec = self.d.wait_audit(start=mark, event="request", protocol="socks5")
        self.assertEqual((rec["reason"], rec["error"]), ("auth_failed", "no_acceptable_method"), rec)

    def test_zz_no_credential_in_any_output(self):
        """Every way a credential reaches the daemon, then a grep of all its output."""
        port = self.o.http.port
        tokens = [basic_auth(self.USER, self.PASSWORD).split()[1], basic_auth(self.USER, self.WRONG).split()[1]]
        secrets = [self.PASSWORD, self.WRONG, *tokens]
        mark = self.d.audit_mark()
        for pw in (self.PASSWORD, self.WRONG):
            curl("-s", "-o", "/dev/null", "--proxy", self.ep.http_url, "--proxy-user", f"{self.USER}:{pw}",
                 f"http://127.0.0.1:{port}/x")
            with self.ep.connect() as s:
                s.sendall(socks5_greeting((2,)))
                recv_exact(s, 2)
                s.sendall(socks5_userpass(self.USER, pw))
                recv_exact(s, 2)
        # Malformed heads that carry a credential: a bad request line, an oversized head.
        for raw in (b"BROKEN\r\nProxy-Authorization: Basic " + tokens[0].encode() + b"\r\n\r\n",
                    b"GET http://127.0.0.1/ HTTP/1.1\r\nProxy-Authorization: Basic " + tokens[1].encode() +
                    b"\r\nX-Pad: " + b"p" * 5000 + b"\r\n\r\n"):
            with self.ep.connect() as s:
                s.sendall(raw)
                head, _ = read_head(s)
                self.assertIn(head.status, (400, 431))
        # Everything above has been accounted for (2 curl + 2 SOCKS5 + 2 malformed).
        self.d.wait_audits(6, start=mark, event="request")
        for log in (self.d.stdout, self.d.stderr):
            for line in list(log.lines):
                for secret in secrets:
                    self.assertNotIn(secret, line, f"a credential in egressd's {log.name}")


if __name__ == "__main__":
    unittest.main()
