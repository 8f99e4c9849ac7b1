"""The Grafana dashboard and the Prometheus alert rules of deploy/ (README "Metrics" >
"Dashboard and alerts"), checked against the real thing: `promtool check rules` accepts
the rules file; the dashboard has the expected structure; and with the real egressd
scraped every second by a real Prometheus server that loads the rules file, every PromQL
expression of the dashboard and of the rules is accepted by Prometheus's query API, each
panel's main query returns data for the test's traffic, the rules load healthy, and the
alerts the traffic should raise (a reload failure, a metadata probe, hook timeouts, a hook
failure, an overloaded hook) fire. The traffic includes an exec confirmation hook
(`unknown: ask`) that allows one host, remembering it, answers garbage for another and
sleeps past `hook.timeout` for three more while a fourth is refused as overloaded.
Prometheus loads a copy of the rules file that differs in one line: EgressdHookTimeouts
waits `for: 1s` instead of its 5 minutes.

Grafana's own variables ($__rate_interval, $__range, $__interval) become `1m`, `$job`
becomes the scrape job and `$instance` the admin address. The bytes panels are checked
for data only when egressd exports the bytes families. Skipped without the prometheus
and promtool binaries (Debian package `prometheus`)."""

import concurrent.futures
import json
import math
import os
import random
import re
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_metrics  # noqa: E402  (its helpers only; its tests stay in its own module)
from harness import Deadline, EgressdTestCase, make_config, open_connect, roundtrip  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "egressd.json")
RULES = os.path.join(ROOT, "deploy", "prometheus", "egressd-rules.yml")
JOB = "egressd"  # the job name the rules file assumes
SELECTOR = 'job=~"$job",instance=~"$instance"'
BYTES_FAMILIES = ("egressd_bytes_up_total", "egressd_bytes_down_total")
HOOK_TIMEOUT_RULE = "EgressdHookTimeouts"

# The test's exec hook (a process per question; README "Confirmation hook"): allows
# allow.dash.test for 10 minutes (a remembered answer), answers garbage for bad.dash.test,
# outlives hook.timeout for slow*.dash.test (the daemon gives up on it), denies the rest.
HOOK_PROGRAM = r'''#!/usr/bin/env python3
import json, sys, time
host = json.loads(sys.stdin.readline())["host"]
if host == "allow.dash.test":
    print(json.dumps({"decision": "allow", "remember": "ttl", "ttl_seconds": 600}))
elif host == "bad.dash.test":
    print("no idea")
elif host.startswith("slow"):
    time.sleep(6)
else:
    print(json.dumps({"decision": "deny"}))
'''
SLOW_HOSTS = ("slow1.dash.test", "slow2.dash.test", "slow3.dash.test")
HOOK_HOSTS = ("allow.dash.test", "bad.dash.test", "over.dash.test") + SLOW_HOSTS


def setUpModule():
    harness.setup_module()


def tearDownModule():
    harness.close_origins()


def load_dashboard() -> dict:
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def query_panels(dash: dict) -> list[dict]:
    """Every panel that shows data (rows are layout only), nested row panels included."""
    out = []
    for p in dash["panels"]:
        if p.get("type") == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def substitute(expr: str, job: str, instance: str) -> str:
    """A dashboard expression as Grafana would send it, variables given values."""
    for var in ("$__rate_interval", "$__range", "$__interval"):
        expr = expr.replace(var, "1m")
    expr = expr.replace("$job", job).replace("$instance", instance)
    if "$" in expr:
        raise AssertionError(f"an unknown variable is left in {expr!r}")
    return expr


def rules_for_test(directory: str) -> str:
    """A copy of the rules file in `directory` in which EgressdHookTimeouts waits `for: 1s`
    rather than its 5 minutes, so that the test sees it fire; nothing else differs."""
    with open(RULES, encoding="utf-8") as f:
        text = f.read()
    head, sep, rest = text.partition(f"- alert: {HOOK_TIMEOUT_RULE}\n")
    block, nxt, tail = rest.partition("- alert: ")
    block, n = re.subn(r"^(\s+)for: 5m$", r"\1for: 1s", block, flags=re.M)
    if not sep or n != 1:
        raise AssertionError(f"{RULES}: {HOOK_TIMEOUT_RULE} with a `for: 5m` of its own is not there")
    return harness.write_file(directory, "egressd-rules.yml", head + sep + block + nxt + tail)


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise unittest.SkipTest(f"{binary} is not installed (Debian package `prometheus`; scripts/deps.sh test)")
    return path


