#!/usr/bin/env python3
"""bench/scrape.py: GET /metrics with 1,000 domains, and whether scraping stalls the data path.

    bench/scrape.py --egressd BIN --origin BENCH_ORIGIN --load BENCH_LOAD
                    [--domains 1000] [--scrapes 50] [--seconds 3] [--repeat 3]

Starts bench_origin (echo) and egressd (admin endpoint on, `log.audit: off`, metrics
as always), then:

1. creates the series of --domains distinct registrable domains: one CONNECT each to
   www.site<i>.com:443, which the policy denies (`unknown: deny`, so no name is
   looked up); each creates its domain's `egressd_requests_total` series and its
   `egressd_bytes_{up,down}_total` pair;
2. times --scrapes GET /metrics one after another on one keep-alive connection (from
   the request's first byte to the body's last): p50, p99, max, the size and the
   number of series;
3. runs bench_load's setup scenario (CONNECT, 1 client and 64 clients) for --seconds,
   --repeat rounds of: without a scraper, with a scraper polling /metrics every
   100 ms (its own connection, in a thread), the control (below), and without again. It reports the
   median p99 with and without (the two runs without of every round together) and
   their ratio, and the same ratio between the first and the second run without (an
   A/A comparison: how far the p99 moves when nothing changes). The p99 with a
   scraper "does not move" when it lies within the spread of the runs without: on
   2 shared CPUs a one-client p99 moves by up to ±20 % between runs of 2 s with no
   scraper at all, so a ratio alone says little. A fourth run per round is the
   control: the scraper polls a bench_origin that answers the same number of bytes
   without rendering anything, which shows what the transfer and the scraper alone
   cost on these CPUs. The scrapes' times under that load are reported too.

Prints one JSON line and a summary for people on stderr. Everything is bounded: each
wait has a deadline, each bench_load run has a timeout, and every process started here
is killed on exit.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

from bench_procs import Processes, free_port


def _deny(proxy: tuple[str, int], host: str) -> None:
    with socket.create_connection(proxy, timeout=5) as s:
        s.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        buf = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        if b" 403 " not in buf.split(b"\r\n", 1)[0]:
            raise SystemExit(f"scrape: expected a 403 for {host}: {buf[:120]!r}")


class Scraper:
    """GET /metrics on one keep-alive connection; each call returns (seconds, body)."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(self) -> tuple[float, bytes]:
        t = time.perf_counter()
        self.conn.request("GET", "/metrics")
        r = self.conn.getresponse()
        body = r.read()
        took = time.perf_counter() - t
        if r.status != 200:
            raise SystemExit(f"scrape: /metrics answered {r.status}")
        return took, body

    def close(self) -> None:
        self.conn.close()


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def _ms(x: float) -> float:
    return round(x * 1000, 2)


