#!/usr/bin/env bash
# Installs the Debian 12 packages egressd needs, only those that are missing.
#   deps.sh build   - compiler, CMake and the libraries
#   deps.sh test    - the above plus the tools the tests drive (curl, socat, nc, clang,
#                     chromium, node) and playwright-core from npm into
#                     tests/integration/.npm (git-ignored) for the admin page's test
set -euo pipefail

build_packages=(
  cmake ninja-build g++ pkg-config ccache
  libboost1.81-dev libssl-dev libyaml-cpp-dev libspdlog-dev prometheus-cpp-dev
  catch2 libc-ares-dev libpsl-dev publicsuffix
)
test_packages=(
  curl python3 socat netcat-openbsd openssl procps prometheus
  clang libclang-rt-14-dev chromium nodejs npm
)

wanted=("${build_packages[@]}")
if [[ "${1:-build}" == "test" ]]; then
  wanted+=("${test_packages[@]}")
fi

missing=()
for p in "${wanted[@]}"; do
  # Node.js from another source (NodeSource's nodejs ships npm and conflicts with
  # Debian's npm package) serves as well as Debian's.
  if [[ $p == nodejs || $p == npm ]] && command -v "${p/nodejs/node}" >/dev/null; then
    continue
  fi
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: run as root, or install these packages first: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The admin page's browser test (tests/integration/test_page.py) drives Debian's
# chromium with playwright-core, kept inside the repository.
if [[ "${1:-build}" == "test" ]]; then
  npm_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/integration/.npm"
  if [[ ! -f $npm_dir/node_modules/playwright-core/package.json ]]; then
    echo "deps: npm install playwright-core into $npm_dir"
    mkdir -p "$npm_dir"
    timeout 300 npm install --silent --no-audit --no-fund --prefix "$npm_dir" playwright-core@1
  fi
fi
