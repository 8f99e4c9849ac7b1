#!/usr/bin/env bash
# Proves that the repository builds and tests on its own:
#   1. no build, script or test file names a path outside the repository: a
#      ${PROJECT_SOURCE_DIR}/.., a ../ chain that climbs above the root (counted from the
#      file's folder, or from the root for shell scripts, which run there), or an
#      absolute path into the folder that holds the clone;
#   2. the repository's files alone, copied to an empty temporary directory with
#      nothing beside them, configure, build and pass the unit tests.
# Step 2 compiles through ccache with paths made relative (CCACHE_BASEDIR, set the same
# way by scripts/test.sh for its own build), so after a build of the same sources it
# costs little more than configuring and linking. Exits non-zero with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=${EGRESSD_JOBS:-2}
self=scripts/check-self-contained.sh

# The files the repository has: tracked, plus new ones git does not ignore.
mapfile -d '' files < <(git ls-files -z --cached --others --exclude-standard)

echo "== self-contained: no path outside the repository"
python3 - "$self" "$(dirname "$root")" "${files[@]}" <<'EOF'
import os
import re
import sys

self_path, beside, files = sys.argv[1], sys.argv[2], sys.argv[3:]
# Build, script and test files: what a build or a test run reads.
def in_scope(path: str) -> bool:
    name = os.path.basename(path)
    return (name == "CMakeLists.txt" or name.endswith((".cmake", ".sh", ".py"))
            or path.startswith("tests/") or path.startswith("scripts/"))

escape = [
    (re.compile(r"\$\{(?:PROJECT|CMAKE|CMAKE_CURRENT)_SOURCE_DIR\}/\.\.(?:/|\b)"), "a path above the source root"),
]
# (Not where the folder holding the clone is a common one, such as /tmp, whose other
# paths tests may name for their own reasons.)
if beside not in ("/", "/tmp", "/var/tmp", "/home", "/root"):
    escape.append((re.compile(r"(?<![\w.])" + re.escape(beside.rstrip("/") + "/")),
                   "an absolute path beside the clone"))
climb = re.compile(r"(?<![\w.])((?:\.\./)+)")
problems = []
for path in files:
    if path == self_path or not in_scope(path) or not os.path.isfile(path):
        continue
    try:
        text = open(path, encoding="utf-8").read()
    except UnicodeDecodeError:
        continue  # binary fixtures (fuzz corpora) name no paths
    # How many ../ stay inside the repository: from the file's folder, or from the
    # root for shell scripts (they cd there first).
    depth = 0 if path.endswith(".sh") else path.count("/")
    for n, line in enumerate(text.splitlines(), 1):
        for pattern, what in escape:
            if pattern.search(line):
                problems.append(f"{path}:{n}: {what}: {line.strip()}")
        for m in climb.finditer(line):
            if m.group(1).count("../") > depth:
                problems.append(f"{path}:{n}: '{m.group(1)}' climbs above the repository root: {line.strip()}")
if problems:
    print("self-contained: these build/test files read outside the repository:", file=sys.stderr)
    print("\n".join(problems), file=sys.stderr)
    print("copy what they need into the repository (e.g. tests/data/) and refer to it there", file=sys.stderr)
    sys.exit(1)
print(f"self-contained: {len(files)} files checked, none names a path outside the repository")
EOF

echo "== self-contained: build and unit tests from a bare copy"
work=$(mktemp -d "${TMPDIR:-/tmp}/egressd-alone.XXXXXX")
trap 'rm -rf "$work"' EXIT
copy=$work/egressd  # nothing beside it: no folder next to the clone exists here
mkdir "$copy"
present=()
for f in "${files[@]}"; do [[ -e "$f" || -L "$f" ]] && present+=("$f"); done
tar -cf - -- "${present[@]}" | tar -xf - -C "$copy"
export CCACHE_BASEDIR=$copy CCACHE_NOHASHDIR=1
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
log=$work/build.log
if ! (cd "$copy" &&
      cmake -S . -B build/test -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGRESSD_WERROR=ON "${launcher[@]}" &&
      cmake --build build/test -j"$jobs" --target unit_tests) >"$log" 2>&1; then
  tail -n 40 "$log"
  echo "self-contained: a bare copy of the repository does not build (log above)" >&2
  exit 1
fi
if ! (cd "$copy" && build/test/tests/unit_tests) >"$log" 2>&1; then
  tail -n 40 "$log"
  echo "self-contained: the unit tests fail in a bare copy of the repository" >&2
  exit 1
fi
tail -n 2 "$log"
echo "self-contained: a bare copy builds and passes the unit tests"
