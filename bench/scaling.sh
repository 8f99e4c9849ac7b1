#!/usr/bin/env bash
# bench/scaling.sh: how egressd's throughput grows with worker threads on one machine
# (bench/SCALING.md). For each `workers` count it starts egressd, puts it on its own
# cores where the machine has enough (taskset: egressd on cores 0..W-1, the origin and
# the load generators on the rest), and measures
#   - tunnel setup: CONNECT tunnels a second from several bench_load processes, 64
#     clients each, the origin closing first (so no side runs out of ephemeral ports
#     to TIME_WAIT), clients spread over 16 loopback source addresses;
#   - bulk: MiB/s through 4 CONNECT tunnels per load generator;
# with egressd's CPU per tunnel, and prints a table of each figure against workers: 1.
#
#   bench/scaling.sh [--workers "1 2 4 8 16"] [--seconds S] [--bin DIR] [--out FILE]
#   bench/scaling.sh --bundle DIR   copy egressd, bench_load and bench_origin with the
#                                   shared libraries they need into DIR/bin and DIR/lib,
#                                   for a machine that has none of them installed
#
# Binaries come from build-bench/ (bench/run.sh builds it) or, with --bin, from a bundle
# (run with LD_LIBRARY_PATH=DIR/lib). The machine needs only bash, python3, taskset.
# Every run is bounded: each measurement lasts --seconds (default 3) and every process
# is stopped at the end or when the script is interrupted. Loopback only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
WORKERS="1 2 4 8 16"
SECONDS_PER=3
BIN=""
OUT=""
BUNDLE=""
while (( $# )); do
  case $1 in
    --workers) WORKERS=$2; shift 2 ;;
    --seconds) SECONDS_PER=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --bundle) BUNDLE=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "scaling.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

build=$root/build-bench
EGRESSD=$build/proxy/egressd LOAD=$build/bench/bench_load ORIGIN=$build/bench/bench_origin
if [[ -n $BUNDLE ]]; then
  mkdir -p "$BUNDLE/bin" "$BUNDLE/lib"
  for b in "$EGRESSD" "$LOAD" "$ORIGIN"; do
    [[ -x $b ]] || { echo "scaling.sh: $b is missing (build build-bench first: bench/run.sh does)" >&2; exit 1; }
    cp "$b" "$BUNDLE/bin/"
    # The C library and the dynamic loader stay the machine's own.
    ldd "$b" | awk '$3 ~ /^\// {print $3}' | grep -Ev '/(libc|libm|ld-linux[^/]*)\.so' |
      while read -r lib; do cp -L "$lib" "$BUNDLE/lib/"; done
  done
  du -sh "$BUNDLE"
  exit 0
fi
if [[ -n $BIN ]]; then
  EGRESSD=$BIN/bin/egressd LOAD=$BIN/bin/bench_load ORIGIN=$BIN/bin/bench_origin
  export LD_LIBRARY_PATH=$BIN/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
for b in "$EGRESSD" "$LOAD" "$ORIGIN"; do
  [[ -x $b ]] || { echo "scaling.sh: $b is missing" >&2; exit 1; }
done

