#!/usr/bin/env bash
# Installs the Debian 12 packages egressd needs, only those that are missing.
#   deps.sh build   - compiler, CMake and the libraries
#   deps.sh test    - the above plus the tools the tests drive (curl, socat, nc, clang...)
set -euo pipefail

build_packages=(
  cmake ninja-build g++ pkg-config ccache
  libboost1.81-dev libssl-dev libyaml-cpp-dev libspdlog-dev prometheus-cpp-dev
  catch2 libc-ares-dev libpsl-dev publicsuffix
)
test_packages=(
  curl python3 socat netcat-openbsd openssl procps prometheus
  clang libclang-rt-14-dev
)

wanted=("${build_packages[@]}")
if [[ "${1:-build}" == "test" ]]; then
  wanted+=("${test_packages[@]}")
fi

missing=()
for p in "${wanted[@]}"; do
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
