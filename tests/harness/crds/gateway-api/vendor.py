#!/usr/bin/env python3
"""Vendor the HTTPRoute v1 schema of the pinned Gateway API release (GATEWAY_API_VERSION in scripts/versions.env).

`go mod download -json sigs.k8s.io/gateway-api@<version>` puts the release's module, CRDs included, into the Go
module cache; this script copies the `openAPIV3Schema` of `httproutes` (version v1) from the standard and the
experimental channel next to itself, with where it came from. The chart's tests validate rendered HTTPRoutes
against these files. Run it after changing GATEWAY_API_VERSION; `--check` fails when the files are stale.

The schemas carry the CRDs' CEL rules (`x-kubernetes-validations`) untouched: jsonschema ignores them, so the
tests check the few rules the chart's routes can break by hand.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
MODULE = "sigs.k8s.io/gateway-api"
CHANNELS = ("standard", "experimental")


def pinned_version() -> str:
    text = (ROOT / "scripts" / "versions.env").read_text()
    return re.search(r"^GATEWAY_API_VERSION=(\S+)$", text, re.M).group(1)


def target(channel: str) -> Path:
    return HERE / f"httproute-v1-{channel}.json"


def outputs(version: str) -> dict[Path, str]:
    info = json.loads(subprocess.run(["go", "mod", "download", "-json", f"{MODULE}@{version}"],
                                     capture_output=True, text=True, check=True, cwd=HERE).stdout)
    if info.get("Error") or not info.get("Dir"):
        sys.exit(f"go mod download {MODULE}@{version}: {info.get('Error', 'no module directory')}")
    out = {}
    for channel in CHANNELS:
        relpath = f"config/crd/{channel}/gateway.networking.k8s.io_httproutes.yaml"
        crd = yaml.safe_load((Path(info["Dir"]) / relpath).read_text())
        (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        doc = {
            "source": f"{MODULE}@{version} {relpath}",
            "moduleSum": info["Sum"],
            "bundleVersion": crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"],
            "channel": crd["metadata"]["annotations"]["gateway.networking.k8s.io/channel"],
            "openAPIV3Schema": v1["schema"]["openAPIV3Schema"],
        }
        out[target(channel)] = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    return out


def main(argv: list[str]) -> int:
    version = pinned_version()
    stale = []
    for path, text in outputs(version).items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.name)
        if "--check" not in argv:
            path.write_text(text)
    if stale and "--check" in argv:
        print(f"stale for Gateway API {version}: {', '.join(stale)} (run {Path(__file__).name})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
