"""`egressd check` through the real binary (README "Command line"): the final answer (the
proxy's, after the address guard), the exit status (0 allow, 1 deny, 3 ask, 2 usage
errors, 4 a configuration that does not load), the URL form, the JSON fields naming the
rule's file, line, path and preset, and the embedded default config.

No daemon and no network: names resolve through the harness's hosts file (CARES_HOSTS
and EGRESSD_HOSTS_FILE), loopy.test -> 127.0.0.1, private.test -> 10.1.2.3; nothing
else resolves, because the configured DNS server (127.0.0.1:9) never answers.
"""

import json
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLI_TIMEOUT = 30.0

POLICY = ('version: 1\n'
          'listeners: [{address: "127.0.0.1:0"}]\n'
          'policy:\n'
          '  allow: ["github.com", "loopy.test", "private.test", "nosuch.test", "example.org:8080",\n'
          '          "plain.example:80", "127.0.0.0/24:8080", "@npm"]\n'
          '  deny: ["bad.example.com"]\n'
          '  unknown: deny\n'
          '  guard: {deny_ranges: ["127.0.0.3/32"]}\n'
          'dns: {servers: ["127.0.0.1:9"], timeout: 500ms}\n')


def setUpModule():
    harness.egressd_binary()  # fails the module at once when EGRESSD_BIN is not set


