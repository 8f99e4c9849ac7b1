"""What the daemon holds of the host (README "Life of a session", "Configuration", "Logs
and access records"): file descriptors bounded by max_connections and the descriptor
limit, even with tunnels whose client stopped reading; listener addresses held by
someone else refused at start-up; Unix listener permissions; control bytes from the
network never reaching a log raw."""

import grp
import os
import re
import resource
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (IO_TIMEOUT, Deadline, EgressdTestCase, HarnessError, TcpOrigin, make_config,  # noqa: E402
                     read_head, request_bytes, tunnel_opens, wait_closed, wait_until)

NOBODY = 65534


def setUpModule():
    harness.setup_module("openssl", "nc")
    # The descriptor test holds a few hundred sockets on this side too.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))


def tearDownModule():
    harness.close_origins()


def _firehose(sock: socket.socket, server) -> None:
    """Sends until the peer stops taking bytes, reports the stall once on `received`,
    and goes on offering bytes until the connection is closed (bounded in time)."""
    server.connections += 1
    sock.settimeout(0.2)
    block = b"x" * 65536
    stalled = False
    deadline = Deadline(90.0)
    for _ in range(200_000):
        if deadline.expired():
            break
        try:
            sock.send(block)
        except (socket.timeout, TimeoutError):
            if not stalled:
                stalled = True
                server.received.put(b"stalled")
        except OSError:
            break


def connect_or_refused(ep, target: str, timeout: float = 5.0) -> tuple[socket.socket | None, str]:
    """A CONNECT that must be answered promptly: (socket, "open") on 200, (None, how)
    when the connection is refused or closed; a HarnessError when nothing happens."""
    try:
        sock = ep.connect(timeout)
    except ConnectionRefusedError:
        return None, "refused"
    try:
        sock.sendall(request_bytes("CONNECT", target, [("Host", target)]))
        head, _ = read_head(sock, timeout)
    except (ConnectionResetError, BrokenPipeError):
        sock.close()
        return None, "reset"
    except HarnessError as e:
        sock.close()
        if "nothing received" in str(e):
            raise HarnessError(f"CONNECT neither answered nor closed within {timeout}s") from None
        return None, "closed"
    if head.status != 200:
        sock.close()
        return None, f"status {head.status}"
    return sock, "open"


def pipe_descriptors(pid: int) -> int:
    n = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("pipe:"):
                n += 1
        except OSError:
            pass
    return n


