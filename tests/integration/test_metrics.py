"""Metrics and the admin endpoint's route table (README "Admin endpoint", "Metrics"), through
the real binary: requests counted by registrable domain, protocol, decision and reason;
tunnel and connection gauges; bytes by domain (an open tunnel's growing per relay batch,
plain HTTP's per exchange); guard refusals; reloads and the config hash; the `domain`
label capped at metrics.max_domains (+ `_other`) under 5,000 invented names; the text
accepted by `promtool check metrics`; the README's metrics table matching /metrics; and
`GET /`, 404 and 405 from the route table.

Names resolve through the harness's hosts file (localhost, private.test -> 10.1.2.3);
denied names are never resolved, so no network is needed."""

import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (Deadline, EgressdTestCase, make_config, open_connect, request_bytes,  # noqa: E402
                     roundtrip, wait_until)

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def setUpModule():
    harness.setup_module()


def tearDownModule():
    harness.close_origins()


def admin_request(address: str, method: str, path: str) -> tuple[int, dict[str, str], str]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=harness.IO_TIMEOUT)
    try:
        conn.request(method, path)
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read().decode()
    finally:
        conn.close()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """(family name -> type from `# TYPE`, samples as (name, labels, value))."""
    types: dict[str, str] = {}
    samples: list[tuple[str, dict[str, str], float]] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            if not m:
                raise AssertionError(f"unparsable sample line {line!r}")
            samples.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return types, samples


def value(samples, name: str, **labels: str) -> float | None:
    """The sample of `name` whose labels include `labels` (exactly one), or None."""
    found = [v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items())]
    if len(found) > 1:
        raise AssertionError(f"{len(found)} samples of {name} match {labels}")
    return found[0] if found else None


def refuse_connect(ep: harness.Endpoint, target: str) -> int:
    """CONNECT to a name the policy denies; the status of the refusal."""
    sock, head, _ = open_connect(ep, target)
    sock.close()
    return head.status


