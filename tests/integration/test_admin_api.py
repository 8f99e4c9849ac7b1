"""The admin endpoint's /v1 routes, its safety rules and the CLI that talks to it (README
"Admin endpoint", "Answering by hand"), through the real binary:

  * safety: a foreign or missing Host is refused on /v1 and the page (DNS rebinding); a
    POST or DELETE without `Content-Type: application/json` (a cross-site form's
    text/plain or form encoding) is refused unless it carries the page's own token, and
    changes nothing; a CORS preflight gets no CORS headers; with admin.token_file every
    route but /healthz, /readyz and the page's shell needs the bearer token (401
    without it or with a wrong one);
  * the routes: bad bodies are 400 with a reason, unknown names 404;
  * held requests: with `hook: {console: true}` and `unknown: ask`, a curl through the
    proxy waits; GET /v1/pending lists it, and POST /v1/decisions or `egressd allow`
    releases it with the origin's answer (or `deny` refuses it); `--always` answers are
    listed, let the next request through without asking, and are forgotten by
    `egressd decisions --forget`;
  * the CLI: usage errors exit 2, no daemon at the address exits 2 naming it, a
    refusal by the daemon exits 1.

Names resolve through the harness's hosts file and HOSTS_TEXT (app.localhost,
wild.localhost, x.localhost, ... -> 127.0.0.1; `localhost` names may reach loopback)."""

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EgressdTestCase, TempDirTest, make_config, wait_until  # noqa: E402

CLI_TIMEOUT = 20.0
HOLD_TIMEOUT = "30s"  # hook.timeout of the holding daemons: far longer than any test step
# The harness's hosts file and the names the holding tests ask for, all on loopback.
HOSTS_TEXT = harness.HOSTS_FILE_TEXT + "".join(
    f"127.0.0.1 {n}.localhost\n" for n in ("x", "y", "many", "registry", "telemetry"))


def setUpModule():
    harness.setup_module("curl")


def tearDownModule():
    harness.close_origins()


def admin_call(address: str, method: str, path: str, body: bytes | str | None = None,
               headers: dict[str, str] | None = None, host: str | None = "") -> tuple[int, dict[str, str], str]:
    """One request to the admin endpoint. `host`: "" sends the address itself as Host,
    None sends no Host at all, anything else is sent as written."""
    h, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(h.strip("[]"), int(port), timeout=harness.IO_TIMEOUT)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host or address)
        data = body.encode() if isinstance(body, str) else body
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if data is not None:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read().decode()
    finally:
        conn.close()


JSON = {"Content-Type": "application/json"}


