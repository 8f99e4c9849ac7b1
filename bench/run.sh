#!/usr/bin/env bash
# bench/run.sh — egressd side by side with its peers, on loopback, in one run.
#
#   bench/run.sh [--quick] [--no-install] [--no-idle] [--only LIST] [--out FILE]
#                [--all-at-once] [--realtime]
#
# Installs what is missing (Debian: squid tinyproxy microsocks dante-server, python3,
# and sandbox-runtime from npm into bench/.npm), builds egressd and the bench tools
# (build-bench/, Release), starts bench_origin and bench_splice_relay, then each proxy
# in turn on a free loopback port, runs the scenarios of bench_load against it and
# stops it. Prints one table and writes it, with the machine and the versions, to
# bench/RESULTS.md (--out to write elsewhere).
#
#   BENCH_SECONDS  seconds per measurement (default 3; --quick: 1)
#   BENCH_WARMUP   seconds of unmeasured load before each (default 0.5; --quick: 0.3)
#   BENCH_IDLE     idle-tunnel counts (default "1000 9000"; scaled to the fd limit)
#   BENCH_REPEAT   runs per measurement, the median is kept (default 1)
#   BUILD_DIR      build directory (default build-bench)
#   EGRESSD_BASE   another egressd binary (say, the previous commit's) run beside this tree's
#                  as peer `egressd-base`, so a change is compared with what it replaces in
#                  one run; `--only` names it as egressd-base
#   --only LIST    comma-separated subset of: direct,relay,egressd,egressd-bp,egressd-base,egressd-audit,
#                  egressd-remembered,hook-burst,scrape,squid,tinyproxy,
#                  microsocks,dante,srt,scaling (the table still prints)
#   --rows LIST    comma-separated subset of the scenarios: bulk1,bulk4,setup1,setup1w,
#                  setup1s,setup64,setup64s,rtt,http,oneshot1,oneshot64
#   --all-at-once  start every proxy first and measure them in turn per scenario (the
#                  default runs one proxy at a time: start, every scenario, stop)
#   --realtime     run the origin, the relay, each proxy and the load generator under
#                  SCHED_FIFO (chrt -f 10), so that other work on a shared machine (a
#                  build) cannot take their CPUs; root only
#
# Everything is bounded: each bench_load run has its own deadline (and a `timeout`
# around it), every wait loop has a deadline, and every process this script starts is
# killed on exit (trap EXIT), by the process-group id it was started with.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/bench
CMDLINE="bench/run.sh${*:+ $*}"
QUICK=0
INSTALL=1
IDLE=1
ONLY=""
ALL_AT_ONCE=0
ROWS_ONLY=""
REALTIME=0
OUT=$BENCH_DIR/RESULTS.md
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1 ;;
    --no-install) INSTALL=0 ;;
    --no-idle) IDLE=0 ;;
    --only) ONLY=$2; shift ;;
    --all-at-once) ALL_AT_ONCE=1 ;;
    --rows) ROWS_ONLY=$2; shift ;;
    --realtime) REALTIME=1 ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,35p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ $QUICK == 1 ]]; then
  SECONDS_PER=${BENCH_SECONDS:-1}; WARMUP=${BENCH_WARMUP:-0.3}
else
  SECONDS_PER=${BENCH_SECONDS:-3}; WARMUP=${BENCH_WARMUP:-0.5}
fi
IDLE_COUNTS=${BENCH_IDLE:-"1000 9000"}
REPEAT=${BENCH_REPEAT:-1}
BUILD=${BUILD_DIR:-$ROOT/build-bench}
SRT_PKG=$BENCH_DIR/.npm/node_modules/@anthropic-ai/sandbox-runtime
T0=$(date +%s)
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

want() { [[ -z $ONLY ]] || [[ ",$ONLY," == *",$1,"* ]]; }
log() { printf '[%4ds] %s\n' $(( $(date +%s) - T0 )) "$*" >&2; }

