"""Configuration through the real binary (issue #13): command-line arguments that must
not be ignored, strict settings JSON, the sandbox's ports from --settings, --config and
--settings layered, the audit path, validation warnings, the hook's keys, and what a
SIGHUP reload says."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EgressdTestCase, LineLog, make_config, socks5_open, to_yaml  # noqa: E402

CLI_TIMEOUT = 20.0  # one egressd command that must exit on its own


def setUpModule():
    harness.setup_module(need_binary=True)


def tearDownModule():
    harness.close_origins()


def egressd(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Runs `egressd ARGS...`; a command that does not exit in time fails the test
    (`run FILE` used to serve the embedded default instead of refusing)."""
    try:
        return subprocess.run([harness.egressd_binary(), *args], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=CLI_TIMEOUT, cwd=cwd, env=harness.tool_env())
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"egressd {' '.join(args)} did not exit within {CLI_TIMEOUT}s") from e


free_port = harness.free_port


class TempDirTest(harness.TempDirTest):
    def yaml_file(self, name: str = "egressd.yaml", **kw) -> str:
        return self.write(name, to_yaml(make_config(**kw)))


class ArgumentsTest(TempDirTest):
    def test_run_with_a_bare_file_is_a_usage_error(self):
        path = self.yaml_file()
        for args in (["run", path], [path]):
            with self.subTest(args=args):
                r = egressd(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(f"'{path}'", r.stderr)
                self.assertIn(f"did you mean", r.stderr)
                self.assertIn(f"--config {path}", r.stderr)

    def test_extra_arguments_and_foreign_options_are_usage_errors(self):
        path = self.yaml_file()
        r = egressd("check-config", "--config", path, "extra")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("'extra'", r.stderr)
        for args in (["run", "--json"], ["run", "--resolve", "--config", path], ["check-config", "--config", path,
                                                                                "--json"]):
            with self.subTest(args=args):
                r = egressd(*args)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertIn("does not take --", r.stderr)
        r = egressd("run", "--config", path, "--config", path)
        self.assertEqual(r.returncode, 2)
        self.assertIn("given twice", r.stderr)

    def test_a_commands_help_is_that_commands_only(self):
        cases = {
            "run": ("egressd [run]", ("egressd check-config", "egressd check [")),
            "check": ("egressd check [", ("egressd check-config", "egressd [run]")),
            "check-config": ("egressd check-config", ("egressd check [", "egressd [run]")),
        }
        for command, (has, lacks) in cases.items():
            with self.subTest(command=command):
                r = egressd(command, "--help")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(has, r.stdout)
                for other in lacks:
                    self.assertNotIn(other, r.stdout)
        r = egressd("--help")
        self.assertEqual(r.returncode, 0)
        for every in ("egressd [run]", "egressd check-config", "egressd check ["):
            self.assertIn(every, r.stdout)


class SettingsJsonTest(TempDirTest):
    def test_trailing_comma_and_comment_are_errors_with_line_and_column(self):
        cases = {
            "comma.json": ('{"network": {\n  "allowedDomains": ["a.example",]\n}}\n', ":2:34:", "trailing comma"),
            "comment.json": ('{\n  // the sandbox\n  "network": {"allowedDomains": []}\n}\n', ":2:3:",
                             "comments are not allowed"),
        }
        for name, (text, place, message) in cases.items():
            with self.subTest(name):
                path = self.write(name, text)
                r = egressd("check-config", "--settings", path)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn(path + place, r.stderr)
                self.assertIn(message, r.stderr)

    def test_a_yaml_config_given_as_settings_and_the_reverse(self):
        yaml_path = self.yaml_file()
        r = egressd("check-config", "--settings", yaml_path)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("use --config", r.stderr)
        # And `run` with it refuses to start rather than serve a deny-everything proxy.
        r = egressd("run", "--settings", yaml_path)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)

        json_path = self.write("settings.json", json.dumps({"sandbox": {"network": {"allowedDomains": ["a.example"]}}}))
        r = egressd("check-config", "--config", json_path)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("use --settings", r.stderr)

    def test_misspelt_and_misplaced_network_keys(self):
        typo = self.write("typo.json", json.dumps(
            {"permissions": {"allow": []}, "model": "x",
             "sandbox": {"network": {"alowedDomains": ["a.example"], "strictAllowlist": True}}}))
        r = egressd("check-config", "--settings", typo)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("sandbox.network.alowedDomains", r.stderr)
        self.assertIn("did you mean `allowedDomains`?", r.stderr)
        self.assertNotIn("permissions", r.stderr)  # Claude Code's other keys are not ours
        self.assertNotIn("model", r.stderr)

        misplaced = self.write("misplaced.json", json.dumps({"sandbox": {"allowedDomains": ["a.example"]}}))
        r = egressd("check-config", "--settings", misplaced)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("sandbox.allowedDomains", r.stderr)
        self.assertIn("sandbox.network", r.stderr)


