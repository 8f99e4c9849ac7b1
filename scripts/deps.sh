#!/usr/bin/env bash
# Installs the Debian 12 packages egressd needs, only those that are missing.
#   deps.sh build   - compiler, CMake and the libraries
#   deps.sh test    - the above plus the tools the tests drive (curl, socat, nc, clang,
#                     yamllint, chromium, node, bubblewrap, sshd...) and the npm packages
#                     of the admin page's browser test, of the deploy/ validation and of
#                     the sandbox-runtime guide (tests/integration/.npm, git-ignored)
set -euo pipefail

build_packages=(
  cmake ninja-build g++ pkg-config ccache
  libboost1.81-dev libssl-dev libyaml-cpp-dev libspdlog-dev prometheus-cpp-dev
  catch2 libc-ares-dev libpsl-dev publicsuffix
)
test_packages=(
  curl python3 socat netcat-openbsd openssl procps prometheus
  clang libclang-rt-14-dev yamllint chromium
  bubblewrap ripgrep openssh-server openssh-client git python3-pip
)
# npm packages the tests use, installed into tests/integration/.npm: the Kubernetes
# API schemas (validate() per object; 4.x runs on Debian 12's node 18), a YAML parser,
# playwright-core, which drives Debian's chromium for the admin page's test, and
# sandbox-runtime, whose `srt` runs the README's Claude Code guide in its bubblewrap
# sandbox (test_sandbox_runtime; 0.0.78 is the version the conformance tables record).
npm_dir=tests/integration/.npm
npm_packages=(kubernetes-models@4.5.1 yaml@2.9.1 playwright-core@1.65.2 @anthropic-ai/sandbox-runtime@0.0.78)

wanted=("${build_packages[@]}")
if [[ "${1:-build}" == "test" ]]; then
  wanted+=("${test_packages[@]}")
  # Only when missing: a node from elsewhere (NodeSource) brings its own npm, which
  # Debian's npm package would conflict with.
  command -v npm >/dev/null || wanted+=(nodejs npm)
  command -v systemd-analyze >/dev/null || wanted+=(systemd)
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

if [[ "${1:-build}" == "test" ]]; then
  cd "$(dirname "$0")/.."
  for p in "${npm_packages[@]}"; do
    name=${p%@*} version=${p##*@}
    installed=$(node -p "require('./$npm_dir/node_modules/$name/package.json').version" 2>/dev/null || true)
    if [[ "$installed" != "$version" ]]; then
      echo "deps: npm install ${npm_packages[*]} into $npm_dir"
      mkdir -p "$npm_dir"
      if ! timeout 300 npm install --no-audit --no-fund --no-save --prefix "$npm_dir" "${npm_packages[@]}" >/dev/null; then
        echo "deps: npm install failed: test_deploy skips the Kubernetes schemas; test_page fails" >&2
      fi
      break
    fi
  done
fi