def readme_metrics_table() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, label names) from the README's "### Metrics" table."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    at = text.find("\n### Metrics\n")
    if at < 0:
        raise AssertionError("README.md has no '### Metrics' section")
    section = text[at + 1:]
    end = section.find("\n#", 1)
    section = section if end < 0 else section[:end]
    rows: dict[str, tuple[str, set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`egressd_"):
            labels = {x.strip("` ") for x in cells[2].split(",") if x.strip("` ")} - {"—", "-"}
            rows[cells[0].strip("`")] = (cells[1], labels)
    if not rows:
        raise AssertionError("README.md's Metrics section has no table rows")
    return rows


class MetricsTest(EgressdTestCase):
    """One daemon with an admin address; each test uses names of its own."""

    @classmethod
    def setUpClass(cls):
        o = harness.origins()
        cls.d = cls.start_class_daemon(make_config(
            allow=[f"localhost:{o.echo.port}", f"localhost:{o.http.port}", "private.test", "loopy.test"],
            admin={"address": "127.0.0.1:0"}))
        cls.admin = cls.d.wait_log("admin listening")["address"]
        cls.ep = cls.d.endpoint(0)

    def scrape(self) -> tuple[dict[str, str], list]:
        status, headers, body = admin_request(self.admin, "GET", "/metrics")
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get("content-type"), CONTENT_TYPE)
        return parse_metrics(body)

    def test_denied_request_counted_under_its_registrable_domain(self):
        name = "".join(random.choices(string.ascii_lowercase, k=12))
        self.assertEqual(refuse_connect(self.ep, f"a.b.{name}.co.uk:443"), 403)
        _, samples = self.scrape()
        self.assertEqual(value(samples, "egressd_requests_total", domain=f"{name}.co.uk", protocol="connect",
                               decision="deny", reason="unknown_denied"), 1.0)
        # Plain HTTP: the same family, protocol http.
        sock = self.ep.connect()
        with sock:
            sock.sendall(request_bytes("GET", f"http://www.{name}.example/x", [("Host", f"www.{name}.example")]))
            head, _ = harness.read_head(sock)
        self.assertEqual(head.status, 403)
        _, samples = self.scrape()
        self.assertEqual(value(samples, "egressd_requests_total", domain=f"{name}.example", protocol="http",
                               decision="deny", reason="unknown_denied"), 1.0)

    def test_open_tunnel_gauges_and_connect_latency(self):
        _, before = self.scrape()
        allowed = value(before, "egressd_requests_total", domain="localhost", protocol="connect",
                        decision="allow", reason="allowed_by_rule") or 0.0
        connects = value(before, "egressd_upstream_connect_seconds_count") or 0.0
        sock, head, rest = open_connect(self.ep, f"localhost:{self.o.echo.port}")
        self.assertEqual(head.status, 200)
        try:
            self.assertEqual(roundtrip(sock, b"ping", rest), b"ping")
            _, samples = self.scrape()
            self.assertEqual(value(samples, "egressd_requests_total", domain="localhost", protocol="connect",
                                   decision="allow", reason="allowed_by_rule"), allowed + 1)
            self.assertGreaterEqual(value(samples, "egressd_tunnels_open"), 1.0)
            self.assertGreaterEqual(value(samples, "egressd_connections_open"), 1.0)
            self.assertEqual(value(samples, "egressd_upstream_connect_seconds_count"), connects + 1)
        finally:
            sock.close()
        wait_until(lambda: value(self.scrape()[1], "egressd_tunnels_open") == 0.0, 5.0,
                   "egressd_tunnels_open back to 0 after the tunnel closed")

    def bytes_total(self, direction: str, domain: str = "localhost") -> float:
        return value(self.scrape()[1], f"egressd_bytes_{direction}_total", domain=domain) or 0.0

    def test_open_tunnel_bytes_grow_per_batch_before_it_closes(self):
        # README "Metrics": a tunnel adds its bytes per relay batch, so a scrape during a
        # long transfer sees them; 1 MiB through a CONNECT tunnel that stays open.
        n = 1 << 20
        down0, up0 = self.bytes_total("down"), self.bytes_total("up")
        sock, head, rest = open_connect(self.ep, f"localhost:{self.o.http.port}")
        self.assertEqual(head.status, 200)
        with sock:
            def fetch(rest: bytes) -> bytes:
                request = request_bytes("GET", f"/big?n={n}", [("Host", f"localhost:{self.o.http.port}")])
                sock.sendall(request)
                head, rest = harness.read_head(sock, buf=rest)
                self.assertEqual(head.status, 200)
                body, rest = harness.read_body(sock, head, rest)
                self.assertEqual(len(body), n)
                return rest

            rest = fetch(rest)
            # The client holds the whole response; the relay adds its batch when it
            # returns to wait, a moment after the last byte went out.
            wait_until(lambda: self.bytes_total("down") >= down0 + n, 5.0,
                       "egressd_bytes_down_total to count 1 MiB of an open tunnel")
            self.assertGreater(self.bytes_total("up"), up0)
            self.assertGreaterEqual(value(self.scrape()[1], "egressd_tunnels_open"), 1.0)
            rest = fetch(rest)
            wait_until(lambda: self.bytes_total("down") >= down0 + 2 * n, 5.0,
                       "egressd_bytes_down_total to grow with a second 1 MiB in the same open tunnel")
        # A tunnel's bytes are counted once: the close adds nothing more than it moved.
        wait_until(lambda: value(self.scrape()[1], "egressd_tunnels_open") == 0.0, 5.0,
                   "egressd_tunnels_open back to 0 after the tunnel closed")
        self.assertLess(self.bytes_total("down"), down0 + 2 * n + 4096)

    def test_upgraded_http_tunnel_counts_while_open(self):
        # An upgraded exchange becomes a tunnel: its relayed bytes count per batch too.
        data = b"w" * (256 * 1024)
        down0, up0 = self.bytes_total("down"), self.bytes_total("up")
        hostport = f"localhost:{self.o.http.port}"
        with self.ep.connect() as sock:
            sock.sendall(request_bytes("GET", f"http://{hostport}/ws",
                                       [("Host", hostport), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                        ("Sec-WebSocket-Version", "13")]))
            head, rest = harness.read_head(sock)
            self.assertEqual(head.status, 101, head.describe())
            self.assertEqual(roundtrip(sock, data, rest), rest + data)
            wait_until(lambda: self.bytes_total("up") >= up0 + len(data)
                       and self.bytes_total("down") >= down0 + len(data), 5.0,
                       "both byte counters to count an open upgraded tunnel's 256 KiB")

    def test_plain_http_exchange_adds_its_bytes(self):
        down0, up0 = self.bytes_total("down"), self.bytes_total("up")
        body = b"x" * 5000
        sock = self.ep.connect()
        with sock:
            url = f"http://localhost:{self.o.http.port}"
            sock.sendall(request_bytes("POST", f"{url}/echo", [("Host", f"localhost:{self.o.http.port}"),
                                                              ("Content-Length", str(len(body)))], body))
            head, rest = harness.read_head(sock)
            self.assertEqual(head.status, 200)
            _, rest = harness.read_body(sock, head, rest)
            sock.sendall(request_bytes("GET", f"{url}/big?n=100000", [("Host", f"localhost:{self.o.http.port}")]))
            head, rest = harness.read_head(sock, buf=rest)
            self.assertEqual(head.status, 200)
            got, _ = harness.read_body(sock, head, rest)
            self.assertEqual(len(got), 100000)
            # account() ends each exchange, before the next request is read: both are in.
            wait_until(lambda: self.bytes_total("down") >= down0 + 100000 + len(body), 5.0,
                       "egressd_bytes_down_total to count both responses")
        # Request bodies up (the echo's 5000, the GET's none); responses with their heads down.
        self.assertEqual(self.bytes_total("up"), up0 + len(body))
        self.assertLess(self.bytes_total("down"), down0 + 100000 + len(body) + 8192)

    def test_guard_refusal_counted_by_class(self):
        _, before = self.scrape()
        n = value(before, "egressd_guard_refusals_total", **{"class": "private_network"})
        self.assertEqual(n is not None, True, "guard classes are exposed before their first refusal")
        self.assertEqual(refuse_connect(self.ep, "private.test:443"), 403)
        _, samples = self.scrape()
        self.assertEqual(value(samples, "egressd_guard_refusals_total", **{"class": "private_network"}), n + 1)
        self.assertGreaterEqual(value(samples, "egressd_requests_total", domain="private.test", protocol="connect",
                                      decision="deny", reason="address_denied"), 1.0)

    def test_dns_lookup_counted_once_then_cached(self):
        _, before = self.scrape()
        ok = value(before, "egressd_dns_lookups_total", result="ok")
        timed = value(before, "egressd_dns_lookup_seconds_count")
        # loopy.test is in the hosts file (127.0.0.1): resolved, then refused by the guard.
        self.assertEqual(refuse_connect(self.ep, "loopy.test:443"), 403)
        _, samples = self.scrape()
        self.assertEqual(value(samples, "egressd_dns_lookups_total", result="ok"), ok + 1)
        self.assertEqual(value(samples, "egressd_dns_lookup_seconds_count"), timed + 1)
        self.assertEqual(value(samples, "egressd_guard_refusals_total", **{"class": "loopback"}),
                         value(before, "egressd_guard_refusals_total", **{"class": "loopback"}) + 1)
        # The second request is answered by the cache: no lookup.
        self.assertEqual(refuse_connect(self.ep, "loopy.test:443"), 403)
        _, again = self.scrape()
        self.assertEqual(value(again, "egressd_dns_lookups_total", result="ok"), ok + 1)

    def test_promtool_accepts_the_text(self):
        refuse_connect(self.ep, "promtool.example:443")
        status, _, body = admin_request(self.admin, "GET", "/metrics")
        self.assertEqual(status, 200)
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool is not installed (Debian package `prometheus`; scripts/deps.sh test)")
        r = subprocess.run([promtool, "check", "metrics"], input=body.encode(), capture_output=True,
                           timeout=harness.TOOL_TIMEOUT)
        self.assertEqual(r.returncode, 0, (r.stdout + r.stderr).decode())
        self.assertEqual((r.stdout + r.stderr).strip(), b"", "promtool's lint found problems")

    def test_readme_table_matches_metrics(self):
        refuse_connect(self.ep, "readme.example:443")
        types, samples = self.scrape()
        exposed = {n for n in types if n.startswith("egressd_")}
        table = readme_metrics_table()
        self.assertEqual(sorted(set(table) - exposed), [], "in the README but not in /metrics")
        self.assertEqual(sorted(exposed - set(table)), [], "in /metrics but not in the README's table")
        suffixes = ("_bucket", "_sum", "_count")
        for name, (kind, labels) in table.items():
            with self.subTest(metric=name):
                self.assertEqual(types[name], kind)
                seen: set[str] = set()
                for n, ls, _ in samples:
                    if n == name or (kind == "histogram" and n in {name + s for s in suffixes}):
                        seen |= set(ls) - {"le"}
                self.assertEqual(seen, labels)

    def test_build_and_config_info(self):
        _, samples = self.scrape()
        builds = [ls for n, ls, v in samples if n == "egressd_build_info" and v == 1.0]
        self.assertEqual(len(builds), 1)
        self.assertRegex(builds[0]["version"], r"^\d+\.\d+\.\d+")
        hashes = [ls["hash"] for n, ls, v in samples if n == "egressd_config_info" and v == 1.0]
        self.assertEqual(len(hashes), 1)
        self.assertRegex(hashes[0], r"^[0-9a-f]{16}$")


class ReloadMetricsTest(EgressdTestCase):
    def test_reloads_counted_and_config_hash_follows(self):
        # reload.watch off: only the SIGHUPs below reload, so the counts are exact.
        d = self.start_daemon(make_config(allow=["a.example"], admin={"address": "127.0.0.1:0"},
                                          reload={"watch": False}))
        admin = d.wait_log("admin listening")["address"]

        def state():
            status, _, body = admin_request(admin, "GET", "/metrics")
            self.assertEqual(status, 200)
            _, samples = parse_metrics(body)
            hashes = [ls["hash"] for n, ls, v in samples if n == "egressd_config_info"]
            self.assertEqual(len(hashes), 1, hashes)
            return (value(samples, "egressd_reloads_total", result="success"),
                    value(samples, "egressd_reloads_total", result="failure"), hashes[0])

        ok0, failed0, hash0 = state()
        self.assertEqual((ok0, failed0), (0.0, 0.0))
        d.write_config(make_config(allow=["a.example", "b.example"], admin={"address": "127.0.0.1:0"},
                                   reload={"watch": False}))
        mark = d.log_mark()
        d.send_signal(signal.SIGHUP)
        d.wait_log("reloaded", start=mark)
        ok1, failed1, hash1 = state()
        self.assertEqual((ok1, failed1), (1.0, 0.0))
        self.assertNotEqual(hash1, hash0)
        d.write_config("version: 1\nno_such_key: 1\n")
        mark = d.log_mark()
        d.send_signal(signal.SIGHUP)
        d.wait_log("reload failed; the previous configuration stays in force", start=mark)
        self.assertEqual(state(), (1.0, 1.0, hash1))


class DomainCapTest(EgressdTestCase):
    def test_invented_names_stay_within_the_cap(self):
        cap = 50
        d = self.start_daemon(make_config(admin={"address": "127.0.0.1:0"}, metrics={"max_domains": cap},
                                          log={"format": "json", "level": "info", "audit": "off"}))
        admin = d.wait_log("admin listening")["address"]
        ep = d.endpoint(0)
        total = 5000
        rng = random.Random(1)
        seconds = 120.0
        deadline = Deadline(seconds)
        sent = 0
        while sent < total and not deadline.expired():
            label = "".join(rng.choices(string.ascii_lowercase + string.digits, k=10))
            target = f"www.{label}-{sent}.com:443" if sent % 2 else f"{label}.n{sent}.net:80"
            sock = ep.connect()
            with sock:
                sock.sendall(request_bytes("CONNECT", target, [("Host", target)]))
                head, _ = harness.read_head(sock)
            self.assertEqual(head.status, 403)
            sent += 1
        self.assertEqual(sent, total, f"only {sent} of {total} requests in {seconds:.0f}s")
        status, _, body = admin_request(admin, "GET", "/metrics")
        self.assertEqual(status, 200)
        _, samples = parse_metrics(body)
        series = [(ls, v) for n, ls, v in samples if n == "egressd_requests_total"]
        domains = {ls["domain"] for ls, _ in series}
        self.assertLessEqual(len(domains), cap + 1, sorted(domains)[:10])
        self.assertIn("_other", domains)
        self.assertEqual(sum(v for _, v in series), float(total))
        other = sum(v for ls, v in series if ls["domain"] == "_other")
        self.assertGreaterEqual(other, float(total - cap))


class RouteTableTest(EgressdTestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon(make_config(admin={"address": "127.0.0.1:0"}))
        cls.line = cls.d.wait_log("admin listening")
        cls.admin = cls.line["address"]

    def test_index_lists_the_routes_as_the_startup_log_does(self):
        status, headers, body = admin_request(self.admin, "GET", "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("content-type"), "application/json")
        routes = json.loads(body)["routes"]
        paths = [r["path"] for r in routes]
        self.assertEqual(sorted(paths), ["/", "/healthz", "/metrics", "/readyz", "/v1/decisions",
                                         "/v1/decisions/{name}", "/v1/denials", "/v1/pending", "/v1/reload"])
        self.assertEqual(self.line["paths"].split(), paths)
        for r in routes:
            with self.subTest(route=r["path"]):
                self.assertTrue(r["help"])
                if "GET" not in r["methods"]:
                    self.assertIn(r["methods"], (["DELETE"], ["POST"]))
                    continue
                # Every listed GET route answers GET.
                self.assertEqual(admin_request(self.admin, "GET", r["path"])[0], 200)

    def test_unknown_path_is_404_json(self):
        status, headers, body = admin_request(self.admin, "GET", "/nope?x=1")
        self.assertEqual(status, 404)
        self.assertEqual(headers.get("content-type"), "application/json")
        doc = json.loads(body)
        self.assertEqual((doc["error"], doc["path"]), ("not_found", "/nope"))
        self.assertIn("/metrics", doc["routes"])

    def test_wrong_method_is_405_with_allow(self):
        for path in ("/metrics", "/", "/healthz"):
            with self.subTest(path=path):
                status, headers, body = admin_request(self.admin, "POST", path)
                self.assertEqual(status, 405)
                self.assertEqual(headers.get("allow"), "GET, HEAD")
                self.assertEqual(json.loads(body)["allow"], ["GET", "HEAD"])

    def test_head_has_length_and_no_body(self):
        status, headers, body = admin_request(self.admin, "HEAD", "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(body, "")
        self.assertGreater(int(headers["content-length"]), 0)
        self.assertEqual(headers.get("content-type"), CONTENT_TYPE)


free_port = harness.free_port


def start_prometheus(test: unittest.TestCase, target: str, rule_files: tuple[str, ...] = ()) -> tuple[str, subprocess.Popen, str]:
    """A real Prometheus server (Debian package `prometheus`; the test is skipped without
    it) scraping `target` as job `egressd` every second and loading `rule_files`, returned
    once its /-/ready answers 200; stopped at the test's cleanup. Returns its address (a
    free port now: a tiny race), process and log file."""
    binary = shutil.which("prometheus")
    if binary is None:
        test.skipTest("the prometheus server is not installed (Debian package `prometheus`)")
    workdir = tempfile.mkdtemp(prefix="egd-prom-")
    test.addCleanup(shutil.rmtree, workdir, True)
    config = os.path.join(workdir, "prometheus.yml")
    rules = "".join(f"rule_files: ['{os.path.abspath(r)}']\n" for r in rule_files[:1])
    with open(config, "w", encoding="utf-8") as f:
        f.write("global: {scrape_interval: 1s, evaluation_interval: 1s}\n" + rules +
                "scrape_configs:\n"
                "  - job_name: egressd\n"
                f"    static_configs: [{{targets: ['{target}']}}]\n")
    address = f"127.0.0.1:{free_port()}"
    log_path = os.path.join(workdir, "prometheus.log")
    log = open(log_path, "wb")
    test.addCleanup(log.close)
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={workdir}/data",
                             f"--web.listen-address={address}"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=harness.tool_env())

    def stop():
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    test.addCleanup(stop)

    def state() -> str:
        if proc.poll() is not None:
            return "exited"
        # The query API answers 503 until the TSDB is open; /-/ready says when it is.
        try:
            with urllib.request.urlopen(f"http://{address}/-/ready", timeout=2) as res:
                return "ready" if res.status == 200 else ""
        except OSError:
            return ""  # not listening yet, or 503 while it starts
    try:
        got = harness.wait_until(state, 60.0, "prometheus /-/ready", interval=0.1)
    except harness.HarnessError:
        got = "not ready within 60s"
    if got != "ready":
        test.fail(f"prometheus {got} (exit {proc.poll()})\n{log_tail(log_path)}")
    return address, proc, log_path


def log_tail(path: str) -> str:
    """The last 3000 characters of a server's log, for a failure message."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()[-3000:]


class PrometheusScrapeTest(EgressdTestCase):
    """A real Prometheus server (Debian package `prometheus`) scrapes egressd every second
    and answers, through its query API, egressd_requests_total for the test's domain and
    the growing bytes of a tunnel that is still open."""

    def start_prometheus(self, target: str) -> str:
        address, self.prom_proc, self.prom_log = start_prometheus(self, target)
        return address

    def query(self, address: str, promql: str) -> list:
        url = f"http://{address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as res:  # ready: start_prometheus waited
            doc = json.load(res)
        self.assertEqual(doc.get("status"), "success", doc)
        return doc["data"]["result"]

    def test_prometheus_scrapes_requests_by_domain(self):
        d = self.start_daemon(make_config(admin={"address": "127.0.0.1:0"}))
        admin = d.wait_log("admin listening")["address"]
        name = "".join(random.choices(string.ascii_lowercase, k=12))
        self.assertEqual(refuse_connect(d.endpoint(0), f"api.{name}.co.uk:443"), 403)
        prom = self.start_prometheus(admin)
        promql = f'egressd_requests_total{{domain="{name}.co.uk",decision="deny"}}'
        deadline = Deadline(60.0)
        result: list = []
        while not deadline.expired():
            if self.prom_proc.poll() is not None:
                break
            result = self.query(prom, promql)
            if result:
                break
            time.sleep(0.25)  # polling a server that scrapes once a second; no event to wait on
        if not result:
            tail = log_tail(self.prom_log)
            try:
                with urllib.request.urlopen(f"http://{prom}/api/v1/targets", timeout=5) as res:
                    targets = res.read().decode()[:2000]
            except OSError as e:
                targets = repr(e)
            self.fail(f"Prometheus did not return {promql} within 60s (exit {self.prom_proc.poll()}); "
                      f"targets: {targets}\n{tail}")
        self.assertEqual(len(result), 1, result)
        self.assertEqual(result[0]["metric"]["protocol"], "connect")
        self.assertEqual(result[0]["metric"]["reason"], "unknown_denied")
        self.assertEqual(float(result[0]["value"][1]), 1.0)
        up = self.query(prom, 'up{job="egressd"}')
        self.assertEqual([float(r["value"][1]) for r in up], [1.0])

    def wait_query(self, prom: str, promql: str, pred, what: str, timeout: float = 60.0) -> list:
        """Polls `promql` until pred(result) holds (bounded); fails with the last result."""
        deadline = Deadline(timeout)
        result: list = []
        while not deadline.expired() and self.prom_proc.poll() is None:
            result = self.query(prom, promql)
            if result and pred(result):
                return result
            time.sleep(0.25)  # polling a server that scrapes once a second; no event to wait on
        self.fail(f"Prometheus: {what} within {timeout:.0f}s (exit {self.prom_proc.poll()}); last {promql}: {result}")

    def test_prometheus_sees_bytes_grow_in_an_open_tunnel(self):
        o = harness.origins()
        d = self.start_daemon(make_config(allow=[f"localhost:{o.http.port}"], admin={"address": "127.0.0.1:0"}))
        admin = d.wait_log("admin listening")["address"]
        prom = self.start_prometheus(admin)
        promql = 'egressd_bytes_down_total{domain="localhost"}'
        n = 1 << 20
        sock, head, rest = open_connect(d.endpoint(0), f"localhost:{o.http.port}")
        self.assertEqual(head.status, 200)
        with sock:
            for i in (1, 2):
                sock.sendall(request_bytes("GET", f"/big?n={n}", [("Host", f"localhost:{o.http.port}")]))
                head, rest = harness.read_head(sock, buf=rest)
                self.assertEqual(head.status, 200)
                body, rest = harness.read_body(sock, head, rest)
                self.assertEqual(len(body), n)
                # Still open: Prometheus's own scrapes must show the bytes moved so far.
                self.wait_query(prom, promql, lambda r, i=i: float(r[0]["value"][1]) >= i * n,
                                f"{promql} >= {i} MiB while the tunnel is open")
            tunnels = self.query(prom, "egressd_tunnels_open")
            self.assertEqual([float(r["value"][1]) for r in tunnels], [1.0])


if __name__ == "__main__":
    unittest.main()