def start_process(test: unittest.TestCase, args: list[str], cwd: str) -> tuple[subprocess.Popen, LineLog, LineLog]:
    """`egressd ARGS` with its logs collected; killed at cleanup."""
    proc = subprocess.Popen([harness.egressd_binary(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=harness.tool_env(), start_new_session=True)
    err = LineLog("stderr", proc.stderr)
    out = LineLog("stdout", proc.stdout)

    def stop():
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        err.wait_closed(5)
        out.wait_closed(5)
        proc.stdout.close()
        proc.stderr.close()
    test.addCleanup(stop)
    return proc, err, out


class SettingsPortsTest(TempDirTest):
    def test_settings_ports_are_where_egressd_listens(self):
        http_port, socks_port = free_port(), free_port()
        while socks_port == http_port:
            socks_port = free_port()
        path = self.write("settings.json", json.dumps({"sandbox": {"network": {
            "httpProxyPort": http_port, "socksProxyPort": socks_port, "allowedDomains": ["a.example"],
            "strictAllowlist": True}}}))
        # The embedded default's admin port may be taken on a shared machine: layer onto
        # a YAML without listeners and without admin, so the ports come from the settings.
        yaml_path = self.write("egressd.yaml", "version: 1\nlog: {audit: stdout}\n")
        _, err, _ = start_process(self, ["run", "--config", yaml_path, "--settings", path], self.dir)
        err.wait(lambda o: o.get("msg") == "ready", harness.READY_TIMEOUT, "ready")
        addresses = sorted(o["address"] for o in err.find_all(lambda o: o.get("msg") == "listening"))
        self.assertEqual(addresses, sorted([f"127.0.0.1:{http_port}", f"127.0.0.1:{socks_port}"]))
        # Each listener still sniffs both protocols: SOCKS5 on the HTTP port is refused by
        # policy (02), not by the protocol.
        for port in (http_port, socks_port):
            ep = harness.Endpoint("ipv4", "127.0.0.1", port)
            sock, reply = socks5_open(ep, "blocked.example", 443)
            sock.close()
            self.assertEqual(reply.rep, 2)


class LayeringTest(TempDirTest):
    def test_settings_policy_on_yaml_listeners(self):
        yaml_path = self.yaml_file(allow=["yaml-only.example"], unknown="deny")
        settings_path = self.write("settings.json", json.dumps(
            {"sandbox": {"network": {"allowedDomains": ["settings-only.example"], "deniedDomains": []}}}))
        r = egressd("check-config", "--config", yaml_path, "--settings", settings_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("replaced by the settings file's allowedDomains", r.stderr)
        for host, decision in (("settings-only.example", "allow"), ("yaml-only.example", "deny")):
            with self.subTest(host=host):
                r = egressd("check", "--config", yaml_path, "--settings", settings_path, "--json", host)
                self.assertEqual(r.returncode, {"allow": 0, "deny": 1}[decision], r.stderr)
                self.assertEqual(json.loads(r.stdout)["decision"], decision)

    def test_sighup_rereads_both_files(self):
        settings_path = self.write("settings.json", json.dumps({"network": {"allowedDomains": ["a.example"]}}))
        d = self.start_daemon(make_config(allow=[]), args=["--settings", settings_path])
        with open(settings_path, "w", encoding="utf-8") as f:
            json.dump({"network": {"allowedDomains": ["a.example", "b.example"]}}, f)
        mark = d.log_mark()
        d.send_signal(signal.SIGHUP)
        line = d.wait_log("reloaded", start=mark)
        self.assertEqual(line["rules_added"], 1)
        self.assertIn("allow b.example", line["added"])


class AuditPathTest(TempDirTest):
    def test_missing_directory_fails_check_and_start_and_is_not_created(self):
        missing = os.path.join(self.dir, "no-such-dir", "audit.log")
        cfg = make_config()
        cfg["log"]["audit"] = missing
        path = self.write("egressd.yaml", to_yaml(cfg))
        r = egressd("check-config", "--config", path)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("log.audit", r.stderr)
        self.assertIn("no-such-dir", r.stderr)
        self.assertRegex(r.stderr, r"egressd\.yaml:\d+:\d+: error: log\.audit")
        r = egressd("run", "--config", path)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertFalse(os.path.exists(os.path.dirname(missing)), "egressd created the audit directory")

    def test_ready_says_where_audit_records_go(self):
        audit = os.path.join(self.dir, "audit.jsonl")
        cfg = make_config()
        cfg["log"]["audit"] = audit
        d = self.start_daemon(cfg)
        self.assertEqual(d.wait_log("ready")["audit"], audit)
        d2 = self.start_daemon(make_config())
        self.assertEqual(d2.wait_log("ready")["audit"], "stdout")


class ValidationTest(TempDirTest):
    def check_config(self, text: str) -> subprocess.CompletedProcess:
        return egressd("check-config", "--config", self.write("egressd.yaml", text))

    def test_broad_deny_is_accepted_broad_allow_is_not(self):
        r = self.check_config(to_yaml(make_config(deny=["*.ru", "*.com", "*.co.uk"])))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.check_config(to_yaml(make_config(allow=["*.com"])))
        self.assertEqual(r.returncode, 1, r.stderr)

    def test_duplicates_and_allow_plus_deny_warn(self):
        r = self.check_config(to_yaml(make_config(allow=["a.example", "b.example", "a.example"], deny=["b.example"])))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("listed twice in allow", r.stderr)
        self.assertIn("in both allow and deny", r.stderr)
        self.assertIn("deny wins", r.stderr)

    def test_exposed_listener_and_admin_warn(self):
        cfg = make_config(listeners=["0.0.0.0:0"], admin={"address": "0.0.0.0:0"})
        r = self.check_config(to_yaml(cfg))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("listeners[0].address: listens on 0.0.0.0:0, beyond loopback, without proxy authentication",
                      r.stderr)
        self.assertIn("admin.address: the admin endpoint listens on 0.0.0.0:0", r.stderr)

    def test_ipv6_hint_keeps_the_port(self):
        r = self.check_config('version: 1\nlisteners:\n  - address: "::1:23128"\n')
        self.assertEqual(r.returncode, 1)
        self.assertIn("write [::1]:23128", r.stderr)

    def test_hook_keys_are_read_and_checked(self):
        token = self.write("token", "s3cret\n")
        decisions = os.path.join(self.dir, "decisions.yaml")
        cfg = make_config(unknown="ask", hook={"url": "http://127.0.0.1:8081/decide", "token_file": token,
                                               "timeout": "5s", "concurrency": 4},
                          decisions_file=decisions, admin={"address": "127.0.0.1:0", "token_file": token})
        r = self.check_config(to_yaml(cfg))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        self.assertIn("hook: url http://127.0.0.1:8081/decide, token_file " + token + ", timeout 5s, on_timeout deny,"
                      " max_pending 1024, concurrency 4, ttl 1h, deny_ttl 5m\n", r.stdout)
        self.assertIn("decisions_file: " + decisions + "\n", r.stdout)
        self.assertFalse(os.path.exists(decisions))  # checking writes nothing

        # Each problem names its key, line and the file it could not use.
        missing = os.path.join(self.dir, "no-such-token")
        for extra, expect in (
                ({"hook": {"console": True, "persistent": True}}, "hook.persistent: `persistent` applies to an `exec`"),
                ({"hook": {"exec": ["/bin/sh"], "url": "http://127.0.0.1:1/"}}, "more than one of"),
                ({"hook": {"url": "http://127.0.0.1:1/", "token_file": missing}}, f"cannot read `{missing}`"),
                ({"admin": {"address": "127.0.0.1:0", "token_file": missing}}, f"admin.token_file: cannot read"),
                ({"decisions_file": os.path.join(self.dir, "nodir", "d.yaml")}, "does not exist")):
            with self.subTest(extra=extra):
                r = self.check_config(to_yaml(make_config(unknown="ask", **extra)))
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(expect, r.stderr)

    def test_unknown_ask_without_a_hook_warns(self):
        r = self.check_config(to_yaml(make_config(unknown="ask")))
        self.assertEqual(r.returncode, 0)
        self.assertIn("policy.unknown: no hook is configured: unknown destinations are denied with reason no_hook",
                      r.stderr)
        self.assertIn("hook: none (unknown destinations are denied: no_hook)", r.stdout)


class ReloadMessagesTest(EgressdTestCase):
    def reload(self, d: harness.Egressd, config, expect: str = "reloaded") -> tuple[int, dict]:
        d.write_config(config)
        mark = d.log_mark()
        d.send_signal(signal.SIGHUP)
        return mark, d.wait_log(expect, start=mark)

    def test_added_rule_is_named_and_unchanged_listeners_do_not_warn(self):
        d = self.start_daemon(make_config(allow=["a.example"]))
        mark, line = self.reload(d, make_config(allow=["a.example", "new.example"]))
        self.assertEqual(line["rules_added"], 1)
        self.assertEqual(line["rules_removed"], 0)
        self.assertEqual(line["added"], "allow new.example")
        self.assertEqual(d.stderr.find_all(lambda o: "listener" in o.get("msg", "") and "restart" in o.get("msg", ""),
                                           mark), [])
        _, line = self.reload(d, make_config(allow=["new.example"]))
        self.assertEqual(line["removed"], "allow a.example")

    def test_listener_and_restart_changes_are_named(self):
        d = self.start_daemon(make_config())
        mark, _ = self.reload(d, make_config(listeners=["127.0.0.1:0", "127.0.0.2:0"], workers=3))
        warn = d.wait_log("listener changes take effect after a restart", start=mark)
        self.assertEqual(warn["added"], "127.0.0.2:0")
        keys = d.wait_log("these changes take effect after a restart", start=mark)
        self.assertIn("workers", keys["keys"])

    def test_bad_file_says_the_previous_configuration_stays(self):
        d = self.start_daemon(make_config(allow=["a.example"]))
        mark, line = self.reload(d, to_yaml(make_config()) + "no_such_key: 1\nlimits: {head_timeout: 0s}\n",
                                 expect="reload failed; the previous configuration stays in force")
        self.assertEqual(line["errors"], 2)
        problems = []
        at = mark
        for _ in range(2):  # one line per error, right after the summary
            at, line = d.stderr.wait(lambda o: o.get("msg") == "config problem", 5.0, "a config problem line", at)
            problems.append(line["problem"])
            at += 1
        self.assertIn("no_such_key", " ".join(problems))
        self.assertTrue(d.alive())


if __name__ == "__main__":
    unittest.main()
