"""The edge on a maintained controller, on the real node: Traefik Proxy v3 (built here from its Go module,
scripts/images/traefik.Containerfile) serves the chart's own edge objects, over TLS from a test CA, on one origin,
https://agentforge.test: the frontend at `/`, the API and the chat WebSockets under `/api`.

Two Traefik instances run in the namespace `traefik`, each on a Service of its own, so that both edges of one
release serve the same origin: one with the Gateway API provider (a GatewayClass and a Gateway of ours; the chart's
HTTPRoutes with httpRoute.controller=traefik, whose affinity is a TraefikService read by the kubernetesCRD
provider), one with the Ingress provider (the chart's Ingresses with ingress.controller=traefik, whose affinity
cookie Traefik reads from the backend Service's annotations). The CRDs and the ClusterRoles are the ones Gateway API
and Traefik publish in their modules. The release is the tier's own, upgraded to these settings at the end of the
tier (this file runs last)."""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import re
import socket
import ssl
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from harness import realnode
from harness.apphttp import handshake
from harness.browser import browser_page, open_chat
from harness.cluster import wait_for
from harness.crdschema import module_dir
from harness.render import pinned
from harness.servers import ThrowawayCa

HOST = "agentforge.test"
ORIGIN = f"https://{HOST}"
# The namespace the traefik preset admits, where the Ingress instances run; the Gateway and its instance have one of
# their own, so that each of the chart's two edge peers is proven alone.
NAMESPACE = "traefik"
GATEWAY_NAMESPACE = "traefik-gateway"
EDGES = ("gateway", "ingress")
# Traefik's instances: one per edge, and one with its ingress-nginx provider for the release on the old defaults.
INSTANCES = (*EDGES, "ingress-nginx")
NAMESPACES = {"gateway": GATEWAY_NAMESPACE, "ingress": NAMESPACE, "ingress-nginx": NAMESPACE}
TLS_SECRET = "edge-tls"
COOKIE = "agentforge_affinity"
# The labels of the controller's pods (those the Traefik Helm chart gives them); the chart admits these only.
CONTROLLER_LABELS = {"app.kubernetes.io/name": "traefik"}
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
USER_ADDRESSES = itertools.count(1)
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}}


def traefik_module() -> Path:
    return module_dir("github.com/traefik/traefik/v3", pinned("TRAEFIK"))


def spki_hash(cert: Path) -> str:
    """base64 SHA-256 of the certificate's public key, as Chromium's --ignore-certificate-errors-spki-list takes."""
    pub = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"], capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True,
                         check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der, capture_output=True,
                            check=True).stdout
    return base64.b64encode(digest).decode()


