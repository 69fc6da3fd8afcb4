"""Extension points of every component: probe overrides, extraEnvFrom, priorityClassName, sidecars and init containers,
Service types, update strategies, PDB maxUnavailable, extraObjects, and `tpl` in every extra* value.

Each test renders the chart (kubeconform validates every object for the oldest and newest Kubernetes the chart
supports, as render_chart does by default) and reads back what a platform team would rely on: an override merges
over the chart's defaults, a value names the release through `tpl`, a sidecar keeps Pod Security "restricted" and
never becomes a second server process, and what the API server would refuse is refused at render time by name.
"""

from __future__ import annotations

import copy

import pytest

from harness.components import REGISTRY, WORKLOADS
from harness.objects import argv, component_name, container, env_of, flag, pod_spec
from harness.podsecurity import restricted_violations
from harness.render import CHART, load_yaml, render_chart, render_error
from harness.values import SCENARIOS, deep_merge

VALUES = load_yaml((CHART / "values.yaml").read_text())

# values key: (workload kind, component (object names, main container), the component's port name)
COMPONENTS = {key: (kind, component, component if kind == "StatefulSet" else "http")
              for key, (kind, component) in WORKLOADS.items()}
# Components with a Service of their own that may leave the cluster (the data stores have headless ones).
EXPOSABLE = tuple(c["key"] for c in REGISTRY if not c["headless"])
DEPLOYMENTS = EXPOSABLE
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
HANDLERS = ("httpGet", "exec", "tcpSocket", "grpc")
RELEASE = {"name": "rel", "namespace": "team-a"}  # rel-agentforge-<component>


def name_of(component: str, release: str = "agentforge") -> str:
    """Name of a component's objects (its workload, Service, PDB, HPA)."""
    return component_name(COMPONENTS[component][1], release)


def workload(objects, component: str, release: str = "agentforge") -> dict:
    return objects.get(COMPONENTS[component][0], name_of(component, release))


def main_container(objects, component: str, release: str = "agentforge") -> dict:
    return container(workload(objects, component, release), COMPONENTS[component][1])


def migration_pod(objects) -> dict:
    (job,) = [j for j in objects.of_kind("Job")
              if j["metadata"]["labels"]["app.kubernetes.io/component"] == "migrations"]
    return pod_spec(job)