# ---------------------------------------------------------------- processes, cleanup
TMP=$(mktemp -d /tmp/egressd-bench.XXXXXX)
chmod 755 "$TMP"
PGIDS=()   # process groups this script started (each peer runs under setsid)
cleanup() {
  local rc=$?
  set +e
  for g in "${PGIDS[@]}"; do kill -TERM -- "-$g" 2>/dev/null; done
  local deadline=$(( $(date +%s) + 5 ))
  for g in "${PGIDS[@]}"; do
    while kill -0 -- "-$g" 2>/dev/null && (( $(date +%s) < deadline )); do sleep 0.1; done
    kill -KILL -- "-$g" 2>/dev/null
  done
  [[ -n ${KEEP_TMP:-} ]] || rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in its own session/process group (pgid = its pid),
# stdout to $TMP/NAME.out, stderr to $TMP/NAME.err; sets LAST_PID.
RT=()
if [[ $REALTIME == 1 ]]; then
  command -v chrt >/dev/null && chrt -f 10 true 2>/dev/null || { echo "run.sh: --realtime needs chrt and root" >&2; exit 2; }
  RT=(chrt -f 10)
fi
start() {
  local name=$1; shift
  setsid "${RT[@]}" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null &
  LAST_PID=$!
  PGIDS+=("$LAST_PID")
}
stop_group() {
  local g=$1
  kill -TERM -- "-$g" 2>/dev/null || return 0
  local deadline=$(( $(date +%s) + 5 ))
  while kill -0 -- "-$g" 2>/dev/null && (( $(date +%s) < deadline )); do sleep 0.1; done
  kill -KILL -- "-$g" 2>/dev/null || true
  wait "$g" 2>/dev/null || true
}
# wait_for FILE REGEX SECONDS: until a line of FILE matches.
wait_for() {
  local file=$1 re=$2 secs=$3
  local deadline=$(( $(date +%s) + secs ))
  while (( $(date +%s) < deadline )); do
    grep -qE "$re" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
# wait_port PORT SECONDS: until 127.0.0.1:PORT accepts a connection.
wait_port() {
  local port=$1 secs=$2
  local deadline=$(( $(date +%s) + secs ))
  while (( $(date +%s) < deadline )); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}
# free_port: a loopback port below the ephemeral range that nobody listens on.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 12000 ))
    if [[ -z $(ss -Htln "sport = :$p" 2>/dev/null) ]]; then echo "$p"; return 0; fi
  done
  echo "run.sh: no free port" >&2; return 1
}
# mem_kib PGID: memory of a process group: VmRSS of its one process, or the sum of
# Pss over its processes when it has several (forking servers such as Dante).
mem_kib() {
  local pids
  pids=$(pgrep -g "$1" || true)
  [[ -n $pids ]] || { echo 0; return; }
  if [[ $(wc -w <<<"$pids") == 1 ]]; then
    awk '/^VmRSS:/ {print $2}' "/proc/$pids/status" 2>/dev/null || echo 0
  else
    local sum=0 v
    for p in $pids; do
      v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
      sum=$(( sum + ${v:-0} ))
    done
    echo "$sum"
  fi
}
nprocs() { pgrep -g "$1" | wc -l; }

# ---------------------------------------------------------------- install, build
if [[ $INSTALL == 1 ]]; then
  need=()
  command -v squid >/dev/null || [[ -x /usr/sbin/squid ]] || need+=(squid)
  command -v tinyproxy >/dev/null || [[ -x /usr/bin/tinyproxy ]] || need+=(tinyproxy)
  command -v microsocks >/dev/null || need+=(microsocks)
  command -v danted >/dev/null || [[ -x /usr/sbin/danted ]] || need+=(dante-server)
  command -v python3 >/dev/null || need+=(python3)
  command -v node >/dev/null || need+=(nodejs npm)
  command -v cmake >/dev/null || need+=(cmake)
  command -v ninja >/dev/null || need+=(ninja-build)
  command -v ss >/dev/null || need+=(iproute2)
  if [[ ${#need[@]} -gt 0 ]]; then
    log "installing ${need[*]}"
    if [[ $(id -u) != 0 ]]; then echo "run.sh: need root to apt-get install ${need[*]}" >&2; exit 1; fi
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if [[ ! -f $SRT_PKG/package.json ]] && command -v npm >/dev/null; then
    log "npm install @anthropic-ai/sandbox-runtime"
    mkdir -p "$BENCH_DIR/.npm"
    timeout 300 npm install --silent --no-audit --no-fund --prefix "$BENCH_DIR/.npm" @anthropic-ai/sandbox-runtime \
      || log "npm install failed: srt will not be run"
  fi
fi
[[ -x /usr/sbin/squid ]] && PATH=$PATH:/usr/sbin

log "building egressd and the bench tools in $BUILD"
if [[ ! -f $BUILD/build.ninja ]]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEGRESSD_TESTS=OFF >"$TMP/cmake.log" 2>&1 \
    || { cat "$TMP/cmake.log" >&2; exit 1; }
fi
ninja -C "$BUILD" -j2 egressd bench_load bench_origin bench_splice_relay >"$TMP/build.log" 2>&1 \
  || { tail -50 "$TMP/build.log" >&2; exit 1; }
EGRESSD=$BUILD/proxy/egressd
LOAD=$BUILD/bench/bench_load
ORIGIN=$BUILD/bench/bench_origin
RELAY=$BUILD/bench/bench_splice_relay
EGRESSD_BASE=${EGRESSD_BASE:-}
if [[ -n $EGRESSD_BASE && ! -x $EGRESSD_BASE ]]; then echo "run.sh: EGRESSD_BASE=$EGRESSD_BASE is not executable" >&2; exit 2; fi

# ---------------------------------------------------------------- file descriptors
HARD=$(ulimit -Hn)
[[ $HARD == unlimited ]] && HARD=1048576
ulimit -n "$HARD"
NOTES=()
IDLE_LIST=()
for k in $IDLE_COUNTS; do
  # one proxy process needs 2 fds per tunnel, plus headroom
  if (( 2 * k + 500 > HARD )); then
    scaled=$(( (HARD - 500) / 2 ))
    msg="idle $k tunnels need $(( 2 * k + 500 )) fds in one proxy process but ulimit -Hn is $HARD: measured at $scaled instead"
    log "$msg"; NOTES+=("$msg")
    k=$scaled
  fi
  (( k > 0 )) && IDLE_LIST+=("$k")
done

# ---------------------------------------------------------------- origin and relay
RESULTS=$TMP/results.jsonl
: >"$RESULTS"
# The helpers that run through the whole benchmark stop by themselves after LIFETIME
# seconds (a safety net: the EXIT trap stops them): an hour for start-up and the idle
# tests, plus, for each of BENCH_REPEAT rounds, up to 160 measurements each given its
# full timeout (SECONDS_PER + 40 s, see measure).
LIFETIME=$(awk -v r="$REPEAT" -v s="$SECONDS_PER" 'BEGIN { printf "%d", 3600 + r * 160 * (s + 40) }')
start origin "$ORIGIN" --max-seconds "$LIFETIME"
ORIGIN_PGID=$LAST_PID
wait_for "$TMP/origin.out" '^\{' 10 || { echo "run.sh: bench_origin did not start" >&2; cat "$TMP/origin.err" >&2; exit 1; }
read -r ECHO_P SOURCE_P SINK_P HTTP_P ECHO1_P < <(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["echo"], d["source"], d["sink"], d["http"], d["echo1"])' "$TMP/origin.out")
log "origin: echo $ECHO_P source $SOURCE_P sink $SINK_P http $HTTP_P"
# One relay thread per CPU, as egressd runs one worker per core (workers: 0).
start relay "$RELAY" --map "127.0.0.1:0=127.0.0.1:$ECHO_P" --map "127.0.0.1:0=127.0.0.1:$SOURCE_P" \
  --map "127.0.0.1:0=127.0.0.1:$HTTP_P" --pipe-size 262144 --threads "$(nproc)" --max-seconds "$LIFETIME"
RELAY_PGID=$LAST_PID
wait_for "$TMP/relay.out" '^\{' 10 || { echo "run.sh: bench_splice_relay did not start" >&2; cat "$TMP/relay.err" >&2; exit 1; }
read -r RELAY_ECHO RELAY_SOURCE RELAY_HTTP < <(python3 -c 'import json,sys; print(*json.loads(open(sys.argv[1]).readline())["ports"])' "$TMP/relay.out")

# ---------------------------------------------------------------- measuring
# measure ROW PEER MODE PROXY_ADDR TARGET_PORT PGID SCENARIO [bench_load args...]
# ROW names the table row; appends bench_load's JSON line (with row and peer) to
# RESULTS. PGID (or "-") is the process group whose CPU time bench_load reports.
measure() {
  local row=$1 peer=$2 mode=$3 proxy=$4 tport=$5 pgid=$6 scenario=$7; shift 7
  local args=(--mode "$mode" --target "127.0.0.1:$tport" --scenario "$scenario"
              --seconds "$SECONDS_PER" --warmup "$WARMUP" --label "$peer")
  [[ $mode == direct ]] || args+=(--proxy "$proxy")
  [[ $pgid == - ]] || args+=(--cpu-pgid "$pgid")
  local out line
  out=$(timeout $(( ${SECONDS_PER%.*} + 40 )) "${RT[@]}" "$LOAD" "${args[@]}" "$@" 2>&1) || true
  line=$(grep -m1 '^{' <<<"$out" || true)
  if [[ -z $line ]]; then
    line="{\"tool\":\"bench_load\",\"mode\":\"$mode\",\"scenario\":\"$scenario\",\"value\":0,\"errors\":1,\"first_error\":\"bench_load produced no result: $(tail -1 <<<"$out" | tr -d '"\\' | cut -c1-100)\"}"
  fi
  echo "{\"row\":\"$row\",\"peer\":\"$peer\",${line#\{}" >>"$RESULTS"
  printf '  %-9s %-11s %-8s %s\n' "$row" "$peer" "$mode" "$(grep -m1 '^#' <<<"$out" | cut -c3- | sed 's/^[a-z0-9]* //')" >&2
}
# record_note ROW PEER TEXT: a row that has no figure (not run, could not hold, ...).
record_note() {
  python3 -c 'import json,sys; print(json.dumps({"row":sys.argv[1],"peer":sys.argv[2],"note":sys.argv[3]}))' "$1" "$2" "$3" >>"$RESULTS"
  log "$2: $1: $3"
}

# idle_suite PEER MODE PROXY_ADDR PGID: KiB of the proxy's memory per idle tunnel.
idle_suite() {
  local peer=$1 mode=$2 proxy=$3 pgid=$4
  local k before after fifo out established procs lpid ready_line
  # warm-up: a few tunnels opened and closed, so that one-time set-up is not counted
  timeout 60 "$LOAD" --mode "$mode" --proxy "$proxy" --target "127.0.0.1:$ECHO_P" --scenario idle \
    --tunnels 16 --establish-seconds 20 --hold-seconds 0 </dev/null >/dev/null 2>&1 || true
  for k in "${IDLE_LIST[@]}"; do
    kill -0 "$pgid" 2>/dev/null || { record_note "idle$k" "$peer" "proxy not running"; return 0; }
    sleep 1
    before=$(mem_kib "$pgid")
    fifo=$TMP/idle.fifo; rm -f "$fifo"; mkfifo "$fifo"
    out=$TMP/idle-$peer-$k.out
    timeout 150 "$LOAD" --mode "$mode" --proxy "$proxy" --target "127.0.0.1:$ECHO_P" --scenario idle \
      --tunnels "$k" --establish-seconds 60 --hold-seconds 60 --label "$peer" <"$fifo" >"$out" 2>&1 &
    lpid=$!
    # read-write: the open does not wait for bench_load to open its end (it may never)
    exec 7<>"$fifo"
    if ! wait_for "$out" '^READY' 75; then
      exec 7>&-; wait "$lpid" 2>/dev/null || true
      record_note "idle$k" "$peer" "bench_load did not get ready"
      continue
    fi
    sleep 1  # let the proxy settle
    after=$(mem_kib "$pgid")
    procs=$(nprocs "$pgid")
    exec 7>&-   # EOF on bench_load's stdin ends the hold
    wait "$lpid" 2>/dev/null || true
    established=$(sed -n 's/^READY established=\([0-9]*\).*/\1/p' "$out")
    ready_line=$(grep -m1 '^READY' "$out")
    printf '  %-9s %-11s %-8s %s; memory %s -> %s KiB (%s process%s)\n' "idle$k" "$peer" "$mode" "$ready_line" \
      "$before" "$after" "$procs" "$([[ $procs == 1 ]] || echo es)" >&2
    if [[ ${established:-0} -lt $k ]]; then
      record_note "idle$k" "$peer" "could not hold $k idle tunnels: $(grep -m1 '^#' "$out" | cut -c3-); larger counts skipped"
      break
    fi
    python3 -c 'import json,sys; r,p,m,b,a,k,n=sys.argv[1:]; print(json.dumps({"row":r,"peer":p,"mode":m,"scenario":"idle","value":(int(a)-int(b))/int(k),"unit":"KiB/tunnel","before_kib":int(b),"after_kib":int(a),"tunnels":int(k),"processes":int(n)}))' \
      "idle$k" "$peer" "$mode" "$before" "$after" "$k" "$procs" >>"$RESULTS"
  done
  sleep 1
}

# ---------------------------------------------------------------- peers
VERSIONS=$TMP/versions.txt
: >"$VERSIONS"
version() { echo "$1: $2" >>"$VERSIONS"; }
[[ -z $EGRESSD_BASE ]] || version "egressd-base" "$("$EGRESSD_BASE" version 2>&1 | head -1) ($EGRESSD_BASE, the baseline given as EGRESSD_BASE)"
version "egressd" "$("$EGRESSD" version 2>&1 | head -1) (this tree, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ', with uncommitted changes'))"

# peer_start PEER [WORKERS]: starts one proxy on free loopback port(s) and waits until
# it accepts. Sets NAME (its log name), PG (its process group), CP (HTTP CONNECT and
# plain-HTTP port, or empty), SP (SOCKS5 port, or empty), LOGS (files to show when it
# fails). Returns 1 if it did not come up.
START_N=0
peer_start() {
  local peer=$1 workers=${2:-0} d port
  START_N=$(( START_N + 1 ))
  NAME=$peer-$START_N
  d=$TMP/$NAME; mkdir -p "$d"; chmod 777 "$d"
  CP=""; SP=""; PG=""; LOGS="$TMP/$NAME.err"
  case $peer in
    egressd|egressd-bp|egressd-base|egressd-audit|egressd-remembered)
      # egressd-remembered: no rule allows the target; a remembered hook answer
      # (decisions_file, `always`) does, so the decision memory decides every request.
      local policy='policy: { allow: ["127.0.0.1"], unknown: deny }'
      if [[ $peer == egressd-remembered ]]; then
        printf 'decisions:\n  - host: 127.0.0.1\n    scope: host\n    decision: allow\n    answered_by: bench\n' >"$d/decisions.yaml"
        policy=$(printf 'policy: { allow: [], unknown: ask }\nhook: { console: true }\ndecisions_file: "%s"' "$d/decisions.yaml")
      fi
      cat >"$d/egressd.yaml" <<EOF
version: 1
listeners: [ { address: "127.0.0.1:0" } ]
$policy
log: { format: json, level: info, $([[ $peer == egressd-audit ]] && echo "audit: \"$d/audit.log\", audit_max_size: 64MiB, audit_max_files: 2" || echo 'audit: "off"') }
limits: { max_connections: 20000, idle_timeout: 10m }
workers: $workers
busy_poll_us: $([[ $peer == egressd-bp ]] && echo 50 || echo 0)
EOF
      start "$NAME" "$([[ $peer == egressd-base ]] && echo "$EGRESSD_BASE" || echo "$EGRESSD")" run --config "$d/egressd.yaml"; PG=$LAST_PID
      wait_for "$TMP/$NAME.err" '"msg":"ready"' 20 || return 1
      port=$(sed -n 's/.*"msg":"listening".*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$TMP/$NAME.err" | head -1)
      CP=$port; SP=$port
      ;;
    squid)
      chown proxy:proxy "$d" 2>/dev/null || true
      port=$(free_port)
      cat >"$d/squid.conf" <<EOF
http_port 127.0.0.1:$port
visible_hostname bench
pid_filename $d/squid.pid
cache_log $d/cache.log
access_log none
cache_store_log none
coredump_dir $d
acl SSL_ports port 1-65535
acl Safe_ports port 1-65535
acl CONNECT method CONNECT
http_access allow CONNECT
http_access allow all
cache deny all
cache_mem 8 MB
max_filedescriptors $HARD
dns_nameservers 127.0.0.1
shutdown_lifetime 1 seconds
client_persistent_connections on
server_persistent_connections on
EOF
      start "$NAME" squid -N -f "$d/squid.conf"; PG=$LAST_PID
      LOGS="$d/cache.log $TMP/$NAME.err"
      CP=$port
      ;;
    tinyproxy)
      port=$(free_port)
      cat >"$d/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port $port
Listen 127.0.0.1
Timeout 600
MaxClients $(( HARD / 2 - 100 ))
LogFile "$d/tinyproxy.log"
LogLevel Critical
PidFile "$d/tinyproxy.pid"
Allow 127.0.0.0/8
EOF
      start "$NAME" tinyproxy -d -c "$d/tinyproxy.conf"; PG=$LAST_PID
      LOGS="$d/tinyproxy.log $TMP/$NAME.err"
      CP=$port
      ;;
    microsocks)
      port=$(free_port)
      start "$NAME" microsocks -i 127.0.0.1 -p "$port"; PG=$LAST_PID
      SP=$port
      ;;
    dante)
      port=$(free_port)
      cat >"$d/danted.conf" <<EOF
logoutput: $d/danted.log
errorlog: $d/danted.err
internal: 127.0.0.1 port = $port
external: 127.0.0.1
socksmethod: none
clientmethod: none
user.privileged: root
user.unprivileged: nobody
timeout.io: 600
client pass {
  from: 127.0.0.0/8 to: 0.0.0.0/0
  log: error
}
socks pass {
  from: 127.0.0.0/8 to: 127.0.0.0/8
  command: connect
  log: error
}
EOF
      start "$NAME" "$DANTED" -f "$d/danted.conf" -p "$d/danted.pid"; PG=$LAST_PID
      LOGS="$d/danted.err $TMP/$NAME.err"
      SP=$port
      ;;
    srt)
      start "$NAME" node "$BENCH_DIR/srt_proxy.mjs" --pkg "$SRT_PKG" --allow 127.0.0.1 --max-seconds "$LIFETIME"; PG=$LAST_PID
      wait_for "$TMP/$NAME.out" '^\{' 20 || return 1
      read -r CP SP < <(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readline()); print(d["http"], d["socks"])' "$TMP/$NAME.out")
      ;;
  esac
  [[ -z $CP ]] || wait_port "$CP" 30 || return 1
  [[ -z $SP ]] || wait_port "$SP" 30 || return 1
  return 0
}
DANTED=$(command -v danted || { [[ -x /usr/sbin/danted ]] && echo /usr/sbin/danted; } || true)
peer_available() {
  case $1 in
    egressd|egressd-bp|egressd-audit|egressd-remembered) [[ -x $EGRESSD ]] ;;
    egressd-base) [[ -n $EGRESSD_BASE ]] ;;
    squid) command -v squid >/dev/null ;;
    tinyproxy) command -v tinyproxy >/dev/null ;;
    microsocks) command -v microsocks >/dev/null ;;
    dante) [[ -n $DANTED ]] ;;
    srt) [[ -f $SRT_PKG/package.json ]] && command -v node >/dev/null ;;
  esac
}
command -v squid >/dev/null && version squid "$(squid -v | head -1)"
command -v tinyproxy >/dev/null && version tinyproxy "$(tinyproxy -v 2>&1 | head -1)"
command -v microsocks >/dev/null && version microsocks "microsocks $(dpkg-query -W -f '${Version}' microsocks 2>/dev/null || echo '?') (Debian package)"
[[ -n $DANTED ]] && version dante "$("$DANTED" -v 2>&1 | head -1 | cut -d. -f1-3)"
if [[ -f $SRT_PKG/package.json ]]; then
  version srt "@anthropic-ai/sandbox-runtime $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$SRT_PKG/package.json") on node $(node --version 2>/dev/null): its HTTP proxy and its SOCKS5 proxy, each on its own port (no mux, no sandbox), started by bench/srt_proxy.mjs"
