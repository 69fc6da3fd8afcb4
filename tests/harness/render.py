"""Render harness: `helm template` the chart once per distinct input and validate every object once.

One helper, `render_chart`, renders through the render server (scripts/render-server: the pinned helm's own
template code and kubeconform's validator, in one process per test worker), raises RenderError carrying helm's
message when the render fails, parses every document, and has kubeconform validate each object against the
strict Kubernetes schemas of the oldest and newest Kubernetes version the chart supports. Given a helm binary,
it runs that binary instead (the Helm 3 and oldest-Helm comparisons, and the test that the server renders what
the helm CLI renders).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import pickle
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
# AGENTFORGE_CHART points every tier at another copy of the chart (scripts/mutate.py runs the tiers on mutants).
CHART = Path(os.environ.get("AGENTFORGE_CHART", ROOT / "charts" / "agentforge")).resolve()
TOOLS_BIN = ROOT / ".tools" / "bin"
HELM = os.environ.get("HELM", str(TOOLS_BIN / "helm"))
HELM3 = os.environ.get("HELM3", str(TOOLS_BIN / "helm3"))
# The oldest Helm the chart supports, and the release before it (scripts/versions.env).
HELM_OLDEST = str(TOOLS_BIN / "helm-oldest")
HELM_BELOW_OLDEST = str(TOOLS_BIN / "helm-below-oldest")
# The strict schemas of every supported Kubernetes minor, laid out for kubeconform by scripts/kube-schemas.py.
KUBE_SCHEMAS = ROOT / ".tools" / "kube-schemas"


def load_yaml(text: str | bytes) -> Any:
    """yaml.safe_load, with libyaml (the pure-Python loader took a second of each worker's start-up)."""
    return yaml.load(text, Loader=yaml.CSafeLoader)


CHART_META = load_yaml((CHART / "Chart.yaml").read_text())
# Oldest supported minor comes from Chart.yaml's kubeVersion; the newest is the newest schema set shipped
# by kubernetes-validate.
MIN_KUBE = re.search(r">=\s*(\d+\.\d+)", CHART_META["kubeVersion"]).group(1) + ".0"
MAX_KUBE = "1.37.0"
KUBE_VERSIONS = [f"1.{minor}.0" for minor in range(int(MIN_KUBE.split(".")[1]), 38)]


# Kinds defined by CRDs: kubernetes-validate has no schema for them; their own tests validate them.
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "HTTPRoute", "TraefikService", "Certificate",
             "ExternalSecret"}


class RenderError(RuntimeError):
    """helm failed; the message carries helm's stderr."""

    def __init__(self, cmd: list[str], stderr: str):
        super().__init__(f"{' '.join(cmd)} failed:\n{stderr}")
        self.stderr = stderr


class Manifests(list):
    """The parsed objects of one render, with small look-ups."""

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        for obj in self:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"no {kind}/{name} in render; have {sorted(self.inventory())}")

    def find(self, kind: str, name: str) -> dict | None:
        try:
            return self.get(kind, name)
        except KeyError:
            return None

    def inventory(self) -> set[tuple[str, str]]:
        return {(o["kind"], o["metadata"]["name"]) for o in self}


# helm takes its cluster from these before any kubeconfig (HELM_KUBECONTEXT, HELM_KUBEAPISERVER, HELM_KUBETOKEN,
# HELM_KUBECAFILE, HELM_KUBEASUSER, ...): no helm the harness runs sees one.
HELM_KUBE_PREFIX = "HELM_KUBE"


def without_helm_kube(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if not name.startswith(HELM_KUBE_PREFIX)}


