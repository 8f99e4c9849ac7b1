"""The README's examples, run or validated, so that the documentation cannot drift from
the code: every fenced `sh`, `yaml` and `json` block of README.md is taken apart and each
command and config in it is checked against the real binary (and the repository).

- `yaml` blocks are configurations: `egressd check-config --config` accepts each; a
  block without `version:` is a part of one (a policy to paste) and is checked inside a
  minimal configuration.
- `json` blocks are settings files (`check-config --settings` accepts them) or access
  records (every line is JSON, and each field is one the README's field table names).
- `sh` blocks: each command line (a leading `$ ` marks one followed by its output) is
  dispatched on its first word to a checker below; a command no checker knows fails the
  test, so a new kind of example needs a checker before it can be documented.
  Commands that serve (`egressd run`) are validated with `check-config` on the same
  arguments; `curl` and `kill -HUP` run against a daemon the test starts, with
  `127.0.0.1:3128` standing for its address; build commands are checked against the
  build this test runs from (options declared, directories the scripts use, tests and
  tags that exist), never by building again.

Files the examples name (`~/.claude/settings.json`, `/etc/egressd/egressd.yaml`) are
replaced by the README's own examples of them, written to a temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import unittest

from tests.integration.harness import (
    TOOL_TIMEOUT,
    EgressdTestCase,
    egressd_binary,
    make_config,
    require_tools,
    tool_env,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")


def blocks(text: str) -> list[tuple[str, str, int]]:
    """(language, body, line of the opening fence) of each fenced block, nested in lists too."""
    out = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i + 1
        body = []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        out.append((lang, "\n".join(body), start))
        i += 1
    return out


def commands(body: str) -> list[tuple[str, list[str]]]:
    """Each command of an `sh` block with the output lines shown after it (`$ ` prompts)."""
    out: list[tuple[str, list[str]]] = []
    prompted = any(line.startswith("$ ") for line in body.split("\n"))
    for line in body.split("\n"):
        if prompted:
            if line.startswith("$ "):
                out.append((line[2:].strip(), []))
            elif out:
                out[-1][1].append(line)
            continue
        line = re.sub(r"\s+#.*$", "", line).strip()  # a trailing comment
        if line and not line.startswith("#"):
            out.append((line, []))
    return out


def record_fields(text: str) -> set[str]:
    """The field names of the access-record table (first column, in backquotes)."""
    section = text.split("## Logs and access records", 1)[1].split("\n## ", 1)[0]
    fields: set[str] = set()
    for line in section.split("\n"):
        if line.startswith("| `"):
            fields.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return fields


def cmake_options() -> set[str]:
    names = set()
    for dirpath, _, files in os.walk(ROOT):
        if "/build" in dirpath[len(ROOT):] or "/." in dirpath[len(ROOT):]:
            continue
        for f in files:
            if f == "CMakeLists.txt":
                with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                    names.update(re.findall(r"option\((\w+)", fh.read()))
    return names


def script_build_dirs() -> set[str]:
    """The build directories scripts/*.sh use (`-B DIR`)."""
    dirs = set()
    scripts = os.path.join(ROOT, "scripts")
    for f in os.listdir(scripts):
        with open(os.path.join(scripts, f), encoding="utf-8") as fh:
            dirs.update(re.findall(r"-B\s+([\w/.-]+)", fh.read()))
    return dirs


class ReadmeExamplesTest(EgressdTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        with open(README, encoding="utf-8") as f:
            cls.text = f.read()
        cls.blocks = blocks(cls.text)
        cls.tmp = tempfile.mkdtemp(prefix="egd-readme-")
        cls.addClassCleanup(lambda: subprocess.run(["rm", "-rf", cls.tmp], check=False))
        # A YAML block whose first line is `# /path` is that file (`/etc/egressd/hook.yaml`).
        named = {m.group(1): b for lang, b, _ in cls.blocks
                 if lang == "yaml" and (m := re.match(r"#\s+(/\S+)\n", b))}
        yaml_blocks = [b for lang, b, _ in cls.blocks if lang == "yaml" and b not in named.values()]
        settings = [b for lang, b, _ in cls.blocks if lang == "json" and '"sandbox"' in b]
        # sandbox-runtime's own settings file: `network` and `filesystem` at the top level.
        srt_settings = [b for lang, b, _ in cls.blocks
                        if lang == "json" and '"filesystem"' in b and '"sandbox"' not in b]
        if not yaml_blocks or not settings or not srt_settings:
            raise AssertionError("the README must show a YAML config, a Claude Code settings file "
                                 "and a sandbox-runtime settings file")
        cls.files = {
            "/etc/egressd/egressd.yaml": cls.write(cls, "egressd.yaml", yaml_blocks[0]),
            "~/.claude/settings.json": cls.write(cls, "settings.json", settings[0]),
            "~/.srt-settings.json": cls.write(cls, "srt-settings.json", srt_settings[0]),
            **{path: cls.write(cls, os.path.basename(path), body) for path, body in named.items()},
        }
        cls.build_dir = os.path.dirname(os.path.dirname(os.path.abspath(egressd_binary())))

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        return path

    def egressd(self, args: list[str]) -> subprocess.CompletedProcess:
        # Names resolve from a hosts file only: --resolve examples send nothing to DNS.
        hosts = self.write("hosts", "127.0.0.1 registry.npmjs.org\n127.0.0.1 example.com\n")
        env = tool_env({"CARES_HOSTS": hosts, "EGRESSD_HOSTS_FILE": hosts})
        return subprocess.run([egressd_binary(), *args], capture_output=True, text=True, env=env,
                              timeout=TOOL_TIMEOUT, cwd=self.tmp)

    def substitute(self, words: list[str]) -> list[str]:
        return [self.files.get(w, w) for w in words]

    # ---- config blocks -------------------------------------------------------------
    def test_yaml_blocks_are_valid_configs(self):
        n = 0
        for lang, body, line in self.blocks:
            if lang != "yaml":
                continue
            n += 1
            with self.subTest(line=line):
                extra = []
                if not re.search(r"^version:", body, re.M):
                    body = "version: 1\nlisteners: [{address: 127.0.0.1:0}]\n" + body
                elif not re.search(r"^listeners:", body, re.M):
                    # A whole config without listeners goes with a settings file, whose
                    # ports it serves (README "Using it with Claude Code and sandbox-runtime").
                    extra = ["--settings", self.files["~/.srt-settings.json"]]
                r = self.egressd(["check-config", "--config", self.write(f"block{line}.yaml", body), *extra])
                self.assertEqual(r.returncode, 0, f"README.md:{line}: {r.stderr}")
        self.assertGreater(n, 0)

    def test_json_blocks_are_settings_or_records(self):
        fields = record_fields(self.text)
        self.assertIn("decision", fields)
        settings = records = 0
        for lang, body, line in self.blocks:
            if lang != "json":
                continue
            with self.subTest(line=line):
                if '"event"' in body:
                    for n, text in enumerate(body.strip().split("\n")):
                        rec = json.loads(text)  # each example record is one JSON line
                        records += 1
                        unknown = set(rec) - fields - {"time", "level"}
                        self.assertFalse(unknown, f"README.md:{line + n + 1}: fields not in the table: {unknown}")
                else:
                    settings += 1
                    r = self.egressd(["check-config", "--settings", self.write(f"block{line}.json", body)])
                    self.assertEqual(r.returncode, 0, f"README.md:{line}: {r.stderr}")
        self.assertGreater(settings, 0)
        self.assertGreater(records, 0)

    # ---- commands ----------------------------------------------------------------------
    def test_every_command(self):
        checked = 0
        for lang, body, line in self.blocks:
            if lang != "sh":
                continue
            exports = [c for c, _ in commands(body) if c.startswith("export ")]
            if exports:
                with self.subTest(line=line, command="export"):
                    self.check_exports(exports)
                    checked += len(exports)
            for command, output in commands(body):
                if command.startswith("export "):
                    continue
                with self.subTest(line=line, command=command):
                    self.check_command(command, output, line)
                    checked += 1
        self.assertGreater(checked, 10)

    def check_command(self, command: str, output: list[str], line: int) -> None:
        words = shlex.split(command)
        # `NAME=value command`: the command is checked, and must read each NAME.
        assignments = []
        while len(words) > 1 and re.match(r"^[A-Z][A-Z0-9_]*=", words[0]):
            assignments.append(words.pop(0).split("=", 1)[0])
        if assignments:
            with open(os.path.join(ROOT, words[0]), encoding="utf-8") as f:
                script = f.read()
            for name in assignments:
                self.assertRegex(script, rf"\b{name}\b", f"README.md:{line}: {words[0]} does not read {name}")
        first = words[0]
        if first == "egressd":
            self.check_egressd(words[1:], output, line)
        elif first.startswith("scripts/"):
            path = os.path.join(ROOT, first)
            self.assertTrue(os.access(path, os.X_OK), f"{first} is not an executable script")
            r = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
        elif first == "cmake":
            self.check_cmake(words[1:])
        elif first == "ctest":
            self.check_ctest(words[1:])
        elif first.startswith("build/"):
            self.check_build_binary(words)
        elif first == "curl":
            self.check_curl(command)
        elif first == "kill":
            self.check_kill(words)
        elif first == "srt":
            self.check_srt(words)
        elif first.startswith("deploy/hooks/"):
            self.check_hook_example(words)
        elif first.startswith("deploy/") and first.endswith(".sh"):
            path = os.path.join(ROOT, first)  # deploy/test-image.sh: run by hand, needs root and podman
            self.assertTrue(os.access(path, os.X_OK), f"{first} is not an executable script")
            r = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
        else:
            self.fail(f"README.md:{line}: no checker for the command {command!r}: add one to {__file__}")

    def check_egressd(self, args: list[str], output: list[str], line: int) -> None:
        args = self.substitute(args)
        if not args or args[0] == "run":  # serving: validate what it would serve
            args = ["check-config", *args[1:]]
        r = self.egressd(args)
        if args[0] == "check":
            self.assertIn(r.returncode, (0, 1, 3), r.stderr)  # the answer, not an error
            self.assertIn("decision:" if "--json" not in args else '"decision"', r.stdout)
            # Shown output: the fields must agree (paths differ from machine to machine).
            shown = {k.strip(): v.strip() for k, _, v in (o.partition(":") for o in output if ":" in o)}
            got = {k.strip(): v.strip() for k, _, v in (o.partition(":") for o in r.stdout.split("\n") if ":" in o)}
            for key in ("host", "port", "decision", "reason"):
                if key in shown:
                    self.assertEqual(got.get(key), shown[key], f"README.md:{line}: `{key}` differs:\n{r.stdout}")
            if "rule" in shown:
                self.assertEqual(got.get("rule", "").split("  [")[0], shown["rule"].split("  [")[0], r.stdout)
        else:
            self.assertEqual(r.returncode, 0, f"README.md:{line}: egressd {' '.join(args)}:\n{r.stderr}")

    def check_exports(self, lines: list[str]) -> None:
        script = "\n".join(lines) + "\nenv\n"
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
        env = dict(v.split("=", 1) for v in r.stdout.split("\n") if "=" in v)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            self.assertEqual(env.get(name), "http://127.0.0.1:3128", f"{name} after the README's exports")

    def check_cmake(self, args: list[str]) -> None:
        if args[:1] == ["--install"]:
            prefix = tempfile.mkdtemp(prefix="egd-install-")
            self.addCleanup(lambda: subprocess.run(["rm", "-rf", prefix], check=False))
            self.assertIn(args[1], script_build_dirs(), "install from a build directory the scripts make")
            r = subprocess.run(["cmake", "--install", self.build_dir, "--prefix", prefix],
                               capture_output=True, text=True, timeout=TOOL_TIMEOUT)
            self.assertEqual(r.returncode, 0, r.stderr)
            for f in ("bin/egressd", "share/doc/egressd/README.md", "share/doc/egressd/LICENSE",
                      "share/doc/egressd/egressd.yaml"):
                self.assertTrue(os.path.exists(os.path.join(prefix, f)), f"cmake --install did not install {f}")
            return
        options = cmake_options()
        for a in args:
            if a.startswith("-D"):
                name = a[2:].split("=")[0]
                self.assertTrue(name in options or name.startswith("CMAKE_"), f"unknown CMake option {name}")
        for flag in ("-B", "--build"):
            if flag in args:
                self.assertIn(args[args.index(flag) + 1], script_build_dirs(),
                              "the README's build directory must be one the scripts use")

    def check_ctest(self, args: list[str]) -> None:
        self.assertIn(args[args.index("--test-dir") + 1], script_build_dirs())
        cmd = ["ctest", "--test-dir", self.build_dir, "-N"]
        if "-R" in args:
            cmd += ["-R", args[args.index("-R") + 1]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        m = re.search(r"Total Tests: (\d+)", r.stdout)
        self.assertTrue(m and int(m.group(1)) > 0, f"no test matches {' '.join(args)}: {r.stdout}")

    def check_build_binary(self, words: list[str]) -> None:
        rel = words[0].split("/", 2)[2]  # build/<dir>/<path>
        self.assertIn("/".join(words[0].split("/")[:2]), script_build_dirs())
        path = os.path.join(self.build_dir, rel)
        self.assertTrue(os.access(path, os.X_OK), f"{rel} is not built")
        if rel.endswith("unit_tests"):
            r = subprocess.run([path, *words[1:], "--list-test-names-only"], capture_output=True, text=True,
                               timeout=TOOL_TIMEOUT)
            self.assertTrue(r.stdout.strip(), f"no unit test matches {words[1:]}")

    def _daemon(self):
        if not hasattr(self, "_d"):
            self._d = self.start_daemon(make_config(allow=["github.com"]))
        return self._d

    def check_curl(self, command: str) -> None:
        require_tools("curl")
        ep = self._daemon().endpoint(0)
        r = subprocess.run(["bash", "-c", command.replace("127.0.0.1:3128", ep.hostport)], capture_output=True,
                           text=True, timeout=TOOL_TIMEOUT)
        self.assertIn("403", r.stdout, r.stderr)
        self.assertIn("Proxy-Status", r.stdout)

    def check_hook_example(self, words: list[str]) -> None:
        """An example hook started by hand (README "Hook examples"): it exists, is
        executable, and takes every option the example gives it (its --help lists it)."""
        path = os.path.join(ROOT, words[0])
        self.assertTrue(os.access(path, os.X_OK), f"{words[0]} is not an executable file")
        options = [w.split("=")[0] for w in words[1:] if w.startswith("--")]
        if options:
            r = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=TOOL_TIMEOUT,
                               env=tool_env({"PATH": os.path.dirname(sys.executable) + os.pathsep
                                                     + os.environ.get("PATH", "")}))
            self.assertEqual(r.returncode, 0, r.stderr)
            for o in options:
                self.assertIn(o, r.stdout, f"{words[0]} has no option {o}")

    def check_srt(self, words: list[str]) -> None:
        """sandbox-runtime's CLI (README "Using it with Claude Code and sandbox-runtime";
        test_sandbox_runtime runs it for real): the settings file it names is one the
        README shows, and, where the npm package is installed, srt knows every option."""
        self.assertIn("--settings", words, "srt without --settings would read another file than egressd's")
        self.assertIn(words[words.index("--settings") + 1], self.files, "srt --settings names a file the README shows")
        srt = os.path.join(ROOT, "tests", "integration", ".npm", "node_modules", ".bin", "srt")
        if not os.path.exists(srt):
            return  # test_sandbox_runtime says so (it skips)
        r = subprocess.run([srt, "--help"], capture_output=True, text=True, timeout=TOOL_TIMEOUT, env=tool_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        for w in words[1:]:
            if w.startswith("-"):
                self.assertRegex(r.stdout, rf"(^|[\s,]){re.escape(w)}\b", f"srt has no option {w}")

    def check_kill(self, words: list[str]) -> None:
        self.assertEqual(words[:2], ["kill", "-HUP"])
        d = self._daemon()
        mark = d.log_mark()
        d.send_signal(signal.SIGHUP)
        d.wait_log("reloaded", start=mark)


if __name__ == "__main__":
    unittest.main()
