#!/usr/bin/env bash
# Builds the container image from the top-level Dockerfile and runs its egressd the way
# a locked-down runtime would (README "Container image"):
#   1. a Debian 12 base from Debian's mirror with `debootstrap --variant=minbase`,
#      `podman import`ed and tagged as the Dockerfile's bases (debian:12, debian:12-slim;
#      no registry is needed);
#   2. `podman build --isolation chroot --pull=never --format docker` (the OCI format
#      has no HEALTHCHECK);
#   3. the image's root from `podman image mount`, read-only, in new mount and PID
#      namespaces, as uid 65532 with every capability dropped (deploy/image/chroot_run.py;
#      `podman run` needs privileges a CI machine may not grant): the shipped config
#      passes check-config, a bad one stops the entrypoint, and on a test config a request
#      to a local origin passes, one to a destination no rule names gets 403, /metrics
#      scrapes, the HEALTHCHECK passes, and SIGTERM stops it;
#   4. the same for a two-line Squid image (FROM debian:12-slim, apt-get install squid),
#      to print both sizes.
# Needs root, podman, debootstrap, unshare, python3, curl and Debian's mirror; installs
# podman, buildah and debootstrap with apt-get when missing. Without them it prints why
# and "SKIPPED", exit 0; so it does without the privileges it needs (namespaces,
# mounts, a working podman). The base rootfs and podman's storage (with its layer cache)
# are kept in EGRESSD_IMAGE_CACHE (default build/image-test), so a second run with no
# change takes about a minute; the first downloads a few hundred MB and builds egressd.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$PWD
cache=${EGRESSD_IMAGE_CACHE:-$root_dir/build/image-test}
mirror=${EGRESSD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
image=localhost/egressd:test
squid_image=localhost/egressd-test-squid:latest
uid=65532

skip() { echo "test-image: SKIPPED: $*"; exit 0; }
fail() { echo "test-image: FAILED: $*" >&2; exit 1; }
step() { echo "== test-image: $*"; }

[[ $(uname -s) == Linux ]] || skip "not Linux"
[[ $(id -u) -eq 0 ]] || skip "needs root (debootstrap, podman image mount, chroot)"
need=()
for t in podman buildah debootstrap; do command -v "$t" >/dev/null || need+=("$t"); done
if ((${#need[@]})); then
  command -v apt-get >/dev/null || skip "missing ${need[*]} and no apt-get to install them"
  echo "test-image: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq || skip "apt-get update failed: no package mirror reachable"
  timeout 900 apt-get install -y -qq --no-install-recommends podman buildah debootstrap uidmap >/dev/null \
    || skip "could not install ${need[*]}"
fi
for t in unshare mount python3 curl timeout; do command -v "$t" >/dev/null || skip "missing $t"; done
timeout 20 curl -fsS -o /dev/null "$mirror/dists/bookworm/Release" || skip "Debian's mirror $mirror is unreachable"

# The host's ccache, mounted into the build stage: a change to any file of the
# repository invalidates the build layer, and the objects of earlier image builds (or
# of a host build with the same compiler and CCACHE_BASEDIR) are then reused.
# EGRESSD_IMAGE_CCACHE names another directory.
ccache_dir=${EGRESSD_IMAGE_CCACHE:-$(ccache -k cache_dir 2>/dev/null || true)}
ccache_dir=${ccache_dir:-$cache/ccache}
mkdir -p "$ccache_dir"
podman=(podman --root "$cache/storage" --runroot "$cache/run")
timeout 30 unshare --mount --pid --fork true 2>/dev/null \
  || skip "cannot create mount and PID namespaces here (unshare --mount --pid --fork)"
timeout 60 "${podman[@]}" info >/dev/null 2>&1 || skip "podman does not work here (podman info fails)"
# Working containers an interrupted build left in this private store.
buildah --root "$cache/storage" --runroot "$cache/run" rm --all >/dev/null 2>&1 || true
work=$(mktemp -d /tmp/egressd-image-test.XXXXXX)
pids=()
mounted=()
# PID and every process below it (a backgrounded function is a shell above timeout,
# unshare and the command), children first found, at most 8 levels.
tree() {
  local queue=("$1") next p c
  for _ in 1 2 3 4 5 6 7 8; do
    next=()
    for p in "${queue[@]}"; do
      echo "$p"
      for c in $(pgrep -P "$p" || true); do next+=("$c"); done
    done
    ((${#next[@]})) || break
    queue=("${next[@]}")
  done
}
cleanup() {
  local p all=()
  for p in "${pids[@]}"; do mapfile -t -O "${#all[@]}" all < <(tree "$p"); done
  for p in "${all[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${all[@]}"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
  for p in "${mounted[@]}"; do "${podman[@]}" image unmount "$p" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. the base -------------------------------------------------------------------
base_tar=$cache/debian12-minbase.tar
if [[ ! -s $base_tar ]]; then
  step "debootstrap a Debian 12 minbase from $mirror"
  # A second try after a failure: a mirror's transient error is not the project's.
  for try in 1 2; do
    timeout 1200 debootstrap --variant=minbase bookworm "$work/base" "$mirror" >"$work/debootstrap.log" 2>&1 && break
    tail -n 20 "$work/debootstrap.log"
    ((try == 1)) || fail "debootstrap failed twice"
    echo "test-image: debootstrap failed; trying once more"
    rm -rf "$work/base"
  done
  # What the official image has too: updates, security, and no cached package lists.
  cat >"$work/base/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
  rm -rf "$work/base/var/lib/apt/lists/"* "$work/base/var/cache/apt/"*.bin "$work/base/var/cache/apt/archives/"*.deb
  tar -C "$work/base" --numeric-owner -cf "$base_tar.part" . && mv "$base_tar.part" "$base_tar"
  rm -rf "$work/base"
fi
if ! "${podman[@]}" image exists docker.io/library/debian:12 || [[ $base_tar -nt $cache/base.imported ]]; then
  step "podman import the base as debian:12 and debian:12-slim"
  "${podman[@]}" import --change 'CMD ["/bin/bash"]' "$base_tar" docker.io/library/debian:12 >/dev/null 2>&1
  "${podman[@]}" tag docker.io/library/debian:12 docker.io/library/debian:12-slim
  touch "$cache/base.imported"
fi

# ---- 2. the image -------------------------------------------------------------------
step "podman build --isolation chroot --pull=never (log: $cache/build.log)"
start=$SECONDS
# podman_build WHAT LOG SECONDS ARGS...: a build, tried once more where apt's downloads
# failed in a stage (the mirror's error, not the project's; the layers already built are
# kept). Any other failure is the build's own.
podman_build() {
  local what=$1 log=$2 limit=$3 try
  shift 3
  for try in 1 2; do
    timeout "$limit" "${podman[@]}" build --isolation chroot --pull=never --layers --force-rm "$@" >"$log" 2>&1 && return
    tail -n 30 "$log"
    ((try == 1)) || fail "$what failed twice"
    grep -Eq "Failed to fetch|Temporary failure resolving|Could not connect|Connection failed|Hash Sum mismatch" "$log" \
      || fail "$what failed"
    echo "test-image: a package download failed in $what; trying once more"
  done
}
podman_build "podman build" "$cache/build.log" 2400 --format docker -v "$ccache_dir:/ccache" \
  --build-arg CCACHE_DIR=/ccache -t "$image" .
"${podman[@]}" image exists "$image" || fail "podman build made no $image"
echo "built in $((SECONDS - start)) s"

# ---- 3. run it ------------------------------------------------------------------------
mnt=$("${podman[@]}" image mount "$image")
mounted+=("$image")
[[ -x $mnt/usr/local/bin/egressd ]] || fail "no /usr/local/bin/egressd in the image"
labels=$("${podman[@]}" image inspect --format '{{.Config.User}} {{json .Config.ExposedPorts}} {{json .Config.Healthcheck}}' "$image" 2>/dev/null || true)
echo "image config: $labels"
[[ $labels == "65532:65532 "* ]] || fail "the image does not run as 65532:65532"
[[ $labels == *egressd-healthcheck* ]] || fail "the image has no HEALTHCHECK (OCI format drops it: build with --format docker)"

# in_image SECONDS [chroot_run options] -- COMMAND...: a command in the image's
# read-only root, as uid 65532 without capabilities, in new mount and PID namespaces,
# for at most SECONDS (timeout passes a SIGTERM on; unshare hands it to the command).
in_image() {
  local limit=$1
  shift
  timeout "$limit" unshare --mount --pid --fork --kill-child=SIGTERM \
    python3 "$root_dir/deploy/image/chroot_run.py" --root "$mnt" --user "$uid:$uid" \
      --tmpfs /var/lib/egressd --tmpfs /tmp --workdir /var/lib/egressd "$@"
}

step "the shipped config passes check-config inside the image"
in_image 30 -- /usr/local/bin/egressd-entrypoint check-config --config /etc/egressd/egressd.yaml \
  || fail "check-config rejects the shipped /etc/egressd/egressd.yaml"

step "a bad config stops the entrypoint before it serves"
printf 'version: 1\nlisteners: [{address: 127.0.0.1:0}]\npolicy: {alow: [x]}\n' >"$work/bad.yaml"
set +e
in_image 30 --bind "$work/bad.yaml:/etc/egressd/egressd.yaml" -- /usr/local/bin/egressd-entrypoint \
  >"$work/bad.out" 2>&1
rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "alow" "$work/bad.out" || { cat "$work/bad.out"; fail "a bad config: exit $rc, expected 1 naming the key"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin_port=$(free_port)
proxy_port=$(free_port)
admin_port=$(free_port)
mkdir -p "$work/www" && echo "hello from the origin" >"$work/www/index.html"
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$origin_port" >"$work/origin.log" 2>&1 &
pids+=($!)
cat >"$work/test.yaml" <<CONFIG
version: 1
listeners: [ { address: 127.0.0.1:$proxy_port } ]
admin: { address: 127.0.0.1:$admin_port }
policy: { allow: ["127.0.0.1"], unknown: deny }
decisions_file: /var/lib/egressd/decisions.yaml
log: { format: json, level: info, audit: stdout }
CONFIG

step "egressd from the image on a read-only root, uid $uid, no capabilities"
in_image 600 --bind "$work/test.yaml:/etc/egressd/egressd.yaml" -- /usr/local/bin/egressd-entrypoint \
  >"$work/egressd.log" 2>&1 &
daemon=$!
pids+=("$daemon")
ready=0
for _ in $(seq 1 100); do  # 20 s
  if curl -fsS --max-time 1 "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$daemon" 2>/dev/null || break
  sleep 0.2
done
((ready)) || { cat "$work/egressd.log"; fail "egressd did not become ready within 20 s"; }
curl -fsS --max-time 5 "http://127.0.0.1:$origin_port/" >/dev/null || fail "the origin does not answer"

# egressd is a few levels below $daemon (the backgrounded function's shell, timeout,
# unshare; chroot_run.py exec'd into the entrypoint, which exec'd egressd).
egd_pid=
for p in $(tree "$daemon"); do
  [[ $(cat "/proc/$p/comm" 2>/dev/null) == egressd ]] && egd_pid=$p
done
if [[ -n $egd_pid && $(cat "/proc/$egd_pid/comm" 2>/dev/null) == egressd ]]; then
  status=$(grep -E '^(Uid|Gid|CapEff|CapPrm|CapBnd|NoNewPrivs)' "/proc/$egd_pid/status" | tr -s '\t ' ' ')
  echo "$status" | sed 's/^/  /'
  echo "$status" | grep -q "^Uid: $uid $uid $uid $uid" || fail "egressd does not run as uid $uid"
  echo "$status" | grep -q "^CapEff: 0000000000000000" || fail "egressd has effective capabilities"
  echo "$status" | grep -q "^CapBnd: 0000000000000000" || fail "egressd's bounding set is not empty"
  root_ro=$(awk '$5 == "/" {print $6}' "/proc/$egd_pid/mountinfo" | tail -n 1)
  [[ $root_ro == ro,* || $root_ro == ro ]] || fail "egressd's root is not read-only ($root_ro)"
  echo "  root: $root_ro"
else
  fail "no egressd process found"
fi

step "an allowed request passes through"
body=$(curl -sS --max-time 10 -x "http://127.0.0.1:$proxy_port" "http://127.0.0.1:$origin_port/")
[[ $body == "hello from the origin" ]] || fail "allowed request: got '$body'"
step "a CONNECT tunnel to the origin"
body=$(curl -sS --max-time 10 -p -x "http://127.0.0.1:$proxy_port" "http://127.0.0.1:$origin_port/")
[[ $body == "hello from the origin" ]] || fail "CONNECT request: got '$body'"
step "a destination no rule names is refused with 403"
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -x "http://127.0.0.1:$proxy_port" \
  "http://127.0.0.2:$origin_port/" || true)
[[ $code == 403 ]] || fail "denied request: got HTTP $code"
step "/metrics scrapes and counts both"
metrics=$(curl -fsS --max-time 5 "http://127.0.0.1:$admin_port/metrics")
grep -q '^egressd_requests_total{.*decision="allow"' <<<"$metrics" || fail "/metrics has no allowed request"
grep -q '^egressd_requests_total{.*decision="deny"' <<<"$metrics" || fail "/metrics has no denied request"
grep -q '^egressd_build_info' <<<"$metrics" || fail "/metrics has no egressd_build_info"
step "the HEALTHCHECK command passes"
in_image 20 --env "EGRESSD_ADMIN=127.0.0.1:$admin_port" -- /usr/local/bin/egressd-healthcheck \
  || fail "egressd-healthcheck failed against a ready egressd"
grep -q '"decision":"deny"' "$work/egressd.log" || fail "no access record of the denial on stdout"

step "SIGTERM stops it"
kill -TERM "$egd_pid"
timeout 40 tail --pid="$daemon" -f /dev/null || fail "egressd did not stop within 40 s of SIGTERM"

# ---- 4. sizes ---------------------------------------------------------------------------
step "Squid's Debian image built the same way"
mkdir -p "$work/squid"
printf 'FROM docker.io/library/debian:12-slim\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends squid >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*\n' \
  >"$work/squid/Dockerfile"
podman_build "the Squid image's build" "$cache/squid-build.log" 900 -t "$squid_image" "$work/squid"
size() { "${podman[@]}" image inspect --format '{{.Size}}' "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }
base=$(size docker.io/library/debian:12-slim)
egd=$(size "$image")
squid=$(size "$squid_image")
echo "image size: egressd $(mb "$egd") (+$(mb $((egd - base))) over the base), squid $(mb "$squid") (+$(mb $((squid - base)))), base debian:12 minbase $(mb "$base")"
echo "test-image: PASSED"
