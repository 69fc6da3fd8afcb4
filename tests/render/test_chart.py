"""Cross-cutting: the inventory of a default install, labels, names and namespaces, helm lint."""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

from harness.components import BY_NAME
from harness.render import CHART, KUBE_VERSIONS, RENDERER, ROOT, TOOLS_BIN, helm, parse, render_chart
from harness.values import SCENARIOS, deep_merge

DEFAULT_INVENTORY = {
    ("ConfigMap", "agentforge-config"),
    ("Secret", "agentforge-secrets"),
    ("ServiceAccount", "agentforge-backend"),
    ("Deployment", "agentforge-backend"),
    ("Service", "agentforge-backend"),
    ("HorizontalPodAutoscaler", "agentforge-backend"),
    ("PodDisruptionBudget", "agentforge-backend"),
    ("Job", "agentforge-migrate"),
    # `helm test`: the backend answers its health check through its Service; the frontend serves a bundle built for
    # frontend.publicUrls.
    ("Pod", "agentforge-test-connection"),
    ("Pod", "agentforge-test-frontend-bundle"),
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
    ("ConfigMap", "agentforge-postgresql"),
    ("StatefulSet", "agentforge-redis"),
    ("Service", "agentforge-redis"),
    ("ConfigMap", "agentforge-redis"),
    # Isolation (no edge by default: the chart cannot know the cluster's controller): default-deny plus one
    # NetworkPolicy per reachable component, and the data collector's egress (public addresses only).
    ("NetworkPolicy", "agentforge-default-deny"),
    ("NetworkPolicy", "agentforge-frontend"),
    ("NetworkPolicy", "agentforge-backend"),
    ("NetworkPolicy", "agentforge-data-collector"),
    ("NetworkPolicy", "agentforge-data-collector-egress"),
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


# The app.kubernetes.io/component values: one per component, plus the app's settings (config), the cross-cutting
# NetworkPolicies and the `helm test` pod.
COMPONENTS = set(BY_NAME) | {"migrations", "config", "networkpolicy", "test"}


def test_default_inventory(default_render):
    assert default_render.inventory() == DEFAULT_INVENTORY


def test_every_object_labelled_and_namespaced(default_render):
    for obj in default_render:
        labels = obj["metadata"]["labels"]
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert labels["app.kubernetes.io/instance"] == "agentforge", where
        assert labels["app.kubernetes.io/name"] == "agentforge", where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        component = labels["app.kubernetes.io/component"]
        assert component in COMPONENTS, where
        # An object named after a component carries that component (agentforge-redis is redis's, not grafana's).
        named = obj["metadata"]["name"].removeprefix("agentforge-")
        if named in COMPONENTS:
            assert component == named, where
        template = obj.get("spec", {}).get("template")
        if template:  # pods carry their workload's component, which its selector picks
            assert template["metadata"]["labels"]["app.kubernetes.io/component"] == component, where
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


def ct_lint(chart) -> subprocess.CompletedProcess:
    """chart-testing's `ct lint` as ci/lint.sh runs it (ci/ct.yaml, the pinned release's schema and yamllint rules)."""
    etc = ROOT / ".tools" / "ct-etc"
    env = {**os.environ, "PATH": f"{TOOLS_BIN}:{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run([str(TOOLS_BIN / "ct"), "lint", "--config", str(ROOT / "ci" / "ct.yaml"), "--charts",
                           str(chart), "--chart-dirs", str(chart.parent), "--lint-conf", str(etc / "lintconf.yaml"),
                           "--chart-yaml-schema", str(etc / "chart_schema.yaml")],
                          cwd=chart.parent, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("file,text,message", [
    ("Chart.yaml", "\nmaintainers:\n  - name: x\n    emial: x@example.com\n", "emial: Unexpected element"),
    ("values.yaml", "\nconfig:\n  debug: false\n", 'duplication of key "config" in mapping'),
    ("ci/typo-values.yaml", "backend:\n  replicaCnt: 2\n", "replicaCnt"),
], ids=["chart-schema", "yamllint", "helm-lint-per-ci-values"])
def test_ct_lint_refuses(tmp_path, file, text, message):
    """ct lint (make lint, CI) checks Chart.yaml against ct's schema, the values files with yamllint, and runs
    `helm lint --strict` with each ci/*-values.yaml: one defect of each kind fails it, naming the defect."""
    chart = tmp_path / "agentforge"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("*-values.yaml"))  # ct would lint each
    with open(chart / file, "a") as f:
        f.write(text)
    proc = ct_lint(chart)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_kube_version_below_minimum_refused():
    proc = helm("template", "x", str(CHART), "--kube-version", "1.29.0", check=False)
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr or "incompatible" in proc.stderr


