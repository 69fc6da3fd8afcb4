"""The end-to-end tier: the chart installed on a real Kubernetes API server (the local kwok cluster; another
KUBECONFIG only with AGENTFORGE_E2E_ANY_CLUSTER=1). Every test here carries the marker `e2e`."""

import pytest


def pytest_itemcollected(item):
    item.add_marker(pytest.mark.e2e)
