"""Compatibility: helm v3 and v4 render the same objects; every object is valid for every supported minor."""

import pytest

from chart import CRD_KINDS, HELM3, KUBE_VERSIONS, MAX_KUBE, SCENARIOS, helm, render_chart, validate_object

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


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm3_and_helm4_render_the_same_objects(scenario):
    v4 = comparable(render_chart(SCENARIOS[scenario], validate=False))
    v3 = comparable(render_chart(SCENARIOS[scenario], helm_binary=HELM3, validate=False))
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