class DashboardFilesTest(unittest.TestCase):
    """The files alone: promtool and the dashboard's structure."""

    def test_promtool_checks_the_rules(self):
        promtool = need("promtool")
        r = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, timeout=harness.TOOL_TIMEOUT)
        out = (r.stdout + r.stderr).decode()
        self.assertEqual(r.returncode, 0, out)
        self.assertIn("SUCCESS", out)

    def test_every_rule_has_severity_summary_and_description(self):
        # promtool check rules does not require them; read the text, as YAML would.
        with open(RULES, encoding="utf-8") as f:
            text = f.read()
        alerts = re.findall(r"^\s*- alert: (\S+)$", text, re.M)
        self.assertGreaterEqual(len(alerts), 4, alerts)
        blocks = re.split(r"^\s*- alert: ", text, flags=re.M)[1:]
        for name, block in zip(alerts, blocks):
            with self.subTest(alert=name):
                self.assertRegex(block, r"\n\s+severity: (critical|warning|info)\n")
                self.assertRegex(block, r"\n\s+summary: \S")
                self.assertRegex(block, r"\n\s+description: \S")

    def test_dashboard_structure(self):
        dash = load_dashboard()
        self.assertGreaterEqual(dash["schemaVersion"], 36)
        self.assertTrue(dash["uid"])
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        self.assertEqual((variables["datasource"]["type"], variables["datasource"]["query"]),
                         ("datasource", "prometheus"))
        for name in ("job", "instance"):
            self.assertEqual(variables[name]["type"], "query")
            self.assertEqual(variables[name]["datasource"]["uid"], "${datasource}")
        panels = query_panels(dash)
        self.assertGreaterEqual(len(panels), 10)
        ids = [p["id"] for p in dash["panels"]] + [q["id"] for p in dash["panels"] for q in p.get("panels", [])]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        titles = [p["title"] for p in panels]
        self.assertEqual(len(titles), len(set(titles)), "panel titles are unique")
        for p in panels:
            with self.subTest(panel=p["title"]):
                self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"})
                self.assertTrue(p["targets"])
                self.assertTrue(p.get("description"))
                for t in p["targets"]:
                    self.assertTrue(t["expr"].strip())
                    self.assertEqual(t["datasource"]["uid"], "${datasource}")
                    # Every selector is narrowed by the job and instance variables.
                    selectors = re.findall(r"\b(?:egressd_[a-z_]+|up)\{([^}]*)\}", t["expr"])
                    self.assertTrue(selectors, t["expr"])
                    for s in selectors:
                        self.assertIn(SELECTOR, s, t["expr"])

    def test_dashboard_uses_every_family_of_the_readme_table(self):
        exprs = " ".join(t["expr"] for p in query_panels(load_dashboard()) for t in p["targets"])
        for name in test_metrics.readme_metrics_table():
            with self.subTest(metric=name):
                self.assertRegex(exprs, rf"\b{name}(_bucket)?\{{")


