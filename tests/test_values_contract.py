"""The values contract: the schema documents every key, refuses bad input by name, accepts every scenario."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from chart import CHART, SCENARIO_FILES, closed_schema, helm

INVALID = sorted((Path(__file__).parent / "invalid-values").glob("*.yaml"))
SCENARIOS = SCENARIO_FILES
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def expected_messages(path: Path) -> list[str]:
    """The `# expect: <text naming a key>` lines the file starts with: every one must be in helm's message."""
    lines = path.read_text().splitlines()
    expected = [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]
    assert expected and lines[0].startswith("# expect: "), f"{path.name} must start with '# expect: <text>'"
    return expected


def test_closed_schema_accepts_values_yaml():
    """No key of values.yaml goes undocumented: a schema closed everywhere still accepts it."""
    jsonschema.validate(VALUES, closed_schema(SCHEMA), cls=jsonschema.Draft202012Validator)


def test_closed_schema_catches_an_undocumented_key():
    values = copy.deepcopy(VALUES)
    values["backend"]["server"]["undocumented"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, closed_schema(SCHEMA), cls=jsonschema.Draft202012Validator)


def test_every_property_has_a_description():
    missing = []

    def walk(node, path):
        for key, child in node.get("properties", {}).items():
            if "description" not in child and "$ref" not in child:
                missing.append(".".join([*path, key]))
            walk(child, [*path, key])

    walk(SCHEMA, [])
    assert missing == []


def test_schema_is_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_enough_invalid_cases():
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
@pytest.mark.parametrize("command", ["template", "install --dry-run=client"])
def test_invalid_values_rejected_naming_the_key(path, command):
    proc = helm(*command.split(), "invalid", str(CHART), "--values", str(path), check=False)
    assert proc.returncode != 0, f"{path.name} was accepted by helm {command}"
    for expected in expected_messages(path):
        assert expected in proc.stderr, proc.stderr


def test_scenarios_exist():
    assert len(SCENARIOS) >= 4, [p.name for p in SCENARIOS]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_accepted(path):
    proc = helm("template", "scenario", str(CHART), "--values", str(path), check=False)
    assert proc.returncode == 0, proc.stderr
