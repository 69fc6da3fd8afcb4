"""End-to-end harness: a real Kubernetes API server (KUBECONFIG, else the local kwok cluster) and helm against it."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Callable

from chart import CHART, HELM, ROOT, TOOLS_BIN

LOCAL_CLUSTER = ROOT / "scripts" / "kube" / "cluster.sh"
KUBECTL = str(TOOLS_BIN / "kubectl")
RESTRICTED = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}


# Set to 1 to let the end-to-end tier use a cluster other than the local one (it creates namespaces af-e2e-* there
# and labels, then unlabels, its nodes).
ANY_CLUSTER = "AGENTFORGE_E2E_ANY_CLUSTER"


class NotOurCluster(Exception):
    """KUBECONFIG names a cluster that is not the local one, and the user did not opt in."""


def local_kubeconfig() -> str:
    return subprocess.run(["bash", str(LOCAL_CLUSTER), "kubeconfig"], check=True, capture_output=True,
                          text=True).stdout.strip()


def refuse_another_cluster(given: str | None) -> None:
    """NotOurCluster when KUBECONFIG (`given`) names another cluster than the local one, unless
    AGENTFORGE_E2E_ANY_CLUSTER=1."""
    if given and os.path.realpath(given) != os.path.realpath(local_kubeconfig()) and os.environ.get(ANY_CLUSTER) != "1":
        raise NotOurCluster(
            f"KUBECONFIG={given} is not the local cluster ({local_kubeconfig()}): the end-to-end tier creates "
            f"namespaces and labels nodes there. Set {ANY_CLUSTER}=1 to run it on that cluster anyway, or unset "
            f"KUBECONFIG to use the local one.")


def kubeconfig() -> str:
    """The cluster the tests run against: the local one (started if needed), or KUBECONFIG when it names the local
    one or AGENTFORGE_E2E_ANY_CLUSTER=1 allows another. NotOurCluster otherwise."""
    given = os.environ.get("KUBECONFIG")
    refuse_another_cluster(given)
    if given and os.path.realpath(given) != os.path.realpath(local_kubeconfig()):
        return given
    lock = ROOT / ".cluster.lock"
    with open(lock, "w") as handle:  # pytest-xdist workers share one local cluster
        fcntl.flock(handle, fcntl.LOCK_EX)
        subprocess.run(["bash", str(LOCAL_CLUSTER), "up"], check=True, stdout=subprocess.DEVNULL, timeout=1800)
    return local_kubeconfig()


class Cli:
    """helm and kubectl bound to one kubeconfig; failures raise with their stderr."""

    def __init__(self, config: str):
        self.env = {**os.environ, "KUBECONFIG": config, "HELM_CACHE_HOME": str(ROOT / ".cluster" / "helm-cache"),
                    "HELM_CONFIG_HOME": str(ROOT / ".cluster" / "helm-config")}

    def run(self, binary: str, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run([binary, *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{binary} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc

    def helm(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(HELM, *args, **kwargs)

    def kubectl(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(KUBECTL, *args, **kwargs)

    def get(self, namespace: str, *what: str) -> dict:
        return json.loads(self.kubectl("get", *what, "--namespace", namespace, "--output", "json").stdout)

    def install(self, release: str, namespace: str, *values: str, timeout: str = "5m") -> float:
        """helm install --wait; returns the seconds it took."""
        start = time.monotonic()
        self.helm("install", release, str(CHART), "--namespace", namespace, "--wait", "--timeout", timeout,
                  *values)
        return time.monotonic() - start

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", timeout=300)
        self.kubectl("create", "namespace", name)
        if labels:
            self.kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in labels.items()))

    def cleanup(self, namespace: str, *releases: str) -> None:
        for release in releases:
            self.helm("uninstall", release, "--namespace", namespace, "--wait", check=False)
        self.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False)


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
