"""A NetworkPolicy evaluator: which connections a set of networking.k8s.io/v1 NetworkPolicies allows.

It follows the API's documented semantics, so the chart's policies can be checked by reachability rather than
by their text:

- A policy applies to the pods of its own namespace that its `spec.podSelector` selects (`{}`: all of them).
- `policyTypes` defaults to ["Ingress"], plus "Egress" when the policy has egress rules.
- A pod is isolated for ingress (egress) iff some policy that selects it has Ingress (Egress) among its
  policyTypes. A connection is allowed iff (the destination is not ingress-isolated, or some ingress rule of a
  policy selecting it allows the source and port) and (the source is not egress-isolated, or some egress rule
  of a policy selecting it allows the destination and port). Policies only add: there is no deny rule.
- A rule's `from`/`to` missing or empty matches every peer; its `ports` missing or empty matches every port.
- A peer with `podSelector` alone selects pods of the policy's namespace; `namespaceSelector` alone, every pod
  of the matching namespaces; both in one peer, pods that match both (AND); separate peers are ORed.
  `namespaceSelector: {}` matches every namespace. Namespaces carry `kubernetes.io/metadata.name`.
- `ipBlock` (with `except`) matches endpoints by IP, pods and outside addresses alike.
- A port: `protocol` defaults to TCP; a numeric `port` with optional `endPort` (inclusive range); a named port
  matches a container port of that name and protocol on the destination pod; no `port` = every port.
- Label selectors: `matchLabels` and `matchExpressions` (In, NotIn, Exists, DoesNotExist), all ANDed.

Malformed input the API server would reject (an empty peer, ipBlock beside a selector, a bad operator, endPort
without a numeric port...) raises ValueError instead of being read some way.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

PROTOCOLS = ("TCP", "UDP", "SCTP")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")
# IANA_SVC_NAME, the syntax of a named port: at most 15 characters, lowercase letters, digits and inner single
# hyphens, at least one letter.
PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-))*[a-z0-9]$|^[a-z]$")


@dataclass(frozen=True)
class ContainerPort:
    port: int
    name: str | None = None
    protocol: str = "TCP"


@dataclass
class Pod:
    name: str
    namespace: str
    labels: Mapping[str, str]
    ip: str
    ports: tuple[ContainerPort, ...] = ()


@dataclass
class External:
    """An endpoint outside the pod network (a client on the internet, a managed database): only an IP."""

    name: str
    ip: str


Endpoint = Pod | External


# Label selectors -------------------------------------------------------------------------------------------------

def selector_matches(selector: Mapping | None, labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector matches labels. `{}` matches everything; None is not a selector (ValueError)."""
    if selector is None:
        raise ValueError("a label selector is required here")
    unknown = set(selector) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise ValueError(f"unknown label selector fields {sorted(unknown)}")
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(_expression_matches(expr, labels) for expr in selector.get("matchExpressions") or [])


def _expression_matches(expr: Mapping, labels: Mapping[str, str]) -> bool:
    key, operator, values = expr["key"], expr["operator"], list(expr.get("values") or [])
    if operator in ("In", "NotIn"):
        if not values:
            raise ValueError(f"operator {operator} needs values ({expr})")
        present = key in labels and labels[key] in values
        return present if operator == "In" else not present
    if operator in ("Exists", "DoesNotExist"):
        if values:
            raise ValueError(f"operator {operator} takes no values ({expr})")
        return (key in labels) == (operator == "Exists")
    raise ValueError(f"unknown selector operator {operator!r}")


# Policies --------------------------------------------------------------------------------------------------------

def policy_types(policy: Mapping) -> list[str]:
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes")
    if not types:
        types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    for t in types:
        if t not in ("Ingress", "Egress"):
            raise ValueError(f"unknown policyType {t!r}")
    return list(types)


def _check_policy(policy: Mapping) -> None:
    if policy.get("apiVersion") != "networking.k8s.io/v1" or policy.get("kind") != "NetworkPolicy":
        raise ValueError(f"not a networking.k8s.io/v1 NetworkPolicy: {policy.get('apiVersion')}/{policy.get('kind')}")
    if not (policy.get("metadata") or {}).get("namespace"):
        raise ValueError(f"NetworkPolicy {policy.get('metadata', {}).get('name')} has no namespace")


