"""The real single-node cluster (scripts/kube/node.sh) leaves the machine as it found it.

`node.sh up` changes kernel settings, adds a bridge, routes, iptables/ip6tables chains (kube-proxy, kube-router,
the kubelet, the CNI portmap plugin), ipsets, an nftables table, mounts and cgroups; `node.sh down` must take all of
it back. The test compares `node.sh snapshot` (a normalized description of that state) from before `up` with one
from after `down`, with a pod Running behind a ClusterIP Service and a NetworkPolicy in between, so that CNI,
kube-proxy and kube-router have each written their state. Root only; it refuses a node that is already up, since
the state before it can no longer be seen.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import time

import pytest

from harness import realnode
from harness.cluster import Cli, wait_for

NODE_SH = realnode.NODE_SH
NAMESPACE = "af-real-node"
UP_TIMEOUT = 3600  # a cold `up` builds kubelet, kube-proxy, containerd, kube-router and the pause/CoreDNS images
DOWN_TIMEOUT = 300


def node_sh(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(NODE_SH), *args], capture_output=True, text=True, timeout=timeout)


def snapshot() -> str:
    """`node.sh snapshot`, less what an image build running meanwhile (scripts/images/build.sh, which `up` may run)
    holds only while it runs: buildah's cgroups and its storage's mounts."""
    proc = node_sh("snapshot")
    assert proc.returncode == 0, proc.stderr
    return "".join(line for line in proc.stdout.splitlines(keepends=True)
                   if "/buildah-" not in line and "/.tools/images/storage/" not in line)


def objects(pause_ref: str) -> str:
    """A pause pod (Pod Security "restricted"), a ClusterIP Service in front of it, a NetworkPolicy isolating it."""
    labels = {"app": "real-node-probe"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": NAMESPACE, "labels": labels},
           "spec": {"terminationGracePeriodSeconds": 1,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65535,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "pause", "image": pause_ref, "imagePullPolicy": "Never",
                                    "resources": {"limits": {"memory": "16Mi", "cpu": "50m"}},
                                    "securityContext": {"allowPrivilegeEscalation": False,
                                                        "capabilities": {"drop": ["ALL"]}}}]}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "probe", "namespace": NAMESPACE},
               "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}}
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "probe", "namespace": NAMESPACE},
              "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress", "Egress"],
                       "ingress": [{"from": [{"podSelector": {"matchLabels": labels}}]}]}}
    return "\n".join(json.dumps(o) for o in (pod, service, policy))


def iptables_rules() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=60).stdout


def test_down_restores_the_machine(record_property):
    if os.geteuid() != 0:
        pytest.fail("The real node runs containers, changes iptables, mounts and kernel settings: run it as root "
                    "(CI does), on a machine you can spare.", pytrace=False)
    if node_sh("status").returncode == 0:
        pytest.fail(f"A node is already up ({NODE_SH} status): the machine's state before it cannot be compared. "
                    f"Run `{NODE_SH} down` first.", pytrace=False)
    if os.path.exists("/sys/class/net/af-br0"):
        pytest.fail("The node's bridge af-br0 exists, left by a node of another checkout (or a killed one): the "
                    "machine's state before a node cannot be seen. Run `scripts/kube/node.sh down` in that checkout.",
                    pytrace=False)

    before = snapshot()
    start = time.monotonic()
    up = node_sh("up", timeout=UP_TIMEOUT)
    try:
        assert up.returncode == 0, f"node.sh up failed:\n{up.stderr}"
        record_property("timing: node.sh up", f"{time.monotonic() - start:.0f} s")
        cli = Cli(up.stdout.strip().splitlines()[-1])
        cli.kubectl("create", "namespace", NAMESPACE)
        cli.kubectl("apply", "-f", "-", input=objects(realnode.image_ref("pause")))
        cli.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "pod/probe", "--timeout=120s")
        cluster_ip = cli.get(NAMESPACE, "service", "probe")["spec"]["clusterIP"]
        # Each writer's state is there before down: kube-proxy's Service rules, kube-router's policy chains, the
        # pod's veth on the bridge.
        wait_for(lambda: f"-d {cluster_ip}/32" in iptables_rules(), what="kube-proxy's rules for the Service")
        wait_for(lambda: ":KUBE-NWPLCY-" in iptables_rules(), what="kube-router's chains for the NetworkPolicy")
    finally:
        start = time.monotonic()
        down = node_sh("down", timeout=DOWN_TIMEOUT)
        record_property("timing: node.sh down", f"{time.monotonic() - start:.0f} s")
    assert down.returncode == 0, f"node.sh down failed:\n{down.stderr}"

    after = snapshot()
    diff = "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), "before up", "after down",
                                          lineterm=""))
    assert before == after, f"node.sh down left the machine changed:\n{diff}"