def helm(*args: str, binary: str = HELM, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """The helm CLI, without HELM_KUBE* in its environment; RenderError when it fails (with check)."""
    cmd = [binary, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=without_helm_kube(os.environ))
    if check and proc.returncode != 0:
        raise RenderError(cmd, proc.stderr)
    return proc


def helm_with_values(*args: str, values: str, binary: str = HELM, check: bool = True) -> subprocess.CompletedProcess:
    """The helm CLI given `values` (YAML or JSON text) as a --values file, which is removed afterwards."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(values)
    try:
        return helm(*args, "--values", f.name, binary=binary, check=check)
    finally:
        os.unlink(f.name)


# Differ by design between two renders: generated secrets, and the pod annotations hashed from them.
GENERATED_SECRET_KEYS = {"SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "DATABASE_URL",
                         "REDIS_URL", "admin-password", "secret-key"}
SECRET_CHECKSUMS = {"checksum/secret", "checksum/password"}


def comparable(objects) -> dict[tuple[str, str], dict]:
    """{(kind, name): object} with what differs by design between two renders (generated secrets and their
    checksums) replaced by a placeholder. Changes the objects given."""
    out = {}
    for obj in objects:
        if obj["kind"] == "Secret":
            for key in GENERATED_SECRET_KEYS & set(obj.get("data", {})):
                obj["data"][key] = "<generated>"
        annotations = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
        for key in SECRET_CHECKSUMS & set(annotations):
            annotations[key] = "<generated>"
        out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


def cli_error(stderr: str, install: bool) -> str:
    """The helm CLI's error as the render server words it: from its `Error:` line on (the warnings helm logs before
    it, such as a value that cannot overwrite a table, are not part of the refusal), without the hint `template`
    appends, and without the INSTALLATION FAILED prefix of `install`."""
    start = stderr.find("Error: ")
    text = stderr[max(start, 0):].removesuffix("\n\nUse --debug flag to render out invalid YAML\n").strip()
    return text.replace("Error: INSTALLATION FAILED: ", "Error: ", 1) if install else text


class CliCheck:
    """AGENTFORGE_CLI_CHECK: each input a render server renders is rendered by the helm CLI of the same version too,
    and the two must agree: the same objects (generated values aside), or the same error. "all" checks every input;
    a number N, a sample of one input in N, chosen by the input's hash and a seed that changes every day
    (AGENTFORGE_CLI_CHECK_SEED sets it), so that successive runs check different inputs; unset or 0, none."""

    def __init__(self) -> None:
        setting = os.environ.get("AGENTFORGE_CLI_CHECK", "0")
        self.every = 1 if setting == "all" else int(setting)
        self.seed = os.environ.get("AGENTFORGE_CLI_CHECK_SEED") or time.strftime("%Y-%m-%d", time.gmtime())
        self.checked: set[str] = set()
        self.rendered: set[str] = set()

    def chosen(self, request: dict) -> bool:
        if not self.every:  # off: nothing to hash on the render path
            return False
        key = json.dumps({k: request[k] for k in ("chart", "name", "namespace", "kube_version", "values", "install")},
                         sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()
        self.rendered.add(digest)
        if digest in self.checked:
            return False
        if int(hashlib.sha256(f"{self.seed}:{digest}".encode()).hexdigest(), 16) % self.every:
            return False
        self.checked.add(digest)
        return True

    @staticmethod
    def compare(binary: str, request: dict, reply: dict) -> None:
        """AssertionError when the CLI's render of `request` differs from the server's `reply`."""
        # `helm install` has no --kube-version: its client-side dry run renders for helm's default version.
        command = (["install", "--dry-run=client"] if request["install"]
                   else ["template", "--kube-version", request["kube_version"]])
        proc = helm_with_values(*command, request["name"], request["chart"], "--namespace", request["namespace"],
                                values=request["values"], binary=binary, check=False)
        where = f"{binary} {' '.join(command)} and the render server, given {request['values'][:300]}"
        if "error" in reply:
            assert proc.returncode != 0, f"{where}: the server refused ({reply['error']}), the CLI rendered"
            assert cli_error(proc.stderr, request["install"]) == f"Error: {reply['error']}".strip(), \
                f"{where}: different errors:\n{proc.stderr}\n{reply['error']}"
            return
        assert proc.returncode == 0, f"{where}: the CLI refused, the server rendered:\n{proc.stderr}"
        if request["install"]:
            return  # install --dry-run=client prints the release, not a manifest: renders alike, refuses alike
        server = comparable(pickle.loads(pickle.dumps(reply["objects"])) if request["objects"]
                            else parse(reply["manifest"]))
        cli = comparable(parse(proc.stdout))
        assert sorted(cli) == sorted(server), f"{where}: different objects: {sorted(set(cli) ^ set(server))}"
        for key in server:
            assert cli[key] == server[key], f"{where}: {key} differs"


CLI_CHECK = CliCheck()


class RenderServer:
    """One render server process, started on first use; requests and replies are JSON lines. `cli` is the helm
    binary of the same version, which AGENTFORGE_CLI_CHECK compares it with."""

    def __init__(self, *command: Path, cli: str) -> None:
        self.command = [str(part) for part in command]
        self.cli = cli
        self.proc: subprocess.Popen | None = None

    def request(self, **request: Any) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            atexit.register(self.stop)
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"{self.command[0]} exited with {self.proc.wait()}")
        return json.loads(reply)

    def render(self, values_text: str, *, chart: Path = CHART, name: str = "agentforge",
               namespace: str = "agentforge", kube_version: str = MAX_KUBE, install: bool = False,
               validate: tuple[str, ...] = (), objects: bool = False) -> str | list[dict]:
        """The manifest `helm template` (or `helm install --dry-run=client`) prints, or with `objects` its objects
        as the API machinery reads YAML; RenderError as helm fails, AssertionError when kubeconform refuses."""
        request = dict(chart=str(chart), name=name, namespace=namespace, kube_version=kube_version,
                       values=values_text, install=install, validate=list(validate), skip_kinds=sorted(CRD_KINDS),
                       objects=objects)
        reply = self.request(**request)
        if CLI_CHECK.chosen(request):
            CliCheck.compare(self.cli, request, reply)
        command = ["helm", "install --dry-run=client" if install else "template", name, str(chart)]
        if "error" in reply:
            raise RenderError(command, f"Error: {reply['error']}")
        if reply.get("invalid"):
            raise AssertionError("kubeconform: " + "\n".join(f"{i['object']} (Kubernetes {i['version']}): "
                                                              f"{i['error']}" for i in reply["invalid"]))
        return reply["objects"] if objects else reply["manifest"]

    def stop(self) -> None:
        """End the server: it exits when its input closes."""
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc = None


def pinned(tool: str) -> str:
    """A version from scripts/versions.env, e.g. pinned("HELM") is HELM_VERSION's value."""
    return re.search(rf"^{tool}_VERSION=(\S+)$", (ROOT / "scripts" / "versions.env").read_text(), re.M).group(1)


