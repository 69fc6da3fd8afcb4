"""Compatibility: the helm CLI, the newest Helm 3 and the oldest supported Helm render the same objects as the render
server the other tests use, an older Helm refuses clearly; every object is valid for every supported Kubernetes
minor."""

import json
import re
import shutil

import pytest

from harness.render import (
    CHART,
    HELM,
    HELM3,
    HELM_BELOW_OLDEST,
    HELM_OLDEST,
    KUBE_VERSIONS,
    MAX_KUBE,
    OLDEST_RENDERER,
    RENDERER,
    ROOT,
    RenderError,
    comparable,
    helm,
    parse,
    pinned,
    render_chart,
)
from harness.values import SCENARIOS


@pytest.mark.parametrize("module,requirements", [
    ("scripts/render-server", {"helm.sh/helm/v4": "HELM", "github.com/yannh/kubeconform": "KUBECONFORM"}),
    ("scripts/render-server/oldest", {"helm.sh/helm/v3": "HELM_OLDEST"})])
def test_render_servers_build_the_pinned_tools(module, requirements):
    """The render servers are the pinned helm (and kubeconform): their go.mod requires the versions.env versions."""
    go_mod = (ROOT / module / "go.mod").read_text()
    for path, tool in requirements.items():
        assert re.search(rf"^(require)?\s*{re.escape(path)} {re.escape(pinned(tool))}$", go_mod, re.M), (module, path)


def test_helm3_is_the_pinned_version():
    assert helm("version", "--short", binary=HELM3).stdout.startswith("v3.")


@pytest.mark.parametrize("binary", [HELM, HELM3, HELM_OLDEST], ids=["helm-cli", "helm3", "oldest"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_helm_renders_what_the_render_server_renders(scenario, binary):
    """The render server is the pinned helm's own code: the helm CLI of that version, the newest Helm 3 and the
    oldest supported Helm render the same objects from the same values."""
    server = comparable(render_chart(SCENARIOS[scenario], validate=False))
    cli = comparable(render_chart(SCENARIOS[scenario], helm_binary=binary, validate=False))
    assert sorted(cli) == sorted(server)
    for key in server:
        assert cli[key] == server[key], key


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_strict_schema_valid_for_every_minor(scenario, kube_version):
    """kubeconform (in the render server) validates every object against that minor's strict schemas."""
    objects = RENDERER.render(json.dumps(SCENARIOS[scenario]), kube_version=kube_version, validate=(kube_version,),
                              objects=True)
    assert {"Deployment", "Service"} <= {o["kind"] for o in objects}


def test_validation_refuses_an_unknown_field_and_a_wrong_type(tmp_path):
    """The schemas kubeconform reads are strict and resolve their references: a chart whose Deployment has an
    unknown field and a port of the wrong type is refused, naming both."""
    chart = tmp_path / "bad"
    helm("create", str(chart))
    deployment = chart / "templates" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("  replicas:", "  replicaz: 1\n  replicas:", 1)
                          .replace("containerPort: {{ .Values.service.port }}", 'containerPort: "http"', 1))
    manifest = RENDERER.render("{}", chart=chart)  # renders: helm does not validate objects
    assert 'containerPort: "http"' in manifest and "replicaz: 1" in manifest
    for version in (KUBE_VERSIONS[0], MAX_KUBE):
        with pytest.raises(AssertionError) as refused:
            RENDERER.render("{}", chart=chart, validate=(version,))
        message = str(refused.value)
        assert f"Deployment/agentforge-bad (Kubernetes {version})" in message
        assert "additional properties 'replicaz' not allowed" in message
        assert "containerPort': got string, want integer" in message


def test_render_server_reads_a_changed_chart_again(tmp_path):
    """The render server keeps a loaded chart and its compiled values schema, and skips helm's schema validation for
    values that schema finds valid: a changed template or schema takes effect on the next render, as with the CLI."""
    chart = tmp_path / "agentforge"
    shutil.copytree(CHART, chart)
    values = json.dumps({"backend": {"replicaCount": 3, "autoscaling": {"enabled": False}}})
    backend = [o for o in RENDERER.render(values, chart=chart, objects=True) if o["kind"] == "Deployment"
               and o["metadata"]["labels"]["app.kubernetes.io/component"] == "backend"]
    assert backend[0]["spec"]["replicas"] == 3 and "kind: Tea" not in RENDERER.render(values, chart=chart)
    (chart / "templates" / "tea.yaml").write_text("kind: Tea\n")
    assert "kind: Tea" in RENDERER.render(values, chart=chart)
    schema_file = chart / "values.schema.json"
    schema = json.loads(schema_file.read_text())
    schema["properties"]["backend"]["properties"]["replicaCount"]["maximum"] = 2
    schema_file.write_text(json.dumps(schema))
    with pytest.raises(RenderError, match=r"backend.replicaCount.*maximum.*2"):
        RENDERER.render(values, chart=chart)


def test_version_range_reaches_newest_schemas():
    assert KUBE_VERSIONS[-1] == MAX_KUBE
    assert len(KUBE_VERSIONS) >= 8


def test_older_helm_refused_naming_the_floor():
    proc = helm("template", "old", str(CHART), binary=HELM_BELOW_OLDEST, check=False)
    assert proc.returncode != 0
    assert "this chart needs Helm 3.15 or later" in proc.stderr and "this is Helm v3.14" in proc.stderr


@pytest.mark.parametrize("renderer,binary", [(RENDERER, HELM), (OLDEST_RENDERER, HELM_OLDEST)],
                         ids=["newest", "oldest"])
def test_render_server_reports_the_helm_version_the_cli_does(tmp_path, renderer, binary):
    """The chart gates on .Capabilities.HelmVersion: the server is built with the CLI's version flags, so a template
    reads the same version, commit and Go version from both."""
    chart = tmp_path / "version"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: version\nversion: 0.1.0\n")
    (chart / "templates" / "version.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: version\ndata:\n"
        "  version: {{ .Capabilities.HelmVersion.Version | quote }}\n"
        "  commit: {{ .Capabilities.HelmVersion.GitCommit | quote }}\n"
        "  tree: {{ .Capabilities.HelmVersion.GitTreeState | quote }}\n")
    served = parse(renderer.render("{}", chart=chart, name="v"))[0]["data"]
    cli = parse(helm("template", "v", str(chart), binary=binary).stdout)[0]["data"]
    assert served == cli
    assert served["version"] == helm("version", "--template", "{{ .Version }}", binary=binary).stdout.strip()
