"""Cross-cutting: the inventory of a default install, labels, names and namespaces, helm lint."""

import json

import pytest

from chart import CHART, KUBE_VERSIONS, helm, render_chart

DEFAULT_INVENTORY = {
    ("ConfigMap", "agentforge-config"),
    ("Secret", "agentforge-secrets"),
    ("ServiceAccount", "agentforge-backend"),
    ("Deployment", "agentforge-backend"),
    ("Service", "agentforge-backend"),
    ("HorizontalPodAutoscaler", "agentforge-backend"),
    ("PodDisruptionBudget", "agentforge-backend"),
    ("Job", "agentforge-migrate"),
    # `helm test`: the backend answers its health check through its Service.
    ("Pod", "agentforge-test-connection"),
    # Frontend and data collector (the collector's PDB is off by default: one replica).
    ("ServiceAccount", "agentforge-frontend"),
    ("Deployment", "agentforge-frontend"),
    ("Service", "agentforge-frontend"),
    ("PodDisruptionBudget", "agentforge-frontend"),
    ("ServiceAccount", "agentforge-data-collector"),
    ("Deployment", "agentforge-data-collector"),
    ("Service", "agentforge-data-collector"),
    # Data tier.
    ("StatefulSet", "agentforge-postgresql"),
    ("Service", "agentforge-postgresql"),
    ("StatefulSet", "agentforge-redis"),
    ("Service", "agentforge-redis"),
    ("ConfigMap", "agentforge-redis"),
    # Edge and isolation: two Ingresses (the backend's carries the WebSocket settings), default-deny plus one
    # NetworkPolicy per reachable component.
    ("Ingress", "agentforge-frontend"),
    ("Ingress", "agentforge-backend"),
    ("NetworkPolicy", "agentforge-default-deny"),
    ("NetworkPolicy", "agentforge-frontend"),
    ("NetworkPolicy", "agentforge-backend"),
    ("NetworkPolicy", "agentforge-data-collector"),
    ("NetworkPolicy", "agentforge-postgresql"),
    ("NetworkPolicy", "agentforge-redis"),
    # Monitoring (monitoring.enabled): Prometheus with pod discovery (a namespaced Role), Grafana with its admin
    # Secret, provisioning and the dashboard in a ConfigMap of its own; both claims are plain PVCs kept on uninstall.
    ("ServiceAccount", "agentforge-prometheus"),
    ("Role", "agentforge-prometheus"),
    ("RoleBinding", "agentforge-prometheus"),
    ("ConfigMap", "agentforge-prometheus"),
    ("PersistentVolumeClaim", "agentforge-prometheus"),
    ("Deployment", "agentforge-prometheus"),
    ("Service", "agentforge-prometheus"),
    ("NetworkPolicy", "agentforge-prometheus"),
    ("ServiceAccount", "agentforge-grafana"),
    ("Secret", "agentforge-grafana"),
    ("ConfigMap", "agentforge-grafana"),
    ("ConfigMap", "agentforge-grafana-dashboards"),
    ("PersistentVolumeClaim", "agentforge-grafana"),
    ("Deployment", "agentforge-grafana"),
    ("Service", "agentforge-grafana"),
}


def test_default_inventory(default_render):
    assert default_render.inventory() == DEFAULT_INVENTORY


def test_every_object_labelled_and_namespaced(default_render):
    for obj in default_render:
        labels = obj["metadata"]["labels"]
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert labels["app.kubernetes.io/instance"] == "agentforge", where
        assert labels["app.kubernetes.io/name"] == "agentforge", where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        assert labels["app.kubernetes.io/component"], where
        assert obj["metadata"]["namespace"] == "agentforge", where


def test_common_labels_reach_every_object():
    for obj in render_chart({"commonLabels": {"team": "ai"}}):
        assert obj["metadata"]["labels"]["team"] == "ai", obj["metadata"]["name"]


class TestOtherReleaseAndNamespace:
    """A release named other than agentforge, in another namespace, carries no trace of `agentforge`'s namespace."""

    @pytest.fixture(scope="class")
    @classmethod
    def objects(cls):
        return render_chart({"global": {"clusterDomain": "corp.internal"}}, name="chat", namespace="team-a")

    def test_names_follow_the_release(self, objects):
        assert ("Deployment", "chat-agentforge-backend") in objects.inventory()
        for obj in objects:
            assert obj["metadata"]["name"].startswith("chat-agentforge-"), obj["metadata"]["name"]
            assert obj["metadata"]["namespace"] == "team-a"

    def test_no_trace_of_agentforge_namespace_or_default_domain(self, objects):
        text = json.dumps(list(objects))
        assert ".agentforge.svc" not in text
        assert "cluster.local" not in text
        assert '"namespace": "agentforge"' not in text

    def test_hostnames_use_release_namespace_and_domain(self, objects):
        config = objects.get("ConfigMap", "chat-agentforge-config")["data"]
        assert config["DATA_COLLECTOR_URL"] == "http://chat-agentforge-data-collector.team-a.svc.corp.internal:8001"


def test_fullname_override():
    objects = render_chart({"fullnameOverride": "af"})
    assert ("Deployment", "af-backend") in objects.inventory()


@pytest.mark.parametrize("kube_version", [KUBE_VERSIONS[0], KUBE_VERSIONS[-1]])
def test_helm_lint_strict_is_clean(kube_version):
    proc = helm("lint", "--strict", str(CHART), "--kube-version", kube_version, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_kube_version_below_minimum_refused():
    proc = helm("template", "x", str(CHART), "--kube-version", "1.29.0", check=False)
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr or "incompatible" in proc.stderr


@pytest.mark.parametrize("scenario,expected", [
    ("default", ["http://agentforge.example.com/", "port-forward svc/rel-agentforge-grafana 3000",
                 "delete pvc,secret -l app.kubernetes.io/instance=rel",
                 "logs --selector app.kubernetes.io/instance=rel,app.kubernetes.io/component=migrations"]),
    ("gitops", ["logs --selector app.kubernetes.io/instance=rel,app.kubernetes.io/component=migrations"]),
    ("minimal", ["port-forward svc/rel-agentforge-frontend 3000"]),
])
def test_notes_tell_how_to_reach_the_release(scenario, expected):
    values = CHART / "ci" / f"{scenario}-values.yaml"
    args = ["--values", str(values)] if values.exists() else []
    out = helm("install", "rel", str(CHART), "--dry-run=client", "--namespace", "team", *args).stdout
    notes = out.split("NOTES:", 1)[1]
    for text in expected:
        assert text in notes
    assert ("Grafana" in notes) is (scenario != "minimal")
