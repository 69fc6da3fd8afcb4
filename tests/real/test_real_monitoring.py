"""The data stores' exporters on the real node: sidecars of the bundled PostgreSQL and Redis pods (the images built
here from their Go modules), scraped by the bundled Prometheus through its pod discovery and the chart's
NetworkPolicies, serving the series the dashboard and the alerts read; and postgresql.config reaching the running
server."""

from __future__ import annotations

import re

import pytest

from harness import realnode
from harness.cluster import wait_for
from harness.servers import EXPORTER_SERIES


def query(real_cli, namespace: str, promql: str) -> list[tuple[dict[str, str], float]]:
    """An instant query of the bundled Prometheus, by promtool in its own pod: [(labels, value)]."""
    pod = realnode.running_pod(real_cli, namespace, "prometheus")["metadata"]["name"]
    out = real_cli.exec(namespace, pod, "/bin/promtool", "query", "instant", "http://127.0.0.1:9090", promql,
                        container="prometheus").stdout
    results = []
    for line in out.splitlines():
        match = re.fullmatch(r"(?:[a-zA-Z_:][\w:]*)?\{(.*)\} => (\S+) @\[.*\]", line.strip())
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1)))
            results.append((labels, float(match.group(2))))
    return results


def scraped(real_cli, namespace: str, promql: str, value: float) -> list[tuple[dict[str, str], float]]:
    """The query's result once every series of it has `value`: the first scrapes come up to a scrape interval after
    the pods start, and a server restarted by an earlier test (test_real_limits.py kills each main process) reads 0
    until its exporter's next scrape after it is back."""
    def settled():
        result = query(real_cli, namespace, promql)
        return result if result and all(v == value for _, v in result) else None
    return wait_for(settled, timeout=180, interval=5, what=f"Prometheus: {promql} at {value}")


@pytest.mark.parametrize("component,up", [("postgresql", "pg_up"), ("redis", "redis_up")])
def test_exporter_scraped_and_reaching_its_server(real_cli, real_release, record_property, component, up):
    namespace, _, _ = real_release
    pod = realnode.running_pod(real_cli, namespace, component)
    assert [c["name"] for c in pod["spec"]["containers"]][:2] == [component, "metrics"]
    ((labels, _),) = scraped(real_cli, namespace, f'{up}{{job="{component}"}}', 1.0)
    assert labels["pod"] == pod["metadata"]["name"] and labels["namespace"] == namespace
    for name in EXPORTER_SERIES[component]:
        assert query(real_cli, namespace, f'{name}{{job="{component}"}}'), name
    ((_, count),) = query(real_cli, namespace, f'count({{job="{component}"}})')
    record_property(f"timing: real: {component} exporter series scraped by Prometheus", int(count))


def test_postgresql_config_reaches_the_running_server(real_cli, real_release):
    """An upgrade that sets postgresql.config.max_connections restarts the server with it (the ConfigMap's checksum
    rolls the pod); the server and the exporter's series report it."""
    namespace, release, _ = real_release
    real_cli.upgrade(release, namespace, *realnode.chart_values(), "--set", "postgresql.config.max_connections=120")
    pod = realnode.running_pod(real_cli, namespace, "postgresql")["metadata"]["name"]
    show = 'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "SHOW max_connections"'
    shown = real_cli.exec(namespace, pod, "sh", "-c", show, container="postgresql").stdout.strip()
    assert shown == "120"
    scraped(real_cli, namespace, 'pg_settings_max_connections{job="postgresql"}', 120.0)
