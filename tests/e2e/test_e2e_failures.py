"""End to end, failure paths: a failing migration stops an upgrade before any new backend pod and leaves a release
that rolls back; a failing migration fails a first install and leaves what the chart README ("When the migration
fails") says; a failing test pod fails `helm test`. And a cluster that is not ours stays untouched: the tier refuses
a KUBECONFIG that points elsewhere than the local cluster.

kwok runs no container. A Job or test pod succeeds by simulation (scripts/kube/stages.yaml completes it with exit
code 0: "succeeded" proves admission and ordering, not that alembic or the health check ran), unless it carries the
annotation or label `agentforge.kwok/exit-code`: then it fails with that code, as a real container would. Here the
annotation reaches the migration pod through backend.podAnnotations (the migration Job runs the backend's pod
settings), the label the test pod through commonLabels.
"""

import os
import subprocess
import sys

import pytest
import yaml

from harness.cluster import (
    ANY_CLUSTER,
    RESTRICTED,
    Cli,
    NotOurCluster,
    component_objects,
    is_local_cluster,
    local_kubeconfig,
    refuse_another_cluster,
    template_hashes,
    wait_for,
    write_kubeconfig,
)
from harness.render import CHART, HELM, ROOT, load_yaml

RELEASE = "agentforge"
SECRET = "agentforge-secrets"
JOB = "agentforge-migrate"
OLD_TAG, NEW_TAG = "0.10.0", "0.10.1"
FAIL_MIGRATION = ("--set-string", "backend.podAnnotations.agentforge\\.kwok/exit-code=1")
# The Job controller waits 10 s before a retry, then 20 s, 40 s...: the default backoffLimit of 3 would take over a
# minute. One retry shows that every attempt fails and that Helm waits for the last; none keeps a test short.
ONE_RETRY, NO_RETRY = ("--set", "migrations.backoffLimit=1"), ("--set", "migrations.backoffLimit=0")
# The claims of a default install: PostgreSQL's and Redis' (volumeClaimTemplates), Prometheus' and Grafana's.
CLAIMS = {"data-agentforge-postgresql-0", "data-agentforge-redis-0", "agentforge-prometheus", "agentforge-grafana"}


@pytest.fixture
def namespace(cli, request):
    name = "af-e2e-fail-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    cli.create_namespace(name, RESTRICTED)
    yield name
    cli.cleanup(name, RELEASE)


def backend(cli, namespace, kind) -> dict[str, str]:
    """{name: pod-template-hash} of the backend's pods or ReplicaSets."""
    return template_hashes(component_objects(cli, namespace, kind, "backend"))


def failed_install(cli, namespace):
    """helm install with a migration that fails (no retry): the failure, as helm reports it."""
    proc = cli.helm("install", RELEASE, str(CHART), "--namespace", namespace, "--wait", "--timeout", "2m",
                    *FAIL_MIGRATION, *NO_RETRY, check=False)
    assert proc.returncode != 0, "helm install succeeded with a failing migration"
    return proc


