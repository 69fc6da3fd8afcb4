"""The data collector, run for real: AgentForge's collector code laid out as docker/Dockerfile.collector lays it out,
started with the rendered command, environment, uid and mounts, in a pod that reaches nothing (it needs no
database, no Redis and no Secret). Every scenario in which its container differs runs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import appsrc
from harness.apphttp import exposition_types, request
from harness.appstack import distinct_scenarios, serve_alone
from harness.objects import pod_spec
from harness.probes import wait_for_probe

SCENARIOS = distinct_scenarios("data-collector", "data-collector")


@pytest.fixture(scope="module", params=SCENARIOS)
def collector(request, app_ready):
    # No database or Redis is started: the collector's pod could not reach them anyway (NetworkPolicies).
    return serve_alone(request, "data-collector", appsrc.python_image("data-collector"))


def test_probes_answer(collector, record_property):
    record_property(f"timing: app {collector.rel.scenario}: data collector startup probe passed after",
                    f"{collector.startup_seconds:.1f} s")
    container = collector.rel.container("data-collector", "data-collector")
    for kind in ("readinessProbe", "livenessProbe"):
        wait_for_probe(collector, container[kind])


def test_metrics_answer_where_they_are_scraped(collector):
    endpoints = collector.rel.scrape_endpoints("data-collector")
    assert endpoints, "nothing scrapes the data collector"
    for port, path in endpoints:
        status, text = request(collector, "GET", path, port=port)
        assert status == 200, (port, path)
        types = exposition_types(text)
        assert types.get("python_info") == "gauge", text[:500]
        # The signal the chart README gives for the collector's memory, which it never frees.
        assert types.get("process_resident_memory_bytes") == "gauge", text[:500]


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


def test_serves_with_no_database_or_redis_in_reach(collector):
    """No PostgreSQL or Redis runs for this test, and the collector's pod reaches neither: it still serves."""
    assert not collector.upstreams
    assert collector.running() and request(collector, "GET", "/api/v1/health")[0] == 200
