"""Compatibility: the newest Helm 3 and the oldest supported Helm render the same objects as Helm 4, an older one
refuses clearly; every object is valid for every supported Kubernetes minor."""

import pytest

from chart import (
    CHART,
    CRD_KINDS,
    HELM3,
    HELM_BELOW_OLDEST,
    HELM_OLDEST,
    KUBE_VERSIONS,
    MAX_KUBE,
    SCENARIOS,
    helm,
    render_chart,
    validate_object,
)

# Differ by design between two renders: generated secrets, and the pod annotations hashed from them.
GENERATED_SECRET_KEYS = {"SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "DATABASE_URL",
                         "REDIS_URL", "admin-password", "secret-key"}
SECRET_CHECKSUMS = {"checksum/secret", "checksum/password"}


def comparable(objects):
    out = {}
    for obj in objects:
        if obj["kind"] == "Secret":
            for key in GENERATED_SECRET_KEYS & set(obj.get("data", {})):
                obj["data"][key] = "<generated>"
        annotations = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
        for key in SECRET_CHECKSUMS & set(annotations):
            annotations[key] = "<generated>"
        out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


def test_helm3_is_the_pinned_version():
    assert helm("version", "--short", binary=HELM3).stdout.startswith("v3.")


@pytest.mark.parametrize("binary", [HELM3, HELM_OLDEST], ids=["helm3", "oldest"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm3_and_helm4_render_the_same_objects(scenario, binary):
    v4 = comparable(render_chart(SCENARIOS[scenario], validate=False))
    v3 = comparable(render_chart(SCENARIOS[scenario], helm_binary=binary, validate=False))
    assert sorted(v3) == sorted(v4)
    for key in v4:
        assert v3[key] == v4[key], key


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_strict_schema_valid_for_every_minor(scenario, kube_version):
    objects = render_chart(SCENARIOS[scenario], kube_version=kube_version, validate=False)
    checked = 0
    for obj in objects:
        if obj["kind"] not in CRD_KINDS:
            validate_object(obj, kube_version)
            checked += 1
    assert checked > 0


def test_version_range_reaches_newest_schemas():
    assert KUBE_VERSIONS[-1] == MAX_KUBE
    assert len(KUBE_VERSIONS) >= 8


def test_older_helm_refused_naming_the_floor():
    proc = helm("template", "old", str(CHART), binary=HELM_BELOW_OLDEST, check=False)
    assert proc.returncode != 0
    assert "this chart needs Helm 3.15 or later" in proc.stderr and "this is Helm v3.14" in proc.stderr
