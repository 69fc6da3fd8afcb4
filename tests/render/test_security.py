"""Security posture: every pod meets the Pod Security Standard "restricted", and the chart's own rules."""

import pytest

from harness.podsecurity import containers, restricted_violations
from harness.render import render_chart
from harness.values import SCENARIOS

POD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod", "DaemonSet", "CronJob")
# Components whose pods call the Kubernetes API (Prometheus discovers pods).
API_CALLERS = {"prometheus"}


def pods(objects):
    for obj in objects:
        if obj["kind"] in POD_KINDS:
            if obj["kind"] == "CronJob":
                spec = obj["spec"]["jobTemplate"]["spec"]["template"]
            elif obj["kind"] == "Pod":
                spec = obj
            else:
                spec = obj["spec"]["template"]
            yield f"{obj['kind']}/{obj['metadata']['name']}", spec["metadata"].get("labels", {}), spec["spec"]


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario_pods(request):
    return list(pods(render_chart(SCENARIOS[request.param])))


def test_every_scenario_has_pods(scenario_pods):
    assert scenario_pods


def test_pod_security_standard_restricted(scenario_pods):
    violations = {where: v for where, _, spec in scenario_pods if (v := restricted_violations(spec))}
    assert violations == {}


def test_numeric_non_root_user(scenario_pods):
    for where, _, spec in scenario_pods:
        for c in containers(spec):
            uid = c.get("securityContext", {}).get("runAsUser", spec.get("securityContext", {}).get("runAsUser"))
            assert isinstance(uid, int) and uid > 0, f"{where}:{c['name']} runAsUser {uid!r}"


def test_read_only_root_filesystem(scenario_pods):
    for where, _, spec in scenario_pods:
        for c in containers(spec):
            assert c.get("securityContext", {}).get("readOnlyRootFilesystem") is True, f"{where}:{c['name']}"


def test_requests_and_limits_everywhere(scenario_pods):
    for where, _, spec in scenario_pods:
        for c in containers(spec):
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}:{c['name']} {kind}"


def test_service_account_token_only_where_the_api_is_called(scenario_pods):
    for where, labels, spec in scenario_pods:
        component = labels.get("app.kubernetes.io/component")
        mounted = spec.get("automountServiceAccountToken", True)
        assert mounted is (component in API_CALLERS), f"{where} ({component}) token mounted: {mounted}"


class TestTheCheckerItself:
    BASE = {"securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False,
                                                             "capabilities": {"drop": ["ALL"]}}}]}

    def test_compliant_pod_passes(self):
        assert restricted_violations(self.BASE) == []

    @pytest.mark.parametrize("patch,expected", [
        ({"hostNetwork": True}, "hostNetwork"),
        ({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}, "volume h"),
        ({"securityContext": {"runAsNonRoot": True, "runAsUser": 1000}}, "seccomp None"),
        ({"securityContext": {"runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}}, "runAsNonRoot"),
    ])
    def test_violations_found(self, patch, expected):
        spec = {**self.BASE, **patch}
        assert any(expected in v for v in restricted_violations(spec))

    def test_container_escalation_found(self):
        spec = {**self.BASE, "containers": [{"name": "c", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]}
        assert restricted_violations(spec) == ["c: allowPrivilegeEscalation not false"]