SIDECAR = {"name": "side", "image": "busybox:1.36.1", "command": ["sh", "-c", "sleep infinity"],
           "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"cpu": "50m", "memory": "16Mi"}}}


def probe_overrides(component: str) -> dict:
    """One field of the startup and readiness probes, and a handler of one's own for the liveness probe."""
    return {component: {"startupProbe": {"timeoutSeconds": 17}, "readinessProbe": {"timeoutSeconds": 18},
                        "livenessProbe": {"tcpSocket": {"port": COMPONENTS[component][2]}}}}


def extras(component: str) -> dict:
    """Every extra* value of a component, each naming the release through tpl, and a priority class. The sidecar sets
    no securityContext; the init container sets part of one. Rendered once per component (render_chart caches)."""
    return {component: {
        "priorityClassName": "business-critical",
        "extraEnv": [{"name": "OWNER", "value": '{{ include "agentforge.fullname" . }}'}],
        "extraEnvFrom": [{"secretRef": {"name": "{{ .Release.Name }}-credentials"}, "prefix": "EXT_"}],
        "extraVolumes": [{"name": "extra", "configMap": {"name": "{{ .Release.Name }}-files"}}],
        "extraVolumeMounts": [{"name": "extra", "mountPath": "/etc/{{ .Release.Namespace }}"}],
        "extraContainers": [{**SIDECAR, "command": ["sh", "-c", "echo {{ .Release.Name }}; sleep infinity"],
                             "env": [{"name": "TARGET",
                                      "value": '{{ include "agentforge.fullname" . }}.{{ .Release.Namespace }}'}]}],
        "extraInitContainers": [{**SIDECAR, "name": "init", "args": ["{{ .Release.Name }}"],
                                 "securityContext": {"runAsUser": 4242,
                                                     "capabilities": {"add": ["NET_BIND_SERVICE"]}}}],
    }}


# ------------------------------------------------------------------------------------------------------- probes

class TestProbes:
    @pytest.mark.parametrize("probe,timeout", [("startupProbe", 17), ("readinessProbe", 18)])
    @pytest.mark.parametrize("component", COMPONENTS)
    def test_one_field_merges_over_the_defaults(self, default_render, component, probe, timeout):
        """Set only timeoutSeconds: the handler and every other setting of today's probe stay."""
        before = main_container(default_render, component)[probe]
        after = main_container(render_chart(probe_overrides(component)), component)[probe]
        assert after == {**before, "timeoutSeconds": timeout}

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_a_handler_of_your_own_replaces_the_charts(self, default_render, component):
        port = COMPONENTS[component][2]
        before = main_container(default_render, component)["livenessProbe"]
        after = main_container(render_chart(probe_overrides(component)), component)["livenessProbe"]
        assert [h for h in HANDLERS if h in after] == ["tcpSocket"], "a probe has exactly one handler"
        assert after == {**{k: v for k, v in before.items() if k not in HANDLERS}, "tcpSocket": {"port": port}}

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_defaults_are_the_values_and_the_charts_handler(self, default_render, component):
        """What values.yaml documents is what the pods get: its settings plus the chart's one handler."""
        c = main_container(default_render, component)
        for probe in PROBES:
            (handler,) = [h for h in HANDLERS if h in c[probe]]
            assert {k: v for k, v in c[probe].items() if k != handler} == VALUES[component][probe], probe

    def test_backend_probe_docs_name_the_slow_llm_calls(self):
        """The backend's one uvicorn worker also serves slow LLM calls: its probe keys say so."""
        text = (CHART / "values.yaml").read_text()
        backend = text[text.index("\nbackend:"):text.index("\nfrontend:")]
        for probe in ("readinessProbe", "livenessProbe"):
            comment = backend[:backend.index(f"  {probe}:")].rsplit("# --", 1)[1]
            assert "LLM calls" in comment and "worker" in comment, probe


# ------------------------------------------------------------------------------- tpl in every extra* value

class TestTemplatedExtras:
    """Every extra* value is rendered with tpl: it may name the release, its namespace and the chart's objects."""

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_env_env_from_volumes_and_mounts_name_the_release(self, component):
        objects = render_chart(extras(component), **RELEASE)
        c = main_container(objects, component, "rel")
        assert env_of(c)["OWNER"]["value"] == "rel-agentforge"
        assert c["envFrom"][-1] == {"secretRef": {"name": "rel-credentials"}, "prefix": "EXT_"}
        assert {"name": "extra", "mountPath": "/etc/team-a"} in c["volumeMounts"]
        assert {"name": "extra", "configMap": {"name": "rel-files"}} in pod_spec(workload(objects, component, "rel"))[
            "volumes"]

    def test_no_env_from_unless_asked(self, default_render):
        """Components that read no app settings still get no envFrom at all."""
        for component in ("frontend", "dataCollector", "postgresql", "redis", "prometheus", "grafana"):
            assert "envFrom" not in main_container(default_render, component), component


class TestEnvFrom:
    def test_backend_keeps_its_own_sources_first(self):
        """The app's ConfigMap, then secrets.llmApiKeysSecret (a shortcut for one secretRef), then extraEnvFrom."""
        objects = render_chart({"secrets": {"llmApiKeysSecret": "llm-keys"},
                                "backend": {"extraEnvFrom": [{"configMapRef": {"name": "tuning"}}]}})
        assert main_container(objects, "backend")["envFrom"] == [
            {"configMapRef": {"name": "agentforge-config"}}, {"secretRef": {"name": "llm-keys"}},
            {"configMapRef": {"name": "tuning"}}]

    def test_migrations_take_the_backends_like_extra_env(self):
        objects = render_chart(extras("backend"), **RELEASE)
        migrate = container({"kind": "Pod", "spec": migration_pod(objects)}, "migrate")
        assert migrate["envFrom"] == [{"secretRef": {"name": "rel-credentials"}, "prefix": "EXT_"}]
        assert env_of(migrate)["OWNER"]["value"] == "rel-agentforge"


# --------------------------------------------------------------------------------------------- priority class

class TestPriorityClass:
    @pytest.mark.parametrize("component", COMPONENTS)
    def test_set_on_the_pod(self, default_render, component):
        assert "priorityClassName" not in pod_spec(workload(default_render, component))
        objects = render_chart(extras(component), **RELEASE)
        assert pod_spec(workload(objects, component, "rel"))["priorityClassName"] == "business-critical"

    def test_migration_job_takes_the_backends(self):
        assert migration_pod(render_chart(extras("backend"), **RELEASE))["priorityClassName"] == "business-critical"


# --------------------------------------------------------------------------------- sidecars and init containers

class TestLifecycle:
    """Every component takes its grace period and its lifecycle hooks from values; the HTTP servers sleep in preStop
    by default, so that endpoints drop a stopping pod before its server stops accepting."""

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_grace_period_is_the_value(self, component):
        seconds = VALUES[component]["terminationGracePeriodSeconds"] + 17
        objects = render_chart({component: {"terminationGracePeriodSeconds": seconds}})
        assert pod_spec(workload(objects, component))["terminationGracePeriodSeconds"] == seconds

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_hooks_of_your_own_replace_the_charts(self, component):
        hooks = {"preStop": {"exec": {"command": ["/bin/sh", "-c", "echo bye"]}}}
        objects = render_chart({component: {"lifecycleHooks": hooks}})
        assert container(workload(objects, component), COMPONENTS[component][1])["lifecycle"] == hooks

    @pytest.mark.parametrize("component", ["backend", "frontend", "dataCollector"])
    def test_http_servers_sleep_then_drain_within_the_grace_period(self, default_render, component):
        deployment = workload(default_render, component)
        c = container(deployment, COMPONENTS[component][1])
        sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        drain = int(flag(argv(c), "timeout-graceful-shutdown") or 0)
        assert sleep == VALUES[component]["preStopSleepSeconds"] >= 5
        assert pod_spec(deployment)["terminationGracePeriodSeconds"] > sleep + drain

    @pytest.mark.parametrize("component", ["backend", "frontend", "dataCollector"])
    def test_a_zero_sleep_renders_no_hook(self, component):
        """A sleep of 0 s is refused by API servers before Kubernetes 1.33: no preStop at all instead."""
        objects = render_chart({component: {"preStopSleepSeconds": 0}})
        assert "lifecycle" not in container(workload(objects, component), COMPONENTS[component][1])

    @pytest.mark.parametrize("component", ["redis", "prometheus", "grafana"])
    def test_no_hook_unless_asked(self, default_render, component):
        assert "lifecycle" not in container(workload(default_render, component), COMPONENTS[component][1])

    def test_an_unknown_hook_is_refused_by_name(self):
        assert "preStp" in render_error({"frontend": {"lifecycleHooks": {"preStp": {"sleep": {"seconds": 5}}}}})


class TestSidecars:
    @pytest.mark.parametrize("component", COMPONENTS)
    def test_rendered_with_tpl_secured_and_restricted(self, component):
        """A sidecar without a securityContext gets the component's containerSecurityContext, and the pod still
        meets Pod Security "restricted" (the checker of test_security.py)."""
        spec = pod_spec(workload(render_chart(extras(component), **RELEASE), component, "rel"))
        (side,) = [c for c in spec["containers"] if c["name"] == "side"]
        assert side["command"][-1] == "echo rel; sleep infinity"
        assert env_of(side)["TARGET"]["value"] == "rel-agentforge.team-a"
        assert side["securityContext"] == VALUES[component]["containerSecurityContext"]
        assert restricted_violations(spec) == []

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_own_fields_win_and_defaults_fill_the_rest(self, component):
        spec = pod_spec(workload(render_chart(extras(component), **RELEASE), component, "rel"))
        (init,) = [c for c in spec["initContainers"] if c["name"] == "init"]
        assert init["args"] == ["rel"]
        defaults = VALUES[component]["containerSecurityContext"]
        assert init["securityContext"] == {**defaults, "runAsUser": 4242, "capabilities": {
            **defaults["capabilities"], "add": ["NET_BIND_SERVICE"]}}

    def test_init_containers_run_before_the_charts_own(self):
        """A native sidecar (restartPolicy Always) must be up before wait-for-redis / wait-for-database run."""
        native = {**SIDECAR, "restartPolicy": "Always"}
        objects = render_chart({"backend": {"extraInitContainers": [native]},
                                "migrations": {"extraInitContainers": [native]},
                                "frontend": {"extraInitContainers": [SIDECAR]}})
        assert [c["name"] for c in pod_spec(workload(objects, "backend"))["initContainers"]] == [
            "side", "wait-for-redis"]
        assert [c["name"] for c in migration_pod(objects)["initContainers"]] == ["side", "wait-for-database"]
        assert [c["name"] for c in pod_spec(workload(objects, "frontend"))["initContainers"]] == ["side"]
        assert container({"kind": "Pod", "spec": migration_pod(objects)}, "side")["restartPolicy"] == "Always"

    def test_backend_sidecars_stay_off_the_migration_job(self):
        """A plain sidecar would keep the Job from finishing: the Job takes none of the backend's."""
        objects = render_chart({"backend": {"extraContainers": [SIDECAR], "extraInitContainers": [SIDECAR]}})
        spec = migration_pod(objects)
        assert [c["name"] for c in spec["containers"] + spec["initContainers"]] == ["migrate", "wait-for-database"]

    def test_no_init_containers_unless_asked(self, default_render):
        for component in ("frontend", "dataCollector", "postgresql", "redis", "prometheus", "grafana"):
            assert "initContainers" not in pod_spec(workload(default_render, component)), component


# Each way a container breaks "restricted", as test_security.py's checker sees it.
BREACHES = [
    ({"privileged": True}, "securityContext.privileged is true", "privileged"),
    ({"allowPrivilegeEscalation": True}, "securityContext.allowPrivilegeEscalation is not false",
     "allowPrivilegeEscalation not false"),
    ({"capabilities": {"add": ["SYS_ADMIN"]}}, "securityContext.capabilities.add holds SYS_ADMIN",
     "adds capabilities"),
    ({"capabilities": {"drop": ["NET_RAW"]}}, "securityContext.capabilities.drop lacks ALL",
     "capabilities not dropped"),
    ({"runAsNonRoot": False}, "securityContext.runAsNonRoot is false", "runAsNonRoot not true"),
    ({"runAsUser": 0}, "securityContext.runAsUser is 0 (root)", "runs as uid 0"),
    ({"seccompProfile": {"type": "Unconfined"}}, "securityContext.seccompProfile.type is Unconfined",
     "seccomp Unconfined"),
]


class TestRestrictedRefusals:
    @pytest.mark.parametrize("ctx,refusal,checker", BREACHES, ids=[b[2] for b in BREACHES])
    def test_refused_exactly_where_the_checker_flags(self, default_render, ctx, refusal, checker):
        """The chart refuses each breach by name, and test_security.py's checker flags the same pod: what the chart
        accepts is what restricted admits."""
        stderr = render_error({"backend": {"extraContainers": [{**SIDECAR, "securityContext": ctx}]}})
        assert f'backend.extraContainers[0] ("side") breaks Pod Security "restricted": {refusal}' in stderr
        spec = copy.deepcopy(pod_spec(workload(default_render, "backend")))
        merged = deep_merge(VALUES["backend"]["containerSecurityContext"], ctx)  # as the chart merges them
        spec["containers"].append({**SIDECAR, "securityContext": merged})
        assert any(checker in v for v in restricted_violations(spec)), restricted_violations(spec)

    @pytest.mark.parametrize("component,key", [(c, k) for c in COMPONENTS for k in ("extraContainers",
                                                                                   "extraInitContainers")]
                             + [("migrations", "extraInitContainers")])
    def test_every_component_and_the_migration_job(self, component, key):
        stderr = render_error({component: {key: [{**SIDECAR, "securityContext": {"privileged": True}}]}})
        assert f'{component}.{key}[0] ("side") breaks Pod Security "restricted"' in stderr

    def test_host_port_refused(self):
        side = {**SIDECAR, "ports": [{"name": "admin", "containerPort": 9901, "hostPort": 9901}]}
        stderr = render_error({"grafana": {"extraContainers": [side]}})
        assert 'grafana.extraContainers[0] ("side") breaks Pod Security "restricted": port 9901 sets hostPort' in stderr

    def test_every_breach_listed_at_once(self):
        side = {**SIDECAR, "securityContext": {"privileged": True, "runAsUser": 0}}
        stderr = render_error({"backend": {"extraInitContainers": [SIDECAR, side]}})
        assert 'backend.extraInitContainers[1] ("side") breaks' in stderr
        assert "securityContext.privileged is true; securityContext.runAsUser is 0 (root)" in stderr


class TestOneServerProcess:
    """A sidecar must not add a server process of the application: one uvicorn worker holds the in-memory state."""

    @pytest.mark.parametrize("command", [
        ["uvicorn", "backend.gateway.main:app", "--port=8002"],
        ["gunicorn", "-k", "uvicorn.workers.UvicornWorker", "backend.gateway.main:app"],
        ["python", "-m", "uvicorn", "backend.gateway.main:app", "--workers=4"],
    ])
    @pytest.mark.parametrize("key", ["extraContainers", "extraInitContainers"])
    def test_a_sidecar_running_the_backend_is_refused(self, command, key):
        stderr = render_error({"backend": {key: [{**SIDECAR, "image": "agentforge/backend:0.10.0",
                                                  "command": command}]}})
        assert f'backend.{key}[0] ("side") runs backend.gateway.main, the component\'s own application' in stderr

    def test_a_sidecar_running_the_collector_is_refused(self):
        side = {**SIDECAR, "command": ["sh", "-c"], "args": ["uvicorn data_collector.main:app --port 8009"]}
        stderr = render_error({"dataCollector": {"extraContainers": [side]}})
        assert 'dataCollector.extraContainers[0] ("side") runs data_collector.main' in stderr

    def test_worker_count_reads_the_backend_container_only(self):
        """Another ASGI app with workers in a sidecar is its own business: the backend container keeps one worker,
        and the worker checks (test_backend.py) read the `backend` container, not the pod."""
        side = {**SIDECAR, "command": ["uvicorn", "exporter.main:app", "--workers=4", "--port=9100"]}
        objects = render_chart({"backend": {"extraContainers": [side]}})
        deployment = workload(objects, "backend")
        assert flag(argv(container(deployment, "backend")), "workers") == "1"
        assert [c["name"] for c in pod_spec(deployment)["containers"]] == ["backend", "side"]

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_a_port_named_like_the_components_is_refused(self, component):
        """The Service's targetPort, the probes and Prometheus' scraping (by port name) stay on the component's."""
        port = COMPONENTS[component][2]
        side = {**SIDECAR, "ports": [{"name": port, "containerPort": 9999}]}
        stderr = render_error({component: {"extraContainers": [side]}})
        assert f'{component}.extraContainers[0] ("side") declares a port named "{port}"' in stderr

    def test_sidecars_share_the_pods_network_policy(self):
        """Sidecars open nothing: every NetworkPolicy is the same with a sidecar that listens on a port of its own."""
        side = {**SIDECAR, "ports": [{"name": "admin", "containerPort": 9901}]}
        without = render_chart({}).of_kind("NetworkPolicy")
        with_sidecar = render_chart({"backend": {"extraContainers": [side]}}).of_kind("NetworkPolicy")
        assert with_sidecar == without and without


# ---------------------------------------------------------------------------------------------------- Services

class TestServices:
    @pytest.mark.parametrize("component", EXPOSABLE)
    def test_load_balancer(self, component):
        service = {"type": "LoadBalancer", "annotations": {"lb.example.com/internal": "true"},
                   "loadBalancerIP": "192.0.2.10", "loadBalancerSourceRanges": ["10.0.0.0/8", "192.168.0.0/16"],
                   "externalTrafficPolicy": "Local", "nodePort": 31234}
        objects = render_chart({component: {"service": service}})
        svc = objects.get("Service", name_of(component))
        assert svc["metadata"]["annotations"] == {"lb.example.com/internal": "true"}
        spec = svc["spec"]
        assert (spec["type"], spec["loadBalancerIP"], spec["loadBalancerSourceRanges"],
                spec["externalTrafficPolicy"]) == ("LoadBalancer", "192.0.2.10", ["10.0.0.0/8", "192.168.0.0/16"],
                                                   "Local")
        assert spec["ports"][0]["nodePort"] == 31234

    @pytest.mark.parametrize("component", EXPOSABLE)
    def test_node_port(self, default_render, component):
        objects = render_chart({component: {"service": {"type": "NodePort", "nodePort": 30123}}})
        spec = objects.get("Service", name_of(component))["spec"]
        before = default_render.get("Service", name_of(component))["spec"]
        assert spec == {**before, "type": "NodePort", "ports": [{**before["ports"][0], "nodePort": 30123}]}

    @pytest.mark.parametrize("component", COMPONENTS)
    def test_default_is_a_plain_cluster_ip_service(self, default_render, component):
        svc = default_render.get("Service", name_of(component))
        assert "annotations" not in svc["metadata"]
        assert set(svc["spec"]) <= {"type", "clusterIP", "selector", "ports"}
        assert svc["spec"]["type"] == "ClusterIP"

    @pytest.mark.parametrize("component", ["postgresql", "redis"])
    def test_headless_services_take_annotations_only(self, component):
        objects = render_chart({component: {"service": {"annotations": {"a.example.com/b": "c"}}}})
        svc = objects.get("Service", name_of(component))
        assert svc["metadata"]["annotations"] == {"a.example.com/b": "c"}
        assert (svc["spec"]["type"], svc["spec"]["clusterIP"]) == ("ClusterIP", "None")
        assert "'type' not allowed" in render_error({component: {"service": {"type": "NodePort"}}})

    @pytest.mark.parametrize("service,refusal", [
        ({"nodePort": 30080}, "backend.service.nodePort (30080) is set while backend.service.type is ClusterIP"),
        ({"externalTrafficPolicy": "Local"}, "backend.service.externalTrafficPolicy (Local) is set while "
                                             "backend.service.type is ClusterIP"),
        ({"type": "NodePort", "loadBalancerIP": "192.0.2.1"}, "backend.service.loadBalancerIP is set while "
                                                                "backend.service.type is NodePort"),
        ({"loadBalancerSourceRanges": ["10.0.0.0/8"]}, "backend.service.loadBalancerSourceRanges is set while "
                                                       "backend.service.type is ClusterIP"),
    ])
    def test_a_field_its_type_ignores_is_refused(self, service, refusal):
        assert refusal in render_error({"backend": {"service": service}})


# ------------------------------------------------------------------------------------------ update strategies

class TestStrategies:
    @pytest.mark.parametrize("component,expected", [
        ("backend", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
        ("frontend", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
        ("dataCollector", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
        ("prometheus", {"type": "Recreate"}),
        ("grafana", {"type": "Recreate"}),
    ])
    def test_defaults_are_todays(self, default_render, component, expected):
        assert workload(default_render, component)["spec"]["strategy"] == expected

    @pytest.mark.parametrize("component", ["frontend", "dataCollector"])
    def test_recreate_drops_the_rolling_fields(self, component):
        objects = render_chart({component: {"strategy": {"type": "Recreate"}}})
        assert workload(objects, component)["spec"]["strategy"] == {"type": "Recreate"}

    def test_a_field_merges_over_the_default(self):
        objects = render_chart({"frontend": {"strategy": {"rollingUpdate": {"maxSurge": "50%"}}}})
        assert workload(objects, "frontend")["spec"]["strategy"] == {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}}

    @pytest.mark.parametrize("surge", [2, "50%"])
    def test_backend_may_surge_more(self, surge):
        objects = render_chart({"backend": {"strategy": {"rollingUpdate": {"maxSurge": surge}}}})
        assert workload(objects, "backend")["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": surge,
                                                                                    "maxUnavailable": 0}

    @pytest.mark.parametrize("strategy,shown", [
        ({"type": "Recreate"}, "type Recreate, maxUnavailable -"),
        ({"rollingUpdate": {"maxUnavailable": 1}}, "type RollingUpdate, maxUnavailable 1"),
        ({"rollingUpdate": {"maxUnavailable": "10%"}}, "type RollingUpdate, maxUnavailable 10%"),
        # Left out, Kubernetes' default applies: 25%.
        ({"rollingUpdate": {"maxUnavailable": None}}, "type RollingUpdate, maxUnavailable 25%"),
    ])
    def test_backend_never_takes_a_pod_away_first(self, strategy, shown):
        """test_backend.py::test_rolling_update_never_takes_a_pod_away_first, for any override."""
        stderr = render_error({"backend": {"strategy": strategy}})
        assert f"backend.strategy must be a RollingUpdate with rollingUpdate.maxUnavailable 0 (it is {shown})" in stderr

    def test_both_zero_refused(self):
        stderr = render_error({"dataCollector": {"strategy": {"rollingUpdate": {"maxSurge": 0}}}})
        assert "dataCollector.strategy.rollingUpdate.maxSurge and maxUnavailable are both 0" in stderr

    @pytest.mark.parametrize("component", ["prometheus", "grafana"])
    def test_claim_holders_roll_only_old_pod_first(self, component):
        """A ReadWriteOnce claim: maxSurge 0 (the old pod goes first) is accepted; a surge is refused."""
        stop_first = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
        objects = render_chart({component: {"strategy": stop_first}})
        assert workload(objects, component)["spec"]["strategy"] == stop_first
        stderr = render_error({component: {"strategy": {"type": "RollingUpdate"}}})
        assert f"{component}.strategy: a RollingUpdate with maxSurge 25% starts the new pod" in stderr
        without_claim = render_chart({component: {"strategy": {"type": "RollingUpdate"},
                                                  "persistence": {"enabled": False}}})
        assert workload(without_claim, component)["spec"]["strategy"] == {"type": "RollingUpdate"}


# ----------------------------------------------------------------------------------------- disruption budgets

class TestDisruptionBudgets:
    @pytest.mark.parametrize("component", ["backend", "frontend"])
    @pytest.mark.parametrize("max_unavailable", [1, "50%"])
    def test_max_unavailable_instead_of_min_available(self, component, max_unavailable):
        objects = render_chart({component: {"pdb": {"minAvailable": None, "maxUnavailable": max_unavailable}}})
        spec = objects.get("PodDisruptionBudget", name_of(component))["spec"]
        assert spec["maxUnavailable"] == max_unavailable and "minAvailable" not in spec

    @pytest.mark.parametrize("component", ["backend", "frontend"])
    def test_both_refused(self, component):
        stderr = render_error({component: {"pdb": {"minAvailable": "50%", "maxUnavailable": 1}}})
        assert (f"{component}.pdb.minAvailable (50%) and {component}.pdb.maxUnavailable (1) are both set: a "
                f"PodDisruptionBudget takes one of them") in stderr

    @pytest.mark.parametrize("component", ["backend", "frontend"])
    def test_neither_refused_unless_disabled(self, component):
        stderr = render_error({component: {"pdb": {"minAvailable": None}}})
        assert f"{component}.pdb.enabled is true but neither" in stderr
        objects = render_chart({component: {"pdb": {"enabled": False, "minAvailable": None}}})
        assert objects.find("PodDisruptionBudget", name_of(component)) is None

    @pytest.mark.parametrize("zero", [0, "0%"])
    def test_zero_max_unavailable_refused(self, zero):
        stderr = render_error({"backend": {"pdb": {"minAvailable": None, "maxUnavailable": zero}}})
        assert f"backend.pdb.maxUnavailable ({zero}) must be at least 1" in stderr


# ------------------------------------------------------------------------------------------------ extraObjects

class TestExtraObjects:
    def test_maps_and_strings_rendered_with_tpl(self):
        values = {"extraObjects": [
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": '{{ include "agentforge.fullname" . }}-extra',
                          "namespace": "{{ .Release.Namespace }}"},
             "data": {"release": "{{ .Release.Name }}"}},
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {{ .Release.Name }}-workers\n"
            "spec:\n  maxUnavailable: 1\n  selector:\n    matchLabels:\n      app: workers\n",
        ]}
        objects = render_chart(values, **RELEASE)
        config = objects.get("ConfigMap", "rel-agentforge-extra")
        assert (config["metadata"]["namespace"], config["data"]) == ("team-a", {"release": "rel"})
        assert objects.get("PodDisruptionBudget", "rel-workers")["spec"]["maxUnavailable"] == 1

    def test_none_by_default(self, default_render):
        inventory = render_chart({"extraObjects": []}).inventory()
        assert inventory == default_render.inventory()

    @pytest.mark.parametrize("item", [
        {"apiVersion": "v1", "metadata": {"name": "x"}},
        {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"labels": {"a": "b"}}},
        "kind: ConfigMap\napiVersion: v1\nmetadata: {name: x}\n  broken: [",
    ], ids=["no-kind", "no-name", "not-yaml"])
    def test_an_item_that_is_no_object_is_refused(self, item):
        assert "extraObjects[0] must render one Kubernetes object" in render_error({"extraObjects": [item]})