def bridge_address() -> str:
    """The node's own address on its bridge (the source of what this machine sends to a Service)."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", realnode.BRIDGE], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[3].split("/")[0]


def tls_secret(namespace: str, cert: Path, key: Path) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": TLS_SECRET, "namespace": namespace},
            "data": {"tls.crt": base64.b64encode(cert.read_bytes()).decode(),
                     "tls.key": base64.b64encode(key.read_bytes()).decode()}}


def cluster_roles() -> list[dict]:
    """The ClusterRoles Traefik's reference publishes for its Gateway API and its Kubernetes CRD/Ingress providers
    (the latter also grants what the ingress-nginx provider needs here: Ingresses, IngressClasses, Services,
    EndpointSlices, Secrets, ConfigMaps; its own ClusterRole adds namespaces, for namespace selectors)."""
    folder = traefik_module() / "docs" / "content" / "reference" / "dynamic-configuration"
    docs = [d for f in ("kubernetes-gateway-rbac.yml", "kubernetes-crd-rbac.yml")
            for d in yaml.safe_load_all((folder / f).read_text()) if d]
    return [d for d in docs if d["kind"] == "ClusterRole"]


def traefik_objects(image: str, roles: list[dict], node_address: str) -> list[dict]:
    """The instances (a Deployment and a Service each, run by a ServiceAccount of their namespace bound to the
    published ClusterRoles), the GatewayClass and Gateway of the Gateway API instance, and the IngressClasses of the
    Ingress instances (traefik; nginx, for the ingress-nginx provider)."""
    args = {
        "gateway": ["--providers.kubernetesgateway=true", "--providers.kubernetescrd=true"],
        # As the Traefik Helm chart's websecure entry point: TLS for every router on it.
        "ingress": ["--providers.kubernetesingress=true", "--entryPoints.websecure.http.tls=true"],
        # Ingresses of class nginx, with their nginx.ingress.kubernetes.io/* annotations (the migration path).
        "ingress-nginx": ["--providers.kubernetesingressnginx=true",
                          "--providers.kubernetesingressnginx.httpsEntryPoint=websecure",
                          "--entryPoints.websecure.http.tls=true"],
    }
    namespaces = sorted(set(NAMESPACES.values()))
    objects: list[dict] = [{"apiVersion": "v1", "kind": "ServiceAccount",
                            "metadata": {"name": "traefik", "namespace": ns}} for ns in namespaces]
    for role in roles:
        # Under names of the tests' own, so that no ClusterRole of the same name is overwritten or deleted.
        name = f"af-edge-{role['metadata']['name']}"
        objects.append({**role, "metadata": {"name": name}})
        objects.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                        "metadata": {"name": name},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                        "subjects": [{"kind": "ServiceAccount", "name": "traefik", "namespace": ns}
                                     for ns in namespaces]})
    for edge in INSTANCES:
        labels = {**CONTROLLER_LABELS, "app.kubernetes.io/instance": f"traefik-{edge}"}
        container = {
            "name": "traefik", "image": image, "imagePullPolicy": "Never",
            # The node's address on the bridge (where this machine's clients come from) is trusted as an upstream
            # load balancer's would be: each test client then stands for a user of its own address (the login
            # rate limit counts per address).
            "args": ["--entryPoints.websecure.address=:8443", "--entryPoints.traefik.address=:9000", "--ping=true",
                     f"--entryPoints.websecure.forwardedHeaders.trustedIPs={node_address}/32",
                     "--log.level=INFO", "--log.noColor=true", "--global.checkNewVersion=false",
                     "--global.sendAnonymousUsage=false", *args[edge]],
            "ports": [{"name": "websecure", "containerPort": 8443}, {"name": "ping", "containerPort": 9000}],
            "readinessProbe": {"httpGet": {"path": "/ping", "port": 9000}, "periodSeconds": 2},
            "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
        }
        objects.append({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": f"traefik-{edge}", "namespace": NAMESPACES[edge]},
                        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                                 "template": {"metadata": {"labels": labels},
                                              "spec": {"serviceAccountName": "traefik", "containers": [container],
                                                       # As the Traefik Helm chart's: every container of the pod
                                                       # (the tests' ephemeral ones too) runs as its user.
                                                       "securityContext": POD_SECURITY}}}})
        objects.append({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": f"traefik-{edge}", "namespace": NAMESPACES[edge]},
                        "spec": {"selector": labels, "ports": [{"name": "https", "port": 443,
                                                                "targetPort": "websecure"}]}})
    objects += [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "traefik"},
         "spec": {"controllerName": "traefik.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "edge", "namespace": GATEWAY_NAMESPACE},
         "spec": {"gatewayClassName": "traefik", "listeners": [{
             "name": "websecure", "port": 8443, "protocol": "HTTPS", "hostname": HOST,
             "tls": {"mode": "Terminate", "certificateRefs": [{"name": TLS_SECRET}]},
             "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "traefik"},
         "spec": {"controller": "traefik.io/ingress-controller"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
         "spec": {"controller": "k8s.io/ingress-nginx"}},
    ]
    return objects


def escape(key: str) -> str:
    """A label key as one element of a helm --set path."""
    return key.replace(".", "\\.")


def edge_values(release_namespace: str) -> list[str]:
    """helm arguments that put the release behind both edges, with the frontend built for the one origin."""
    ref = realnode.image_ref("frontend-edge")
    repository, tag = ref.split("/", 1)[1].rsplit(":", 1)
    pod_labels = ",".join(f"{escape(k)}={v}" for k, v in CONTROLLER_LABELS.items())
    return [
        f"--set=frontend.image.repository={repository}", f"--set-string=frontend.image.tag={tag}",
        f"--set=config.corsOrigins={{{ORIGIN}}}",
        f"--set=frontend.publicUrls.api={ORIGIN}", f"--set=frontend.publicUrls.ws=wss://{HOST}",
        "--set=ingress.enabled=true", "--set=ingress.controller=traefik", f"--set=ingress.hosts={{{HOST}}}",
        f"--set=ingress.tls[0].secretName={TLS_SECRET}", f"--set=ingress.tls[0].hosts={{{HOST}}}",
        "--set=httpRoute.enabled=true", "--set=httpRoute.controller=traefik", "--set=httpRoute.parentRef.name=edge",
        f"--set=httpRoute.parentRef.namespace={GATEWAY_NAMESPACE}", f"--set=httpRoute.hostnames={{{HOST}}}",
        f"--set=networkPolicy.ingressPodSelector.matchLabels.{pod_labels}",
        f"--set=networkPolicy.gatewayPodSelector.matchLabels.{pod_labels}",
    ]


@pytest.fixture(scope="module")
def edge(real_cli, real_release):
    """Traefik serving the tier's release on both edges: {"addresses": {instance: the ClusterIP of its Service},
    "ca": the CA's certificate, "spki": the served certificate's SPKI hash}."""
    namespace, release, _ = real_release
    built = subprocess.run(["bash", str(realnode.IMAGES_SH), "traefik", "frontend-edge"], capture_output=True,
                           text=True, timeout=3600)
    assert built.returncode == 0, built.stderr + built.stdout
    realnode.node("load", *(str(realnode.IMAGES_OUT / f"{n}.tar") for n in ("traefik", "frontend-edge")))
    crds = module_dir("sigs.k8s.io/gateway-api", pinned("GATEWAY_API")) / "config" / "crd" / "standard"
    files = [*sorted(str(f) for f in crds.glob("gateway.networking.k8s.io_*.yaml") if "vap_" not in f.name),
             str(traefik_module() / "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml")]
    real_cli.kubectl("apply", "--server-side", *(a for f in files for a in ("-f", f)))
    real_cli.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    pki = ThrowawayCa("AgentForge edge test CA")
    ca = pki.ca_cert
    cert, key = pki.issue("edge", [HOST])
    objects = [tls_secret(GATEWAY_NAMESPACE, cert, key), tls_secret(namespace, cert, key),
               *traefik_objects(realnode.image_ref("traefik"), cluster_roles(), bridge_address())]
    for ns in sorted(set(NAMESPACES.values())):
        real_cli.create_namespace(ns)
    try:
        real_cli.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        for ns in sorted(set(NAMESPACES.values())):
            real_cli.wait_ready(ns, timeout=300)
        real_cli.upgrade(release, namespace, *realnode.chart_values(), *edge_values(namespace))
        addresses = {e: real_cli.get(NAMESPACES[e], "service", f"traefik-{e}")["spec"]["clusterIP"]
                     for e in INSTANCES}
        for e in EDGES:
            serves_the_page(addresses[e], ca, f"traefik-{e}")
        yield {"addresses": addresses, "ca": ca, "spki": spki_hash(cert)}
    finally:
        pki.cleanup()
        # The CRDs stay until the node stops (`node.sh down` removes everything).
        cluster_wide = [f"{o['kind']}/{o['metadata']['name']}" for o in objects if "namespace" not in o["metadata"]]
        real_cli.kubectl("delete", "--ignore-not-found", *cluster_wide, check=False)
        for ns in sorted(set(NAMESPACES.values())):
            real_cli.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def serves_the_page(address: str, ca: Path, what: str) -> None:
    """Wait until the controller at `address` serves the frontend's page for HOST with the test CA's certificate
    (until it has loaded the routes it serves its own default certificate, or nothing)."""
    def answers() -> bool:
        try:
            return Client(address, ca).request("GET", "/")[0] == 200
        except (OSError, http.client.HTTPException):  # ssl.SSLError is an OSError
            return False
    wait_for(answers, timeout=120, interval=2, what=f"the frontend through {what}")


class Client:
    """A browser-like client of the origin through one controller: TLS verified against the test CA for HOST, and
    the cookies the edge sets kept and sent back."""

    def __init__(self, address: str, ca: Path, keep_cookies: bool = True):
        self.address, self.keep = address, keep_cookies
        # A user's own address, as the upstream load balancer Traefik trusts would forward it: one of its own, so
        # that no two clients share the login rate limit's count (TEST-NET-3; the tier's other clients use TEST-NET-2).
        self.forwarded_for = f"203.0.113.{next(USER_ADDRESSES)}"
        self.context = ssl.create_default_context(cafile=str(ca))
        self.cookies: dict[str, str] = {}

    def connect(self) -> ssl.SSLSocket:
        return self.context.wrap_socket(socket.create_connection((self.address, 443), timeout=15),
                                        server_hostname=HOST)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Host": HOST, "Origin": ORIGIN, "X-Forwarded-For": self.forwarded_for, **(extra or {})}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def request(self, method: str, path: str, body: dict | None = None,
                token: str | None = None) -> tuple[int, dict | str]:
        conn = http.client.HTTPSConnection(HOST, 443, context=self.context, timeout=30)
        conn.sock = self.connect()
        extra = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            extra["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.headers(extra))
        response = conn.getresponse()
        data = response.read()
        if self.keep:
            for header in response.headers.get_all("Set-Cookie") or []:
                name, value = header.split(";", 1)[0].split("=", 1)
                self.cookies[name.strip()] = value.strip()
        conn.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode(errors="replace")

    def websocket(self, path: str) -> tuple[ssl.SSLSocket, int, bool]:
        """A WebSocket opened through the edge: (the connection, left open; the HTTP status; whether
        Sec-WebSocket-Accept is valid)."""
        conn = self.connect()
        return conn, *handshake(conn, path, self.headers())

    def new_chat(self, label: str) -> tuple[str, str]:
        """Register, log in and create a conversation through the edge: (the access token, the conversation id)."""
        return realnode.new_chat(lambda path, body, token=None: self.request("POST", path, body, token), label)


def backend_logs(real_cli, namespace: str, since: float) -> dict[str, str]:
    """{backend pod: what its backend container logged since `since`}: uvicorn's access log, one line a request."""
    seconds = max(1, int(time.time() - since) + 1)
    return {p["metadata"]["name"]: real_cli.kubectl("logs", "--namespace", namespace, p["metadata"]["name"],
                                                    "--container", "backend", f"--since={seconds}s").stdout
            for p in real_cli.component_pods(namespace, "backend")}


