"""A cluster that is not ours stays untouched: the end-to-end tier refuses a KUBECONFIG other than the local cluster's
unless AGENTFORGE_E2E_ANY_CLUSTER=1 (no cluster is contacted here)."""

import pytest

from harness import cluster


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
