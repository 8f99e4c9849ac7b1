"""README "Configuration reference" against the real binary, trusting no key list of
the code (tests/unit/config_reference_test.cpp compares the rows with config/keys.hpp):

- every row's key, set to the row's example (`e.g.`, else its default, else the first
  value its type cell names), is accepted by `egressd check-config` with no error, and
  a misspelling of its last part is refused as an unknown key;
- every settings-file key the table names is accepted without an "unknown key"
  warning (those egressd reads and those it ignores alike), a misspelling is warned
  about, and a key marked `ignores` changes nothing `check-config` says;
- config/default_config.yaml, "commented key by key", names exactly the documented
  keys, in its settings or in its commented-out examples.

A key that needs others to be valid (`hook.persistent` needs `hook.exec`) gets them
from CONTEXT; paths in examples are rewritten into a temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")
DEFAULT_CONFIG = os.path.join(ROOT, "config", "default_config.yaml")
CLI_TIMEOUT = 20.0  # one check-config run

BASE_LISTENER = "127.0.0.1:0"
PEM = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"

# Keys whose example is valid only beside others ({dir}: the test's directory).
HOOK_URL = "https://127.0.0.1:8443/decide"
CONTEXT: dict[str, dict[str, str]] = {
    "listeners[].mode": {"listeners[].address": "unix:{dir}/proxy.sock"},
    "listeners[].group": {"listeners[].address": "unix:{dir}/proxy.sock"},
    "admin.token_file": {"admin.address": "127.0.0.1:0"},
    "hook.persistent": {"hook.exec": '["/bin/cat"]'},
    "hook.ca_file": {"hook.url": HOOK_URL},
    "hook.token_file": {"hook.url": HOOK_URL},
    "log.audit_max_size": {"log.audit": "{dir}/audit.log"},
    "log.audit_max_files": {"log.audit": "{dir}/audit.log", "log.audit_max_size": "1MB"},
    "auth.users[].username": {"auth.users[].password": "s3cret"},
    "auth.users[].password": {"auth.users[].username": "agent"},
}
# Any other hook key: a hook of one kind to belong to.
HOOK_KIND = {"hook.console": "true"}
# What a file named by an example must hold (by the key's last part).
FILE_CONTENT = {"token_file": "s3cret\n", "ca_file": PEM}


def setUpModule():
    harness.egressd_binary()


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def literals(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def reference_tables() -> dict[str, list[list[str]]]:
    """The rows of the reference's tables, by the header of their first column."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    start = text.index("\n### Configuration reference\n")
    section = re.split(r"\n##+ ", text[start + 1:].split("\n", 1)[1], maxsplit=1)[0]
    tables: dict[str, list[list[str]]] = {}
    header = None
    for line in section.split("\n"):
        if not line.startswith("|"):
            header = None
            continue
        row = cells(line)
        if header is None:
            header = row[0]
            tables.setdefault(header, [])
        elif not set(row[0]) <= set("-: "):
            tables[header].append(row)
    return tables


def example(row: list[str]) -> str:
    """The row's example: `e.g. X` in its type cell, else its default, else its type's first value."""
    m = re.search(r"e\.g\. `([^`]+)`", row[1])
    if m:
        return m.group(1)
    for cell in (row[2], row[1]):
        found = literals(cell)
        if found:
            return found[0]
    raise AssertionError(f"README row {row[0]} has no example (`e.g.`) nor a default to test it with")


def misspelt(name: str) -> str:
    """The name without its second letter (`address` -> `adress`, `ttl` -> `tl`)."""
    return name[0] + name[2:]


def set_path(tree: dict, path: str, value: str) -> None:
    node = tree
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part.endswith("[]"):
            node = node.setdefault(part[:-2], [{}])[0]
        elif i == len(parts) - 1:
            node[part] = value
        else:
            node = node.setdefault(part, {})


def render(tree: dict, indent: int = 0) -> list[str]:
    """Block YAML with the values written as given (they are YAML already)."""
    lines = []
    pad = " " * indent
    for key, value in tree.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines += render(value, indent + 2)
        elif isinstance(value, list):
            lines.append(f"{pad}{key}:")
            for item in value:
                inner = render(item, indent + 4)
                lines.append(f"{pad}  - {inner[0].lstrip()}")
                lines += inner[1:]
        else:
            lines.append(f"{pad}{key}: {value}")
    return lines


