"""End to end: a node drain through the eviction API cannot take the backend or frontend below its PDB.

The release's pods may run only on nodes carrying a label that this module sets on every node and removes again,
also when a test fails; the cluster's nodes keep no label of ours afterwards (checked at teardown, and for the
helper itself by a test that fails inside it). Pods become Ready by kwok's simulation on the local cluster."""

import pytest
from kubernetes.client import V1DeleteOptions, V1Eviction, V1ObjectMeta
from kubernetes.client.exceptions import ApiException

from harness.cluster import RESTRICTED, label_nodes, labelled_nodes, nodes_labelled, unlabel_nodes, wait_for
from harness.components import AUTOSCALED

NAMESPACE = "af-e2e-disruption"
RELEASE = "agentforge"
# The release's pods may run only on nodes carrying this label; taking it off a node stands in for a cordon
# that touches no other test's pods.
NODE_LABEL = "agentforge-e2e/disruption"
COMPONENTS = AUTOSCALED


def ready_pods(k8s, component):
    pods = k8s.list_namespaced_pod(NAMESPACE, label_selector=f"app.kubernetes.io/component={component}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]


@pytest.fixture(scope="module")
def installed(cli, k8s):
    with nodes_labelled(cli, NODE_LABEL):  # removes the label on leaving, also when a test or the install fails
        cli.create_namespace(NAMESPACE, RESTRICTED)
        try:
            selector = [f"--set-string={c}.nodeSelector.{NODE_LABEL.replace('.', chr(92) + '.')}=yes"
                        for c in COMPONENTS]
            cli.install(RELEASE, NAMESPACE, *selector)
            for component in COMPONENTS:  # the HPA raises the backend to its minimum of 2 after the install
                wait_for(lambda c=component: len(ready_pods(k8s, c)) == 2, what=f"2 ready {component} pods")
            yield
        finally:
            cli.cleanup(NAMESPACE, RELEASE)
    # A cluster that is not ours stays as it was: no node keeps the label.
    assert labelled_nodes(cli, NODE_LABEL) == [], f"{NODE_LABEL} left on nodes"


def evict(k8s, pod):
    body = V1Eviction(metadata=V1ObjectMeta(name=pod.metadata.name, namespace=NAMESPACE),
                      delete_options=V1DeleteOptions(grace_period_seconds=0))
    k8s.create_namespaced_pod_eviction(pod.metadata.name, NAMESPACE, body)


@pytest.mark.parametrize("component", COMPONENTS)
def test_drain_refused_below_min_available(cli, k8s, installed, component):
    first, second = ready_pods(k8s, component)
    unlabel_nodes(cli, NODE_LABEL)  # drain: no replacement can start
    try:
        evict(k8s, first)
        with pytest.raises(ApiException) as refused:
            evict(k8s, second)
        assert refused.value.status == 429
        assert "disruption budget" in refused.value.body
    finally:
        label_nodes(cli, NODE_LABEL)
    # Once nodes take pods again, the evicted pod is replaced.
    wait_for(lambda: len(ready_pods(k8s, component)) == 2, what=f"{component} back to 2 ready pods")


def test_deleted_pod_is_replaced(k8s, installed):
    victim = ready_pods(k8s, "backend")[0]
    k8s.delete_namespaced_pod(victim.metadata.name, NAMESPACE, grace_period_seconds=0)
    names = wait_for(lambda: {p.metadata.name for p in ready_pods(k8s, "backend")}
                     if len(ready_pods(k8s, "backend")) == 2 else None, what="backend replaced")
    assert victim.metadata.name not in names


CHECK_LABEL = "agentforge-e2e/label-check"  # not NODE_LABEL: the module's fixture may hold that one meanwhile


def test_node_label_removed_even_when_a_test_fails(cli):
    nodes = [n["metadata"]["name"] for n in cli.get("", "nodes")["items"]]
    with pytest.raises(RuntimeError, match="a failing test"):
        with nodes_labelled(cli, CHECK_LABEL):
            assert sorted(labelled_nodes(cli, CHECK_LABEL)) == sorted(nodes)
            raise RuntimeError("a failing test")
    assert labelled_nodes(cli, CHECK_LABEL) == []


def test_a_label_already_there_is_left_alone(cli):
    """A node label of the same key that we did not set (the cluster owner's, a killed run's) stops the test before
    it labels anything, and stays."""
    node = cli.get("", "nodes")["items"][0]["metadata"]["name"]
    cli.kubectl("label", "node", node, f"{CHECK_LABEL}=theirs")
    try:
        with pytest.raises(AssertionError, match=f"{node} already carry the label {CHECK_LABEL}"):
            with nodes_labelled(cli, CHECK_LABEL):
                pytest.fail("labelled the nodes over a label already there")
        assert labelled_nodes(cli, CHECK_LABEL) == [node]
        assert cli.get("", "node", node)["metadata"]["labels"][CHECK_LABEL] == "theirs"
    finally:
        unlabel_nodes(cli, CHECK_LABEL)
