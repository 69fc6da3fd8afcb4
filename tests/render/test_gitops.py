"""GitOps: the values file the chart README gives for Argo CD and Flux (ci/gitops-values.yaml) renders the same bytes
on every `helm template`, so a tool that renders without the cluster (no `lookup`) sees no drift and generates no
secret; and no object of it is a Helm hook, which Argo CD would move to a sync phase of its own (the migration Job as
a PreSync hook would wait for a database created after it). The real-pod tier applies it twice
(test_real_gitops.py)."""

from __future__ import annotations

import yaml

from harness.render import CHART, helm

GITOPS_VALUES = CHART / "ci" / "gitops-values.yaml"


def helm_template(*args: str) -> str:
    return helm("template", "agentforge", str(CHART), "--namespace", "agentforge", "--values", str(GITOPS_VALUES),
                *args).stdout


def test_two_renders_are_byte_identical():
    first, second = helm_template(), helm_template()
    assert first == second
    defaults = [helm("template", "agentforge", str(CHART)).stdout for _ in range(2)]
    assert defaults[0] != defaults[1], "the defaults generate secrets on each render: the comparison would see it"


def test_no_secret_to_generate_and_no_hook_but_helm_test():
    objects = [o for o in yaml.safe_load_all(helm_template()) if o]
    assert not [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"]
    hooks = {o["metadata"]["name"]: o["metadata"].get("annotations", {}).get("helm.sh/hook")
             for o in objects if "helm.sh/hook" in o["metadata"].get("annotations", {})}
    assert hooks and set(hooks.values()) == {"test"}, hooks
    assert [o["kind"] for o in objects].count("Job") == 1, "the migration is a plain Job"