def config_keys(text: str) -> set[str]:
    """The key paths of a YAML file, its commented-out examples included: each `# `
    is taken away, and every `key:` line (or `- key:`, or `- { key: ..., ... }`) is
    placed by its indentation."""
    stack: list[tuple[int, str]] = []  # (indent of the key, its path)
    out: set[str] = set()
    for raw in text.split("\n"):
        stripped = raw.lstrip(" ")
        line = raw
        if stripped.startswith("#"):
            body = stripped[1:]
            line = raw[: len(raw) - len(stripped)] + (body[1:] if body.startswith(" ") else body)
        m = re.match(r"^( *)(- )?([a-z_]+):(\s|$)", line)
        flow = re.match(r"^( *)- \{(.*)\}\s*$", line)
        if not m and not flow:
            continue
        indent = len((m or flow).group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else ""
        if flow or m.group(2):  # a list entry: its keys are under `parent[]`
            parent += "[]"
            stack.append((indent, parent))
            indent += 2
        names = re.findall(r"([a-z_]+):", flow.group(2)) if flow else [m.group(3)]
        for name in names:
            path = f"{parent}.{name}" if parent else name
            out.add(path)
        if m:
            stack.append((indent, path))
    # A key that holds further keys is a section, not a value.
    return {p for p in out if not any(q.startswith(p + ".") or q.startswith(p + "[].") for q in out)}


def egressd(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([harness.egressd_binary(), *args], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=CLI_TIMEOUT, env=harness.tool_env())
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"egressd {' '.join(args)} did not exit within {CLI_TIMEOUT}s") from e


class ConfigReferenceTest(harness.TempDirTest):
    @classmethod
    def setUpClass(cls) -> None:
        tables = reference_tables()
        cls.keys = {row[0].strip("`"): row for row in tables.get("key", [])}
        cls.settings = {row[0].strip("`"): row for row in tables.get("settings key", [])}
        if len(cls.keys) < 20 or len(cls.settings) < 6:
            raise AssertionError(f"README \"Configuration reference\": {len(cls.keys)} configuration keys and "
                                 f"{len(cls.settings)} settings keys found; its tables are headed `key` and "
                                 "`settings key`")

    def value_for(self, key: str, value: str) -> str:
        """An example path moved into the test's directory (with the content the key needs)."""
        if not value.startswith("/"):
            return value.replace("{dir}", self.dir)
        path = os.path.join(self.dir, os.path.basename(value))
        content = FILE_CONTENT.get(key.rsplit(".", 1)[-1])
        if content is not None:
            self.write(os.path.basename(value), content)
        return path

    def config_with(self, key: str, value: str, written_as: str | None = None) -> str:
        """A configuration setting `key` (written as `written_as`, a misspelling) and its context."""
        tree: dict = {"version": "1"}
        set_path(tree, "listeners[].address", BASE_LISTENER)
        context = dict(CONTEXT.get(key, {}))
        if key.startswith("hook.") and not context and key not in ("hook.exec", "hook.url", "hook.console"):
            context = dict(HOOK_KIND)
        for k, v in context.items():
            set_path(tree, k, self.value_for(k, v))
        set_path(tree, written_as or key, value)
        return "\n".join(render(tree)) + "\n"

    def check(self, text: str) -> subprocess.CompletedProcess:
        return egressd("check-config", "--config", self.write("egressd.yaml", text))

    def test_every_documented_key_is_accepted_with_its_example(self):
        for key, row in self.keys.items():
            with self.subTest(key=key):
                text = self.config_with(key, self.value_for(key, example(row)))
                r = self.check(text)
                out = r.stdout + r.stderr
                self.assertNotIn("unknown key", out, text)
                self.assertEqual(r.returncode, 0, f"{text}\n{out}")
                self.assertNotIn(": error:", out, text)

    def test_a_misspelt_documented_key_is_refused(self):
        for key, row in self.keys.items():
            head, _, last = key.rpartition(".")
            wrong = misspelt(last)
            wrong_key = f"{head}.{wrong}" if head else wrong
            with self.subTest(key=key, misspelt=wrong_key):
                text = self.config_with(key, self.value_for(key, example(row)), written_as=wrong_key)
                r = self.check(text)
                out = r.stdout + r.stderr
                self.assertEqual(r.returncode, 1, f"{text}\n{out}")
                self.assertIn(f"error: {wrong_key.replace('[]', '[0]')}: unknown key `{wrong}`", out, text)

    def test_every_documented_settings_key_is_known(self):
        for key, row in self.settings.items():
            with self.subTest(key=key):
                m = re.search(r"e\.g\. `([^`]+)`", row[2])
                self.assertIsNotNone(m, f"README settings row {key} has no example (`e.g.`)")
                value = json.loads(m.group(1))
                path = self.write("settings.json", json.dumps({"sandbox": {"network": {key: value}}}))
                r = egressd("check-config", "--settings", path)
                out = r.stdout + r.stderr
                self.assertEqual(r.returncode, 0, out)
                self.assertNotIn("unknown key", out)
                wrong = misspelt(key)
                path = self.write("settings.json", json.dumps({"sandbox": {"network": {wrong: value}}}))
                r = egressd("check-config", "--settings", path)
                self.assertIn(f"warning: sandbox.network.{wrong}: unknown key `{wrong}`: ignored by egressd",
                              r.stdout + r.stderr)

    def test_the_settings_keys_egressd_ignores_change_nothing(self):
        # An `ignores` row is the sandbox's business: check-config says exactly what it
        # says without the key (no warning, the same policy and listeners).
        def check(network: dict) -> str:
            path = self.write("settings.json", json.dumps({"sandbox": {"network": network}}))
            r = egressd("check-config", "--settings", path)
            return (r.stdout + r.stderr).replace(path, "SETTINGS")

        baseline = check({})
        for key, row in self.settings.items():
            self.assertIn(row[1], ("reads", "ignores"), f"README settings row {key}")
            if row[1] != "ignores":
                continue
            with self.subTest(key=key):
                value = json.loads(re.search(r"e\.g\. `([^`]+)`", row[2]).group(1))
                self.assertEqual(check({key: value}), baseline)

    def test_default_config_names_every_documented_key(self):
        with open(DEFAULT_CONFIG, encoding="utf-8") as f:
            named = config_keys(f.read())
        documented = set(self.keys)
        self.assertEqual(sorted(documented - named), [], "documented, not in config/default_config.yaml")
        self.assertEqual(sorted(named - documented), [], "in config/default_config.yaml, not documented")


if __name__ == "__main__":
    unittest.main()
