"""The NetworkPolicy evaluator (tests/netpol.py): each rule of the API's semantics, with an allow and a deny case."""

import pytest

from harness.policy import Cluster, ContainerPort, External, Pod, pod_of, port_matches, selector_matches

NAMESPACES = {"app": {"team": "a"}, "other": {"team": "b"}, "infra": {}}

WEB = Pod("web", "app", {"role": "web", "tier": "front"}, "10.0.0.1",
          (ContainerPort(8080, "http"), ContainerPort(9100, "metrics", "UDP")))
DB = Pod("db", "app", {"role": "db"}, "10.0.0.2", (ContainerPort(5432, "pg"),))
CLIENT = Pod("client", "app", {"role": "client"}, "10.0.0.3")
STRANGER = Pod("stranger", "other", {"role": "client"}, "10.0.1.3")
INFRA = Pod("infra", "infra", {"role": "client"}, "10.0.2.3")
NODE = Pod("lonely", "other", {"role": "db"}, "10.0.1.9", (ContainerPort(8080, "http"),))
INTERNET = External("internet", "203.0.113.7")


def policy(pod_selector=None, ingress=None, egress=None, types=None, namespace="app", name="p"):
    spec = {"podSelector": pod_selector if pod_selector is not None else {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types is not None:
        spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def cluster(*policies):
    return Cluster(policies, NAMESPACES)


def labels(**kv):
    return {"matchLabels": kv}


class TestIsolation:
    def test_no_policy_allows_everything(self):
        c = cluster()
        assert c.allowed(STRANGER, DB, 5432)
        assert c.allowed(INTERNET, DB, 1)

    def test_policy_without_rules_isolates_only_the_pods_it_selects(self):
        c = cluster(policy(labels(role="db"), types=["Ingress"]))
        assert not c.allowed(CLIENT, DB, 5432)
        assert c.allowed(CLIENT, WEB, 8080)

    def test_empty_pod_selector_selects_every_pod_of_its_namespace_only(self):
        c = cluster(policy({}, types=["Ingress"]))
        assert not c.allowed(CLIENT, WEB, 8080)
        assert not c.allowed(CLIENT, DB, 5432)
        assert c.allowed(CLIENT, NODE, 8080), "a pod of another namespace is not selected"

    def test_policies_add_up(self):
        c = cluster(policy(labels(role="db"), [{"from": [{"podSelector": labels(role="web")}]}], name="a"),
                    policy(labels(role="db"), [{"from": [{"podSelector": labels(role="client")}]}], name="b"))
        assert c.allowed(WEB, DB, 5432)
        assert c.allowed(CLIENT, DB, 5432)
        assert not c.allowed(STRANGER, DB, 5432)


class TestPolicyTypesDefault:
    def test_ingress_rules_alone_isolate_ingress_not_egress(self):
        c = cluster(policy(labels(role="client"), ingress=[]))
        assert not c.allowed(WEB, CLIENT, 80)
        assert c.allowed(CLIENT, STRANGER, 80)

    def test_egress_rules_make_the_policy_isolate_both_directions(self):
        c = cluster(policy(labels(role="client"), egress=[{"to": [{"podSelector": labels(role="db")}]}]))
        assert c.allowed(CLIENT, DB, 5432)
        assert not c.allowed(CLIENT, WEB, 8080), "egress isolated: only the db"
        assert not c.allowed(WEB, CLIENT, 80), "Ingress is always among the defaulted types"

    def test_empty_egress_list_defaults_to_ingress_only(self):
        c = cluster(policy(labels(role="client"), egress=[]))
        assert c.allowed(CLIENT, WEB, 8080)
        assert not c.allowed(WEB, CLIENT, 80)

    def test_explicit_egress_type_does_not_isolate_ingress(self):
        c = cluster(policy(labels(role="client"), types=["Egress"]))
        assert c.allowed(WEB, CLIENT, 80)
        assert not c.allowed(CLIENT, WEB, 8080)

    def test_empty_policy_types_list_is_defaulted(self):
        c = cluster(policy(labels(role="client"), types=[]))
        assert not c.allowed(WEB, CLIENT, 80)
        assert c.allowed(CLIENT, WEB, 8080)


class TestRuleSources:
    @pytest.mark.parametrize("rule", [{}, {"from": []}, {"from": None}], ids=["missing", "empty", "null"])
    def test_missing_or_empty_from_matches_every_source(self, rule):
        c = cluster(policy(labels(role="db"), [{**rule, "ports": [{"port": 5432}]}]))
        for source in (CLIENT, STRANGER, INFRA, INTERNET):
            assert c.allowed(source, DB, 5432), source.name
        assert not c.allowed(CLIENT, DB, 5433)

    def test_empty_rule_allows_every_source_and_port(self):
        c = cluster(policy(labels(role="db"), [{}]))
        assert c.allowed(INTERNET, DB, 1)
        assert c.allowed(STRANGER, DB, 65535)

    def test_no_rules_allow_nothing(self):
        c = cluster(policy(labels(role="db"), []))
        assert not c.allowed(WEB, DB, 5432)

    def test_pod_selector_alone_means_the_policy_namespace(self):
        c = cluster(policy(labels(role="db"), [{"from": [{"podSelector": labels(role="client")}]}]))
        assert c.allowed(CLIENT, DB, 5432)
        assert not c.allowed(STRANGER, DB, 5432), "same labels, other namespace"
        assert not c.allowed(WEB, DB, 5432)

    def test_namespace_selector_alone_means_every_pod_there(self):
        c = cluster(policy(labels(role="db"), [{"from": [{"namespaceSelector": labels(team="b")}]}]))
        assert c.allowed(STRANGER, DB, 5432)
        assert c.allowed(NODE, DB, 5432)
        assert not c.allowed(CLIENT, DB, 5432), "its own namespace does not match"
        assert not c.allowed(INTERNET, DB, 5432)

    def test_namespace_name_label_is_always_set(self):
        c = cluster(policy(labels(role="db"), [{"from": [
            {"namespaceSelector": labels(**{"kubernetes.io/metadata.name": "infra"})}]}]))
        assert c.allowed(INFRA, DB, 5432)
        assert not c.allowed(STRANGER, DB, 5432)

    def test_both_selectors_in_one_peer_are_anded(self):
        c = cluster(policy(labels(role="db"), [{"from": [
            {"namespaceSelector": labels(team="b"), "podSelector": labels(role="client")}]}]))
        assert c.allowed(STRANGER, DB, 5432)
        assert not c.allowed(NODE, DB, 5432), "right namespace, wrong pod"
        assert not c.allowed(CLIENT, DB, 5432), "right pod, wrong namespace"
        assert not c.allowed(INFRA, DB, 5432)

    def test_separate_peers_are_ored(self):
        c = cluster(policy(labels(role="db"), [{"from": [
            {"namespaceSelector": labels(team="b")}, {"podSelector": labels(role="client")}]}]))
        assert c.allowed(STRANGER, DB, 5432)
        assert c.allowed(NODE, DB, 5432)
        assert c.allowed(CLIENT, DB, 5432)
        assert not c.allowed(INFRA, DB, 5432)
        assert not c.allowed(WEB, DB, 5432)

    def test_empty_namespace_selector_means_every_namespace_but_only_pods(self):
        c = cluster(policy(labels(role="db"), [{"from": [{"namespaceSelector": {}}]}]))
        for source in (CLIENT, STRANGER, INFRA):
            assert c.allowed(source, DB, 5432)
        assert not c.allowed(INTERNET, DB, 5432)

    def test_empty_pod_selector_peer_means_every_pod_of_the_namespace(self):
        c = cluster(policy(labels(role="db"), [{"from": [{"podSelector": {}}]}]))
        assert c.allowed(WEB, DB, 5432)
        assert not c.allowed(STRANGER, DB, 5432)

    def test_selectors_never_match_outside_addresses(self):
        c = cluster(policy(labels(role="db"), [{"from": [{"podSelector": {}}, {"namespaceSelector": {}}]}]))
        assert not c.allowed(INTERNET, DB, 5432)


class TestIpBlock:
    BLOCK = {"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.0/29"]}}

    def test_address_in_cidr_allowed_in_except_denied(self):
        c = cluster(policy(labels(role="db"), [{"from": [self.BLOCK]}]))
        assert c.allowed(External("in", "203.0.113.77"), DB, 5432)
        assert not c.allowed(INTERNET, DB, 5432), "203.0.113.7 is in the except range"
        assert not c.allowed(External("out", "198.51.100.1"), DB, 5432)

    def test_pods_are_matched_by_ip(self):
        c = cluster(policy(labels(role="db"), [{"from": [{"ipBlock": {"cidr": "10.0.1.0/24"}}]}]))
        assert c.allowed(STRANGER, DB, 5432)
        assert not c.allowed(CLIENT, DB, 5432)

    def test_ipv6_block_does_not_match_ipv4(self):
        c = cluster(policy(labels(role="db"), [{"from": [{"ipBlock": {"cidr": "::/0"}}]}]))
        assert not c.allowed(INTERNET, DB, 5432)
        assert c.allowed(External("v6", "2001:db8::1"), DB, 5432)

    def test_egress_to_ip_block(self):
        c = cluster(policy(labels(role="client"), egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [
            "10.0.0.0/8"]}}], "ports": [{"port": 443}]}], types=["Egress"]))
        assert c.allowed(CLIENT, INTERNET, 443)
        assert not c.allowed(CLIENT, INTERNET, 80)
        assert not c.allowed(CLIENT, WEB, 443), "pod IP in the except range"


