#!/usr/bin/env bash
# Installs what is missing, builds egressd (Release) and runs it. With no arguments it
# serves on its embedded default config; any arguments are passed to `egressd run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DEGRESSD_TESTS=OFF -DEGRESSD_BENCH=OFF \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
cmake --build build/release -j2 --target egressd
exec build/release/proxy/egressd run "$@"
