"""The example hooks of deploy/hooks/ (README "Hook examples"), as real processes.

Each example is driven directly first: a question as one JSON line on stdin, the answer
JSON on stdout (allowlist.sh, desktop-prompt); the approval service started on a free
loopback port and asked over HTTP (allowed, denied, held then answered through POST
/answer, coalesced, timed out, overloaded, token refused, bad requests, TLS). Then end
to end through the real egressd binary: the shell hook allows a listed host and denies
another for curl through the proxy; the approval service as `hook.url` of two egressd
instances at once (replicas) that share one answer. The desktop prompt is exercised on
a pseudo-terminal, with stand-ins for zenity and notify-send on PATH, and on its
non-interactive paths (no display and no terminal; an answer fed by environment).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import pty
import select
import shutil
import ssl
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (  # noqa: E402
    Deadline,
    EgressdTestCase,
    HarnessError,
    LineLog,
    TempDirTest,
    curl,
    make_config,
    open_connect,
    tool_env,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOOKS = os.path.join(ROOT, "deploy", "hooks")
ALLOWLIST = os.path.join(HOOKS, "allowlist.sh")
PROMPT = os.path.join(HOOKS, "desktop-prompt")
SERVICE = os.path.join(HOOKS, "approval_service.py")
RUN_TIMEOUT = 30.0


def setUpModule():
    harness.setup_module("curl", need_binary=False)


def tearDownModule():
    harness.close_origins()


def hook_env(extra: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment of a hook: this Python first on PATH (the examples' `env python3`
    finds it), no proxy variables, no display unless a test sets one."""
    env = tool_env()
    for k in ("DISPLAY", "WAYLAND_DISPLAY", "EGRESSD_PROMPT_ANSWER", "EGRESSD_PROMPT_UI", *drop):
        env.pop(k, None)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env.update(extra or {})
    return env


def question(host: str, port: int = 443, domain: str | None = None, qid: int = 1) -> dict:
    if domain is None:
        labels = host.split(".")
        domain = ".".join(labels[-2:]) if len(labels) >= 2 and not host.replace(".", "").isdigit() else ""
    return {"id": qid, "host": host, "port": port, "protocol": "connect", "client": "127.0.0.1:50312",
            "listener": "127.0.0.1:3128", "registrable_domain": domain, "first_seen": "2026-12-03T18:00:00.123Z"}


def run_hook(path: str, stdin: str, env: dict[str, str], timeout: float = RUN_TIMEOUT,
             new_session: bool = True) -> subprocess.CompletedProcess:
    """Runs a hook as egressd does (no controlling terminal: a session of its own)."""
    try:
        return subprocess.run([path], input=stdin, capture_output=True, text=True, env=env, timeout=timeout,
                              start_new_session=new_session)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"{path} did not answer within {timeout}s; stdout={e.stdout!r} stderr={e.stderr!r}") from None


def one_answer(r: subprocess.CompletedProcess) -> dict:
    lines = [line for line in r.stdout.split("\n") if line.strip()]
    if len(lines) != 1:
        raise AssertionError(f"expected one answer line, got {r.stdout!r} (stderr {r.stderr!r})")
    return json.loads(lines[0])


# ------------------------------------------------------------------------------------
# allowlist.sh

