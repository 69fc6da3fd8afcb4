"""A release's pods in the NetworkPolicy evaluator (harness.policy): the scene the reachability tests read."""

from __future__ import annotations

from harness.components import PORTS
from harness.policy import WORKLOAD_KINDS, AddressPool, Cluster, External, Pod, pod_of, pod_template, policy_types
from harness.render import render_chart

RELEASE = NAMESPACE = "agentforge"


CHART_LABELS = {"app.kubernetes.io/name": "agentforge", "app.kubernetes.io/instance": RELEASE}


ALL_PORTS = sorted(set(PORTS.values()))


EXTERNAL_DB = {"postgresql": {"enabled": False}, "externalDatabase": {"host": "db.example.com", "password": "pw"}}


def outsiders(pool: AddressPool) -> list:
    """Sources outside the release."""
    return [
        Pod("neighbour", NAMESPACE, {"app": "unrelated"}, pool.next()),
        # A backend of another release of the chart, in the same namespace.
        Pod("other-release", NAMESPACE, {**CHART_LABELS, "app.kubernetes.io/instance": "other",
                                         "app.kubernetes.io/component": "backend"}, pool.next()),
        # This release's backend labels, in another namespace.
        Pod("other-namespace", "elsewhere", {**CHART_LABELS, "app.kubernetes.io/component": "backend"}, pool.next()),
        Pod("ingress-controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx",
                                                    "app.kubernetes.io/component": "controller"}, pool.next()),
        Pod("ingress-neighbour", "ingress-nginx", {"app": "default-backend"}, pool.next()),
        Pod("gateway", "gateway-system", {"gateway.networking.k8s.io/gateway-name": "public"}, pool.next()),
        External("outside", "203.0.113.10"),
    ]


def release_pods(objects, pool: AddressPool) -> list[Pod]:
    """One pod per component of the render, named after its component label. Workloads of one component (the
    `helm test` pods) must carry the same labels: policies cannot tell them apart."""
    pods: dict[str, Pod] = {}
    for o in objects:
        if o["kind"] in WORKLOAD_KINDS:
            pod = pod_of(o, pool.next(), name=pod_template(o)["metadata"]["labels"]["app.kubernetes.io/component"])
            if pod.name in pods:
                assert pods[pod.name].labels == pod.labels, f"two workloads of {pod.name} with different labels"
            pods.setdefault(pod.name, pod)
    return list(pods.values())


class Scene:
    """A render, its pods, the outsiders and the policies, ready to ask."""

    def __init__(self, values: dict, name: str = RELEASE):
        self.objects = render_chart(values, name=name, namespace=NAMESPACE)
        self.pool = AddressPool()
        self.pods = release_pods(self.objects, self.pool)
        self.outsiders = outsiders(self.pool)
        self.cluster = Cluster(self.objects.of_kind("NetworkPolicy"))

    def pod(self, name: str):
        return next(p for p in self.pods + self.outsiders if p.name == name)

    def matrix(self) -> set[tuple[str, str, int]]:
        return self.cluster.reachability(self.pods + self.outsiders, self.pods, ALL_PORTS)

    def ingress_matrix(self) -> set[tuple[str, str, int]]:
        """The matrix with the policies' ingress sides alone: what each destination admits, whatever the source's
        egress policy allows."""
        alone = []
        for policy in self.objects.of_kind("NetworkPolicy"):
            if "Ingress" in policy_types(policy):
                spec = {k: v for k, v in policy["spec"].items() if k not in ("egress", "policyTypes")}
                alone.append({**policy, "spec": {**spec, "policyTypes": ["Ingress"]}})
        return Cluster(alone).reachability(self.pods + self.outsiders, self.pods, ALL_PORTS)


def merged(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out
