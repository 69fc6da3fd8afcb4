"""NetworkPolicies by reachability: who may open which port on which pod of the release.

The pods are the render's own (the pod templates of its Deployments, StatefulSets and Job), the policies are the
render's NetworkPolicies, and tests/netpol.py applies the API's semantics. Every table below lists the
connections allowed; every other (source, destination, port) must be denied.
"""

import pytest

from harness.policy import AddressPool, Cluster, External, Pod
from harness.reachability import (
    ALL_PORTS,
    CHART_LABELS,
    EXTERNAL_DB,
    NAMESPACE,
    RELEASE,
    Scene,
    merged,
    release_pods,
)
from harness.render import render_chart, render_error

EXTERNAL_REDIS = {"redis": {"enabled": False}, "externalRedis": {"host": "redis.example.com"}}
GATEWAY = {"httpRoute": {"enabled": True, "parentRef": {"name": "public", "namespace": "gateway-system"},
                          "sessionPersistence": {"providedByGateway": True}}}
MONITORING_OFF = {"monitoring": {"enabled": False}}
BACKUP = {"backup": {"enabled": True}}


# The default install. The seed's design note (its NetworkPolicy section and service-to-service table), narrowed to
# what the code connects to (test_app_*.py run it): the database only from the backend and the migration Job; Redis
# only from the backend (the data collector reads no setting and connects to neither); from outside the release,
# the frontend and the backend only, from the ingress controller's namespace. Extended by the monitoring paths
# (Prometheus scrapes the backend's and the data collector's metrics, served on their HTTP ports; Grafana queries
# Prometheus) and by the `helm test` pods: the backend's health check and the read of the frontend's bundle.
# Grafana's UI is not reachable from outside unless networkPolicy.grafanaFromIngress.
DEFAULT = {
    ("ingress-controller", "frontend", 3000),
    ("ingress-controller", "backend", 8000),
    ("ingress-neighbour", "frontend", 3000),  # any pod of the controller's namespace, unless ingressPodSelector
    ("ingress-neighbour", "backend", 8000),
    ("backend", "data-collector", 8001),
    ("backend", "postgresql", 5432),
    ("backend", "redis", 6379),
    ("migrations", "postgresql", 5432),
    ("prometheus", "backend", 8000),
    ("prometheus", "data-collector", 8001),
    ("grafana", "prometheus", 9090),
    ("test", "backend", 8000),
    ("test", "frontend", 3000),
}

# External-database mode (postgresql.enabled false): no database pod, and nothing in the release may be reached
# on 5432.
EXTERNAL_DATABASE = {
    ("ingress-controller", "frontend", 3000),
    ("ingress-controller", "backend", 8000),
    ("ingress-neighbour", "frontend", 3000),
    ("ingress-neighbour", "backend", 8000),
    ("backend", "data-collector", 8001),
    ("backend", "redis", 6379),
    ("prometheus", "backend", 8000),
    ("prometheus", "data-collector", 8001),
    ("grafana", "prometheus", 9090),
    ("test", "backend", 8000),
    ("test", "frontend", 3000),
}

MONITORING_PATHS = {
    ("prometheus", "backend", 8000),
    ("prometheus", "data-collector", 8001),
    ("grafana", "prometheus", 9090),
}
INGRESS_PATHS = {
    ("ingress-controller", "frontend", 3000),
    ("ingress-controller", "backend", 8000),
    ("ingress-neighbour", "frontend", 3000),
    ("ingress-neighbour", "backend", 8000),
}
GATEWAY_PATHS = {
    ("gateway", "frontend", 3000),
    ("gateway", "backend", 8000),
}


