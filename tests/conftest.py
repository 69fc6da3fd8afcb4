import os
import shutil
from pathlib import Path

import pytest
from _pytest.mark.expression import Expression

from chart import HELM, KUBE_SCHEMAS, RENDERER, render_chart

# Test files of a tier whose every test carries its marker (a module-wide pytestmark).
#
# The real-pod tier (marker `real`) runs in one process, in this order: the node's own teardown check first (it
# needs the machine without a node), then the tests that read an installed release, then those that upgrade,
# uninstall and reinstall it.
REAL_ORDER = ("test_real_node.py", "test_images.py", "test_real_install.py", "test_real_journey.py",
              "test_real_networkpolicy.py", "test_real_limits.py", "test_real_monitoring.py", "test_real_runtime.py",
              "test_real_gitops.py",
              "test_real_backup.py", "test_real_data.py", "test_real_edge.py")
TIER_FILES = {"app": ("test_app_*.py",), "e2e": ("test_e2e_*.py",), "real": REAL_ORDER}


def pytest_ignore_collect(collection_path, config):
    """A tier's files are not imported when -m deselects that tier (the render tier, `make mutate`): importing them
    only to deselect every test cost each process 0.6 s."""
    markexpr = config.getoption("markexpr")
    if markexpr:
        selection = Expression.compile(markexpr)
        for marker, patterns in TIER_FILES.items():
            chosen = selection.evaluate(lambda name, m=marker, **_: name == m)
            if not chosen and any(collection_path.match(p) for p in patterns):
                return True
    return None


def pytest_configure(config):
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
    from cluster import NotOurCluster, kubeconfig

    try:
        return kubeconfig()
    except NotOurCluster as refused:
        pytest.fail(str(refused), pytrace=False)


@pytest.fixture(scope="session")
def cli(kube_config):
    from cluster import Cli

    return Cli(kube_config)


@pytest.fixture(scope="session")
def k8s(kube_config):
    """The official kubernetes client, bound to the test cluster."""
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=kube_config))


def pytest_terminal_summary(terminalreporter):
    """Print the timings tests recorded (record_property("timing: ...")), also from xdist workers."""
    timings = [(name, value) for reports in terminalreporter.stats.values() for report in reports
               for name, value in getattr(report, "user_properties", []) if str(name).startswith("timing: ")]
    if timings:
        terminalreporter.section("timings")
        for name, value in sorted(set(timings)):
            terminalreporter.write_line(f"{name.removeprefix('timing: ')}: {value}")


@pytest.fixture(scope="session")
def app_ready():
    """The app tier's prerequisites: the AgentForge source, root, and its installed virtualenvs and build."""
    import fcntl
    import os

    import appsrc

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
    """A fake Kubernetes API server (tests/fakeapi.py) whose Secrets a test sets in api.secrets."""
    import fakeapi

    yield from fakeapi.serve(tmp_path_factory.mktemp("fake-api"))


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = item.path.name
        return REAL_ORDER.index(name) if name in REAL_ORDER else len(REAL_ORDER)
    items.sort(key=rank)


def pytest_runtest_setup(item):
    if item.get_closest_marker("real") and hasattr(item.config, "workerinput"):  # a pytest-xdist worker
        pytest.fail("the real-pod tier (marker `real`) drives one node and one release: run it in one process "
                    "(-p no:xdist), as ci/test.sh and `make test-real` do, and add -m 'not real' to run the other "
                    "tiers on workers", pytrace=False)


REAL_NAMESPACE = "af-real"
REAL_RELEASE = "agentforge"


@pytest.fixture(scope="session")
def real_cli():
    """helm and kubectl on the local single-node cluster, started if needed, with the images built and loaded."""
    import realnode

    if os.geteuid() != 0:
        pytest.fail("The real-pod tier starts a kubelet, containerd and network rules on this machine: run it as "
                    "root (CI does), e.g. in a throwaway VM.", pytrace=False)
    return realnode.RealCli(realnode.node_kubeconfig())


@pytest.fixture(scope="session")
def real_release(real_cli):
    """The chart installed on the real node with the built images: (namespace, release, seconds helm install
    --wait took). Uninstalled, with its namespace, claims and kept Secret, at the end of the session."""
    import realnode
    from cluster import RESTRICTED

    real_cli.create_namespace(REAL_NAMESPACE, RESTRICTED)
    seconds = real_cli.install(REAL_RELEASE, REAL_NAMESPACE, *realnode.chart_values(), timeout="10m")
    yield REAL_NAMESPACE, REAL_RELEASE, seconds
    real_cli.cleanup(REAL_NAMESPACE, REAL_RELEASE)