def pods_serving(logs: dict[str, str], marker: str) -> Counter:
    """{pod: how many of its access-log lines name `marker`}."""
    return Counter({pod: n for pod, text in logs.items() if (n := len(re.findall(re.escape(marker), text)))})


@pytest.mark.parametrize("which", EDGES)
def test_browser_journey_through_the_controller(edge, which, record_property):
    """Chromium opens https://agentforge.test through the controller (no port-forward, no relay): it registers, logs
    in and opens a chat whose WebSocket connects at wss://agentforge.test/api/v1/ws/chat/... The browser trusts the
    certificate the controller serves, and no other (its public key is pinned)."""
    rules = f"MAP {HOST} {edge['addresses'][which]}"
    args = [f"--host-resolver-rules={rules}", f"--ignore-certificate-errors-spki-list={edge['spki']}"]
    sockets = []
    with browser_page(args) as page:
        page.on("websocket", lambda ws: sockets.append(ws.url))
        open_chat(page, ORIGIN)
        shot = realnode.ARTIFACTS / f"edge-{which}-chat.png"
        page.screenshot(path=str(shot), full_page=True)
        record_property(f"timing: real: edge {which} screenshot", str(shot))
    assert any(url.startswith(f"wss://{HOST}/api/v1/ws/chat/") for url in sockets), sockets


