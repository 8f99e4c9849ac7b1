"""The address guard (DESIGN.md §2.3) seen from outside: an allowed name that resolves to
loopback is refused with the class named, unless an explicit IP entry re-opens it;
`localhost` / `*.localhost` may stay on loopback; IP literals are judged by IP rules;
report-only mode (`unknown: allow`).

Names resolve through the hosts file the harness passes in EGRESSD_HOSTS_FILE:
  127.0.0.1 localhost, loopy.test, app.localhost;   ::1 loopy6.test
  and harness.GUARDED_NAMES: private.test 10.1.2.3, metadata.test 169.254.169.254,
  metadata4.test 100.100.100.200, meta6.test fd00:ec2::254 (nothing is dialled there)
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EgressdTestCase, curl, make_config, open_connect, read_response, request_bytes, socks5_open  # noqa: E402


def setUpModule():
    harness.setup_module("curl", "openssl")


def tearDownModule():
    harness.close_origins()


def refused(ep: harness.Endpoint, target: str) -> harness.Head:
    sock, head, _ = open_connect(ep, target)
    sock.close()
    return head


class NameResolvesToLoopbackTest(EgressdTestCase):
    """Names are allowed, no IP entry: loopback behind them is refused."""

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        allow = ["loopy.test", "app.localhost", "localhost"]
        if o.echo6 is not None:
            allow.append("loopy6.test")
        cls.d = cls.start_class_daemon(make_config(allow=allow))
        cls.ep = cls.d.endpoint(0)

    def assert_loopback_refusal(self, head: harness.Head, host: str) -> None:
        self.assert_blocked(head, host, body_has=["loopback"], proxy_status_has=["destination_ip_prohibited"])

    def test_connect_name_to_loopback_refused(self):
        d = self.d
        mark = d.audit_mark()
        before = self.o.echo.server.connections
        head = refused(self.ep, f"loopy.test:{self.o.echo.port}")
        self.assert_loopback_refusal(head, "loopy.test")
        rec = d.wait_audit(start=mark, event="request", host="loopy.test")
        self.assertEqual((rec["decision"], rec["reason"]), ("deny", "address_denied"))
        self.assertEqual(self.o.echo.server.connections, before, "the guard let a connection reach the origin")

    def test_connect_name_to_ipv6_loopback_refused(self):
        self.o.require_ipv6()
        head = refused(self.ep, f"loopy6.test:{self.o.echo6.port}")
        self.assert_loopback_refusal(head, "loopy6.test")

    def test_plain_http_name_to_loopback_refused(self):
        with self.ep.connect() as s:
            target = f"loopy.test:{self.o.http.port}"
            s.sendall(request_bytes("GET", f"http://{target}/", [("Host", target)]))
            head, _ = read_response(s)
        self.assert_loopback_refusal(head, "loopy.test")

    def test_curl_name_to_loopback_refused(self):
        r = curl("--proxy", self.ep.http_url, "-o", "/dev/null", "-w", "%{http_code}",
                 f"http://loopy.test:{self.o.http.port}/")
        self.assertEqual(r.stdout, b"403", r.stderr)

    def test_socks5_name_to_loopback_not_allowed(self):
        sock, reply = socks5_open(self.ep, "loopy.test", self.o.echo.port)
        sock.close()
        self.assertEqual(reply.rep, 0x02, reply)

    def test_localhost_names_may_stay_on_loopback(self):
        for name in ("localhost", "app.localhost"):
            with self.subTest(name=name):
                self.connect_echo_ok(self.ep, f"{name}:{self.o.echo.port}")

    def test_ip_literal_judged_by_ip_rules_alone(self):
        mark = self.d.audit_mark()
        head = refused(self.ep, f"127.0.0.1:{self.o.echo.port}")
        self.assert_blocked(head, "127.0.0.1")
        rec = self.d.wait_audit(start=mark, event="request", port=self.o.echo.port, host="127.0.0.1")
        self.assertEqual((rec["decision"], rec["reason"]), ("deny", "unknown_denied"))


class PrivateAndMetadataAddressesTest(EgressdTestCase):
    """Allowed names behind which are a private (RFC 1918) address, the link-local
    metadata endpoint 169.254.169.254 and cloud metadata addresses (IPv4 and the AWS
    IPv6 one): refused by the guard on CONNECT, plain HTTP and SOCKS5, the class named
    in the refusal and in the access record. No network is needed: nothing is dialled."""

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon(make_config(allow=list(harness.GUARDED_NAMES)))
        cls.ep = cls.d.endpoint(0)

    def assert_guard_record(self, mark: int, name: str, protocol: str) -> None:
        address, klass, _ = harness.GUARDED_NAMES[name]
        rec = self.d.wait_audit(start=mark, event="request", host=name, protocol=protocol)
        self.assertEqual((rec["decision"], rec["reason"], rec.get("address_class"), rec.get("refused_address")),
                         ("deny", "address_denied", klass, address), rec)
        self.assertEqual((rec["rule"], rec.get("error_source")), (name, "policy"), rec)
        self.assertNotIn("upstream", rec, "a refused destination has no upstream")

    def test_connect_refused_with_class(self):
        for name, (address, klass, words) in harness.GUARDED_NAMES.items():
            with self.subTest(name=name):
                mark = self.d.audit_mark()
                head = refused(self.ep, f"{name}:443")
                self.assert_blocked(head, name, body_has=[words, address],
                                    proxy_status_has=["destination_ip_prohibited", klass])
                self.assert_guard_record(mark, name, "connect")

    def test_plain_http_refused_with_class(self):
        for name, (address, klass, words) in harness.GUARDED_NAMES.items():
            with self.subTest(name=name), self.ep.connect() as s:
                mark = self.d.audit_mark()
                s.sendall(request_bytes("GET", f"http://{name}/latest/meta-data/", [("Host", name)]))
                head, _ = read_response(s)
                self.assert_blocked(head, name, body_has=[words, address],
                                    proxy_status_has=["destination_ip_prohibited", klass])
                self.assert_guard_record(mark, name, "http")

    def test_socks5_not_allowed_02(self):
        for name in harness.GUARDED_NAMES:
            with self.subTest(name=name):
                mark = self.d.audit_mark()
                sock, reply = socks5_open(self.ep, name, 443)
                sock.close()
                self.assertEqual(reply.rep, 0x02, reply)
                self.assert_guard_record(mark, name, "socks5")


class ExplicitIpReopensTest(EgressdTestCase):
    """An explicit IP allow entry re-opens its range for names that resolve into it."""

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        allow = ["loopy.test", "127.0.0.1"]
        if o.echo6 is not None:
            allow += ["loopy6.test", "[::1]"]
        cls.d = cls.start_class_daemon(make_config(allow=allow))
        cls.ep = cls.d.endpoint(0)

    def test_name_to_loopback_allowed(self):
        mark = self.d.audit_mark()
        self.connect_echo_ok(self.ep, f"loopy.test:{self.o.echo.port}")
        rec = self.d.wait_audit(start=mark, event="request", host="loopy.test")
        self.assertEqual(rec["decision"], "allow")

    def test_name_to_ipv6_loopback_allowed(self):
        self.o.require_ipv6()
        self.connect_echo_ok(self.ep, f"loopy6.test:{self.o.echo6.port}")

    def test_plain_http_by_name(self):
        r = curl("--proxy", self.ep.http_url, f"http://loopy.test:{self.o.http.port}/reopened")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_ipv4_shorthand_is_canonicalised(self):
        mark = self.d.audit_mark()
        self.connect_echo_ok(self.ep, f"127.1:{self.o.echo.port}")
        rec = self.d.wait_audit(start=mark, event="request", port=self.o.echo.port)
        self.assertEqual(rec["host"], "127.0.0.1")

    def test_other_names_still_unknown(self):
        head = refused(self.ep, f"app.localhost:{self.o.echo.port}")
        self.assert_blocked(head, "app.localhost")


class PortNarrowedIpEntryTest(EgressdTestCase):
    """`127.0.0.1:PORT` re-opens loopback for that port only."""

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(allow=["loopy.test", f"127.0.0.1:{o.echo.port}"]))
        cls.ep = cls.d.endpoint(0)

    def test_that_port(self):
        self.connect_echo_ok(self.ep, f"loopy.test:{self.o.echo.port}")

    def test_other_port(self):
        head = refused(self.ep, f"loopy.test:{self.o.http.port}")
        self.assert_blocked(head, "loopy.test", body_has=["loopback"])


class DenyRangesTest(EgressdTestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon(make_config(allow=["localhost"], guard={"deny_ranges": ["127.0.0.0/8"]}))
        cls.ep = cls.d.endpoint(0)

    def test_listed_range_refuses_even_localhost(self):
        mark = self.d.audit_mark()
        head = refused(self.ep, f"localhost:{self.o.echo.port}")
        self.assert_blocked(head, "localhost")
        rec = self.d.wait_audit(start=mark, event="request", host="localhost")
        self.assertEqual((rec["decision"], rec["reason"]), ("deny", "address_denied"))


class ReportOnlyTest(EgressdTestCase):
    """`unknown: allow`: unknown destinations pass and are reported; deny rules still deny."""

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(allow=[f"localhost:{o.http.port}"], deny=["denied.localhost"],
                                                   unknown="allow"))
        cls.ep = cls.d.endpoint(0)

    def test_unknown_destination_passes_and_is_reported(self):
        mark = self.d.audit_mark()
        self.connect_echo_ok(self.ep, f"app.localhost:{self.o.echo.port}")
        rec = self.d.wait_audit(start=mark, event="request", host="app.localhost")
        self.assertEqual((rec["decision"], rec["reason"]), ("allow", "report_only"))

    def test_plain_http_unknown_passes(self):
        mark = self.d.audit_mark()
        r = curl("--proxy", self.ep.http_url, f"http://app.localhost:{self.o.http.port}/report-only")
        self.assertEqual(r.returncode, 0, r.stderr)
        rec = self.d.wait_audit(start=mark, event="request", host="app.localhost", protocol="http")
        self.assertEqual(rec["reason"], "report_only")

    def test_known_destination_is_allowed_by_rule(self):
        mark = self.d.audit_mark()
        r = curl("--proxy", self.ep.http_url, f"http://localhost:{self.o.http.port}/known")
        self.assertEqual(r.returncode, 0, r.stderr)
        rec = self.d.wait_audit(start=mark, event="request", host="localhost", protocol="http")
        self.assertEqual(rec["reason"], "allowed_by_rule")

    def test_deny_rule_still_denies(self):
        head = refused(self.ep, "denied.localhost:443")
        self.assert_blocked(head, "denied.localhost")


if __name__ == "__main__":
    unittest.main()
