"""The frontend, run for real: AgentForge's Next.js frontend built as docker/Dockerfile.frontend.prod builds it
(scripts/install-app.sh: `npm ci` and `next build`), laid out as its runtime stage lays it out, and started with
the image's command and the rendered environment, uid, read-only root filesystem and writable mounts."""

from __future__ import annotations

import pytest

from harness import appsrc
from harness.apphttp import request
from harness.appstack import distinct_scenarios, serve_alone
from harness.objects import pod_spec
from harness.probes import wait_for_probe

SCENARIOS = distinct_scenarios("frontend", "frontend")


@pytest.fixture(scope="module", params=SCENARIOS)
def frontend(request, app_ready):
    return serve_alone(request, "frontend", appsrc.frontend_image())


def test_home_page_and_probes(frontend, record_property):
    record_property(f"timing: app {frontend.rel.scenario}: frontend startup probe passed after",
                    f"{frontend.startup_seconds:.1f} s")
    status, body = request(frontend, "GET", "/")
    assert status == 200
    assert "<html" in body
    container = frontend.rel.container("frontend", "frontend")
    for kind in ("readinessProbe", "livenessProbe"):
        wait_for_probe(frontend, container[kind])


def test_serves_its_static_assets(frontend):
    """The page's scripts come from .next/static, which the runtime stage copies beside server.js."""
    _, body = request(frontend, "GET", "/login")
    scripts = [s for s in body.split('"') if s.startswith("/_next/static/") and s.endswith(".js")]
    assert scripts, body[:1000]
    assert request(frontend, "GET", scripts[0])[0] == 200


def test_runs_as_the_image_user(frontend):
    """The chart's uid and gid are the image's own user (`adduser --uid`, `addgroup --gid` in its Dockerfile),
    which owns the standalone server's files."""
    spec = pod_spec(frontend.workload)["securityContext"]
    user, group = appsrc.image_user(appsrc.documented_targets()["frontend"].dockerfile)
    assert (spec["runAsUser"], spec["runAsGroup"]) == (user, group)
    processes = frontend.processes()
    assert processes and all((p["uid"], p["gid"]) == (user, group) for p in processes)
