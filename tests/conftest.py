import shutil

import pytest

from chart import HELM, render_chart


def pytest_configure(config):
    if not shutil.which(HELM):
        raise pytest.UsageError(f"{HELM} is missing: run `make tools` (or `make test`, which installs it)")


@pytest.fixture(scope="session")
def default_render():
    """The default install, rendered once per session (tests get a fresh copy from render_chart)."""
    return render_chart()