fi

EG_STDERR=$TMP/egressd-stderr.txt
: >"$EG_STDERR"
# peer_stop PEER PGID NAME LOGS: notes a crash, stops it, keeps egressd's complaints.
peer_stop() {
  local peer=$1 pg=$2 name=$3 logs=$4
  if ! kill -0 "$pg" 2>/dev/null; then
    record_note crash "$peer" "exited during the run: $(tail -2 $logs 2>/dev/null | tr '\n' ' ' | cut -c1-300)"
  fi
  stop_group "$pg"
  if [[ $peer == egressd* ]]; then
    # complaints, and connections still open when it was told to stop (a leak?)
    grep -hv '"level":"info"' "$TMP/$name.err" 2>/dev/null | sed "s/^/[$name] /" >>"$EG_STDERR" || true
    grep -h '"msg":"draining"' "$TMP/$name.err" 2>/dev/null | grep -v '"open_connections":0,' \
      | sed "s/^/[$name, stopped after all load had ended] /" >>"$EG_STDERR" || true
  fi
}

# By default one proxy runs at a time: each is started, measured in every scenario and
# stopped before the next starts, so no idle peer (timers, housekeeping threads) shares
# the CPUs with the one measured; BENCH_REPEAT rounds go through the peers again, each
# round in a different order. --all-at-once starts every proxy first and measures them
# one after another per scenario (figures of one scenario taken within a short span, as
# earlier versions of this script did). Entries: "PEER MODE ADDR PGID".
declare -A P_PG P_NAME P_LOGS P_RAN
PEERS=()
want direct && PEERS+=(direct)
want relay && PEERS+=(relay)
for peer in egressd egressd-bp egressd-base egressd-audit egressd-remembered squid tinyproxy microsocks dante srt; do
  want "$peer" || continue
  [[ $peer != egressd-base || -n $EGRESSD_BASE ]] || continue
  if ! peer_available "$peer"; then
    record_note all "$peer" "not run: not installed"
    continue
  fi
  PEERS+=("$peer")
