"""The admin page in headless Chromium (README "Answering by hand"), through the real
binary: a curl through the proxy is held by a console hook; the page shows its pending
question; a click on Allow (once) releases curl with the origin's answer; Allow
(always) for another host shows it among the remembered answers, and Forget removes
it; a Deny refuses its client. The page runs with no console error and no CSP
violation. It takes a screenshot; with EGRESSD_UPDATE_SCREENSHOT=1 it replaces
docs/admin-page.png (the README shows it).

Needs Debian's chromium (/usr/bin/chromium, or EGRESSD_CHROMIUM) and playwright-core in
tests/integration/.npm (scripts/deps.sh test installs both); node drives the browser
(page_driver.cjs), this module holds the clients and checks what reaches them."""

import json
import os
import shutil
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EgressdTestCase, make_config, wait_until  # noqa: E402
from test_admin_api import HOSTS_TEXT, HeldCurl, admin_call  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NPM_DIR = os.path.join(HERE, ".npm")
CHROMIUM = os.environ.get("EGRESSD_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = os.path.join(ROOT, "docs", "admin-page.png")
STEP_TIMEOUT = 30.0  # one driver step (its own waits are 10 s)


def setUpModule():
    harness.setup_module("curl", "node")
    missing = [p for p in (CHROMIUM, os.path.join(NPM_DIR, "node_modules", "playwright-core", "package.json"))
               if not os.path.exists(p)]
    if missing:
        raise harness.HarnessError(f"missing {missing}: run scripts/deps.sh test (chromium, playwright-core)")


def tearDownModule():
    harness.close_origins()


class Driver:
    """page_driver.cjs: one command per line, one answer per line."""

    def __init__(self, url: str):
        env = harness.tool_env({"EGRESSD_PLAYWRIGHT": NPM_DIR, "EGRESSD_CHROMIUM": CHROMIUM})
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "page_driver.cjs"), url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, bufsize=1)
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        self._answers: list[str] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()
        self.ready = self._next(60.0)

    def _pump(self) -> None:
        for line in self.proc.stdout:
            with self._cv:
                self._answers.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._answers.append("error driver exited")
            self._cv.notify_all()

    def _next(self, timeout: float) -> str:
        with self._cv:
            if not self._cv.wait_for(lambda: self._answers, timeout):
                raise AssertionError(f"the page driver did not answer within {timeout}s; stderr: "
                                     f"{''.join(self.stderr)[-2000:]}")
            return self._answers.pop(0)

    def do(self, command: str, timeout: float = STEP_TIMEOUT) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self._next(timeout)
        if not answer.startswith("ok"):
            raise AssertionError(f"{command}: {answer}; stderr: {''.join(self.stderr)[-2000:]}")
        return answer[3:]

    def quit(self) -> str:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        last = self._next(STEP_TIMEOUT)
        self.proc.wait(timeout=STEP_TIMEOUT)
        return last

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class PageTest(EgressdTestCase):
    def test_page_answers_held_clients(self):
        d = self.start_daemon(make_config(unknown="ask", admin={"address": "127.0.0.1:0"},
                                          hook={"console": True, "timeout": "60s"}), hosts_text=HOSTS_TEXT)
        admin = d.wait_log("admin listening")["address"]
        ep = d.endpoint(0)
        port = self.o.http.port

        def hold(host: str) -> HeldCurl:
            c = HeldCurl(ep, f"http://{host}:{port}/from-page")
            self.addCleanup(c.close)
            wait_until(lambda: host in [q["host"] for q in json.loads(admin_call(admin, "GET", "/v1/pending")[2])],
                       10.0, f"{host} pending")
            return c

        driver = Driver(f"http://{admin}/")
        self.addCleanup(driver.close)
        self.assertIn("egressd", driver.ready)

        # Allow once: the held client gets the origin's answer; nothing is remembered.
        c = hold("app.localhost")
        row = driver.do("pending app.localhost")
        self.assertIn(f"app.localhost:{port}", row)
        self.assertIn("http", row)
        status = driver.do("answer app.localhost allow once host")
        self.assertIn("Allowed app.localhost", status)
        code, body = c.result()
        self.assertEqual((code, json.loads(body)["path"]), (200, "/from-page"), body)

        # Allow always, for the whole domain: released and listed among the remembered.
        c = hold("app.wild.localhost")
        driver.do("answer app.wild.localhost allow always domain")
        code, body = c.result()
        self.assertEqual(code, 200, body)
        row = driver.do("remembered wild.localhost")
        self.assertIn("allow", row)
        self.assertIn("always", row)
        remembered = json.loads(admin_call(admin, "GET", "/v1/decisions")[2])
        self.assertIn(("wild.localhost", "domain", "always", "allow"),
                      [(e["name"], e["scope"], e["lifetime"], e["decision"]) for e in remembered])

        # Deny: the held client is refused.
        c = hold("x.localhost")
        driver.do("answer x.localhost deny once host")
        self.assertEqual(c.result()[0], 403)

        # Forget, then remember again for the picture.
        driver.do("forget wild.localhost")
        self.assertEqual(json.loads(admin_call(admin, "GET", "/v1/decisions")[2]), [])
        c = hold("app.wild.localhost")
        driver.do("answer app.wild.localhost allow always domain")
        self.assertEqual(c.result()[0], 200)
        driver.do("remembered wild.localhost")

        # The screenshot: two questions waiting, a denial, a remembered answer.
        waiting = [hold("registry.localhost"), hold("telemetry.localhost")]
        driver.do("pending registry.localhost")
        driver.do("pending telemetry.localhost")
        # The README's copy is replaced only when asked (EGRESSD_UPDATE_SCREENSHOT=1), so
        # a test run leaves the tree as it found it; otherwise the shot goes to a temp dir.
        target = SCREENSHOT if os.environ.get("EGRESSD_UPDATE_SCREENSHOT") == "1" else os.path.join(
            harness.short_tempdir("egd-shot-"), "admin-page.png")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = target + ".tmp.png"
        driver.do(f"screenshot {tmp}")
        os.replace(tmp, target)
        self.assertGreater(os.path.getsize(target), 10_000, "the screenshot is (nearly) empty")
        for w in waiting:
            w.close()
        self.assertEqual(driver.quit(), "ok clean")

    def test_page_asks_for_the_token(self):
        directory = harness.short_tempdir("egd-files-")
        self.addCleanup(shutil.rmtree, directory, True)
        token_file = harness.write_file(directory, "admin.token", "page-test-token\n")
        d = self.start_daemon(make_config(admin={"address": "127.0.0.1:0", "token_file": token_file}))
        admin = d.wait_log("admin listening")["address"]
        status, _, text = admin_call(admin, "POST", "/v1/decisions", body=json.dumps(
            {"host": "tokened.localhost", "decision": "allow", "remember": "always"}),
            headers={"Content-Type": "application/json", "Authorization": "Bearer page-test-token"})
        self.assertEqual(status, 200, text)
        driver = Driver(f"http://{admin}/")
        self.addCleanup(driver.close)
        driver.do("token page-test-token")
        self.assertIn("allow", driver.do("remembered tokened.localhost"))
        self.assertEqual(driver.quit(), "ok clean")


if __name__ == "__main__":
    unittest.main()
