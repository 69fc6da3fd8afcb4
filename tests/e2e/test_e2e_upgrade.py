"""End to end: helm upgrade runs the migration before the new backend, keeps every secret, and rolls back.

On the local kwok cluster the migration Job's success is simulated (scripts/kube/stages.yaml): these tests prove the
order of the hook and the rollout, not that alembic ran; tests/e2e/test_e2e_failures.py makes the Job fail."""

import time
from datetime import datetime

import pytest

from harness.cluster import RESTRICTED, component_objects
from harness.render import CHART

NAMESPACE = "af-e2e-upgrade"
RELEASE = "agentforge"
OLD_TAG, NEW_TAG = "0.10.0", "0.10.1"


def secrets_data(cli):
    """Every Secret's data, except Helm's own release records (a new one per revision, by design)."""
    return {s["metadata"]["name"]: s.get("data", {}) for s in cli.get(NAMESPACE, "secrets")["items"]
            if s.get("type") != "helm.sh/release.v1"}


def timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def upgraded(cli):
    cli.create_namespace(NAMESPACE, RESTRICTED)
    cli.install(RELEASE, NAMESPACE, "--set", f"backend.image.tag={OLD_TAG}")
    before = secrets_data(cli)
    start = time.monotonic()
    cli.helm("upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--wait", "--timeout", "5m",
             "--set", f"backend.image.tag={NEW_TAG}")
    yield before, time.monotonic() - start
    cli.cleanup(NAMESPACE, RELEASE)


def test_upgrade_ran_the_new_image(cli, upgraded, record_property):
    record_property("timing: helm upgrade --wait (new backend tag), s", round(upgraded[1], 1))
    deployment = cli.get(NAMESPACE, "deployment", "agentforge-backend")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{NEW_TAG}")
    assert cli.get(NAMESPACE, "job", "agentforge-migrate")["spec"]["template"]["spec"]["containers"][0][
        "image"].endswith(f":{NEW_TAG}")


def test_migration_completed_before_new_replicaset(cli, upgraded):
    """The pre-upgrade Job completed (by simulation) before the new backend ReplicaSet was created."""
    job = cli.get(NAMESPACE, "job", "agentforge-migrate")
    assert job["status"].get("succeeded") == 1
    completed = timestamp(job["status"]["completionTime"])
    (new_rs,) = [rs for rs in component_objects(cli, NAMESPACE, "replicasets", "backend")
                 if rs["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{NEW_TAG}")]
    assert completed <= timestamp(new_rs["metadata"]["creationTimestamp"])


def test_secrets_byte_identical(cli, upgraded):
    after, (before, _) = secrets_data(cli), upgraded
    assert set(after) == set(before)
    for name, data in before.items():
        assert after[name] == data, name


@pytest.mark.parametrize("key,value,reason", [
    ("postgresql.auth.password", "a-new-password", "PostgreSQL keeps the password it was initialised with"),
    ("secrets.encryptionKey", "YW5vdGhlci0zMi1ieXRlLWtleS1mb3ItdGhlLXRlc3Q=", "stored LLM API keys"),
    ("grafana.admin.password", "another-admin-password", "Grafana stores the admin password in its database"),
])
def test_upgrade_refuses_to_change_a_key_the_data_depends_on(cli, upgraded, key, value, reason):
    proc = cli.helm("upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--set", f"{key}={value}",
                    "--set", f"backend.image.tag={NEW_TAG}", check=False)
    assert proc.returncode != 0
    assert f"{key} differs from the value already in Secret" in proc.stderr
    assert reason in proc.stderr


def test_rollback_returns_previous_revision(cli, upgraded):
    before = secrets_data(cli)
    cli.helm("rollback", RELEASE, "1", "--namespace", NAMESPACE, "--wait", "--timeout", "5m")
    assert cli.release_history(RELEASE, NAMESPACE)[-1]["description"] == "Rollback to 1"
    assert cli.release_status(RELEASE, NAMESPACE) == "deployed"
    deployment = cli.get(NAMESPACE, "deployment", "agentforge-backend")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{OLD_TAG}")
    assert secrets_data(cli) == before