def orchestrate(args) -> int:
    with Processes("egressd-scrape-") as ps:
        echo = ps.origin(args.origin, 900)["echo"]
        admin_port = free_port()
        eg, proxy_port = ps.egressd(args.egressd, f"""version: 1
listeners: [ {{ address: "127.0.0.1:0" }} ]
admin: {{ address: "127.0.0.1:{admin_port}" }}
policy: {{ allow: ["127.0.0.1"], unknown: deny }}
metrics: {{ max_domains: {max(1000, args.domains)} }}
log: {{ format: json, level: info, audit: "off" }}
limits: {{ max_connections: 20000, idle_timeout: 10m }}
""")
        proxy = ("127.0.0.1", proxy_port)

        # 1. the domains' series
        t0 = time.monotonic()
        hosts = [f"www.site{i}.com" for i in range(args.domains)]
        errors: list[BaseException] = []

        def deny_all(part: list[str]) -> None:
            try:
                for h in part:
                    _deny(proxy, h)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=deny_all, args=(hosts[k::8],)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        if errors:
            raise SystemExit(f"scrape: creating the domains failed: {errors[0]}")
        created_s = time.monotonic() - t0

        # 2. scrapes, one after another, the proxy otherwise idle
        sc = Scraper(admin_port)
        times = []
        body = b""
        for _ in range(args.scrapes):
            took, body = sc.get()
            times.append(took)
        sc.close()
        text = body.decode()
        series = [l for l in text.splitlines() if l and not l.startswith("#")]
        domains = {l.split('domain="', 1)[1].split('"', 1)[0] for l in series if 'domain="' in l}

        # 3. the setup benchmark without and with a scraper every 100 ms
        def setup_run(concurrency: int) -> dict:
            cmd = [args.load, "--mode", "connect", "--proxy", f"127.0.0.1:{proxy_port}", "--target",
                   f"127.0.0.1:{echo}", "--scenario", "setup", "--concurrency", str(concurrency), "--seconds",
                   str(args.seconds), "--warmup", "0.5", "--cpu-pgid", str(eg.pid)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 40).stdout
            lines = [l for l in out.splitlines() if l.startswith("{")]
            if not lines:
                raise SystemExit(f"scrape: bench_load gave no result: {out[-300:]}")
            return json.loads(lines[0])

        under_load: list[float] = []

        # The control: the same bytes, every 100 ms, from a server that only sends them
        # (bench_origin's HTTP port with a body of the exposition's size). What it moves
        # is the cost of the transfer and the scraper on these CPUs, not of egressd.
        static_port = ps.origin(args.origin, 900, name="static", body_bytes=len(body))["http"]

        def with_scraper(concurrency: int, port: int = admin_port) -> tuple[dict, int]:
            stop = threading.Event()
            count = [0]

            def poll() -> None:
                s = Scraper(port)
                try:
                    while not stop.is_set():
                        t = time.monotonic()
                        took, _ = s.get()
                        if port == admin_port:
                            under_load.append(took)
                        count[0] += 1
                        stop.wait(max(0.0, 0.1 - (time.monotonic() - t)))
                finally:
                    s.close()

            th = threading.Thread(target=poll)
            th.start()
            try:
                return setup_run(concurrency), count[0]
            finally:
                stop.set()
                th.join(timeout=15)

        setup = {}
        for c in (1, 64):
            runs = {"off": [], "on": [], "control": [], "again": []}
            for _ in range(args.repeat):
                runs["off"].append(setup_run(c))
                r, n = with_scraper(c)
                r["scrapes"] = n
                runs["on"].append(r)
                runs["control"].append(with_scraper(c, static_port)[0])
                runs["again"].append(setup_run(c))
            without = runs["off"] + runs["again"]

            def summary(v: list[dict]) -> dict:
                return {"p99_us": statistics.median(r["p99_us"] for r in v),
                        "p50_us": statistics.median(r["p50_us"] for r in v),
                        "rate": statistics.median(r["value"] for r in v),
                        "errors": sum(r.get("errors", 0) for r in v),
                        "p99s_us": [round(r["p99_us"]) for r in v]}

            med = {"off": summary(without), "on": summary(runs["on"]), "control": summary(runs["control"])}
            med["p99_ratio"] = round(med["on"]["p99_us"] / med["off"]["p99_us"], 2)
            med["p99_ratio_control"] = round(med["control"]["p99_us"] / med["off"]["p99_us"], 2)
            # The A/A ratio: the second run without against the first, same rounds.
            med["p99_ratio_aa"] = round(statistics.median(r["p99_us"] for r in runs["again"]) /
                                        statistics.median(r["p99_us"] for r in runs["off"]), 2)
            # "Does not move": the median p99 with a scraper lies within the spread of
            # the runs without (run-to-run noise is the yardstick, not 1.00 exactly).
            med["p99_within_noise"] = min(med["off"]["p99s_us"]) <= med["on"]["p99_us"] <= max(med["off"]["p99s_us"])
            med["rate_ratio"] = round(med["on"]["rate"] / med["off"]["rate"], 2)
            med["scrapes_during"] = sum(r["scrapes"] for r in runs["on"])
            setup[f"setup{c}"] = med

        result = {
            "domains_asked": args.domains, "domain_label_values": len(domains), "series": len(series),
            "bytes": len(body), "created_s": round(created_s, 2), "scrapes": len(times),
            "scrape_p50_ms": _ms(statistics.median(times)), "scrape_p99_ms": _ms(_pct(times, 0.99)),
            "scrape_max_ms": _ms(max(times)),
            "scrape_under_load_p50_ms": _ms(statistics.median(under_load)) if under_load else None,
            "scrape_under_load_max_ms": _ms(max(under_load)) if under_load else None,
            "setup_seconds": args.seconds, "repeat": args.repeat, **setup,
        }
        print(json.dumps(result))
        print(f"# /metrics with {len(domains)} domain values, {len(series)} series, {len(body):,} bytes: "
              f"p50 {result['scrape_p50_ms']} ms, p99 {result['scrape_p99_ms']} ms, max {result['scrape_max_ms']} ms "
              f"over {len(times)} scrapes (under setup load: p50 {result['scrape_under_load_p50_ms']} ms, "
              f"max {result['scrape_under_load_max_ms']} ms)", file=sys.stderr)
        for k, v in setup.items():
            print(f"# {k}: p99 {v['off']['p99_us']:.0f} us without a scraper, {v['on']['p99_us']:.0f} us with one "
                  f"every 100 ms ({v['p99_ratio']}x, {'within' if v['p99_within_noise'] else 'outside'} the runs without; "
                  f"A/A {v['p99_ratio_aa']}x; the same bytes from a static server {v['p99_ratio_control']}x; "
                  f"runs {v['off']['p99s_us']} / {v['on']['p99s_us']}); "
                  f"rate {v['rate_ratio']}x", file=sys.stderr)
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--egressd", required=True)
    ap.add_argument("--origin", required=True)
    ap.add_argument("--load", required=True)
    ap.add_argument("--domains", type=int, default=1000)
    ap.add_argument("--scrapes", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not 1 <= args.domains <= 100000 or not 1 <= args.scrapes <= 10000 or not 0 < args.seconds <= 60 \
            or not 1 <= args.repeat <= 20:
        ap.error("--domains 1..100000, --scrapes 1..10000, --seconds (0, 60], --repeat 1..20")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