def assert_affinity(real_cli, namespace: str, address: str, ca: Path, label: str) -> str:
    """Through the controller at `address`, with the backend's 2 pods: each of 6 users (a cookie jar each) opens its
    chat's WebSocket, then reads its conversation 5 times; the backend pods' own access logs show every one of those
    requests on one pod per user, and the users on both pods. A client that drops the cookie is spread over both
    (the pinning is the cookie's). What was seen, for the report."""
    pods = real_cli.component_pods(namespace, "backend")
    assert len(pods) >= 2, [p["metadata"]["name"] for p in pods]
    started = time.time()
    users = []
    for n in range(6):
        client = Client(address, ca)
        token, conversation = client.new_chat(f"edge-{label}-{n}")
        assert COOKIE in client.cookies, client.cookies
        conn, status, valid = client.websocket(f"/api/v1/ws/chat/{conversation}?token={token}")
        assert status == 101 and valid
        for _ in range(5):
            assert client.request("GET", f"/api/v1/conversations/{conversation}", token=token)[0] == 200
        conn.close()
        users.append(conversation)
    cookieless = Client(address, ca, keep_cookies=False)
    token, conversation = cookieless.new_chat(f"edge-{label}-nocookie")
    for _ in range(10):
        assert cookieless.request("GET", f"/api/v1/conversations/{conversation}", token=token)[0] == 200
    logs = wait_for(lambda: (lg := backend_logs(real_cli, namespace, started))
                    and sum(pods_serving(lg, c).total() for c in users) >= 6 * 6 and lg,
                    timeout=60, interval=2, what="the backend pods' access logs")
    per_user = {c: pods_serving(logs, c) for c in users}
    # The WebSocket's line and the 5 reads: 6 lines per user, all on one pod.
    assert all(len(counts) == 1 and counts.total() == 6 for counts in per_user.values()), per_user
    pinned_to = Counter(next(iter(counts)) for counts in per_user.values())
    assert len(pinned_to) >= 2, pinned_to
    spread = pods_serving(logs, f"/api/v1/conversations/{conversation} ")
    assert len(spread) >= 2, spread
    return (f"users per pod {dict(pinned_to)}; requests per pod {dict(sum(per_user.values(), Counter()))}; "
            f"cookieless client's reads per pod {dict(spread)}")