done
ROWS=()
for row in bulk1 bulk4 setup1 setup1w setup1s setup64 setup64s rtt http oneshot1 oneshot64; do
  [[ -z $ROWS_ONLY || ",$ROWS_ONLY," == *",$row,"* ]] && ROWS+=("$row")
done

# peer_up PEER: starts PEER (not direct or relay) and sets ENTRIES_OF to its entries;
# returns 1 (with a note, once) when it does not come up.
peer_up() {
  local peer=$1
  ENTRIES_OF=()
  case $peer in
    direct) ENTRIES_OF=("direct direct - -"); return 0 ;;
    relay) ENTRIES_OF=("relay relay - $RELAY_PGID"); return 0 ;;
  esac
  if ! peer_start "$peer"; then
    [[ -n ${P_FAILED[$peer]:-} ]] || record_note all "$peer" "not run: did not start: $(tail -3 $LOGS 2>/dev/null | tr '\n' ' ' | cut -c1-300)"
    P_FAILED[$peer]=1
    stop_group "$PG"
    return 1
  fi
  log "$peer started (CONNECT/HTTP port ${CP:--}, SOCKS5 port ${SP:--})"
  P_PG[$peer]=$PG; P_NAME[$peer]=$NAME; P_LOGS[$peer]=$LOGS; P_RAN[$peer]=1
  [[ -z $CP ]] || ENTRIES_OF+=("$peer connect 127.0.0.1:$CP $PG")
  [[ $peer == egressd-bp ]] && return 0  # busy polling: latency rows, CONNECT only
  [[ -z $SP ]] || ENTRIES_OF+=("$peer socks5 127.0.0.1:$SP $PG")
  [[ -z $CP ]] || ENTRIES_OF+=("$peer http 127.0.0.1:$CP $PG")
  return 0
}
declare -A P_FAILED

