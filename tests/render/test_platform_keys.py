"""The keys platform teams set on every chart: object metadata (commonAnnotations, each workload's annotations,
namespaceOverride), pod placement and runtime (hostAliases, DNS, runtimeClassName, schedulerName, the token mount,
pull secrets, the default spread) and Service affinity. Each renders where it must and nowhere else, and a bad value
is refused naming its key."""

from __future__ import annotations

import json

import pytest

from harness.components import WORKLOADS as COMPONENT_WORKLOADS
from harness.objects import pod_spec
from harness.render import render_chart, render_error
from harness.values import SCENARIOS, deep_merge

# values key: (workload kind, object name, component label) of every component's workload.
WORKLOADS = {key: (kind, f"agentforge-{component}", component)
             for key, (kind, component) in COMPONENT_WORKLOADS.items()}
# Every optional object on, so that "every object" means every kind the chart renders.
EVERYTHING = deep_merge(SCENARIOS["all-options"], {
    "postgresql": {"metrics": {"enabled": True}}, "redis": {"metrics": {"enabled": True}},
    "monitoring": {"podMonitor": {"enabled": True}, "serviceMonitor": {"enabled": True},
                   "prometheusRule": {"enabled": True}, "dashboardConfigMap": {"enabled": True}}})
POD_OWNERS = ("Deployment", "StatefulSet", "Job", "CronJob", "Pod")


def charts_own(objects) -> list[dict]:
    """The objects of the chart's templates, without `extraObjects` (the user's own, rendered as given)."""
    return [o for o in objects if "helm.sh/chart" in o["metadata"].get("labels", {})]


def pods_of(objects) -> dict[str, dict]:
    """{kind/name: pod spec} of every workload and pod of a render."""
    return {f"{o['kind']}/{o['metadata']['name']}": pod_spec(o) for o in objects if o["kind"] in POD_OWNERS}


def component_pods(objects, values_key: str) -> dict[str, dict]:
    """The pod specs of a component's workload, and of the pods that take its settings (the migration Job and the
    `helm test` pods take the backend's)."""
    kind, name, _ = WORKLOADS[values_key]
    out = {f"{kind}/{name}": pod_spec(objects.get(kind, name))}
    if values_key == "backend":
        out |= {key: spec for key, spec in pods_of(objects).items()
                if key.startswith(("Job/agentforge-migrate", "Pod/agentforge-test-"))}
    return out


