"""Bundled Grafana: admin Secret, provisioning, and the AgentForge dashboard shipped in the chart."""

import base64
import json
import re

import pytest

from harness import policy
from harness.monitoring import DATA_STORE_METRICS, EXPORTED_METRICS, GRAFANA, metric_names
from harness.objects import container, env_sources, pod_spec, volumes_by_mount
from harness.render import CHART, load_yaml, render_chart, render_error

DASHBOARDS = "agentforge-grafana-dashboards"
DASHBOARD_FILE = CHART / "files" / "dashboards" / "agentforge.json"
DEFAULT_UID = "agentforge-prometheus"

HISTOGRAMS = {"http_request_duration_seconds", "llm_request_duration_seconds", "pipeline_duration_seconds"}


def panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def datasource_refs(node, path="$"):
    """Every `datasource` value in a dashboard, with where it sits."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield path, value
            yield from datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from datasource_refs(value, f"{path}[{i}]")


def rendered_dashboard(objects, name=DASHBOARDS):
    return json.loads(objects.get("ConfigMap", name)["data"]["agentforge.json"])


def provisioning(objects, key, name=GRAFANA):
    return load_yaml(objects.get("ConfigMap", name)["data"][key])


@pytest.fixture(scope="module")
def dashboard():
    return json.loads(DASHBOARD_FILE.read_text())


class TestDashboardFile:
    def test_parses_with_fixed_uid(self, dashboard):
        assert dashboard["uid"] == "agentforge-main"
        assert dashboard["title"] == "AgentForge"
        assert dashboard["id"] is None

    def test_no_import_placeholders(self):
        text = DASHBOARD_FILE.read_text()
        assert "${DS_" not in text and "__inputs" not in text

    def test_every_panel_and_target_names_the_datasource(self, dashboard):
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": DEFAULT_UID}, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == {"type": "prometheus", "uid": DEFAULT_UID}, panel["title"]

    def test_every_datasource_reference_is_the_provisioned_one(self, dashboard):
        refs = list(datasource_refs(dashboard))
        assert refs
        for path, ref in refs:
            assert ref == {"type": "prometheus", "uid": DEFAULT_UID}, path

    def test_uid_text_appears_only_as_datasource_uids(self, dashboard):
        """The chart swaps the JSON string "agentforge-prometheus" for the configured uid: it must mean nothing else."""
        text = DASHBOARD_FILE.read_text()
        assert text.count(json.dumps(DEFAULT_UID)) == len(list(datasource_refs(dashboard)))
        assert text.count(DEFAULT_UID) == text.count(json.dumps(DEFAULT_UID))

    def test_placeholder_is_the_values_default(self):
        values = load_yaml((CHART / "values.yaml").read_text())
        assert values["grafana"]["datasourceUid"] == DEFAULT_UID

    def test_queries_name_only_exported_metrics(self, dashboard):
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                names = metric_names(target["expr"])
                assert names, f"{panel['title']}: no metric in {target['expr']}"
                known = EXPORTED_METRICS | DATA_STORE_METRICS
                assert names <= known, f"{panel['title']}: {names - known}"

    def test_every_exported_metric_has_a_panel(self, dashboard):
        used = set()
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                used |= metric_names(target["expr"])
        assert used == EXPORTED_METRICS | DATA_STORE_METRICS

    def test_histograms_read_as_quantiles_of_buckets(self, dashboard):
        exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
        for metric in HISTOGRAMS:
            quantiles = [e for e in exprs if f"{metric}_bucket" in e]
            assert quantiles, metric
            for expr in quantiles:
                assert expr.startswith("histogram_quantile(") and "le" in re.findall(r"by \(([^)]*)\)", expr)[0]

    def test_panel_ids_unique_and_grid_fits(self, dashboard):
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids))
        for panel in panels(dashboard):
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]

    @pytest.mark.parametrize("expr,names", [
        ("sum by (job) (rate(http_requests_total[$__rate_interval]))", {"http_requests_total"}),
        ('histogram_quantile(0.95, sum by (le) (rate(x_seconds_bucket{job="a b"}[5m])))', {"x_seconds"}),
        ("sum(increase(llm_cost_dollars_total[24h])) / on(pod) group_left up offset 1h",
         {"llm_cost_dollars_total", "up"}),
        ("rate(a_count[1m]) / rate(a_sum[1m])", {"a"}),
    ])
    def test_metric_name_parser(self, expr, names):
        assert metric_names(expr) == names


class TestDashboardInChart:
    def test_own_configmap_equal_to_the_file(self, default_render, dashboard):
        assert rendered_dashboard(default_render) == dashboard
        assert set(default_render.get("ConfigMap", DASHBOARDS)["data"]) == {"agentforge.json"}
        assert "agentforge.json" not in default_render.get("ConfigMap", GRAFANA)["data"]

    def test_datasource_uid_value_reaches_every_reference(self):
        objects = render_chart({"grafana": {"datasourceUid": "metrics-main"}})
        refs = list(datasource_refs(rendered_dashboard(objects)))
        assert refs and all(ref == {"type": "prometheus", "uid": "metrics-main"} for _, ref in refs)
        assert DEFAULT_UID not in objects.get("ConfigMap", DASHBOARDS)["data"]["agentforge.json"]
        (datasource,) = provisioning(objects, "datasources.yaml")["datasources"]
        assert datasource["uid"] == "metrics-main"

    @pytest.mark.parametrize("uid", ["", "has space", "x" * 41, 'quote"'])
    def test_bad_datasource_uid_rejected(self, uid):
        assert "/grafana/datasourceUid" in render_error({"grafana": {"datasourceUid": uid}})

    def test_dashboard_mounted_where_the_provider_reads(self, default_render):
        deployment = default_render.get("Deployment", GRAFANA)
        (provider,) = provisioning(default_render, "dashboards.yaml")["providers"]
        assert provider["type"] == "file"
        mounted = volumes_by_mount(deployment, "grafana")
        assert mounted[provider["options"]["path"]]["configMap"]["name"] == DASHBOARDS
        home = {e["name"]: e.get("value") for e in container(deployment, "grafana")["env"]}
        assert home["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == provider["options"]["path"] + "/agentforge.json"

    def test_provisioning_files_mounted(self, default_render):
        deployment = default_render.get("Deployment", GRAFANA)
        mounted = volumes_by_mount(deployment, "grafana")
        for directory, key in (("datasources", "datasources.yaml"), ("dashboards", "dashboards.yaml")):
            volume = mounted[f"/etc/grafana/provisioning/{directory}"]["configMap"]
            assert volume["name"] == GRAFANA
            assert volume["items"] == [{"key": key, "path": key}]

    def test_dashboard_change_rolls_the_pod(self, default_render):
        def checksum(objects):
            return objects.get("Deployment", GRAFANA)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        # A fresh render of the same values keeps it (a random part would roll the pod on every upgrade) ...
        assert checksum(render_chart({}, fresh=True)) == checksum(default_render)
        # ... and a dashboard that changes changes it (test_chart.py's checksum table has every input).
        assert checksum(default_render) != checksum(render_chart({"grafana": {"datasourceUid": "other"}}, fresh=True))


class TestDatasource:
    def test_prometheus_service_with_fixed_uid(self, default_render):
        (datasource,) = provisioning(default_render, "datasources.yaml")["datasources"]
        assert datasource["type"] == "prometheus"
        assert datasource["uid"] == DEFAULT_UID
        assert datasource["url"] == "http://agentforge-prometheus.agentforge.svc.cluster.local:9090"
        assert datasource["jsonData"]["timeInterval"] == "15s"
        service = default_render.get("Service", "agentforge-prometheus")
        assert service["spec"]["ports"][0]["port"] == 9090

    def test_url_follows_release_namespace_and_domain(self):
        objects = render_chart({"global": {"clusterDomain": "corp.internal"}}, name="chat", namespace="team-a")
        (datasource,) = provisioning(objects, "datasources.yaml", "chat-agentforge-grafana")["datasources"]
        assert datasource["url"] == "http://chat-agentforge-prometheus.team-a.svc.corp.internal:9090"


class TestAdminSecret:
    def test_generated_password_kept_on_uninstall(self, default_render):
        secret = default_render.get("Secret", GRAFANA)
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert data["admin-user"] == "admin"
        assert len(data["admin-password"]) == 32 and data["admin-password"].isalnum()
        assert len(data["secret-key"]) == 40

    def test_env_reads_the_chart_secret(self, default_render):
        sources = env_sources(default_render, default_render.get("Deployment", GRAFANA), "grafana")
        assert sources["GF_SECURITY_ADMIN_USER"] == ("Secret", GRAFANA, "admin-user")
        assert sources["GF_SECURITY_ADMIN_PASSWORD"] == ("Secret", GRAFANA, "admin-password")
        assert sources["GF_SECURITY_SECRET_KEY"] == ("Secret", GRAFANA, "secret-key")

    def test_given_password_wins(self):
        secret = render_chart({"grafana": {"admin": {"user": "root", "password": "s3cret"}}}).get("Secret", GRAFANA)
        assert base64.b64decode(secret["data"]["admin-password"]).decode() == "s3cret"
        assert base64.b64decode(secret["data"]["admin-user"]).decode() == "root"

    def test_generated_values_new_per_render(self):
        """Without a live Secret each render generates both: a constant "generated" password would be shared by
        every install."""
        first, second = (render_chart({}, fresh=True).get("Secret", GRAFANA)["data"] for _ in range(2))
        assert first["admin-password"] != second["admin-password"]
        assert first["secret-key"] != second["secret-key"]
        assert first["admin-user"] == second["admin-user"]

    def test_existing_secret(self):
        values = {"grafana": {"admin": {"existingSecret": "grafana-admin", "userKey": "user", "passwordKey": "pw"}}}
        objects = render_chart(values)
        assert objects.find("Secret", GRAFANA) is None
        sources = env_sources(objects, objects.get("Deployment", GRAFANA), "grafana")
        assert sources["GF_SECURITY_ADMIN_USER"] == ("Secret", "grafana-admin", "user")
        assert sources["GF_SECURITY_ADMIN_PASSWORD"] == ("Secret", "grafana-admin", "pw")
        env = {e["name"]: e for e in container(objects.get("Deployment", GRAFANA), "grafana")["env"]}
        assert env["GF_SECURITY_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True

    def test_no_password_outside_the_secret(self, default_render):
        password = default_render.get("Secret", GRAFANA)["data"]["admin-password"]
        text = json.dumps([o for o in default_render if o["kind"] != "Secret"])
        assert base64.b64decode(password).decode() not in text


class TestDeployment:
    def test_one_replica_recreated(self, default_render):
        spec = default_render.get("Deployment", GRAFANA)["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}

    def test_image_default_and_tag_value(self, default_render):
        assert container(default_render.get("Deployment", GRAFANA), "grafana")["image"] == "grafana/grafana:10.4.0"
        objects = render_chart({"grafana": {"image": {"tag": "10.4.5"}}})
        assert container(objects.get("Deployment", GRAFANA), "grafana")["image"] == "grafana/grafana:10.4.5"

    def test_non_root_read_only_without_token(self, default_render):
        deployment = default_render.get("Deployment", GRAFANA)
        spec = pod_spec(deployment)
        assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsNonRoot"]) == (472, True)
        assert spec["automountServiceAccountToken"] is False
        sc = container(deployment, "grafana")["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        writable = {m["mountPath"] for m in container(deployment, "grafana")["volumeMounts"] if not m.get("readOnly")}
        assert writable == {"/var/lib/grafana", "/tmp", "/var/log/grafana"}

    @pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
    def test_probes_on_api_health(self, default_render, probe):
        c = container(default_render.get("Deployment", GRAFANA), "grafana")
        assert c[probe]["httpGet"] == {"path": "/api/health", "port": "http"}

    def test_service_on_3000(self, default_render):
        service = default_render.get("Service", GRAFANA)
        assert service["spec"]["ports"] == [{"name": "http", "port": 3000, "targetPort": "http", "protocol": "TCP"}]
        pod_labels = default_render.get("Deployment", GRAFANA)["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()


class TestClaim:
    def test_5gi_kept_on_uninstall(self, default_render):
        claim = default_render.get("PersistentVolumeClaim", GRAFANA)
        assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        deployment = default_render.get("Deployment", GRAFANA)
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"] == {"claimName": GRAFANA}
        assert {"name": "data", "mountPath": "/var/lib/grafana"} in container(deployment, "grafana")["volumeMounts"]

    def test_existing_claim(self):
        objects = render_chart({"grafana": {"persistence": {"existingClaim": "grafana-data"}}})
        assert objects.find("PersistentVolumeClaim", GRAFANA) is None
        volumes = {v["name"]: v for v in pod_spec(objects.get("Deployment", GRAFANA))["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "grafana-data"}


def test_monitoring_disabled_renders_no_grafana():
    objects = render_chart({"monitoring": {"enabled": False}})
    assert not [o for o in objects if o["metadata"]["labels"]["app.kubernetes.io/component"] == "grafana"]


# ------------------------------------------------------------------------------------ upgrades: the live Secret


@pytest.fixture(scope="module")
def grafana_off():
    return render_chart({"grafana": {"enabled": False}})


class TestGrafanaOff:
    """grafana.enabled=false: Prometheus alone, for a Grafana of one's own; nothing of Grafana's is rendered, and no
    pod of the release may query Prometheus."""

    def test_no_grafana_object(self, grafana_off):
        objects = grafana_off
        grafana = [(o["kind"], o["metadata"]["name"]) for o in objects
                   if "grafana" in json.dumps(o.get("metadata", {}))]
        assert grafana == []
        assert objects.get("Deployment", "agentforge-prometheus")

    def test_prometheus_admits_nobody_of_the_release(self, grafana_off):
        objects = grafana_off
        policies = policy.Cluster(objects.of_kind("NetworkPolicy"))
        workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
        pods = [policy.pod_of(w, f"10.0.0.{i + 1}") for i, w in enumerate(workloads)]
        prometheus = next(p for p in pods if p.name == "agentforge-prometheus")
        # A pod labelled as the bundled Grafana would be (were one started by hand) is refused too.
        grafana = policy.pod_of(render_chart().get("Deployment", "agentforge-grafana"), "10.0.1.1")
        assert [p.name for p in pods + [grafana] if p is not prometheus and policies.allowed(p, prometheus, 9090)] == []

    def test_monitoring_off_wins(self):
        objects = render_chart({"monitoring": {"enabled": False}, "grafana": {"enabled": True}})
        assert objects.find("Deployment", "agentforge-grafana") is None
