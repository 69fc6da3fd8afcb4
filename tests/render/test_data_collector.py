"""Data collector: one uvicorn process on 8001 (its collections live in memory), no settings, no Secret, no PDB."""

import pytest

from harness.objects import container, env_of, env_sources, flag, pod_spec
from harness.render import render_chart, render_error

COLLECTOR = "agentforge-data-collector"


def collector(objects):
    return objects.get("Deployment", COLLECTOR)


def command(objects):
    return container(collector(objects), "data-collector")["command"]


class TestServer:
    def test_one_replica(self, default_render):
        assert collector(default_render)["spec"]["replicas"] == 1

    def test_uvicorn_one_worker_on_8001(self, default_render):
        cmd = command(default_render)
        assert cmd[:2] == ["uvicorn", "data_collector.main:app"]
        assert flag(cmd, "host") == "0.0.0.0"
        assert flag(cmd, "port") == "8001"
        assert flag(cmd, "workers") == "1"

    def test_layout_of_the_collector_image(self, default_render):
        """docker/Dockerfile.collector: the code in /src/data_collector, PYTHONPATH=/src (test_app_data_collector.py
        runs it so)."""
        c = container(collector(default_render), "data-collector")
        assert c["workingDir"] == "/src"
        assert env_of(c)["PYTHONPATH"]["value"] == "/src"
        assert c["image"] == "agentforge/data-collector:0.10.0"

    def test_grace_period_covers_graceful_shutdown(self, default_render):
        spec = pod_spec(collector(default_render))
        assert spec["terminationGracePeriodSeconds"] > int(flag(command(default_render), "timeout-graceful-shutdown"))

    def test_module_and_extra_args_are_values(self):
        objects = render_chart({"dataCollector": {"server": {
            "module": "collector.app:api", "extraArgs": ["--log-level=debug"]}}})
        cmd = command(objects)
        assert cmd[1] == "collector.app:api"
        assert cmd[-1] == "--log-level=debug"

    @pytest.mark.parametrize("values,where", [
        ({"server": {"workers": 2}}, "/dataCollector/server/workers"),
        ({"server": {"workers": "1"}}, "/dataCollector/server/workers"),
        ({"replicaCount": 2}, "/dataCollector/replicaCount"),
        ({"server": {"command": ["gunicorn", "-w", "2"]}}, "/dataCollector/server"),
        ({"pdb": {"enabled": True}}, "/dataCollector"),
    ])
    def test_more_than_one_process_refused(self, values, where):
        assert f"at '{where}'" in render_error({"dataCollector": values})

    @pytest.mark.parametrize("args,refused", [
        (["--workers=2"], "--workers=2"),
        (["--workers", "2"], "--workers"),
        (["--reload"], "--reload"),
        (["--limit-max-requests=100"], "--limit-max-requests=100"),
        (["--limit-max-requests", "100"], "--limit-max-requests"),
    ])
    def test_extra_args_cannot_add_processes(self, args, refused):
        stderr = render_error({"dataCollector": {"server": {"extraArgs": ["--log-level=info", *args]}}})
        assert f'dataCollector.server.extraArgs must not contain "{refused}"' in stderr

    @pytest.mark.parametrize("name", ["UVICORN_LIMIT_MAX_REQUESTS", "UVICORN_RELOAD", "UVICORN_WORKERS",
                                      "WEB_CONCURRENCY"])
    def test_extra_env_cannot_set_server_options(self, name):
        """uvicorn reads options the command line leaves out from UVICORN_<OPTION> variables."""
        stderr = render_error({"dataCollector": {"extraEnv": [{"name": name, "value": "2"}]}})
        assert f"dataCollector.extraEnv must not set {name}" in stderr

    def test_module_without_app_refused(self):
        stderr = render_error({"dataCollector": {"server": {"module": "data_collector"}}})
        assert "/dataCollector/server/module" in stderr


class TestSettings:
    """The collector reads no environment variable and connects to no database (test_app_settings.py proves it
    on the code): it gets no app ConfigMap or Secret."""

    def test_no_settings_and_no_secret(self, default_render):
        c = container(collector(default_render), "data-collector")
        assert "envFrom" not in c
        assert set(env_sources(default_render, collector(default_render), "data-collector")) == {
            "PYTHONPATH", "PYTHONDONTWRITEBYTECODE"}

    def test_no_settings_checksums(self, default_render):
        annotations = collector(default_render)["spec"]["template"]["metadata"].get("annotations", {})
        assert not [a for a in annotations if a.startswith("checksum/")]

    def test_existing_secret_not_read(self):
        objects = render_chart({"secrets": {"existingSecret": "my-secrets"}})
        assert "my-secrets" not in str(collector(objects))


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
    def test_none_with_its_one_replica(self, default_render):
        """A budget on the one pod would allow no eviction and block every node drain."""
        assert default_render.find("PodDisruptionBudget", COLLECTOR) is None
