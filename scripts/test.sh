#!/usr/bin/env bash
# Installs what is missing, builds egressd and runs every test:
#   1. warnings-as-errors build; the self-contained check (no file reads outside the
#      repository; a bare copy builds and passes the unit tests); unit tests and
#      integration tests (the real binary, driven by curl, socat, nc and Python against
#      local origins) through ctest;
#   2. the same suites under AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. each fuzz target (libFuzzer) for a bounded time;
#   4. the container image: deploy/test-image.sh builds it and runs requests through the
#      image's egressd as its non-root user on a read-only root (about 4 minutes the
#      first time); it prints why and SKIPPED where root, podman, namespaces or Debian's
#      mirror are missing.
# EGRESSD_TEST_QUICK=1 runs step 1 only (and step 4 with EGRESSD_TEST_IMAGE=1);
# EGRESSD_TEST_IMAGE=0 leaves step 4 out. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
jobs=2
fuzz_seconds=${EGRESSD_FUZZ_SECONDS:-30}

echo "== build and test (RelWithDebInfo, -Werror)"
# Paths relative to the root in ccache's keys, so that the bare copy built by
# check-self-contained.sh finds this build's objects in the cache.
CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1 cmake -S . -B build/test -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEGRESSD_WERROR=ON -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1 cmake --build build/test -j"$jobs"
EGRESSD_JOBS=$jobs scripts/check-self-contained.sh
ctest --test-dir build/test --output-on-failure -j"$jobs"

test_image() {
  if [[ "${EGRESSD_TEST_IMAGE:-}" == 0 ]]; then
    echo "== container image: not tested (EGRESSD_TEST_IMAGE=0)"
  else
    echo "== container image (deploy/test-image.sh)"
    deploy/test-image.sh
  fi
}

if [[ "${EGRESSD_TEST_QUICK:-0}" == 1 ]]; then
  [[ "${EGRESSD_TEST_IMAGE:-0}" == 1 ]] && test_image
  exit 0
fi

echo "== build and test under ASan + UBSan"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DEGRESSD_SANITIZE=ON -DEGRESSD_BENCH=OFF \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
cmake --build build/asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/asan --output-on-failure -j"$jobs"

echo "== fuzz each parser for ${fuzz_seconds}s"
cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DEGRESSD_FUZZ=ON -DEGRESSD_BENCH=OFF -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
cmake --build build/fuzz -j"$jobs" --target fuzz_targets
for target in build/fuzz/tests/fuzz/fuzz_*; do
  [[ -x "$target" ]] || continue
  name=$(basename "$target")
  corpus=tests/fuzz/corpus/${name#fuzz_}
  work=$(mktemp -d)
  cp -r "$corpus"/. "$work"/ 2>/dev/null || true
  echo "-- $name"
  log=$(mktemp)
  if ! (cd "$work" && "$OLDPWD/$target" -max_total_time="$fuzz_seconds" -timeout=5 -rss_limit_mb=1024 \
      -print_final_stats=1 . >"$log" 2>&1); then
    tail -n 40 "$log"
    echo "fuzz: $name found a failure (input saved in $work)" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_units" "$log" || true
  rm -f "$log"
  rm -rf "$work"
done
echo "fuzz: every target ran ${fuzz_seconds}s without a crash"

test_image