class DashboardPrometheusTest(EgressdTestCase):
    """The real egressd, scraped every second by a real Prometheus that loads the rules."""

    def start_prometheus(self, target: str) -> str:
        need("prometheus")
        self.prom, self.prom_proc, self.prom_log = test_metrics.start_prometheus(
            self, target, rule_files=(rules_for_test(self.tmp),))
        return self.prom

    def api(self, path: str, **params: str) -> dict:
        """GET /api/v1/<path>; a rejected query fails the test with Prometheus's error."""
        url = f"http://{self.prom}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as res:
                doc = json.load(res)
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            self.fail(f"Prometheus rejected {params or path}: HTTP {e.code} {body}")
        self.assertEqual(doc.get("status"), "success", doc)
        return doc["data"]

    def query(self, promql: str) -> list:
        return self.api("query", query=promql)["result"]

    def wait_for(self, pred, seconds: float, what: str):
        """Poll a server that scrapes and evaluates once a second (no event to wait on)."""
        deadline = Deadline(seconds)
        while True:
            if self.prom_proc.poll() is not None:
                self.fail(f"prometheus exited ({self.prom_proc.returncode}) waiting for {what}\n{test_metrics.log_tail(self.prom_log)}")
            got = pred()
            if got:
                return got
            if deadline.expired():
                self.fail(f"{what}: not within {seconds:.0f}s\n{test_metrics.log_tail(self.prom_log)}")
            time.sleep(0.25)

    def traffic(self, d: harness.Egressd, name: str, dns_name: str) -> None:
        """Allowed tunnels, denials of unknown names, and a guard refusal after a lookup."""
        ep = d.endpoint(0)
        for _ in range(3):
            sock, head, rest = open_connect(ep, f"localhost:{self.o.echo.port}")
            with sock:
                self.assertEqual(head.status, 200)
                self.assertEqual(roundtrip(sock, b"x" * 1000, rest), b"x" * 1000)
            self.assertEqual(test_metrics.refuse_connect(ep, f"www.{name}.example:443"), 403)
        # A name of its own each round: a cached answer would not count as a lookup.
        self.assertEqual(test_metrics.refuse_connect(ep, f"{dns_name}:443"), 403)

    def pool_traffic(self, d: harness.Egressd) -> None:
        """Plain HTTP, a new client connection per request: the first one connects, the
        second takes the upstream the first left in the worker's idle pool, where it then
        stays (the "Upstream connections" row). After the reloads, which empty the pool."""
        ep = d.endpoint(0)
        target = f"127.0.0.1:{self.o.http.port}"
        for i in range(2):
            with ep.connect() as s:
                s.sendall(harness.request_bytes("GET", f"http://{target}/pool{i}",
                                                [("Host", target), ("Connection", "close")]))
                r, _ = harness.read_response(s)
                self.assertEqual(r.status, 200, r.describe())

    def hook_traffic(self, d: harness.Egressd, admin: str) -> None:
        """Hook questions ending allow (remembered), bad_answer, timeout (three at once,
        filling hook.max_pending) and overloaded (a fourth new destination meanwhile)."""
        ep = d.endpoint(0)
        sock, head, rest = open_connect(ep, f"allow.dash.test:{self.o.echo.port}")
        with sock:
            self.assertEqual(head.status, 200)
            self.assertEqual(roundtrip(sock, b"ping", rest), b"ping")
        self.assertEqual(test_metrics.refuse_connect(ep, "bad.dash.test:443"), 403)
        with concurrent.futures.ThreadPoolExecutor(len(SLOW_HOSTS)) as pool:
            slow = [pool.submit(test_metrics.refuse_connect, ep, f"{h}:443") for h in SLOW_HOSTS]

            def pending() -> bool:
                _, samples = test_metrics.parse_metrics(test_metrics.admin_request(admin, "GET", "/metrics")[2])
                return test_metrics.value(samples, "egressd_hook_pending") == len(SLOW_HOSTS)
            harness.wait_until(pending, 5.0, "the slow questions pending")
            self.assertEqual(test_metrics.refuse_connect(ep, "over.dash.test:443"), 403)
            self.assertEqual([f.result(timeout=harness.IO_TIMEOUT) for f in slow], [403] * len(SLOW_HOSTS))
        _, samples = test_metrics.parse_metrics(test_metrics.admin_request(admin, "GET", "/metrics")[2])
        for outcome, n in (("allow", 1), ("bad_answer", 1), ("timeout", len(SLOW_HOSTS)), ("overloaded", 1)):
            self.assertEqual(test_metrics.value(samples, "egressd_hook_questions_total", outcome=outcome), n, outcome)
        self.assertEqual(test_metrics.value(samples, "egressd_remembered_answers"), 1)

    def test_dashboard_queries_and_rules_against_real_prometheus(self):
        self.tmp = harness.short_tempdir("egd-dash-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        program = harness.write_file(self.tmp, "hook.py", HOOK_PROGRAM)
        os.chmod(program, 0o755)
        hosts = (harness.HOSTS_FILE_TEXT + "10.7.0.1 r1.dns.test\n10.7.0.2 r2.dns.test\n" +
                 "".join(f"127.0.0.1 {h}\n" for h in HOOK_HOSTS))

        def config(*more: str) -> dict:
            # 127.0.0.1 re-opens loopback to the guard, for the hook-allowed name.
            return make_config(allow=[f"localhost:{self.o.echo.port}", "*.dns.test", "metadata.test", "127.0.0.1",
                                      *more],
                               unknown="ask", admin={"address": "127.0.0.1:0"},
                               limits={"upstream_idle_timeout": "10m"},
                               hook={"exec": [program], "timeout": "2s", "max_pending": len(SLOW_HOSTS)})
        d = self.start_daemon(config(), hosts_text=hosts)
        admin = d.wait_log("admin listening")["address"]
        name = "".join(random.choices(string.ascii_lowercase, k=12))
        # Before the first scrape, so that every series exists when Prometheus first sees
        # it and the second round shows as a rate.
        self.traffic(d, name, "r1.dns.test")
        self.start_prometheus(admin)
        self.wait_for(lambda: self.query(f'sum_over_time(up{{job="{JOB}"}}[1m]) >= 2'), 30.0,
                      "two scrapes of egressd")
        _, _, body = test_metrics.admin_request(admin, "GET", "/metrics")
        types, _ = test_metrics.parse_metrics(body)
        has_bytes = all(f in types for f in BYTES_FAMILIES)

        # The second round, seen by Prometheus: traffic, hook questions, a tunnel held
        # open, a metadata probe, a reload that succeeds and one that fails.
        self.traffic(d, name, "r2.dns.test")
        self.hook_traffic(d, admin)
        self.assertEqual(test_metrics.refuse_connect(d.endpoint(0), "metadata.test:80"), 403)
        held, head, _ = open_connect(d.endpoint(0), f"localhost:{self.o.echo.port}")
        self.addCleanup(held.close)
        self.assertEqual(head.status, 200)
        d.write_config(config("more.example"))
        mark = d.log_mark()
        d.send_signal(signal.SIGHUP)
        d.wait_log("reloaded", start=mark)
        d.write_config("version: 1\nno_such_key: 1\n")
        mark = d.log_mark()
        d.send_signal(signal.SIGHUP)
        d.wait_log("reload failed; the previous configuration stays in force", start=mark)
        self.pool_traffic(d)

        # Every expression is accepted; each panel's main query returns a positive value.
        panels = query_panels(load_dashboard())
        for p in panels:
            for t in p["targets"]:
                with self.subTest(panel=p["title"], ref=t["refId"]):
                    self.query(substitute(t["expr"], JOB, admin))

        def has_data(promql: str) -> bool:
            return any(math.isfinite(float(r["value"][1])) and float(r["value"][1]) > 0
                       for r in self.query(promql))

        for p in panels:
            expr = substitute(p["targets"][0]["expr"], JOB, admin)
            if not has_bytes and any(f in expr for f in BYTES_FAMILIES):
                continue  # the bytes families are not exported by this build
            with self.subTest(panel=p["title"]):
                self.wait_for(lambda: has_data(expr), 30.0, f"panel {p['title']!r}: data for {expr}")
        self.assertIn(name + ".example",
                      {r["metric"]["domain"] for r in self.query(substitute(
                          next(p for p in panels if p["title"] == "Top denied domains")["targets"][0]["expr"],
                          JOB, admin))})

        # The rules: loaded, healthy, every expression accepted as a query.
        def group():
            groups = [g for g in self.api("rules")["groups"] if g["name"] == "egressd"]
            evaluated = groups and groups[0]["rules"] and all(
                not r.get("lastEvaluation", "0001").startswith("0001") for r in groups[0]["rules"])
            return groups[0] if evaluated else None
        g = self.wait_for(group, 30.0, "the egressd rule group evaluated")
        with open(RULES, encoding="utf-8") as f:
            names = re.findall(r"^\s*- alert: (\S+)$", f.read(), re.M)
        self.assertEqual(sorted(r["name"] for r in g["rules"]), sorted(names))
        for r in g["rules"]:
            with self.subTest(rule=r["name"]):
                self.assertEqual(r["health"], "ok", r.get("lastError"))
                self.query(r["query"])

        # The traffic's alerts fire (for: 0, EgressdHookTimeouts for: 1s here); the proxy
        # is not reported down.
        want = {"EgressdMetadataProbe", "EgressdReloadFailed", HOOK_TIMEOUT_RULE, "EgressdHookFailing",
                "EgressdHookOverloaded"}

        seen: dict = {}

        def firing():
            seen.clear()
            seen.update((a["labels"]["alertname"], a) for a in self.api("alerts")["alerts"])
            return dict(seen) if all(seen.get(a, {}).get("state") == "firing" for a in want) else None
        try:
            alerts = self.wait_for(firing, 30.0, " and ".join(sorted(want)) + " firing")
        except AssertionError as e:
            states = {n: a["state"] for n, a in seen.items()}
            raise AssertionError(f"{e}; alert states: {states}") from None
        self.assertEqual(alerts["EgressdHookFailing"]["labels"]["outcome"], "bad_answer")
        self.assertNotIn("EgressdDown", alerts)
        self.assertNotIn("EgressdAbsent", alerts)


if __name__ == "__main__":
    unittest.main()
