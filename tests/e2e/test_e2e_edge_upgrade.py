"""End to end: a release on the Ingresses that earlier versions of the chart rendered for ingress-nginx by default is
not silently stripped of them by an upgrade to this version's defaults (no edge): helm refuses, naming what to set,
and the Ingresses stay; keeping the preset keeps them as they were; an explicit choice removes them. Each test has a
release of its own."""

import itertools

import pytest

from harness.cluster import RESTRICTED
from harness.render import CHART

NAMESPACE = "af-e2e-edge"
OLD_DEFAULTS = ("--set", "ingress.enabled=true", "--set", "ingress.controller=ingress-nginx")
NUMBERS = itertools.count(1)


@pytest.fixture(scope="module")
def namespace(cli):
    cli.create_namespace(NAMESPACE, RESTRICTED)
    yield NAMESPACE
    cli.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


@pytest.fixture
def release(cli, namespace):
    """A release with the Ingresses the old defaults rendered (class nginx, the nginx.ingress.kubernetes.io/*
    affinity): the ingress-nginx preset renders exactly those (tests/render/test_ingress.py)."""
    name = f"agentforge-edge{next(NUMBERS)}"
    cli.install(name, namespace, *OLD_DEFAULTS)
    yield name
    cli.helm("uninstall", name, "--namespace", namespace, "--wait", check=False)


def ingresses(cli) -> dict[str, tuple[str, dict]]:
    """{name: (class, annotations)} of the namespace's Ingresses."""
    return {i["metadata"]["name"]: (i["spec"].get("ingressClassName"), i["metadata"].get("annotations", {}))
            for i in cli.get(NAMESPACE, "ingresses")["items"]}


def upgrade(cli, release: str, *args: str, check: bool = True):
    return cli.helm("upgrade", release, str(CHART), "--namespace", NAMESPACE, *args, check=check)


def test_an_upgrade_to_the_defaults_is_refused_naming_what_to_set(cli, release):
    before = ingresses(cli)
    assert set(before) == {f"{release}-backend", f"{release}-frontend"}
    # The values of before (none) on this version's defaults: helm would reuse the release's own values when an
    # upgrade gives none, as a values file of the user's own (hosts, origins) does not.
    proc = upgrade(cli, release, "--reset-values", check=False)
    assert proc.returncode != 0
    assert f"this upgrade would delete the Ingress {release}-backend" in proc.stderr
    assert "ingress.enabled=true ingress.controller=ingress-nginx" in proc.stderr
    assert ingresses(cli) == before


def test_a_controller_named_without_the_ingress_is_refused_too(cli, release):
    """A preset named while the Ingress is off would drop the old Ingress with nothing in its place."""
    proc = upgrade(cli, release, "--set", "ingress.controller=traefik", check=False)
    assert proc.returncode != 0 and "ingress.controller=generic with ingress.enabled=false" in proc.stderr


def test_keeping_the_preset_keeps_the_ingresses_as_they_were(cli, release):
    before = ingresses(cli)
    upgrade(cli, release, *OLD_DEFAULTS)
    assert ingresses(cli) == before
    assert before[f"{release}-backend"][0] == "nginx"
    assert before[f"{release}-backend"][1]["nginx.ingress.kubernetes.io/affinity"] == "cookie"


def test_an_explicit_choice_removes_them(cli, release):
    upgrade(cli, release, "--set", "ingress.controller=generic")
    assert ingresses(cli) == {}
