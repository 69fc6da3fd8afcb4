"""Backend tier: one uvicorn worker, a command the real image accepts, probes, HPA, PDB."""

import re
import subprocess
import sys

import pytest

from harness import appsrc
from harness.objects import argv, container, flag, pod_spec
from harness.render import render_chart, render_error
from harness.values import SCENARIOS

BACKEND = "agentforge-backend"


def backend_command(objects):
    """The server's command line: the container's args, which its command (the log redaction and the Redis wait)
    hands to uvicorn's CLI, run in the same process."""
    return container(objects.get("Deployment", BACKEND), "backend")["args"]




class TestServerCommand:
    def test_exactly_one_worker(self, default_render):
        command = backend_command(default_render)
        assert command[0] == "uvicorn"
        assert flag(command, "workers") == "1"

    def test_no_gunicorn_and_frame_limit_kept(self, default_render):
        command = backend_command(default_render)
        assert not any("gunicorn" in arg for arg in command), "gunicorn rejects --ws-max-size"
        assert flag(command, "ws-max-size") == "1048576"

    def test_no_worker_recycling(self, default_render):
        command = backend_command(default_render)
        assert not any(arg.startswith(("--limit-max-requests", "--max-requests")) for arg in command)

    def test_proxy_headers_trusted_and_proxy_count_set(self, default_render):
        command = backend_command(default_render)
        assert "--proxy-headers" in command
        assert flag(command, "forwarded-allow-ips") == "*"
        config = default_render.get("ConfigMap", "agentforge-config")["data"]
        assert config["TRUSTED_PROXY_COUNT"] == "1"

    def test_module_port_and_layout(self, default_render):
        deployment = default_render.get("Deployment", BACKEND)
        c = container(deployment, "backend")
        assert c["args"][1] == "backend.gateway.main:app"
        assert flag(c["args"], "port") == "8000"
        assert c["workingDir"] == "/app"
        assert {"name": "PYTHONPATH", "value": "/app"} in c["env"]
        assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]

    def test_module_and_extra_args_are_values(self):
        objects = render_chart({"backend": {"server": {"module": "app.main:app", "extraArgs": ["--log-level=debug"]}}})
        command = backend_command(objects)
        assert command[1] == "app.main:app"
        assert command[-1] == "--log-level=debug"

    @pytest.mark.parametrize("workers", [0, 2, 4, "1"])
    def test_worker_count_other_than_one_rejected(self, workers):
        stderr = render_error({"backend": {"server": {"workers": workers}}})
        assert "workers" in stderr

    @pytest.mark.parametrize("args,refused", [
        (["--workers=2"], "--workers=2"),
        (["--workers", "2"], "--workers"),             # click takes the value from the next argument
        (["--reload"], "--reload"),
        (["--limit-max-requests=1000"], "--limit-max-requests=1000"),
        (["--limit-max-requests", "1000"], "--limit-max-requests"),
    ])
    def test_extra_args_cannot_add_or_recycle_processes(self, args, refused):
        """uvicorn (the command, not gunicorn: see test_no_gunicorn_and_frame_limit_kept) takes the worker count and
        worker recycling as `--opt=N` or `--opt N`; the schema's `workers: const 1` must not be bypassed by either."""
        stderr = render_error({"backend": {"server": {"extraArgs": ["--log-level=info", *args]}}})
        assert f'backend.server.extraArgs must not contain "{refused}"' in stderr

    @pytest.mark.parametrize("name", ["UVICORN_LIMIT_MAX_REQUESTS", "UVICORN_RELOAD", "UVICORN_WORKERS",
                                      "WEB_CONCURRENCY"])
    def test_extra_env_cannot_set_server_options(self, name):
        """uvicorn reads an option the command line leaves out from UVICORN_<OPTION> (click's auto_envvar_prefix):
        UVICORN_LIMIT_MAX_REQUESTS would recycle the only worker, UVICORN_RELOAD would run it under a reloader."""
        stderr = render_error({"backend": {"extraEnv": [{"name": "LOG_LEVEL", "value": "info"},
                                                        {"name": name, "value": "2"}]}})
        assert f"backend.extraEnv must not set {name}" in stderr

    def test_other_limits_and_variables_accepted(self):
        """The refusal is no broader than the options that change the process count."""
        objects = render_chart({"backend": {"server": {"extraArgs": ["--limit-concurrency=100", "--reload-delay=1"]},
                                            "extraEnv": [{"name": "UVICORN_LOG_LEVEL", "value": "debug"}]}})
        assert backend_command(objects)[-2:] == ["--limit-concurrency=100", "--reload-delay=1"]
        assert flag(backend_command(objects), "workers") == "1"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rolling_update_never_takes_a_pod_away_first(scenario):
    """One worker per pod holds its WebSocket sessions: a rollout must start the new pod (maxSurge) before it stops an
    old one (maxUnavailable 0), or capacity and sessions drop by a whole pod at once, in every scenario."""
    deployment = render_chart(SCENARIOS[scenario]).get("Deployment", BACKEND)
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