# ------------------------------------------------------------------------------- the all-options scenario

def test_all_options_turns_every_new_key_on():
    """The all-options scenario sets each extension point, so that test_security (restricted), test_checkov,
    test_names and kubeconform over every Kubernetes minor (test_compatibility) cover them."""
    v = SCENARIOS["all-options"]
    objects = render_chart(v)
    assert v["extraObjects"] and objects.find("PriorityClass", "agentforge-serving")
    assert pod_spec(workload(objects, "backend"))["priorityClassName"] == "agentforge-serving"
    assert "otel-agent" in [c["name"] for c in pod_spec(workload(objects, "backend"))["containers"]]
    assert [c["name"] for c in pod_spec(workload(objects, "postgresql"))["containers"]] == [
        "postgresql", "metrics", "wal-agent"]
    assert migration_pod(objects)["initContainers"][0]["restartPolicy"] == "Always"
    assert main_container(objects, "backend")["envFrom"][-1] == {
        "configMapRef": {"name": "agentforge-extra-settings"}}
    assert objects.get("ConfigMap", "agentforge-extra-settings")
    assert main_container(objects, "backend")["livenessProbe"]["timeoutSeconds"] == 10
    assert {objects.get("Service", name_of(c))["spec"]["type"] for c in EXPOSABLE} >= {"LoadBalancer",
                                                                                            "NodePort"}
    assert objects.get("Service", "agentforge-postgresql")["metadata"]["annotations"]
    assert objects.get("PodDisruptionBudget", "agentforge-frontend")["spec"]["maxUnavailable"] == 1
    assert objects.get("HorizontalPodAutoscaler", "agentforge-frontend")["spec"]["behavior"]["scaleUp"]
    assert workload(objects, "prometheus")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert workload(objects, "frontend")["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 2
