"""The data collector, run for real: AgentForge's collector code laid out as docker/Dockerfile.collector lays it out,
started with the rendered command, environment, uid and mounts, in a pod that reaches nothing (it needs no
database, no Redis and no Secret). Every scenario in which its container differs runs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

import appsrc
from apphttp import exposition_types, request
from appstack import Stack, distinct_scenarios, release
from chart import pod_spec
from pods import wait_for_http

pytestmark = pytest.mark.app
SCENARIOS = distinct_scenarios("data-collector", "data-collector")


@pytest.fixture(scope="module", params=SCENARIOS)
def collector(request, app_ready):
    stack = Stack(release(request.param))
    request.addfinalizer(stack.close)
    pod = stack.serve("data-collector", "data-collector", appsrc.python_image("data-collector"), upstreams=[])
    startup = stack.rel.container("data-collector", "data-collector")["startupProbe"]
    budget = startup.get("initialDelaySeconds", 0) + startup["periodSeconds"] * startup["failureThreshold"]
    pod.startup_seconds = wait_for_http(pod, startup["httpGet"]["port"], startup["httpGet"]["path"], budget)
    pod.rel = stack.rel
    return pod


def test_probes_answer(collector, record_property):
    record_property(f"timing: app {collector.rel.scenario}: data collector startup probe passed after",
                    f"{collector.startup_seconds:.1f} s")
    container = collector.rel.container("data-collector", "data-collector")
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[kind]["httpGet"]
        status, body = request(collector, "GET", get["path"], port=get["port"])
        assert status == 200, f"{kind} {get}: {status} {body}"


def test_metrics_answer_on_the_scraped_port(collector):
    status, text = request(collector, "GET", "/metrics", port="http")
    assert status == 200
    assert exposition_types(text).get("python_info") == "gauge", text[:500]


def test_one_process_serves_every_later_read(collector):
    """A collection created in one request is read back in 30 later requests, each on a new connection, 10 at a
    time: one process holds it (with two workers, about half of such reads answer 404)."""
    status, created = request(collector, "POST", "/api/v1/collections", {"source_type": "file"})
    assert status == 201, created
    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: request(collector, "GET", f"/api/v1/collections/{created['id']}/status")[0],
                              range(30)))
    assert codes == [200] * 30
    processes = collector.processes()
    assert len(processes) == 1, processes
    spec = pod_spec(collector.workload)
    assert (processes[0]["uid"], processes[0]["gid"]) == (spec["securityContext"]["runAsUser"],
                                                          spec["securityContext"]["runAsGroup"])


def test_runs_without_settings_secrets_or_connections(collector):
    """It got no ConfigMap or Secret, and reached nothing (its pod has no route to any server) yet serves."""
    container = collector.rel.container("data-collector", "data-collector")
    assert "envFrom" not in container
    assert not [e for e in container.get("env", []) if "valueFrom" in e]
    assert collector.upstreams == []
    assert collector.running()