@pytest.mark.parametrize("strategy", [{"type": "Recreate"}, {"rollingUpdate": {"maxUnavailable": 1}},
                                      {"rollingUpdate": {"maxSurge": 2, "maxUnavailable": "25%"}}])
def test_no_strategy_override_takes_a_pod_away_first(strategy):
    """backend.strategy may raise maxSurge only (test_extensions.py): what stops an old pod first is refused."""
    assert "backend.strategy must be a RollingUpdate with rollingUpdate.maxUnavailable 0" in render_error(
        {"backend": {"strategy": strategy}})


# Log lines as the app and uvicorn write them (gateway/rate_limiter.py, uvicorn's WebSocket "[accepted]" line).
LOG_PROBE = """
import logging, sys
logging.basicConfig(stream=sys.stdout, format="%(message)s", level=logging.INFO)
app = logging.getLogger("backend.gateway.rate_limiter")
app.warning("Redis unavailable at %s - rate limiting disabled", "redis://:s3cret-pw@redis:6379/0")
app.info("Redis connected at %s", "rediss://acl-user:p%40ss@redis:6380/1?ssl_cert_reqs=required")
logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" [accepted]', "10.0.0.9:41000",
                                        "/api/v1/ws/chat/c1?token=eyJhbGciOi.payload.sig&lang=en")
logging.getLogger("x").info("GET /api/v1/ws/chat/c2?lang=en&token=eyJsecond HTTP/1.1")
"""


class TestLogRedaction:
    def test_records_lose_tokens_and_url_passwords(self, default_render):
        """The record factory at the head of the backend's command, run as rendered, on the lines that would leak."""
        script = container(default_render.get("Deployment", BACKEND), "backend")["command"][2]
        factory = script[:script.index("import asyncio")]
        out = subprocess.run([sys.executable, "-c", factory + LOG_PROBE], capture_output=True, text=True,
                             check=True).stdout
        for secret in ("s3cret-pw", "p%40ss", "eyJhbGciOi", "eyJsecond"):
            assert secret not in out, out
        for kept in ("redis://:[redacted]@redis:6379/0", "rediss://acl-user:[redacted]@redis:6380/1",
                     "/api/v1/ws/chat/c1?token=[redacted]&lang=en", "?lang=en&token=[redacted] HTTP/1.1"):
            assert kept in out, out


class TestProbesAndShutdown:
    @pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
    def test_probe_on_health_path(self, default_render, probe):
        c = container(default_render.get("Deployment", BACKEND), "backend")
        assert c[probe]["httpGet"] == {"path": "/api/v1/health", "port": "http"}

    def test_graceful_shutdown_lets_the_apps_longest_pipeline_finish(self, default_render):
        """uvicorn cancels what still runs when --timeout-graceful-shutdown ends; a pipeline records its cost only
        when it finishes, and runs at most the orchestrator's DEFAULT_TIMEOUT (read from the app's source)."""
        source = (appsrc.source_root() / "backend" / "pipeline" / "orchestrator.py").read_text()
        timeout = int(re.search(r"^DEFAULT_TIMEOUT\s*=\s*(\d+)", source, re.M).group(1))
        assert int(flag(backend_command(default_render), "timeout-graceful-shutdown")) >= timeout

    def test_graceful_shutdown_covers_websocket_drain(self, default_render):
        deployment = default_render.get("Deployment", BACKEND)
        spec = pod_spec(deployment)
        c = container(deployment, "backend")
        pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        drain = int(flag(argv(c), "timeout-graceful-shutdown"))
        assert pre_stop > 0 and drain >= 30
        assert spec["terminationGracePeriodSeconds"] > pre_stop + drain


