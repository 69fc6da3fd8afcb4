"""The chart's NetworkPolicies enforced by a real implementation (kube-router on the node): the reachability that
tests/netpol.py computes from the installed policies, executed with real TCP connections from real pods. Each
release pod gets an ephemeral container (it shares the pod's network namespace, so its connections carry the pod's
IP and labels) that connects to every container port of every other release pod; a pod in another namespace does
the same. Every allowed pair must connect and every denied pair must not."""

from __future__ import annotations

import json

import pytest

import netpol
import realnode
from cluster import RESTRICTED, wait_for

pytestmark = pytest.mark.real

OUTSIDER_NAMESPACE = "af-real-outsider"
# Connects to every target at once; a connection that neither succeeds nor is refused within 4 s was dropped.
PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
targets = json.loads(sys.argv[1])
def connect(target):
    try:
        socket.create_connection((target[0], target[1]), timeout=4).close()
        return True
    except OSError:
        return False
with ThreadPoolExecutor(len(targets) or 1) as pool:
    print(json.dumps(list(pool.map(connect, targets))))
"""


def probe_from_pod(real_cli, pod: dict, targets: list[tuple[str, int]], image: str, index: int) -> list[bool]:
    """Run PROBE in an ephemeral container of `pod` (restricted profile: the namespace enforces it)."""
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    container = f"netcheck-{index}"
    real_cli.kubectl("debug", f"pod/{name}", "--namespace", namespace, "--image", image, "--profile", "restricted",
                     "--container", container, "--", "python", "-c", PROBE, json.dumps(targets))

    def finished():
        live = real_cli.get(namespace, "pod", name)
        status = next((s for s in live["status"].get("ephemeralContainerStatuses", []) if s["name"] == container),
                      None)
        return status if status and "terminated" in status["state"] else None
    wait_for(finished, timeout=120, interval=1, what=f"{container} in {name}")
    log = real_cli.kubectl("logs", "--namespace", namespace, name, "--container", container).stdout
    return json.loads(log.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def outsider(real_cli, real_release):
    """A pod of another namespace, running the backend image."""
    image = realnode.image_ref("backend")
    real_cli.create_namespace(OUTSIDER_NAMESPACE, RESTRICTED)
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "outsider", "namespace": OUTSIDER_NAMESPACE, "labels": {"app": "outsider"}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "outsider", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["python", "-c", "import time; time.sleep(86400)"],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True},
            }],
        },
    }
    real_cli.kubectl("apply", "-f", "-", input=json.dumps(pod))
    real_cli.kubectl("wait", "--namespace", OUTSIDER_NAMESPACE, "--for=condition=Ready", "pod/outsider",
                     "--timeout=120s")
    yield real_cli.get(OUTSIDER_NAMESPACE, "pod", "outsider")
    real_cli.kubectl("delete", "namespace", OUTSIDER_NAMESPACE, "--wait=false")


def test_policies_allow_exactly_what_the_evaluator_computes(real_cli, real_release, outsider, record_property):
    namespace, _, _ = real_release
    policies = real_cli.get(namespace, "networkpolicies")["items"]
    for policy in policies:
        policy.setdefault("apiVersion", "networking.k8s.io/v1")
        policy.setdefault("kind", "NetworkPolicy")
    namespaces = {n["metadata"]["name"]: n["metadata"].get("labels", {})
                  for n in real_cli.get("", "namespaces")["items"]}
    cluster = netpol.Cluster(policies, namespaces)
    running = [p for p in real_cli.pods(namespace) if p["status"].get("phase") == "Running"
               and not p["metadata"].get("deletionTimestamp")]
    pods = {p["metadata"]["name"]: netpol.pod_of(p, p["status"]["podIP"], p["metadata"]["name"]) for p in running}
    destinations = [(pod, port.port) for pod in pods.values() for port in pod.ports if port.protocol == "TCP"]
    sources = [(p, pods[p["metadata"]["name"]]) for p in running]
    sources.append((outsider, netpol.pod_of(outsider, outsider["status"]["podIP"], "outsider")))

    image = realnode.image_ref("backend")
    mismatches, counts = [], {"allowed": 0, "denied": 0}
    for index, (live, source) in enumerate(sources):
        targets = [(dest, port) for dest, port in destinations if dest.name != source.name]
        if live["metadata"]["name"] == "outsider":
            out = real_cli.exec(OUTSIDER_NAMESPACE, "outsider", "python", "-c", PROBE,
                                json.dumps([(d.ip, p) for d, p in targets])).stdout
            connected = json.loads(out.strip().splitlines()[-1])
        else:
            connected = probe_from_pod(real_cli, live, [(d.ip, p) for d, p in targets], image, index)
        for (dest, port), ok in zip(targets, connected, strict=True):
            expected = cluster.allowed(source, dest, port)
            counts["allowed" if expected else "denied"] += 1
            if ok != expected:
                mismatches.append(f"{source.name} -> {dest.name}:{port}: connected={ok}, policies allow={expected}")
    record_property("timing: real: NetworkPolicy pairs allowed/denied",
                    f"{counts['allowed']} allowed, {counts['denied']} denied, {len(sources)} source pods")
    print(f"NetworkPolicy matrix: {counts['allowed']} allowed pairs connected, {counts['denied']} denied pairs "
          f"refused, from {len(sources)} pods")
    assert counts["allowed"] and counts["denied"], counts
    assert not mismatches, "\n".join(mismatches)
