"""Fixtures and hooks every tier shares. Each tier lives in a folder of its own (render/, servers/, app/, e2e/,
real/) whose conftest applies the tier's marker to the tests it holds; the support modules are the package
harness/."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from harness.render import HELM, KUBE_SCHEMAS, RENDERER, render_chart
from harness.tiers import TIERS, selects

# The OCI registry, helm and GnuPG fixtures of the distribution tests (servers and e2e tiers).
pytest_plugins = ["harness.registry"]

HERE = Path(__file__).parent
def pytest_ignore_collect(collection_path, config):
    """A tier's folder is not even imported when -m deselects that tier (the render tier, `make mutate`): importing
    it only to deselect every test costs each process time, and an error of its own would count as a failure."""
    markexpr = config.getoption("markexpr")
    if markexpr and collection_path.parent == HERE and collection_path.name in TIERS:
        return not selects(markexpr, TIERS[collection_path.name]) or None
    return None


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller (before it starts any xdist worker), or a run without
        os.environ["AGENTFORGE_RUN_ID"] = f"{os.getpid()}-{time.time_ns()}"
    for needed in (HELM, RENDERER.command[0], KUBE_SCHEMAS):
        if not (shutil.which(needed) or Path(needed).is_dir()):
            raise pytest.UsageError(f"{needed} is missing: run `make tools` (or `make test`, which installs it)")


@pytest.fixture(scope="session")
def default_render():
    """The default install, rendered once per session (tests get a fresh copy from render_chart)."""
    return render_chart()


@pytest.fixture(scope="session")
def kube_config():
    """The local kwok cluster, or KUBECONFIG's when it is the local one or AGENTFORGE_E2E_ANY_CLUSTER=1 allows
    another."""
    from harness.cluster import NotOurCluster, kubeconfig

    try:
        return kubeconfig()
    except NotOurCluster as refused:
        pytest.fail(str(refused), pytrace=False)


@pytest.fixture(scope="session")
def cli(kube_config):
    from harness.cluster import Cli

    return Cli(kube_config)


@pytest.fixture(scope="session")
def k8s(cli):
    """The official kubernetes client, bound to the test cluster."""
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=cli.target.kubeconfig,
                                                          context=cli.target.context))


# Where each process of a run writes the inputs it rendered and those the CLI check compared (harness.render.CliCheck).
CLI_CHECK_RECORDS = HERE.parent / ".artifacts" / "cli-check"


def pytest_sessionfinish(session):
    from harness.render import CLI_CHECK

    if CLI_CHECK.every and CLI_CHECK.rendered:
        CLI_CHECK_RECORDS.mkdir(parents=True, exist_ok=True)
        record = CLI_CHECK_RECORDS / f"{os.environ.get('AGENTFORGE_RUN_ID', 'run')}-{os.getpid()}.json"
        record.write_text(json.dumps({"rendered": sorted(CLI_CHECK.rendered), "checked": sorted(CLI_CHECK.checked),
                                      "every": CLI_CHECK.every, "seed": CLI_CHECK.seed}))


def pytest_terminal_summary(terminalreporter):
    """Print the timings tests recorded (record_property("timing: ...")), also from xdist workers, and what the CLI
    check compared."""
    timings = [(name, value) for reports in terminalreporter.stats.values() for report in reports
               for name, value in getattr(report, "user_properties", []) if str(name).startswith("timing: ")]
    if timings:
        terminalreporter.section("timings")
        for name, value in sorted(set(timings)):
            terminalreporter.write_line(f"{name.removeprefix('timing: ')}: {value}")
    if hasattr(terminalreporter.config, "workerinput"):
        return  # an xdist worker: the controller sums up every worker's records
    records = sorted(CLI_CHECK_RECORDS.glob(f"{os.environ.get('AGENTFORGE_RUN_ID', 'run')}-*.json"))
    if records:
        loaded = [json.loads(r.read_text()) for r in records]
        rendered = set().union(*(set(r["rendered"]) for r in loaded))
        checked = set().union(*(set(r["checked"]) for r in loaded))
        every = loaded[0]["every"]
        terminalreporter.section("render server and helm CLI")
        terminalreporter.write_line(
            f"AGENTFORGE_CLI_CHECK={every or 0}: {len(checked)} of the {len(rendered)} distinct inputs the render "
            f"servers rendered were rendered by the helm CLI too (a difference fails the test that rendered it)"
            + (f" (a sample of one in {every}, seed {loaded[0]['seed']})" if every > 1 else ""))
        for record in records:
            record.unlink()


@pytest.fixture(scope="session")
def app_ready():
    """The app tier's prerequisites: the AgentForge source, root, and its installed virtualenvs and build."""
    import fcntl

    from harness import appsrc

    try:
        appsrc.source_root()
    except appsrc.SourceMissing as err:
        pytest.fail(str(err), pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("The app tier runs each container under the pod's uid, in namespaces of its own (bubblewrap, "
                    "setpriv, setns): run it as root (CI does), e.g. in a throwaway VM or container.", pytrace=False)
    appsrc.APP_TOOLS.mkdir(parents=True, exist_ok=True)
    with open(appsrc.APP_TOOLS / ".lock", "w") as lock:  # pytest-xdist workers install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        appsrc.ensure_installed()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A fake Kubernetes API server (tests/harness/fakeapi.py) whose Secrets a test sets in api.secrets."""
    from harness import fakeapi

    yield from fakeapi.serve(tmp_path_factory.mktemp("fake-api"))
