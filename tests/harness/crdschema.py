"""Validation of rendered objects against a project's own CustomResourceDefinition, read from its Go module (the
version pinned in scripts/versions.env, from the Go module proxy): the CRD's openAPIV3Schema, closed as
kubeconform -strict closes it (an object that lists its properties takes no others), so a misspelt field fails."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jsonschema
import yaml


def module_dir(module: str, version: str) -> Path:
    """A Go module's folder in the module cache (downloaded from the Go module proxy if needed)."""
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/local/go/bin"}
    out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True,
                         check=True, env=env).stdout
    return Path(json.loads(out)["Dir"])


def _closed(schema: dict) -> dict:
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if schema.get("type") == "object" and "properties" in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    elif isinstance(schema, list):
        schema = [_closed(v) for v in schema]
    return schema


def errors(crd_file: Path, obj: dict) -> list[str]:
    """What the CRD in `crd_file` (one of its documents, for the object's kind and version) refuses in `obj`."""
    group, version = obj["apiVersion"].split("/")
    crd = next(d for d in yaml.safe_load_all(crd_file.read_text())
               if d and d.get("kind") == "CustomResourceDefinition" and d["spec"]["group"] == group
               and d["spec"]["names"]["kind"] == obj["kind"])
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    top = ("apiVersion", "kind", "metadata")
    schema = _closed({**schema, "properties": {k: v for k, v in schema["properties"].items() if k not in top},
                      "required": [k for k in schema.get("required", []) if k not in top]})
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(body)]
