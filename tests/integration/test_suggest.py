"""`egressd suggest` end to end (README "Logs and access records", README "Command line"): a report-only
run (`unknown: allow`) with access records to a file, then `suggest` on that file; the
printed allowlist, loaded back with `unknown: deny`, allows every destination of the
run (`egressd check`) and nothing outside its patterns; `--settings` prints the same
as a sandbox-runtime settings file."""

import json
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EgressdTestCase, curl, make_config, open_connect  # noqa: E402

HOSTS = (harness.HOSTS_FILE_TEXT
         + "127.0.0.1 api.alpha.test\n127.0.0.1 www.alpha.test\n127.0.0.1 solo.beta.test\n"
         + "127.0.0.1 blocked.beta.test\n127.0.0.1 gamma.test\n")


def setUpModule():
    harness.setup_module("curl")


def tearDownModule():
    harness.close_origins()


def egressd(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([harness.egressd_binary(), *args], input=stdin, capture_output=True, text=True,
                          timeout=30, env=harness.tool_env())


class SuggestTest(EgressdTestCase):
    def test_report_only_run_becomes_an_allowlist(self):
        echo, http = self.o.echo.port, self.o.http.port
        directory = harness.short_tempdir("egd-suggest-")
        self.addCleanup(shutil.rmtree, directory, True)
        audit = os.path.join(directory, "audit.log")
        # Report-only; the origins' loopback address is re-opened for their ports by IP
        # entries (the guard applies in full), and one name is denied by a rule.
        cfg = make_config(allow=[f"127.0.0.1:{echo}", f"127.0.0.1:{http}"], deny=["blocked.beta.test"],
                          unknown="allow")
        cfg["log"]["audit"] = audit
        d = self.start_daemon(cfg, hosts_text=HOSTS)
        ep = d.endpoint(0)
        for name in ("api.alpha.test", "www.alpha.test", "gamma.test", "gamma.test"):
            self.connect_echo_ok(ep, f"{name}:{echo}")
        r = curl("--proxy", ep.http_url, f"http://solo.beta.test:{http}/suggest")
        self.assertEqual(r.returncode, 0, r.stderr)
        sock, head, _ = open_connect(ep, f"blocked.beta.test:{echo}")
        sock.close()
        self.assertEqual(head.status, 403, head.describe())
        run = {("api.alpha.test", echo), ("www.alpha.test", echo), ("gamma.test", echo), ("solo.beta.test", http)}

        def requests() -> list[dict]:
            if not os.path.exists(audit):
                return []
            with open(audit, encoding="utf-8") as f:
                return [json.loads(line) for line in f if '"event":"request"' in line]

        harness.wait_until(lambda: len(requests()) >= 6, harness.AUDIT_TIMEOUT, "6 request records")
        d.stop()
        recs = requests()
        self.assertEqual({(r["host"], r["port"]) for r in recs if r["reason"] == "report_only"}, run, recs)

        # The suggestion, with a second input on stdin that holds only lines to skip.
        out = egressd("suggest", audit, "-", stdin='not json\n{"event":"tunnel_closed"}\n')
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("1 lines that are not JSON", out.stderr)
        self.assertIn("denied_by_rule", out.stdout)  # the comment says what is left out
        entries = re.findall(r'^    - "([^"]+)"  # (\d+) requests?, ports? ([\d, ]+)', out.stdout, re.M)
        self.assertEqual({(p, int(n), ports) for p, n, ports in entries},
                         {(f"*.alpha.test:{echo}", 2, str(echo)), (f"gamma.test:{echo}", 2, str(echo)),
                          (f"solo.beta.test:{http}", 1, str(http))}, out.stdout)

        # Loaded back with unknown: deny, the printed YAML as it is.
        config = os.path.join(directory, "suggested.yaml")
        with open(config, "w", encoding="utf-8") as f:
            f.write("version: 1\nlisteners:\n  - address: 127.0.0.1:0\n" + out.stdout + "  unknown: deny\n")
        self.assertEqual(egressd("check-config", "--config", config).returncode, 0)
        settings = os.path.join(directory, "suggested.json")
        s = egressd("suggest", "--settings", audit)
        self.assertEqual(s.returncode, 0, s.stderr)
        with open(settings, "w", encoding="utf-8") as f:
            f.write(s.stdout)
        self.assertEqual(sorted(json.loads(s.stdout)["network"]["allowedDomains"]), sorted(p for p, _, _ in entries))
        for option, path in (("--config", config), ("--settings", settings)):
            for host, port in sorted(run):
                with self.subTest(option=option, destination=f"{host}:{port}"):
                    r = egressd("check", option, path, f"{host}:{port}")
                    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)  # allow
            outside = [f"blocked.beta.test:{echo}", f"other.beta.test:{http}", f"alpha.test:{echo}",
                       f"api.alpha.test:443", f"gamma.test:{http}", f"www.gamma.test:{echo}"]
            for target in outside:
                with self.subTest(option=option, outside=target):
                    r = egressd("check", option, path, target)
                    # Not allowed: deny (1) with the YAML's unknown: deny; a settings file
                    # without strictAllowlist asks (3) about unknown destinations.
                    self.assertEqual(r.returncode, 1 if option == "--config" else 3, r.stdout + r.stderr)

    def test_usage(self):
        r = egressd("suggest", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("egressd suggest [--settings] AUDIT_LOG...", r.stdout)
        self.assertNotIn("egressd check-config", r.stdout)
        self.assertEqual(egressd("suggest").returncode, 2)
        self.assertEqual(egressd("suggest", "--json", "x").returncode, 2)
        self.assertEqual(egressd("suggest", "--config", "x", "y").returncode, 2)
        r = egressd("suggest", "/nonexistent/audit.log")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/audit.log", r.stderr)


if __name__ == "__main__":
    unittest.main()