class AllowlistHookTest(TempDirTest):
    LIST = ("# example allowlist\n"
            "github.com\n"
            "*.npmjs.org      # registry and friends, not npmjs.org itself\n"
            "**.pypi.org\n"
            "  Example.NET  \n"
            "not a pattern\n"
            "::1\n")

    def setUp(self) -> None:
        super().setUp()
        self.list = self.write("allowlist.txt", self.LIST)
        self.env = hook_env({"EGRESSD_ALLOWLIST": self.list})

    def ask(self, host: str, **kw) -> dict:
        r = run_hook(ALLOWLIST, json.dumps(question(host, **kw)) + "\n", self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return one_answer(r)

    def test_listed_hosts_are_allowed_for_a_while(self):
        for host, scope, pattern in [("github.com", "host", "github.com"),
                                     ("registry.npmjs.org", "host", "*.npmjs.org"),
                                     ("a.b.npmjs.org", "host", "*.npmjs.org"),
                                     ("pypi.org", "domain", "**.pypi.org"),
                                     ("files.pythonhosted.pypi.org", "domain", "**.pypi.org"),
                                     ("example.net", "host", "example.net"),
                                     ("::1", "host", "::1")]:
            with self.subTest(host=host):
                a = self.ask(host, qid=42)
                self.assertEqual(a["decision"], "allow", a)
                self.assertEqual(a["remember"], "ttl")
                self.assertEqual(a["ttl_seconds"], 3600)
                self.assertEqual(a["scope"], scope)
                self.assertEqual(a["id"], 42)
                self.assertIn(pattern, a["reason"])
                self.assertIn(self.list, a["reason"])

    def test_others_are_denied_for_a_short_while(self):
        for host in ("npmjs.org", "evil.example", "github.com.evil.example", "notgithub.com", "x.github.com",
                     "example.com", "::2"):
            with self.subTest(host=host):
                a = self.ask(host)
                self.assertEqual(a["decision"], "deny", a)
                self.assertEqual((a["remember"], a["ttl_seconds"], a["scope"]), ("ttl", 60, "host"))
                self.assertIn(f"{host} is not in {self.list}", a["reason"])

    def test_a_domain_pattern_is_answered_for_the_domain_only_when_it_is_the_registrable_one(self):
        # **.pypi.org asked about a host whose registrable domain is something else (a
        # public-suffix-like name): the answer covers the host alone.
        a = self.ask("x.pypi.org", domain="x.pypi.org")
        self.assertEqual((a["decision"], a["scope"]), ("allow", "host"))

    def test_ttls_come_from_the_environment(self):
        env = {**self.env, "EGRESSD_ALLOWLIST_TTL": "120", "EGRESSD_DENY_TTL": "5"}
        allowed = one_answer(run_hook(ALLOWLIST, json.dumps(question("github.com")), env))
        denied = one_answer(run_hook(ALLOWLIST, json.dumps(question("gitlab.com")), env))
        self.assertEqual((allowed["ttl_seconds"], denied["ttl_seconds"]), (120, 5))

    def test_a_line_that_is_no_pattern_is_reported_and_skipped(self):
        r = run_hook(ALLOWLIST, json.dumps(question("::1", domain="")) + "\n", self.env)  # the line after it
        self.assertIn("not a pattern, skipped: not a pattern", r.stderr)
        self.assertEqual(one_answer(r)["decision"], "allow")

    def test_the_list_named_as_the_argument_wins(self):
        other = self.write("other.txt", "gitlab.com\n")
        r = subprocess.run([ALLOWLIST, other], input=json.dumps(question("gitlab.com")), capture_output=True,
                           text=True, env=self.env, timeout=RUN_TIMEOUT)
        a = one_answer(r)
        self.assertEqual(a["decision"], "allow", a)
        self.assertIn("other.txt", a["reason"])

    def test_a_missing_list_denies_with_the_reason(self):
        env = {**self.env, "EGRESSD_ALLOWLIST": os.path.join(self.dir, "nope.txt")}
        a = one_answer(run_hook(ALLOWLIST, json.dumps(question("github.com")), env))
        self.assertEqual(a["decision"], "deny")
        self.assertIn("nope.txt cannot be read", a["reason"])

    def test_a_question_without_a_host_is_denied_and_no_question_is_an_error(self):
        a = one_answer(run_hook(ALLOWLIST, "not json at all\n", self.env))
        self.assertEqual(a["decision"], "deny")
        self.assertIn("no host", a["reason"])
        r = run_hook(ALLOWLIST, "", self.env)
        self.assertEqual((r.returncode, r.stdout), (1, ""))

    def test_a_long_running_process_answers_each_question_by_id(self):
        qs = [question("github.com", qid=1), question("gitlab.com", qid=2), question("registry.npmjs.org", qid=3)]
        r = run_hook(ALLOWLIST, "".join(json.dumps(q) + "\n" for q in qs), self.env)
        answers = [json.loads(line) for line in r.stdout.strip().split("\n")]
        self.assertEqual([(a["id"], a["decision"]) for a in answers], [(1, "allow"), (2, "deny"), (3, "allow")])

    def test_the_reason_stays_one_json_string(self):
        odd = os.path.join(self.dir, 'a "quoted" \\ name.txt')
        shutil.copy(self.list, odd)
        a = one_answer(run_hook(ALLOWLIST, json.dumps(question("github.com")), {**self.env, "EGRESSD_ALLOWLIST": odd}))
        self.assertEqual(a["decision"], "allow")
        self.assertNotIn('"', a["reason"])

    def test_it_is_posix_sh(self):
        sh = shutil.which("dash") or shutil.which("sh")
        r = subprocess.run([sh, "-n", ALLOWLIST], capture_output=True, text=True, timeout=RUN_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([sh, ALLOWLIST], input=json.dumps(question("github.com")), capture_output=True,
                           text=True, env=self.env, timeout=RUN_TIMEOUT)
        self.assertEqual(one_answer(r)["decision"], "allow")


# ------------------------------------------------------------------------------------
# desktop-prompt

class DesktopPromptTest(TempDirTest):
    Q = json.dumps(question("api.example.com")) + "\n"

    def test_with_no_display_and_no_terminal_it_denies_at_once(self):
        # A long prompt timeout: the answer must come because there is nobody to ask,
        # not because the timeout passed (the run's own limit would fail the test).
        r = run_hook(PROMPT, self.Q, hook_env({"EGRESSD_PROMPT_TIMEOUT": "600"}), timeout=RUN_TIMEOUT)
        a = one_answer(r)
        self.assertEqual((a["decision"], a["remember"]), ("deny", "once"), a)
        self.assertIn("nobody to ask", a["reason"])
        self.assertIn("no terminal", a["reason"])

    def test_an_answer_fed_by_the_environment(self):
        expect = {"once": ("allow", "once", None, None),
                  "hour": ("allow", "ttl", "host", 3600),
                  "always": ("allow", "always", "domain", None),
                  "deny": ("deny", "ttl", "host", 3600)}
        for choice, (decision, remember, scope, ttl) in expect.items():
            with self.subTest(choice=choice):
                a = one_answer(run_hook(PROMPT, self.Q, hook_env({"EGRESSD_PROMPT_ANSWER": choice})))
                self.assertEqual((a["decision"], a["remember"], a.get("scope"), a.get("ttl_seconds")),
                                 (decision, remember, scope, ttl), a)
        a = one_answer(run_hook(PROMPT, json.dumps(question("192.0.2.7", domain="")),
                                hook_env({"EGRESSD_PROMPT_ANSWER": "always"})))
        self.assertEqual((a["remember"], a["scope"]), ("always", "host"), "an IP literal has no domain")
        a = one_answer(run_hook(PROMPT, self.Q, hook_env({"EGRESSD_PROMPT_ANSWER": "maybe"})))
        self.assertEqual(a["decision"], "deny")
        self.assertIn("EGRESSD_PROMPT_ANSWER must be", a["reason"])

    def test_a_bad_argument_is_a_usage_error(self):
        r = subprocess.run([PROMPT, "--colour", "red"], input=self.Q, capture_output=True, text=True,
                           env=hook_env(), timeout=RUN_TIMEOUT, start_new_session=True)
        self.assertEqual((r.returncode, r.stdout), (2, ""))
        self.assertIn("usage: desktop-prompt", r.stderr)

    def test_garbage_is_denied(self):
        a = one_answer(run_hook(PROMPT, "{not json\n", hook_env({"EGRESSD_PROMPT_ANSWER": "once"})))
        self.assertEqual((a["decision"], a["remember"]), ("deny", "once"))
        self.assertIn("not a question", a["reason"])

    # -- a pseudo-terminal as the controlling terminal ------------------------------------
    def start_on_pty(self, env: dict[str, str], args: tuple[str, ...] = ()) -> tuple[subprocess.Popen, int]:
        master, slave = pty.openpty()
        slave_name = os.ttyname(slave)
        # The slave stays open here too: with no one holding it, reading the master
        # fails (EIO) until the child has opened it.
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)

        def become_session_leader_with_the_pty():
            os.setsid()
            os.close(os.open(slave_name, os.O_RDWR))  # the first terminal a session leader opens is its own

        p = subprocess.Popen([PROMPT, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env, preexec_fn=become_session_leader_with_the_pty)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait(10), p.stdout.close(), p.stderr.close()))
        p.stdin.write(self.Q.encode())
        p.stdin.close()
        p.stdin = None  # communicate() then only reads
        return p, master

    def read_pty_until(self, master: int, text: bytes, timeout: float = RUN_TIMEOUT) -> bytes:
        deadline, seen = Deadline(timeout), b""
        while text not in seen:
            ready, _, _ = select.select([master], [], [], deadline.left())
            if not ready:
                raise HarnessError(f"no {text!r} on the terminal within {timeout}s; saw {seen!r}")
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the other side closed
                raise HarnessError(f"the terminal closed before {text!r}; saw {seen!r}") from None
            seen += chunk
        return seen

    def test_the_terminal_prompt_takes_an_answer(self):
        p, master = self.start_on_pty(hook_env({"EGRESSD_PROMPT_TIMEOUT": "60"}))
        shown = self.read_pty_until(master, b"answer within")
        self.assertIn(b"api.example.com:443", shown)
        self.assertIn(b"Always allow *.example.com", shown)
        os.write(master, b"x\n")  # a wrong key asks again
        self.read_pty_until(master, b"o, h, a or d")
        os.write(master, b"h\n")
        out, err = p.communicate(timeout=RUN_TIMEOUT)
        a = json.loads(out)
        self.assertEqual((a["decision"], a["remember"], a["ttl_seconds"], a["scope"]), ("allow", "ttl", 3600, "host"),
                         err)

    def test_the_terminal_prompt_denies_once_when_nobody_answers(self):
        # The argument wins over the environment.
        p, master = self.start_on_pty(hook_env({"EGRESSD_PROMPT_TIMEOUT": "600"}), ("--timeout", "1"))
        self.read_pty_until(master, b"no answer in time")
        out, _ = p.communicate(timeout=RUN_TIMEOUT)
        a = json.loads(out)
        self.assertEqual((a["decision"], a["remember"]), ("deny", "once"))
        self.assertIn("no answer within 1s", a["reason"])

    # -- stand-ins for zenity and notify-send -----------------------------------------------
    def fake(self, name: str, script: str) -> dict[str, str]:
        bindir = os.path.join(self.dir, "bin")
        os.makedirs(bindir, exist_ok=True)
        path = os.path.join(bindir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\n" + script)
        os.chmod(path, 0o755)
        env = hook_env({"DISPLAY": ":99", "EGRESSD_PROMPT_TIMEOUT": "60"})
        env["PATH"] = bindir + os.pathsep + env["PATH"]
        return env

    def args_of(self, name: str) -> list[str]:
        with open(os.path.join(self.dir, "bin", name + ".args"), encoding="utf-8") as f:
            return f.read().split("\n")

    def test_zenity_buttons_map_to_answers(self):
        cases = [("exit 0", ("allow", "once")),
                 ("echo 'Allow for an hour'; exit 1", ("allow", "ttl")),
                 ("echo 'Always allow *.example.com'; exit 1", ("allow", "always")),
                 ("exit 1", ("deny", "ttl")),
                 ("exit 5", ("deny", "once"))]  # zenity's --timeout passed
        for script, expect in cases:
            with self.subTest(script=script):
                env = self.fake("zenity", script + "\n")
                a = one_answer(run_hook(PROMPT, self.Q, env))
                self.assertEqual((a["decision"], a["remember"]), expect, a)
        args = self.args_of("zenity")
        self.assertIn("--question", args)
        self.assertIn("--ok-label=Allow once", args)
        self.assertIn("--cancel-label=Deny", args)
        [timeout] = [int(a.split("=")[1]) for a in args if a.startswith("--timeout=")]
        self.assertTrue(50 <= timeout <= 60, f"zenity gets the prompt's time left: {timeout}")

    def test_a_failing_zenity_falls_back_and_says_so(self):
        env = self.fake("zenity", "echo 'cannot open display' >&2; exit 255\n")
        env["EGRESSD_PROMPT_UI"] = "auto"
        a = one_answer(run_hook(PROMPT, self.Q, env))
        self.assertEqual((a["decision"], a["remember"]), ("deny", "once"))
        self.assertIn("zenity failed (exit 255): cannot open display", a["reason"])

    def test_notify_send_actions_map_to_answers(self):
        env = self.fake("notify-send", "echo always\n")
        env["EGRESSD_PROMPT_UI"] = "notify"
        a = one_answer(run_hook(PROMPT, self.Q, env))
        self.assertEqual((a["decision"], a["remember"], a["scope"]), ("allow", "always", "domain"))
        args = self.args_of("notify-send")
        self.assertIn("--wait", args)
        self.assertIn("--action=hour=Allow for an hour", args)
        env = self.fake("notify-send", "exit 0\n")  # dismissed: no action
        env["EGRESSD_PROMPT_UI"] = "notify"
        self.assertEqual(one_answer(run_hook(PROMPT, self.Q, env))["remember"], "once")


# ------------------------------------------------------------------------------------
# approval_service.py

class ApprovalService:
    """One approval_service.py process on 127.0.0.1, port chosen by the kernel."""

    def __init__(self, directory: str, *args: str, tls_ca: str | None = None):
        self.dir = directory
        self.state = os.path.join(directory, "answers.json")
        self.tls_ca = tls_ca
        self.proc = subprocess.Popen([sys.executable, SERVICE, "--listen", "127.0.0.1:0", "--state", self.state,
                                      *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=hook_env(), start_new_session=True)
        self.log = LineLog("approval service stderr", self.proc.stderr)
        try:
            _, line = self.log.wait(lambda o: o.get("msg") == "listening", 20, "a listening line")
        except HarnessError:
            self.close()
            raise
        self.address = line["address"]
        self.port = int(self.address.rsplit(":", 1)[1])
        self.url = f"{line['scheme']}://{self.address}/decide"

    def connection(self, timeout: float = RUN_TIMEOUT) -> http.client.HTTPConnection:
        if self.tls_ca:
            ctx = ssl.create_default_context(cafile=self.tls_ca)
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None,
                conn: http.client.HTTPConnection | None = None, timeout: float = RUN_TIMEOUT):
        """(status, JSON body or text, response headers)."""
        own = conn is None
        conn = conn or self.connection(timeout)
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            hdrs = {"Content-Type": "application/json"} if data is not None else {}
            hdrs.update(headers or {})
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            text = r.read().decode()
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
            return r.status, parsed, r
        finally:
            if own:
                conn.close()

    def decide(self, q: dict, **kw):
        return self.request("POST", "/decide", q, **kw)

    def answer(self, body: dict, **kw):
        return self.request("POST", "/answer", body, **kw)

    def pending(self, **kw) -> list[dict]:
        status, body, _ = self.request("GET", "/pending", **kw)
        assert status == 200, body
        return body["pending"]

    def wait_pending(self, host: str, start: int = 0, timeout: float = RUN_TIMEOUT) -> dict:
        return self.log.wait(lambda o: o.get("msg") == "pending" and o.get("host") == host, timeout,
                             f"a pending question for {host}", start)[1]

    def wait_held(self, host: str, waiting: int, start: int = 0, timeout: float = RUN_TIMEOUT) -> dict:
        """Until `waiting` requests are held for `host` (the service logs each one joining)."""
        return self.log.wait(lambda o: o.get("msg") == "held" and o.get("host") == host and o.get("waiting") == waiting,
                             timeout, f"{waiting} requests held for {host}", start)[1]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.wait_closed(5)
        self.proc.stderr.close()


class Background:
    """Runs fn in a thread; result() joins with a deadline and re-raises."""

    def __init__(self, fn, *args, **kw):
        self.value = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn, args, kw), daemon=True)
        self.thread.start()

    def _run(self, fn, args, kw):
        try:
            self.value = fn(*args, **kw)
        except BaseException as e:  # re-raised in result()
            self.error = e

    def result(self, timeout: float = RUN_TIMEOUT):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise HarnessError(f"no result within {timeout}s")
        if self.error:
            raise self.error
        return self.value


