"""End to end: a release on the Ingress that earlier versions of the chart rendered for ingress-nginx by default is
not silently stripped of it by an upgrade to this version's defaults (no edge): helm refuses, naming what to set,
and the Ingresses stay; an explicit choice goes through."""

import pytest

from chart import CHART
from cluster import RESTRICTED

pytestmark = pytest.mark.e2e

NAMESPACE = "af-e2e-edge"
RELEASE = "agentforge"
OLD_DEFAULTS = ("--set", "ingress.enabled=true", "--set", "ingress.controller=ingress-nginx")


@pytest.fixture(scope="module")
def on_ingress_nginx(cli):
    """The release with the Ingresses the old defaults rendered (class nginx, the nginx.ingress.kubernetes.io/*
    affinity): the ingress-nginx preset renders exactly those."""
    cli.create_namespace(NAMESPACE, RESTRICTED)
    cli.install(RELEASE, NAMESPACE, *OLD_DEFAULTS)
    yield
    cli.cleanup(NAMESPACE, RELEASE)


def ingresses(cli) -> list[str]:
    return sorted(i["metadata"]["name"] for i in cli.get(NAMESPACE, "ingresses")["items"])


def upgrade(cli, *args: str, check: bool = True):
    return cli.helm("upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, *args, check=check)


def test_an_upgrade_to_the_defaults_is_refused_naming_what_to_set(cli, on_ingress_nginx):
    before = ingresses(cli)
    assert before == ["agentforge-backend", "agentforge-frontend"]
    # The values of before (none) on this version's defaults: helm would reuse the release's own values when an
    # upgrade gives none, as a values file of the user's own (hosts, origins) does not.
    proc = upgrade(cli, "--reset-values", check=False)
    assert proc.returncode != 0
    assert "this upgrade would delete the Ingress agentforge-backend" in proc.stderr
    assert "ingress.enabled=true ingress.controller=ingress-nginx" in proc.stderr
    assert ingresses(cli) == before
    annotations = cli.get(NAMESPACE, "ingress", "agentforge-backend")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"


def test_keeping_the_preset_keeps_the_ingresses(cli, on_ingress_nginx):
    upgrade(cli, *OLD_DEFAULTS)
    assert ingresses(cli) == ["agentforge-backend", "agentforge-frontend"]


def test_an_explicit_choice_removes_them(cli, on_ingress_nginx):
    upgrade(cli, "--set", "ingress.controller=generic")
    assert ingresses(cli) == []
