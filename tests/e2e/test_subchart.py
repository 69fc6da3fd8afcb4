"""The chart as a dependency of an umbrella chart: a parent that names it by `file://`, turns it on and off with a
`condition:`, and shares its global values (an image registry, pull secrets in the `{name: ...}` form, and keys
of its own such as global.storageClass). Rendered with `helm template`, and installed on the test cluster."""

from __future__ import annotations

import pytest
import yaml

from harness.cluster import RESTRICTED
from harness.objects import pod_spec
from harness.render import CHART, CHART_META, Manifests, helm

REGISTRY = "registry.corp.example"
PARENT_VALUES = {
    "global": {"imageRegistry": REGISTRY, "imagePullSecrets": [{"name": "corp-pull"}], "storageClass": "fast"},
    "agentforge": {"enabled": True},
}


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """An umbrella chart with this chart as a file:// dependency, its dependencies built."""
    root = tmp_path_factory.mktemp("umbrella") / "platform"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0",
        "dependencies": [{"name": CHART_META["name"], "version": CHART_META["version"],
                          "repository": f"file://{CHART}", "condition": "agentforge.enabled"}]}))
    (root / "values.yaml").write_text(yaml.safe_dump(PARENT_VALUES))
    (root / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: platform-settings\ndata:\n  team: ai\n")
    helm("dependency", "build", str(root))
    return root


def render(parent, *args: str) -> Manifests:
    out = helm("template", "platform", str(parent), "--namespace", "platform", *args).stdout
    return Manifests(d for d in yaml.load_all(out, Loader=yaml.CSafeLoader) if d)


def pods(objects: Manifests) -> list[dict]:
    return [pod_spec(o) for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Job", "Pod")]


def test_parent_globals_reach_every_pod(parent):
    objects = render(parent)
    specs = pods(objects)
    assert len(specs) >= 8
    for spec in specs:
        assert spec["imagePullSecrets"] == [{"name": "corp-pull"}]
        for c in spec["containers"] + spec.get("initContainers", []):
            assert c["image"].startswith(f"{REGISTRY}/"), c["image"]
    # The parent's global.storageClass is every claim's class (the StatefulSets' templates and the monitoring claims).
    claims = [t["spec"] for o in objects.of_kind("StatefulSet") for t in o["spec"]["volumeClaimTemplates"]]
    claims += [o["spec"] for o in objects.of_kind("PersistentVolumeClaim")]
    assert len(claims) == 4 and {c["storageClassName"] for c in claims} == {"fast"}
    assert objects.get("Deployment", "platform-agentforge-backend")
    assert objects.get("ConfigMap", "platform-settings")


def test_condition_turns_it_off(parent):
    objects = render(parent, "--set", "agentforge.enabled=false")
    assert objects.inventory() == {("ConfigMap", "platform-settings")}


def test_parent_values_still_checked(parent):
    proc = helm("template", "platform", str(parent), "--set", "agentforge.backend.server.workers=2", check=False)
    assert proc.returncode != 0 and "/backend/server/workers" in proc.stderr


@pytest.mark.e2e
def test_installs_as_a_dependency(cli, parent):
    namespace = "af-e2e-umbrella"
    cli.create_namespace(namespace, RESTRICTED)
    try:
        # The cluster's default class: the local cluster has no class "fast" (claims of it would never bind).
        cli.helm("install", "platform", str(parent), "--namespace", namespace, "--wait", "--timeout", "5m",
                 "--set", "global.storageClass=")
        backend = cli.get(namespace, "deployment", "platform-agentforge-backend")
        assert backend["status"].get("readyReplicas", 0) >= 1
        spec = backend["spec"]["template"]["spec"]
        assert spec["imagePullSecrets"] == [{"name": "corp-pull"}]
        assert spec["containers"][0]["image"].startswith(f"{REGISTRY}/")
        assert cli.get(namespace, "job", "platform-agentforge-migrate")["status"].get("succeeded") == 1
    finally:
        cli.cleanup(namespace, "platform")

