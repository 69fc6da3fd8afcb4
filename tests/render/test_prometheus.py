"""Bundled Prometheus: pod discovery that sees every backend and data-collector pod, promtool, RBAC, storage."""

import copy
import subprocess

import pytest
import yaml

from harness.components import REGISTRY
from harness.monitoring import PROMETHEUS, PROMTOOL, app_job, prometheus_config, scrape_targets
from harness.objects import container, pod_spec
from harness.render import render_chart, render_error

SCRAPED = {c["name"]: c["port"]["number"] for c in REGISTRY if c["scraped"]}


# --- A small model of Prometheus' target discovery and relabeling, enough to run the rendered rules. ---


class TestScrapeTargets:
    """The rendered relabel rules, run over the pods the chart itself renders."""

    @pytest.fixture(scope="class")
    @classmethod
    def job(cls):
        return app_job(prometheus_config(render_chart()))

    def test_discovers_pods_in_the_release_namespace(self, job):
        assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["agentforge"]}}]
        assert "static_configs" not in job, "a Service address reaches one pod per scrape"

    @pytest.mark.parametrize("component,port", SCRAPED.items())
    def test_app_pod_scraped_on_http_port_at_metrics(self, default_render, job, component, port):
        targets = scrape_targets(job, default_render.get("Deployment", f"agentforge-{component}"), "agentforge")
        assert len(targets) == 1, targets
        (target,) = targets
        assert target["__address__"] == f"10.1.2.3:{port}"
        assert target["__meta_kubernetes_pod_container_port_name"] == "http"
        assert target["__metrics_path__"] == "/metrics"
        assert target["__scheme__"] == "http"
        assert target["job"] == component
        assert target["pod"] == f"agentforge-{component}-abc12"
        assert target["namespace"] == "agentforge"

    @pytest.mark.parametrize("workload", [
        ("Deployment", "agentforge-frontend"),
        ("Job", "agentforge-migrate"),
        ("Deployment", "agentforge-prometheus"),
        ("Deployment", "agentforge-grafana"),
        ("StatefulSet", "agentforge-postgresql"),
        ("StatefulSet", "agentforge-redis"),
    ])
    def test_other_components_not_scraped(self, default_render, job, workload):
        assert scrape_targets(job, default_render.get(*workload), "agentforge") == []

    @pytest.mark.parametrize("component", SCRAPED)
    def test_pods_of_another_release_not_scraped(self, job, component):
        other = render_chart(name="other")
        workload = other.get("Deployment", f"other-agentforge-{component}")
        assert scrape_targets(job, workload, "agentforge") == []

    @pytest.mark.parametrize("phase", ["Pending", "Succeeded", "Failed"])
    def test_pods_not_running_not_scraped(self, default_render, job, phase):
        backend = default_render.get("Deployment", "agentforge-backend")
        assert scrape_targets(job, backend, "agentforge", phase=phase) == []

    def test_only_the_port_named_http(self, default_render, job):
        backend = copy.deepcopy(default_render.get("Deployment", "agentforge-backend"))
        c = container(backend, "backend")
        c["ports"].append({"name": "debug", "containerPort": 5678})
        backend["spec"]["template"]["spec"]["containers"].append(
            {"name": "sidecar", "image": "x", "ports": [{"name": "metrics", "containerPort": 9000}]})
        targets = scrape_targets(job, backend, "agentforge")
        assert [t["__address__"] for t in targets] == ["10.1.2.3:8000"]

    def test_other_release_and_namespace_follow(self):
        objects = render_chart(name="chat", namespace="team-a")
        job = app_job(prometheus_config(objects, "chat-agentforge-prometheus"))
        assert job["kubernetes_sd_configs"][0]["namespaces"] == {"names": ["team-a"]}
        backend = objects.get("Deployment", "chat-agentforge-backend")
        assert len(scrape_targets(job, backend, "team-a")) == 1
        assert scrape_targets(job, render_chart().get("Deployment", "agentforge-backend"), "team-a") == []

    def test_keep_rules_on_chart_labels(self, job):
        keeps = {tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r["action"] == "keep"}
        assert keeps[("__meta_kubernetes_pod_label_app_kubernetes_io_instance",)] == "agentforge"
        by_port = keeps[("__meta_kubernetes_pod_label_app_kubernetes_io_component",
                         "__meta_kubernetes_pod_container_port_name")]
        assert by_port == "(backend|data-collector);http|(postgresql|redis);metrics"


