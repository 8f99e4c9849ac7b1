"""The README's guide "Using it with Claude Code and sandbox-runtime", followed as written:
sandbox-runtime's own CLI (`srt`, npm `@anthropic-ai/sandbox-runtime`, installed into
tests/integration/.npm by `scripts/deps.sh test`) runs real clients in its bubblewrap
sandbox, with the settings file of the guide pointing it at the real egressd, which
runs with `--settings` on that same file and a YAML config with the confirmation hook.

Inside the sandbox there is no network namespace of the host's: no DNS and no route,
only srt's socat bridges (its in-sandbox 3128 and 1080, bridged to the settings'
`httpProxyPort` and `socksProxyPort` on the host). So every client below reaches its
origin through egressd, by name, and each test checks egressd's access records:

- curl over plain HTTP (HTTP_PROXY), and a direct connection that goes nowhere;
- git over smart HTTP (`git http-backend` behind a small CGI server here);
- git over SSH (a real sshd on loopback) through srt's own GIT_SSH_COMMAND (socat
  `PROXY:` = HTTP CONNECT to the HTTP port), and through the SOCKS port with
  `nc -X 5` (the ProxyCommand srt writes on macOS);
- pip download and pip install --target from a PEP 503 simple index serving a wheel
  built here;
- npm install from a registry serving a package built here;
- a settings file without `socksProxyPort`: srt's own proxy serves that side, and
  egressd sees none of it (the guide's reason for giving both ports);
- a destination outside the allowlist: the hook (deploy/hooks/allowlist.sh, the
  README's first hook example) allows one and denies another, and the client inside
  the sandbox sees egressd's refusal, over HTTP and over SOCKS5.

Names (`web.test`, ...) resolve to 127.0.0.1 for egressd only (EGRESSD_HOSTS_FILE);
the settings file re-opens each origin's loopback address and port with an IP entry,
as the guide says for services on the same machine.

Skips, with the reason, only where the sandbox cannot exist: sandbox-runtime not
installed, a node too old for it, or bubblewrap unable to create its namespaces (no
user namespaces for a non-root user). Every other missing tool is a failure.
"""

from __future__ import annotations

