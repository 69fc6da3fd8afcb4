"""Users' data survives what operators do to a release on the real node: a registered user still logs in after
`helm upgrade`, after an upgrade to a new backend image (whose pre-upgrade migration Job completes before the new
backend pods are created, read from the live objects), and after `helm uninstall` plus a reinstall that finds the
kept Secret and claims."""

from __future__ import annotations

import secrets
from datetime import datetime

import pytest

from harness import realnode


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def user(real_cli, real_release):
    namespace, release, _ = real_release
    account = {"email": f"kept-{secrets.token_hex(4)}@example.com", "password": secrets.token_urlsafe(12) + "Aa1",
               "display_name": "Kept"}
    status, body = realnode.Api(real_cli, namespace, release).post("/api/v1/auth/register", account)
    assert status == 201, body
    return account


def logs_in(real_cli, namespace: str, release: str, account: dict) -> bool:
    status, body = realnode.Api(real_cli, namespace, release).post(
        "/api/v1/auth/login", {"email": account["email"], "password": account["password"]})
    return status == 200 and "access_token" in body


def test_user_logs_in_after_upgrade(real_cli, real_release, user):
    namespace, release, _ = real_release
    secret_before = real_cli.get(namespace, "secret", f"{release}-secrets")["data"]
    pods_before = {p["metadata"]["name"] for p in real_cli.component_pods(namespace, "backend")}
    # A changed pod annotation rolls the backend: new pods read the Secret the upgrade left.
    real_cli.upgrade(release, namespace, *realnode.chart_values(),
                     "--set-string", f"backend.podAnnotations.agentforge-test/rollout={secrets.token_hex(4)}")
    assert real_cli.get(namespace, "secret", f"{release}-secrets")["data"] == secret_before
    pods_after = {p["metadata"]["name"] for p in real_cli.component_pods(namespace, "backend")}
    assert pods_after and not pods_after & pods_before, (pods_before, pods_after)
    assert logs_in(real_cli, namespace, release, user)


def test_new_backend_image_migrates_before_any_new_backend_pod(real_cli, real_release, user):
    namespace, release, _ = real_release
    current = realnode.image_ref("backend")
    renamed = realnode.retag(current, "upgrade-test")
    before = {rs["metadata"]["name"] for rs in real_cli.get(
        namespace, "replicasets", "--selector", "app.kubernetes.io/component=backend")["items"]}
    real_cli.upgrade(release, namespace, *realnode.chart_values(),
                     "--set", f"backend.image.tag={renamed.rsplit(':', 1)[1]}")
    job = real_cli.get(namespace, "job", f"{release}-migrate")
    assert job["status"].get("succeeded") == 1
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == renamed
    new = [rs for rs in real_cli.get(namespace, "replicasets", "--selector",
                                     "app.kubernetes.io/component=backend")["items"]
           if rs["metadata"]["name"] not in before]
    assert new, "the upgrade created no new backend ReplicaSet"
    completed = _time(job["status"]["completionTime"])
    for rs in new:
        assert _time(rs["metadata"]["creationTimestamp"]) >= completed, (rs["metadata"], job["status"])
    pods = real_cli.component_pods(namespace, "backend")
    assert pods and all(c["image"] == renamed for p in pods for c in p["spec"]["containers"])
    for pod in pods:
        assert _time(pod["metadata"]["creationTimestamp"]) >= completed
    assert logs_in(real_cli, namespace, release, user)
    real_cli.upgrade(release, namespace, *realnode.chart_values())  # back to the built tag


def test_user_logs_in_after_uninstall_and_reinstall(real_cli, real_release, user):
    namespace, release, _ = real_release
    claims = {c["metadata"]["name"]: c["spec"]["volumeName"] for c in real_cli.get(namespace, "pvc")["items"]}
    assert claims
    real_cli.helm("uninstall", release, "--namespace", namespace, "--wait", timeout=600)
    assert {c["metadata"]["name"] for c in real_cli.get(namespace, "pvc")["items"]} == set(claims)
    real_cli.get(namespace, "secret", f"{release}-secrets")  # kept
    real_cli.install(release, namespace, *realnode.chart_values(), timeout="10m")
    real_cli.wait_ready(namespace)
    assert {c["metadata"]["name"]: c["spec"]["volumeName"] for c in real_cli.get(namespace, "pvc")["items"]} == claims
    assert logs_in(real_cli, namespace, release, user)
