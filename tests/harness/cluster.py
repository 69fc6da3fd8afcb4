"""End-to-end harness: a real Kubernetes API server (KUBECONFIG, else the local kwok cluster) and helm against it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.render import CHART, HELM, ROOT, TOOLS_BIN, without_helm_kube

LOCAL_CLUSTER = ROOT / "scripts" / "kube" / "cluster.sh"
KUBECTL = str(TOOLS_BIN / "kubectl")
RESTRICTED = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}


# Set to 1 to let the end-to-end tier use a cluster other than the local one (it creates namespaces af-e2e-* there
# and labels, then unlabels, its nodes).
ANY_CLUSTER = "AGENTFORGE_E2E_ANY_CLUSTER"


@dataclass(frozen=True)
class Target:
    """One cluster, as every helm and kubectl call of the harness names it: a kubeconfig file that holds only the
    checked context (its cluster and user, flattened) and that context's name."""

    kubeconfig: str
    context: str

    @property
    def helm_args(self) -> list[str]:
        return ["--kubeconfig", self.kubeconfig, "--kube-context", self.context]

    @property
    def kubectl_args(self) -> list[str]:
        return ["--kubeconfig", self.kubeconfig, "--context", self.context]


def pin(config: str) -> Target:
    """The current context of `config` (a path, or a KUBECONFIG list of paths), the one the cluster checks read,
    written alone to a file of its own: given with --kubeconfig and --kube-context (--context), it is the cluster
    helm and kubectl reach, whatever else KUBECONFIG merges or the environment says."""
    proc = subprocess.run([KUBECTL, "config", "view", "--minify", "--flatten", "--output", "json"],
                          env={**without_helm_kube(os.environ), "KUBECONFIG": config}, capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        raise NotOurCluster(f"KUBECONFIG={config}: kubectl cannot read its current context: {proc.stderr.strip()}")
    document = json.loads(proc.stdout)
    text = json.dumps(document, sort_keys=True)
    path = ROOT / ".cluster" / f"pinned-{hashlib.sha256(text.encode()).hexdigest()[:16]}.kubeconfig"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)  # JSON is YAML
    path.chmod(0o600)
    return Target(str(path), document["current-context"])