import base64
import copy
import getpass
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import unittest
import zipfile
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.integration.harness import (
    DEFAULT_LIMITS,
    Egressd,
    EgressdTestCase,
    HarnessError,
    HttpOrigin,
    Origin,
    _HTTPOriginServer,
    egressd_binary,
    free_port,
    require_tools,
    short_tempdir,
    to_yaml,
    tool_env,
    write_file,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")
SRT_PACKAGE = os.path.join(ROOT, "tests", "integration", ".npm", "node_modules", "@anthropic-ai",
                           "sandbox-runtime")
SRT = os.path.join(ROOT, "tests", "integration", ".npm", "node_modules", ".bin", "srt")
SRT_TIMEOUT = 90.0     # one sandboxed command, srt's start and stop included
CLIENT_TIMEOUT = 30    # each client inside the sandbox (its own --max-time / timeout)
SKIP_MARK = "srt-skip:"  # ctest's SKIP_REGULAR_EXPRESSION for this module

NAMES = ("web.test", "git.test", "ssh.test", "pypi.test", "npm.test")
HOOK_ALLOWS = "asked.test"     # not in allowedDomains; the hook's list allows it
HOOK_DENIES = "blocked.test"   # not in allowedDomains, not in the hook's list
GUIDE_HOOK_YAML = "/etc/egressd/hook.yaml"
GUIDE_HOOK_SCRIPT = "/usr/local/share/egressd/hooks/allowlist.sh"
GUIDE_ALLOWLIST = "/etc/egressd/allowlist.txt"
TOKEN = "egressd-srt-%08x" % int.from_bytes(os.urandom(4), "big")


def skip(reason: str) -> unittest.SkipTest:
    # Printed as well, so that ctest reports the module as skipped, with the reason,
    # rather than as passed.
    print(f"{SKIP_MARK} {reason}", flush=True)
    return unittest.SkipTest(reason)


# ---------------------------------------------------------------------------------
# The guide, read from the README

def guide_section() -> str:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return text.split("## Using it with Claude Code and sandbox-runtime", 1)[1].split("\n## ", 1)[0]


def guide_json_blocks() -> list[dict]:
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", guide_section(), re.S)]


def guide_srt_settings() -> dict:
    """The guide's sandbox-runtime settings file (top-level `network`, as srt reads it)."""
    for block in guide_json_blocks():
        if "network" in block and "filesystem" in block:
            return block
    raise AssertionError("the guide shows no sandbox-runtime settings file (`network` and `filesystem` at the top)")


def guide_yaml(path: str) -> str:
    """The guide's YAML block whose first line is `# PATH`."""
    for body in re.findall(r"```yaml\n(.*?)```", guide_section(), re.S):
        if body.startswith(f"# {path}\n"):
            return body
    raise AssertionError(f"the guide shows no {path}")


def guide_commands(first_word: str) -> list[list[str]]:
    out = []
    for body in re.findall(r"```sh\n(.*?)```", guide_section(), re.S):
        for line in body.split("\n"):
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("$ "):
                line = line[2:]
            if line.startswith(first_word + " "):
                out.append(shlex.split(line))
    return out


# ---------------------------------------------------------------------------------
# Origins: git over smart HTTP, a static server for the pip index and the npm registry

class _CgiGitHandler(BaseHTTPRequestHandler):
    """`git http-backend` (git's own smart-HTTP CGI) behind http.server."""

    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = bytearray()
            for _ in range(100_000):
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline(1024)
                    break
                body += self.rfile.read(size)
                self.rfile.readline(8)
            return bytes(body)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.server.git_root,  # type: ignore[attr-defined]
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type") or "",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding") or "",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol") or "",
            "REMOTE_ADDR": self.client_address[0],
        }
        self.server.record({"method": self.command, "path": url.path})  # type: ignore[attr-defined]
        r = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=30)
        head, _, payload = r.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        if r.returncode != 0 and not head:
            status, payload = 500, r.stderr
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_GET


class _StaticHandler(BaseHTTPRequestHandler):
    """Serves the `files` dict of its server: path -> (content type, bytes)."""

    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.server.record({"method": "GET", "path": path})  # type: ignore[attr-defined]
        files = self.server.files  # type: ignore[attr-defined]
        ctype, payload = files.get(path, ("text/plain", None))
        if payload is None:
            ctype, payload = "text/plain", b"not found\n"
            self.send_response(404)
        else:
            self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class HandlerOrigin(Origin):
    """An HTTP origin on 127.0.0.1 with its own handler; `.seen` lists the requests."""

    def __init__(self, handler: type, **attrs: Any):
        server = _HTTPOriginServer("127.0.0.1")
        server.RequestHandlerClass = handler
        for k, v in attrs.items():
            setattr(server, k, v)
        super().__init__(server)

    @property
    def seen(self) -> list[dict]:
        srv: _HTTPOriginServer = self.server  # type: ignore[assignment]
        with srv._seen_lock:
            return list(srv.seen)


def build_wheel() -> tuple[str, bytes]:
    """A pure-Python wheel (PEP 427) made with zipfile: egdprobe 1.0, no network."""
    name, version = "egdprobe", "1.0"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"TOKEN = {TOKEN!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: egressd-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path, text in files.items():
            z.writestr(path, text)
    return f"{name}-{version}-py3-none-any.whl", buf.getvalue()