class ApprovalServiceTest(TempDirTest):
    RULES = "# team rules\nallow github.com\nallow **.npmjs.org\ndeny *.evil.example\nallow **.evil.example\n"

    def service(self, *args: str, **kw) -> ApprovalService:
        s = ApprovalService(self.dir, "--rules", self.write("rules.txt", self.RULES), *args, **kw)
        self.addCleanup(s.close)
        return s

    def test_rules_answer_at_once_for_a_while(self):
        s = self.service()
        status, a, _ = s.decide(question("registry.npmjs.org", qid=9))
        self.assertEqual(status, 200, a)
        self.assertEqual((a["decision"], a["remember"], a["ttl_seconds"], a["id"]), ("allow", "ttl", 600, 9))
        self.assertIn("allow **.npmjs.org", a["reason"])
        self.assertIn("rules.txt:3", a["reason"])
        status, a, _ = s.decide(question("x.evil.example"))
        self.assertEqual((status, a["decision"]), (200, "deny"), "deny wins over allow")
        self.assertEqual(s.pending(), [])

    def test_a_held_question_is_answered_by_a_person_and_remembered(self):
        s = self.service("--replica-ttl", "300")
        mark = s.log.mark()
        held = Background(s.decide, question("api.newthing.io", domain="newthing.io", qid=5))
        s.wait_pending("api.newthing.io", mark)
        [p] = s.pending()
        self.assertEqual((p["host"], p["port"], p["registrable_domain"], p["waiting"]),
                         ("api.newthing.io", 443, "newthing.io", 1))
        status, r, _ = s.answer({"id": p["id"], "decision": "allow", "remember": "always", "scope": "domain",
                                 "reason": "vetted by the team"})
        self.assertEqual((status, r["released"], r["name"]), (200, [p["id"]], "newthing.io"), r)
        status, a, _ = held.result()
        self.assertEqual(status, 200)
        self.assertEqual((a["decision"], a["remember"], a["ttl_seconds"], a["scope"], a["id"]),
                         ("allow", "ttl", 300, "domain", 5))
        self.assertIn("vetted by the team", a["reason"])
        # A sibling is answered from memory at once; the answer is in the state file.
        status, a, _ = s.decide(question("cdn.newthing.io", domain="newthing.io"))
        self.assertEqual((status, a["decision"], a["scope"]), (200, "allow", "domain"))
        with open(s.state, encoding="utf-8") as f:
            [e] = json.load(f)["answers"]
        self.assertEqual((e["name"], e["scope"], e["decision"], e["expires"]), ("newthing.io", "domain", "allow", None))
        status, listed, _ = s.request("GET", "/answers")
        self.assertEqual([x["name"] for x in listed["answers"]], ["newthing.io"])
        # ... and survives a restart.
        s.close()
        s2 = ApprovalService(self.dir, "--hold-timeout", "1")
        self.addCleanup(s2.close)
        status, a, _ = s2.decide(question("newthing.io", domain="newthing.io"))
        self.assertEqual((status, a["decision"]), (200, "allow"), a)
        # Forgotten, it is asked about again (and, unanswered, denied once).
        status, r, _ = s2.request("DELETE", "/answers?name=newthing.io")
        self.assertEqual((status, r["forgotten"]), (200, 1))
        status, a, _ = s2.decide(question("newthing.io", domain="newthing.io"))
        self.assertEqual((a["decision"], a["remember"]), ("deny", "once"), a)

    def test_concurrent_questions_wait_on_one_pending_item_and_a_domain_answer_releases_siblings(self):
        s = self.service()
        mark = s.log.mark()
        a1 = Background(s.decide, question("one.shared.dev"))
        a2 = Background(s.decide, question("one.shared.dev"))
        b = Background(s.decide, question("two.shared.dev"))
        s.wait_pending("one.shared.dev", mark)
        s.wait_pending("two.shared.dev", mark)
        s.wait_held("one.shared.dev", 2, mark)
        self.assertEqual({(p["host"], p["waiting"]) for p in s.pending()}, {("one.shared.dev", 2), ("two.shared.dev", 1)})
        status, r, _ = s.answer({"host": "one.shared.dev", "decision": "deny", "remember": "ttl",
                                 "ttl_seconds": 120, "scope": "domain"})
        self.assertEqual((status, len(r["released"])), (200, 2), r)
        for bg in (a1, a2, b):
            status, a, _ = bg.result()
            self.assertEqual((status, a["decision"], a["remember"], a["scope"]), (200, "deny", "ttl", "domain"))
            self.assertLessEqual(a["ttl_seconds"], 120)
        self.assertEqual(s.pending(), [])

    def test_an_answer_once_releases_the_waiters_and_is_not_remembered(self):
        s = self.service("--hold-timeout", "2")
        mark = s.log.mark()
        held = Background(s.decide, question("once.example.dev"))
        s.wait_pending("once.example.dev", mark)
        status, r, _ = s.answer({"host": "once.example.dev", "port": 443, "decision": "allow"})
        self.assertEqual((status, r["remembered"]), (200, False))
        self.assertEqual(held.result()[1]["remember"], "once")
        status, a, _ = s.decide(question("once.example.dev"))  # asked again, nobody answers
        self.assertEqual((a["decision"], a["remember"]), ("deny", "once"))
        self.assertIn("nobody answered within 2s", a["reason"])

    def test_the_default_can_answer_without_holding(self):
        s = self.service("--default", "deny")
        status, a, _ = s.decide(question("unknown.example.dev"))
        self.assertEqual((status, a["decision"], a["remember"]), (200, "deny", "once"))
        self.assertIn("default deny", a["reason"])

    def test_too_many_held_requests_are_refused(self):
        s = self.service("--max-pending", "1")
        mark = s.log.mark()
        held = Background(s.decide, question("first.example.dev"))
        s.wait_pending("first.example.dev", mark)
        status, body, _ = s.decide(question("second.example.dev"))
        self.assertEqual(status, 503, body)
        self.assertIn("more than 1 requests held", body["error"])
        s.answer({"host": "first.example.dev", "decision": "allow"})
        self.assertEqual(held.result()[1]["decision"], "allow")

    def test_clean_errors(self):
        s = self.service("--max-body", "1024")
        cases = [
            (("POST", "/decide"), {"raw": b"{not json"}, 400, "not JSON"),
            (("POST", "/decide"), {"body": ["a", "list"]}, 400, "JSON object"),
            (("POST", "/decide"), {"body": {"host": "bad host!"}}, 400, "host"),
            (("POST", "/decide"), {"body": {"host": "a.dev", "port": 70000}}, 400, "port"),
            (("POST", "/decide"), {"raw": b"{" + b" " * 2000 + b"}"}, 413, "larger than 1024"),
            (("GET", "/nope"), {}, 404, "no such path"),
            (("GET", "/decide"), {}, 405, "not allowed"),
            (("POST", "/answer"), {"body": {"id": 12345, "decision": "allow"}}, 404, "no pending question"),
            (("POST", "/answer"), {"body": {"host": "a.dev", "decision": "maybe"}}, 400, "decision"),
            (("POST", "/answer"), {"body": {"host": "a.dev", "decision": "allow", "remember": "ttl",
                                            "ttl_seconds": 0}}, 400, "ttl_seconds"),
            (("POST", "/answer"), {"body": {"host": "a.dev", "decision": "allow", "remember": "always",
                                            "scope": "domain", "domain": "other.dev"}}, 400, "registrable domain"),
            (("POST", "/answer"), {"body": {"host": "a.dev", "decision": "allow"},
                                   "headers": {"Content-Type": "text/plain"}}, 415, "application/json"),
            (("POST", "/answer"), {"body": {"host": "a.dev", "decision": "allow", "remember": "always"},
                                   "headers": {"Host": "attacker.example:80"}}, 403, "Host"),
        ]
        for (method, path), kw, status, words in cases:
            with self.subTest(path=path, kw=kw):
                got, body, _ = s.request(method, path, **kw)
                self.assertEqual(got, status, body)
                self.assertIn(words, body["error"])
        self.assertEqual(s.proc.poll(), None, "the service still runs")
        self.assertEqual(s.request("GET", "/answers")[1]["answers"], [], "nothing was remembered")

    def test_answers_are_taken_for_the_names_of_the_service_only(self):
        s = self.service("--allow-host", "approvals.internal")
        ok = {"host": "a.dev", "decision": "allow", "remember": "ttl", "ttl_seconds": 60}
        for host, status in [("approvals.internal", 200), (f"approvals.internal:{s.port}", 200),
                             (f"localhost:{s.port}", 200), (f"[::1]:{s.port}", 200),
                             (f"approvals.internal:{s.port + 1}", 403), ("evil.example", 403)]:
            with self.subTest(host=host):
                got, body, _ = s.answer(ok, headers={"Host": host})
                self.assertEqual(got, status, body)
        got, body, _ = s.request("DELETE", "/answers?name=a.dev", headers={"Host": "evil.example"})
        self.assertEqual(got, 403, body)
        got, body, _ = s.request("DELETE", "/answers?name=a.dev")
        self.assertEqual((got, body["forgotten"]), (200, 1))

    def test_a_token_is_required_on_every_request(self):
        token = self.write("token", "s3cret-token\n")
        s = self.service("--token-file", token)
        for path in ("/", "/pending", "/answers"):
            status, body, r = s.request("GET", path)
            self.assertEqual(status, 401, path)
            self.assertIn("Basic", r.getheader("WWW-Authenticate"))
        status, _, _ = s.decide(question("github.com"))
        self.assertEqual(status, 401)
        status, _, _ = s.decide(question("github.com"), headers={"Authorization": "Bearer wrong"})
        self.assertEqual(status, 401)
        status, a, _ = s.decide(question("github.com"), headers={"Authorization": "Bearer s3cret-token"})
        self.assertEqual((status, a["decision"]), (200, "allow"))
        basic = base64.b64encode(b"anyone:s3cret-token").decode()
        status, page, _ = s.request("GET", "/", headers={"Authorization": f"Basic {basic}"})
        self.assertEqual(status, 200)
        self.assertIn("egressd approvals", page)

    def test_keep_alive_and_tls(self):
        cert, key = harness.make_cert(self.dir)
        s = self.service("--cert", cert, "--key", key, tls_ca=cert)
        self.assertTrue(s.url.startswith("https://127.0.0.1:"))
        conn = s.connection()
        self.addCleanup(conn.close)
        status, a, _ = s.decide(question("github.com"), conn=conn)
        first = conn.sock
        status2, b, _ = s.decide(question("x.evil.example"), conn=conn)
        self.assertEqual((status, a["decision"], status2, b["decision"]), (200, "allow", 200, "deny"))
        self.assertIs(conn.sock, first, "the second request went over the same connection")
        plain = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        self.addCleanup(plain.close)
        with self.assertRaises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/pending")
            plain.getresponse().read()

    def test_bad_configuration_is_an_error(self):
        bad = self.write("bad-rules.txt", "allow github.com\npermit gitlab.com\n")
        r = subprocess.run([sys.executable, SERVICE, "--listen", "127.0.0.1:0", "--rules", bad], capture_output=True,
                           text=True, timeout=RUN_TIMEOUT, env=hook_env())
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad-rules.txt:2: expected `allow PATTERN` or `deny PATTERN`", r.stderr)
        for text, words in [("{not json", "state.json: not JSON: Expecting property name"),
                            ('{"answers": 3}', 'state.json: expected {"answers": [...]}'),
                            ('{"answers": [{"name": "a.dev", "scope": "everything", "decision": "allow"}]}',
                             "state.json: answers[0] needs name, scope")]:
            state = self.write("state.json", text)
            r = subprocess.run([sys.executable, SERVICE, "--listen", "127.0.0.1:0", "--state", state],
                               capture_output=True, text=True, timeout=RUN_TIMEOUT, env=hook_env())
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(words, r.stderr)
        r = subprocess.run([sys.executable, SERVICE, "--cert", "only-a-cert.pem"], capture_output=True, text=True,
                           timeout=RUN_TIMEOUT, env=hook_env())
        self.assertEqual(r.returncode, 2)
        self.assertIn("--cert and --key go together", r.stderr)