tmp=$(mktemp -d)
pgids=()
cleanup() {
  for pg in "${pgids[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ncpu=$(nproc)
results=$tmp/results.jsonl
: >"$results"

# pinned CPUS: the taskset prefix that keeps a command on CPUS (nothing for "").
pinned() { [[ -z $1 ]] || echo "taskset -c $1"; }
# start NAME CPUS COMMAND...: runs COMMAND in its own process group on CPUS ("" = any);
# sets PG.
start() {
  local name=$1 cpus=$2; shift 2
  # Removed here, not by the background redirection, which may truncate them only after
  # wait_line has read the previous round's ports.
  rm -f "$tmp/$name.out" "$tmp/$name.err"
  # shellcheck disable=SC2046 # the prefix is words on purpose
  setsid $(pinned "$cpus") "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  PG=$!
  pgids+=("$PG")
}
# wait_line FILE PATTERN: until FILE holds a line matching PATTERN (10 s at most).
wait_line() {
  local i
  for (( i = 0; i < 100; i++ )); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "scaling.sh: no '$2' in $1" >&2; cat "$1" >&2; return 1
}
stop() { kill -TERM -- "-$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

for w in $WORKERS; do
  # Cores: egressd on 0..w-1 when at least two are left for the origin and the load
  # generators; otherwise nothing is pinned and the row says "shared".
  if (( w + 2 <= ncpu )); then
    placement=pinned
    proxy_cpus="0-$(( w - 1 ))"
    rest=$(( ncpu - w ))
    other_cpus="$w-$(( ncpu - 1 ))"
  else
    placement=shared
    proxy_cpus="" other_cpus="" rest=$ncpu
  fi
  origin_threads=$(( rest / 3 > 0 ? rest / 3 : 1 ))
  loaders=$(( rest - origin_threads > 0 ? rest - origin_threads : 1 ))
  [[ $placement == shared ]] && loaders=$(( ncpu / 2 > 0 ? ncpu / 2 : 1 ))

  start origin "$other_cpus" "$ORIGIN" --threads "$origin_threads" --max-seconds 600
  opg=$PG
  wait_line "$tmp/origin.out" '"echo1"'
  read -r echo1 source < <(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["echo1"], d["source"])' "$tmp/origin.out")

  cat >"$tmp/egressd.yaml" <<EOF
version: 1
listeners: [ { address: "127.0.0.1:0" } ]
policy: { allow: ["127.0.0.1"], unknown: deny }
log: { format: json, level: info, audit: "off" }
limits: { max_connections: 100000, idle_timeout: 10m }
workers: $w
EOF
  start egressd "$proxy_cpus" "$EGRESSD" run --config "$tmp/egressd.yaml"
  epg=$PG
  wait_line "$tmp/egressd.err" '"msg":"ready"'
  port=$(sed -n 's/.*"msg":"listening".*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$tmp/egressd.err" | head -1)

  # measure SCENARIO TARGET_PORT ARGS...: runs `loaders` bench_load processes at once
  # and appends one JSON line: the summed rate, egressd's CPU over the window.
  measure() {
    local scenario=$1 tport=$2; shift 2
    local i pids=()
    for (( i = 0; i < loaders; i++ )); do
      # shellcheck disable=SC2046 # the prefix is words on purpose
      timeout $(( ${SECONDS_PER%.*} + 30 )) $(pinned "$other_cpus") "$LOAD" --mode connect --proxy "127.0.0.1:$port" \
        --target "127.0.0.1:$tport" --scenario "$scenario" --seconds "$SECONDS_PER" --warmup 0.5 \
        --cpu-pgid "$epg" "$@" >"$tmp/load.$i" 2>&1 &
      pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || true; done
    python3 - "$w" "$placement" "$scenario" "$loaders" "$tmp"/load.* >>"$results" <<'PY'
import json, statistics, sys
w, placement, scenario, loaders, files = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
runs = []
for f in files:
    for line in open(f):
        if line.startswith("{"):
            runs.append(json.loads(line))
            break
value = sum(r["value"] for r in runs)
seconds = statistics.median(r["seconds"] for r in runs) if runs else 0
# Each load generator reads egressd's CPU time over its own window; the windows
# overlap, so their median is egressd's CPU over the measurement.
cpu = statistics.median(r["proxy_cpu_s"] for r in runs) if runs else -1
ops = sum(r["ops"] for r in runs)
print(json.dumps({"workers": int(w), "placement": placement, "scenario": scenario, "loaders": loaders,
                  "answered": len(runs), "value": value, "unit": runs[0]["unit"] if runs else "",
                  "errors": sum(r["errors"] for r in runs), "proxy_cores": cpu / seconds if seconds else -1,
                  "proxy_cpu_us_per_op": cpu * 1e6 / ops if ops and cpu >= 0 else -1}))
PY
    [[ -n ${SCALING_DEBUG:-} ]] && cat "$tmp"/load.* >&2
    rm -f "$tmp"/load.*
    tail -1 "$results" >&2
  }
  echo "== workers: $w ($placement; egressd cores: ${proxy_cpus:-any}; $loaders load generators, origin threads $origin_threads)" >&2
  measure setup "$echo1" --concurrency 64 --close server --source-ips 16
  measure bulk "$source" --streams 4

  stop "$epg"; stop "$opg"
done

python3 - "$results" "$(nproc)" <<'PY' | tee ${OUT:+"$OUT"}
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ncpu = sys.argv[2]
print(f"### egressd scaling with worker threads ({ncpu} CPUs)\n")
print("| workers | cores | setup tunnels/s | × workers: 1 | egressd cores busy | egressd CPU µs/tunnel | bulk MiB/s | × workers: 1 | errors |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
by = {}
for r in rows:
    by.setdefault(r["workers"], {})[r["scenario"]] = r
base = by.get(min(by), {}) if by else {}
def ratio(v, b):
    return f"{v / b:.2f} ×" if b else "–"
for w in sorted(by):
    s, b = by[w].get("setup", {}), by[w].get("bulk", {})
    print(f"| {w} | {s.get('placement', '')} | {s.get('value', 0):,.0f} | {ratio(s.get('value', 0), base.get('setup', {}).get('value', 0))} "
          f"| {s.get('proxy_cores', -1):.2f} | {s.get('proxy_cpu_us_per_op', -1):.0f} | {b.get('value', 0):,.0f} | {ratio(b.get('value', 0), base.get('bulk', {}).get('value', 0))} "
          f"| {s.get('errors', 0) + b.get('errors', 0)} |")
print("\n\"pinned\": egressd ran on its own cores (0..workers-1), the origin and the load generators on the rest; "
      "\"shared\": too few cores for that, nothing pinned. Setup: 64 clients per load generator, the origin closes first. "
      "Bulk: 4 tunnels per load generator. \"egressd cores busy\": its CPU time over the setup window.")
PY
