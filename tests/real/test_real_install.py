"""The chart installed on a real node: the images built here run as containers under a real kubelet and containerd,
each pod becomes Ready through its own probes, the migration Job takes the bundled PostgreSQL to the code's head
revision, and `helm test` passes, and fails when what it checks is broken."""

from __future__ import annotations

from datetime import datetime

from harness import appsrc, realnode


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def startup_budget(container: dict) -> int:
    """Seconds a container may take to become Ready by its own probes: the startup probe's whole allowance, then one
    readiness period."""
    startup, ready = container.get("startupProbe", {}), container.get("readinessProbe", {})
    allowance = startup.get("initialDelaySeconds", 0) + startup.get("periodSeconds", 10) * startup.get(
        "failureThreshold", 3) if startup else 0
    return allowance + ready.get("initialDelaySeconds", 0) + ready.get("periodSeconds", 10)


def workload_pods(real_cli, namespace):
    return [p for p in real_cli.pods(namespace) if p["metadata"]["labels"].get("app.kubernetes.io/component")
            not in ("migrations", "test")]


def test_every_pod_ready_by_its_probes_within_its_startup_budget(real_cli, real_release, record_property):
    namespace, _, seconds = real_release
    record_property("timing: real: helm install --wait (default resources, built images), s", round(seconds, 1))
    pods = workload_pods(real_cli, namespace)
    assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods} >= {
        "backend", "frontend", "data-collector", "postgresql", "redis", "prometheus"}
    for pod in pods:
        name = pod["metadata"]["name"]
        ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", f"{name}: {pod['status']}"
        for container in pod["spec"]["containers"]:
            status = realnode.container_status(pod, container["name"])
            assert status["restartCount"] == 0, f"{name}/{status['name']} restarted: {status.get('lastState')}"
            took = (_time(ready["lastTransitionTime"]) - _time(status["state"]["running"]["startedAt"])).total_seconds()
            budget = startup_budget(container)
            component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
            record_property(f"timing: real: {component}/{container['name']} Ready after start, s (budget {budget})",
                            took)
            assert took <= budget, f"{name}/{container['name']} took {took}s to become Ready, budget {budget}s"


def test_containers_run_on_containerd_from_the_built_images(real_cli, real_release):
    namespace, _, _ = real_release
    runtime = real_cli.get("", "nodes")["items"][0]["status"]["nodeInfo"]["containerRuntimeVersion"]
    assert runtime.startswith("containerd://2."), runtime
    built = {realnode.image_ref(name) for name in ("backend", "frontend", "data-collector", "postgres", "redis",
                                                   "postgres-exporter", "redis-exporter", "prometheus")}
    for pod in real_cli.pods(namespace):
        for status in pod["status"].get("containerStatuses", []) + pod["status"].get("initContainerStatuses", []):
            assert status["containerID"].startswith("containerd://"), status
            assert status["image"] in built, f"{pod['metadata']['name']}/{status['name']} runs {status['image']}"


def psql(real_cli, namespace: str, sql: str) -> str:
    pod = real_cli.component_pods(namespace, "postgresql")[0]["metadata"]["name"]
    return real_cli.exec(namespace, pod, "sh", "-c",
                         f'psql -v ON_ERROR_STOP=1 -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "{sql}"',
                         container="postgresql").stdout.strip()


def test_migration_job_took_the_bundled_database_to_the_code_head(real_cli, real_release):
    namespace, release, _ = real_release
    job = real_cli.get(namespace, "job", f"{release}-migrate")
    assert job["status"].get("succeeded") == 1, job["status"]
    heads = appsrc.head_revisions()
    assert heads, "no head revision found in backend/alembic/versions"
    assert set(psql(real_cli, namespace, "select version_num from alembic_version").split()) == heads
    # The Job's pod ran alembic itself: its log says so.
    pod = real_cli.pods(namespace, f"job-name={release}-migrate")[0]["metadata"]["name"]
    log = real_cli.kubectl("logs", "--namespace", namespace, pod, "--all-containers").stdout
    assert "Running upgrade" in log, log


def test_helm_test_passes(real_cli, real_release):
    namespace, release, _ = real_release
    out = real_cli.helm("test", release, "--namespace", namespace, "--logs", timeout=300).stdout
    assert "Phase:          Succeeded" in out and "Failed" not in out, out
    assert "ok: the frontend bundle calls http://localhost:8000 and ws://localhost:8000" in out, out


def test_helm_test_fails_when_the_backend_is_down(real_cli, real_release):
    """The connection test reaches the backend through its Service: with no backend pod it fails."""
    namespace, release, _ = real_release
    deployment = f"deployment/{release}-backend"
    real_cli.kubectl("scale", deployment, "--replicas", "0", "--namespace", namespace)
    try:
        # Gone, not only terminating: kube-proxy sends a Service's traffic to terminating pods that still serve
        # when it has no other.
        realnode.wait_for(lambda: not real_cli.pods(namespace, "app.kubernetes.io/component=backend"), timeout=180,
                          what="no backend pod")
        proc = real_cli.helm("test", release, "--namespace", namespace, "--logs", check=False, timeout=300)
        assert proc.returncode != 0, proc.stdout
        pod = real_cli.get(namespace, "pod", f"{release}-test-connection")
        assert pod["status"]["phase"] == "Failed", pod["status"]
    finally:
        # Scaled to 0, the HPA stands aside; back at its minimum it resumes.
        replicas = real_cli.get(namespace, "hpa", f"{release}-backend")["spec"]["minReplicas"]
        real_cli.kubectl("scale", deployment, "--replicas", str(replicas), "--namespace", namespace)
        real_cli.wait_ready(namespace)


def test_helm_test_fails_when_the_frontend_was_built_for_another_origin(real_cli, real_release):
    """The frontend image carries the origins it was built with; an install that says it is served elsewhere fails
    `helm test` with a message naming them."""
    namespace, release, _ = real_release
    real_cli.upgrade(release, namespace, "--reuse-values", "--set", "frontend.publicUrls.api=https://agentforge.example.com")
    try:
        proc = real_cli.helm("test", release, "--namespace", namespace, "--logs", check=False, timeout=300)
        assert proc.returncode != 0, proc.stdout
        assert "NEXT_PUBLIC_API_URL=https://agentforge.example.com" in proc.stdout + proc.stderr, proc.stdout
        assert "http://localhost:8000" in proc.stdout + proc.stderr
    finally:
        real_cli.upgrade(release, namespace, "--reuse-values", "--set", "frontend.publicUrls.api=http://localhost:8000")