# run_entry ROW SCENARIO ENTRY...: one measurement of one proxy.
run_entry() {
  local row=$1 peer=$2 mode=$3 addr=$4 pg=$5
  if [[ $peer != direct && $peer != relay ]] && ! kill -0 "$pg" 2>/dev/null; then return 0; fi
  [[ $peer != egressd-bp || $row == setup1 || $row == rtt ]] || return 0
  case $row in
    bulk1|bulk4|setup*|rtt) [[ $mode != http ]] || return 0 ;;
    http) [[ $mode == http || $mode == direct || $mode == relay ]] || return 0 ;;
    # one-shot HTTP: plain HTTP through the HTTP proxies and straight to the origin
    oneshot1|oneshot64)
      [[ $mode == http || $mode == direct ]] || return 0
      [[ $peer == egressd || $peer == egressd-base || $peer == squid || $peer == tinyproxy || $peer == direct ]] || return 0 ;;
  esac
  # the relay's target is fixed per port: it has no echo-and-close port
  [[ $peer != relay || ( $row != setup1s && $row != setup64s ) ]] || return 0
  local echo_addr=$addr source_addr=$addr http_addr=$addr
  if [[ $peer == relay ]]; then  # the relay's ports are fixed to their targets
    echo_addr=127.0.0.1:$RELAY_ECHO; source_addr=127.0.0.1:$RELAY_SOURCE; http_addr=127.0.0.1:$RELAY_HTTP
  fi
  case $row in
    bulk1) measure "$row" "$peer" "$mode" "$source_addr" "$SOURCE_P" "$pg" bulk --streams 1 ;;
    bulk4) measure "$row" "$peer" "$mode" "$source_addr" "$SOURCE_P" "$pg" bulk --streams 4 ;;
    setup1) measure "$row" "$peer" "$mode" "$echo_addr" "$ECHO_P" "$pg" setup --concurrency 1 ;;
    setup1w) measure "$row" "$peer" "$mode" "$echo_addr" "$ECHO_P" "$pg" setup --concurrency 1 --close wait ;;
    setup1s) measure "$row" "$peer" "$mode" "$echo_addr" "$ECHO1_P" "$pg" setup --concurrency 1 --close server ;;
    setup64) measure "$row" "$peer" "$mode" "$echo_addr" "$ECHO_P" "$pg" setup --concurrency 64 ;;
    setup64s) measure "$row" "$peer" "$mode" "$echo_addr" "$ECHO1_P" "$pg" setup --concurrency 64 --close server ;;
    rtt) measure "$row" "$peer" "$mode" "$echo_addr" "$ECHO_P" "$pg" rtt ;;
    http) measure "$row" "$peer" "$mode" "$http_addr" "$HTTP_P" "$pg" http --concurrency 64 ;;
    oneshot1) measure "$row" "$peer" "$mode" "$http_addr" "$HTTP_P" "$pg" oneshot --concurrency 1 ;;
    oneshot64) measure "$row" "$peer" "$mode" "$http_addr" "$HTTP_P" "$pg" oneshot --concurrency 64 ;;
  esac
}