class TestAutoscaling:
    def test_hpa_targets_deployment_cpu_70_2_to_5(self, default_render):
        hpa = default_render.get("HorizontalPodAutoscaler", BACKEND)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": BACKEND}
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}

    def test_deployment_leaves_replicas_to_hpa(self, default_render):
        assert "replicas" not in default_render.get("Deployment", BACKEND)["spec"]

    def test_replicas_set_when_hpa_off(self):
        objects = render_chart({"backend": {"autoscaling": {"enabled": False}, "replicaCount": 3}})
        assert objects.get("Deployment", BACKEND)["spec"]["replicas"] == 3
        assert objects.find("HorizontalPodAutoscaler", BACKEND) is None

    def test_min_above_max_rejected(self):
        stderr = render_error({"backend": {"autoscaling": {"minReplicas": 6, "maxReplicas": 5}}})
        assert "backend.autoscaling.minReplicas" in stderr

    def test_scales_down_one_pod_at_a_time_by_default(self, default_render):
        """Each removed pod closes its WebSockets and loses the sessions in its memory: at most one pod every 5
        minutes, after 10 minutes of lower load; scale-up keeps Kubernetes' defaults."""
        behavior = default_render.get("HorizontalPodAutoscaler", BACKEND)["spec"]["behavior"]
        assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 600,
                                          "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]}}

    def test_behavior_merges_over_the_default_and_can_be_cleared(self):
        scale_up = {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 100,
                                                                   "periodSeconds": 30}]}
        objects = render_chart({"backend": {"autoscaling": {"behavior": {"scaleUp": scale_up}}}})
        behavior = objects.get("HorizontalPodAutoscaler", BACKEND)["spec"]["behavior"]
        assert behavior["scaleUp"] == scale_up
        assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]
        cleared = render_chart({"backend": {"autoscaling": {"behavior": None}}})
        assert "behavior" not in cleared.get("HorizontalPodAutoscaler", BACKEND)["spec"]


class TestDisruptionBudget:
    def test_pdb_min_available_one_selects_backend_pods(self, default_render):
        pdb = default_render.get("PodDisruptionBudget", BACKEND)
        assert pdb["spec"]["minAvailable"] == 1
        pod_labels = default_render.get("Deployment", BACKEND)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    def test_pdb_with_one_replica_refused_by_schema(self):
        stderr = render_error({"backend": {"autoscaling": {"enabled": False}, "replicaCount": 1}})
        assert "at '/backend/pdb/enabled': value must be false" in stderr

    def test_pdb_at_replica_count_refused_by_template(self):
        stderr = render_error({"backend": {"autoscaling": {"enabled": False}, "replicaCount": 2,
                                           "pdb": {"minAvailable": 2}}})
        assert "backend.pdb.minAvailable (2) must be below the backend replica count (2)" in stderr

    def test_pdb_can_be_disabled(self):
        objects = render_chart({"backend": {"pdb": {"enabled": False}}})
        assert objects.find("PodDisruptionBudget", BACKEND) is None


class TestServiceAndAccount:
    def test_service_port_8000_selects_backend_pods(self, default_render):
        service = default_render.get("Service", BACKEND)
        assert service["spec"]["ports"][0]["port"] == 8000
        pod_labels = default_render.get("Deployment", BACKEND)["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()

    def test_service_account_without_token(self, default_render):
        sa = default_render.get("ServiceAccount", BACKEND)
        assert sa["automountServiceAccountToken"] is False
        spec = pod_spec(default_render.get("Deployment", BACKEND))
        assert spec["serviceAccountName"] == BACKEND
        assert spec["automountServiceAccountToken"] is False


class TestWaitForRedis:
    """The init container that holds the backend until Redis answers (test_app_backend.py runs it against Redis)."""

    @staticmethod
    def wait(objects):
        return container(objects.get("Deployment", BACKEND), "wait-for-redis")

    def test_redis_image_and_the_bundled_service(self, default_render):
        c = self.wait(default_render)
        assert c["image"] == "library/redis:7-alpine"
        assert {e["name"]: e.get("value") for e in c["env"]} | {"REDISCLI_AUTH": None} == {
            "REDIS_HOST": "agentforge-redis.agentforge.svc.cluster.local", "REDIS_PORT": "6379",
            "REDISCLI_AUTH": None}
        assert pod_spec(default_render.get("Deployment", BACKEND))["initContainers"] == [c]

    def test_password_from_the_secret_optional(self, default_render):
        ref = {e["name"]: e for e in self.wait(default_render)["env"]}["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "agentforge-secrets", "key": "REDIS_PASSWORD", "optional": True}

    def test_external_redis_and_private_registry(self):
        objects = render_chart({"redis": {"enabled": False},
                                "externalRedis": {"host": "cache.example.net", "port": 6380, "password": "x"},
                                "global": {"imageRegistry": "mirror.example:5000"}})
        c = self.wait(objects)
        assert c["image"] == "mirror.example:5000/library/redis:7-alpine"
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert (env["REDIS_HOST"], env["REDIS_PORT"]) == ("cache.example.net", "6380")

    def test_restricted_and_small(self, default_render):
        c = self.wait(default_render)
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert c["resources"] == {"requests": {"cpu": "10m", "memory": "16Mi"},
                                  "limits": {"cpu": "100m", "memory": "64Mi"}}
