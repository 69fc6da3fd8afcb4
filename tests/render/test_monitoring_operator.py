"""Objects for a Prometheus Operator and a Grafana of your own: PodMonitors, ServiceMonitors, the sidecar dashboard.

The PodMonitor and ServiceMonitor are validated against the CRD schemas vendored in tests/harness/crds/ (the Kubernetes
schema check of the render harness skips CRD kinds), strictly: a field the CRD does not define is an error, as
the API server's strict field validation makes it.
"""

import copy
import json

import pytest

from harness.components import REGISTRY
from harness.monitoring import CRD_SCHEMAS, crd_errors
from harness.render import render_chart, render_error

SCRAPED = tuple(c["name"] for c in REGISTRY if c["scraped"])
NOT_SCRAPED = (("Deployment", "agentforge-frontend"), ("Job", "agentforge-migrate"),
               ("Deployment", "agentforge-prometheus"), ("Deployment", "agentforge-grafana"))
ALL_ON = {"monitoring": {"podMonitor": {"enabled": True}, "serviceMonitor": {"enabled": True},
                         "dashboardConfigMap": {"enabled": True}}}


def pod_labels(objects, kind, name):
    return objects.get(kind, name)["spec"]["template"]["metadata"]["labels"]


def container_port_names(objects, kind, name):
    spec = objects.get(kind, name)["spec"]["template"]["spec"]
    return {p.get("name") for c in spec["containers"] for p in c.get("ports", [])}


@pytest.fixture(scope="module")
def all_on():
    return render_chart(ALL_ON)


def test_vendored_crds_present():
    assert set(CRD_SCHEMAS) == {("monitoring.coreos.com/v1", "PodMonitor"),
                                ("monitoring.coreos.com/v1", "ServiceMonitor"),
                                ("monitoring.coreos.com/v1", "PrometheusRule")}  # tests/render/test_alerts.py


def test_all_off_by_default(default_render):
    kinds = {o["kind"] for o in default_render}
    assert not kinds & {"PodMonitor", "ServiceMonitor"}
    assert default_render.find("ConfigMap", "agentforge-dashboards") is None


class TestPodMonitor:
    @pytest.mark.parametrize("component", SCRAPED)
    def test_valid_against_the_crd(self, all_on, component):
        assert crd_errors(all_on.get("PodMonitor", f"agentforge-{component}")) == []

    def test_strict_validation_catches_a_typo(self, all_on):
        """Control: a field the CRD lacks fails, so the validation above would catch one."""
        monitor = copy.deepcopy(all_on.get("PodMonitor", "agentforge-backend"))
        monitor["spec"]["podMetricEndpoints"] = monitor["spec"].pop("podMetricsEndpoints")
        assert any("podMetricEndpoints" in e for e in crd_errors(monitor))
        monitor = copy.deepcopy(all_on.get("PodMonitor", "agentforge-backend"))
        monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
        assert crd_errors(monitor)

    @pytest.mark.parametrize("component", SCRAPED)
    def test_selects_the_component_pods_on_http_metrics(self, all_on, component):
        monitor = all_on.get("PodMonitor", f"agentforge-{component}")
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels(all_on, "Deployment", f"agentforge-{component}").items()
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http", "/metrics", "15s")
        assert "http" in container_port_names(all_on, "Deployment", f"agentforge-{component}")
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["agentforge"]}
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/component"

    @pytest.mark.parametrize("workload", NOT_SCRAPED)
    def test_selects_no_other_pods(self, all_on, workload):
        labels = pod_labels(all_on, *workload)
        for component in SCRAPED:
            selector = all_on.get("PodMonitor", f"agentforge-{component}")["spec"]["selector"]["matchLabels"]
            assert not selector.items() <= labels.items()

    def test_interval_timeout_and_labels_from_values(self):
        values = {"monitoring": {"podMonitor": {"enabled": True, "interval": "30s", "scrapeTimeout": "10s",
                                                "labels": {"release": "kube-prometheus-stack"}}}}
        monitor = render_chart(values).get("PodMonitor", "agentforge-backend")
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["podMetricsEndpoints"][0]["interval"] == "30s"
        assert monitor["spec"]["podMetricsEndpoints"][0]["scrapeTimeout"] == "10s"
        assert crd_errors(monitor) == []

    @pytest.mark.parametrize("key,value", [("interval", "15"), ("interval", ""), ("scrapeTimeout", "ten seconds")])
    def test_bad_durations_rejected(self, key, value):
        stderr = render_error({"monitoring": {"podMonitor": {"enabled": True, key: value}}})
        assert f"/monitoring/podMonitor/{key}" in stderr