# ------------------------------------------------------------------------------------
# End to end through egressd

E2E_HOSTS = harness.HOSTS_FILE_TEXT + "".join(
    f"127.0.0.1 {h}\n" for h in ("listed.test", "unlisted.test", "fresh.shared.test", "later.shared.test", "blocked.elsewhere.test"))


def hook_config(origin_ports: list[int], hook: dict) -> dict:
    # unknown: ask sends every name to the hook; the IP entries re-open loopback for the
    # origins' ports only, so that names behind 127.0.0.1 pass the address guard once
    # the hook allows them (they never match a name).
    return make_config(allow=[f"127.0.0.1:{p}" for p in origin_ports], unknown="ask", hook=hook)


class AllowlistThroughEgressdTest(EgressdTestCase):
    def run_list(self, persistent: bool) -> None:
        harness.egressd_binary()
        directory = harness.short_tempdir("egd-hook-")
        self.addCleanup(shutil.rmtree, directory, True)
        allowlist = harness.write_file(directory, "allowlist.txt", "# the team's list\nlisted.test\n")
        http_port = self.o.http.port
        hook = {"exec": [ALLOWLIST, allowlist], "timeout": "20s"}
        if persistent:
            hook["persistent"] = True
        d = self.start_daemon(hook_config([http_port], hook), hosts_text=E2E_HOSTS, env={"PATH": hook_env()["PATH"]})
        ep = d.endpoint(0)
        r = curl("--proxy", ep.http_url, "-o", "/dev/null", "-w", "%{http_code}", f"http://listed.test:{http_port}/ok")
        self.assertEqual(r.stdout.decode(), "200", r.stderr)
        rec = d.wait_audit(host="listed.test", event="request")
        self.assertEqual((rec["decision"], rec["reason"], rec["answered_by"]), ("allow", "hook_allow", "hook"), rec)
        self.assertEqual(rec["hook_reason"], f"listed.test is listed in {allowlist}")
        r = curl("--proxy", ep.http_url, "-D", "-", "-o", "/dev/null", f"http://unlisted.test:{http_port}/no")
        head = r.stdout.decode()
        self.assertIn(" 403 ", head.split("\r\n")[0])
        self.assertIn("X-Proxy-Error: blocked-by-allowlist", head)
        self.assertIn(f"unlisted.test is not in {allowlist}", head)  # the script's reason, in Proxy-Status
        rec = d.wait_audit(host="unlisted.test", event="request")
        self.assertEqual((rec["decision"], rec["reason"], rec["answered_by"]), ("deny", "hook_deny", "hook"), rec)
        # A CONNECT to the listed host is allowed from egressd's memory now (ttl answer).
        mark = d.audit_mark()
        sock, h, _ = open_connect(ep, f"listed.test:{http_port}")
        sock.close()
        self.assertEqual(h.status, 200, h.describe())
        rec = d.wait_audit(host="listed.test", event="request", start=mark)
        self.assertEqual(rec["answered_by"], "remembered", rec)

    def test_a_listed_host_passes_and_another_is_refused(self):
        self.run_list(persistent=False)

    def test_the_same_as_a_long_running_hook(self):
        self.run_list(persistent=True)


