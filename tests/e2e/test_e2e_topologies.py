"""End to end: external-database mode, and two releases side by side in two namespaces.

On the local kwok cluster pods become Ready and the migration Job succeeds by simulation (scripts/kube/stages.yaml),
and no database is reached at db.corp.example: these tests prove what the API server admitted and what the chart
wrote, not that the app connects."""

import base64
from urllib.parse import unquote, urlsplit

import pytest

from harness.cluster import RESTRICTED


@pytest.fixture(scope="module")
def external(cli):
    namespace = "af-e2e-external"
    cli.create_namespace(namespace, RESTRICTED)
    password = "ext:p@ss/w%rd"
    cli.kubectl("create", "secret", "generic", "corp-db", "--namespace", namespace,
                f"--from-literal=db-password={password}")
    cli.install("agentforge", namespace, "--set", "postgresql.enabled=false",
                "--set", "externalDatabase.host=db.corp.example", "--set", "externalDatabase.existingSecret=corp-db",
                "--set", "externalDatabase.existingSecretPasswordKey=db-password")
    yield namespace, password
    cli.cleanup(namespace, "agentforge")


def test_external_database_mode_available(cli, external):
    namespace, password = external
    assert cli.get(namespace, "statefulsets")["items"] and not [
        s for s in cli.get(namespace, "statefulsets")["items"] if "postgresql" in s["metadata"]["name"]]
    for deployment in cli.get(namespace, "deployments")["items"]:
        assert deployment["status"].get("readyReplicas", 0) >= 1, deployment["metadata"]["name"]
    assert cli.get(namespace, "job", "agentforge-migrate")["status"].get("succeeded") == 1
    # The chart read the password from the existing Secret at install time.
    data = cli.get(namespace, "secret", "agentforge-secrets")["data"]
    url = urlsplit(base64.b64decode(data["DATABASE_URL"]).decode())
    assert url.hostname == "db.corp.example"
    assert unquote(url.password) == password


@pytest.fixture(scope="module")
def two_releases(cli):
    pairs = [("agentforge", "af-e2e-side-a"), ("chat", "af-e2e-side-b")]
    for release, namespace in pairs:
        cli.create_namespace(namespace, RESTRICTED)
        cli.install(release, namespace)
    yield pairs
    for release, namespace in pairs:
        cli.cleanup(namespace, release)


def test_two_releases_side_by_side(cli, two_releases):
    for release, namespace in two_releases:
        assert cli.release_status(release, namespace) == "deployed"
        pods = cli.get(namespace, "pods")["items"]
        assert pods and all(p["metadata"]["labels"]["app.kubernetes.io/instance"] == release for p in pods)
    assert cli.get("af-e2e-side-b", "deployment", "chat-agentforge-backend")["status"]["readyReplicas"] >= 1