@pytest.mark.parametrize("which", EDGES)
def test_a_users_websocket_and_later_calls_reach_one_backend_pod(real_cli, real_release, edge, which,
                                                                 record_property):
    namespace, _, _ = real_release
    seen = assert_affinity(real_cli, namespace, edge["addresses"][which], edge["ca"], which)
    record_property(f"timing: real: edge {which} affinity", seen)


def test_networkpolicies_admit_the_controller_and_nothing_else(real_cli, real_release, edge):
    """From each controller pod (an ephemeral container in it: its identity), the frontend and the backend answer and
    PostgreSQL does not: the Gateway's, in the Gateway's namespace, by the chart's Gateway peer; the Ingress ones, in
    the namespace the traefik preset admits, by its Ingress peer. From a pod beside them without their labels, nothing
    does."""
    namespace, release, _ = real_release
    image = realnode.image_ref("backend")
    neighbour = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "neighbour", "namespace": NAMESPACE,
                                                                  "labels": {"app": "neighbour"}},
                 "spec": {"securityContext": POD_SECURITY,
                          "containers": [{"name": "sleep", "image": image, "imagePullPolicy": "Never",
                                          "command": ["sleep", "3600"],
                                          "securityContext": {"allowPrivilegeEscalation": False,
                                                              "capabilities": {"drop": ["ALL"]}}}]}}
    real_cli.kubectl("apply", "-f", "-", input=json.dumps(neighbour))
    real_cli.kubectl("wait", "--namespace", NAMESPACE, "--for=condition=Ready", "pod/neighbour", "--timeout=120s")
    ip = {c: realnode.running_pod(real_cli, namespace, c)["status"]["podIP"]
          for c in ("frontend", "backend", "postgresql")}
    targets = [(ip["frontend"], 3000), (ip["backend"], 8000), (ip["postgresql"], 5432)]
    controllers = [p for ns in sorted(set(NAMESPACES.values()))
                   for p in real_cli.pods(ns, "app.kubernetes.io/name=traefik")]
    sources = [*controllers, real_cli.get(NAMESPACE, "pod", "neighbour")]
    results = {s["metadata"]["name"]: realnode.probe_from_pod(real_cli, s, targets, image, i)
               for i, s in enumerate(sources)}
    expected = {s["metadata"]["name"]: ([True, True, False] if s["metadata"]["name"] != "neighbour"
                                        else [False, False, False]) for s in sources}
    assert len(sources) == len(INSTANCES) + 1 and results == expected, (results, release)


def test_a_release_on_the_ingress_nginx_preset_keeps_its_affinity_behind_traefik(real_cli, real_release, edge,
                                                                                  record_property):
    """A release that keeps the Ingresses earlier versions rendered by default (ingress.controller=ingress-nginx:
    class nginx, the nginx.ingress.kubernetes.io/* affinity cookie) moves to a maintained controller unchanged:
    Traefik's kubernetesIngressNGINX provider serves them, one user's requests still reach one backend pod, and the
    NetworkPolicies admit Traefik's namespace once networkPolicy.ingressNamespaceSelector names it."""
    namespace, release, _ = real_release
    real_cli.upgrade(release, namespace, *realnode.chart_values(), *edge_values(namespace),
                     "--set=ingress.controller=ingress-nginx",
                     f"--set=networkPolicy.ingressNamespaceSelector.matchLabels.{escape(NAMESPACE_LABEL)}={NAMESPACE}")
    address = edge["addresses"]["ingress-nginx"]
    serves_the_page(address, edge["ca"], "traefik-ingress-nginx")
    record_property("timing: real: edge ingress-nginx preset on traefik affinity",
                    assert_affinity(real_cli, namespace, address, edge["ca"], "ingress-nginx"))
