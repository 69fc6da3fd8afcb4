"""Values: the scenarios every cross-cutting test renders (the default install and each file of the chart's ci/),
merging values, and the chart's schema closed to unknown keys."""

from __future__ import annotations

import json

from harness.render import CHART, load_yaml


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# The values scenarios every cross-cutting test runs: the default install and each file in the chart's ci/.
SCENARIO_FILES = sorted((CHART / "ci").glob("*-values.yaml"))


SCENARIOS = {"default": {}} | {p.name.removesuffix("-values.yaml"): load_yaml(p.read_text()) or {}
                               for p in SCENARIO_FILES}


def closed_schema(schema: dict) -> dict:
    """A copy of a JSON schema in which every object that lists its properties refuses any other key."""
    schema = json.loads(json.dumps(schema))

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema
