"""A fake Kubernetes API server on 127.0.0.1 for `helm template --dry-run=server`: discovery, and the Secrets a test
puts in it, so the chart's `lookup` reads them as it reads a cluster's on upgrade."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from harness.render import CHART, HELM, MAX_KUBE, Manifests, helm, parse


class FakeApiServer(ThreadingHTTPServer):
    """The few Kubernetes API answers `helm template --dry-run=server` needs: discovery, and GET of the Secrets in
    `secrets` (everything else is not found). Helm's `lookup` then reads them as it reads a cluster's on upgrade."""

    KINDS = {"v1": ["Secret", "ConfigMap", "Service", "ServiceAccount", "PersistentVolumeClaim", "Pod"],
             "apps/v1": ["Deployment", "StatefulSet"], "batch/v1": ["Job"], "policy/v1": ["PodDisruptionBudget"],
             "autoscaling/v2": ["HorizontalPodAutoscaler"], "networking.k8s.io/v1": ["Ingress", "NetworkPolicy"],
             "rbac.authorization.k8s.io/v1": ["Role", "RoleBinding"]}

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeApiHandler)
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}  # (namespace, name) -> {key: plain value}


class FakeApiHandler(BaseHTTPRequestHandler):
    server: FakeApiServer

    def log_message(self, *args):
        pass

    def reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = self.path.split("?")[0]
        kinds = self.server.KINDS
        major, minor, _ = MAX_KUBE.split(".")
        if path == "/version":
            return self.reply(200, {"major": major, "minor": minor, "gitVersion": f"v{MAX_KUBE}"})
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = {gv.split("/")[0]: gv for gv in kinds if "/" in gv}
            versions = {group: {"groupVersion": gv, "version": gv.split("/")[1]} for group, gv in groups.items()}
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": group, "versions": [version], "preferredVersion": version}
                for group, version in versions.items()]})
        group_version = path.removeprefix("/api/").removeprefix("/apis/")
        if group_version in kinds:
            return self.reply(200, {"kind": "APIResourceList", "groupVersion": group_version, "resources": [
                {"name": kind.lower() + "s", "singularName": kind.lower(), "namespaced": True, "kind": kind,
                 "verbs": ["get", "list"]} for kind in kinds[group_version]]})
        parts = path.strip("/").split("/")
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
            namespace, name = parts[3], parts[5]
            data = self.server.secrets.get((namespace, name))
            if data is not None:
                # Owned by the release, as a Secret the chart rendered before is.
                metadata = {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "Helm"},
                            "annotations": {"meta.helm.sh/release-name": "agentforge",
                                            "meta.helm.sh/release-namespace": namespace}}
                return self.reply(200, {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": {
                    key: base64.b64encode(value.encode()).decode() for key, value in data.items()}})
        return self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                "code": 404})


def serve(workdir: Path) -> Iterator[FakeApiServer]:
    """Runs a FakeApiServer with a kubeconfig in workdir (server.kubeconfig) until the generator is closed."""
    server = FakeApiServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake"}}], "users": [{"name": "fake", "user": {}}]}))
    server.kubeconfig = str(kubeconfig)
    yield server
    server.shutdown()
    server.server_close()


def upgrade_render(api: FakeApiServer, *args: str, namespace: str = "agentforge") -> Manifests:
    """What `helm upgrade` would apply: the helm CLI with --dry-run=server against the fake API."""
    return Manifests(parse(helm("template", "agentforge", str(CHART), "--namespace", namespace, "--dry-run=server",
                                "--disable-openapi-validation", "--kubeconfig", api.kubeconfig, *args,
                                binary=HELM).stdout))
