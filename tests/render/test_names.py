"""Object names for every name a user can give: each release name Helm accepts (1 to 53 characters, with and
without "agentforge" in it), and every nameOverride and fullnameOverride length up to their limit (63).

For each, with every optional object on (the all-options scenario): every kind and name is unique, every name
fits the rules of its kind, every label value fits 63 characters, and every selector selects the pods of its own
component and no other.
"""

from __future__ import annotations

import re

import pytest

from harness.render import render_chart, render_error
from harness.values import SCENARIOS

ALL_OPTIONS = SCENARIOS["all-options"]
LABEL = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The tightest rule of each kind. Services: a DNS label (RFC 1035). StatefulSets: their pods carry the label
# controller-revision-hash=<name>-<10 characters>, at most 63. Jobs: their pods carry job-name=<name>. CronJobs: the
# API refuses a name beyond 52 (each Job is named <name>-<8 digits>).
MAX_LENGTH = {"Service": 63, "StatefulSet": 52, "Job": 63, "Pod": 63, "CronJob": 52}
COMPONENT = "app.kubernetes.io/component"
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def release_names() -> list[str]:
    """Every length Helm accepts, without and with "agentforge" in the name."""
    plain = [("r" + "e" * 60)[:n] for n in range(1, 54)]
    named = [("agentforge-" + "x" * 60)[:n].rstrip("-") for n in range(10, 54)]
    return plain + [n for n in named if n not in plain]


def labels_of(obj: dict) -> list[dict]:
    out = [obj["metadata"].get("labels") or {}]
    if obj["kind"] in WORKLOADS:
        out.append(obj["spec"]["template"]["metadata"].get("labels") or {})
    return out


def check(objects) -> None:
    inventory = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(inventory) == len(set(inventory)), sorted(k for k in inventory if inventory.count(k) > 1)
    for kind, name in inventory:
        assert len(name) <= MAX_LENGTH.get(kind, 253) and SUBDOMAIN.match(name), (kind, name, len(name))
        if kind in ("Service", "StatefulSet", "Job"):
            assert DNS_LABEL.match(name), (kind, name)
    for obj in objects:
        for labels in labels_of(obj):
            for key, value in labels.items():
                assert len(str(value)) <= 63 and LABEL.match(str(value)), (obj["kind"], key, value)
    pods = [(o["kind"], o["metadata"]["name"], o["spec"]["template"]["metadata"]["labels"])
            for o in objects if o["kind"] in WORKLOADS]
    for obj in objects:
        selector = {"Service": lambda o: o["spec"].get("selector"),
                    "PodDisruptionBudget": lambda o: o["spec"]["selector"]["matchLabels"],
                    "Deployment": lambda o: o["spec"]["selector"]["matchLabels"],
                    "StatefulSet": lambda o: o["spec"]["selector"]["matchLabels"]}.get(obj["kind"])
        if selector is None or not selector(obj):
            continue
        match = selector(obj)
        selected = {(k, n) for k, n, labels in pods if match.items() <= labels.items()}
        own = {(k, n) for k, n, labels in pods if COMPONENT in match and labels.get(COMPONENT) == match[COMPONENT]
               and labels.get("app.kubernetes.io/instance") == match.get("app.kubernetes.io/instance")}
        assert selected == own and own, (obj["kind"], obj["metadata"]["name"], selected)


@pytest.mark.parametrize("release", release_names(), ids=len)
def test_every_release_name(release):
    check(render_chart(ALL_OPTIONS, name=release, validate=False))


@pytest.mark.parametrize("length", range(1, 64))
def test_every_fullname_override(length):
    check(render_chart({**ALL_OPTIONS, "fullnameOverride": ("f" + "u" * 70)[:length]}, validate=False))


@pytest.mark.parametrize("length", range(1, 64))
def test_every_name_override(length):
    release = "r" * 53
    check(render_chart({**ALL_OPTIONS, "nameOverride": ("n" + "a" * 70)[:length]}, name=release, validate=False))


def test_two_long_releases_sharing_a_prefix_differ():
    a = render_chart({}, name="a" * 40 + "-one", validate=False).inventory()
    b = render_chart({}, name="a" * 40 + "-two", validate=False).inventory()
    assert not a & b


def test_short_names_unchanged(default_render):
    assert ("Deployment", "agentforge-backend") in default_render.inventory()
    assert ("Secret", "agentforge-secrets") in default_render.inventory()


@pytest.mark.parametrize("key,value", [("fullnameOverride", "f" * 64), ("nameOverride", "n" * 64),
                                       ("fullnameOverride", "Upper"), ("nameOverride", "with.dot")])
def test_overrides_beyond_a_dns_label_refused(key, value):
    assert f"at '/{key}'" in render_error({key: value})



def test_names_yaml_reads_as_booleans_stay_strings():
    """A release `y` with nameOverride `n`: YAML 1.1, which the API machinery reads, takes a bare y or n for a
    boolean. Every label, selector and NetworkPolicy peer reads them back as the strings they are (the render server
    parses the manifest as the API server does)."""
    objects = render_chart({**ALL_OPTIONS, "nameOverride": "n"}, name="y", validate=False)
    found = 0
    for obj in objects:
        for node in _label_maps(obj):
            for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance"):
                if key in node:
                    found += 1
                    assert node[key] == {"app.kubernetes.io/name": "n", "app.kubernetes.io/instance": "y"}[key], \
                        (obj["kind"], obj["metadata"]["name"], key, node[key])
    assert found > len(objects)


def _label_maps(node):
    """Every mapping under a `labels` or `matchLabels` key, anywhere in an object."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("labels", "matchLabels") and isinstance(value, dict):
                yield value
            yield from _label_maps(value)
    elif isinstance(node, list):
        for item in node:
            yield from _label_maps(item)