def build_npm_tarball() -> bytes:
    """egd-probe 1.0.0 as npm packs it: package/package.json and package/index.js."""
    files = {
        "package/package.json": json.dumps({"name": "egd-probe", "version": "1.0.0", "main": "index.js"}),
        "package/index.js": f"module.exports = {json.dumps(TOKEN)};\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_git_repo(root: str) -> str:
    """A bare repository root/probe.git with one commit whose README holds TOKEN."""
    work = os.path.join(root, "work")
    os.makedirs(work)
    env = tool_env({"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
                    "GIT_CONFIG_NOSYSTEM": "1", "HOME": root})
    write_file(work, "README", TOKEN + "\n")
    bare = os.path.join(root, "probe.git")
    for cmd in (["git", "init", "-q", "-b", "main", work],
                ["git", "-C", work, "add", "README"],
                ["git", "-C", work, "commit", "-q", "-m", "probe"],
                ["git", "clone", "-q", "--bare", work, bare]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
        if r.returncode != 0:
            raise HarnessError(f"{' '.join(cmd)}: {r.stderr}")
    return bare


class Sshd:
    """OpenSSH's sshd on 127.0.0.1 with a throwaway host key and one authorized key,
    serving git over SSH for the user running the tests. Run by root, it needs
    /run/sshd (created here when missing)."""

    def __init__(self, directory: str):
        self.dir = directory
        self.port = free_port()
        self.host_key = os.path.join(directory, "host_key")
        self.client_key = os.path.join(directory, "client_key")
        for key in (self.host_key, self.client_key):
            r = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key],
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise HarnessError(f"ssh-keygen: {r.stderr}")
        shutil.copy(self.client_key + ".pub", os.path.join(directory, "authorized_keys"))
        with open(self.host_key + ".pub", encoding="utf-8") as f:
            host_pub = " ".join(f.read().split()[:2])
        self.known_hosts = write_file(directory, "known_hosts", f"[ssh.test]:{self.port} {host_pub}\n")
        config = write_file(directory, "sshd_config", "\n".join([
            f"ListenAddress 127.0.0.1:{self.port}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {os.path.join(directory, 'authorized_keys')}",
            f"AllowUsers {getpass.getuser()}",
            "PidFile none",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",  # the key files are in a temporary directory
            "UsePAM no",
            "LogLevel VERBOSE",
            "",
        ]))
        if os.geteuid() == 0:
            # sshd started by root privilege-separates into this directory; Debian's
            # service creates it at boot (RuntimeDirectory), a container may lack it.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.access(sshd, os.X_OK):
            raise HarnessError("sshd is missing: scripts/deps.sh test installs openssh-server")
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.proc = subprocess.Popen([sshd, "-D", "-e", "-f", config], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        threading.Thread(target=self._pump, daemon=True, name="sshd-stderr").start()
        if not self._ready.wait(10):
            self.close()
            raise HarnessError("sshd did not say `Server listening` within 10 s:\n" + "\n".join(self.lines[-20:]))

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self.lines.append(line)
            if "Server listening on 127.0.0.1" in line:
                self._ready.set()
        self._ready.set()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# ---------------------------------------------------------------------------------
# The sandbox

def srt_problem() -> str | None:
    """Why srt cannot run its sandbox here (a skip), or None. Missing tools that
    scripts/deps.sh installs are failures, not skips."""
    if not os.path.exists(SRT):
        return ("sandbox-runtime is not installed in tests/integration/.npm "
                "(scripts/deps.sh test installs @anthropic-ai/sandbox-runtime)")
    node = shutil.which("node")
    if node is None:
        return "node is not installed (scripts/deps.sh test installs it)"
    r = subprocess.run([node, "-p", "process.versions.node"], capture_output=True, text=True, timeout=30)
    with open(os.path.join(SRT_PACKAGE, "package.json"), encoding="utf-8") as f:
        wanted = json.load(f).get("engines", {}).get("node", "")
    m = re.match(r">=\s*(\d+)\.(\d+)", wanted)
    have = tuple(int(x) for x in r.stdout.strip().split(".")[:2]) if r.returncode == 0 else (0, 0)
    if m and have < (int(m.group(1)), int(m.group(2))):
        return f"sandbox-runtime needs node {wanted}; this node is {r.stdout.strip()}"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise HarnessError("bwrap is not installed: scripts/deps.sh test installs bubblewrap")
    # The namespaces srt asks bubblewrap for (user, pid, network): a non-root user on
    # a kernel or container without unprivileged user namespaces cannot have them.
    r = subprocess.run([bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net",
                        "--unshare-pid", "--die-with-parent", "--", "true"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        return f"bubblewrap cannot create a sandbox here (uid {os.geteuid()}): {r.stderr.strip()}"
    return None


class SandboxResult:
    def __init__(self, rc: int, out: str, err: str):
        self.rc, self.out, self.err = rc, out, err

    def __str__(self) -> str:
        return f"exit {self.rc}\n--- stdout ---\n{self.out[-3000:]}\n--- stderr ---\n{self.err[-3000:]}"


def setUpModule() -> None:
    problem = srt_problem()
    if problem:
        raise skip(problem)
    require_tools("curl", "git", "ssh", "ssh-keygen", "socat", "nc", "npm", "node")
    egressd_binary()


class SandboxRuntimeGuideTest(EgressdTestCase):
    """One egressd, run as the guide says, and one sandbox per client."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = short_tempdir("egd-srt-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.web = HttpOrigin("127.0.0.1")
        cls.addClassCleanup(cls.web.close)
        git_root = os.path.join(cls.tmp, "git")
        os.makedirs(git_root)
        cls.bare = make_git_repo(git_root)
        cls.git = HandlerOrigin(_CgiGitHandler, git_root=git_root)
        cls.addClassCleanup(cls.git.close)
        os.makedirs(os.path.join(cls.tmp, "ssh"))
        cls.sshd = Sshd(os.path.join(cls.tmp, "ssh"))
        cls.addClassCleanup(cls.sshd.close)
        wheel_name, wheel = build_wheel()
        cls.pypi = HandlerOrigin(_StaticHandler, files={})
        cls.addClassCleanup(cls.pypi.close)
        cls.pypi.server.files.update({  # type: ignore[attr-defined]
            "/simple/": ("text/html", b'<!DOCTYPE html><html><body><a href="egdprobe/">egdprobe</a></body></html>'),
            "/simple/egdprobe/": ("text/html", (
                f'<!DOCTYPE html><html><body><a href="/files/{wheel_name}#sha256='
                f'{hashlib.sha256(wheel).hexdigest()}">{wheel_name}</a></body></html>').encode()),
            f"/files/{wheel_name}": ("application/octet-stream", wheel),
        })
        cls.npm = HandlerOrigin(_StaticHandler, files={})
        cls.addClassCleanup(cls.npm.close)
        tgz = build_npm_tarball()
        tarball_url = f"http://npm.test:{cls.npm.port}/egd-probe/-/egd-probe-1.0.0.tgz"
        packument = {"name": "egd-probe", "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": {
            "name": "egd-probe", "version": "1.0.0", "main": "index.js",
            "dist": {"tarball": tarball_url, "shasum": hashlib.sha1(tgz).hexdigest(),
                     "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()}}}}
        cls.npm.server.files.update({  # type: ignore[attr-defined]
            "/egd-probe": ("application/json", json.dumps(packument).encode()),
            "/egd-probe/-/egd-probe-1.0.0.tgz": ("application/octet-stream", tgz),
        })
        cls.ports = {"web.test": cls.web.port, "git.test": cls.git.port, "ssh.test": cls.sshd.port,
                     "pypi.test": cls.pypi.port, "npm.test": cls.npm.port}

        # The settings file: the guide's, with this machine's ports and names.
        cls.http_port, cls.socks_port = free_port(), free_port()
        while cls.socks_port == cls.http_port:
            cls.socks_port = free_port()
        settings = copy.deepcopy(guide_srt_settings())
        network = settings["network"]
        for key in ("httpProxyPort", "socksProxyPort", "allowedDomains", "deniedDomains"):
            if key not in network:
                raise AssertionError(f"the guide's settings file has no network.{key}")
        network["httpProxyPort"], network["socksProxyPort"] = cls.http_port, cls.socks_port
        network["allowedDomains"] = [*NAMES, *(f"127.0.0.1:{p}" for p in sorted(set(cls.ports.values())))]
        cls.settings = write_file(cls.tmp, "srt-settings.json", json.dumps(settings, indent=2) + "\n")

        # egressd as the guide runs it: the guide's YAML with the hook (its paths made
        # this checkout's, and the logs the harness reads added), plus --settings.
        for cmd in (["egressd", "run", "--config", GUIDE_HOOK_YAML, "--settings", "~/.srt-settings.json"],
                    ["srt", "--settings", "~/.srt-settings.json", "-c"]):
            if not any(c[:len(cmd)] == cmd for c in guide_commands(cmd[0])):
                raise AssertionError(f"the guide no longer runs `{' '.join(cmd)} ...`: this test follows it")
        allowlist = write_file(cls.tmp, "allowlist.txt", f"{HOOK_ALLOWS}\n")
        hook_yaml = guide_yaml(GUIDE_HOOK_YAML)
        for path, here in ((GUIDE_HOOK_SCRIPT, os.path.join(ROOT, "deploy", "hooks", "allowlist.sh")),
                           (GUIDE_ALLOWLIST, allowlist)):
            if path not in hook_yaml:
                raise AssertionError(f"the guide's {GUIDE_HOOK_YAML} no longer names {path}")
            hook_yaml = hook_yaml.replace(path, here)
        if re.search(r"^(log|limits|listeners):", hook_yaml, re.M):
            raise AssertionError(f"the guide's {GUIDE_HOOK_YAML} has keys this test sets itself")
        config = hook_yaml + to_yaml({"limits": DEFAULT_LIMITS,
                                      "log": {"format": "json", "level": "info", "audit": "stdout"}})
        hosts = "".join(f"127.0.0.1 {n}\n" for n in (*NAMES, HOOK_ALLOWS, HOOK_DENIES))
        cls.egressd = Egressd(config, args=["--settings", cls.settings], hosts_text=hosts)
        cls.addClassCleanup(cls.egressd.close)
        cls._class_daemons = [cls.egressd]
        cls.egressd.start()
        cls.addClassCleanup(cls.egressd.stop)  # runs first: a clean exit (and no leak under ASan)
        bound = {(e.host, e.port) for e in cls.egressd.listeners}
        if bound != {("127.0.0.1", cls.http_port), ("127.0.0.1", cls.socks_port)}:
            raise AssertionError(f"egressd listens on {bound}, not on the settings' two ports")

    # -- helpers ---------------------------------------------------------------------
    def sandbox(self, command: str, settings: str | None = None) -> SandboxResult:
        """`srt --settings FILE -c COMMAND`, as the guide runs it, in a fresh working
        directory (the settings let the sandbox write only there)."""
        # srt starts its in-sandbox bridges (socat on 3128 and 1080) beside the command:
        # wait until both listen (read from /proc, no connection made), 10 s at most.
        command = ("n=0; while [ $n -lt 200 ]; do "
                   "l=$(awk '$4==\"0A\" {print $2}' /proc/net/tcp /proc/net/tcp6 2>/dev/null); "
                   'case "$l" in *:0C38*) case "$l" in *:0438*) break;; esac;; esac; '
                   "n=$((n+1)); sleep 0.05; done; " + command)
        work = short_tempdir("egd-srt-work-")
        self.addCleanup(shutil.rmtree, work, True)
        proc = subprocess.Popen([SRT, "--settings", settings or self.settings, "-c", command], cwd=work,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=tool_env(), start_new_session=True)
        try:
            out, err = proc.communicate(timeout=SRT_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=10)
            raise HarnessError(f"srt did not finish within {SRT_TIMEOUT}s: {command}\n"
                               f"{SandboxResult(-1, out.decode(errors='replace'), err.decode(errors='replace'))}")
        return SandboxResult(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    def assert_ok(self, r: SandboxResult) -> None:
        self.assertEqual(r.rc, 0, str(r))

    def wait_allowed(self, start: int, host: str, protocol: str, listener_port: int) -> dict:
        """egressd's record of an allowed request for `host` through the sandbox."""
        port = self.ports.get(host, self.web.port)
        rec = self.egressd.wait_audit(start=start, event="request", host=host, port=port, decision="allow",
                                      protocol=protocol)
        self.assertEqual(rec["listener"], f"127.0.0.1:{listener_port}", rec)
        self.assertTrue(rec["client"].startswith("127.0.0.1:"), rec)  # srt's bridge on this host
        self.assertNotIn("user", rec)  # srt sends an external proxy no credentials
        return rec

    # -- the sandbox itself --------------------------------------------------------------
    def test_inside_the_sandbox_only_the_proxy_bridges(self):
        """What the guide says arrives from the sandbox: the proxy variables point at srt's
        in-sandbox bridges, the sandbox's network has loopback alone (no DNS server can be
        reached), and a direct connection goes nowhere."""
        r = self.sandbox(
            'echo "HTTP_PROXY=$HTTP_PROXY"; echo "ALL_PROXY=$ALL_PROXY"; echo "GIT_SSH_COMMAND=$GIT_SSH_COMMAND"; '
            'echo "FTP_PROXY=$FTP_PROXY"; echo "RSYNC_PROXY=$RSYNC_PROXY"; '
            'echo "host_ports=$CLAUDE_CODE_HOST_HTTP_PROXY_PORT,$CLAUDE_CODE_HOST_SOCKS_PROXY_PORT"; '
            'echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\\n" ,)"; '
            f'curl -q -sS --noproxy "*" --max-time 5 -o /dev/null http://127.0.0.1:{self.web.port}/direct '
            '&& echo direct-ok || echo "direct-failed"')
        self.assert_ok(r)
        self.assertIn("HTTP_PROXY=http://localhost:3128", r.out)
        self.assertIn("ALL_PROXY=http://localhost:3128", r.out)
        self.assertIn("ProxyCommand='socat - PROXY:localhost:%h:%p,proxyport=3128'", r.out)
        self.assertIn("FTP_PROXY=socks5h://localhost:1080", r.out)
        self.assertIn("RSYNC_PROXY=localhost:1080", r.out)
        self.assertIn(f"host_ports={self.http_port},{self.socks_port}", r.out)
        self.assertIn("ifaces=lo,\n", r.out)  # no interface, so no route and no resolver, but loopback
        self.assertIn("direct-failed", r.out)
        self.assertFalse([s for s in self.web.seen if s["path"] == "/direct"], "a direct connection left the sandbox")

    def test_the_guide_gives_both_ports(self):
        """Both settings files of the guide name both ports (see the next test for why)."""
        blocks = guide_json_blocks()
        self.assertGreaterEqual(len(blocks), 2)
        for block in blocks:
            network = block.get("sandbox", block)["network"]
            self.assertIn("httpProxyPort", network, block)
            self.assertIn("socksProxyPort", network, block)

    def test_without_the_socks_port_that_side_bypasses_egressd(self):
        """The guide's reason for both ports: for a port the file does not give, srt
        starts a proxy of its own, and what goes there never reaches egressd. (The
        settings allow the origin's address and port, which srt's proxy honours too;
        the test names are in egressd's hosts file only.)"""
        with open(self.settings, encoding="utf-8") as f:
            settings = json.load(f)
        del settings["network"]["socksProxyPort"]
        half = write_file(self.tmp, "srt-settings-http-only.json", json.dumps(settings))
        mark = self.egressd.audit_mark()
        r = self.sandbox('echo "socks=$CLAUDE_CODE_HOST_SOCKS_PROXY_PORT"; '
                         f"curl -q -sS --max-time {CLIENT_TIMEOUT} --proxy socks5h://localhost:1080 "
                         f"--noproxy '' http://127.0.0.1:{self.web.port}/bypass", settings=half)
        self.assert_ok(r)
        port = int(re.search(r"socks=(\d+)", r.out).group(1))
        self.assertNotIn(port, (self.http_port, self.socks_port))
        self.assertTrue([s for s in self.web.seen if s["path"] == "/bypass"], "srt's own proxy did not pass it")
        # A request through egressd's HTTP port, after it, bounds the wait for records.
        r = self.sandbox(f"curl -q -sS --max-time {CLIENT_TIMEOUT} http://web.test:{self.web.port}/after", settings=half)
        self.assert_ok(r)
        self.egressd.wait_audit(start=mark, event="request", host="web.test", path="/after")
        self.assertEqual(self.egressd.audit_records(mark, event="request", path="/bypass"), [])

    # -- curl ------------------------------------------------------------------------------
    def test_curl_over_http(self):
        mark = self.egressd.audit_mark()
        r = self.sandbox(f"curl -q -sS --max-time {CLIENT_TIMEOUT} http://web.test:{self.web.port}/curl?t={TOKEN}")
        self.assert_ok(r)
        self.assertEqual(json.loads(r.out)["path"], f"/curl?t={TOKEN}")  # the origin's echo
        rec = self.wait_allowed(mark, "web.test", "http", self.http_port)
        self.assertEqual(rec["rule"], "web.test")
        self.assertEqual(rec["status"], 200)

    def test_curl_through_the_socks_port(self):
        """The SOCKS side (socks5h: the name goes to egressd), through srt's 1080 bridge
        to the settings' socksProxyPort."""
        mark = self.egressd.audit_mark()
        r = self.sandbox(f"curl -q -sS --max-time {CLIENT_TIMEOUT} --proxy socks5h://localhost:1080 "
                         f"http://web.test:{self.web.port}/socks")
        self.assert_ok(r)
        self.assertEqual(json.loads(r.out)["path"], "/socks")
        self.wait_allowed(mark, "web.test", "socks5", self.socks_port)

    # -- git -------------------------------------------------------------------------------
    def test_git_clone_over_http(self):
        """Smart HTTP (`git http-backend`), plain http:// through HTTP_PROXY."""
        mark = self.egressd.audit_mark()
        r = self.sandbox(f"GIT_TERMINAL_PROMPT=0 timeout {CLIENT_TIMEOUT} git clone -q "
                         f"http://git.test:{self.git.port}/probe.git clone && cat clone/README")
        self.assert_ok(r)
        self.assertIn(TOKEN, r.out)
        rec = self.wait_allowed(mark, "git.test", "http", self.http_port)
        self.assertEqual(rec["rule"], "git.test")
        paths = [s["path"] for s in self.git.seen]
        self.assertIn("/probe.git/info/refs", paths)
        self.assertIn("/probe.git/git-upload-pack", paths)  # smart, not dumb, HTTP

    def ssh_clone(self, ssh_command: str) -> SandboxResult:
        url = f"ssh://{getpass.getuser()}@ssh.test:{self.sshd.port}{self.bare}"
        options = (f"-i {self.sshd.client_key} -o IdentitiesOnly=yes -o BatchMode=yes "
                   f"-o UserKnownHostsFile={self.sshd.known_hosts} -o GlobalKnownHostsFile=/dev/null "
                   f"-o StrictHostKeyChecking=yes -o ConnectTimeout=20")
        return self.sandbox(f'GIT_SSH_COMMAND="{ssh_command} {options}" GIT_TERMINAL_PROMPT=0 '
                            f"timeout {CLIENT_TIMEOUT} git clone -q {url} clone && cat clone/README")

    def test_git_clone_over_ssh_with_srts_ssh_command(self):
        """The GIT_SSH_COMMAND srt sets on Linux (socat PROXY: = HTTP CONNECT to the HTTP
        port), with this test's key and known_hosts added."""
        mark = self.egressd.audit_mark()
        r = self.ssh_clone("$GIT_SSH_COMMAND")
        self.assert_ok(r)
        self.assertIn(TOKEN, r.out)
        rec = self.wait_allowed(mark, "ssh.test", "connect", self.http_port)
        self.assertEqual(rec["rule"], "ssh.test")
        self.egressd.wait_audit(start=mark, event="tunnel_closed", host="ssh.test",
                                bytes_down=lambda n: n > 1000)

    def test_git_clone_over_ssh_through_the_socks_port(self):
        """The ProxyCommand srt sets on macOS (`nc -X 5`: SOCKS5 with the name) to srt's
        1080 bridge, so to the settings' socksProxyPort."""
        mark = self.egressd.audit_mark()
        r = self.ssh_clone("ssh -o ControlMaster=no -o ControlPath=none "
                           "-o ProxyCommand='nc -X 5 -x localhost:1080 %h %p'")
        self.assert_ok(r)
        self.assertIn(TOKEN, r.out)
        self.wait_allowed(mark, "ssh.test", "socks5", self.socks_port)

    # -- pip and npm -----------------------------------------------------------------------
    def test_pip_download_and_install_from_a_local_index(self):
        index = f"http://pypi.test:{self.pypi.port}/simple/"
        pip = (f"{shlex.quote(sys.executable)} -m pip --no-cache-dir --disable-pip-version-check "
               f"--timeout {CLIENT_TIMEOUT} --retries 0")
        mark = self.egressd.audit_mark()
        r = self.sandbox(
            f"{pip} download -q --no-deps --index-url {index} --trusted-host pypi.test -d dl egdprobe && ls dl && "
            f"{pip} install -q --no-deps --index-url {index} --trusted-host pypi.test --target site egdprobe && "
            f"PYTHONPATH=site {shlex.quote(sys.executable)} -c 'import egdprobe; print(egdprobe.TOKEN)'")
        self.assert_ok(r)
        self.assertIn("egdprobe-1.0-py3-none-any.whl", r.out)
        self.assertIn(TOKEN, r.out)
        self.wait_allowed(mark, "pypi.test", "http", self.http_port)
        self.assertEqual(len([s for s in self.pypi.seen if s["path"].startswith("/files/")]), 2, self.pypi.seen)

    def test_npm_install_from_a_local_registry(self):
        mark = self.egressd.audit_mark()
        r = self.sandbox(
            f"timeout {CLIENT_TIMEOUT} npm install --registry http://npm.test:{self.npm.port}/ --cache ./npm-cache "
            "--prefix ./proj --no-audit --no-fund --no-update-notifier --fetch-retries 0 egd-probe && "
            "node -p 'require(\"./proj/node_modules/egd-probe\")'")
        self.assert_ok(r)
        self.assertIn(TOKEN, r.out)
        self.wait_allowed(mark, "npm.test", "http", self.http_port)
        paths = [s["path"] for s in self.npm.seen]
        self.assertIn("/egd-probe", paths)
        self.assertIn("/egd-probe/-/egd-probe-1.0.0.tgz", paths)

    # -- destinations outside the allowlist ------------------------------------------------
    def test_the_hook_answers_for_the_sandbox(self):
        """A name the settings do not list goes to the hook (`policy.unknown: ask`), which
        replaces the sandbox's permission prompt: allowed by the hook's list, or refused
        with egressd's 403 inside the sandbox, over HTTP and over SOCKS5."""
        mark = self.egressd.audit_mark()
        port = self.web.port
        r = self.sandbox(
            f"curl -q -sS --max-time {CLIENT_TIMEOUT} http://{HOOK_ALLOWS}:{port}/asked; echo; "
            f"curl -q -sS --max-time {CLIENT_TIMEOUT} -D - -o /dev/null http://{HOOK_DENIES}:{port}/denied; "
            f"curl -q -sS --max-time {CLIENT_TIMEOUT} --proxy socks5h://localhost:1080 "
            f"http://{HOOK_DENIES}:{port}/denied-socks; echo socks-rc=$?")
        self.assert_ok(r)
        self.assertEqual(json.loads(r.out.split("\n")[0])["path"], "/asked")
        self.assertRegex(r.out, r"HTTP/1\.[01] 403")
        self.assertIn("X-Proxy-Error: blocked-by-allowlist", r.out)
        self.assertRegex(r.out, r"socks-rc=9?7")  # curl: the SOCKS5 proxy refused (97; 7 before 7.79)
        allowed = self.egressd.wait_audit(start=mark, event="request", host=HOOK_ALLOWS, decision="allow")
        self.assertEqual((allowed["reason"], allowed["answered_by"]), ("hook_allow", "hook"), allowed)
        for protocol, listener in (("http", self.http_port), ("socks5", self.socks_port)):
            denied = self.egressd.wait_audit(start=mark, event="request", host=HOOK_DENIES, decision="deny",
                                             protocol=protocol)
            self.assertIn(denied["reason"], ("hook_deny", "remembered_deny"), denied)
            self.assertEqual(denied["listener"], f"127.0.0.1:{listener}", denied)
        self.assertFalse([s for s in self.web.seen if s["path"].startswith("/denied")], "a denied request arrived")


if __name__ == "__main__":
    unittest.main()
