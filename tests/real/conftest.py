"""The real-pod tier: the chart's pods as real containers on the local single-node Kubernetes
(scripts/kube/node.sh). Every test here carries the marker `real`.

It runs in one process, in this order: the node's own teardown check first (it needs the machine without a node),
then the tests that read an installed release, then those that upgrade, uninstall and reinstall it.
"""

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ORDER = ("test_real_node.py", "test_images.py", "test_real_install.py", "test_real_journey.py",
         "test_real_networkpolicy.py", "test_real_limits.py", "test_real_monitoring.py", "test_real_runtime.py",
         "test_real_gitops.py", "test_real_backup.py", "test_real_data.py", "test_real_edge.py")


def pytest_itemcollected(item):
    item.add_marker(pytest.mark.real)


def pytest_collection_modifyitems(items):
    """The tier's tests in ORDER, after every other test of the run (a stable sort keeps each file's order)."""
    def rank(item):
        if not item.path.is_relative_to(HERE):
            return -1
        return ORDER.index(item.path.name) if item.path.name in ORDER else len(ORDER)
    items.sort(key=rank)


def pytest_runtest_setup(item):
    if hasattr(item.config, "workerinput"):  # a pytest-xdist worker
        pytest.fail("the real-pod tier (marker `real`) drives one node and one release: run it in one process "
                    "(-p no:xdist), as ci/test.sh and `make test-real` do, and add -m 'not real' to run the other "
                    "tiers on workers", pytrace=False)


REAL_NAMESPACE = "af-real"
REAL_RELEASE = "agentforge"


@pytest.fixture(scope="session")
def real_cli():
    """helm and kubectl on the local single-node cluster, started if needed, with the images built and loaded."""
    from harness import realnode

    if os.geteuid() != 0:
        pytest.fail("The real-pod tier starts a kubelet, containerd and network rules on this machine: run it as "
                    "root (CI does), e.g. in a throwaway VM.", pytrace=False)
    return realnode.RealCli(realnode.node_kubeconfig())


@pytest.fixture(scope="session")
def real_release(real_cli):
    """The chart installed on the real node with the built images: (namespace, release, seconds helm install
    --wait took). Uninstalled, with its namespace, claims and kept Secret, at the end of the session."""
    from harness import realnode
    from harness.cluster import RESTRICTED

    real_cli.create_namespace(REAL_NAMESPACE, RESTRICTED)
    seconds = real_cli.install(REAL_RELEASE, REAL_NAMESPACE, *realnode.chart_values(), timeout="10m")
    yield REAL_NAMESPACE, REAL_RELEASE, seconds
    real_cli.cleanup(REAL_NAMESPACE, REAL_RELEASE)
