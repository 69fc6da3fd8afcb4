"""`make demo` on a cluster of your own (AGENTFORGE_DEMO_CLUSTER=current): it says what it will create before it
does, creates only that (a namespace enforcing PSS "restricted" and the release), refuses a namespace it did not
create, and `make demo-down` removes only what it created. The local cluster plays "your own cluster" here."""

import re
import subprocess

import pytest

from harness.render import ROOT

NAMESPACE = "af-e2e-demo"
BYSTANDER = "af-e2e-demo-bystander"


def demo(cli, action: str, state, namespace: str = NAMESPACE) -> subprocess.CompletedProcess:
    env = {**cli.env, "AGENTFORGE_DEMO_CLUSTER": "current",
           "AGENTFORGE_DEMO_STATE": str(state), "NAMESPACE": namespace, "RELEASE": "demo"}
    return subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), action], env=env, capture_output=True,
                          text=True, timeout=600)


def namespaces(cli) -> set[str]:
    """The cluster's namespaces but those of the other e2e tests, which may run beside these (af-e2e-*)."""
    names = {n["metadata"]["name"] for n in cli.get("", "namespaces")["items"]}
    return {n for n in names if not n.startswith("af-e2e-") or n in (NAMESPACE, BYSTANDER)}


@pytest.fixture(scope="module")
def demo_run(cli, tmp_path_factory):
    state = tmp_path_factory.mktemp("demo") / "own-cluster.env"
    cli.create_namespace(BYSTANDER)
    before = namespaces(cli)
    up = demo(cli, "up", state)
    yield up, state, before
    if state.exists():  # without its state, demo.sh down would stop the local cluster itself
        demo(cli, "down", state)
    cli.kubectl("delete", "namespace", BYSTANDER, "--ignore-not-found", "--wait=false")


def test_says_what_it_creates_before_creating_it(demo_run):
    up, _, _ = demo_run
    assert up.returncode == 0, up.stdout + up.stderr
    told = up.stderr.index(f"it creates: namespace {NAMESPACE}, labelled pod-security.kubernetes.io/enforce=restricted")
    assert told < up.stderr.index("==> helm install demo")
    # helm and kubectl only: no control plane is built or started for a cluster of your own.
    steps = set(re.findall(r"^==> (\S+) ", up.stderr, re.M)) | {
        name for line in re.findall(r"^    ready: (.*)$", up.stderr, re.M) for name in line.split(", ")}
    assert steps & {"kubernetes", "etcd", "kwok"} == set() and {"helm", "kubectl"} <= steps, up.stderr
    assert "starting the local cluster" not in up.stderr


def test_creates_the_namespace_and_the_release_only(cli, demo_run):
    _, state, before = demo_run
    assert namespaces(cli) - before == {NAMESPACE}
    labels = cli.get("", "namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert cli.release_status("demo", NAMESPACE) == "deployed"
    assert f"DEMO_NAMESPACE={NAMESPACE}" in state.read_text()


def test_refuses_a_namespace_it_did_not_create(cli, tmp_path):
    refused = demo(cli, "up", tmp_path / "state.env", namespace=BYSTANDER)
    assert refused.returncode != 0
    assert f"namespace {BYSTANDER} already exists" in refused.stderr
    assert not (tmp_path / "state.env").exists()
    assert cli.helm("list", "--namespace", BYSTANDER, "--short").stdout.strip() == ""


def test_demo_down_removes_only_what_it_created(cli, demo_run):
    _, state, before = demo_run
    down = demo(cli, "down", state)
    assert down.returncode == 0, down.stderr
    assert namespaces(cli) == before  # the bystander namespace and the cluster are still there
    assert not state.exists()
    assert cli.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