class DesktopPromptThroughEgressdTest(EgressdTestCase):
    def test_an_answer_for_an_hour_is_remembered_and_nobody_to_ask_denies(self):
        harness.egressd_binary()
        http_port = self.o.http.port
        cfg = hook_config([http_port], {"exec": [PROMPT, "--timeout", "10"], "timeout": "20s"})
        d = self.start_daemon(cfg, hosts_text=E2E_HOSTS, env=hook_env({"EGRESSD_PROMPT_ANSWER": "hour"}))
        ep = d.endpoint(0)
        r = curl("--proxy", ep.http_url, "-o", "/dev/null", "-w", "%{http_code}", f"http://listed.test:{http_port}/")
        self.assertEqual(r.stdout.decode(), "200", r.stderr)
        rec = d.wait_audit(host="listed.test", event="request")
        self.assertEqual((rec["answered_by"], rec["hook_reason"]),
                         ("hook", "allowed listed.test for an hour at the desktop prompt"), rec)
        # egressd runs in a session of its own here: no display, no terminal.
        d2 = self.start_daemon(cfg, hosts_text=E2E_HOSTS, env=hook_env({"EGRESSD_PROMPT_TIMEOUT": "600"}))
        r = curl("--proxy", d2.endpoint(0).http_url, "-D", "-", "-o", "/dev/null",
                 f"http://unlisted.test:{http_port}/")
        self.assertIn(" 403 ", r.stdout.decode().split("\r\n")[0])
        rec = d2.wait_audit(host="unlisted.test", event="request")
        self.assertEqual((rec["reason"], rec["answered_by"]), ("hook_deny", "hook"), rec)
        self.assertIn("nobody to ask", rec["hook_reason"])