def open_file_limit(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits", encoding="ascii") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise HarnessError(f"no 'Max open files' in /proc/{pid}/limits")


class DescriptorBudgetTest(EgressdTestCase):
    """max_connections is checked against RLIMIT_NOFILE at start-up, and a tunnel whose
    client stopped reading does not hold pipes beyond the worker's pipe budget: further
    clients are served or refused at once, never left hanging on EMFILE."""

    FD_LIMIT = 256

    def setUp(self):
        self.fire = TcpOrigin(_firehose)
        self.addCleanup(self.fire.close)

    def test_stalled_tunnels_stay_within_the_descriptor_limit(self):
        if os.environ.get("EGRESSD_SANITIZED") == "1":
            self.skipTest("descriptor exhaustion starves the sanitizer runtime itself")
        o = self.o
        d = self.start_daemon(make_config(allow=[self.fire.hostport, o.echo.hostport], workers=2),
                              fd_limit=self.FD_LIMIT)
        warning = d.wait_log("max_connections lowered to fit the descriptor limit")
        self.assertEqual(warning["configured"], 20000, warning)
        self.assertEqual(warning["fd_limit"], self.FD_LIMIT, warning)
        effective = warning["max_connections"]
        self.assertGreater(effective, 10, warning)
        self.assertLess(2 * effective, self.FD_LIMIT, warning)
        pipes_per_worker = warning["pipes_per_worker"]
        ep = d.endpoint(0)

        # More tunnels than the daemon may hold, each with a client that never reads
        # while its origin sends without end.
        stuck: list[socket.socket] = []
        refusals: list[str] = []
        for _ in range(effective + 12):
            sock, how = connect_or_refused(ep, self.fire.hostport)
            if sock is None:
                refusals.append(how)
            else:
                self.addCleanup(sock.close)
                stuck.append(sock)
        self.assertGreaterEqual(len(stuck), effective - 3, f"refused early: {refusals}")
        self.assertLessEqual(len(stuck), effective)
        self.assertGreaterEqual(len(refusals), 12 - 3)
        for _ in range(len(stuck)):  # every origin has filled what the tunnel would take
            self.fire.server.received.get(timeout=20)

        # The stalled directions hold at most the pipe budget of each worker (plus the
        # daemon's own stdout and stderr pipes and Asio's signal pipe).
        self.assertLessEqual(pipe_descriptors(d.pid), 2 * pipes_per_worker * 2 + 6)
        # A client beyond the limit is refused at once, not left in the backlog.
        sock, how = connect_or_refused(ep, self.fire.hostport)
        self.assertIsNone(sock, "a tunnel beyond max_connections was opened")
        self.assertEqual(d.stderr.find_all(lambda r: r.get("msg") == "accept failed"), [], d.log_tail())

        for s in stuck:
            s.close()
        wait_until(lambda: tunnel_opens(ep, o.echo.hostport, timeout=IO_TIMEOUT), 10.0, "egressd to serve again")
        self.connect_echo_ok(ep, o.echo.hostport)
        self.assertTrue(d.alive())

    def test_origins_that_stop_reading_hold_no_pipes_beyond_the_budget(self):
        """The other direction: clients send without end to origins that never read."""
        if os.environ.get("EGRESSD_SANITIZED") == "1":
            self.skipTest("descriptor exhaustion starves the sanitizer runtime itself")
        release = threading.Event()
        self.addCleanup(release.set)
        deaf = TcpOrigin(lambda sock, server: release.wait(60.0))
        self.addCleanup(deaf.close)
        o = self.o
        d = self.start_daemon(make_config(allow=[deaf.hostport, o.echo.hostport], workers=2),
                              fd_limit=self.FD_LIMIT)
        plan = d.wait_log("max_connections lowered to fit the descriptor limit")
        ep = d.endpoint(0)
        tunnels = 40
        self.assertLess(tunnels, plan["max_connections"], plan)
        block = b"y" * 65536
        for _ in range(tunnels):
            sock, how = connect_or_refused(ep, deaf.hostport)
            self.assertIsNotNone(sock, how)
            self.addCleanup(sock.close)
            sock.setblocking(False)
            # Send until nothing more is taken for a quarter of a second: every buffer on the
            # way, the daemon's pipe or spill included, is full.
            for _ in range(20_000):
                try:
                    sock.send(block)
                except BlockingIOError:
                    if not select.select([], [sock], [], 0.25)[1]:
                        break
            else:
                self.fail("the tunnel took bytes without end from a client whose origin never reads")
        self.assertLessEqual(pipe_descriptors(d.pid), 2 * plan["pipes_per_worker"] * 2 + 6)
        self.connect_echo_ok(ep, o.echo.hostport)  # room for more, and a pipe for them
        self.assertEqual(d.stderr.find_all(lambda r: r.get("msg") == "accept failed"), [], d.log_tail())

    def test_soft_limit_raised_to_hard_limit(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard < 1024:
            self.skipTest(f"the hard limit ({hard}) leaves no room to test raising the soft one")
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
        try:
            d = self.start_daemon(make_config(limits={"max_connections": 100}))
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        self.assertEqual(open_file_limit(d.pid), (hard, hard))
        self.assertEqual(d.stderr.find_all(lambda r: r.get("msg", "").startswith("max_connections lowered")), [])
        ready = d.wait_log("ready")
        self.assertEqual(ready.get("max_connections"), 100, ready)

    def test_too_few_descriptors_fail_to_start(self):
        d = self.start_daemon(make_config(), fd_limit=24, wait_ready=False)
        self.assertEqual(d.wait_exit(10), 1, d.log_tail())
        failed = d.wait_log("startup failed")
        self.assertIn("descriptor", failed.get("error", ""), failed)


class TextLogEscapingTest(EgressdTestCase):
    """A SOCKS5 domain is bytes from the network: in text logs every byte outside
    printable ASCII is escaped (\\x1b), so a record stays one line and cannot move the
    terminal's cursor; JSON records escape control bytes and DEL and stay valid UTF-8."""

    EVIL = b"a\x1b[2Jb\x0bc\x00d\ne\x7ff\xc2\x9b1mg\xff\xfeh.example"

    def socks5_evil(self, ep) -> None:
        sock = ep.connect()
        with sock:
            sock.sendall(b"\x05\x01\x00")
            self.assertEqual(harness.recv_exact(sock, 2), b"\x05\x00")
            sock.sendall(b"\x05\x01\x00\x03" + bytes([len(self.EVIL)]) + self.EVIL + (443).to_bytes(2, "big"))
            reply = harness.socks5_read_reply(sock)
            self.assertNotEqual(reply.rep, 0)

    def start(self, fmt: str) -> tuple[harness.Egressd, str]:
        audit = os.path.join(harness.short_tempdir("egd-audit-"), "audit.log")
        self.addCleanup(shutil.rmtree, os.path.dirname(audit), True)
        cfg = make_config()
        cfg["log"] = {"format": fmt, "level": "info", "audit": audit}
        d = self.start_daemon(cfg, wait_ready=(fmt == "json"))
        return d, audit

    def wait_record(self, audit: str, needle: bytes) -> bytes:
        def read():
            try:
                with open(audit, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                return None
            return data if needle in data else None
        return wait_until(read, 5.0, f"an access record with {needle!r} in {audit}")

    def test_text_log_escapes_control_bytes(self):
        d, audit = self.start("text")
        line = wait_until(lambda: [x for x in d.stderr.lines if " listening " in x and "address=" in x], 10.0,
                          "a text `listening` line")[0]
        ep = harness.parse_endpoint(re.search(r"address=(\S+)", line).group(1))
        # Access records stay JSON lines under `format: text`, escaped as JSON.
        self.socks5_evil(ep)
        data = self.wait_record(audit, b"invalid_host")
        import json
        records = [json.loads(x) for x in data.split(b"\n")[:-1] if b"invalid_host" in x]
        self.assertEqual(records[0]["host"], "a\x1b[2Jb\x0bc\x00d\ne\x7ff\x9b1mg\ufffd\ufffdh.example")
        # The text log itself: a value with control bytes (here a config entry a reload
        # refuses, echoed in its `config problem` line) is quoted with \xHH escapes.
        mark = d.log_mark()
        d.write_config(d.config_text.replace("allow: []", 'allow: ["bad\\e[2J\\x0bentry.example"]'))
        d.send_signal(signal.SIGHUP)
        wait_until(lambda: [x for x in d.stderr.lines[mark:] if "config problem" in x], 10.0, "a `config problem` line")
        problem = [x for x in d.stderr.lines[mark:] if "config problem" in x][0]
        self.assertIn("bad\\x1b[2J\\x0bentry.example", problem)
        d.stop()
        for line in d.stderr.lines:  # no raw byte outside printable ASCII in the operational log
            self.assertEqual([c for c in line if not 0x20 <= ord(c) <= 0x7E], [], repr(line))

    def test_json_log_escapes_control_bytes_and_invalid_utf8(self):
        d, audit = self.start("json")
        self.socks5_evil(d.endpoint(0))
        data = self.wait_record(audit, b"invalid_host")
        lines = data.split(b"\n")[:-1]
        for raw in lines:
            bad = [b for b in raw if b < 0x20 or b == 0x7F]
            self.assertEqual(bad, [], f"raw control bytes in {raw!r}")
            raw.decode("utf-8")  # strict: invalid UTF-8 never reaches the record
        import json
        records = [json.loads(x) for x in lines if b"invalid_host" in x]
        self.assertEqual(records[0]["host"], "a\x1b[2Jb\x0bc\x00d\ne\x7ff\x9b1mg\ufffd\ufffdh.example")
        self.assertIn(rb"\u001b[2J", data)
        self.assertIn(rb"\u009b", data)  # C1 controls (CSI) escaped too


class AddressInUseTest(EgressdTestCase):
    """A listener address that another process holds is an error at start-up (exit 1,
    naming the address), even where both would set SO_REUSEPORT; the holder keeps
    serving. egressd's own workers still share their listeners."""

    def assert_refused_to_start(self, config: dict, address: str) -> None:
        d = self.start_daemon(config, wait_ready=False)
        rc = d.wait_exit(10)
        self.assertEqual(rc, 1, f"egressd started on {address}, which is taken\n{d.log_tail()}")
        failed = d.wait_log("startup failed")
        self.assertIn(address, failed.get("error", ""), failed)
        self.assertRegex(failed.get("error", ""), r"(?i)address (already )?in use", failed)

    def test_second_instance_on_the_same_address_fails(self):
        o = self.o
        first = self.start_daemon(make_config(allow=[o.echo.hostport], workers=2))
        ep = first.endpoint(0)
        address = ep.hostport
        self.assert_refused_to_start(make_config(listeners=[address], allow=[], workers=2), address)
        for _ in range(8):  # every connection still reaches the first instance
            self.connect_echo_ok(ep, o.echo.hostport)

    def test_port_held_by_netcat_fails(self):
        port = harness.free_port()
        nc = subprocess.Popen([harness.require_tool("nc"), "-l", "127.0.0.1", str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(nc.wait, 10)
        self.addCleanup(nc.kill)

        def listening() -> bool:
            probe = socket.socket()
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                return False
            except OSError:
                return True
            finally:
                probe.close()
        wait_until(listening, 5.0, "nc to listen")
        self.assert_refused_to_start(make_config(listeners=[f"127.0.0.1:{port}"]), f"127.0.0.1:{port}")
        self.assertIsNone(nc.poll(), "nc lost its port")

    def test_port_held_by_a_python_listener_fails(self):
        for reuse_port in (False, True):
            with self.subTest(reuse_port=reuse_port):
                s = socket.socket()
                self.addCleanup(s.close)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                s.bind(("127.0.0.1", 0))
                s.listen()
                address = f"127.0.0.1:{s.getsockname()[1]}"
                self.assert_refused_to_start(make_config(listeners=[address]), address)
                c = socket.create_connection(s.getsockname(), timeout=5)  # still ours
                a, _ = s.accept()
                a.close()
                c.close()

    def test_unix_socket_of_a_running_instance_is_not_taken_over(self):
        o = self.o
        sockdir = harness.short_tempdir("egd-u-")
        self.addCleanup(shutil.rmtree, sockdir, True)
        path = os.path.join(sockdir, "p.sock")
        first = self.start_daemon(make_config(listeners=[f"unix:{path}"], allow=[o.echo.hostport]))
        self.assert_refused_to_start(make_config(listeners=[f"unix:{path}"]), f"unix:{path}")
        self.connect_echo_ok(first.endpoint(0), o.echo.hostport)
        # A stale socket file (nobody listening) is still replaced.
        first.stop()
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        self.start_daemon(make_config(listeners=[f"unix:{path}"]))

    def test_admin_address_in_use_fails(self):
        held = socket.socket()
        self.addCleanup(held.close)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        address = f"127.0.0.1:{held.getsockname()[1]}"
        self.assert_refused_to_start(make_config(admin={"address": address}), address)


def connect_as(path: str, uid: int, gid: int) -> str:
    """Connects to the Unix socket `path` from a child process running as uid/gid (no
    supplementary groups): "ok", "PermissionError", or what else went wrong."""
    results = {0: "ok", 13: "PermissionError"}
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, connect, report through the exit status
        code = 99
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(path)
                code = 0
            except OSError as e:
                code = e.errno if e.errno in results else 98
        finally:
            os._exit(code)
    deadline = Deadline(10.0)
    for _ in range(1000):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return results.get(code, f"exit status {code}")
        if deadline.expired():
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise HarnessError("the client running as another user hung")
        threading.Event().wait(0.01)
    raise HarnessError("the client running as another user did not finish")


class UnixListenerModeTest(EgressdTestCase):
    """`mode` and `group` of a Unix listener are applied to the socket file, so a
    sandboxed non-root client can be let in (or kept out)."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to run a client as another user")
        self.dir = harness.short_tempdir("egd-m-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        os.chmod(self.dir, 0o755)  # everyone may reach the socket; its own mode decides
        self.path = os.path.join(self.dir, "p.sock")

    def start(self, **listener) -> harness.Egressd:
        cfg = make_config(listeners=[f"unix:{self.path}"])
        cfg["listeners"] = [{"address": f"unix:{self.path}", **listener}]
        old = os.umask(0o022)  # the daemon's umask: the default mode is 0755
        try:
            return self.start_daemon(cfg)
        finally:
            os.umask(old)

    def test_mode_0666_lets_another_user_connect(self):
        self.start(mode="0666")
        st = os.stat(self.path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o666)
        self.assertEqual(connect_as(self.path, NOBODY, NOBODY), "ok")

    def test_default_mode_keeps_other_users_out(self):
        self.start()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o755)
        self.assertEqual(connect_as(self.path, NOBODY, NOBODY), "PermissionError")

    def test_group_and_mode_0660(self):
        group = grp.getgrgid(NOBODY).gr_name
        self.start(mode="0660", group=group)
        st = os.stat(self.path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual(st.st_gid, NOBODY)
        self.assertEqual(connect_as(self.path, 12345, NOBODY), "ok")
        self.assertEqual(connect_as(self.path, 12345, 12345), "PermissionError")

    def test_check_config_refuses_bad_values(self):
        cases = [
            ('{address: "unix:/tmp/x.sock", mode: "0668"}', "mode"),
            ('{address: "unix:/tmp/x.sock", mode: 01777}', "mode"),
            ('{address: "unix:/tmp/x.sock", group: "no-such-group-egd"}', "no-such-group-egd"),
            ('{address: "127.0.0.1:0", mode: "0660"}', "Unix"),
        ]
        for listener, word in cases:
            with self.subTest(listener=listener):
                path = os.path.join(self.dir, "bad.yaml")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(f"version: 1\nlisteners:\n  - {listener}\n")
                r = subprocess.run([harness.egressd_binary(), "check-config", "--config", path], capture_output=True,
                                   timeout=30, stdin=subprocess.DEVNULL)
                out = (r.stdout + r.stderr).decode(errors="replace")
                self.assertEqual(r.returncode, 1, out)
                self.assertIn(":3:", out)
                self.assertIn(word, out)


if __name__ == "__main__":
    unittest.main()
