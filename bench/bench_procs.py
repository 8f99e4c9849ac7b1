"""Processes of a bench script (bench/hook_burst.py, bench/scrape.py): each started in
its own session with its output in a temporary folder, all killed when the `with` block
ends; bench_origin and egressd started and waited for, every wait bounded."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def wait_line(path: str, needle: str, seconds: float, who: str = "bench") -> str:
    """The first line of `path` that contains `needle`, within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                for line in f:
                    if needle in line:
                        return line
        time.sleep(0.05)
    raise SystemExit(f"{who}: no {needle!r} in {path}")


def free_port() -> int:
    """A loopback port nobody listens on now (for the admin endpoint)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    def __init__(self, prefix: str):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)

    def start(self, cmd: list[str], name: str, **kw) -> subprocess.Popen:
        """Runs `cmd` in its own session; stdout and stderr go to NAME.out and NAME.err."""
        p = subprocess.Popen(cmd, stdout=open(self.path(name + ".out"), "w"),
                             stderr=open(self.path(name + ".err"), "w"), stdin=subprocess.DEVNULL,
                             start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def origin(self, binary: str, max_seconds: int, name: str = "origin", body_bytes: int = 128) -> dict:
        """Starts bench_origin (its HTTP port answers bodies of `body_bytes`); returns its
        ports by name (echo, source, sink, http, echo1)."""
        self.start([binary, "--echo-port", "0", "--source-port", "0", "--sink-port", "0", "--http-port", "0",
                    "--body-bytes", str(body_bytes), "--max-seconds", str(max_seconds)], name)
        return json.loads(wait_line(self.path(f"{name}.out"), "{", 10))

    def egressd(self, binary: str, config_text: str, **kw) -> tuple[subprocess.Popen, int]:
        """Starts egressd on `config_text` (its first listener on 127.0.0.1:0); returns the
        process and the port it listens on, once it is ready."""
        cfg = self.path("egressd.yaml")
        with open(cfg, "w") as f:
            f.write(config_text)
        p = self.start([binary, "run", "--config", cfg], "egressd", **kw)
        err = self.path("egressd.err")
        wait_line(err, '"msg":"ready"', 20, "egressd")
        line = wait_line(err, '"msg":"listening"', 5, "egressd")
        return p, int(json.loads(line)["address"].rsplit(":", 1)[1])
