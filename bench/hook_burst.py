#!/usr/bin/env python3
"""bench/hook_burst.py: 1,000 distinct unknown destinations asked about at once.

    bench/hook_burst.py --egressd BIN --origin BENCH_ORIGIN [--hosts 1000] [--delay 0.05]

Starts bench_origin (echo), an HTTP approval endpoint (this script, `serve-hook`: each
question answered `allow` after --delay seconds, many at a time, keep-alive) and egressd
with `unknown: ask` and that endpoint as `hook.url`. Opens 8 tunnels to the echo origin
(allowed by a rule) and measures their round trip (64 bytes, one tunnel after the other)
for 2 s; then a separate process (`burst`) opens --hosts CONNECTs at once, each to a
distinct name nobody has answered for (h0.burst.test ... through egressd's hosts file,
all 127.0.0.1), while the round trips go on. Prints one JSON line:
  {"hosts", "answered", "allowed", "overloaded", "errors", "max_s", "p50_s",
   "rtt_p50_us_before", "rtt_p50_us_during", "rtt_ratio", "hook_questions"}
and a line for people. Everything is bounded: each wait has a deadline, the burst has
its own timeout, and every process started here is killed on exit.
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from bench_procs import Processes, free_port

HERE = os.path.abspath(__file__)


# ---- serve-hook: the approval endpoint ----------------------------------------------------

async def _serve_hook(port_file: str, delay: float) -> None:
    answered = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                await asyncio.sleep(delay)
                body = b'{"decision":"allow","remember":"once"}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                             str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
                answered += 1
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    os.replace(port_file + ".tmp", port_file)
    async with server:
        await asyncio.sleep(600)  # bounded: the orchestrator kills it long before


# ---- burst: many CONNECTs at once -------------------------------------------------------------

async def _one(proxy: tuple[str, int], host: str, port: int, deadline: float) -> tuple[float, str]:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*proxy), deadline)
        writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), deadline)
        status = head.split(b" ", 2)[1].decode()
        outcome = "allowed" if status == "200" else "other:" + head.split(b"\r\n", 1)[0].decode(errors="replace")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"proxy-status:") and outcome != "allowed":
                outcome += " " + line.decode(errors="replace")
        if b"hook_overloaded" in head:
            outcome = "overloaded"
        writer.close()
        return time.monotonic() - started, outcome
    except Exception as e:  # noqa: BLE001 - counted, reported
        return time.monotonic() - started, "error:" + type(e).__name__


async def _burst(proxy: str, hosts: int, port: int, deadline: float) -> dict:
    h, p = proxy.rsplit(":", 1)
    results = await asyncio.gather(*(_one((h, int(p)), f"h{i}.burst.test", port, deadline) for i in range(hosts)))
    times = sorted(t for t, _ in results)
    outcomes = [o for _, o in results]
    errors = [o for o in outcomes if o.startswith("error")]
    others = [o for o in outcomes if o.startswith("other")]
    return {"hosts": hosts, "answered": hosts - len(errors), "allowed": outcomes.count("allowed"),
            "overloaded": outcomes.count("overloaded"), "errors": len(errors),
            "first_error": errors[0] if errors else None, "first_refusal": others[0] if others else None,
            "max_s": round(times[-1], 3), "p50_s": round(times[len(times) // 2], 3)}


# ---- the orchestrator -----------------------------------------------------------------------

def _wait_file(path: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                text = f.read()
            if text:
                return text
        time.sleep(0.05)
    raise SystemExit(f"hook_burst: {path} did not appear")


def _tunnel(proxy: tuple[str, int], port: int) -> socket.socket:
    s = socket.create_connection(proxy, timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("hook_burst: a rule-allowed tunnel was refused")
        buf += chunk
    if b" 200 " not in buf.split(b"\r\n", 1)[0]:
        raise SystemExit(f"hook_burst: tunnel refused: {buf[:80]!r}")
    return s


def _rtts(tunnels: list[socket.socket], until) -> list[float]:
    out = []
    payload = b"x" * 64
    limit = time.monotonic() + 60
    while not until() and time.monotonic() < limit:
        for s in tunnels:
            t = time.perf_counter()
            s.sendall(payload)
            got = 0
            while got < len(payload):
                got += len(s.recv(4096))
            out.append((time.perf_counter() - t) * 1e6)
        time.sleep(0.002)
    return out


def orchestrate(args) -> int:
    with Processes("egressd-hook-burst-") as ps:
        echo = ps.origin(args.origin, 600)["echo"]
        port_file = ps.path("hook.port")
        ps.start([sys.executable, HERE, "serve-hook", "--port-file", port_file, "--delay", str(args.delay)], "hook")
        hook_port = int(_wait_file(port_file, 10))
        hosts = ps.path("hosts")
        with open(hosts, "w") as f:
            f.writelines(f"127.0.0.1 h{i}.burst.test\n" for i in range(args.hosts))
        admin_port = free_port()
        env = dict(os.environ, CARES_HOSTS=hosts)  # c-ares reads this file instead of /etc/hosts
        _, proxy_port = ps.egressd(args.egressd, f"""version: 1