class ApprovalServiceReplicasTest(EgressdTestCase):
    def test_two_replicas_share_one_answer(self):
        harness.egressd_binary()
        directory = harness.short_tempdir("egd-approvals-")
        self.addCleanup(shutil.rmtree, directory, True)
        svc = ApprovalService(directory, "--hold-timeout", "15")
        self.addCleanup(svc.close)
        echo = self.o.echo.port
        cfg = hook_config([echo], {"url": svc.url, "timeout": "20s"})
        replicas = [self.start_daemon(cfg, hosts_text=E2E_HOSTS) for _ in range(2)]
        # Both replicas are asked about the same new host at once: one pending item,
        # two requests held by the service, two clients held by two egressd.
        mark = svc.log.mark()
        clients = [Background(open_connect, d.endpoint(0), f"fresh.shared.test:{echo}", timeout=RUN_TIMEOUT)
                   for d in replicas]
        svc.wait_pending("fresh.shared.test", mark)
        svc.wait_held("fresh.shared.test", 2, mark)
        [p] = svc.pending()
        status, r, _ = svc.answer({"id": p["id"], "decision": "allow", "remember": "ttl", "ttl_seconds": 600,
                                   "scope": "domain", "domain": "shared.test"})
        self.assertEqual((status, len(r["released"])), (200, 1), r)
        for c in clients:
            sock, head, rest = c.result()
            with sock:
                self.assertEqual(head.status, 200, head.describe())
                self.assert_echo(sock, rest)
        for d in replicas:
            rec = d.wait_audit(host="fresh.shared.test", event="request")
            self.assertEqual((rec["decision"], rec["answered_by"]), ("allow", "hook"), rec)
        # The answer covered the domain: a sibling host, through either replica, is
        # allowed from that replica's own memory, and the service is not asked.
        mark = svc.log.mark()
        for d in replicas:
            audit = d.audit_mark()
            self.connect_echo_ok(d.endpoint(0), f"later.shared.test:{echo}")
            rec = d.wait_audit(host="later.shared.test", event="request", start=audit)
            self.assertEqual((rec["decision"], rec["answered_by"]), ("allow", "remembered"), rec)
        self.assertEqual(svc.log.find_all(lambda o: o.get("msg") in ("pending", "decided"), mark), [])
        # An answer given at the service before any replica asked: each replica asks
        # once and gets it, reason and all.
        status, r, _ = svc.answer({"host": "blocked.elsewhere.test", "port": echo, "decision": "deny",
                                   "remember": "always", "reason": "not for this project"})
        self.assertEqual(status, 200, r)
        for d in replicas:
            sock, head, _ = open_connect(d.endpoint(0), f"blocked.elsewhere.test:{echo}")
            sock.close()
            self.assert_blocked(head, "blocked.elsewhere.test", proxy_status_has=["hook_deny", "not for this project"])
        # Logged before the service answers; read here through the log's reader thread.
        decided = svc.log.wait_count(lambda o: o.get("msg") == "decided" and o.get("host") == "blocked.elsewhere.test",
                                     2, harness.AUDIT_TIMEOUT, "two 'decided' lines", mark)
        self.assertEqual([o["decision"] for _, o in decided], ["deny", "deny"])
        self.assertEqual(svc.log.find_all(lambda o: o.get("msg") == "pending", mark), [])


if __name__ == "__main__":
    unittest.main()
