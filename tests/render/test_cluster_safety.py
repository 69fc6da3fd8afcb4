"""A cluster that is not ours stays untouched: the end-to-end tier refuses a KUBECONFIG other than the local cluster's
unless AGENTFORGE_E2E_ANY_CLUSTER=1, and every helm and kubectl call of the harness names the checked kubeconfig and
context, whatever HELM_KUBE* variables say (no cluster is contacted here)."""

import json
import os
import subprocess

import pytest

from harness import cluster
from harness.render import HELM


def test_another_cluster_refused_naming_the_opt_in(monkeypatch, tmp_path):
    other = tmp_path / "kubeconfig"
    other.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(other))
    monkeypatch.delenv(cluster.ANY_CLUSTER, raising=False)
    with pytest.raises(cluster.NotOurCluster) as refused:
        cluster.kubeconfig()  # refuses before it starts or contacts any cluster
    assert f"KUBECONFIG={other} is not the local cluster" in str(refused.value)
    assert "AGENTFORGE_E2E_ANY_CLUSTER=1" in str(refused.value)


def test_another_cluster_accepted_when_asked_for(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setenv(cluster.ANY_CLUSTER, "1")
    assert cluster.kubeconfig() == str(tmp_path / "kubeconfig")  # returned as given: nothing started


def test_the_local_cluster_accepted(monkeypatch, tmp_path):
    """ci/test.sh exports the local cluster's kubeconfig: that one is ours (also through a symlink)."""
    link = tmp_path / "link"
    link.symlink_to(cluster.local_kubeconfig())
    monkeypatch.delenv(cluster.ANY_CLUSTER, raising=False)
    for given in (cluster.local_kubeconfig(), str(link)):
        cluster.refuse_another_cluster(given)


# What a shell of someone who also works on production may export: helm reads every one before the kubeconfig.
PROD_OVERRIDES = {"HELM_KUBECONTEXT": "prod", "HELM_KUBEAPISERVER": "https://prod.example.com:6443",
                  "HELM_KUBETOKEN": "token-of-prod", "HELM_KUBEASUSER": "admin"}


def test_helm_and_kubectl_reach_only_the_checked_context(monkeypatch, tmp_path):
    """A merged KUBECONFIG whose current context is the checked one, and HELM_KUBECONTEXT (with the API server, token
    and user) pointing at prod: the harness's helm, asked which cluster it uses (`helm env`), names the checked
    context and no override, and its kubectl's configuration holds that context alone."""
    ours = cluster.write_kubeconfig(tmp_path / "ours", "ours", "https://127.0.0.1:6443")
    prod = cluster.write_kubeconfig(tmp_path / "prod", "prod", "https://prod.example.com:6443")
    for name, value in PROD_OVERRIDES.items():
        monkeypatch.setenv(name, value)
    cli = cluster.Cli(f"{ours}{os.pathsep}{prod}")

    helm_env = dict(line.split("=", 1) for line in cli.helm("env").stdout.splitlines())
    assert helm_env["HELM_KUBECONTEXT"] == '"ours"'
    for name in ("HELM_KUBEAPISERVER", "HELM_KUBETOKEN", "HELM_KUBEASUSER"):
        assert helm_env[name] == '""', (name, helm_env[name])
    assert not [name for name in cli.env if name.startswith("HELM_KUBE")]

    view = json.loads(cli.kubectl("config", "view", "--output", "json").stdout)
    assert view["current-context"] == "ours"
    assert [c["cluster"]["server"] for c in view["clusters"]] == ["https://127.0.0.1:6443"]
    assert "prod" not in json.dumps(view)


def test_without_the_pin_helm_would_follow_the_environment(monkeypatch, tmp_path):
    """The same environment given to helm as it is: it takes prod's context. This is what the pin prevents."""
    ours = cluster.write_kubeconfig(tmp_path / "ours", "ours", "https://127.0.0.1:6443")
    env = {**os.environ, **PROD_OVERRIDES, "KUBECONFIG": ours}
    out = subprocess.run([HELM, "env"], env=env, capture_output=True, text=True, check=True, timeout=60).stdout
    assert 'HELM_KUBECONTEXT="prod"' in out and 'HELM_KUBEAPISERVER="https://prod.example.com:6443"' in out