class CheckTest(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.dir = harness.short_tempdir("egd-check-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.config = cls.write("policy.yaml", POLICY)
        cls.hosts = cls.write("hosts", harness.HOSTS_FILE_TEXT)

    @classmethod
    def write(cls, name: str, text: str) -> str:
        return harness.write_file(cls.dir, name, text)

    def run_check(self, *args: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([harness.egressd_binary(), "check", *args], stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=CLI_TIMEOUT,
                                  env=harness.tool_env(harness.hosts_env(self.hosts)), cwd=self.dir)
        except subprocess.TimeoutExpired:
            raise harness.HarnessError(f"egressd check {' '.join(args)} did not finish in {CLI_TIMEOUT}s") from None

    def check_json(self, target: str, *extra: str, config: str | None = None,
                   rc: int | None = None) -> dict:
        args = ["--config", config or self.config] if config != "" else []
        r = self.run_check(*args, target, "--json", *extra)
        out_text = r.stdout.decode()
        self.assertEqual(len(out_text.strip().splitlines()), 1, out_text + r.stderr.decode())
        out = json.loads(out_text)
        if rc is not None:
            self.assertEqual(r.returncode, rc, (out, r.stderr.decode()))
        return out

    # exit status -------------------------------------------------------------------
    def test_exit_status_is_the_answer(self):
        self.assertEqual(self.check_json("github.com:443", rc=0)["decision"], "allow")
        self.assertEqual(self.check_json("bad.example.com:443", rc=1)["reason"], "denied_by_rule")
        self.assertEqual(self.check_json("unknown.example.net:443", rc=1)["reason"], "unknown_denied")
        self.assertEqual(self.check_json("exa mple.com:443", rc=1)["reason"], "invalid_host")
        ask = self.write("ask.yaml", POLICY.replace("unknown: deny", "unknown: ask"))
        out = self.check_json("unknown.example.net:443", config=ask, rc=3)
        self.assertEqual((out["decision"], out["reason"]), ("ask", "unknown_ask"))

    def test_usage_errors_exit_2(self):
        for args in ([], ["a.example", "b.example"], ["github.com:0"], ["github.com:65536"],
                     ["socks5://github.com:1080"], ["ftp://github.com/"], ["https:///path"]):
            with self.subTest(args=args):
                r = self.run_check("--config", self.config, *args)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertEqual(r.stdout, b"")
                self.assertIn(b"egressd:", r.stderr)

    def test_config_that_does_not_load_exits_4(self):
        bad = self.write("bad.yaml", POLICY + "colour: blue\n")
        r = self.run_check("--config", bad, "github.com:443")
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertIn(b"colour", r.stderr)
        r = self.run_check("--config", os.path.join(self.dir, "missing.yaml"), "github.com:443")
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        bad_settings = self.write("bad.json", "{not json")
        r = self.run_check("--settings", bad_settings, "github.com:443")
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)

    def test_help_documents_exit_status(self):
        r = subprocess.run([harness.egressd_binary(), "--help"], capture_output=True, timeout=CLI_TIMEOUT)
        self.assertEqual(r.returncode, 0)
        for words in (b"0 allow, 1 deny, 3 ask", b"4 the configuration", b"https://host/path"):
            self.assertIn(words, r.stdout)

    # URL form ----------------------------------------------------------------------
    def test_url_targets(self):
        cases = [
            ("https://github.com/anthropics/x?y=1#z", "github.com", 443, "allow"),
            ("HTTPS://GitHub.com", "github.com", 443, "allow"),
            ("http://github.com/", "github.com", 80, "allow"),
            ("http://example.org:8080/x", "example.org", 8080, "allow"),
            ("https://example.org/x", "example.org", 443, "deny"),
            ("http://plain.example/index.html", "plain.example", 80, "allow"),
            ("https://user:secret@github.com:443/", "github.com", 443, "allow"),
            ("http://[::1]:8080/", "::1", 8080, "deny"),
            ("http://127.0.0.1:8080/", "127.0.0.1", 8080, "allow"),
        ]
        for target, host, port, decision in cases:
            with self.subTest(target=target):
                out = self.check_json(target, rc={"allow": 0, "deny": 1}[decision])
                self.assertEqual((out["host"], out["port"], out["decision"]), (host, port, decision), out)

    # JSON fields -------------------------------------------------------------------
    def test_json_names_the_rules_file_line_path_and_preset(self):
        out = self.check_json("github.com:443", rc=0)
        self.assertEqual((out["rule"], out["rule_file"], out["rule_line"], out["rule_path"], out["preset"]),
                         ("github.com", self.config, 4, "policy.allow[0]", None), out)
        out = self.check_json("registry.npmjs.org:443", rc=0)
        self.assertEqual((out["rule_file"], out["rule_line"], out["rule_path"], out["preset"]),
                         (self.config, 5, "policy.allow[7]", "@npm"), out)
        out = self.check_json("unknown.example.net:443", rc=1)
        self.assertIsNone(out["rule"], out)
        self.assertNotIn("rule_file", out)

    def test_text_names_rule_origin(self):
        r = self.run_check("--config", self.config, "registry.npmjs.org")
        self.assertEqual(r.returncode, 0, r.stderr)
        text = r.stdout.decode()
        self.assertIn("decision: allow", text)
        self.assertIn(f"@npm ({self.config}:5 policy.allow[7])", text)

    # embedded default --------------------------------------------------------------
    def test_without_config_the_embedded_default(self):
        # The default allows the @github preset and denies unknown destinations.
        out = self.check_json("api.github.com:443", config="", rc=0)
        self.assertEqual((out["decision"], out["preset"]), ("allow", "@github"), out)
        self.assertEqual(self.check_json("unknown.example.net:443", config="", rc=1)["reason"], "unknown_denied")

    # the final answer --------------------------------------------------------------
    def test_resolve_gives_the_proxys_final_answer(self):
        out = self.check_json("loopy.test:443", "--resolve", rc=1)
        self.assertEqual((out["decision"], out["reason"], out["rule"]), ("deny", "address_denied", "loopy.test"), out)
        self.assertEqual((out["policy_decision"], out["policy_reason"]), ("allow", "allowed_by_rule"), out)
        self.assertEqual((out["address_class"], out["refused_address"]), ("loopback", "127.0.0.1"), out)
        self.assertEqual(out["addresses"], [{"address": "127.0.0.1", "verdict": "loopback"}], out)
        out = self.check_json("private.test:443", "--resolve", rc=1)
        self.assertEqual((out["reason"], out["address_class"]), ("address_denied", "private_network"), out)
        out = self.check_json("nosuch.test:443", "--resolve", rc=1)
        self.assertEqual((out["decision"], out["reason"], out["addresses"]), ("deny", "resolve_failed", []), out)
        self.assertTrue(out.get("resolve_error"), out)
        # Without --resolve a name's answer is the policy's.
        self.assertEqual(self.check_json("loopy.test:443", rc=0)["decision"], "allow")

    def test_resolve_text_keeps_the_address_lines(self):
        r = self.run_check("--config", self.config, "loopy.test:443", "--resolve")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        text = r.stdout.decode()
        self.assertIn("decision: deny", text)
        self.assertIn("reason:   address_denied (loopback: 127.0.0.1)", text)
        self.assertIn("policy:   allow (allowed_by_rule), then refused by the address guard", text)
        self.assertIn("address:  127.0.0.1 -> loopback", text)

    def test_ip_literal_in_a_denied_range_is_denied(self):
        """127.0.0.0/24:8080 is allowed, 127.0.0.3/32 listed: the listed range wins, in
        every spelling of the literal, with or without --resolve."""
        for target in ("127.0.0.3:8080", "[::ffff:127.0.0.3]:8080", "2130706435:8080", "http://127.0.0.3:8080/"):
            for extra in ((), ("--resolve",)):
                with self.subTest(target=target, extra=extra):
                    out = self.check_json(target, *extra, rc=1)
                    self.assertEqual((out["host"], out["decision"], out["reason"], out["address_class"]),
                                     ("127.0.0.3", "deny", "address_denied", "listed"), out)
        out = self.check_json("127.0.0.5:8080", rc=0)
        self.assertEqual((out["decision"], out["reason"]), ("allow", "allowed_by_rule"), out)


# A decisions file as a person would write it (README "Decisions file").
DECISIONS = """\
# answers kept by hand
decisions:
  - domain: pkgs.example.org
    scope: domain
    decision: allow
    answered_by: "admin"
    answered_at: 2026-12-03T18:32:23Z
    reason: "package mirror"
  - host: api.example.net
    port: 8443
    decision: deny
    answered_by: "hook"
    answered_at: 2026-12-01T09:00:00+01:00
  - {domain: example.com, decision: allow}
  - {host: github.com, decision: deny}
"""


class RememberedTest(unittest.TestCase):
    """`check` with a decisions_file: a remembered answer decides where no rule does,
    and is reported as the rule that decided; a rule always wins over it."""
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.dir = harness.short_tempdir("egd-remembered-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.decisions = harness.write_file(cls.dir, "decisions.yaml", DECISIONS)
        cls.config = harness.write_file(
            cls.dir, "remembered.yaml",
            POLICY.replace("unknown: deny", "unknown: ask") +
            f"hook: {{console: true}}\ndecisions_file: {cls.decisions}\n")

    def run_check(self, *args: str, config: str | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([harness.egressd_binary(), "check", "--config", config or self.config, *args],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT,
                                  env=harness.tool_env(), cwd=self.dir)
        except subprocess.TimeoutExpired:
            raise harness.HarnessError(f"egressd check {' '.join(args)} did not finish in {CLI_TIMEOUT}s") from None

    def check_json(self, target: str, rc: int) -> dict:
        r = self.run_check(target, "--json")
        self.assertEqual(r.returncode, rc, r.stdout + r.stderr)
        self.assertEqual(r.stderr, "")
        return json.loads(r.stdout)

    def test_a_remembered_domain_covers_the_host_and_its_siblings(self):
        for target in ("pkgs.example.org:443", "cdn.pkgs.example.org:443", "a.b.pkgs.example.org:22"):
            with self.subTest(target=target):
                out = self.check_json(target, rc=0)
                self.assertEqual((out["decision"], out["reason"]), ("allow", "remembered_allow"), out)
                self.assertEqual((out["rule"], out["rule_file"], out["rule_line"], out["rule_path"], out["preset"]),
                                 ("remembered allow **.pkgs.example.org", self.decisions, 3, "decisions[0]", None),
                                 out)
                self.assertEqual(out["remembered"], {"scope": "domain", "answered_by": "admin",
                                                     "answered_at": "2026-12-03T18:32:23Z",
                                                     "reason": "package mirror"}, out)

    def test_a_remembered_host_port_answers_that_port_only(self):
        out = self.check_json("api.example.net:8443", rc=1)
        self.assertEqual((out["decision"], out["reason"], out["rule"], out["rule_line"]),
                         ("deny", "remembered_deny", "remembered deny api.example.net:8443", 9), out)
        # Written with an offset, reported in UTC; a missing reason is empty.
        self.assertEqual(out["remembered"], {"scope": "host_port", "answered_by": "hook",
                                             "answered_at": "2026-12-01T08:00:00Z", "reason": ""}, out)
        out = self.check_json("api.example.net:443", rc=3)
        self.assertEqual((out["decision"], out["reason"], out["rule"]), ("ask", "unknown_ask", None), out)
        self.assertNotIn("remembered", out)

    def test_an_uncovered_host_is_asked_about(self):
        for target in ("other.example.org:443", "evilpkgs.example.org:443", "example.net:443"):
            with self.subTest(target=target):
                out = self.check_json(target, rc=3)
                self.assertEqual((out["decision"], out["reason"], out["rule"]), ("ask", "unknown_ask", None), out)
                self.assertNotIn("remembered", out)

    def test_configured_rules_win_over_remembered_answers(self):
        # `deny: [bad.example.com]` against a remembered allow of example.com.
        out = self.check_json("bad.example.com:443", rc=1)
        self.assertEqual((out["decision"], out["reason"], out["rule"]), ("deny", "denied_by_rule", "bad.example.com"),
                         out)
        self.assertNotIn("remembered", out)
        # `allow: [github.com]` against a remembered deny of github.com.
        out = self.check_json("github.com:443", rc=0)
        self.assertEqual((out["decision"], out["reason"], out["rule"]), ("allow", "allowed_by_rule", "github.com"),
                         out)
        self.assertNotIn("remembered", out)
        # The remembered allow still answers example.com's other hosts.
        self.assertEqual(self.check_json("www.example.com:443", rc=0)["reason"], "remembered_allow")

    def test_text_names_the_decisions_file_and_line(self):
        r = self.run_check("cdn.pkgs.example.org")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("decision: allow", r.stdout)
        self.assertIn(f"rule:     remembered allow **.pkgs.example.org  [{self.decisions}:3 decisions[0]]", r.stdout)
        self.assertIn("reason:   remembered_allow", r.stdout)

    def test_a_corrupt_decisions_file_is_a_config_error(self):
        bad = harness.write_file(self.dir, "bad-decisions.yaml", DECISIONS + "  - {host: x.example, scope: wide}\n")
        config = harness.write_file(self.dir, "bad.yaml", POLICY + f"decisions_file: {bad}\n")
        r = self.run_check("pkgs.example.org", "--json", config=config)
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertIn(f"{bad}:16:", r.stderr)
        self.assertIn("decisions[4].scope", r.stderr)

    def test_the_readmes_example_is_a_decisions_file(self):
        """README "Decisions file" shows a file: it must load and mean what it says."""
        readme = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "README.md")
        with open(readme, encoding="utf-8") as f:
            section = f.read().split("\n### Decisions file\n", 1)[1].split("\n## ", 1)[0]
        example = section.split("\n```\n", 1)[1].split("\n```", 1)[0]
        self.assertIn("decisions:", example)
        decisions = harness.write_file(self.dir, "readme-decisions.yaml", example + "\n")
        config = harness.write_file(self.dir, "readme.yaml", POLICY + f"decisions_file: {decisions}\n")
        r = self.run_check("registry.npmjs.org", "--json", config=config)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stderr, "")
        # @npm in POLICY allows registry.npmjs.org by rule; a sibling is the memory's.
        r = self.run_check("docs.npmjs.org", "--json", config=config)
        self.assertEqual(json.loads(r.stdout)["reason"], "remembered_allow", r.stdout + r.stderr)
        r = self.run_check("api.example.com:8443", "--json", config=config)
        self.assertEqual(json.loads(r.stdout)["reason"], "remembered_deny", r.stdout + r.stderr)

    def test_a_missing_decisions_file_remembers_nothing(self):
        config = harness.write_file(self.dir, "fresh.yaml",
                                    POLICY + f"decisions_file: {os.path.join(self.dir, 'not-yet.yaml')}\n")
        r = self.run_check("pkgs.example.org", "--json", config=config)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(json.loads(r.stdout)["reason"], "unknown_denied")


if __name__ == "__main__":
    unittest.main()