class TestIntervals:
    def test_defaults_15s_and_15d(self, default_render):
        config = prometheus_config(default_render)
        assert config["global"]["scrape_interval"] == "15s"
        args = container(default_render.get("Deployment", PROMETHEUS), "prometheus")["args"]
        assert "--storage.tsdb.retention.time=15d" in args

    def test_values_change_them(self):
        objects = render_chart({"prometheus": {"scrapeInterval": "30s", "retention": "30d", "retentionSize": ""}})
        assert prometheus_config(objects)["global"]["scrape_interval"] == "30s"
        args = container(objects.get("Deployment", PROMETHEUS), "prometheus")["args"]
        assert "--storage.tsdb.retention.time=30d" in args
        assert not any(a.startswith("--storage.tsdb.retention.size") for a in args)

    @pytest.mark.parametrize("key,value", [("scrapeInterval", "15"), ("scrapeInterval", "15 s"), ("retention", ""),
                                           ("retentionSize", "8Gi")])
    def test_bad_durations_rejected(self, key, value):
        assert f"/prometheus/{key}" in render_error({"prometheus": {key: value}})

    def test_config_change_rolls_the_pod(self, default_render):
        def checksum(objects):
            return objects.get("Deployment", PROMETHEUS)["spec"]["template"]["metadata"]["annotations"]
        assert checksum(default_render)["checksum/config"] != checksum(
            render_chart({"prometheus": {"scrapeInterval": "30s"}}, fresh=True))["checksum/config"]
        # Same config, fresh render (or a flag outside the config file): the same checksum, no roll.
        for values in ({}, {"prometheus": {"retention": "30d"}}):
            assert checksum(render_chart(values, fresh=True))["checksum/config"] == \
                checksum(default_render)["checksum/config"], values


@pytest.fixture(scope="module")
def promtool():
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: run `make tools` (scripts/install-tools.sh builds it)")
    return str(PROMTOOL)


class TestPromtool:
    @pytest.mark.parametrize("values,name,namespace", [
        ({}, "agentforge", "agentforge"),
        ({"prometheus": {"scrapeInterval": "1m"}}, "chat", "team-a"),
    ])
    def test_check_config_passes(self, promtool, tmp_path, values, name, namespace):
        objects = render_chart(values, name=name, namespace=namespace)
        prefix = name if "agentforge" in name else f"{name}-agentforge"
        # Every key of the ConfigMap, as the pod mounts it: prometheus.yml names alerts.yml (test_alerts.py).
        for key, text in objects.get("ConfigMap", f"{prefix}-prometheus")["data"].items():
            (tmp_path / key).write_text(text)
        path = tmp_path / "prometheus.yml"
        proc = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "SUCCESS" in proc.stdout + proc.stderr

    def test_check_config_catches_a_broken_rule(self, promtool, tmp_path, default_render):
        """Control: the same check fails once a rule is broken, so a pass above means something."""
        config = prometheus_config(default_render)
        app_job(config)["relabel_configs"][0]["action"] = "keeep"
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        assert "keeep" in proc.stdout + proc.stderr