np=${#PEERS[@]}
if [[ $ALL_AT_ONCE == 1 ]]; then
  ENTRIES=()
  for peer in "${PEERS[@]}"; do
    peer_up "$peer" && ENTRIES+=("${ENTRIES_OF[@]}")
  done
  n=${#ENTRIES[@]}
  for row in "${ROWS[@]}"; do
    log "scenario $row"
    for (( round = 0; round < REPEAT; round++ )); do
      for (( i = 0; i < n; i++ )); do
        # later rounds start further down the list, so that no proxy always goes first
        # shellcheck disable=SC2086
        run_entry "$row" ${ENTRIES[$(( (i + round * (n / REPEAT + 1)) % n ))]}
      done
    done
  done
  for peer in "${!P_PG[@]}"; do
    peer_stop "$peer" "${P_PG[$peer]}" "${P_NAME[$peer]}" "${P_LOGS[$peer]}"
  done
else
  for (( round = 0; round < REPEAT; round++ )); do
    for (( i = 0; i < np; i++ )); do
      peer=${PEERS[$(( (i + round * (np / REPEAT + 1)) % np ))]}
      [[ -z ${P_FAILED[$peer]:-} ]] || continue
      peer_up "$peer" || continue
      log "round $(( round + 1 ))/$REPEAT: $peer alone"
      for row in "${ROWS[@]}"; do
        for e in "${ENTRIES_OF[@]}"; do
          # shellcheck disable=SC2086
          run_entry "$row" $e
        done
      done
      [[ $peer == direct || $peer == relay ]] || peer_stop "$peer" "${P_PG[$peer]}" "${P_NAME[$peer]}" "${P_LOGS[$peer]}"
    done
  done
fi

# Memory per idle tunnel: each proxy alone, on a fresh process.
if [[ $IDLE == 1 ]]; then
  for peer in egressd squid tinyproxy microsocks dante srt; do
    [[ -n ${P_RAN[$peer]:-} ]] || continue
    log "idle tunnels: $peer"
    if peer_start "$peer"; then
      if [[ -n $CP ]]; then idle_suite "$peer" connect "127.0.0.1:$CP" "$PG"
      else idle_suite "$peer" socks5 "127.0.0.1:$SP" "$PG"; fi
    else
      record_note idle "$peer" "did not start again for the idle test"
    fi
    peer_stop "$peer" "$PG" "$NAME" "$LOGS"
  done
fi

# Scaling: egressd with 1 and 2 worker threads, both running, measured alternately.
if want scaling; then
  declare -A W_PG W_ADDR W_NAME
  for w in 1 2; do
    if peer_start egressd "$w"; then
      W_PG[$w]=$PG; W_ADDR[$w]=127.0.0.1:$CP; W_NAME[$w]=$NAME
    else
      record_note all "egressd-w$w" "did not start"
    fi
  done
  log "scaling: egressd workers 1 and 2"
  for (( round = 0; round < REPEAT; round++ )); do
    for w in 1 2; do
      [[ -n ${W_PG[$w]:-} ]] || continue
      measure scale_bulk4 "egressd-w$w" connect "${W_ADDR[$w]}" "$SOURCE_P" "${W_PG[$w]}" bulk --streams 4
    done
    for w in 1 2; do
      [[ -n ${W_PG[$w]:-} ]] || continue
      measure scale_setup64 "egressd-w$w" connect "${W_ADDR[$w]}" "$ECHO_P" "${W_PG[$w]}" setup --concurrency 64
    done
  done
  for w in 1 2; do
    [[ -n ${W_PG[$w]:-} ]] && peer_stop "egressd-w$w" "${W_PG[$w]}" "${W_NAME[$w]}" "$TMP/${W_NAME[$w]}.err"
  done
fi

# ---------------------------------------------------------------- the hook burst
# 1,000 distinct unknown destinations at once against an HTTP hook (bench/hook_burst.py).
if want hook-burst; then
  log "hook burst"
  if out=$(timeout 180 "${RT[@]}" python3 "$BENCH_DIR/hook_burst.py" --egressd "$EGRESSD" --origin "$ORIGIN" 2>"$TMP/hook_burst.err"); then
    line=$(grep -m1 '^{' <<<"$out" || true)
    [[ -n $line ]] && echo "{\"row\":\"hook_burst\",\"peer\":\"egressd\",${line#\{}" >>"$RESULTS"
    log "$(tail -1 "$TMP/hook_burst.err")"
  else
    record_note hook_burst egressd "did not complete: $(tail -2 "$TMP/hook_burst.err" | tr '\n' ' ' | cut -c1-300)"
  fi
fi

# ---------------------------------------------------------------- the scrape
# GET /metrics with 1,000 domains' series, and the setup benchmark's p99 with and
# without a scraper polling every 100 ms (bench/scrape.py): at least 5 rounds of
# without / with / the control (the same bytes from a static server) / without,
# because "the p99 does not move" is judged against the spread of the runs without.
if want scrape; then
  log "scrape: /metrics with 1,000 domains; setup with and without a scraper"
  if out=$(timeout 900 "${RT[@]}" python3 "$BENCH_DIR/scrape.py" --egressd "$EGRESSD" --origin "$ORIGIN" --load "$LOAD" \
             --seconds "$SECONDS_PER" --repeat "$(( REPEAT > 5 ? REPEAT : 5 ))" 2>"$TMP/scrape.err"); then
    line=$(grep -m1 '^{' <<<"$out" || true)
    [[ -n $line ]] && echo "{\"row\":\"scrape\",\"peer\":\"egressd\",${line#\{}" >>"$RESULTS"
    grep '^#' "$TMP/scrape.err" | while read -r l; do log "${l#\# }"; done
  else
    record_note scrape egressd "did not complete: $(tail -2 "$TMP/scrape.err" | tr '\n' ' ' | cut -c1-300)"
  fi
fi

# ---------------------------------------------------------------- the table
# bench_splice_relay complains on stderr (once) if it could not size its pipes.
[[ -s $TMP/relay.err ]] && NOTES+=("bench_splice_relay: $(head -c 300 "$TMP/relay.err" | tr '\n' ' ')")
printf '%s\n' "${NOTES[@]}" >"$TMP/notes.txt"
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "command: $CMDLINE"
  echo "seconds per measurement: $SECONDS_PER (+ $WARMUP warm-up), runs per measurement: $REPEAT (median kept)"
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "load average at start: $START_LOAD"
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "fd limit: $HARD"
  if [[ $ALL_AT_ONCE == 1 ]]; then echo "proxies: all running at once, measured in turn per scenario (--all-at-once)"
  else echo "proxies: one at a time (each started, measured in every scenario, stopped), rounds in rotating order"; fi
  if [[ $REALTIME == 1 ]]; then echo "scheduling: origin, relay, proxies and load generator under SCHED_FIFO (--realtime)"
  else echo "scheduling: default (SCHED_OTHER)"; fi
} >"$TMP/meta.txt"

python3 - "$RESULTS" "$TMP/meta.txt" "$VERSIONS" "$TMP/notes.txt" "$TMP/egressd-stderr.txt" "$OUT" <<'PY'
import json, sys
results_f, meta_f, versions_f, notes_f, stderr_f, out_f = sys.argv[1:]
raw = [json.loads(l) for l in open(results_f) if l.strip()]
# BENCH_REPEAT > 1: several runs per (row, peer, mode); keep the median run.
groups, rows = {}, []
for r in raw:
    if "value" in r and r.get("scenario") != "idle":
        groups.setdefault((r["row"], r["peer"], r.get("mode")), []).append(r)
    else:
        rows.append(r)
for runs in groups.values():
    runs.sort(key=lambda r: r.get("value", 0))
    med = dict(runs[len(runs) // 2])
    med["runs"] = len(runs)
    med["low"], med["high"] = runs[0].get("value", 0), runs[-1].get("value", 0)
    rows.append(med)
meta = open(meta_f).read().strip().splitlines()
versions = open(versions_f).read().strip().splitlines()
notes = [n for n in open(notes_f).read().splitlines() if n.strip()]
eg_stderr = [l for l in open(stderr_f).read().splitlines() if l.strip()]

PROTO = {"direct": "", "relay": "", "connect": "CONNECT", "socks5": "SOCKS5", "http": "HTTP"}
SCEN = [
    ("bulk1", "bulk, 1 stream", "MiB/s"),
    ("bulk4", "bulk, 4 streams", "MiB/s"),
    ("setup1", "setup, 1 client", "tunnels/s"),
    ("setup1w", "setup, 1 client, client waits for the EOF", "tunnels/s"),
    ("setup1s", "setup, 1 client, server closes first", "tunnels/s"),
    ("setup64", "setup, 64 clients", "tunnels/s"),
    ("setup64s", "setup, 64 clients, server closes first", "tunnels/s"),
    ("rtt", "round trip, 64 B", "rt/s"),
    ("http", "HTTP keep-alive, 64 clients", "req/s"),
    ("oneshot1", "HTTP one-shot, 1 client", "req/s"),
    ("oneshot64", "HTTP one-shot, 64 clients", "req/s"),
]
IDLE = sorted({r["row"] for r in rows if r.get("row", "").startswith("idle")}, key=lambda s: int(s[4:]) if s[4:].isdigit() else 0)

def find(row, peer, mode=None):
    for r in rows:
        if r.get("row") == row and r.get("peer") == peer and (mode is None or r.get("mode") == mode):
            return r
    return None

def fmt(v):
    if v is None: return "—"
    if v >= 100: return f"{v:,.0f}"
    if v >= 10: return f"{v:.1f}"
    return f"{v:.2f}"

def ratio(a, b):
    if a is None or b is None or not b: return "—"
    return f"{a / b:.2f}×"

lines = []
head = "| scenario | proxy | figure | p50 / p99 µs | proxy CPU | × direct | × relay | errors |"
lines += [head, "|---|---|---:|---:|---:|---:|---:|---|"]

def cpu(r, key):
    c = r.get("proxy_cpu_s", -1)
    if c is None or c < 0 or not r.get("seconds"): return ""
    cores = c / r["seconds"]
    if key.startswith("bulk"):
        mib = r.get("bytes", 0) / 1048576
        return f"{c / mib * 1e6:,.0f} µs/MiB ({cores:.2f} cores)" if mib else f"({cores:.2f} cores)"
    return f"{c / r['ops'] * 1e6:,.0f} µs/op ({cores:.2f} cores)" if r.get("ops") else f"({cores:.2f} cores)"
order = ["direct", "relay", "egressd", "egressd-bp", "egressd-base", "egressd-audit", "egressd-remembered", "squid", "tinyproxy", "microsocks", "dante", "srt"]
for key, title, unit in SCEN:
    base_d = find(key, "direct"); base_r = find(key, "relay")
    dv = base_d.get("value") if base_d and "value" in base_d else None
    rv = base_r.get("value") if base_r and "value" in base_r else None
    entries = [r for r in rows if r.get("row") == key]
    entries.sort(key=lambda r: (order.index(r["peer"]) if r["peer"] in order else 99, r.get("mode", "")))
    if not entries: continue
    for r in entries:
        name = r["peer"] + (f" ({PROTO.get(r.get('mode'), '')})" if PROTO.get(r.get("mode")) else "")
        if "note" in r:
            lines.append(f"| {title} | {name} | {r['note']} | | | | | |"); continue
        v = r.get("value")
        lat = f"{r['p50_us']:,.0f} / {r['p99_us']:,.0f}" if key != "bulk1" and key != "bulk4" and r.get("ops") else ""
        err = str(r.get("errors", 0)) + (f" ({r['first_error'][:70]})" if r.get("first_error") else "")
        spread = f" ({fmt(r['low'])}–{fmt(r['high'])})" if r.get("runs", 1) > 1 else ""
        lines.append(f"| {title} | {name} | {fmt(v)} {unit}{spread} | {lat} | {cpu(r, key)} | {ratio(v, dv)} | {ratio(v, rv)} | {err} |")
for key in IDLE:
    entries = [r for r in rows if r.get("row") == key]
    entries.sort(key=lambda r: order.index(r["peer"]) if r["peer"] in order else 99)
    for r in entries:
        name = r["peer"] + (f" ({PROTO.get(r.get('mode'), '')})" if PROTO.get(r.get("mode")) else "")
        if "note" in r:
            lines.append(f"| idle, {int(key[4:]):,} tunnels | {name} | {r['note']} | | | | | |"); continue
        extra = f"{r['before_kib']:,} → {r['after_kib']:,} KiB" + (f", {r['processes']} processes (Pss)" if r.get("processes", 1) > 1 else "")
        lines.append(f"| idle, {int(key[4:]):,} tunnels | {name} | {r['value']:.1f} KiB/tunnel | {extra} | | | | |")
other = [r for r in rows if "note" in r and r.get("row") in ("all", "crash")]
for r in other:
    lines.append(f"| {r['row']} | {r['peer']} | {r['note']} | | | | | |")

# scaling
scal = []
for key, title, unit in (("scale_bulk4", "bulk, 4 streams (CONNECT)", "MiB/s"), ("scale_setup64", "setup, 64 clients (CONNECT)", "tunnels/s")):
    w1 = find(key, "egressd-w1"); w2 = find(key, "egressd-w2")
    if w1 or w2:
        v1 = w1.get("value") if w1 else None; v2 = w2.get("value") if w2 else None
        scal.append(f"| {title} | {fmt(v1)} {unit} | {fmt(v2)} {unit} | {ratio(v2, v1)} |")

# key targets (the README's Performance section)
def val(row, peer, mode=None):
    r = find(row, peer, mode)
    return r.get("value") if r and "value" in r else None
def p50(row, peer, mode=None):
    r = find(row, peer, mode)
    return r.get("p50_us") if r and r.get("ops") else None
def peer_rows(row, mode):
    """The rows of `row` and `mode` measured for a peer (not egressd, direct or the relay)."""
    return [r for r in rows if r.get("row") == row and r.get("mode") == mode and not r["peer"].startswith("egressd")
            and r["peer"] not in ("direct", "relay") and "value" in r]
keys = []
def best_peer_line(row, mode, label, clients, target):
    """egressd's setup rate against the fastest peer's; the peers' rows (empty: no line)."""
    eg = val(row, "egressd", mode)
    peers = peer_rows(row, mode)
    if eg is not None and peers:
        best = max(peers, key=lambda r: r["value"])
        keys.append(f"- setup rate, {clients}, {label}: egressd {fmt(eg)}/s vs best peer {best['peer']} {fmt(best['value'])}/s = **{ratio(eg, best['value'])}** (target ≥ {target})")
        return peers
    return []
for mode, label in (("connect", "CONNECT"), ("socks5", "SOCKS5")):
    peers = best_peer_line("setup64", mode, label, "64 clients", "1.5×")
    if peers:
        # The rates share two cores with the load generator and the origin; the proxy's
        # own CPU time per tunnel is what it costs, whatever the others take.
        mine = find("setup64", "egressd", mode)
        costs = [(r["peer"], r["proxy_cpu_s"] / r["ops"]) for r in peers if r.get("proxy_cpu_s", -1) > 0 and r.get("ops")]
        if mine and mine.get("proxy_cpu_s", -1) > 0 and mine.get("ops") and costs:
            cp, cv = min(costs, key=lambda c: c[1])
            ev = mine["proxy_cpu_s"] / mine["ops"]
            keys.append(f"  - proxy CPU per tunnel, {label}: egressd {ev * 1e6:.0f} µs vs the most frugal peer {cp} {cv * 1e6:.0f} µs: the peer needs **{ratio(cv, ev)}** as much")
for mode, label in (("connect", "CONNECT"), ("socks5", "SOCKS5")):
    best_peer_line("setup1", mode, label, "1 client", "1.2×")
    e, d = p50("setup1", "egressd", mode), p50("setup1", "direct")
    r = find("setup1", "egressd", mode)
    if e is not None and d and r:
        keys.append(f"  - p50 {e:.0f} µs vs direct {d:.0f} µs = **{ratio(e, d)}** (target ≤ 1.5×); p99 {r['p99_us']:.0f} µs = **{ratio(r['p99_us'], e)}** the p50 (target ≤ 3×)")
# who closes first: how each proxy's serial setup rate moves when the client waits for
# the EOF, or the server closes first, against the client closing at once
closers = []
for r in sorted((r for r in rows if r.get("row") == "setup1" and "value" in r), key=lambda r: (order.index(r["peer"]) if r["peer"] in order else 99, r.get("mode", ""))):
    w = find("setup1w", r["peer"], r.get("mode")); sv = find("setup1s", r["peer"], r.get("mode"))
    name = r["peer"] + (f" ({PROTO.get(r.get('mode'), '')})" if PROTO.get(r.get("mode")) else "")
    closers.append(f"| {name} | {fmt(r['value'])} | {ratio(w.get('value') if w else None, r['value'])} | {ratio(sv.get('value') if sv else None, r['value'])} |")
for mode, label in (("connect", "CONNECT"), ("socks5", "SOCKS5")):
    eg = val("bulk1", "egressd", mode); rl = val("bulk1", "relay")
    if eg is not None and rl:
        keys.append(f"- bulk, 1 stream, {label}: egressd {fmt(eg)} MiB/s vs splice relay {fmt(rl)} MiB/s = **{ratio(eg, rl)}** (target ≥ 0.9×)")
for mode, label in (("connect", "CONNECT"), ("socks5", "SOCKS5")):
    e = p50("rtt", "egressd", mode); d = p50("rtt", "direct")
    if e is not None and d:
        keys.append(f"- p50 round trip, {label}: egressd {e:.0f} µs vs direct {d:.0f} µs = **{ratio(e, d)}** (target ≤ 2×)")
e = p50("rtt", "egressd-bp", "connect"); d = p50("rtt", "direct")
if e is not None and d:
    keys.append(f"- p50 round trip, CONNECT, `busy_poll_us: 50`: egressd {e:.0f} µs vs direct {d:.0f} µs = **{ratio(e, d)}**")
for row, label in (("setup1", "setup, 1 client"), ("setup64", "setup, 64 clients"), ("bulk1", "bulk, 1 stream"), ("rtt", "p50 round trip"), ("http", "HTTP keep-alive")):
    for mode in (("connect", "socks5") if row != "http" else ("http",)):
        if row == "rtt":
            e, b = p50(row, "egressd", mode), p50(row, "egressd-base", mode)
        else:
            e, b = val(row, "egressd", mode), val(row, "egressd-base", mode)
        if e is not None and b:
            keys.append(f"- {label} ({mode}), this tree against the baseline binary (EGRESSD_BASE): **{ratio(e, b)}**")
for row, label in (("setup64", "setup, 64 clients"), ("bulk1", "bulk, 1 stream"), ("http", "HTTP keep-alive")):
    for mode in (("connect", "socks5") if row != "http" else ("http",)):
        e, a = val(row, "egressd", mode), val(row, "egressd-audit", mode)
        if e and a is not None:
            keys.append(f"- {label} ({mode}), access records to a file against audit off: **{ratio(a, e)}** (target ≥ 0.95×)")
for row, label in (("setup1", "setup, 1 client"), ("setup64", "setup, 64 clients")):
    for mode in ("connect", "socks5"):
        e, m = val(row, "egressd", mode), val(row, "egressd-remembered", mode)
        if e and m is not None:
            keys.append(f"- {label} ({mode}), allowed by a remembered hook answer against allowed by a rule: **{ratio(m, e)}** (target ≥ 0.95×)")
hb = next((r for r in rows if r.get("row") == "hook_burst"), None)
if hb and "hosts" in hb:
    keys.append(f"- hook burst: {hb['hosts']:,} distinct unknown hosts at once against an HTTP hook answering each after "
                f"{hb['hook_delay_s'] * 1000:.0f} ms: {hb['answered']:,} answered ({hb['allowed']:,} allowed, "
                f"{hb['overloaded']} overloaded, {hb['errors']} errors), slowest **{hb['max_s']} s** (target ≤ 2 s), "
                f"{hb['hook_questions']:,} hook questions; open tunnels' p50 round trip {hb['rtt_p50_us_before']} µs before, "
                f"{hb['rtt_p50_us_during']} µs during = **{hb.get('rtt_ratio')}×** (target ≤ 1.2×)")
sc = next((r for r in rows if r.get("row") == "scrape"), None)
if sc and "scrape_p50_ms" in sc:
    keys.append(f"- GET /metrics with {sc['domain_label_values']:,} domains ({sc['series']:,} series, {sc['bytes']:,} bytes), "
                f"{sc['scrapes']} scrapes: p50 {sc['scrape_p50_ms']} ms, p99 {sc['scrape_p99_ms']} ms, max "
                f"**{sc['scrape_max_ms']} ms** (target < 50 ms); under the setup load p50 {sc['scrape_under_load_p50_ms']} ms, "
                f"max {sc['scrape_under_load_max_ms']} ms")
    for c in ("setup1", "setup64"):
        v = sc.get(c)
        if v:
            keys.append(f"  - {c[5:]} client{'s' if c != 'setup1' else ''}, CONNECT setup p99 with a scraper every 100 ms / without: "
                        f"{v['on']['p99_us']:,.0f} / {v['off']['p99_us']:,.0f} µs = **{v['p99_ratio']}×** "
                        f"({'within' if v.get('p99_within_noise') else 'outside'} the spread of the runs without, "
                        f"{min(v['off']['p99s_us']):,}–{max(v['off']['p99s_us']):,} µs; target: unmoved); "
                        f"A/A, the second run without against the first: {v.get('p99_ratio_aa')}×; "
                        f"the control, the same bytes from a static server: {v.get('p99_ratio_control')}×; "
                        f"rate {v['rate_ratio']}×")
eg = val("http", "egressd"); sq = val("http", "squid")
if eg is not None and sq:
    keys.append(f"- HTTP keep-alive: egressd {fmt(eg)} req/s vs squid {fmt(sq)} req/s = **{ratio(eg, sq)}** (target ≥ 2×)")
for row, label in (("oneshot1", "1 client"), ("oneshot64", "64 clients")):
    eg = val(row, "egressd"); sq = val(row, "squid")
    if eg is not None and sq:
        keys.append(f"- HTTP one-shot, {label}: egressd {fmt(eg)} req/s vs squid {fmt(sq)} req/s = **{ratio(eg, sq)}** (target ≥ 2×)")
for key in IDLE:
    r = find(key, "egressd")
    if r and "value" in r:
        keys.append(f"- memory per idle tunnel at {int(key[4:]):,} tunnels: egressd **{r['value']:.1f} KiB** (target ≤ 4 KiB)")
for key in ("scale_bulk4", "scale_setup64"):
    v1 = val(key, "egressd-w1"); v2 = val(key, "egressd-w2")
    if v1 and v2:
        keys.append(f"- {key[6:]}: workers 2 / workers 1 = **{ratio(v2, v1)}**")

md = ["# egressd benchmark results", "",
      "Written by `bench/run.sh` (overwritten on every run). All traffic on loopback; the load generator,",
      "the origin and the proxy share the machine's CPUs, so every figure includes their competition.", ""]
md += [f"- {m}" for m in meta]
md += ["", "Versions:", ""] + [f"- {v}" for v in versions]
md += ["", "## Results", "",
       "Figures: bulk = MiB/s through the tunnel(s) from the origin's byte source; setup = tunnels/s, each",
       "connect + proxy handshake + one 64-byte echo + close (latency from the connect to the echo); round trip = one",
       "tunnel, 64-byte ping-pong; HTTP = keep-alive GETs of a 128-byte body through the proxy; HTTP one-shot =",
       "the same GET with `Connection: close` on a new client connection each (connect to last byte, then the",
       "client closes), as curl or pip send them; idle = growth",
       "of the proxy's memory (VmRSS; Pss summed over the processes of a forking server) per open idle tunnel.",
       "`egressd-bp` is egressd with `busy_poll_us: 50` (workers poll 50 µs after activity before sleeping), in the latency rows only.",
       "`egressd-audit` (when run) writes its access records to a file; every other egressd row has `log.audit: off`.",
       "`egressd-remembered` has no rule for the target: a remembered hook answer (`always`, from decisions_file) allows it.",
       "`relay` is bench_splice_relay (splice(2) through 256 KiB pipes as egressd uses, one thread per CPU as egressd has",
       "one worker per core, fixed target, no protocol).",
       "proxy CPU = user + system CPU time of the proxy's processes during the measured window, per operation",
       "(per MiB for bulk) and in cores; it depends much less on the machine's background load than the rates do.",
       "The `proxies:` line above says whether each proxy ran alone (the default) or all at once; the idle-memory",
       "test always runs each proxy alone on a fresh process.",
       "The ratios of the last section compare figures of this one run: on a shared, noisy 2-core machine",
       "a single run varies by ±30 % or more (`BENCH_REPEAT=3` keeps the median of three runs).", ""]
md += lines
if closers:
    md += ["", "### Who closes first (setup, 1 client)", "",
           "Rate with the client closing right after the echo, and the rate when instead the client half-closes and waits",
           "for the EOF relayed back (the proxy's teardown in the cycle), or the origin closes first, as a multiple of it.", "",
           "| proxy | client closes, tunnels/s | client waits for the EOF | server closes first |", "|---|---:|---:|---:|"] + closers
if scal:
    md += ["", "### Scaling with worker threads (egressd)", "", "| scenario | workers: 1 | workers: 2 | 2 / 1 |", "|---|---:|---:|---:|"] + scal
if keys:
    md += ["", "### Against the targets of the README's Performance section", ""] + keys
if notes:
    md += ["", "### Notes", ""] + [f"- {n}" for n in notes]
md += ["", "### egressd stderr (lines above info level, and connections still open at SIGTERM)", ""]
md += (["```"] + eg_stderr[:40] + ["```"]) if eg_stderr else ["none"]
text = "\n".join(md) + "\n"
open(out_f, "w").write(text)
print(text)
PY
log "done; results in $OUT"