listeners: [ {{ address: "127.0.0.1:0" }} ]
admin: {{ address: "127.0.0.1:{admin_port}" }}
policy: {{ allow: ["127.0.0.1"], unknown: ask }}
hook: {{ url: "http://127.0.0.1:{hook_port}/decide", timeout: 10s, max_pending: {args.hosts + 24},
        concurrency: {args.concurrency} }}
log: {{ format: json, level: info, audit: "off" }}
limits: {{ max_connections: 20000 }}
""", env=env)
        proxy = ("127.0.0.1", proxy_port)

        tunnels = [_tunnel(proxy, echo) for _ in range(8)]
        t_end = time.monotonic() + 2.0
        before = _rtts(tunnels, lambda: time.monotonic() >= t_end)
        burst_out = ps.path("burst.json")
        burst = ps.start([sys.executable, HERE, "burst", "--proxy", f"127.0.0.1:{proxy_port}", "--hosts",
                       str(args.hosts), "--port", str(echo), "--out", burst_out], "burst")
        during = _rtts(tunnels, lambda: burst.poll() is not None)
        burst.wait(timeout=60)
        result = json.loads(_wait_file(burst_out, 5))
        for s in tunnels:
            s.close()
        metrics = subprocess.run(["curl", "-s", f"http://127.0.0.1:{admin_port}/metrics"], capture_output=True,
                                 timeout=10).stdout.decode()
        questions = sum(float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines()
                        if l.startswith("egressd_hook_questions_total{"))
        result.update({
            "rtt_p50_us_before": round(statistics.median(before), 1),
            "rtt_p50_us_during": round(statistics.median(during), 1) if during else None,
            "hook_questions": int(questions), "hook_delay_s": args.delay, "hook_concurrency": args.concurrency,
        })
        if during:
            result["rtt_ratio"] = round(result["rtt_p50_us_during"] / result["rtt_p50_us_before"], 2)
        print(json.dumps(result))
        print(f"# {result['answered']}/{result['hosts']} answered (allowed {result['allowed']}, "
              f"overloaded {result['overloaded']}, errors {result['errors']}), slowest {result['max_s']} s, "
              f"p50 {result['p50_s']} s; open tunnels' p50 round trip {result['rtt_p50_us_before']} us before, "
              f"{result['rtt_p50_us_during']} us during ({result.get('rtt_ratio')}x); "
              f"{result['hook_questions']} hook questions", file=sys.stderr)
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    sh = sub.add_parser("serve-hook")
    sh.add_argument("--port-file", required=True)
    sh.add_argument("--delay", type=float, default=0.05)
    b = sub.add_parser("burst")
    b.add_argument("--proxy", required=True)
    b.add_argument("--hosts", type=int, default=1000)
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--out", required=True)
    ap.add_argument("--egressd")
    ap.add_argument("--origin")
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--delay", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=128)
    args = ap.parse_args()
    if args.cmd == "serve-hook":
        asyncio.run(asyncio.wait_for(_serve_hook(args.port_file, args.delay), 700))
        return 0
    if args.cmd == "burst":
        result = asyncio.run(_burst(args.proxy, args.hosts, args.port, 30))
        with open(args.out + ".tmp", "w") as f:
            json.dump(result, f)
        os.replace(args.out + ".tmp", args.out)
        return 0
    if not args.egressd or not args.origin:
        ap.error("--egressd and --origin are required")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