class Cluster:
    """Pods' namespaces with their labels, and the NetworkPolicies in force."""

    def __init__(self, policies: Iterable[Mapping], namespaces: Mapping[str, Mapping[str, str]] | None = None):
        self.policies = [p for p in policies if p.get("kind") == "NetworkPolicy"]
        for policy in self.policies:
            _check_policy(policy)
            policy_types(policy)
        self.namespaces = dict(namespaces or {})

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        # The API server sets this label on every namespace (since Kubernetes 1.22).
        return {**self.namespaces.get(namespace, {}), "kubernetes.io/metadata.name": namespace}

    def selecting(self, pod: Pod, direction: str) -> list[Mapping]:
        """Policies that select the pod and govern the direction ("Ingress" or "Egress")."""
        return [p for p in self.policies
                if p["metadata"]["namespace"] == pod.namespace
                and selector_matches((p.get("spec") or {}).get("podSelector") or {}, pod.labels)
                and direction in policy_types(p)]

    def isolated(self, pod: Pod, direction: str) -> bool:
        return bool(self.selecting(pod, direction))

    # Peers and ports ---------------------------------------------------------------------------------------------

    def peer_matches(self, peer: Mapping, endpoint: Endpoint, policy_namespace: str) -> bool:
        peer = {k: v for k, v in peer.items() if v is not None}
        if set(peer) - {"podSelector", "namespaceSelector", "ipBlock"}:
            raise ValueError(f"unknown peer fields in {peer}")
        if "ipBlock" in peer:
            if len(peer) != 1:
                raise ValueError(f"ipBlock cannot be combined with selectors in one peer: {peer}")
            return ip_in_block(endpoint.ip, peer["ipBlock"])
        if not peer:
            raise ValueError("a peer needs podSelector, namespaceSelector or ipBlock")
        if not isinstance(endpoint, Pod):
            return False  # selectors only ever select pods
        if "namespaceSelector" in peer:
            in_namespace = selector_matches(peer["namespaceSelector"], self.namespace_labels(endpoint.namespace))
        else:
            in_namespace = endpoint.namespace == policy_namespace
        if not in_namespace:
            return False
        return selector_matches(peer["podSelector"], endpoint.labels) if "podSelector" in peer else True

    def _peers_match(self, peers: list | None, endpoint: Endpoint, policy_namespace: str) -> bool:
        if not peers:
            return True  # missing or empty: every source (destination)
        return any(self.peer_matches(peer, endpoint, policy_namespace) for peer in peers)

    def _ports_match(self, ports: list | None, destination: Endpoint, port: int, protocol: str) -> bool:
        if not ports:
            return True
        return any(port_matches(p, destination, port, protocol) for p in ports)

    # Connections -------------------------------------------------------------------------------------------------

    def ingress_allowed(self, source: Endpoint, destination: Pod, port: int, protocol: str = "TCP") -> bool:
        policies = self.selecting(destination, "Ingress")
        if not policies:
            return True
        return any(self._peers_match(rule.get("from"), source, p["metadata"]["namespace"])
                   and self._ports_match(rule.get("ports"), destination, port, protocol)
                   for p in policies for rule in (p["spec"].get("ingress") or []))

    def egress_allowed(self, source: Pod, destination: Endpoint, port: int, protocol: str = "TCP") -> bool:
        policies = self.selecting(source, "Egress")
        if not policies:
            return True
        return any(self._peers_match(rule.get("to"), destination, p["metadata"]["namespace"])
                   and self._ports_match(rule.get("ports"), destination, port, protocol)
                   for p in policies for rule in (p["spec"].get("egress") or []))

    def allowed(self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> bool:
        """Whether `source` may open a connection to `destination` on `port`."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}")
        if isinstance(destination, Pod) and not self.ingress_allowed(source, destination, port, protocol):
            return False
        return not isinstance(source, Pod) or self.egress_allowed(source, destination, port, protocol)

    def reachability(self, sources: Iterable[Endpoint], destinations: Iterable[Endpoint],
                     ports: Iterable[int]) -> set[tuple[str, str, int]]:
        """Every allowed (source name, destination name, port), TCP."""
        destinations, ports = list(destinations), list(ports)
        return {(s.name, d.name, port) for s in sources for d in destinations for port in ports
                if s is not d and self.allowed(s, d, port)}


def port_matches(np_port: Mapping, destination: Endpoint, port: int, protocol: str) -> bool:
    """Whether one NetworkPolicyPort matches a connection to `destination` on port/protocol."""
    np_protocol = np_port.get("protocol") or "TCP"
    value, end = np_port.get("port"), np_port.get("endPort")
    if np_protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {np_protocol!r}")
    if end is not None and not isinstance(value, int):
        raise ValueError(f"endPort needs a numeric port: {np_port}")
    if isinstance(value, int) and end is not None and end < value:
        raise ValueError(f"endPort {end} is below port {value}")
    if isinstance(value, str) and not (len(value) <= 15 and PORT_NAME.match(value)):
        raise ValueError(f"{value!r} is not a port name (a quoted number is a name, not a port)")
    if np_protocol != protocol:
        return False
    if value is None:
        return True
    if isinstance(value, int):
        return port == value if end is None else value <= port <= end
    # A named port is resolved against the destination pod's container ports.
    return isinstance(destination, Pod) and any(
        cp.name == value and cp.protocol == protocol and cp.port == port for cp in destination.ports)


def ip_in_block(ip: str, block: Mapping) -> bool:
    network = ipaddress.ip_network(block["cidr"], strict=False)
    excepted = [ipaddress.ip_network(e, strict=False) for e in block.get("except") or []]
    for e in excepted:
        if e.version != network.version or not e.subnet_of(network):
            raise ValueError(f"except {e} is not within cidr {block['cidr']}")
    address = ipaddress.ip_address(ip)
    if address.version != network.version or address not in network:
        return False
    return not any(address in e for e in excepted)


# Pods of rendered workloads --------------------------------------------------------------------------------------

@dataclass
class AddressPool:
    """Hands out pod IPs from a range, one per call."""

    cidr: str = "10.244.0.0/16"
    _hosts: Iterable = field(init=False, repr=False)

    def __post_init__(self):
        self._hosts = ipaddress.ip_network(self.cidr).hosts()

    def next(self) -> str:
        return str(next(self._hosts))


def pod_template(workload: Mapping) -> Mapping:
    if workload["kind"] == "Pod":
        return workload
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]
    return workload["spec"]["template"]


def pod_of(workload: Mapping, ip: str, name: str | None = None) -> Pod:
    """The pod a workload (Deployment, StatefulSet, Job, ...) would run: its template's labels and ports."""
    template = pod_template(workload)
    spec = template["spec"]
    ports = tuple(ContainerPort(p["containerPort"], p.get("name"), p.get("protocol") or "TCP")
                  for c in spec.get("containers", []) for p in c.get("ports") or [])
    return Pod(name=name or workload["metadata"]["name"], namespace=workload["metadata"]["namespace"],
               labels=dict(template["metadata"].get("labels") or {}), ip=ip, ports=ports)