def write_kubeconfig(path: Path, context: str, server: str) -> str:
    """A kubeconfig of one context, `context`, whose cluster is at `server` with a token user; its path."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": context, "cluster": {"server": server}}],
        "users": [{"name": context, "user": {"token": f"token-of-{context}"}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}]}))  # JSON is YAML
    return str(path)


class NotOurCluster(Exception):
    """KUBECONFIG names a cluster that is not the local one, and the user did not opt in."""


def local_kubeconfig() -> str:
    return subprocess.run(["bash", str(LOCAL_CLUSTER), "kubeconfig"], check=True, capture_output=True,
                          text=True).stdout.strip()


def cluster_identity(config: str) -> tuple[str, str | None] | None:
    """(API server URL, CA certificate) of the current context of a kubeconfig (a path, or a KUBECONFIG list of
    paths), as kubectl reads it; None when it names no cluster. Reads files only: no server is contacted."""
    proc = subprocess.run([KUBECTL, "config", "view", "--minify", "--flatten", "--output", "json"],
                          env={**os.environ, "KUBECONFIG": config}, capture_output=True, text=True, timeout=60)
    clusters = json.loads(proc.stdout).get("clusters") if proc.returncode == 0 else None
    if not clusters:
        return None
    return clusters[0]["cluster"].get("server"), clusters[0]["cluster"].get("certificate-authority-data")


def is_local_cluster(config: str) -> bool:
    """Whether a kubeconfig points at the local cluster: it is the file `cluster.sh kubeconfig` names (ci/test.sh
    exports that one, started or not), or its current context names the running local cluster's API server URL
    and CA (a copy of that file, a KUBECONFIG list that starts with it)."""
    local = local_kubeconfig()
    if os.path.realpath(config) == os.path.realpath(local):
        return True
    ours = cluster_identity(local) if os.path.isfile(local) else None
    return ours is not None and cluster_identity(config) == ours


def refuse_another_cluster(given: str | None) -> None:
    """NotOurCluster when KUBECONFIG (`given`) names another cluster than the local one, unless
    AGENTFORGE_E2E_ANY_CLUSTER=1."""
    if not given or os.environ.get(ANY_CLUSTER) == "1" or is_local_cluster(given):
        return
    theirs, local = cluster_identity(given), local_kubeconfig()
    ours = cluster_identity(local) if os.path.isfile(local) else None
    raise NotOurCluster(
        f"KUBECONFIG={given} is not the local cluster: its API server is "
        f"{theirs[0] if theirs else 'unknown (no current context)'}, the local cluster's ({local}) "
        f"{ours[0] if ours else 'is not running'}. The end-to-end tier creates namespaces af-e2e-* and labels "
        f"nodes there. Set {ANY_CLUSTER}=1 to run it on that cluster anyway, or unset KUBECONFIG to use the local "
        f"one.")


def kubeconfig() -> str:
    """The cluster the tests run against: KUBECONFIG's when AGENTFORGE_E2E_ANY_CLUSTER=1 allows another cluster than
    the local one; else the local one, started if needed. NotOurCluster when KUBECONFIG names another cluster and
    AGENTFORGE_E2E_ANY_CLUSTER=1 is not set."""
    given = os.environ.get("KUBECONFIG")
    refuse_another_cluster(given)
    if given and not is_local_cluster(given):
        return given
    lock = ROOT / ".cluster.lock"
    with open(lock, "w") as handle:  # pytest-xdist workers share one local cluster
        fcntl.flock(handle, fcntl.LOCK_EX)
        subprocess.run(["bash", str(LOCAL_CLUSTER), "up"], check=True, stdout=subprocess.DEVNULL, timeout=1800)
    return local_kubeconfig()


class Cli:
    """helm and kubectl bound to the current context of one kubeconfig (pinned: every call names that file and
    context, and helm sees no HELM_KUBE* variable); failures raise with their stderr."""

    def __init__(self, config: str):
        self.target = pin(config)
        self.env = {**without_helm_kube(os.environ), "KUBECONFIG": self.target.kubeconfig,
                    "HELM_CACHE_HOME": str(ROOT / ".cluster" / "helm-cache"),
                    "HELM_CONFIG_HOME": str(ROOT / ".cluster" / "helm-config")}

    def run(self, binary: str, *args: str, check: bool = True, timeout: int = 600,
            input: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([binary, *args], capture_output=True, text=True, env=self.env, timeout=timeout,
                              input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"{binary} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc

    def helm(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(HELM, *self.target.helm_args, *args, **kwargs)

    def kubectl(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(KUBECTL, *self.target.kubectl_args, *args, **kwargs)

    def get(self, namespace: str, *what: str) -> dict:
        return json.loads(self.kubectl("get", *what, "--namespace", namespace, "--output", "json").stdout)

    def install(self, release: str, namespace: str, *values: str, timeout: str = "5m") -> float:
        """helm install --wait; returns the seconds it took."""
        start = time.monotonic()
        self.helm("install", release, str(CHART), "--namespace", namespace, "--wait", "--timeout", timeout,
                  *values)
        return time.monotonic() - start

    def release_status(self, release: str, namespace: str) -> str:
        """The status of the release's last revision: deployed, failed, ..."""
        return json.loads(self.helm("status", release, "--namespace", namespace, "--output", "json").stdout)[
            "info"]["status"]

    def release_history(self, release: str, namespace: str) -> list[dict]:
        """helm history, oldest revision first: each with revision, status, description."""
        return json.loads(self.helm("history", release, "--namespace", namespace, "--output", "json").stdout)

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", timeout=300)
        self.kubectl("create", "namespace", name)
        if labels:
            self.kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in labels.items()))

    def cleanup(self, namespace: str, *releases: str) -> None:
        for release in releases:
            self.helm("uninstall", release, "--namespace", namespace, "--wait", check=False)
        self.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False)


def component_objects(cli: Cli, namespace: str, kind: str, component: str) -> list[dict]:
    """The objects of one kind (pods, replicasets, ...) of one chart component (app.kubernetes.io/component)."""
    return cli.get(namespace, kind, "--selector", f"app.kubernetes.io/component={component}")["items"]


def template_hashes(objects: list[dict]) -> dict[str, str]:
    """{name: pod-template-hash} of ReplicaSets or their pods: which pod template of a Deployment each one runs."""
    return {o["metadata"]["name"]: o["metadata"]["labels"]["pod-template-hash"] for o in objects}


def labelled_nodes(cli: Cli, key: str) -> list[str]:
    """The nodes that carry the label `key`, whatever its value."""
    return [n["metadata"]["name"] for n in cli.get("", "nodes", "--selector", key)["items"]]


def label_nodes(cli: Cli, key: str, value: str = "yes") -> None:
    cli.kubectl("label", "nodes", "--all", f"{key}={value}", "--overwrite")


def unlabel_nodes(cli: Cli, key: str) -> None:
    cli.kubectl("label", "nodes", "--selector", key, f"{key}-")


@contextmanager
def nodes_labelled(cli: Cli, key: str, value: str = "yes") -> Iterator[None]:
    """Every node carries key=value inside the block; once it is left, even by an exception, no node carries `key`.
    Refuses to start when a node already carries `key`: that label is not ours to remove."""
    already = labelled_nodes(cli, key)
    if already:
        raise AssertionError(f"nodes {', '.join(already)} already carry the label {key} (a killed run's, or the "
                             f"cluster owner's): remove it (kubectl label nodes --selector {key} {key}-) if it is ours")
    try:
        label_nodes(cli, key, value)
        yield
    finally:
        unlabel_nodes(cli, key)


def wait_for(condition: Callable[[], object], timeout: float = 120, interval: float = 1.0, what: str = "") -> object:
    """Poll until condition() is truthy; return its value, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)