# The release behind ingress-nginx (the chart's ingress-nginx preset of the Ingress), whose
# namespace the scene's controller pods are in; every scenario but "no-edge" starts from it.
NGINX_EDGE = {"ingress": {"enabled": True, "controller": "ingress-nginx"}}
SCENARIOS = {
    "default": (NGINX_EDGE, DEFAULT),
    "external-database": (merged(NGINX_EDGE, EXTERNAL_DB), EXTERNAL_DATABASE),
    "monitoring-off": (merged(NGINX_EDGE, MONITORING_OFF), DEFAULT - MONITORING_PATHS),
    # The chart's defaults: no edge, so nothing outside the release reaches the frontend or the backend.
    "no-edge": ({}, DEFAULT - INGRESS_PATHS),
    # Traefik's preset admits the namespace traefik, not the ingress-nginx one.
    "traefik": ({"ingress": {"enabled": True, "controller": "traefik"}}, DEFAULT - INGRESS_PATHS),
    # The Gateway API instead of the Ingress: the Gateway's namespace replaces the ingress controller's.
    "gateway-api": (merged(NGINX_EDGE, GATEWAY, {"ingress": {"enabled": False}}),
                    DEFAULT - INGRESS_PATHS | GATEWAY_PATHS),
    # Only the controller's pods of its namespace; Grafana's UI opened to them.
    "ingress-pods-and-grafana": (
        merged(NGINX_EDGE, {"networkPolicy": {
            "grafanaFromIngress": True,
            "ingressPodSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}}}),
        DEFAULT - {("ingress-neighbour", "frontend", 3000), ("ingress-neighbour", "backend", 8000)}
        | {("ingress-controller", "grafana", 3000)}),
    # Backups on: the backup Job's pods reach the bundled database, and nothing reaches them; with an external
    # database they reach nothing in the release (TestEgress: its address).
    "backup": (merged(NGINX_EDGE, BACKUP), DEFAULT | {("backup", "postgresql", 5432)}),
    "backup-external-database": (merged(NGINX_EDGE, EXTERNAL_DB, BACKUP), EXTERNAL_DATABASE),
}


@pytest.fixture(scope="module")
def scenes():
    cache: dict = {}

    def scene(key: str) -> Scene:
        if key not in cache:
            cache[key] = Scene(SCENARIOS[key][0])
        return cache[key]
    return scene


class TestReachabilityMatrix:
    @pytest.mark.parametrize("scenario", list(SCENARIOS))
    def test_matrix_equals_the_design(self, scenes, scenario):
        expected = SCENARIOS[scenario][1]
        actual = scenes(scenario).matrix()
        assert sorted(actual - expected) == [], "allowed beyond the design"
        assert sorted(expected - actual) == [], "the design's paths denied"

    @pytest.mark.parametrize("scenario", list(SCENARIOS))
    def test_the_ingress_side_alone_holds_the_design(self, scenes, scenario):
        """Each destination's own policy admits no one beyond the design, whatever the source's egress policy allows
        (the sources' egress sides are coarser: the design rests on the ingress side)."""
        assert sorted(scenes(scenario).ingress_matrix() - SCENARIOS[scenario][1]) == []

    def test_external_database_mode_has_no_database_pod_and_no_5432(self, scenes):
        scene = scenes("external-database")
        assert "postgresql" not in {p.name for p in scene.pods}
        assert not [c for c in scene.matrix() if c[2] == 5432]
        assert not any(rule_port.get("port") == 5432
                       for policy in scene.objects.of_kind("NetworkPolicy")
                       for rule in policy["spec"].get("ingress", []) for rule_port in rule.get("ports", []))

    def test_pods_come_from_the_render(self, scenes):
        names = {p.name for p in scenes("default").pods}
        assert names == {"frontend", "backend", "data-collector", "postgresql", "redis", "prometheus", "grafana",
                         "migrations", "test"}

    def test_every_release_pod_is_isolated(self, scenes):
        scene = scenes("default")
        for pod in scene.pods:
            assert scene.cluster.isolated(pod, "Ingress"), pod.name

    def test_backup_pods_come_from_the_cronjob_and_are_isolated_both_ways(self, scenes):
        scene = scenes("backup")
        assert {p.name for p in scene.pods} == {p.name for p in scenes("default").pods} | {"backup"}
        assert scene.cluster.isolated(scene.pod("backup"), "Ingress")
        assert scene.cluster.isolated(scene.pod("backup"), "Egress")


class TestOtherReleaseInTheNamespace:
    """Two releases of the chart side by side: neither reaches the other's pods."""

    @pytest.fixture(scope="class")
    @classmethod
    def two(cls):
        first, second = render_chart({}, name=RELEASE, namespace=NAMESPACE), render_chart({}, name="second",
                                                                                            namespace=NAMESPACE)
        pool = AddressPool()
        pods = {}
        for release, objects in ((RELEASE, first), ("second", second)):
            for pod in release_pods(objects, pool):
                pod.name = f"{release}/{pod.name}"
                pods[pod.name] = pod
        return Cluster(first.of_kind("NetworkPolicy") + second.of_kind("NetworkPolicy")), pods

    def test_no_path_crosses_releases(self, two):
        cluster, pods = two
        matrix = cluster.reachability(pods.values(), pods.values(), ALL_PORTS)
        crossing = {c for c in matrix if c[0].split("/")[0] != c[1].split("/")[0]}
        assert crossing == set()

    def test_each_release_keeps_its_own_paths(self, two):
        cluster, pods = two
        for release in (RELEASE, "second"):
            assert cluster.allowed(pods[f"{release}/backend"], pods[f"{release}/postgresql"], 5432)
            assert cluster.allowed(pods[f"{release}/backend"], pods[f"{release}/redis"], 6379)
            assert not cluster.allowed(pods[f"{release}/data-collector"], pods[f"{release}/redis"], 6379)


class TestPolicyShape:
    def test_disabled_renders_no_policy(self):
        assert render_chart({"networkPolicy": {"enabled": False}}).of_kind("NetworkPolicy") == []

    def test_policies_only_select_this_release(self, default_render):
        for policy in default_render.of_kind("NetworkPolicy"):
            selector = policy["spec"]["podSelector"]["matchLabels"]
            assert selector.items() >= CHART_LABELS.items(), policy["metadata"]["name"]

    def test_ports_are_numeric(self, scenes):
        """A named port matches nothing on a pod whose container names it otherwise: the ports table decides."""
        for policy in scenes("default").objects.of_kind("NetworkPolicy"):
            for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
                for port in rule.get("ports", []):
                    assert isinstance(port["port"], int), (policy["metadata"]["name"], port)

    def test_default_deny_selects_the_release_only(self, default_render):
        deny = default_render.get("NetworkPolicy", "agentforge-default-deny")
        assert deny["spec"] == {"podSelector": {"matchLabels": CHART_LABELS}, "policyTypes": ["Ingress"]}

    def test_gateway_in_the_release_namespace_by_default(self):
        """A Gateway without a namespace is in the route's; with the Ingress on too, both edges may reach in."""
        scene = Scene(merged(NGINX_EDGE, {"httpRoute": {"enabled": True, "parentRef": {"name": "local"},
                                                        "sessionPersistence": {"providedByGateway": True}}}))
        local_gateway = Pod("local-gw", NAMESPACE, {"app": "gateway"}, "10.99.0.2")
        assert scene.cluster.allowed(local_gateway, scene.pod("frontend"), 3000)
        assert scene.cluster.allowed(local_gateway, scene.pod("backend"), 8000)
        assert not scene.cluster.allowed(local_gateway, scene.pod("redis"), 6379)
        assert not scene.cluster.allowed(scene.pod("gateway"), scene.pod("frontend"), 3000)
        assert scene.cluster.allowed(scene.pod("ingress-controller"), scene.pod("frontend"), 3000)


class TestExtraSources:
    """networkPolicy.gatewayNamespaceSelector, extraEdgeFrom and metricsFrom (one render)."""

    CLUSTER_PROMETHEUS = Pod("cluster-prometheus", "monitoring", {"app": "prometheus"}, "10.99.0.3")
    LOAD_BALANCER = External("load-balancer", "192.0.2.50")
    ENVOY = Pod("envoy", "envoy-gateway-system", {"app": "envoy"}, "10.99.0.1")

    @pytest.fixture(scope="class")
    @classmethod
    def scene(cls):
        return Scene(merged(GATEWAY, {"networkPolicy": {
            "gatewayNamespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}},
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "extraEdgeFrom": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}}))

    def test_gateway_namespace_selector_overrides_the_parent_namespace(self, scene):
        assert scene.cluster.allowed(self.ENVOY, scene.pod("backend"), 8000)
        assert scene.cluster.allowed(self.ENVOY, scene.pod("frontend"), 3000)
        assert not scene.cluster.allowed(self.ENVOY, scene.pod("data-collector"), 8001)
        assert not scene.cluster.allowed(scene.pod("gateway"), scene.pod("backend"), 8000)

    def test_metrics_from(self, scene):
        allowed = scene.cluster.allowed
        assert allowed(self.CLUSTER_PROMETHEUS, scene.pod("backend"), 8000)
        assert allowed(self.CLUSTER_PROMETHEUS, scene.pod("data-collector"), 8001)
        assert not allowed(self.CLUSTER_PROMETHEUS, scene.pod("frontend"), 3000)
        assert not allowed(self.CLUSTER_PROMETHEUS, scene.pod("postgresql"), 5432)

    def test_extra_edge_from(self, scene):
        allowed = scene.cluster.allowed
        assert allowed(self.LOAD_BALANCER, scene.pod("frontend"), 3000)
        assert allowed(self.LOAD_BALANCER, scene.pod("backend"), 8000)
        assert not allowed(self.LOAD_BALANCER, scene.pod("data-collector"), 8001)
        assert not allowed(self.LOAD_BALANCER, scene.pod("grafana"), 3000)


class TestValidation:
    @pytest.mark.parametrize("values,message", [
        ({"egress": {"enabled": True, "dnsNamespaceSelector": None}},
         "networkPolicy.egress.dnsNamespaceSelector is required"),
        ({"egress": {"allowedCIDRs": ["10.0.0.0"]}}, "allowedCIDRs"),
        ({"egress": {"externalDatabaseCIDR": "db.example.com"}}, "externalDatabaseCIDR"),
        ({"extraEdgeFrom": [{}]}, "extraEdgeFrom"),
        ({"ingressPodSelector": {"matchExpressions": [{"key": "a", "operator": "Equals"}]}}, "operator"),
        ({"egress": {"extraTo": [{"from": []}]}}, "from"),
    ])
    def test_bad_values_rejected(self, values, message):
        assert message in render_error({"networkPolicy": values})


class TestEgress:
    KUBE_DNS = Pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, "10.96.0.10")
    LLM_API = External("llm-api", "198.51.100.7")
    ELSEWHERE = External("elsewhere", "192.0.2.99")
    DATABASE = External("database", "192.0.2.10")
    API_SERVER = External("api-server", "10.0.0.1")

    @pytest.fixture(scope="class")
    @classmethod
    def scene(cls):
        return Scene(merged(NGINX_EDGE, EXTERNAL_DB, EXTERNAL_REDIS, BACKUP, {"networkPolicy": {"egress": {
            "enabled": True, "allowedCIDRs": ["198.51.100.0/24"], "externalDatabaseCIDR": "192.0.2.10/32",
            "apiServerCIDRs": ["10.0.0.1/32"],
            "extraTo": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": 25, "protocol": "TCP"}]}],
        }}}))

    def test_off_by_default_but_for_the_data_collector(self, default_render):
        scene = Scene({})
        egress = [p["metadata"]["name"] for p in default_render.of_kind("NetworkPolicy")
                  if "Egress" in p["spec"]["policyTypes"]]
        assert egress == ["agentforge-data-collector-egress"]
        assert scene.cluster.allowed(scene.pod("backend"), self.LLM_API, 443)
        assert scene.cluster.allowed(scene.pod("backend"), TestCollectorEgress.METADATA, 80)

    def test_in_release_matrix_unchanged(self, scene):
        assert scene.matrix() == EXTERNAL_DATABASE - {("backend", "redis", 6379)}

    def test_dns_for_every_pod(self, scene):
        for pod in scene.pods:
            assert scene.cluster.allowed(pod, self.KUBE_DNS, 53, "UDP"), pod.name
            assert scene.cluster.allowed(pod, self.KUBE_DNS, 53, "TCP"), pod.name
            assert not scene.cluster.allowed(pod, self.KUBE_DNS, 80), pod.name

    @pytest.mark.parametrize("component,allowed", [
        ("backend", True), ("frontend", False), ("migrations", False), ("prometheus", False), ("grafana", False),
        ("backup", False)])
    def test_https_to_allowed_cidrs_for_the_backend_only(self, scene, component, allowed):
        pod = scene.pod(component)
        assert scene.cluster.allowed(pod, self.LLM_API, 443) is allowed
        assert not scene.cluster.allowed(pod, self.LLM_API, 80)
        assert not scene.cluster.allowed(pod, self.ELSEWHERE, 443)

    @pytest.mark.parametrize("component,allowed", [
        ("backend", True), ("migrations", True), ("backup", True), ("frontend", False), ("grafana", False)])
    def test_external_database_cidr(self, scene, component, allowed):
        pod = scene.pod(component)
        assert scene.cluster.allowed(pod, self.DATABASE, 5432) is allowed
        assert not scene.cluster.allowed(pod, self.ELSEWHERE, 5432)

    @pytest.mark.parametrize("component,allowed", [
        ("backend", True), ("migrations", False), ("backup", False), ("frontend", False)])
    def test_external_redis_without_cidr_opens_its_port_only(self, scene, component, allowed):
        pod = scene.pod(component)
        assert scene.cluster.allowed(pod, self.ELSEWHERE, 6379) is allowed
        assert not scene.cluster.allowed(pod, self.ELSEWHERE, 6380)

    def test_prometheus_reaches_the_api_server(self, scene):
        for port in (443, 6443):
            assert scene.cluster.allowed(scene.pod("prometheus"), self.API_SERVER, port)
            assert not scene.cluster.allowed(scene.pod("prometheus"), self.LLM_API, port)
        assert not scene.cluster.allowed(scene.pod("grafana"), self.API_SERVER, 6443)

    def test_no_egress_to_other_pods_of_the_namespace(self, scene):
        for pod in scene.pods:
            assert not scene.cluster.allowed(pod, scene.pod("neighbour"), 8080), pod.name

    def test_extra_to_for_every_pod(self, scene):
        for pod in scene.pods:
            assert scene.cluster.allowed(pod, self.ELSEWHERE, 25), pod.name
            if pod.name != "data-collector":  # which reaches every public address (TestCollectorEgress)
                assert not scene.cluster.allowed(pod, self.ELSEWHERE, 26), pod.name
        private = External("private", "10.1.2.3")
        values = {"networkPolicy": {"egress": {"extraTo": [{"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}]}]}}}
        scene = Scene(values)
        assert scene.cluster.allowed(scene.pod("data-collector"), private, 25), "extraTo opens the collector's too"

    def test_without_cidrs_the_ports_are_open_to_any_address(self):
        scene = Scene(merged(EXTERNAL_DB, {"networkPolicy": {"egress": {"enabled": True}}}))
        allowed = scene.cluster.allowed
        assert allowed(scene.pod("backend"), self.ELSEWHERE, 5432)
        assert allowed(scene.pod("migrations"), self.DATABASE, 5432)
        assert not allowed(scene.pod("backend"), self.ELSEWHERE, 5433)
        assert not allowed(scene.pod("frontend"), self.ELSEWHERE, 5432)
        assert allowed(scene.pod("prometheus"), self.API_SERVER, 6443)
        assert not allowed(scene.pod("prometheus"), self.API_SERVER, 80)
        assert not allowed(scene.pod("backend"), self.LLM_API, 443), "no allowedCIDRs: no HTTPS"


class TestCollectorEgress:
    """The data collector fetches users' URLs and follows redirects unchecked: by default it reaches DNS and public
    addresses, never the metadata endpoint, private ranges or the cluster's pods; allowedPrivateCIDRs opens chosen
    internal sources. Whether networkPolicy.egress is on or not."""

    PUBLIC = External("public-site", "198.51.100.7")
    METADATA = External("metadata", "169.254.169.254")
    INTERNAL = External("internal-source", "10.20.3.4")
    SHARED = External("carrier-nat", "100.64.1.1")

    @pytest.fixture(scope="class", params=[False, True], ids=["egress-off", "egress-on-to-anywhere"])
    @classmethod
    def scene(cls, request):
        egress = {"enabled": True, "allowedCIDRs": ["0.0.0.0/0"]} if request.param else {}
        return Scene({"networkPolicy": {"egress": egress}})

    def test_public_addresses_and_dns_on_any_port(self, scene):
        collector = scene.pod("data-collector")
        for port in (80, 443, 8443):
            assert scene.cluster.allowed(collector, self.PUBLIC, port), port
        assert scene.cluster.allowed(collector, TestEgress.KUBE_DNS, 53, "UDP")

    @pytest.mark.parametrize("target", ["METADATA", "INTERNAL", "SHARED"])
    def test_no_link_local_private_or_shared_address(self, scene, target):
        for port in (80, 443):
            assert not scene.cluster.allowed(scene.pod("data-collector"), getattr(self, target), port)

    def test_no_pod_of_the_cluster(self, scene):
        collector = scene.pod("data-collector")
        for pod in scene.pods + scene.outsiders:
            if isinstance(pod, Pod) and pod is not collector:
                assert not any(scene.cluster.allowed(collector, pod, port) for port in ALL_PORTS), pod.name

    def test_the_backend_keeps_its_egress(self, scene):
        assert scene.cluster.allowed(scene.pod("backend"), self.METADATA, 443)

    def test_allowed_private_cidrs_open_chosen_sources(self):
        scene = Scene({"networkPolicy": {"collectorEgress": {"allowedPrivateCIDRs": ["10.20.0.0/16"]}}})
        collector = scene.pod("data-collector")
        assert scene.cluster.allowed(collector, self.INTERNAL, 5432)
        assert not scene.cluster.allowed(collector, self.METADATA, 80)
        assert not scene.cluster.allowed(collector, External("other", "10.21.0.1"), 80)

    def test_an_ipv6_denied_range_is_refused_by_name(self):
        assert "deniedCIDRs" in render_error({"networkPolicy": {"collectorEgress": {"deniedCIDRs": ["fd00::/8"]}}})
