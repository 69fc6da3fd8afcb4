"""Frontend: Next.js standalone on 3000, two replicas, a PDB that never blocks a drain, a writable cache."""

import pytest

from harness.objects import container, env_of, pod_spec, volumes_by_mount
from harness.render import render_chart, render_error

FRONTEND = "agentforge-frontend"


def frontend(objects):
    return objects.get("Deployment", FRONTEND)


class TestWorkload:
    def test_two_replicas_rolling_without_downtime(self, default_render):
        spec = frontend(default_render)["spec"]
        assert spec["replicas"] == 2
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    def test_image_defaults_to_app_version(self, default_render):
        c = container(frontend(default_render), "frontend")
        assert c["image"] == "agentforge/frontend:0.10.0"

    def test_global_registry_and_digest(self):
        digest = "sha256:" + "a" * 64
        objects = render_chart({"global": {"imageRegistry": "registry.example.com"},
                                "frontend": {"image": {"digest": digest}}})
        c = container(frontend(objects), "frontend")
        assert c["image"] == f"registry.example.com/agentforge/frontend@{digest}"

    def test_listens_on_every_address_on_3000(self, default_render):
        c = container(frontend(default_render), "frontend")
        env = env_of(c)
        # Kubernetes sets HOSTNAME to the pod name; Next.js standalone would bind to that address only.
        assert env["HOSTNAME"]["value"] == "0.0.0.0"
        assert env["PORT"]["value"] == "3000"
        assert c["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]

    def test_reads_no_application_settings_or_secrets(self, default_render):
        c = container(frontend(default_render), "frontend")
        assert "envFrom" not in c
        assert not any("valueFrom" in e for e in c["env"])

    def test_replicas_and_extra_env_are_values(self):
        objects = render_chart({"frontend": {"replicaCount": 3, "extraEnv": [{"name": "X", "value": "1"}]}})
        assert frontend(objects)["spec"]["replicas"] == 3
        assert env_of(container(frontend(objects), "frontend"))["X"]["value"] == "1"


class TestProbes:
    @pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
    def test_probe_on_root(self, default_render, probe):
        c = container(frontend(default_render), "frontend")
        assert c[probe]["httpGet"] == {"path": "/", "port": "http"}


class TestSecurity:
    def test_numeric_non_root_user_1001(self, default_render):
        ctx = pod_spec(frontend(default_render))["securityContext"]
        assert (ctx["runAsUser"], ctx["runAsGroup"], ctx["fsGroup"]) == (1001, 1001, 1001)
        assert ctx["runAsNonRoot"] is True

    def test_read_only_root_with_writable_cache_and_tmp(self, default_render):
        deployment = frontend(default_render)
        c = container(deployment, "frontend")
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        mounted = volumes_by_mount(deployment, "frontend")
        for path in ("/app/.next/cache", "/tmp"):
            assert "emptyDir" in mounted[path], path
        assert mounted["/app/.next/cache"]["emptyDir"]["sizeLimit"] == "1Gi"

    def test_no_service_account_token(self, default_render):
        spec = pod_spec(frontend(default_render))
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == FRONTEND
        assert default_render.get("ServiceAccount", FRONTEND)["automountServiceAccountToken"] is False


class TestService:
    def test_port_3000_selects_frontend_pods_only(self, default_render):
        service = default_render.get("Service", FRONTEND)
        assert service["spec"]["ports"] == [{"name": "http", "port": 3000, "targetPort": "http", "protocol": "TCP"}]
        selector = service["spec"]["selector"]
        assert selector.items() <= frontend(default_render)["spec"]["template"]["metadata"]["labels"].items()
        for other in default_render.of_kind("Deployment") + default_render.of_kind("StatefulSet"):
            if other["metadata"]["name"] != FRONTEND:
                assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()


class TestAutoscaling:
    """An optional HPA (off by default): the frontend is stateless and scales freely."""

    HPA = {"frontend": {"autoscaling": {"enabled": True}}}

    def test_off_by_default(self, default_render):
        assert default_render.find("HorizontalPodAutoscaler", FRONTEND) is None
        assert frontend(default_render)["spec"]["replicas"] == 2

    def test_hpa_targets_the_deployment_on_cpu(self):
        objects = render_chart(self.HPA)
        hpa = objects.get("HorizontalPodAutoscaler", FRONTEND)
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FRONTEND}
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
        assert "behavior" not in hpa["spec"], "Kubernetes' default behavior unless asked"
        assert "replicas" not in frontend(objects)["spec"], "the HPA owns the replica count"

    def test_behavior_rendered(self):
        behavior = {"scaleDown": {"selectPolicy": "Disabled"},
                    "scaleUp": {"policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}]}}
        objects = render_chart({"frontend": {"autoscaling": {"enabled": True, "behavior": behavior}}})
        assert objects.get("HorizontalPodAutoscaler", FRONTEND)["spec"]["behavior"] == behavior

    def test_min_above_max_refused(self):
        stderr = render_error({"frontend": {"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 3},
                                            "pdb": {"enabled": False}}})
        assert "frontend.autoscaling.minReplicas (4) must not exceed frontend.autoscaling.maxReplicas (3)" in stderr

    def test_budget_counts_the_hpa_minimum(self):
        """With the HPA on, the PDB is checked against minReplicas, not replicaCount."""
        stderr = render_error({"frontend": {"autoscaling": {"enabled": True, "minReplicas": 2},
                                            "replicaCount": 5, "pdb": {"minAvailable": 2}}})
        assert "frontend.pdb.minAvailable (2) must be below the frontend replica count (2)" in stderr
        objects = render_chart({"frontend": {"autoscaling": {"enabled": True, "minReplicas": 3},
                                             "pdb": {"minAvailable": 2}}})
        assert objects.get("PodDisruptionBudget", FRONTEND)["spec"]["minAvailable"] == 2

    def test_one_replica_minimum_needs_a_budget_that_allows_eviction(self):
        stderr = render_error({"frontend": {"autoscaling": {"enabled": True, "minReplicas": 1}}})
        assert "at '/frontend/pdb/enabled'" in stderr
        objects = render_chart({"frontend": {"autoscaling": {"enabled": True, "minReplicas": 1},
                                             "pdb": {"minAvailable": None, "maxUnavailable": 1}}})
        assert objects.get("PodDisruptionBudget", FRONTEND)["spec"]["maxUnavailable"] == 1

    def test_replica_count_one_with_hpa_is_not_the_one_replica_rule(self):
        """replicaCount is ignored while the HPA is on: it does not trigger the one-replica budget rule."""
        objects = render_chart({"frontend": {"autoscaling": {"enabled": True}, "replicaCount": 1}})
        assert objects.get("PodDisruptionBudget", FRONTEND)["spec"]["minAvailable"] == 1


class TestDisruptionBudget:
    def test_min_available_one_of_two(self, default_render):
        pdb = default_render.get("PodDisruptionBudget", FRONTEND)
        assert pdb["spec"]["minAvailable"] == 1
        pod_labels = frontend(default_render)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    def test_budget_with_one_replica_refused_by_schema(self):
        stderr = render_error({"frontend": {"replicaCount": 1}})
        assert "at '/frontend/pdb/enabled': value must be false" in stderr

    @pytest.mark.parametrize("replicas,min_available", [(2, 2), (3, 5)])
    def test_budget_at_or_above_replicas_refused(self, replicas, min_available):
        stderr = render_error({"frontend": {"replicaCount": replicas, "pdb": {"minAvailable": min_available}}})
        expected = f"frontend.pdb.minAvailable ({min_available}) must be below the frontend replica count ({replicas})"
        assert expected in stderr

    def test_single_replica_without_budget_accepted(self):
        objects = render_chart({"frontend": {"replicaCount": 1, "pdb": {"enabled": False}}})
        assert objects.find("PodDisruptionBudget", FRONTEND) is None
        assert frontend(objects)["spec"]["replicas"] == 1

    def test_percentage_passes_through(self):
        objects = render_chart({"frontend": {"pdb": {"minAvailable": "50%"}}})
        assert objects.get("PodDisruptionBudget", FRONTEND)["spec"]["minAvailable"] == "50%"


class TestBundleCheck:
    """`helm test` checks the frontend image was built for frontend.publicUrls (run for real by the real-pod tier)."""

    @staticmethod
    def urls(objects) -> dict[str, str]:
        pod = objects.get("Pod", "agentforge-test-frontend-bundle")
        env = env_of(container(pod, "frontend-bundle"))
        return {key: env[key]["value"] for key in ("FRONTEND_URL", "PUBLIC_API_URL", "PUBLIC_WS_URL")}

    def test_defaults_follow_the_first_cors_origin(self, default_render):
        assert self.urls(default_render) == {
            "FRONTEND_URL": "http://agentforge-frontend.agentforge.svc.cluster.local:3000",
            "PUBLIC_API_URL": "https://agentforge.example.com", "PUBLIC_WS_URL": "wss://agentforge.example.com"}

    @pytest.mark.parametrize("origin, ws", [("http://localhost:8000", "ws://localhost:8000"),
                                            ("https://app.example.org:8443", "wss://app.example.org:8443")])
    def test_ws_follows_the_api_origin(self, origin, ws):
        urls = self.urls(render_chart({"frontend": {"publicUrls": {"api": origin}}}))
        assert (urls["PUBLIC_API_URL"], urls["PUBLIC_WS_URL"]) == (origin, ws)

    def test_explicit_origins_win(self):
        urls = self.urls(render_chart({"frontend": {"publicUrls": {"api": "https://a.example", "ws": "wss://b.example"}}}))
        assert (urls["PUBLIC_API_URL"], urls["PUBLIC_WS_URL"]) == ("https://a.example", "wss://b.example")

    def test_no_check_when_any_origin_is_allowed_and_none_is_given(self):
        objects = render_chart({"config": {"corsOrigins": ["*"]}})
        assert objects.find("Pod", "agentforge-test-frontend-bundle") is None

    @pytest.mark.parametrize("key, value", [("api", "https://host/path"), ("api", "wss://host"), ("ws", "https://host")])
    def test_schema_refuses_what_is_not_a_bare_origin(self, key, value):
        message = render_error({"frontend": {"publicUrls": {key: value}}})
        assert f"/frontend/publicUrls/{key}" in message
