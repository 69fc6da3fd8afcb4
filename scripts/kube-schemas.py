#!/usr/bin/env python3
"""Lay out the strict Kubernetes JSON schemas of the pinned kubernetes-validate package for kubeconform.

kubernetes-validate ships `vX.Y.0-local-strict/<kind>-<group>-<version>.json` whose `$ref`s point into a shared
`/api/_definitions.json` at its `$id` (https://kubernetes.io/...), which kubeconform would try to download. This
writes each version the chart supports (Chart.yaml's kubeVersion floor and up) to
`<out>/vX.Y.0-standalone-strict/`, kubeconform's default layout, as standalone schemas: each kind's file carries
the definitions it references under its own `$defs`, so kubeconform compiles a small file per kind instead of
parsing the 2 MB definitions for each. Usage: kube-schemas.py OUT_DIR
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"


SHARED = '"/api/_definitions.json#/$defs/'
REF = re.compile(r'"#/\$defs/([^"]+)"')


def standalone(text: str, definitions: dict[str, dict], closure: dict[str, set[str]]) -> dict:
    """The schema in `text` with every definition it reaches copied into its `$defs`, refs made local."""
    text = text.replace(SHARED, '"#/$defs/')
    needed: set[str] = set()
    for name in REF.findall(text):
        needed |= reach(name, definitions, closure)
    schema = json.loads(text)
    schema.pop("$id", None)
    schema["$defs"] = {name: definitions[name] for name in sorted(needed)}
    return schema


def reach(name: str, definitions: dict[str, dict], closure: dict[str, set[str]]) -> set[str]:
    """The definitions one definition reaches, itself included (memoised in `closure`)."""
    if name not in closure:
        closure[name] = {name}
        for ref in REF.findall(json.dumps(definitions[name])):
            closure[name] |= reach(ref, definitions, closure)
    return closure[name]


def main(out: Path) -> int:
    floor = re.search(r">=\s*1\.(\d+)", yaml.safe_load((ROOT / "charts/agentforge/Chart.yaml").read_text())
                      ["kubeVersion"]).group(1)
    versions = [d for d in sorted(SOURCE.glob("v1.*.0-local-strict")) if int(d.name.split(".")[1]) >= int(floor)]
    for source in versions:
        target = out / source.name.replace("-local-strict", "-standalone-strict")
        target.mkdir(parents=True, exist_ok=True)
        definitions = json.loads((source / "_definitions.json").read_text().replace(SHARED, '"#/$defs/'))["$defs"]
        closure: dict[str, set[str]] = {}
        for path in source.glob("*.json"):
            if path.name != "_definitions.json":
                (target / path.name).write_text(json.dumps(standalone(path.read_text(), definitions, closure)))
    print(f"kubeconform schemas for {', '.join(d.name.split('-')[0] for d in versions)} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
