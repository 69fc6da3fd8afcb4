"""The chart's NetworkPolicies enforced by a real implementation (kube-router on the node): the reachability that
tests/netpol.py computes from the installed policies, executed with real TCP connections from real pods. Each
release pod gets an ephemeral container (it shares the pod's network namespace, so its connections carry the pod's
IP and labels) that connects to every container port of every other release pod; a pod in another namespace does
the same. Every allowed pair must connect and every denied pair must not."""

from __future__ import annotations

import json

import pytest

from harness import policy as netpol
from harness import realnode
from harness.cluster import RESTRICTED

OUTSIDER_NAMESPACE = "af-real-outsider"
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
            out = real_cli.exec(OUTSIDER_NAMESPACE, "outsider", "python", "-c", realnode.PROBE,
                                json.dumps([(d.ip, p) for d, p in targets])).stdout
            connected = json.loads(out.strip().splitlines()[-1])
        else:
            connected = realnode.probe_from_pod(real_cli, live, [(d.ip, p) for d, p in targets], image, index)
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
