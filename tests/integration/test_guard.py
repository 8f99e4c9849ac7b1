"""The address guard (README "Policy semantics") seen from outside: an allowed name that resolves to
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
    """`unknown: allow`: unknown destinations pass and are reported; deny rules still deny.
    The guard applies in full, so the origins' loopback address is re-opened for their
    ports by explicit IP entries (nothing else can be reached from here)."""

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(
            allow=[f"localhost:{o.http.port}", f"127.0.0.1:{o.echo.port}", f"127.0.0.1:{o.http.port}"],
            deny=["denied.localhost"], unknown="allow"))
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


class ReportOnlyLocalhostTest(EgressdTestCase):
    """Report-only mode lets unknown names through, not onto loopback: `localhost` and
    `*.localhost` may reach loopback only when a rule allows them by name (README "Policy semantics")."""

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(allow=[f"app.localhost:{o.echo.port}"], unknown="allow"))
        cls.ep = cls.d.endpoint(0)

    def test_connect_localhost_refused(self):
        for name in ("localhost", "wild.localhost"):
            with self.subTest(name=name):
                mark = self.d.audit_mark()
                before = self.o.echo.server.connections
                head = refused(self.ep, f"{name}:{self.o.echo.port}")
                self.assert_blocked(head, name, body_has=["loopback", "127.0.0.1"],
                                    proxy_status_has=["destination_ip_prohibited"])
                rec = self.d.wait_audit(start=mark, event="request", host=name)
                self.assertEqual((rec["decision"], rec["reason"], rec.get("address_class")),
                                 ("deny", "address_denied", "loopback"), rec)
                self.assertEqual(self.o.echo.server.connections, before, "report-only reached loopback")

    def test_plain_http_and_socks5_localhost_refused(self):
        with self.ep.connect() as s:
            target = f"localhost:{self.o.http.port}"
            s.sendall(request_bytes("GET", f"http://{target}/", [("Host", target)]))
            head, _ = read_response(s)
        self.assert_blocked(head, "localhost", body_has=["loopback"])
        sock, reply = socks5_open(self.ep, "localhost", self.o.echo.port)
        sock.close()
        self.assertEqual(reply.rep, 0x02, reply)

    def test_localhost_name_allowed_by_rule_still_may(self):
        mark = self.d.audit_mark()
        self.connect_echo_ok(self.ep, f"app.localhost:{self.o.echo.port}")
        rec = self.d.wait_audit(start=mark, event="request", host="app.localhost")
        self.assertEqual((rec["decision"], rec["reason"]), ("allow", "allowed_by_rule"), rec)


class DeniedRangeWinsForLiteralsTest(EgressdTestCase):
    """`allow: [127.0.0.0/24:PORT]` with `guard.deny_ranges: [127.0.0.3/32]` and a deny
    entry for 127.0.0.4: the denied addresses are refused in every spelling of the
    literal, in every protocol; the rest of the range stays open."""

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.port = o.echo.port
        cls.d = cls.start_class_daemon(make_config(
            allow=[f"127.0.0.0/24:{o.echo.port}", f"[64:ff9b::]/96:{o.echo.port}", "loopy.test"], deny=["127.0.0.4"],
            guard={"deny_ranges": ["127.0.0.3/32"]}))
        cls.ep = cls.d.endpoint(0)

    def assert_listed(self, mark: int, protocol: str, klass: str = "listed") -> dict:
        rec = self.d.wait_audit(start=mark, event="request", protocol=protocol, port=self.port)
        self.assertEqual((rec["host"], rec["decision"], rec["reason"], rec.get("address_class")),
                         ("127.0.0.3", "deny", "address_denied", klass), rec)
        self.assertEqual(rec.get("error_source"), "policy", rec)
        return rec

    def test_connect_every_spelling_refused(self):
        for literal in ("127.0.0.3", "[::ffff:127.0.0.3]", "2130706435", "127.0.0.0x3"):
            with self.subTest(literal=literal):
                mark = self.d.audit_mark()
                head = refused(self.ep, f"{literal}:{self.port}")
                self.assert_blocked(head, "127.0.0.3", body_has=["listed"],
                                    proxy_status_has=["destination_ip_prohibited"])
                self.assert_listed(mark, "connect")

    def test_plain_http_refused(self):
        with self.ep.connect() as s:
            mark = self.d.audit_mark()
            target = f"127.0.0.3:{self.port}"
            s.sendall(request_bytes("GET", f"http://{target}/", [("Host", target)]))
            head, _ = read_response(s)
        self.assert_blocked(head, "127.0.0.3", proxy_status_has=["destination_ip_prohibited"])
        self.assert_listed(mark, "http")

    def test_socks5_ipv4_and_ipv6_refused(self):
        for host in ("127.0.0.3", "::ffff:127.0.0.3"):
            with self.subTest(host=host):
                mark = self.d.audit_mark()
                sock, reply = socks5_open(self.ep, host, self.port)
                sock.close()
                self.assertEqual(reply.rep, 0x02, reply)
                self.assert_listed(mark, "socks5")

    def test_nat64_spelling_refused_inside_an_allowed_ipv6_range(self):
        # [64:ff9b::]/96 is allowed; the deny entry 127.0.0.4 and the listed 127.0.0.3
        # refuse the NAT64 addresses that carry them.
        for host, klass in (("64:ff9b::7f00:4", "deny_listed"), ("64:ff9b::7f00:3", "listed")):
            with self.subTest(host=host):
                mark = self.d.audit_mark()
                sock, reply = socks5_open(self.ep, host, self.port)
                sock.close()
                self.assertEqual(reply.rep, 0x02, reply)
                rec = self.d.wait_audit(start=mark, event="request", protocol="socks5", port=self.port)
                self.assertEqual((rec["host"], rec["reason"], rec.get("address_class"), rec.get("rule")),
                                 (host, "address_denied", klass, f"[64:ff9b::]/96:{self.port}"), rec)

    def test_rest_of_the_range_open(self):
        self.connect_echo_ok(self.ep, f"127.0.0.1:{self.port}")
        self.connect_echo_ok(self.ep, f"loopy.test:{self.port}")


class EmbeddedIpv4AndMetadataTest(EgressdTestCase):
    """Names behind which are a Teredo address whose client is 127.0.0.1, a local-use
    NAT64 (64:ff9b:1::/48) address carrying 127.0.0.1 or 10.0.0.1, and the ECS task
    metadata endpoint (metadata, not merely link-local): refused with the class of what
    they carry. Nothing is dialled. (Azure's public 168.63.129.16 is left to the unit
    tests: a broken guard would dial it.)"""

    NAMES = {
        "teredo.test": ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
        "nat64local.test": ("64:ff9b:1::7f00:1", "loopback"),
        "nat64local96.test": ("64:ff9b:1:abcd::a00:1", "private_network"),
        "ecs.test": ("169.254.170.2", "metadata"),
    }

    @classmethod
    def setUpClass(cls):
        extra = "".join(f"{address} {name}\n" for name, (address, _) in cls.NAMES.items())
        cls.d = cls.start_class_daemon(make_config(allow=list(cls.NAMES)), hosts_text=harness.HOSTS_FILE_TEXT + extra)
        cls.ep = cls.d.endpoint(0)

    def test_connect_refused_with_class(self):
        for name, (address, klass) in self.NAMES.items():
            with self.subTest(name=name):
                mark = self.d.audit_mark()
                head = refused(self.ep, f"{name}:443")
                self.assert_blocked(head, name, body_has=[address],
                                    proxy_status_has=["destination_ip_prohibited", klass])
                rec = self.d.wait_audit(start=mark, event="request", host=name)
                self.assertEqual((rec["reason"], rec.get("address_class"), rec.get("refused_address")),
                                 ("address_denied", klass, address), rec)

    def test_socks5_refused(self):
        for name in self.NAMES:
            with self.subTest(name=name):
                sock, reply = socks5_open(self.ep, name, 443)
                sock.close()
                self.assertEqual(reply.rep, 0x02, reply)


if __name__ == "__main__":
    unittest.main()
