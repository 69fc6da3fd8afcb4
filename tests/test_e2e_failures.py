"""End to end, failure paths: a failing migration stops an upgrade before any new backend pod and leaves a release
that rolls back; a failing migration fails a first install as the chart README says; a failing test pod fails
`helm test`.

kwok runs no container. A Job or test pod succeeds by simulation (scripts/kube/stages.yaml completes it with exit
code 0), unless it carries the annotation or label `agentforge.kwok/exit-code`: then it fails with that code. Here
the annotation reaches the migration pod through backend.podAnnotations (the migration Job runs the backend's pod
settings), the label the test pod through commonLabels.
"""

import json

import pytest

from chart import CHART
from cluster import RESTRICTED

pytestmark = pytest.mark.e2e

RELEASE = "agentforge"
SECRET = "agentforge-secrets"
OLD_TAG, NEW_TAG = "0.10.0", "0.10.1"
# One failing attempt: the Job fails at once instead of after backoffLimit retries with back-off.
FAILING_MIGRATION = ("--set-string", "backend.podAnnotations.agentforge\\.kwok/exit-code=1",
                     "--set", "migrations.backoffLimit=0")


@pytest.fixture
def namespace(cli, request):
    name = "af-e2e-fail-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    cli.create_namespace(name, RESTRICTED)
    yield name
    cli.cleanup(name, RELEASE)


def status(cli, namespace) -> str:
    return json.loads(cli.helm("status", RELEASE, "--namespace", namespace, "--output", "json").stdout)["info"][
        "status"]


def backend_pods(cli, namespace) -> dict[str, str]:
    """{pod name: its ReplicaSet's pod-template-hash} of the backend's pods."""
    return {p["metadata"]["name"]: p["metadata"]["labels"]["pod-template-hash"]
            for p in cli.get(namespace, "pods", "-l", "app.kubernetes.io/component=backend")["items"]}


def backend_replicasets(cli, namespace) -> set[str]:
    return {rs["metadata"]["name"] for rs in cli.get(namespace, "replicasets", "-l",
                                                     "app.kubernetes.io/component=backend")["items"]}


def test_failed_migration_stops_the_upgrade_and_rolls_back(cli, namespace):
    cli.install(RELEASE, namespace, "--set", f"backend.image.tag={OLD_TAG}")
    replicasets, pods = backend_replicasets(cli, namespace), backend_pods(cli, namespace)
    assert pods and set(pods.values()) == {rs.rsplit("-", 1)[1] for rs in replicasets}

    proc = cli.helm("upgrade", RELEASE, str(CHART), "--namespace", namespace, "--wait", "--timeout", "2m",
                    "--set", f"backend.image.tag={NEW_TAG}", *FAILING_MIGRATION, check=False)
    assert proc.returncode != 0, "helm upgrade succeeded with a failing migration"
    assert "pre-upgrade" in proc.stderr and "agentforge-migrate" in proc.stderr, proc.stderr
    job = cli.get(namespace, "job", "agentforge-migrate")
    assert job["status"].get("failed") == 1 and not job["status"].get("succeeded")
    assert status(cli, namespace) == "failed"
    # The pre-upgrade hook failed before Helm applied anything: the old ReplicaSet alone, its pods untouched.
    deployment = cli.get(namespace, "deployment", "agentforge-backend")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{OLD_TAG}")
    assert backend_replicasets(cli, namespace) == replicasets
    assert backend_pods(cli, namespace) == pods

    cli.helm("rollback", RELEASE, "1", "--namespace", namespace, "--wait", "--timeout", "2m")
    assert status(cli, namespace) == "deployed"
    history = cli.helm("history", RELEASE, "--namespace", namespace, "--output", "json").stdout
    assert '"revision":3' in history.replace(" ", "") and "Rollback to 1" in history
    assert backend_pods(cli, namespace) == pods


def test_failed_migration_fails_a_first_install_and_keeps_the_secret(cli, namespace):
    """The chart README ("When the migration fails"): the release is failed, its objects and the app Secret exist,
    and `helm uninstall` keeps the Secret (helm.sh/resource-policy: keep)."""
    proc = cli.helm("install", RELEASE, str(CHART), "--namespace", namespace, "--wait", "--timeout", "2m",
                    *FAILING_MIGRATION, check=False)
    assert proc.returncode != 0, "helm install succeeded with a failing migration"
    assert "post-install" in proc.stderr and "agentforge-migrate" in proc.stderr, proc.stderr
    assert status(cli, namespace) == "failed"
    secret = cli.get(namespace, "secret", SECRET)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert cli.get(namespace, "deployment", "agentforge-backend")["metadata"]["name"]
    cli.helm("uninstall", RELEASE, "--namespace", namespace, "--wait")
    assert cli.get(namespace, "secret", SECRET)["data"] == secret["data"]
    assert not cli.get(namespace, "deployments")["items"]


def test_failing_test_pod_fails_helm_test(cli, namespace):
    cli.install(RELEASE, namespace, "--set", "migrations.enabled=false",
                "--set-string", "commonLabels.agentforge\\.kwok/exit-code=2")
    proc = cli.helm("test", RELEASE, "--namespace", namespace, "--timeout", "2m", check=False)
    assert proc.returncode != 0, "helm test passed with a failing test pod"
    assert "agentforge-test-connection" in proc.stderr, proc.stderr
    pod = cli.get(namespace, "pod", "agentforge-test-connection")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 2