def egressd_cli(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([harness.egressd_binary(), *args], capture_output=True, text=True, timeout=timeout,
                          env=harness.tool_env(), stdin=subprocess.DEVNULL)


class HeldCurl:
    """curl through the proxy in the background; result() waits for it to end."""

    def __init__(self, proxy: harness.Endpoint, url: str):
        self.proc = subprocess.Popen(
            ["curl", "-q", "-sS", "--max-time", "40", "-x", proxy.http_url, "-o", "-", "-w", "\n%{http_code}", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=harness.tool_env(),
            stdin=subprocess.DEVNULL)

    def done(self) -> bool:
        return self.proc.poll() is not None

    def result(self, timeout: float = 20.0) -> tuple[int, str]:
        """(HTTP status, body)."""
        out, err = self.proc.communicate(timeout=timeout)
        body, _, code = out.rpartition("\n")
        if self.proc.returncode != 0:
            raise AssertionError(f"curl exited with {self.proc.returncode}: {err}")
        return int(code), body

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


def page_token(address: str) -> str:
    status, _, html = admin_call(address, "GET", "/", headers={"Accept": "text/html"})
    assert status == 200, (status, html[:200])
    m = re.search(r'<meta name="egressd-page-token" content="([0-9a-f]+)">', html)
    assert m, "the page carries no page token"
    return m.group(1)


class SafetyTest(EgressdTestCase):
    """Host, content type, page token, CORS, bad bodies: no hook needed."""

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon(make_config(admin={"address": "127.0.0.1:0"}))
        cls.admin = cls.d.wait_log("admin listening")["address"]
        cls.port = int(cls.admin.rsplit(":", 1)[1])

    def remembered_names(self) -> list[str]:
        status, _, body = admin_call(self.admin, "GET", "/v1/decisions")
        self.assertEqual(status, 200, body)
        return [e["name"] for e in json.loads(body)]

    def test_routes_are_listed(self):
        status, headers, body = admin_call(self.admin, "GET", "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("vary"), "Accept")
        paths = [r["path"] for r in json.loads(body)["routes"]]
        for p in ("/v1/pending", "/v1/decisions", "/v1/decisions/{name}", "/v1/denials"):
            self.assertIn(p, paths)
        self.assertEqual(self.d.wait_log("admin listening")["paths"].split(), paths)

    def test_v1_answers_its_own_names(self):
        for host in (self.admin, f"localhost:{self.port}", f"LOCALHOST:{self.port}", f"[::1]:{self.port}",
                     f"127.0.0.1:{self.port}"):
            with self.subTest(host=host):
                status, headers, body = admin_call(self.admin, "GET", "/v1/pending", host=host)
                self.assertEqual(status, 200, body)
                self.assertEqual(json.loads(body), [])
                self.assertNotIn("access-control-allow-origin", headers)

    def test_foreign_host_is_refused(self):
        # A DNS-rebinding page reaches the port under its own name; a wrong port is
        # another server's name.
        for host in ("evil.example", f"evil.example:{self.port}", f"127.0.0.1:{self.port + 1}",
                     "127.0.0.1", f"localhost.evil.example:{self.port}", f"127.0.0.2:{self.port}"):
            for method, path, extra in (("GET", "/v1/pending", {}), ("GET", "/v1/decisions", {}),
                                        ("GET", "/", {"Accept": "text/html"}),
                                        ("POST", "/v1/decisions", JSON),
                                        ("DELETE", "/v1/decisions/rebind.test", JSON)):
                with self.subTest(host=host, method=method, path=path):
                    body = json.dumps({"host": "rebind.test", "decision": "allow", "remember": "always"})
                    status, headers, text = admin_call(self.admin, method, path, host=host, headers=extra,
                                                       body=body if method == "POST" else None)
                    self.assertEqual(status, 421, text)
                    self.assertEqual(headers.get("content-type"), "application/json")
                    self.assertEqual(json.loads(text)["error"], "misdirected_request")
                    self.assertIn(self.admin, json.loads(text)["detail"])
        self.assertNotIn("rebind.test", self.remembered_names())

    def test_missing_host_is_refused(self):
        status, _, text = admin_call(self.admin, "GET", "/v1/pending", host=None)
        self.assertEqual(status, 400, text)
        # The routes that existed before the hook keep answering without one.
        self.assertEqual(admin_call(self.admin, "GET", "/healthz", host=None)[0], 200)

    def test_cross_site_post_is_refused_and_changes_nothing(self):
        body = json.dumps({"host": "csrf.test", "decision": "allow", "remember": "always"})
        for ctype in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                      "multipart/form-data; boundary=x", None, "application/jsonx", "text/json"):
            with self.subTest(content_type=ctype):
                headers = {"Origin": "http://evil.example"}
                if ctype is not None:
                    headers["Content-Type"] = ctype
                status, h, text = admin_call(self.admin, "POST", "/v1/decisions", body=body, headers=headers)
                self.assertEqual(status, 415, text)
                self.assertEqual(json.loads(text)["error"], "unsupported_media_type")
                self.assertNotIn("access-control-allow-origin", h)
        status, _, text = admin_call(self.admin, "POST", "/v1/decisions", body=body,
                                     headers={"Content-Type": "text/plain", "X-Egressd-Page-Token": "00" * 32})
        self.assertEqual(status, 403, text)
        status, _, text = admin_call(self.admin, "DELETE", "/v1/decisions/csrf.test",
                                     headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 415, text)
        self.assertNotIn("csrf.test", self.remembered_names())

    def test_page_token_stands_for_the_json_type(self):
        token = page_token(self.admin)
        body = json.dumps({"host": "pagetoken.test", "decision": "deny", "remember": "always"})
        status, _, text = admin_call(self.admin, "POST", "/v1/decisions", body=body,
                                     headers={"Content-Type": "text/plain", "X-Egressd-Page-Token": token})
        self.assertEqual(status, 200, text)
        self.assertIn("pagetoken.test", self.remembered_names())
        status, _, text = admin_call(self.admin, "DELETE", "/v1/decisions/pagetoken.test",
                                     headers={"X-Egressd-Page-Token": token})
        self.assertEqual((status, json.loads(text)["forgotten"]), (200, 1), text)
        self.assertNotIn("pagetoken.test", self.remembered_names())

    def test_preflight_gets_no_cors(self):
        status, headers, _ = admin_call(self.admin, "OPTIONS", "/v1/decisions", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        self.assertEqual(status, 405)
        self.assertFalse([k for k in headers if k.startswith("access-control-")], headers)

    def test_page_for_browsers_json_for_the_rest(self):
        status, headers, html = admin_call(self.admin, "GET", "/", headers={
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        self.assertEqual(headers.get("vary"), "Accept")
        self.assertEqual(headers.get("x-frame-options"), "DENY")
        csp = headers.get("content-security-policy", "")
        nonce = re.search(r"script-src 'nonce-([0-9a-f]+)'", csp)
        self.assertTrue(nonce, csp)
        self.assertIn("default-src 'self'", csp)
        self.assertIn("frame-ancestors 'none'", csp)
        self.assertIn(f'<script nonce="{nonce.group(1)}">', html)
        # Nothing is loaded from elsewhere.
        self.assertNotRegex(html, r'(src|href)="(https?:)?//')
        # A fresh nonce per response; the same page token for the process.
        _, headers2, _ = admin_call(self.admin, "GET", "/", headers={"Accept": "text/html"})
        self.assertNotEqual(headers2.get("content-security-policy"), csp)
        self.assertEqual(page_token(self.admin), page_token(self.admin))
        status, headers, body = admin_call(self.admin, "GET", "/", headers={"Accept": "*/*"})
        self.assertEqual((status, headers["content-type"]), (200, "application/json"))
        self.assertIn("routes", json.loads(body))

    def test_bad_bodies_are_400_with_a_reason(self):
        cases = [
            ("not json", "not JSON"),
            ("[1]", "object"),
            ('{"host": "x.test"}', "decision"),
            ('{"host": "x.test", "decision": "maybe"}', "decision"),
            ('{"decision": "allow"}', "id"),
            ('{"host": "bad host!", "decision": "allow"}', "host"),
            ('{"host": "x.test", "port": 70000, "decision": "allow"}', "port"),
            ('{"host": "x.test", "decision": "allow", "scope": "host_port"}', "port"),
            ('{"id": -1, "decision": "allow"}', "id"),
            ('{"id": 1, "host": "x.test", "decision": "allow"}', "not both"),
        ]
        for body, words in cases:
            with self.subTest(body=body):
                status, _, text = admin_call(self.admin, "POST", "/v1/decisions", body=body, headers=JSON)
                self.assertEqual(status, 400, text)
                doc = json.loads(text)
                self.assertEqual(doc["error"], "bad_request")
                self.assertIn(words, doc["detail"])

    def test_nothing_to_answer_or_forget_is_404(self):
        status, _, text = admin_call(self.admin, "POST", "/v1/decisions", headers=JSON,
                                     body='{"id": 987654, "decision": "allow"}')
        self.assertEqual(status, 404, text)
        status, _, text = admin_call(self.admin, "POST", "/v1/decisions", headers=JSON,
                                     body='{"host": "nobody-asked.test", "decision": "allow"}')
        self.assertEqual(status, 404, text)
        status, _, text = admin_call(self.admin, "DELETE", "/v1/decisions/never.test", headers=JSON)
        self.assertEqual((status, json.loads(text)["forgotten"]), (404, 0), text)
        status, _, text = admin_call(self.admin, "DELETE", "/v1/decisions/bad%20name", headers=JSON)
        self.assertEqual(status, 400, text)

    def test_methods(self):
        for method, path, allow in (("PUT", "/v1/pending", "GET, HEAD"),
                                    ("DELETE", "/v1/decisions", "GET, HEAD, POST"),
                                    ("GET", "/v1/decisions/x.test", "DELETE")):
            with self.subTest(method=method, path=path):
                status, headers, _ = admin_call(self.admin, method, path, headers=JSON)
                self.assertEqual((status, headers.get("allow")), (405, allow))
        self.assertEqual(admin_call(self.admin, "GET", "/v1/nope")[0], 404)

    def test_remembered_answer_is_listed_with_its_fields(self):
        status, _, text = admin_call(self.admin, "POST", "/v1/decisions", headers=JSON, body=json.dumps(
            {"host": "Listed.Test", "decision": "allow", "remember": "ttl", "ttl_seconds": 600,
             "scope": "host", "reason": "build cache", "answered_by": "unit test"}))
        self.assertEqual(status, 200, text)
        self.assertEqual(json.loads(text)["remembered"], True)
        _, _, body = admin_call(self.admin, "GET", "/v1/decisions")
        [e] = [e for e in json.loads(body) if e["name"] == "listed.test"]
        self.assertEqual((e["scope"], e["port"], e["decision"], e["lifetime"], e["reason"]),
                         ("host", 0, "allow", "ttl", "build cache"))
        self.assertRegex(e["expires"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertRegex(e["answered_at"], r"^\d{4}-\d\d-\d\dT")
        self.assertTrue(e["answered_by"].startswith("admin"), e)
        self.assertIn("unittest", e["answered_by"])  # printable, no spaces
        self.assertEqual(admin_call(self.admin, "DELETE", "/v1/decisions/listed.test", headers=JSON)[0], 200)


class TokenTest(TempDirTest):
    """admin.token_file: a bearer token on every route but the probes and the page's shell."""

    def setUp(self):
        super().setUp()
        self.token_file = self.write("admin.token", "s3cret-token-value\n")
        self.d = self.start_daemon(make_config(admin={"address": "127.0.0.1:0", "token_file": self.token_file}))
        self.admin = self.d.wait_log("admin listening")["address"]

    def test_bearer_required(self):
        for path in ("/v1/pending", "/v1/decisions", "/v1/denials", "/", "/metrics"):
            with self.subTest(path=path):
                status, headers, text = admin_call(self.admin, "GET", path)
                self.assertEqual(status, 401, text)
                self.assertEqual(headers.get("www-authenticate"), 'Bearer realm="egressd"')
                status, headers, text = admin_call(self.admin, "GET", path,
                                                   headers={"Authorization": "Bearer s3cret-token-valuX"})
                self.assertEqual(status, 401, text)
                self.assertIn('error="invalid_token"', headers.get("www-authenticate", ""))
                status, _, text = admin_call(self.admin, "GET", path,
                                             headers={"Authorization": "Bearer s3cret-token-value"})
                self.assertEqual(status, 200, text)
        status, _, text = admin_call(self.admin, "POST", "/v1/decisions", headers=JSON,
                                     body='{"host": "tok.test", "decision": "allow", "remember": "always"}')
        self.assertEqual(status, 401, text)
        status, _, text = admin_call(self.admin, "POST", "/v1/decisions",
                                     headers={**JSON, "Authorization": "bearer s3cret-token-value"},
                                     body='{"host": "tok.test", "decision": "allow", "remember": "always"}')
        self.assertEqual(status, 200, text)

    def test_probes_and_page_shell_are_open(self):
        self.assertEqual(admin_call(self.admin, "GET", "/healthz")[0], 200)
        self.assertEqual(admin_call(self.admin, "GET", "/readyz")[0], 200)
        status, _, html = admin_call(self.admin, "GET", "/", headers={"Accept": "text/html"})
        self.assertEqual(status, 200)
        self.assertIn('<meta name="egressd-token-required" content="yes">', html)
        self.assertNotIn("s3cret", html)

    def test_cli_token(self):
        r = egressd_cli("pending", "--admin", self.admin)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("401", r.stderr)
        self.assertIn("--token-file", r.stderr)
        r = egressd_cli("pending", "--admin", self.admin, "--token-file", self.token_file)
        self.assertEqual((r.returncode, r.stdout), (0, "nothing is waiting for an answer\n"), r.stderr)
        # The config's admin.token_file and admin.address, as the daemon reads them.
        r = egressd_cli("decisions", "--config", self.d.config_path)
        self.assertEqual(r.returncode, 2, r.stderr)  # the config says port 0: nothing answers there
        cfg = make_config(admin={"address": self.admin, "token_file": self.token_file})
        path = self.write("client.yaml", harness.to_yaml(cfg))
        r = egressd_cli("decisions", "--config", path, "--json")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "[]"), r.stderr)


class CliTest(TempDirTest):
    """The CLI without a daemon: usage, unreachable addresses, help."""

    def test_no_daemon_exits_2_naming_the_address(self):
        port = harness.free_port()
        for args in (["pending"], ["decisions"], ["allow", "example.com"], ["deny", "example.com:443"],
                     ["decisions", "--forget", "example.com"]):
            with self.subTest(args=args):
                r = egressd_cli(*args, "--admin", f"127.0.0.1:{port}")
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(f"127.0.0.1:{port}", r.stderr)
                self.assertIn("is egressd running", r.stderr)
        # The address comes from --config when --admin is not given.
        path = self.write("c.yaml", harness.to_yaml(make_config(admin={"address": f"127.0.0.1:{port}"})))
        r = egressd_cli("pending", "--config", path)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(f"127.0.0.1:{port}", r.stderr)

    def test_config_without_admin(self):
        path = self.write("c.yaml", harness.to_yaml(make_config()))
        r = egressd_cli("pending", "--config", path)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("no admin section", r.stderr)
        path = self.write("bad.yaml", "version: 1\nnope: 1\n")
        self.assertEqual(egressd_cli("pending", "--config", path).returncode, 4)

    def test_usage_errors(self):
        admin = ["--admin", "127.0.0.1:1"]
        for args in (["allow"], ["allow", "a.test", "b.test"], ["allow", "a.test", "--ttl", "5"],
                     ["allow", "a.test", "--ttl"], ["allow", "a.test", "--always", "--ttl", "1h"],
                     ["allow", "bad host!"], ["allow", "a.test:0"], ["allow", "a.test:99999"],
                     ["allow", "a.test", "--port"], ["allow", "a.test", "--domain", "--port"],
                     ["deny", "a.test", "--forget", "x"], ["pending", "extra"], ["pending", "--always"],
                     ["decisions", "--forget"], ["pending", "--admin", "nonsense"], ["pending", "--bogus"]):
            with self.subTest(args=args):
                r = egressd_cli(*args, *([] if "--admin" in args else admin))
                self.assertEqual(r.returncode, 2, (r.stdout, r.stderr))
                self.assertTrue(r.stderr.startswith(f"egressd {args[0]}: "), r.stderr)

    def test_help(self):
        r = egressd_cli("--help")
        self.assertEqual(r.returncode, 0)
        for line in ("egressd pending", "egressd allow HOST[:PORT]", "egressd deny HOST[:PORT]",
                     "egressd decisions [--forget NAME]"):
            self.assertIn(line, r.stdout)
        for args in (["allow", "--help"], ["help", "allow"]):
            r = egressd_cli(*args)
            self.assertEqual(r.returncode, 0)
            self.assertIn("--always", r.stdout)
            self.assertIn("--admin ADDRESS", r.stdout)  # the common options come along
            self.assertNotIn("egressd pending", r.stdout)


class HoldTest(EgressdTestCase):
    """A console hook: requests wait for an answer by hand."""

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon(make_config(
            unknown="ask", admin={"address": "127.0.0.1:0"},
            hook={"console": True, "timeout": HOLD_TIMEOUT}), hosts_text=HOSTS_TEXT)
        cls.admin = cls.d.wait_log("admin listening")["address"]
        cls.ep = cls.d.endpoint(0)

    def url(self, host: str) -> str:
        return f"http://{host}:{self.o.http.port}/held"

    def pending(self) -> list[dict]:
        status, _, body = admin_call(self.admin, "GET", "/v1/pending")
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def hold(self, host: str) -> tuple[HeldCurl, dict]:
        c = HeldCurl(self.ep, self.url(host))
        self.addCleanup(c.close)
        q = wait_until(lambda: next((q for q in self.pending() if q["host"] == host), None) or c.done(),
                       10.0, f"a pending question for {host}")
        self.assertFalse(c.done() and not isinstance(q, dict), f"curl ended before being held: {c.proc.returncode}")
        return c, q

    def assert_released_to_origin(self, c: HeldCurl) -> None:
        status, body = c.result()
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["path"], "/held")

    def test_post_by_id_releases_the_held_client(self):
        c, q = self.hold("app.localhost")
        self.assertEqual((q["port"], q["protocol"], q["waiting"]), (self.o.http.port, "http", 1))
        self.assertTrue(q["client"].startswith("127.0.0.1:"), q)
        self.assertGreater(q["seconds_left"], 10)
        for k in ("id", "listener", "registrable_domain", "first_seen", "deadline"):
            self.assertIn(k, q)
        self.assertFalse(c.done())
        status, _, text = admin_call(self.admin, "POST", "/v1/decisions", headers=JSON,
                                     body=json.dumps({"id": q["id"], "decision": "allow"}))
        self.assertEqual(status, 200, text)
        self.assertEqual(json.loads(text), {"questions_answered": 1, "requests_released": 1, "remembered": False})
        self.assert_released_to_origin(c)
        self.assertEqual([p for p in self.pending() if p["host"] == "app.localhost"], [])

    def test_deny_by_host_refuses_the_held_client(self):
        c, _ = self.hold("wild.localhost")
        status, _, text = admin_call(self.admin, "POST", "/v1/decisions", headers=JSON,
                                     body=json.dumps({"host": "wild.localhost", "decision": "deny"}))
        self.assertEqual(status, 200, text)
        self.assertEqual(c.result()[0], 403)
        # Listed among the recent denials, newest first.
        denials = json.loads(admin_call(self.admin, "GET", "/v1/denials")[2])
        self.assertEqual((denials[0]["host"], denials[0]["port"], denials[0]["reason"]),
                         ("wild.localhost", self.o.http.port, "hook_deny"), denials)
        self.assertRegex(denials[0]["at"], r"^\d{4}-\d\d-\d\dT")

    def test_cli_pending_and_allow_release_the_held_client(self):
        c, q = self.hold("x.localhost")
        r = egressd_cli("pending", "--admin", self.admin)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, rf"(?m)^{q['id']}\s+x\.localhost:{self.o.http.port}\s+http\s+127\.0\.0\.1:\d+\s+1\s+\d+s$")
        r = egressd_cli("pending", "--admin", self.admin, "--json")
        self.assertIn("x.localhost", [p["host"] for p in json.loads(r.stdout)])
        r = egressd_cli("allow", f"x.localhost:{self.o.http.port}", "--admin", self.admin)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, f"allowed x.localhost:{self.o.http.port}: 1 question(s) answered, "
                                   "1 request(s) released\n")
        self.assert_released_to_origin(c)

    def test_cli_allow_always_is_remembered_then_forgotten(self):
        host = "y.localhost"
        r = egressd_cli("allow", host, "--admin", self.admin)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("--always", r.stderr)
        r = egressd_cli("allow", host, "--always", "--reason", "docs", "--admin", self.admin)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("remembered until forgotten", r.stdout)
        r = egressd_cli("decisions", "--admin", self.admin)
        self.assertRegex(r.stdout, rf"(?m)^{host}\s+host\s+\*\s+allow\s+always\s+admin/cli\s+docs$")
        # Allowed without asking now.
        status, body = HeldCurl(self.ep, self.url(host)).result()
        self.assertEqual(status, 200, body)
        r = egressd_cli("decisions", "--forget", host, "--admin", self.admin)
        self.assertEqual((r.returncode, r.stdout), (0, f"forgot 1 answer(s) for {host}\n"), r.stderr)
        r = egressd_cli("decisions", "--forget", host, "--admin", self.admin)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"nothing remembered for {host}", r.stderr)
        # Asked again.
        c, _ = self.hold(host)
        self.assertEqual(egressd_cli("deny", host, "--admin", self.admin).returncode, 0)
        self.assertEqual(c.result()[0], 403)

    def test_many_waiting_on_one_question_all_released(self):
        clients = [HeldCurl(self.ep, self.url("many.localhost")) for _ in range(5)]
        for c in clients:
            self.addCleanup(c.close)
        q = wait_until(lambda: next((q for q in self.pending() if q["host"] == "many.localhost"
                                     and q["waiting"] == 5), None), 10.0, "5 requests waiting on one question")
        status, _, text = admin_call(self.admin, "POST", "/v1/decisions", headers=JSON,
                                     body=json.dumps({"id": q["id"], "decision": "allow"}))
        self.assertEqual(json.loads(text)["requests_released"], 5, text)
        for c in clients:
            self.assert_released_to_origin(c)


if __name__ == "__main__":
    unittest.main()