RENDERER = RenderServer(TOOLS_BIN / "render-server", KUBE_SCHEMAS, cli=HELM)
# The oldest supported Helm's template code (scripts/render-server/oldest): renders only, no validation.
OLDEST_RENDERER = RenderServer(TOOLS_BIN / "render-server-oldest", cli=HELM_OLDEST)


def parse(manifest: str) -> tuple[dict, ...]:
    return tuple(d for d in yaml.load_all(manifest, Loader=yaml.CSafeLoader) if d)  # libyaml's loader


def _render_uncached(values_json: str, name: str, namespace: str, kube_version: str, binary: str | None,
                     validate: bool) -> tuple[dict, ...]:
    if binary is None:
        return tuple(RENDERER.render(values_json, name=name, namespace=namespace, kube_version=kube_version,
                                     validate=(MIN_KUBE, MAX_KUBE) if validate else (), objects=True))
    assert not validate, "validation runs in the render server: render with a helm binary with validate=False"
    return parse(helm_with_values("template", name, str(CHART), "--namespace", namespace, "--kube-version",
                                  kube_version, values=values_json, binary=binary).stdout)  # JSON is YAML


@functools.cache
def _render_kept(*args) -> bytes:
    """A render kept for the session, pickled: each caller unpickles a copy of its own (cheaper than a JSON round
    trip, the costliest Python step of a render)."""
    return pickle.dumps(_render_uncached(*args), protocol=pickle.HIGHEST_PROTOCOL)


def render_chart(values: dict | None = None, *, name: str = "agentforge", namespace: str = "agentforge",
                 kube_version: str = MAX_KUBE, helm_binary: str | None = None, validate: bool = True,
                 fresh: bool = False) -> Manifests:
    """Render the chart and return its objects (a copy: tests may mutate it).

    Each distinct input is rendered once per session; `fresh=True` renders again, for tests that compare two
    renders of the same input (generated secrets, checksums, hook names), where a cached render would compare
    one object with itself. `helm_binary` runs that helm CLI instead of the render server.
    """
    args = (json.dumps(values or {}, sort_keys=True), name, namespace, kube_version, helm_binary, validate)
    return Manifests(_render_uncached(*args) if fresh else pickle.loads(_render_kept(*args)))


def render_error(values: dict, **kwargs: Any) -> str:
    """Render values that must fail and return helm's stderr."""
    try:
        render_chart(values, validate=False, **kwargs)
    except RenderError as err:
        return err.stderr
    raise AssertionError(f"render with {values} succeeded; it should have failed")