def test_failed_migration_stops_the_upgrade_and_rolls_back(cli, namespace):
    cli.install(RELEASE, namespace, "--set", f"backend.image.tag={OLD_TAG}", timeout="2m")
    # The HPA raises the backend from the Deployment's 1 to its minimum of 2 after the install.
    pods = wait_for(lambda: len(backend(cli, namespace, "pods")) == 2 and backend(cli, namespace, "pods"),
                    what="2 backend pods")
    replicasets = backend(cli, namespace, "replicasets")
    assert len(replicasets) == 1 and pods and set(pods.values()) == set(replicasets.values())

    proc = cli.helm("upgrade", RELEASE, str(CHART), "--namespace", namespace, "--wait", "--timeout", "2m",
                    "--set", f"backend.image.tag={NEW_TAG}", *FAIL_MIGRATION, *ONE_RETRY, check=False)
    assert proc.returncode != 0, "helm upgrade succeeded with a failing migration"
    assert "pre-upgrade" in proc.stderr and JOB in proc.stderr, proc.stderr
    job = cli.get(namespace, "job", JOB)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{NEW_TAG}")  # the new revision's
    assert job["status"].get("failed") == 2 and not job["status"].get("succeeded")  # both attempts failed
    assert [r["status"] for r in cli.release_history(RELEASE, namespace)] == ["deployed", "failed"]
    # The pre-upgrade hook failed before Helm applied anything: the old ReplicaSet alone, its pods untouched, no pod
    # of another template.
    deployment = cli.get(namespace, "deployment", "agentforge-backend")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{OLD_TAG}")
    assert backend(cli, namespace, "replicasets") == replicasets
    assert backend(cli, namespace, "pods") == pods

    cli.helm("rollback", RELEASE, "1", "--namespace", namespace, "--wait", "--timeout", "2m")
    history = cli.release_history(RELEASE, namespace)
    assert [(r["revision"], r["status"]) for r in history] == [(1, "superseded"), (2, "failed"), (3, "deployed")]
    assert history[-1]["description"] == "Rollback to 1"
    assert cli.release_status(RELEASE, namespace) == "deployed"
    assert backend(cli, namespace, "replicasets") == replicasets
    assert backend(cli, namespace, "pods") == pods


def test_failed_first_install_keeps_its_objects_and_an_upgrade_completes_it(cli, namespace):
    """The chart README: the release is failed but its objects exist (the app Secret, the claims, the Deployments);
    `helm upgrade` with the cause fixed runs the migration again (its success simulated) and keeps the Secret."""
    proc = failed_install(cli, namespace)
    assert "post-install" in proc.stderr and JOB in proc.stderr, proc.stderr
    assert cli.release_status(RELEASE, namespace) == "failed"
    assert cli.get(namespace, "job", JOB)["status"].get("failed") == 1
    secret = cli.get(namespace, "secret", SECRET)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert {c["metadata"]["name"] for c in cli.get(namespace, "pvc")["items"]} == CLAIMS
    assert {d["metadata"]["name"] for d in cli.get(namespace, "deployments")["items"]} >= {
        "agentforge-backend", "agentforge-frontend"}

    cli.helm("upgrade", RELEASE, str(CHART), "--namespace", namespace, "--wait", "--timeout", "2m", *NO_RETRY)
    assert [r["status"] for r in cli.release_history(RELEASE, namespace)] == ["superseded", "deployed"]
    job = cli.get(namespace, "job", JOB)
    assert job["status"].get("succeeded") == 1 and not job["status"].get("failed")  # a new Job, not the failed one
    assert cli.get(namespace, "secret", SECRET)["data"] == secret["data"]