@pytest.mark.parametrize("scenario,expected", [
    ("default", ["port-forward svc/rel-agentforge-frontend 3000", "port-forward svc/rel-agentforge-grafana 3000",
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


# ------------------------------------------------------------------------------------ checksum annotations

# Every checksum/* annotation of a pod template, by workload: Kubernetes rolls the pods when the annotation changes,
# so each must change when, and only when, what it covers changes.
CHECKSUM_WORKLOADS = {"backend": ("Deployment", "agentforge-backend"), "redis": ("StatefulSet", "agentforge-redis"),
                      "postgresql": ("StatefulSet", "agentforge-postgresql"),
                      "prometheus": ("Deployment", "agentforge-prometheus"),
                      "grafana": ("Deployment", "agentforge-grafana")}
CHECKSUMS = {"backend checksum/config", "backend checksum/secret", "redis checksum/config", "redis checksum/password",
             "prometheus checksum/config", "prometheus checksum/rules", "grafana checksum/config",
             "grafana checksum/secret", "postgresql checksum/config"}
ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
# Every secret given, so nothing is generated: equal inputs must give equal checksums. The chart's Grafana Secret
# always generates its secret-key (test_grafana.py's live-Secret tests cover it), so Grafana's comes from an
# existing Secret here.
FIXED = {"secrets": {"secretKey": "k" * 40, "encryptionKey": ENCRYPTION_KEY},
         "postgresql": {"auth": {"password": "pg-pass"}}, "redis": {"auth": {"password": "redis-pass"}},
         "grafana": {"admin": {"existingSecret": "grafana-admin"}}}


def checksums(values: dict, fresh: bool = False) -> dict[str, str]:
    """{"<workload> checksum/...": value} of a render; fresh=True where two renders of one input are compared (a
    cached one would compare a render with itself)."""
    objects = render_chart(values, fresh=fresh)
    out = {}
    for workload, (kind, name) in CHECKSUM_WORKLOADS.items():
        obj = objects.find(kind, name)
        annotations = (obj or {}).get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}
        out |= {f"{workload} {key}": value for key, value in annotations.items() if key.startswith("checksum/")}
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_checksum_annotations_are_the_known_ones(scenario):
    """No pod carries a checksum this file does not test (a new one must join the table below)."""
    found = set()
    for obj in render_chart(SCENARIOS[scenario]):
        template = obj.get("spec", {}).get("template", {})
        for key in (template.get("metadata", {}).get("annotations") or {}):
            if key.startswith("checksum/"):
                found.add((obj["kind"], obj["metadata"]["name"], key))
    known = {(*CHECKSUM_WORKLOADS[k.split()[0]], k.split()[1]) for k in CHECKSUMS}
    assert found <= known
    assert found, "no checksum annotation at all"


def test_checksums_stable_across_renders_of_equal_input():
    base = checksums(FIXED, fresh=True)
    assert set(base) == CHECKSUMS
    assert all(re.fullmatch("[0-9a-f]{64}", value) for value in base.values()), base
    assert checksums(FIXED, fresh=True) == base


@pytest.mark.parametrize("change,rolls", [
    ({"config": {"authRateLimit": 6}}, {"backend checksum/config"}),
    ({"config": {"corsOrigins": ["https://other.example.com"]}}, {"backend checksum/config"}),
    ({"backend": {"trustedProxyCount": 2}}, {"backend checksum/config"}),
    ({"secrets": {"secretKey": "z" * 40}}, {"backend checksum/secret"}),
    ({"postgresql": {"auth": {"password": "other-pg"}}}, {"backend checksum/secret"}),
    # REDIS_PASSWORD is in the app Secret (the backend's REDIS_URL) and is the bundled Redis' requirepass.
    ({"redis": {"auth": {"password": "other-redis"}}}, {"backend checksum/secret", "redis checksum/password"}),
    ({"redis": {"maxmemoryPolicy": "volatile-lru"}}, {"redis checksum/config"}),
    ({"redis": {"extraConfig": "timeout 300\n"}}, {"redis checksum/config"}),
    ({"postgresql": {"config": {"work_mem": "8MB"}}}, {"postgresql checksum/config"}),
    # The scrape interval is Prometheus' and the datasource's timeInterval in Grafana's provisioning.
    ({"prometheus": {"scrapeInterval": "30s"}}, {"prometheus checksum/config", "grafana checksum/config"}),
    ({"grafana": {"datasourceUid": "metrics-main"}}, {"grafana checksum/config"}),
    ({"grafana": {"dashboardFolder": "Apps"}}, {"grafana checksum/config"}),
    ({"grafana": {"admin": {"existingSecret": "grafana-admin-2"}}}, {"grafana checksum/secret"}),
    # The alerting rules, alerts.yml beside prometheus.yml (tests/render/test_alerts.py).
    ({"monitoring": {"alerts": {"backendErrors": {"ratio": 0.1}}}}, {"prometheus checksum/rules"}),
    # Inputs no checksum covers: a change must roll nothing.
    ({"backend": {"podLabels": {"tier": "api"}, "image": {"tag": "0.10.1"}}}, set()),
    ({"frontend": {"replicaCount": 3}}, set()),
    ({"prometheus": {"retention": "30d"}}, set()),
    ({"grafana": {"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}}, set()),
    ({"dataCollector": {"server": {"gracefulShutdownSeconds": 20}}}, set()),
], ids=lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict) else None)
def test_checksum_changes_when_and_only_when_its_input_does(change, rolls):
    base = checksums(FIXED)
    changed = checksums(deep_merge(FIXED, change))
    assert set(changed) == CHECKSUMS
    assert {key for key in CHECKSUMS if changed[key] != base[key]} == rolls


def test_pod_annotations_cannot_replace_a_checksum():
    """A user's podAnnotations of the same key leave the chart's checksum in place (else pods would stop rolling)."""
    base = checksums(FIXED)
    pinned = {"podAnnotations": {"checksum/config": "0", "checksum/secret": "0", "checksum/password": "0",
                                 "checksum/rules": "0"}}
    values = deep_merge(FIXED, {c: pinned for c in ("backend", "redis", "postgresql", "prometheus", "grafana")})
    changed = checksums(values)
    assert {key: changed[key] for key in CHECKSUMS} == base
    assert render_chart(values).get("Deployment", "agentforge-backend")["spec"]["template"]["metadata"][
        "annotations"]["checksum/config"] == base["backend checksum/config"]


def test_existing_app_secret_checksum_follows_its_name():
    """The chart cannot see into an existing Secret: a new name is what rolls the backend and Redis."""
    def values(name):
        return {"secrets": {"existingSecret": name}, "grafana": FIXED["grafana"]}

    base = checksums(values("app-a"), fresh=True)
    assert checksums(values("app-a"), fresh=True) == base
    other = checksums(values("app-b"))
    assert {key for key in base if other[key] != base[key]} == {"backend checksum/secret", "redis checksum/password"}
    assert base["backend checksum/secret"] == hashlib.sha256(b"app-a").hexdigest()


def sources(manifest: str) -> dict[str, str]:
    """{template path: the text it rendered}, from one manifest (one document per template here)."""
    out = {}
    for part in manifest.split("\n---\n"):
        match = re.match(r"(?:---\n)?# Source: agentforge/(\S+)\n", part)
        if match:
            out[match.group(1)] = part[match.end():]
    return out


class TestChecksumIsTheHashOfWhatItCovers:
    """In one render, with secrets generated: each checksum is the sha256 of the object it covers as rendered, so
    the generated values the pods read are the ones the checksum saw (the chart remembers them for the render)."""

    @pytest.fixture(scope="class")
    @classmethod
    def render(cls):
        manifest = RENDERER.render("{}")  # the render server, uncached: a render of its own
        return sources(manifest), {(o["kind"], o["metadata"]["name"]): o for o in parse(manifest)}

    @staticmethod
    def annotation(objects, workload, key):
        return objects[CHECKSUM_WORKLOADS[workload]]["spec"]["template"]["metadata"]["annotations"][key]

    @pytest.mark.parametrize("workload,key,template", [
        ("backend", "checksum/config", "templates/app/configmap.yaml"),
        ("backend", "checksum/secret", "templates/app/secret.yaml"),
        ("redis", "checksum/config", "templates/redis/configmap.yaml"),
        ("grafana", "checksum/secret", "templates/grafana/secret.yaml"),
    ])
    def test_hash_of_the_rendered_object(self, render, workload, key, template):
        texts, objects = render
        assert self.annotation(objects, workload, key) == hashlib.sha256(texts[template].encode()).hexdigest()

    def test_redis_password_hash_of_the_secret_key_it_reads(self, render):
        _, objects = render
        password = objects[("Secret", "agentforge-secrets")]["data"]["REDIS_PASSWORD"]
        assert self.annotation(objects, "redis", "checksum/password") == hashlib.sha256(password.encode()).hexdigest()

    def test_prometheus_config_hash_of_prometheus_yml(self, render):
        _, objects = render
        config = objects[("ConfigMap", "agentforge-prometheus")]["data"]["prometheus.yml"]
        assert self.annotation(objects, "prometheus", "checksum/config") == \
            hashlib.sha256(config.rstrip("\n").encode()).hexdigest()

    def test_generated_secrets_differ_per_render_and_so_do_their_checksums(self, render):
        """Without a live Secret (`helm template`), every render generates new values; the checksums follow them."""
        _, objects = render
        again = render_chart({}, fresh=True)
        secret = again.get("Secret", "agentforge-secrets")["data"]
        assert secret["SECRET_KEY"] != objects[("Secret", "agentforge-secrets")]["data"]["SECRET_KEY"]
        annotations = again.get("Deployment", "agentforge-backend")["spec"]["template"]["metadata"]["annotations"]
        assert annotations["checksum/secret"] != self.annotation(objects, "backend", "checksum/secret")
        assert annotations["checksum/config"] == self.annotation(objects, "backend", "checksum/config")
