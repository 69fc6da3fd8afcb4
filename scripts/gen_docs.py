#!/usr/bin/env python3
"""Generate values.schema.json and the chart README's parameter table from their sources.

- values.yaml comments are the single source of every key's description: `# -- text` (and the
  `# text` lines that continue it) above a key; a plain comment above a group of keys describes it.
- values.schema.yaml is the schema's source. The generator copies each description in, and adds
  `additionalProperties: false` to every `type: object` that lists its properties, so unknown keys
  are refused. It fails when a key of the schema has no description.
- The parameter table replaces the text between the markers in charts/agentforge/README.md.

`--check` writes nothing and exits 1 when a generated file is stale.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "agentforge"
VALUES = CHART / "values.yaml"
SCHEMA_SOURCE = CHART / "values.schema.yaml"
SCHEMA = CHART / "values.schema.json"
README = CHART / "README.md"
PIPE = "\\|"
START, END = "<!-- parameters:start -->", "<!-- parameters:end -->"

KEY_RE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


def value_comments(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """Descriptions of values.yaml keys: ({key: `# --` text}, {key: plain comment above a group})."""
    params: dict[str, str] = {}
    groups: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] = []
    is_param = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            if body.startswith("--"):
                pending, is_param = [body[2:].strip()], True
            else:
                pending.append(body)
            continue
        match = KEY_RE.match(line)
        if not match:
            if not stripped:
                pending, is_param = [], False
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if pending:
            (params if is_param else groups)[".".join(k for _, k in stack)] = " ".join(p for p in pending if p)
        pending, is_param = [], False
    return params, groups


def fill_schema(node: dict, path: list[str], comments: dict[str, str], missing: list[str]) -> None:
    if node.get("type") == "object" and "properties" in node:
        node.setdefault("additionalProperties", False)
    for key, child in node.get("properties", {}).items():
        child_path = [*path, key]
        dotted = ".".join(child_path)
        if dotted in comments:
            child["description"] = comments[dotted]
        elif "description" not in child and "$ref" not in child:
            missing.append(dotted)
        fill_schema(child, child_path, comments, missing)


def build_schema(comments: dict[str, str]) -> dict:
    schema = yaml.safe_load(SCHEMA_SOURCE.read_text())
    schema = {k: v for k, v in schema.items() if not k.startswith("x-")}
    for definition in schema.get("$defs", {}).values():
        fill_schema(definition, [], {}, [])
    missing: list[str] = []
    fill_schema(schema, [], comments, missing)
    if missing:
        sys.exit("values keys without a description (add a `# --` comment in values.yaml): " + ", ".join(missing))
    return schema


def lookup(values: dict, dotted: str) -> object:
    for key in dotted.split("."):
        values = values[key]
    return values


def parameter_table(values: dict, params: dict[str, str]) -> str:
    rows = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for key, description in params.items():
        default = json.dumps(lookup(values, key), separators=(",", ":")).replace("|", PIPE)
        text = description.replace("|", PIPE)
        rows.append(f"| `{key}` | `{default}` | {text} |")
    return "\n".join(rows)


def outputs() -> dict[Path, str]:
    params, groups = value_comments(VALUES.read_text())
    schema_text = json.dumps(build_schema(params | groups), indent=2) + "\n"
    values = yaml.safe_load(VALUES.read_text())
    readme = README.read_text()
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    table = parameter_table(values, params)
    return {SCHEMA: schema_text, README: f"{head}{START}\n{table}\n{END}{tail}"}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in outputs().items():
        if path.exists() and path.read_text() == text:
            continue
        if check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("stale generated files (run `make docs`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
