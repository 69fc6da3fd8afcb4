"""The values contract: the schema documents every key, refuses bad input by name, accepts every scenario."""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest

from harness.render import CHART, HELM, HELM_OLDEST, OLDEST_RENDERER, RENDERER, RenderError, cli_error, helm, load_yaml
from harness.values import SCENARIO_FILES, closed_schema

INVALID = sorted((Path(__file__).parent / "invalid-values").glob("*.yaml"))
SCENARIOS = SCENARIO_FILES
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = load_yaml((CHART / "values.yaml").read_text())


def expected_messages(path: Path) -> list[str]:
    """The `# expect: <text naming a key>` lines the file starts with: every one must be in helm's message."""
    lines = path.read_text().splitlines()
    expected = [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]
    assert expected and lines[0].startswith("# expect: "), f"{path.name} must start with '# expect: <text>'"
    return expected


@pytest.fixture(scope="module")
def closed():
    """A validator of the schema closed everywhere (test_schema_is_valid_json_schema checks the schema itself)."""
    return jsonschema.Draft202012Validator(closed_schema(SCHEMA))


def test_closed_schema_accepts_values_yaml(closed):
    """No key of values.yaml goes undocumented: a schema closed everywhere still accepts it."""
    closed.validate(VALUES)


def test_closed_schema_catches_an_undocumented_key(closed):
    values = copy.deepcopy(VALUES)
    values["backend"]["server"]["undocumented"] = True
    with pytest.raises(jsonschema.ValidationError, match="undocumented"):
        closed.validate(values)


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
    """Through the render server: helm's template and install actions (test_compatibility proves it renders what
    the CLI renders; test_the_cli_refuses_like_the_render_server, that the CLI refuses every file alike)."""
    with pytest.raises(RenderError) as refused:
        RENDERER.render(path.read_text(), name="invalid", install=command != "template")
    for expected in expected_messages(path):
        assert expected in refused.value.stderr, refused.value.stderr


CLI_CASES = [(path, "template") for path in INVALID] + [
    (path, command) for path in INVALID[::12] for command in ("install --dry-run=client", "oldest template")]


@pytest.mark.parametrize("path,command", CLI_CASES, ids=lambda v: getattr(v, "stem", v))
def test_the_cli_refuses_like_the_render_server(path, command):
    """Every file of the corpus through the helm CLI's `template`, and a sample through `install` and the oldest
    Helm: refused with the same message, but for the CLI's own decorations (install prefixes INSTALLATION FAILED;
    template adds a hint about --debug)."""
    binary, renderer = (HELM_OLDEST, OLDEST_RENDERER) if command.startswith("oldest") else (HELM, RENDERER)
    command = command.removeprefix("oldest ")
    proc = helm(*command.split(), "invalid", str(CHART), "--namespace", "agentforge", "--values", str(path),
                binary=binary, check=False)
    assert proc.returncode != 0, f"{path.name} was accepted by {binary} {command}"
    with pytest.raises(RenderError) as refused:
        renderer.render(path.read_text(), name="invalid", install=command != "template")
    assert cli_error(proc.stderr, install=command != "template") == refused.value.stderr.strip()
    for expected in expected_messages(path) if binary == HELM else ():
        assert expected in proc.stderr, proc.stderr


def names_for_the_oldest_helm(expected: str) -> list[str]:
    """What the oldest Helm's schema validator (gojsonschema) calls a key the newest calls at '/a/b/c': `a.b.c`,
    or the object holding it (it reports an anyOf by its object); an unknown key: "property <key> is not allowed"."""
    unknown = re.match(r"^'([^']+)' not allowed", expected)
    if unknown:  # "Additional property <key> is not allowed"
        return [f"property {unknown.group(1)} is not allowed"]
    match = re.match(r"^(?:at ')?(/[^']*)", expected)
    if not match:
        return [expected]
    dotted = match.group(1).strip("/").replace("/", ".")
    return [dotted, dotted.rsplit(".", 1)[0]]


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_oldest_helm_refuses_them_too(path):
    with pytest.raises(RenderError) as refused:
        OLDEST_RENDERER.render(path.read_text(), name="invalid")
    for expected in expected_messages(path):
        assert any(name in refused.value.stderr for name in names_for_the_oldest_helm(expected)), \
            refused.value.stderr


def test_scenarios_exist():
    assert len(SCENARIOS) >= 4, [p.name for p in SCENARIOS]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_accepted(path):
    assert "kind: Deployment" in RENDERER.render(path.read_text(), name="scenario")