class TestDeployment:
    def test_one_replica_recreated(self, default_render):
        spec = default_render.get("Deployment", PROMETHEUS)["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}

    def test_image_default_and_tag_value(self, default_render):
        image = container(default_render.get("Deployment", PROMETHEUS), "prometheus")["image"]
        assert image == "prom/prometheus:v2.51.0"
        objects = render_chart({"prometheus": {"image": {"tag": "v2.53.0"}}})
        assert container(objects.get("Deployment", PROMETHEUS), "prometheus")["image"] == "prom/prometheus:v2.53.0"

    def test_non_root_read_only(self, default_render):
        deployment = default_render.get("Deployment", PROMETHEUS)
        pod = pod_spec(deployment)["securityContext"]
        assert (pod["runAsUser"], pod["runAsNonRoot"], pod["fsGroup"]) == (65534, True, 65534)
        sc = container(deployment, "prometheus")["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        mounts = {m["mountPath"]: m for m in container(deployment, "prometheus")["volumeMounts"]}
        assert "--storage.tsdb.path=/prometheus" in container(deployment, "prometheus")["args"]
        assert mounts["/prometheus"]["name"] == "data"

    @pytest.mark.parametrize("probe,path", [("startupProbe", "/-/ready"), ("readinessProbe", "/-/ready"),
                                            ("livenessProbe", "/-/healthy")])
    def test_probes(self, default_render, probe, path):
        c = container(default_render.get("Deployment", PROMETHEUS), "prometheus")
        assert c[probe]["httpGet"] == {"path": path, "port": "http"}

    def test_config_mounted_from_the_configmap(self, default_render):
        deployment = default_render.get("Deployment", PROMETHEUS)
        c = container(deployment, "prometheus")
        assert "--config.file=/etc/prometheus/prometheus.yml" in c["args"]
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        assert volumes["config"]["configMap"]["name"] == PROMETHEUS
        assert {"name": "config", "mountPath": "/etc/prometheus", "readOnly": True} in c["volumeMounts"]

    def test_service_on_9090(self, default_render):
        service = default_render.get("Service", PROMETHEUS)
        assert service["spec"]["ports"] == [{"name": "http", "port": 9090, "targetPort": "http", "protocol": "TCP"}]
        pod_labels = default_render.get("Deployment", PROMETHEUS)["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()


class TestToken:
    def test_only_prometheus_mounts_a_token(self, default_render):
        for obj in default_render:
            if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
                expected = obj["metadata"]["name"] == PROMETHEUS
                assert pod_spec(obj)["automountServiceAccountToken"] is expected, obj["metadata"]["name"]

    def test_prometheus_runs_as_its_own_account(self, default_render):
        spec = pod_spec(default_render.get("Deployment", PROMETHEUS))
        assert spec["serviceAccountName"] == PROMETHEUS
        assert default_render.get("ServiceAccount", PROMETHEUS)["automountServiceAccountToken"] is False


class TestRbac:
    def test_namespaced_role_only(self, default_render):
        kinds = {o["kind"] for o in default_render}
        assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
        assert default_render.get("Role", PROMETHEUS)["metadata"]["namespace"] == "agentforge"

    def test_exactly_pods_get_list_watch(self, default_render):
        assert default_render.get("Role", PROMETHEUS)["rules"] == [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]

    def test_binding_grants_the_role_to_prometheus(self, default_render):
        binding = default_render.get("RoleBinding", PROMETHEUS)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": PROMETHEUS}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": PROMETHEUS, "namespace": "agentforge"}]

    def test_existing_account_is_bound(self):
        objects = render_chart({"prometheus": {"serviceAccount": {"create": False, "name": "metrics"}}})
        assert objects.find("ServiceAccount", PROMETHEUS) is None
        assert objects.get("RoleBinding", PROMETHEUS)["subjects"][0]["name"] == "metrics"
        assert pod_spec(objects.get("Deployment", PROMETHEUS))["serviceAccountName"] == "metrics"


class TestClaim:
    def test_10gi_kept_on_uninstall(self, default_render):
        claim = default_render.get("PersistentVolumeClaim", PROMETHEUS)
        assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert "storageClassName" not in claim["spec"]
        volumes = {v["name"]: v for v in pod_spec(default_render.get("Deployment", PROMETHEUS))["volumes"]}
        assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": PROMETHEUS}}

    @pytest.mark.parametrize("storage_class,expected", [("-", ""), ("fast", "fast")])
    def test_storage_class(self, storage_class, expected):
        objects = render_chart({"prometheus": {"persistence": {"storageClass": storage_class, "size": "50Gi"}}})
        spec = objects.get("PersistentVolumeClaim", PROMETHEUS)["spec"]
        assert spec["storageClassName"] == expected
        assert spec["resources"]["requests"]["storage"] == "50Gi"

    def test_existing_claim(self):
        objects = render_chart({"prometheus": {"persistence": {"existingClaim": "metrics-data"}}})
        assert objects.find("PersistentVolumeClaim", PROMETHEUS) is None
        volumes = {v["name"]: v for v in pod_spec(objects.get("Deployment", PROMETHEUS))["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "metrics-data"}

    def test_persistence_off_uses_empty_dir(self):
        objects = render_chart({"prometheus": {"persistence": {"enabled": False}}})
        assert objects.find("PersistentVolumeClaim", PROMETHEUS) is None
        volumes = {v["name"]: v for v in pod_spec(objects.get("Deployment", PROMETHEUS))["volumes"]}
        assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_monitoring_disabled_renders_no_prometheus():
    objects = render_chart({"monitoring": {"enabled": False}})
    assert not [o for o in objects if o["metadata"]["labels"]["app.kubernetes.io/component"] == "prometheus"]
