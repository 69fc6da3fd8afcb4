"""The component registry (charts/agentforge/files/components.yaml), which the templates and the tests' component
tables read, against what AgentForge is: its seven services, the ports its own Dockerfiles expose, and what the
chart renders for each entry."""

import re

import pytest

from harness import appsrc
from harness.components import BY_NAME, REGISTRY
from harness.objects import container, pod_spec
from harness.render import render_chart

# AgentForge's services with a workload of their own (the design note, shared/seed): the one place a test writes them.
AGENTFORGE = {"backend", "frontend", "data-collector", "postgresql", "redis", "prometheus", "grafana"}


def test_the_registry_lists_agentforges_services_once_each():
    assert [c["name"] for c in REGISTRY].count("backend") == 1
    assert sorted(c["name"] for c in REGISTRY) == sorted(AGENTFORGE)
    assert len({c["key"] for c in REGISTRY}) == len(REGISTRY)


@pytest.mark.parametrize("component,dockerfile", [
    ("backend", "docker/Dockerfile.backend.prod"), ("data-collector", "docker/Dockerfile.collector.prod"),
    ("frontend", "docker/Dockerfile.frontend.prod")])
def test_an_app_components_port_is_the_one_its_image_exposes(component, dockerfile):
    text = (appsrc.source_root() / dockerfile).read_text()
    exposed = [int(port) for port in re.findall(r"^EXPOSE\s+(\d+)", text, re.M)]
    assert exposed == [BY_NAME[component]["port"]["number"]], (dockerfile, exposed)


# The application's code that serves Prometheus metrics, per component (AGENTFORGE_SRC).
METRICS_CODE = {"backend": "backend/gateway/routes/metrics.py", "data-collector": "data-collector/main.py"}


@pytest.mark.parametrize("entry", REGISTRY, ids=lambda c: c["name"])
def test_scraped_are_the_components_whose_code_serves_metrics(entry):
    """A component is scraped on its own port exactly when the application's code serves /metrics there (the
    data stores' series come from their exporters)."""
    path = METRICS_CODE.get(entry["name"])
    assert entry["scraped"] == (path is not None)
    if path:
        text = (appsrc.source_root() / path).read_text()
        assert "prometheus_client" in text or "generate_latest" in text, path


@pytest.mark.parametrize("entry", REGISTRY, ids=lambda c: c["name"])
def test_each_entry_is_what_the_chart_renders(entry):
    """The kind, name, container and named port the registry gives a component are its rendered workload's, and the
    values that enable it are the ones that render or remove it."""
    objects = render_chart({})
    workload = objects.get(entry["kind"], f"agentforge-{entry['name']}")
    main = container(workload, entry["name"])
    assert {"name": entry["port"]["name"], "containerPort": entry["port"]["number"], "protocol": "TCP"} in main["ports"]
    if entry["exporter"]:
        on = render_chart({entry["key"]: {"metrics": {"enabled": True}}})
        names = {c["name"]: c for c in pod_spec(on.get(entry["kind"], f"agentforge-{entry['name']}"))["containers"]}
        assert [p["containerPort"] for c in names.values() if c["name"] != entry["name"] for p in c["ports"]] == \
            [entry["exporter"]["port"]]
    for path in entry["enabledBy"]:
        key, *rest = path.split(".")
        off: dict = {}
        node = off.setdefault(key, {})
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        node[rest[-1]] = False
        values = off | ({"externalDatabase": {"host": "db.example.net", "password": "p"}} if key == "postgresql"
                        else {"externalRedis": {"host": "redis.example.net"}} if key == "redis" else {})
        assert render_chart(values).find(entry["kind"], f"agentforge-{entry['name']}") is None, path
