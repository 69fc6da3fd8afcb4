"""Data collector: uvicorn on 8001 with several workers, the shared settings, and a PDB that never blocks a drain."""

import pytest

from chart import container, env_of, env_sources, flag, pod_spec, render_chart, render_error

COLLECTOR = "agentforge-data-collector"


def collector(objects):
    return objects.get("Deployment", COLLECTOR)


def command(objects):
    return container(collector(objects), "data-collector")["command"]




class TestServer:
    def test_one_replica(self, default_render):
        assert collector(default_render)["spec"]["replicas"] == 1

    def test_uvicorn_two_workers_on_8001(self, default_render):
        cmd = command(default_render)
        assert cmd[:2] == ["uvicorn", "data_collector.main:app"]
        assert flag(cmd, "host") == "0.0.0.0"
        assert flag(cmd, "port") == "8001"
        assert flag(cmd, "workers") == "2"

    def test_layout_matches_the_backend_image(self, default_render):
        c = container(collector(default_render), "data-collector")
        assert c["workingDir"] == "/app"
        assert env_of(c)["PYTHONPATH"]["value"] == "/app"
        assert c["image"] == "agentforge/data-collector:0.10.0"

    def test_grace_period_covers_graceful_shutdown(self, default_render):
        spec = pod_spec(collector(default_render))
        assert spec["terminationGracePeriodSeconds"] > int(flag(command(default_render), "timeout-graceful-shutdown"))

    def test_module_workers_and_extra_args_are_values(self):
        objects = render_chart({"dataCollector": {"server": {
            "module": "collector.app:api", "workers": 4, "extraArgs": ["--log-level=debug"]}}})
        cmd = command(objects)
        assert cmd[1] == "collector.app:api"
        assert flag(cmd, "workers") == "4"
        assert cmd[-1] == "--log-level=debug"

    def test_command_override_replaces_uvicorn(self):
        gunicorn = ["gunicorn", "-w", "2", "-k", "uvicorn.workers.UvicornWorker", "-b", "0.0.0.0:8001",
                    "data_collector.main:app"]
        objects = render_chart({"dataCollector": {"server": {"command": gunicorn}}})
        assert command(objects) == gunicorn

    @pytest.mark.parametrize("workers", [0, "2"])
    def test_bad_worker_count_refused(self, workers):
        assert "workers" in render_error({"dataCollector": {"server": {"workers": workers}}})

    def test_module_without_app_refused(self):
        stderr = render_error({"dataCollector": {"server": {"module": "data_collector"}}})
        assert "/dataCollector/server/module" in stderr


class TestSettings:
    def test_reads_the_shared_configmap_and_secret(self, default_render):
        c = container(collector(default_render), "data-collector")
        assert c["envFrom"] == [{"configMapRef": {"name": "agentforge-config"}},
                                {"secretRef": {"name": "agentforge-secrets"}}]
        sources = env_sources(default_render, collector(default_render), "data-collector")
        for key in ("DATABASE_URL", "REDIS_URL"):
            assert sources[key] == ("Secret", "agentforge-secrets", key)
        for key in ("DEFAULT_RATE_LIMIT_SECONDS", "MAX_COLLECTION_SIZE_MB", "PII_DETECTION_ENABLED"):
            assert sources[key] == ("ConfigMap", "agentforge-config", key)

    def test_pods_roll_on_settings_change(self, default_render):
        annotations = collector(default_render)["spec"]["template"]["metadata"]["annotations"]
        assert {"checksum/config", "checksum/secret"} <= set(annotations)

    def test_existing_secret_is_read(self):
        objects = render_chart({"secrets": {"existingSecret": "my-secrets"}})
        assert {"secretRef": {"name": "my-secrets"}} in container(collector(objects), "data-collector")["envFrom"]


class TestProbesAndSecurity:
    @pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
    def test_probe_on_health_path(self, default_render, probe):
        c = container(collector(default_render), "data-collector")
        assert c[probe]["httpGet"] == {"path": "/api/v1/health", "port": "http"}

    def test_numeric_user_read_only_root_and_tmp(self, default_render):
        deployment = collector(default_render)
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsUser"] == 999 and spec["securityContext"]["runAsNonRoot"] is True
        c = container(deployment, "data-collector")
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {}} in spec["volumes"]
        assert spec["automountServiceAccountToken"] is False


class TestService:
    def test_port_8001_matches_config_url(self, default_render):
        service = default_render.get("Service", COLLECTOR)
        assert service["spec"]["ports"][0]["port"] == 8001
        assert service["spec"]["selector"].items() <= \
            collector(default_render)["spec"]["template"]["metadata"]["labels"].items()
        url = default_render.get("ConfigMap", "agentforge-config")["data"]["DATA_COLLECTOR_URL"]
        assert url == f"http://{COLLECTOR}.agentforge.svc.cluster.local:8001"


class TestDisruptionBudget:
    def test_off_by_default_with_one_replica(self, default_render):
        assert default_render.find("PodDisruptionBudget", COLLECTOR) is None

    def test_enabled_at_one_replica_refused_by_schema(self):
        stderr = render_error({"dataCollector": {"pdb": {"enabled": True, "minAvailable": 1}}})
        assert "at '/dataCollector/pdb/enabled': value must be false" in stderr

    def test_at_replica_count_refused_by_template(self):
        stderr = render_error({"dataCollector": {"replicaCount": 2, "pdb": {"enabled": True, "minAvailable": 2}}})
        assert "dataCollector.pdb.minAvailable (2) must be below the data-collector replica count (2)" in stderr

    def test_enabled_with_two_replicas(self):
        objects = render_chart({"dataCollector": {"replicaCount": 2, "pdb": {"enabled": True}}})
        pdb = objects.get("PodDisruptionBudget", COLLECTOR)
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "data-collector"
