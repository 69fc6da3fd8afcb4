"""The app tier: AgentForge's own code (AGENTFORGE_SRC) run in the containers the chart renders, against real
servers. Every test here carries the marker `app`."""

import pytest


def pytest_itemcollected(item):
    item.add_marker(pytest.mark.app)