def test_uninstall_after_a_failed_install_keeps_the_secret_and_the_claims(cli, namespace):
    """The chart README: `helm uninstall` of the failed release keeps the app Secret and the claims."""
    failed_install(cli, namespace)
    secret = cli.get(namespace, "secret", SECRET)["data"]
    cli.helm("uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "2m")
    assert cli.get(namespace, "secret", SECRET)["data"] == secret
    assert {c["metadata"]["name"] for c in cli.get(namespace, "pvc")["items"]} == CLAIMS
    assert not cli.get(namespace, "deployments,statefulsets")["items"]


def test_failing_test_pod_fails_helm_test(cli, namespace):
    # commonLabels reaches every pod, but only bare and Job pods (restartPolicy Never) fail by it: the migration Job
    # is off here, so the test pod alone fails.
    cli.install(RELEASE, namespace, "--set", "migrations.enabled=false",
                "--set-string", "commonLabels.agentforge\\.kwok/exit-code=2", timeout="2m")
    proc = cli.helm("test", RELEASE, "--namespace", namespace, "--timeout", "1m", check=False)
    assert proc.returncode != 0, "helm test passed with a failing test pod"
    assert "agentforge-test-connection" in proc.stderr, proc.stderr
    pod = cli.get(namespace, "pod", "agentforge-test-connection")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 2


# A cluster that is not ours stays untouched. The local cluster runs here (kube_config starts it), so its
# kubeconfig's server and CA are known.

def another_cluster(path, server: str | None = None):
    """A copy of the local kubeconfig at `path`, its API server URL replaced when `server` is given."""
    config = load_yaml(open(local_kubeconfig()))
    if server:
        config["clusters"][0]["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_a_copy_of_the_local_kubeconfig_is_ours(kube_config, tmp_path, monkeypatch):
    """Compared by API server and CA, not by path: a copy, or a KUBECONFIG list that starts with it, is accepted."""
    monkeypatch.delenv(ANY_CLUSTER, raising=False)
    copy = another_cluster(tmp_path / "copy")
    for given in (copy, f"{copy}{os.pathsep}{tmp_path / 'absent'}"):
        assert is_local_cluster(given)
        refuse_another_cluster(given)


def test_another_api_server_is_refused(kube_config, tmp_path, monkeypatch):
    """The same credentials and CA, another API server URL: not ours."""
    monkeypatch.delenv(ANY_CLUSTER, raising=False)
    other = another_cluster(tmp_path / "other", server="https://127.0.0.1:1")
    assert not is_local_cluster(other)
    with pytest.raises(NotOurCluster, match=f"KUBECONFIG={other} is not the local cluster: its API server is "
                                            "https://127.0.0.1:1"):
        refuse_another_cluster(other)


def test_the_tier_refuses_another_cluster_with_a_usage_message(kube_config, tmp_path):
    """pytest itself, given another cluster's KUBECONFIG: every e2e test errors at setup with the refusal, naming the
    opt-in variable and the refused KUBECONFIG, before anything contacts that cluster (its server does not
    answer, so any contact would fail otherwise)."""
    other = another_cluster(tmp_path / "other", server="https://127.0.0.1:1")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", ANY_CLUSTER))}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "e2e", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "-q", "tests/e2e/test_e2e_install.py::test_namespace_enforces_restricted"],
                          cwd=ROOT, env={**env, "KUBECONFIG": other}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 error" in proc.stdout, proc.stdout
    assert f"KUBECONFIG={other} is not the local cluster" in proc.stdout, proc.stdout
    assert f"Set {ANY_CLUSTER}=1 to run it on that cluster anyway" in proc.stdout, proc.stdout


def test_helm_kube_variables_cannot_redirect_the_tier(kube_config, tmp_path, monkeypatch):
    """HELM_KUBECONTEXT and HELM_KUBEAPISERVER exported toward another cluster (a server that does not answer) and a
    KUBECONFIG list that merges it after the local one: the tier's helm and kubectl still reach the local cluster,
    where helm given that environment as it is would not."""
    prod = write_kubeconfig(tmp_path / "prod", "prod", "https://127.0.0.1:1")
    merged = f"{kube_config}{os.pathsep}{prod}"
    monkeypatch.delenv(ANY_CLUSTER, raising=False)
    monkeypatch.setenv("HELM_KUBECONTEXT", "prod")
    monkeypatch.setenv("HELM_KUBEAPISERVER", "https://127.0.0.1:1")
    refuse_another_cluster(merged)  # the check reads the current context: the local cluster
    cli = Cli(merged)
    assert cli.helm("list", "--all-namespaces", "--output", "json", timeout=120).returncode == 0
    assert cli.kubectl("get", "namespace", "kube-system", "--output", "name").stdout.strip() == "namespace/kube-system"
    unpinned = subprocess.run([HELM, "list", "--all-namespaces"], env={**os.environ, "KUBECONFIG": merged},
                              capture_output=True, text=True, timeout=120)
    assert unpinned.returncode != 0 and "127.0.0.1:1" in unpinned.stderr, unpinned.stderr
