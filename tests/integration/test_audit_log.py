"""The audit log itself (README "Logs and access records"): access
records are JSON lines whatever `log.format` says; `log.audit` as a file rotates by
size (`audit_max_size`, `audit_max_files`) through spdlog's rotating sink without
losing or splitting a line; SIGUSR1 reopens the file at its path (logrotate's `mv`
then `kill -USR1`); bad sizes fail check-config with their path and line."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
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


class AuditFileTest(EgressdTestCase):
    """`log.audit: FILE`: rotation by size, and SIGUSR1 to reopen."""

    def audit_daemon(self, **log: object) -> tuple[harness.Egressd, str]:
        directory = harness.short_tempdir("egd-audit-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "audit.log")
        cfg = make_config(workers=2)
        cfg["log"] = {"format": "json", "level": "info", "audit": path, **log}
        return self.start_daemon(cfg), path

    def test_rotation_keeps_every_record_whole(self):
        max_size = 2048
        d, path = self.audit_daemon(audit_max_size="2KiB", audit_max_files=100)
        ep = d.endpoint(0)
        n = 40
        # Four clients at once, so that records of several workers meet at a rotation.
        errors: list[BaseException] = []

        def client(k: int) -> None:
            try:
                for i in range(k, n, 4):
                    denied_request(ep, f"h{i}.rotate.test")
            except BaseException as e:  # reported below, in the test's thread
                errors.append(e)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(errors, [])
        directory = os.path.dirname(path)

        def files() -> list[str]:
            # spdlog's rotating sink: audit.log, then audit.1.log, audit.2.log, ...
            names = sorted(f for f in os.listdir(directory) if f.startswith("audit."))
            return [os.path.join(directory, f) for f in names]

        def records() -> list[dict]:
            return [r for f in files() for r in read_json_lines(f)]

        harness.wait_until(lambda: len(records()) >= n, harness.AUDIT_TIMEOUT, f"{n} records in {directory}")
        d.stop()
        names = sorted(os.path.basename(f) for f in files())
        self.assertIn("audit.log", names)
        self.assertIn("audit.1.log", names)
        self.assertGreaterEqual(len(names), 4, names)  # 40 records of ~300 bytes in 2 KiB files
        for f in files():
            self.assertLessEqual(os.path.getsize(f), max_size, f)
        recs = records()
        hosts = sorted(r["host"] for r in recs if r.get("event") == "request")
        self.assertEqual(hosts, sorted(f"h{i}.rotate.test" for i in range(n)))  # none lost, none twice
        self.assertEqual(len(recs), n)

    def load(self, ep: harness.Endpoint, clients: int, per_client: int, tag: str) -> list[str]:
        """`clients` threads at once, each sending `per_client` denied CONNECTs one after
        another; returns the hosts asked for (each one request record)."""
        errors: list[BaseException] = []

        def client(k: int) -> None:
            try:
                for i in range(per_client):
                    denied_request(ep, f"h{k}-{i}.{tag}.test")
            except BaseException as e:  # reported below, in the test's thread
                errors.append(e)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(errors, [])
        return [f"h{k}-{i}.{tag}.test" for k in range(clients) for i in range(per_client)]

    def test_records_of_several_workers_under_load_are_whole_and_none_is_lost_at_stop(self):
        # Each worker renders records into a buffer of its own and writes it out in blocks:
        # whatever the interleaving of two workers' blocks, every line is one whole record,
        # and the stop right after the last answer (no wait for the 100 ms flush) writes
        # out what the buffers still hold.
        d, path = self.audit_daemon()
        hosts = self.load(d.endpoint(0), 8, 150, "load")
        d.stop()
        recs = read_json_lines(path)
        self.assertEqual(sorted(r["host"] for r in recs), sorted(hosts))  # none lost, none twice
        self.assertTrue(all(r["event"] == "request" and r["decision"] == "deny" for r in recs))
        self.assertEqual(len({r["connection"] for r in recs}), len(hosts))
        # The workers' buffers are merged: the file is in time order, as one shared log
        # would be (README "Logs and access records").
        times = [r["time"] for r in recs]
        self.assertTrue(all(t.endswith("Z") and len(t) == len("2026-01-01T00:00:00.000Z") for t in times), times[:3])
        out_of_order = [(a, b) for a, b in zip(times, times[1:]) if b < a]
        self.assertEqual(out_of_order, [])

    def test_rotation_under_load_splits_blocks_at_line_boundaries(self):
        # Blocks of up to 64 KiB meet 16 KiB files: a block is written as far as its
        # whole lines fit, the rest goes to the next file.
        max_size = 16 * 1024
        d, path = self.audit_daemon(audit_max_size="16KiB", audit_max_files=1000)
        hosts = self.load(d.endpoint(0), 8, 100, "rot")
        d.stop()
        directory = os.path.dirname(path)
        files = [os.path.join(directory, f) for f in os.listdir(directory) if f.startswith("audit.")]
        self.assertGreaterEqual(len(files), 10, sorted(files))  # 800 records of ~330 bytes
        recs = []
        for f in files:
            self.assertLessEqual(os.path.getsize(f), max_size, f)
            recs += read_json_lines(f)
        self.assertEqual(sorted(r["host"] for r in recs), sorted(hosts))

    def test_a_record_reaches_the_file_within_the_flush_interval(self):
        # An idle proxy's record does not wait for its buffer to fill: the control
        # thread writes buffers out every 100 ms (1 s allowed here for a loaded machine).
        d, path = self.audit_daemon()
        ep = d.endpoint(0)
        for i in range(3):
            denied_request(ep, f"prompt{i}.test")
            t = time.monotonic()
            harness.wait_until(lambda: any(r["host"] == f"prompt{i}.test" for r in read_json_lines(path))
                               if os.path.exists(path) else False, harness.AUDIT_TIMEOUT, f"record {i}",
                               interval=0.01)
            self.assertLess(time.monotonic() - t, 1.0)
        d.stop()

    def test_sigusr1_reopens_the_file_at_its_path(self):
        d, path = self.audit_daemon()
        ep = d.endpoint(0)
        denied_request(ep, "before.move.test")
        harness.wait_until(lambda: os.path.exists(path) and read_json_lines(path), harness.AUDIT_TIMEOUT,
                           "the first record")
        moved = path + ".1"
        os.rename(path, moved)  # logrotate's default: mv, then a signal
        denied_request(ep, "after.move.test")
        harness.wait_until(lambda: len(read_json_lines(moved)) >= 2, harness.AUDIT_TIMEOUT,
                           "the second record in the moved file")
        self.assertFalse(os.path.exists(path), "a new file appeared before SIGUSR1")
        mark = d.log_mark()
        d.send_signal(signal.SIGUSR1)
        reopened = d.wait_log("audit file reopened", start=mark)
        self.assertEqual(reopened["path"], path)
        denied_request(ep, "after.reopen.test")
        harness.wait_until(lambda: os.path.exists(path) and read_json_lines(path), harness.AUDIT_TIMEOUT,
                           "a record in the reopened file")
        d.stop()
        self.assertEqual([r["host"] for r in read_json_lines(moved)], ["before.move.test", "after.move.test"])
        self.assertEqual([r["host"] for r in read_json_lines(path)], ["after.reopen.test"])

    def test_sigusr1_with_stdout_audit_is_harmless(self):
        d = self.start_daemon(make_config(allow=[f"127.0.0.1:{self.o.echo.port}"]))
        mark = d.log_mark()
        d.send_signal(signal.SIGUSR1)
        d.wait_log("SIGUSR1: access records go to no file; nothing to reopen", start=mark)
        self.connect_echo_ok(d.endpoint(0), f"127.0.0.1:{self.o.echo.port}")
        d.wait_audit(event="request", port=self.o.echo.port)
        d.stop()


class CheckConfigTest(unittest.TestCase):
    def check_config(self, text: str) -> tuple[subprocess.CompletedProcess, str]:
        directory = harness.short_tempdir("egd-audit-cfg-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "egressd.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace("DIR", directory))
        r = subprocess.run([harness.egressd_binary(), "check-config", "--config", path], capture_output=True,
                           text=True, timeout=30, env=harness.tool_env())
        return r, path

    def test_bad_size_fails_with_path_and_line(self):
        head = "version: 1\nlisteners:\n  - address: 127.0.0.1:0\nlog:\n  audit: DIR/audit.log\n"
        for value, words in (("100", "100B"), ("10XB", "unknown unit"), ("512B", "at least 1KiB")):
            with self.subTest(value=value):
                r, path = self.check_config(head + f"  audit_max_size: {value}\n")
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(f"{path}:6:", r.stderr)
                self.assertIn("error: log.audit_max_size:", r.stderr)
                self.assertIn(words, r.stderr)
        r, path = self.check_config(head + "  audit_max_size: 100MB\n  audit_max_files: 3\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        r, path = self.check_config(head.replace("DIR/audit.log", "stdout") + "  audit_max_size: 100MB\n")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"{path}:6:", r.stderr)
        self.assertIn("applies to an audit file only", r.stderr)


if __name__ == "__main__":
    unittest.main()