class TestCommonAnnotations:
    @pytest.fixture(scope="class")
    @classmethod
    def annotated(cls):
        return render_chart(deep_merge(EVERYTHING, {"commonAnnotations": {
            "example.com/common": "ai-platform", "helm.sh/resource-policy": "delete", "helm.sh/hook": "pre-delete"}}))

    def test_on_every_object(self, annotated):
        kinds = {o["kind"] for o in charts_own(annotated)}
        assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "Secret", "NetworkPolicy", "Ingress",
                "PodMonitor", "ServiceMonitor", "PrometheusRule", "PersistentVolumeClaim", "Job"} <= kinds
        missing = [f"{o['kind']}/{o['metadata']['name']}" for o in charts_own(annotated)
                   if (o["metadata"].get("annotations") or {}).get("example.com/common") != "ai-platform"]
        assert missing == []

    def test_not_on_pods(self, annotated):
        for obj in annotated:
            if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
                pod_annotations = obj["spec"]["template"]["metadata"].get("annotations") or {}
                assert "example.com/common" not in pod_annotations, f"{obj['kind']}/{obj['metadata']['name']}"

    def test_never_replace_the_charts_keep_and_hook_annotations(self, annotated):
        """A kept object stays kept and a hook stays the hook it is: the chart's own keys win."""
        kept = [o for o in charts_own(annotated) if o["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"]
        assert {(o["kind"], o["metadata"]["name"]) for o in kept} >= {
            ("Secret", "agentforge-secrets"), ("PersistentVolumeClaim", "agentforge-prometheus")}
        hooks = {o["metadata"]["name"]: o["metadata"]["annotations"]["helm.sh/hook"] for o in charts_own(annotated)
                 if "helm.sh/hook-delete-policy" in o["metadata"]["annotations"]}
        assert hooks and all(hook in ("post-install,pre-upgrade", "test") for hook in hooks.values()), hooks
        # Objects that are neither kept nor hooks carry the common value, as asked.
        plain = annotated.get("ConfigMap", "agentforge-config")["metadata"]["annotations"]
        assert plain["helm.sh/resource-policy"] == "delete" and plain["helm.sh/hook"] == "pre-delete"

    def test_an_objects_own_annotation_wins(self):
        objects = render_chart({"commonAnnotations": {"team": "common", "only-common": "x"},
                                "backend": {"annotations": {"team": "backend"},
                                            "service": {"annotations": {"team": "service"}}}})
        assert objects.get("Deployment", "agentforge-backend")["metadata"]["annotations"] == {
            "team": "backend", "only-common": "x"}
        assert objects.get("Service", "agentforge-backend")["metadata"]["annotations"] == {
            "team": "service", "only-common": "x"}

    def test_none_by_default(self, default_render):
        for obj in default_render:
            assert set(obj["metadata"].get("annotations") or {}) <= {
                "helm.sh/resource-policy", "helm.sh/hook", "helm.sh/hook-weight", "helm.sh/hook-delete-policy"}, \
                f"{obj['kind']}/{obj['metadata']['name']}"


class TestWorkloadKeys:
    @pytest.mark.parametrize("values_key", WORKLOADS)
    def test_annotations_on_the_workload_alone(self, values_key):
        kind, name, _ = WORKLOADS[values_key]
        objects = render_chart({values_key: {"annotations": {"argocd.argoproj.io/sync-wave": "3"}}})
        carrying = [f"{o['kind']}/{o['metadata']['name']}" for o in objects
                    if "argocd.argoproj.io/sync-wave" in json.dumps(o)]
        assert carrying == [f"{kind}/{name}"]
        assert objects.get(kind, name)["metadata"]["annotations"] == {"argocd.argoproj.io/sync-wave": "3"}

    @pytest.mark.parametrize("values_key", WORKLOADS)
    def test_revision_history_limit(self, default_render, values_key):
        kind, name, _ = WORKLOADS[values_key]
        assert default_render.get(kind, name)["spec"]["revisionHistoryLimit"] == 5
        objects = render_chart({values_key: {"revisionHistoryLimit": 2}})
        limits = {f"{o['kind']}/{o['metadata']['name']}": o["spec"]["revisionHistoryLimit"]
                  for o in objects if o["kind"] in ("Deployment", "StatefulSet")}
        assert {key for key, limit in limits.items() if limit == 2} == {f"{kind}/{name}"}

    @pytest.mark.parametrize("values_key", WORKLOADS)
    def test_pod_runtime_and_dns_keys_reach_the_components_pods_only(self, values_key):
        settings = {"hostAliases": [{"ip": "10.9.8.7", "hostnames": ["llm.internal"]}],
                    "dnsPolicy": "None",
                    "dnsConfig": {"nameservers": ["10.0.0.10"], "searches": ["svc.cluster.local"],
                                  "options": [{"name": "ndots", "value": "2"}]},
                    "runtimeClassName": "gvisor", "schedulerName": "bin-packing"}
        objects = render_chart({values_key: settings})
        own = component_pods(objects, values_key)
        for key, spec in pods_of(objects).items():
            got = {field: spec.get(field) for field in settings}
            if key in own:
                assert got == settings, key
            else:
                assert got == dict.fromkeys(settings), key

    def test_no_dns_or_runtime_field_by_default(self, default_render):
        for key, spec in pods_of(default_render).items():
            assert not {"hostAliases", "dnsPolicy", "dnsConfig", "runtimeClassName", "schedulerName"} & set(spec), key

    def test_token_mount_off_but_for_prometheus(self, default_render):
        mounts = {key: spec["automountServiceAccountToken"] for key, spec in pods_of(default_render).items()}
        assert {key for key, mount in mounts.items() if mount} == {"Deployment/agentforge-prometheus"}
        assert all(mount is False for key, mount in mounts.items() if "prometheus" not in key)

    @pytest.mark.parametrize("values_key,mount", [("dataCollector", True), ("prometheus", False)])
    def test_token_mount_is_a_value(self, values_key, mount):
        objects = render_chart({values_key: {"automountServiceAccountToken": mount}})
        kind, name, _ = WORKLOADS[values_key]
        assert pod_spec(objects.get(kind, name))["automountServiceAccountToken"] is mount
        # The ServiceAccount itself never automounts: the pod's key decides.
        for account in objects.of_kind("ServiceAccount"):
            assert account["automountServiceAccountToken"] is False

    def test_image_pull_secrets_merge_with_the_global_ones_on_the_pods_that_run_the_image(self):
        objects = render_chart({"global": {"imagePullSecrets": ["shared", {"name": "also-shared"}]},
                                "redis": {"image": {"pullSecrets": [{"name": "redis-mirror"}, "shared"]}},
                                "frontend": {"image": {"pullSecrets": ["web-mirror"]}}})
        secrets = {key: [s["name"] for s in spec.get("imagePullSecrets", [])] for key, spec in pods_of(objects).items()}
        # The backend runs Redis' image too (its wait-for-redis container).
        assert secrets.pop("StatefulSet/agentforge-redis") == ["shared", "also-shared", "redis-mirror"]
        assert secrets.pop("Deployment/agentforge-backend") == ["shared", "also-shared", "redis-mirror"]
        assert secrets.pop("Deployment/agentforge-frontend") == ["shared", "also-shared", "web-mirror"]
        assert set(map(tuple, secrets.values())) == {("shared", "also-shared")}


class TestSpread:
    @pytest.mark.parametrize("values_key", ["backend", "frontend"])
    def test_soft_spread_across_nodes_and_zones_by_default(self, default_render, values_key):
        kind, name, component = WORKLOADS[values_key]
        constraints = pod_spec(default_render.get(kind, name))["topologySpreadConstraints"]
        assert [(c["topologyKey"], c["whenUnsatisfiable"], c["maxSkew"]) for c in constraints] == [
            ("kubernetes.io/hostname", "ScheduleAnyway", 1), ("topology.kubernetes.io/zone", "ScheduleAnyway", 1)]
        for c in constraints:
            assert c["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component

    def test_single_pod_components_are_not_spread(self, default_render):
        for values_key in ("dataCollector", "postgresql", "redis", "prometheus", "grafana"):
            kind, name, _ = WORKLOADS[values_key]
            assert "topologySpreadConstraints" not in pod_spec(default_render.get(kind, name)), values_key

    def test_a_list_of_yours_replaces_it_and_empty_turns_it_off(self):
        mine = [{"maxSkew": 2, "topologyKey": "example.com/rack", "whenUnsatisfiable": "DoNotSchedule"}]
        objects = render_chart({"backend": {"topologySpreadConstraints": mine},
                                "frontend": {"topologySpreadConstraints": []}})
        backend = pod_spec(objects.get("Deployment", "agentforge-backend"))["topologySpreadConstraints"]
        assert [c["topologyKey"] for c in backend] == ["example.com/rack"]
        assert "topologySpreadConstraints" not in pod_spec(objects.get("Deployment", "agentforge-frontend"))


class TestSessionAffinity:
    @pytest.mark.parametrize("values_key", ["backend", "frontend", "dataCollector", "prometheus", "grafana"])
    def test_client_ip_with_its_timeout(self, default_render, values_key):
        name = WORKLOADS[values_key][1]
        assert "sessionAffinity" not in default_render.get("Service", name)["spec"]
        objects = render_chart({values_key: {"service": {
            "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}}}})
        spec = objects.get("Service", name)["spec"]
        assert spec["sessionAffinity"] == "ClientIP"
        assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 600}}
        others = [s["metadata"]["name"] for s in objects.of_kind("Service") if "sessionAffinity" in s["spec"]]
        assert others == [name]

    @pytest.mark.parametrize("values_key", ["postgresql", "redis"])
    def test_refused_on_the_headless_services(self, values_key):
        error = render_error({values_key: {"service": {"sessionAffinity": "ClientIP"}}})
        assert f"{values_key}.service.sessionAffinity is not supported: the {values_key} Service is headless" in error

    def test_config_without_client_ip_refused(self):
        error = render_error({"backend": {"service": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}}})
        assert "backend.service.sessionAffinityConfig is set while backend.service.sessionAffinity is \"\"" in error


class TestNamespaceOverride:
    @pytest.fixture(scope="class")
    @classmethod
    def moved(cls):
        return render_chart(deep_merge(EVERYTHING, {"namespaceOverride": "agentforge-prod"}))

    def test_every_namespaced_object_goes_there(self, moved):
        assert {o["metadata"]["namespace"] for o in charts_own(moved)} == {"agentforge-prod"}

    def test_no_reference_to_the_release_namespace_remains(self, moved):
        """In-cluster hostnames (the app's URLs, the backend's DATA_COLLECTOR_URL, Grafana's datasource), Prometheus'
        discovery, the RoleBinding's subject and the monitors' selectors all follow it."""
        text = json.dumps(charts_own(moved))
        assert ".agentforge.svc" not in text and '"agentforge"]' not in text
        assert "agentforge-data-collector.agentforge-prod.svc.cluster.local" in text
        for binding in moved.of_kind("RoleBinding"):
            assert {s["namespace"] for s in binding["subjects"]} == {"agentforge-prod"}
        for monitor in moved.of_kind("PodMonitor") + moved.of_kind("ServiceMonitor"):
            assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["agentforge-prod"]}

    def test_release_namespace_when_empty(self, default_render):
        assert {o["metadata"]["namespace"] for o in default_render} == {"agentforge"}


@pytest.mark.parametrize("values,key", [
    ({"namespaceOverride": "Prod_NS"}, "/namespaceOverride"),
    ({"commonAnnotations": {"a": 1}}, "/commonAnnotations/a"),
    ({"backend": {"annotations": {"a": ["x"]}}}, "/backend/annotations/a"),
    ({"frontend": {"revisionHistoryLimit": -1}}, "/frontend/revisionHistoryLimit"),
    ({"redis": {"hostAliases": [{"hostnames": ["a.example"]}]}}, "/redis/hostAliases/0"),
    ({"grafana": {"dnsPolicy": "ClusterLast"}}, "/grafana/dnsPolicy"),
    ({"postgresql": {"dnsConfig": {"nameservers": ["1.1.1.1", "2", "3", "4"]}}}, "/postgresql/dnsConfig/nameservers"),
    ({"dataCollector": {"runtimeClassName": "gVisor"}}, "/dataCollector/runtimeClassName"),
    ({"prometheus": {"schedulerName": "bad scheduler"}}, "/prometheus/schedulerName"),
    ({"backend": {"automountServiceAccountToken": "yes"}}, "/backend/automountServiceAccountToken"),
    ({"frontend": {"image": {"pullSecrets": ["Bad_Secret"]}}}, "/frontend/image/pullSecrets/0"),
    ({"backend": {"service": {"sessionAffinity": "Cookie"}}}, "/backend/service/sessionAffinity"),
    ({"backend": {"service": {"sessionAffinity": "ClientIP",
                              "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}}},
     "/backend/service/sessionAffinityConfig/clientIP/timeoutSeconds"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_bad_value_refused_naming_the_key(values, key):
    assert f"at '{key}'" in render_error(values)


def test_dns_policy_none_needs_nameservers():
    error = render_error({"frontend": {"dnsPolicy": "None"}})
    assert "frontend.dnsPolicy is None but frontend.dnsConfig.nameservers is empty" in error