class TestPorts:
    @staticmethod
    def only(port, pod_selector=None):
        return cluster(policy(labels(role="web") if pod_selector is None else pod_selector, [{"ports": [port]}]))

    def test_numeric_port_with_default_protocol_tcp(self):
        c = self.only({"port": 8080})
        assert c.allowed(CLIENT, WEB, 8080)
        assert not c.allowed(CLIENT, WEB, 8080, "UDP")
        assert not c.allowed(CLIENT, WEB, 8081)

    def test_explicit_protocol(self):
        c = self.only({"port": 53, "protocol": "UDP"})
        assert c.allowed(CLIENT, WEB, 53, "UDP")
        assert not c.allowed(CLIENT, WEB, 53)

    def test_protocol_without_port_means_every_port_of_it(self):
        c = self.only({"protocol": "UDP"})
        assert c.allowed(CLIENT, WEB, 12345, "UDP")
        assert not c.allowed(CLIENT, WEB, 12345)

    def test_end_port_range_is_inclusive(self):
        c = self.only({"port": 8000, "endPort": 8010})
        assert c.allowed(CLIENT, WEB, 8000)
        assert c.allowed(CLIENT, WEB, 8010)
        assert not c.allowed(CLIENT, WEB, 7999)
        assert not c.allowed(CLIENT, WEB, 8011)

    def test_named_port_resolved_against_the_destination(self):
        c = self.only({"port": "http"}, {})
        assert c.allowed(CLIENT, WEB, 8080)
        assert not c.allowed(CLIENT, WEB, 8081)
        assert not c.allowed(CLIENT, DB, 5432), "the db has no port named http"
        assert not c.allowed(CLIENT, DB, 8080)

    def test_named_port_must_match_protocol(self):
        assert not self.only({"port": "metrics"}).allowed(CLIENT, WEB, 9100, "UDP"), "the rule means TCP"
        assert not self.only({"port": "metrics"}).allowed(CLIENT, WEB, 9100), "the container's metrics port is UDP"
        assert self.only({"port": "metrics", "protocol": "UDP"}).allowed(CLIENT, WEB, 9100, "UDP")

    def test_named_port_in_egress_resolved_against_the_destination_pod(self):
        c = cluster(policy(labels(role="client"), egress=[{"ports": [{"port": "pg"}]}], types=["Egress"]))
        assert c.allowed(CLIENT, DB, 5432)
        assert not c.allowed(CLIENT, WEB, 5432)
        assert not c.allowed(CLIENT, External("x", "198.51.100.1"), 5432), "no pod, no named port"

    def test_any_listed_port_matches(self):
        c = cluster(policy(labels(role="web"), [{"ports": [{"port": 1}, {"port": 2}]}]))
        assert c.allowed(CLIENT, WEB, 2)
        assert not c.allowed(CLIENT, WEB, 3)

    def test_sources_and_ports_of_one_rule_hold_together(self):
        c = cluster(policy(labels(role="db"), [
            {"from": [{"podSelector": labels(role="web")}], "ports": [{"port": 5432}]},
            {"from": [{"podSelector": labels(role="client")}], "ports": [{"port": 9187}]}]))
        assert c.allowed(WEB, DB, 5432)
        assert c.allowed(CLIENT, DB, 9187)
        assert not c.allowed(WEB, DB, 9187)
        assert not c.allowed(CLIENT, DB, 5432)