class TestServiceMonitor:
    @pytest.mark.parametrize("component", SCRAPED)
    def test_valid_against_the_crd(self, all_on, component):
        assert crd_errors(all_on.get("ServiceMonitor", f"agentforge-{component}")) == []

    def test_strict_validation_catches_a_typo(self, all_on):
        monitor = copy.deepcopy(all_on.get("ServiceMonitor", "agentforge-backend"))
        monitor["spec"]["endpoints"][0]["metricsPath"] = "/metrics"
        assert any("metricsPath" in e for e in crd_errors(monitor))

    @pytest.mark.parametrize("component", SCRAPED)
    def test_selects_the_component_service_port_http(self, all_on, component):
        monitor = all_on.get("ServiceMonitor", f"agentforge-{component}")
        service = all_on.get("Service", f"agentforge-{component}")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http", "/metrics", "15s")
        assert "http" in {p["name"] for p in service["spec"]["ports"]}

    @pytest.mark.parametrize("service", ["agentforge-frontend", "agentforge-prometheus", "agentforge-grafana"])
    def test_selects_no_other_service(self, all_on, service):
        labels = all_on.get("Service", service)["metadata"]["labels"]
        for component in SCRAPED:
            selector = all_on.get("ServiceMonitor", f"agentforge-{component}")["spec"]["selector"]["matchLabels"]
            assert not selector.items() <= labels.items()

    def test_labels_from_values(self):
        values = {"monitoring": {"serviceMonitor": {"enabled": True, "labels": {"team": "ai"}}}}
        assert render_chart(values).get("ServiceMonitor", "agentforge-backend")["metadata"]["labels"]["team"] == "ai"


class TestSidecarDashboard:
    def test_labelled_for_the_sidecar(self, all_on):
        configmap = all_on.get("ConfigMap", "agentforge-dashboards")
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        dashboard = json.loads(configmap["data"]["agentforge.json"])
        assert dashboard["uid"] == "agentforge-main"

    def test_panels_use_the_external_datasource_uid(self, all_on):
        text = all_on.get("ConfigMap", "agentforge-dashboards")["data"]["agentforge.json"]
        assert '"uid": "prometheus"' in text and "agentforge-prometheus" not in text
        objects = render_chart({"monitoring": {"dashboardConfigMap": {"enabled": True, "datasourceUid": "thanos"}}})
        dashboard = json.loads(objects.get("ConfigMap", "agentforge-dashboards")["data"]["agentforge.json"])
        for panel in (p for p in dashboard["panels"] if p["type"] != "row"):
            assert panel["datasource"]["uid"] == "thanos"
            assert {t["datasource"]["uid"] for t in panel["targets"]} == {"thanos"}

    def test_label_key_value_and_annotations_from_values(self):
        values = {"monitoring": {"dashboardConfigMap": {"enabled": True, "label": "example.com/dashboard",
                                                        "labelValue": "agentforge",
                                                        "annotations": {"grafana_folder": "Apps"}}}}
        configmap = render_chart(values).get("ConfigMap", "agentforge-dashboards")
        assert configmap["metadata"]["labels"]["example.com/dashboard"] == "agentforge"
        assert "grafana_dashboard" not in configmap["metadata"]["labels"]
        assert configmap["metadata"]["annotations"] == {"grafana_folder": "Apps"}

    @pytest.mark.parametrize("key,value", [("label", "bad key!"), ("labelValue", "-x")])
    def test_bad_label_rejected(self, key, value):
        stderr = render_error({"monitoring": {"dashboardConfigMap": {"enabled": True, key: value}}})
        assert f"/monitoring/dashboardConfigMap/{key}" in stderr


class TestIndependentOfTheBundledPair:
    @pytest.fixture(scope="class")
    @classmethod
    def objects(cls):
        values = copy.deepcopy(ALL_ON)
        values["monitoring"]["enabled"] = False
        return render_chart(values)

    def test_operator_objects_without_bundled_monitoring(self, objects):
        assert {o["metadata"]["name"] for o in objects.of_kind("PodMonitor")} == {
            "agentforge-backend", "agentforge-data-collector"}
        assert len(objects.of_kind("ServiceMonitor")) == 2
        dashboard = json.loads(objects.get("ConfigMap", "agentforge-dashboards")["data"]["agentforge.json"])
        assert dashboard["uid"] == "agentforge-main"
        assert {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p} == {"prometheus"}

    def test_no_bundled_prometheus_or_grafana(self, objects):
        components = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objects
                      if o["kind"] in ("Deployment", "PersistentVolumeClaim", "Service", "Secret", "Role")}
        assert not components & {"prometheus", "grafana"}
        assert objects.find("ConfigMap", "agentforge-grafana-dashboards") is None

    def test_both_dashboards_coexist(self, all_on):
        """The same dashboard twice: the bundled Grafana's names its provisioned datasource, the sidecar's the
        external Prometheus' uid."""
        def panel_uids(name):
            dashboard = json.loads(all_on.get("ConfigMap", name)["data"]["agentforge.json"])
            assert dashboard["uid"] == "agentforge-main", name
            return {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
        assert panel_uids("agentforge-grafana-dashboards") == {"agentforge-prometheus"}
        assert panel_uids("agentforge-dashboards") == {"prometheus"}
        assert "grafana_dashboard" not in all_on.get("ConfigMap", "agentforge-grafana-dashboards")["metadata"]["labels"]
        assert all_on.get("ConfigMap", "agentforge-dashboards")["metadata"]["labels"]["grafana_dashboard"] == "1"
