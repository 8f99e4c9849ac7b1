"""The audit log itself (DESIGN.md §2.6, README "Logs and access records"): access
records are JSON lines whatever `log.format` says; `log.audit` as a file rotates by
size (`audit_max_size`, `audit_max_files`) through spdlog's rotating sink without
losing or splitting a line; SIGUSR1 reopens the file at its path (logrotate's `mv`
then `kill -USR1`); bad sizes fail check-config with their path and line."""

import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import EgressdTestCase, make_config, open_connect  # noqa: E402


def setUpModule():
    harness.setup_module()


def tearDownModule():
    harness.close_origins()


def read_json_lines(path: str) -> list[dict]:
    """Every line of `path` as a JSON object; a line that is not one fails the test."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        raise AssertionError(f"{path} ends in a line cut short: {data[-200:]!r}")
    for i, line in enumerate(data.split(b"\n")[:-1] if data else [], 1):
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"{path}:{i} is not JSON: {line[:300]!r}") from None
        if not isinstance(obj, dict):
            raise AssertionError(f"{path}:{i} is not a JSON object: {line[:300]!r}")
        out.append(obj)
    return out


def denied_request(ep: harness.Endpoint, host: str, port: int = 443) -> None:
    sock, head, _ = open_connect(ep, f"{host}:{port}")
    sock.close()
    if head.status != 403:
        raise AssertionError(f"expected a 403 for {host}: {head.describe()}")


class TextFormatTest(EgressdTestCase):
    """`log.format: text` changes the operational log only."""

    def test_stdout_records_stay_json_with_text_logs(self):
        cfg = make_config(allow=[f"127.0.0.1:{self.o.echo.port}"])
        cfg["log"]["format"] = "text"
        d = self.start_daemon(cfg, wait_ready=False)
        # The harness waits for {"msg":"ready"} in JSON: with text logs wait for the text line.
        harness.wait_until(lambda: any(" ready" in line for line in d.stderr.lines), harness.READY_TIMEOUT,
                           "the text 'ready' line")
        listening = [line for line in d.stderr.lines if " listening" in line]
        self.assertTrue(listening, d.log_tail())
        address = listening[0].split("address=")[1].split()[0].strip('"')
        ep = harness.parse_endpoint(address)
        # The operational log is text indeed.
        self.assertFalse(listening[0].lstrip().startswith("{"), listening[0])
        self.connect_echo_ok(ep, f"127.0.0.1:{self.o.echo.port}")
        denied_request(ep, "nowhere.test")
        rec = d.wait_audit(event="request", host="nowhere.test")
        self.assertEqual((rec["decision"], rec["reason"]), ("deny", "unknown_denied"))
        d.wait_audit(event="tunnel_closed", port=self.o.echo.port)
        d.stop()
        lines = [line for line in d.stdout.lines if line.strip()]
        self.assertGreaterEqual(len(lines), 3, lines)
        for line in lines:
            obj = json.loads(line)  # raises on a text line
            self.assertIn("event", obj)
            self.assertIn("time", obj)


if __name__ == "__main__":
    unittest.main()