class TestSelectors:
    @pytest.mark.parametrize("expression,matches", [
        ({"key": "role", "operator": "In", "values": ["web", "db"]}, True),
        ({"key": "role", "operator": "In", "values": ["db"]}, False),
        ({"key": "absent", "operator": "In", "values": ["x"]}, False),
        ({"key": "role", "operator": "NotIn", "values": ["db"]}, True),
        ({"key": "role", "operator": "NotIn", "values": ["web"]}, False),
        ({"key": "absent", "operator": "NotIn", "values": ["x"]}, True),
        ({"key": "tier", "operator": "Exists"}, True),
        ({"key": "absent", "operator": "Exists"}, False),
        ({"key": "absent", "operator": "DoesNotExist"}, True),
        ({"key": "tier", "operator": "DoesNotExist"}, False),
    ])
    def test_match_expressions(self, expression, matches):
        assert selector_matches({"matchExpressions": [expression]}, WEB.labels) is matches

    def test_match_labels_and_expressions_are_anded(self):
        selector = {"matchLabels": {"role": "web"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]}
        assert selector_matches(selector, WEB.labels)
        assert not selector_matches(selector, {"role": "web"})
        assert not selector_matches(selector, {"tier": "front"})

    def test_empty_selector_matches_everything(self):
        assert selector_matches({}, {})

    def test_expressions_in_a_policy(self):
        c = cluster(policy({"matchExpressions": [{"key": "role", "operator": "In", "values": ["db", "web"]}]},
                           [{"from": [{"podSelector": {"matchExpressions": [
                               {"key": "role", "operator": "NotIn", "values": ["web"]}]}}]}]))
        assert c.allowed(CLIENT, DB, 5432)
        assert c.allowed(CLIENT, WEB, 8080)
        assert not c.allowed(WEB, DB, 5432)


