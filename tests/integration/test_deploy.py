"""deploy/ validated with what runs offline (README "Container image", "Kubernetes:
sidecar", "Kubernetes: gateway", "docker-compose", "systemd"):

- every YAML file under deploy/ passes `yamllint` with the repository's .yamllint;
- every Kubernetes manifest passes the API schemas of the npm `kubernetes-models`
  package (tests/integration/validate_k8s.cjs; scripts/deps.sh test installs it into
  tests/integration/.npm), and the properties the README promises hold (probes, the
  grace period against limits.drain_timeout, the security context, the proxy
  variables against the sidecar's listeners);
- every egressd config shipped (deploy/egressd.yaml, the ConfigMaps' egressd.yaml)
  passes `egressd check-config`;
- the systemd unit passes `systemd-analyze verify` (skipped, saying so, without it);
- the compose file passes `docker compose config`, `docker-compose config` or
  `podman-compose config` where one exists (else says so), and the files it mounts
  exist; its prometheus.yml, with the rules it mounts, passes `promtool check config`.

Each validator is also shown a broken copy, which it must reject.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from tests.integration.harness import TOOL_TIMEOUT, egressd_binary, require_tool, tool_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")
VALIDATOR = os.path.join(ROOT, "tests", "integration", "validate_k8s.cjs")
NPM_MODULES = os.path.join(ROOT, "tests", "integration", ".npm", "node_modules")


def files_under(path: str, suffixes: tuple[str, ...]) -> list[str]:
    out = []
    for dirpath, _, names in os.walk(path):
        out += [os.path.join(dirpath, n) for n in names if n.endswith(suffixes)]
    return sorted(out)


def seconds(text: str) -> float:
    """A duration as egressd and systemd write them: 30s, 1m30s, 250ms, 45."""
    if re.fullmatch(r"\d+", text):
        return float(text)
    total = 0.0
    for n, unit in re.findall(r"(\d+)(ms|s|min|m|h)", text):
        total += int(n) * {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}[unit]
    return total


def drain_timeout(config_text: str) -> float:
    m = re.search(r"^\s*drain_timeout:\s*(\S+)", config_text, re.M)
    return seconds(m.group(1)) if m else 30.0  # the default (README "Configuration")


class DeployTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="egd-deploy-")
        cls.addClassCleanup(lambda: shutil.rmtree(cls.tmp, ignore_errors=True))
        cls.manifests = files_under(os.path.join(DEPLOY, "kubernetes"), (".yaml", ".yml"))

    def node(self, *args: str) -> subprocess.CompletedProcess:
        require_tool("node")
        if not os.path.isfile(os.path.join(NPM_MODULES, "kubernetes-models", "package.json")):
            self.fail(f"{NPM_MODULES}/kubernetes-models is missing: run scripts/deps.sh test")
        return subprocess.run(["node", VALIDATOR, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)

    def load(self, *files: str) -> list[tuple[str, int, dict]]:
        r = self.node("--dump", *files)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [tuple(x) for x in json.loads(r.stdout)]

    def objects(self, folder: str) -> dict[tuple[str, str], dict]:
        files = [f for f in self.manifests if f"/kubernetes/{folder}/" in f]
        return {(o["kind"], o["metadata"]["name"]): o for _, _, o in self.load(*files) if o}

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    # ---- yamllint ----------------------------------------------------------------------
    def yamllint(self, *paths: str) -> subprocess.CompletedProcess:
        require_tool("yamllint")
        return subprocess.run(["yamllint", "-c", os.path.join(ROOT, ".yamllint"), "-f", "parsable", *paths],
                              capture_output=True, text=True, timeout=TOOL_TIMEOUT, cwd=ROOT)

    def test_yamllint_passes_every_yaml_file(self):
        files = files_under(DEPLOY, (".yaml", ".yml"))
        self.assertGreaterEqual(len(files), 15, files)
        r = self.yamllint(*(os.path.relpath(f, ROOT) for f in files), ".yamllint")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_yamllint_rejects_a_broken_file(self):
        with open(os.path.join(DEPLOY, "kubernetes", "gateway", "service.yaml"), encoding="utf-8") as f:
            text = f.read()
        bad = self.write("lint/service.yaml", text.replace("  type: ClusterIP\n", "  type: ClusterIP\n  type: NodePort\n"))
        r = self.yamllint(bad)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("duplication of key", r.stdout)

    # ---- Kubernetes schemas ------------------------------------------------------------
    def test_every_manifest_passes_the_kubernetes_schemas(self):
        r = self.node(*self.manifests)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        ok = [line for line in r.stdout.splitlines() if line.endswith(": ok")]
        docs = [o for _, _, o in self.load(*self.manifests) if o]
        self.assertEqual(len(ok), len(docs), r.stdout)
        kinds = {(f.split("/kubernetes/")[1].split("/")[0], o["kind"]) for f, _, o in self.load(*self.manifests) if o}
        for want in [("sidecar", "Deployment"), ("sidecar", "ConfigMap"), ("sidecar", "NetworkPolicy"),
                     ("gateway", "Deployment"), ("gateway", "Service"), ("gateway", "PodDisruptionBudget"),
                     ("gateway", "HorizontalPodAutoscaler"), ("gateway", "NetworkPolicy"), ("gateway", "ConfigMap")]:
            self.assertIn(want, kinds)

    def test_the_schemas_reject_a_broken_manifest(self):
        with open(os.path.join(DEPLOY, "kubernetes", "gateway", "deployment.yaml"), encoding="utf-8") as f:
            text = f.read()
        for name, old, new, message in [
            ("replicas", "  replicas: 3 ", '  replicas: "three" ', "replicas must be integer"),
            ("port", "containerPort: 9090", "containerPort: admin", "containerPort must be integer"),
            ("name", "        - name: egressd\n", "        - \n", "must have required property name"),
        ]:
            with self.subTest(name):
                self.assertIn(old, text)
                bad = self.write(f"k8s/{name}.yaml", text.replace(old, new, 1))
                r = self.node(bad)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn(message, r.stdout)

    # ---- what the manifests promise ----------------------------------------------------
    def config_of(self, objs: dict, name: str) -> str:
        return objs[("ConfigMap", name)]["data"]["egressd.yaml"]

    def assert_locked_down(self, pod: dict, container: dict) -> None:
        psc, csc = pod.get("securityContext", {}), container.get("securityContext", {})
        self.assertTrue(psc.get("runAsNonRoot"), pod)
        self.assertEqual(psc.get("seccompProfile", {}).get("type"), "RuntimeDefault")
        self.assertEqual(psc.get("runAsUser", csc.get("runAsUser")), 65532)
        self.assertIs(csc.get("readOnlyRootFilesystem"), True)
        self.assertIs(csc.get("allowPrivilegeEscalation"), False)
        self.assertEqual(csc.get("capabilities", {}).get("drop"), ["ALL"])
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        self.assertIn("/etc/egressd", mounts)       # a directory: ConfigMap updates arrive
        self.assertIn("/var/lib/egressd", mounts)   # decisions_file on a writable volume
        self.assertFalse(any("subPath" in m for m in container["volumeMounts"]))

    def test_gateway_probes_grace_and_security(self):
        objs = self.objects("gateway")
        dep = objs[("Deployment", "egressd-gateway")]
        pod = dep["spec"]["template"]["spec"]
        c = next(c for c in pod["containers"] if c["name"] == "egressd")
        self.assertGreater(dep["spec"]["replicas"], 1)
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assert_locked_down(pod, c)
        pre_stop = float(c["lifecycle"]["preStop"]["exec"]["command"][-1])
        drain = drain_timeout(self.config_of(objs, "egressd-gateway"))
        self.assertGreater(pod["terminationGracePeriodSeconds"], pre_stop + drain)
        self.assertIn("/decide", self.config_of(objs, "egressd-gateway"))  # the shared approval service
        self.assertIn(("Deployment", "egressd-approvals"), objs)
        self.assertEqual(objs[("HorizontalPodAutoscaler", "egressd-gateway")]["spec"]["scaleTargetRef"]["name"],
                         "egressd-gateway")
        self.assertIn(("PodDisruptionBudget", "egressd-gateway"), objs)
        ports = {p["port"] for p in objs[("Service", "egressd-gateway")]["spec"]["ports"]}
        self.assertEqual(ports, {3128, 1080})

    def test_sidecar_proxy_variables_name_its_listeners(self):
        objs = self.objects("sidecar")
        pod = objs[("Deployment", "my-app")]["spec"]["template"]
        self.assertEqual(pod["metadata"]["annotations"]["prometheus.io/scrape"], "true")
        spec = pod["spec"]
        egressd = next(c for c in spec["initContainers"] if c["name"] == "egressd")
        self.assertEqual(egressd["restartPolicy"], "Always")  # a native sidecar
        self.assert_locked_down(spec, egressd)
        self.assertGreater(spec["terminationGracePeriodSeconds"], drain_timeout(self.config_of(objs, "my-app-egressd")))
        listeners = set(re.findall(r"address: (127\.0\.0\.1:\d+)", self.config_of(objs, "my-app-egressd")))
        app = next(c for c in spec["containers"] if c["name"] == "app")
        env = {e["name"]: e["value"] for e in app["env"]}
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            self.assertIn(env[name].split("://", 1)[1], listeners, name)
        self.assertTrue(env["ALL_PROXY"].startswith("socks5h://"))
        self.assertNotEqual(app["securityContext"]["runAsUser"], 65532)

    # ---- egressd configs ---------------------------------------------------------------
    def shipped_configs(self) -> list[tuple[str, str]]:
        out = []
        with open(os.path.join(DEPLOY, "egressd.yaml"), encoding="utf-8") as f:
            out.append(("deploy/egressd.yaml", f.read()))
        for file, i, obj in self.load(*self.manifests):
            if obj and obj["kind"] == "ConfigMap" and "egressd.yaml" in obj.get("data", {}):
                out.append((f"{os.path.relpath(file, ROOT)}#{i + 1}", obj["data"]["egressd.yaml"]))
        return out

    def check_config(self, name: str, text: str) -> subprocess.CompletedProcess:
        # Paths that exist in the pod or the container, here in a temporary directory.
        state = os.path.join(self.tmp, "state")
        os.makedirs(state, exist_ok=True)
        token = self.write("hook/token", "s3cret-token\n")
        text = text.replace("/var/lib/egressd/", state + "/").replace("/etc/egressd-hook/token", token)
        path = self.write("configs/" + re.sub(r"[^\w.]", "_", name), text)
        return subprocess.run([egressd_binary(), "check-config", "--config", path], capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT, env=tool_env())

    def test_every_shipped_config_passes_check_config(self):
        configs = self.shipped_configs()
        self.assertGreaterEqual(len(configs), 3)
        for name, text in configs:
            with self.subTest(name):
                r = self.check_config(name, text)
                self.assertEqual(r.returncode, 0, f"{name}:\n{r.stdout}{r.stderr}")

    def test_check_config_rejects_a_broken_shipped_config(self):
        name, text = self.shipped_configs()[0]
        r = self.check_config("broken.yaml", text.replace("  unknown: deny", "  unknown: maybe"))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("policy.unknown", r.stdout + r.stderr)

    # ---- systemd -----------------------------------------------------------------------
    def verify_unit(self, text: str) -> subprocess.CompletedProcess:
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is not installed (package systemd): the unit is not verified")
        # The unit names /usr/local/bin/egressd; verify checks that it is executable.
        path = self.write("systemd/egressd.service", text.replace("/usr/local/bin/egressd", egressd_binary()))
        return subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT)

    def unit_text(self) -> str:
        with open(os.path.join(DEPLOY, "systemd", "egressd.service"), encoding="utf-8") as f:
            return f.read()

    def test_systemd_unit_verifies(self):
        text = self.unit_text()
        r = self.verify_unit(text)
        ours = [line for line in (r.stdout + r.stderr).splitlines() if "egressd" in line]
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(ours, [])
        keys = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
        for key, value in [("DynamicUser", "yes"), ("ProtectSystem", "strict"), ("CapabilityBoundingSet", ""),
                           ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"), ("StateDirectory", "egressd"),
                           ("KillSignal", "SIGTERM"), ("ExecReload", "/bin/kill -HUP $MAINPID")]:
            self.assertEqual(keys.get(key), value, key)
        self.assertIn("check-config", keys["ExecStartPre"])
        with open(os.path.join(DEPLOY, "egressd.yaml"), encoding="utf-8") as f:
            self.assertGreater(seconds(keys["TimeoutStopSec"]), drain_timeout(f.read()))

    def test_systemd_analyze_rejects_a_broken_unit(self):
        r = self.verify_unit(self.unit_text().replace("ProtectSystem=strict", "ProtectSystem=stricty"))
        self.assertIn("stricty", r.stdout + r.stderr)

    # ---- compose -----------------------------------------------------------------------
    def test_compose_file(self):
        compose = os.path.join(DEPLOY, "compose", "docker-compose.yml")
        tool = None
        for cmd in (["docker", "compose"], ["docker-compose"], ["podman-compose"]):
            if shutil.which(cmd[0]) is None:
                continue
            # `docker` without the compose plugin prints its general help; podman-compose
            # before 1.0.6 has no `config` command.
            h = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=TOOL_TIMEOUT)
            usage = h.stdout + h.stderr
            if re.search(r"\bconfig\b", usage) and (cmd[0] != "docker" or "docker compose" in usage):
                tool = cmd
                break
        if tool:
            r = subprocess.run([*tool, "-f", compose, "config"], capture_output=True, text=True,
                               timeout=TOOL_TIMEOUT, cwd=os.path.dirname(compose))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        else:
            print("test_deploy: no docker compose, docker-compose or podman-compose with a `config` command: "
                  "the compose file gets yamllint and the structural checks only")
        (_, _, doc), = self.load(compose)
        self.assertEqual(set(doc["services"]), {"egressd", "prometheus", "grafana"})
        for svc in doc["services"].values():
            for v in svc.get("volumes", []):
                src = v.split(":")[0]
                if src.startswith("."):  # a file of this repository, mounted
                    self.assertTrue(os.path.exists(os.path.join(DEPLOY, "compose", src)), f"{src} is missing")
        egressd = doc["services"]["egressd"]
        self.assertTrue(egressd["read_only"])
        self.assertEqual(egressd["cap_drop"], ["ALL"])
        with open(os.path.join(DEPLOY, "egressd.yaml"), encoding="utf-8") as f:
            self.assertGreater(seconds(egressd["stop_grace_period"]), drain_timeout(f.read()))
        (_, _, prom), = self.load(os.path.join(DEPLOY, "compose", "prometheus.yml"))
        self.assertEqual([j["job_name"] for j in prom["scrape_configs"]], ["egressd"])  # as the alert rules expect
        mounts = {v.split(":")[1]: v.split(":")[0] for v in doc["services"]["prometheus"]["volumes"]}
        for rule_file in prom["rule_files"]:
            self.assertIn(rule_file, mounts)

    def promtool_check(self, text: str) -> subprocess.CompletedProcess:
        """`promtool check config` on the compose file's prometheus.yml, its rule files
        where the compose file mounts them from."""
        require_tool("promtool")  # scripts/deps.sh test installs prometheus
        compose = os.path.join(DEPLOY, "compose")
        (_, _, doc), = self.load(os.path.join(compose, "docker-compose.yml"))
        for v in doc["services"]["prometheus"]["volumes"]:
            src, dst = v.split(":")[:2]
            if dst.endswith("-rules.yml"):
                text = text.replace(dst, os.path.normpath(os.path.join(compose, src)))
        path = self.write("prometheus/prometheus.yml", text)
        return subprocess.run(["promtool", "check", "config", path], capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT)

    def test_compose_prometheus_config_passes_promtool(self):
        with open(os.path.join(DEPLOY, "compose", "prometheus.yml"), encoding="utf-8") as f:
            text = f.read()
        r = self.promtool_check(text)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("rules found", r.stdout)
        bad = self.promtool_check(text.replace("scrape_interval: 15s", "scrape_interval: 15q"))
        self.assertNotEqual(bad.returncode, 0, bad.stdout)


if __name__ == "__main__":
    unittest.main()
