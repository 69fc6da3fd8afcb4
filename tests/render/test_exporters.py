"""The data stores' exporters (postgresql.metrics, redis.metrics): what the chart renders for them, and, in the
server tier, the exporters built from their Go modules run with the rendered container's environment against the
real Debian PostgreSQL and Redis, serving the series the dashboard and the alerts read.
"""

from __future__ import annotations

import re

import pytest

from harness.components import EXPORTER_PORTS
from harness.exporters import ON, exporter
from harness.objects import env_of, pod_spec
from harness.policy import AddressPool, Cluster, Pod, pod_of
from harness.render import render_chart, render_error
from harness.servers import (
    EXPORTER_SERIES,
)

PORTS = EXPORTER_PORTS
COMPONENTS = tuple(EXPORTER_PORTS)


@pytest.fixture(scope="module")
def on():
    return render_chart(ON)


class TestRender:
    def test_off_by_default(self, default_render):
        for component in COMPONENTS:
            spec = pod_spec(default_render.get("StatefulSet", f"agentforge-{component}"))
            assert [c["name"] for c in spec["containers"]] == [component]
            ports = default_render.get("Service", f"agentforge-{component}")["spec"]["ports"]
            assert [p["name"] for p in ports] == [component]

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_sidecar_serves_port_metrics(self, on, component):
        c = exporter(on, component)
        assert c["ports"] == [{"name": "metrics", "containerPort": PORTS[component], "protocol": "TCP"}]
        assert c["args"] == [f"--web.listen-address=:{PORTS[component]}"]
        assert "command" not in c, "the image's entrypoint runs the exporter"
        # Probes that query nothing: a server that is down shows in the exporter's series, not as a restart.
        assert c["readinessProbe"]["httpGet"] == {"path": "/", "port": "metrics"}
        assert c["livenessProbe"]["tcpSocket"] == {"port": "metrics"}
        service = on.get("Service", f"agentforge-{component}")["spec"]
        assert {"name": "metrics", "port": PORTS[component], "targetPort": "metrics", "protocol": "TCP"} in \
            service["ports"]

    @pytest.mark.parametrize("component,secret_keys", [
        ("postgresql", {"DATA_SOURCE_USER": "POSTGRES_USER", "DATA_SOURCE_PASS": "POSTGRES_PASSWORD"}),
        ("redis", {"REDIS_PASSWORD": "REDIS_PASSWORD"}),
    ])
    def test_credentials_from_the_secret_never_argv(self, on, component, secret_keys):
        env = env_of(exporter(on, component))
        for name, key in secret_keys.items():
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "agentforge-secrets", "key": key}
        assert not [a for a in exporter(on, component)["args"] if "pass" in a.lower() or "@" in a]

    def test_connects_over_the_pods_loopback(self, on):
        assert env_of(exporter(on, "postgresql"))["DATA_SOURCE_URI"]["value"] == \
            "127.0.0.1:5432/agentforge?sslmode=disable"
        assert env_of(exporter(on, "redis"))["REDIS_ADDR"]["value"] == "redis://127.0.0.1:6379"

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_pod_security_and_resources(self, on, component):
        c = exporter(on, component)
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert c["resources"]["limits"] == {"cpu": "200m", "memory": "64Mi"}

    def test_image_and_its_pull_secret(self):
        objects = render_chart({"postgresql": {"metrics": {"enabled": True, "image": {
            "registry": "mirror.example.com", "tag": "v0.17.1-fix", "pullSecrets": ["exporter-pull"]}}}})
        assert exporter(objects, "postgresql")["image"] == \
            "mirror.example.com/prometheuscommunity/postgres-exporter:v0.17.1-fix"
        spec = pod_spec(objects.get("StatefulSet", "agentforge-postgresql"))
        assert spec["imagePullSecrets"] == [{"name": "exporter-pull"}]
        assert "imagePullSecrets" not in pod_spec(objects.get("StatefulSet", "agentforge-redis"))

    @pytest.mark.parametrize("kind,key", [("PodMonitor", "podMetricsEndpoints"), ("ServiceMonitor", "endpoints")])
    def test_monitors_scrape_the_exporters(self, kind, key):
        monitor = {"podMonitor" if kind == "PodMonitor" else "serviceMonitor": {"enabled": True}}
        objects = render_chart({**ON, "monitoring": monitor})
        ports = {m["metadata"]["name"]: [e["port"] for e in m["spec"][key]] for m in objects.of_kind(kind)}
        assert ports == {"agentforge-backend": ["http"], "agentforge-data-collector": ["http"],
                         "agentforge-postgresql": ["metrics"], "agentforge-redis": ["metrics"]}
        only_pg = render_chart({"postgresql": {"metrics": {"enabled": True}}, "monitoring": monitor})
        assert "agentforge-redis" not in {m["metadata"]["name"] for m in only_pg.of_kind(kind)}

    def test_bundled_prometheus_scrapes_the_exporter_port_only(self, on):
        from harness.monitoring import app_job, prometheus_config, scrape_targets
        job = app_job(prometheus_config(on))
        for component in COMPONENTS:
            targets = scrape_targets(job, on.get("StatefulSet", f"agentforge-{component}"), "agentforge")
            assert [(t["__address__"], t["job"]) for t in targets] == [(f"10.1.2.3:{PORTS[component]}", component)]

    def test_only_the_scrapers_reach_the_exporters(self, on):
        """The bundled Prometheus and networkPolicy.metricsFrom reach port `metrics`; the backend, which reaches the
        servers themselves, does not."""
        objects = render_chart({**ON, "networkPolicy": {"enabled": True, "metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}})
        pool = AddressPool()
        pods = {o["metadata"]["name"].removeprefix("agentforge-"): pod_of(o, pool.next())
                for o in objects if o["kind"] in ("Deployment", "StatefulSet")}
        cluster = Cluster(objects.of_kind("NetworkPolicy"),
                          {"monitoring": {"kubernetes.io/metadata.name": "monitoring"}})
        scraper = Pod("scraper", "monitoring", {"app": "prometheus"}, pool.next())
        for component in COMPONENTS:
            allowed = {name for name, pod in [*pods.items(), ("scraper", scraper)]
                       if name != component and cluster.allowed(pod, pods[component], PORTS[component])}
            assert allowed == {"prometheus", "scraper"}, component

    def test_alerts_only_for_the_exporters_that_run(self):
        def alerts(values):
            rules = render_chart(values).get("ConfigMap", "agentforge-prometheus")["data"]["alerts.yml"]
            return {m for m in re.findall(r"(pg_up|redis_up|pg_stat_activity_count|redis_connected_clients)\{", rules)}

        assert alerts({}) == set()
        assert alerts({"postgresql": {"metrics": {"enabled": True}}}) == {"pg_up", "pg_stat_activity_count"}
        assert alerts(ON) == {"pg_up", "pg_stat_activity_count", "redis_up", "redis_connected_clients"}
        assert alerts({**ON, "monitoring": {"alerts": {"dataStoreDown": {"enabled": False}}}}) == \
            {"pg_stat_activity_count", "redis_connected_clients"}


@pytest.mark.parametrize("values,key", [
    ({"postgresql": {"metrics": {"enabled": "yes"}}}, "/postgresql/metrics/enabled"),
    ({"redis": {"metrics": {"image": {"tag": "v1.74.0 latest"}}}}, "/redis/metrics/image/tag"),
    ({"redis": {"metrics": {"resources": {"limits": {"memory": "64 MB"}}}}}, "/redis/metrics/resources/limits/memory"),
    ({"postgresql": {"metrics": {"extra": True}}}, "/postgresql/metrics"),
    ({"monitoring": {"alerts": {"dataStoreConnections": {"ratio": 1.5}}}},
     "/monitoring/alerts/dataStoreConnections/ratio"),
    ({"monitoring": {"alerts": {"dataStoreDown": {"for": "2 minutes"}}}}, "/monitoring/alerts/dataStoreDown/for"),
], ids=lambda v: str(v) if isinstance(v, str) else None)
def test_bad_value_refused_naming_the_key(values, key):
    assert f"at '{key}'" in render_error(values)


# -- the real exporters against the real servers ------------------------------------------------------------------


def test_exporter_series_are_what_the_alerts_read():
    """Every series the alerts read for the data stores is one the server tier checks on the real exporters."""
    rules = render_chart(ON).get("ConfigMap", "agentforge-prometheus")["data"]["alerts.yml"]
    group = rules[rules.index("agentforge.datastores"):]
    read = set(re.findall(r"\b((?:pg|redis)_[a-z_]+)\{", group))
    assert read and read <= EXPORTER_SERIES["postgresql"] | EXPORTER_SERIES["redis"]
