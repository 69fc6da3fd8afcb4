"""End to end: helm install --wait on a real API server, in a namespace that enforces PSS "restricted".

On the local kwok cluster no container runs: pods become Ready, and Job and test pods succeed, by simulation
(scripts/kube/stages.yaml). "Available", "completed" and "passed" here prove that the API server admitted every
object and pod and that Helm's ordering and waits hold, not that the containers work (the app tier runs those);
tests/e2e/test_e2e_failures.py shows the same tests fail when the pods do."""

import base64

import pytest

from harness.cluster import RESTRICTED
from harness.render import CHART

NAMESPACE = "af-e2e-install"
RELEASE = "agentforge"


@pytest.fixture(scope="module")
def installed(cli):
    cli.create_namespace(NAMESPACE, RESTRICTED)
    yield cli.install(RELEASE, NAMESPACE)
    cli.cleanup(NAMESPACE, RELEASE)


def test_namespace_enforces_restricted(cli, installed):
    labels = cli.get("", "namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_release_deployed(cli, installed, record_property):
    record_property("timing: helm install --wait (default values), s", round(installed, 1))
    assert cli.release_status(RELEASE, NAMESPACE) == "deployed"


def test_every_workload_available_and_every_pod_admitted(cli, installed):
    workloads = cli.get(NAMESPACE, "deployments,statefulsets")["items"]
    assert {w["metadata"]["name"] for w in workloads} >= {"agentforge-backend", "agentforge-frontend",
                                                         "agentforge-postgresql", "agentforge-redis"}
    for w in workloads:
        want = w["spec"].get("replicas", 1)
        assert w["status"].get("readyReplicas", 0) >= want, w["metadata"]["name"]
    # A pod refused by PodSecurity admission leaves a ReplicaFailure condition on its ReplicaSet.
    for rs in cli.get(NAMESPACE, "replicasets")["items"]:
        failures = [c for c in rs["status"].get("conditions", []) if c["type"] == "ReplicaFailure"]
        assert failures == [], rs["metadata"]["name"]
    events = cli.get(NAMESPACE, "events")["items"]
    assert not [e for e in events if "violates PodSecurity" in e.get("message", "")]


def test_install_migration_job_completed(cli, installed):
    """The post-install Job was admitted and ran to completion, its success simulated by kwok."""
    job = cli.get(NAMESPACE, "job", "agentforge-migrate")
    assert job["status"].get("succeeded") == 1


def test_claims_bound_with_chart_sizes(cli, installed):
    claims = {c["metadata"]["name"]: c for c in cli.get(NAMESPACE, "pvc")["items"]}
    sizes = {name: c["spec"]["resources"]["requests"]["storage"] for name, c in claims.items()}
    assert sorted(sizes.values()) == sorted(["10Gi", "2Gi", "10Gi", "5Gi"]), sizes
    assert all(c["status"]["phase"] == "Bound" for c in claims.values())


def test_helm_test_passes(cli, installed):
    """The test pod was admitted and `helm test` waited for it; kwok simulates its exit code 0 (the health check
    itself never runs here)."""
    cli.helm("test", RELEASE, "--namespace", NAMESPACE, "--timeout", "2m")
    pod = cli.get(NAMESPACE, "pod", "agentforge-test-connection")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def pod_templates(cli):
    workloads = cli.get(NAMESPACE, "deployments,statefulsets")["items"]
    return {w["metadata"]["name"]: w["spec"]["template"] for w in workloads}


def test_upgrade_with_same_values_rolls_no_pod(cli, installed):
    """Generated secrets and the checksums computed from them are the same on upgrade: nothing restarts."""
    before = pod_templates(cli)
    cli.helm("upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--wait", "--timeout", "5m")
    assert pod_templates(cli) == before


def test_uninstall_keeps_data_and_reinstall_reuses_secrets(cli, installed):
    """Runs last in this module: uninstall, then the claims and the app Secret are still there."""
    before = cli.get(NAMESPACE, "secret", "agentforge-secrets")["data"]
    cli.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait")
    claims = cli.get(NAMESPACE, "pvc")["items"]
    assert len(claims) == 4, [c["metadata"]["name"] for c in claims]
    assert cli.get(NAMESPACE, "secret", "agentforge-secrets")["data"] == before
    # A new install in the same namespace adopts the kept Secret and its passwords: the data still opens.
    cli.install(RELEASE, NAMESPACE)
    after = cli.get(NAMESPACE, "secret", "agentforge-secrets")["data"]
    assert base64.b64decode(after["POSTGRES_PASSWORD"]) == base64.b64decode(before["POSTGRES_PASSWORD"])
    assert after == before
