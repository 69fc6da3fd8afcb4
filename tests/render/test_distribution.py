"""Distribution: package, sign, publish to an OCI registry and pull back; the Artifact Hub metadata.

The `servers` tests start a real OCI registry (CNCF distribution, .tools/bin/registry) on 127.0.0.1 through
scripts/registry.sh, publish with ci/release.sh and read back with helm. `published_chart` is the chart as a
user finds it in a registry: install tests take its `ref` and `version`.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness.objects import pod_spec
from harness.registry import (
    TIMEOUT,
    check_version,
)
from harness.render import CHART, CHART_META, HELM, load_yaml

# ---------------------------------------------------------------------------------------------- fixtures


# ------------------------------------------------------------------------------------------ the registry


# ------------------------------------------------------------------------------------- publish and pull


# ------------------------------------------------------------------------------------ release guards

class TestVersionOrder:
    """ci/check_version.py's semver precedence, which decides what may be published."""

    ORDERED = ["0.1.0", "0.9.0", "0.10.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
               "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"]

    def test_semver_precedence(self):
        shuffled = self.ORDERED[::2] + self.ORDERED[1::2]
        assert sorted(shuffled, key=check_version.semver_key) == self.ORDERED

    def test_build_metadata_does_not_rank(self):
        assert check_version.semver_key("1.0.0+build.2") == check_version.semver_key("1.0.0")

    def test_tags_that_are_not_versions_ignored(self):
        tags = ["latest", "0.1.0", "0.10.0", "0.9.0_build.1", "sha256-ab12.sig", "01.0.0", "v1.0.0"]
        assert check_version.tag_versions(tags) == ["0.10.0", "0.9.0+build.1", "0.1.0"]

    @pytest.mark.parametrize("bad", ["1.0", "v1.0.0", "1.0.0-", "01.0.0"])
    def test_not_a_semver_rejected(self, bad):
        with pytest.raises(ValueError, match="not a semantic version"):
            check_version.semver_key(bad)


# --------------------------------------------------------------------------------- credentials


# ------------------------------------------------------------------------------------------- signing


# ------------------------------------------------------------------------------ Artifact Hub metadata

CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}


def annotation(key: str):
    return load_yaml(CHART_META["annotations"][f"artifacthub.io/{key}"])


def canonical_image(ref: str) -> str:
    """docker.io/library/postgres:16-alpine for postgres:16-alpine, library/postgres:16-alpine, ..."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "docker.io", ref
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = "docker.io"
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return f"{registry}/{path}"


def rendered_images(objects) -> set[str]:
    images = set()
    for obj in objects:
        if obj["kind"] == "CronJob":
            spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"):
            spec = pod_spec(obj)
        else:
            continue
        for key in ("containers", "initContainers", "ephemeralContainers"):
            images |= {c["image"] for c in spec.get(key, [])}
    return images


class TestArtifactHubMetadata:
    def test_images_annotation_lists_exactly_the_rendered_images(self, default_render):
        listed = {canonical_image(i["image"]) for i in annotation("images")}
        rendered = {canonical_image(i) for i in rendered_images(default_render)}
        assert listed == rendered, (f"listed but not deployed: {sorted(listed - rendered)}; "
                                    f"deployed but not listed: {sorted(rendered - listed)}")

    def test_images_are_named_and_pinned(self):
        images = annotation("images")
        assert len({i["name"] for i in images}) == len(images)
        for image in images:
            assert set(image) <= {"name", "image", "platforms", "whitelisted"}
            assert re.search(r":[\w][\w.-]*$|@sha256:[0-9a-f]{64}$", image["image"]), image
            assert not image["image"].endswith(":latest")

    def test_app_images_follow_app_version(self):
        for image in annotation("images"):
            if image["image"].startswith("agentforge/"):
                assert image["image"].endswith(f":{CHART_META['appVersion']}"), image

    def test_license_is_spdx(self):
        assert CHART_META["annotations"]["artifacthub.io/license"] == "Apache-2.0"

    def test_changes_are_well_formed(self):
        changes = annotation("changes")
        assert changes
        for change in changes:
            assert change["kind"] in CHANGE_KINDS, change
            assert isinstance(change["description"], str) and change["description"].strip()
            for link in change.get("links", []):
                assert link["url"].startswith("https://")

    def test_links_and_sources_are_https(self):
        for link in annotation("links"):
            assert link["name"] and link["url"].startswith("https://"), link
        assert CHART_META["sources"] and all(s.startswith("https://") for s in CHART_META["sources"])

    def test_packaged_chart_carries_the_metadata(self, tmp_path):
        proc = subprocess.run([HELM, "package", CHART, "--destination", tmp_path], capture_output=True, text=True,
                              timeout=TIMEOUT, check=True)
        tgz = Path(proc.stdout.strip().rsplit(" ", 1)[-1])
        with tarfile.open(tgz) as tar:
            meta = load_yaml(tar.extractfile(f"{CHART_META['name']}/Chart.yaml").read())
        assert meta["annotations"] == CHART_META["annotations"]
        assert meta["sources"] == CHART_META["sources"]


