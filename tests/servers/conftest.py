"""The servers tier: real servers on 127.0.0.1 (PostgreSQL, Redis, the exporters, an OCI registry, a fake
Kubernetes API). Every test here carries the marker `servers`."""

import pytest


def pytest_itemcollected(item):
    item.add_marker(pytest.mark.servers)