class TestBothDirections:
    def test_connection_needs_egress_of_source_and_ingress_of_destination(self):
        c = cluster(policy(labels(role="client"), egress=[{"to": [{"podSelector": labels(role="db")}]}],
                           types=["Egress"], name="client-out"),
                    policy(labels(role="db"), [{"from": [{"podSelector": labels(role="web")}]}], name="db-in"))
        assert not c.allowed(CLIENT, DB, 5432), "egress allows it, ingress does not"
        assert not c.allowed(CLIENT, WEB, 8080), "ingress is open, egress does not allow it"
        assert c.allowed(WEB, DB, 5432)

    def test_outside_sources_only_face_ingress(self):
        c = cluster(policy({}, types=["Egress"]))
        assert c.allowed(INTERNET, WEB, 8080)
        assert not c.allowed(WEB, INTERNET, 443)


class TestMalformedInputRefused:
    @pytest.mark.parametrize("peer", [
        {},
        {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}},
        {"podSelector": {"matchLabel": {}}},
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]}},
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]}},
        {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}},
    ])
    def test_bad_peer(self, peer):
        with pytest.raises(ValueError):
            cluster(policy({}, [{"from": [peer]}])).allowed(CLIENT, WEB, 8080)

    @pytest.mark.parametrize("port", [
        {"endPort": 10}, {"port": "http", "endPort": 10}, {"port": 10, "endPort": 9}, {"port": "8080"},
        {"port": "has_underscore"}, {"port": 80, "protocol": "ICMP"},
    ])
    def test_bad_port(self, port):
        with pytest.raises(ValueError):
            port_matches(port, WEB, 8080, "TCP")

    def test_policy_without_namespace(self):
        bad = policy()
        del bad["metadata"]["namespace"]
        with pytest.raises(ValueError, match="namespace"):
            Cluster([bad])

    def test_unknown_policy_type(self):
        with pytest.raises(ValueError, match="policyType"):
            Cluster([policy(types=["Ingres"])])


def test_pod_of_a_workload_reads_template_labels_and_ports():
    deployment = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "app"}, "spec": {"template": {
        "metadata": {"labels": {"role": "web"}},
        "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}}}}
    pod = pod_of(deployment, "10.0.0.9")
    assert (pod.namespace, pod.labels, pod.ip) == ("app", {"role": "web"}, "10.0.0.9")
    assert pod.ports == (ContainerPort(8080, "http", "TCP"),)
