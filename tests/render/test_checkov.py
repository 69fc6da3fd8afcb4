"""checkov on every scenario's render: no failed check beyond the ones listed, with reasons, under ci/."""

import json
import subprocess

import pytest
import yaml

from harness.render import RENDERER, ROOT, TOOLS_BIN, load_yaml
from harness.values import SCENARIOS

CONFIG = ROOT / "ci" / "checkov.yaml"
EXCEPTIONS = load_yaml((ROOT / "ci" / "checkov-exceptions.yaml").read_text())


def allowed(check: str, resource: str, scenario: str) -> dict | None:
    """The exception that covers a finding, if any."""
    for e in EXCEPTIONS:
        if e["check"] == check and e["resource"] in ("*", resource) and scenario in e.get("scenarios", [scenario]):
            return e
    return None


def scenario_of(finding: dict) -> str:
    return finding["file_path"].strip("/").split("/")[0]


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    """{scenario: (failed (check, Kind/name) pairs, number of passed checks)}, from one checkov run over every
    scenario's render, each in a folder, a namespace and a release of its own, since graph checks match objects
    across files by their labels. Findings name objects as the release "agentforge" would."""
    root = tmp_path_factory.mktemp("checkov")
    for scenario, values in SCENARIOS.items():
        (root / scenario).mkdir()
        (root / scenario / "rendered.yaml").write_text(RENDERER.render(
            json.dumps(values), name=f"{scenario}-agentforge", namespace=f"scan-{scenario}"))
    config = tmp_path_factory.mktemp("config") / "checkov.yaml"  # ci/checkov.yaml, listing passed checks too
    config.write_text(yaml.safe_dump(load_yaml(CONFIG.read_text()) | {"quiet": False}))
    proc = subprocess.run([str(TOOLS_BIN / "checkov"), "--config-file", str(config), "-d", str(root),
                           "--output", "json"], capture_output=True, text=True, timeout=600)
    report = json.loads(proc.stdout)
    out = {scenario: (set(), 0) for scenario in SCENARIOS}
    for r in report if isinstance(report, list) else [report]:
        for f in r["results"]["passed_checks"]:
            failed, passed = out[scenario_of(f)]
            out[scenario_of(f)] = (failed, passed + 1)
        for f in r["results"]["failed_checks"]:
            kind, _namespace, name = f["resource"].split(".", 2)
            release_name = name.split(".")[0].replace(f"{scenario_of(f)}-agentforge", "agentforge", 1)
            out[scenario_of(f)][0].add((f["check_id"], f"{kind}/{release_name}"))
    return out


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_failed_check_beyond_the_listed_ones(findings, scenario):
    failed, passed = findings[scenario]
    assert passed > 100, "checkov ran no checks"
    assert {f for f in failed if not allowed(*f, scenario)} == set()


def test_every_exception_is_still_needed(findings):
    used = {id(allowed(*f, scenario)) for scenario, (failed, _) in findings.items() for f in failed}
    stale = [e for e in EXCEPTIONS if id(e) not in used]
    assert stale == [], "remove exceptions that no longer fire"


def test_every_skip_and_exception_has_a_reason():
    assert all(e["reason"].strip() for e in EXCEPTIONS)
    lines = CONFIG.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- CKV_"):
            assert lines[i - 1].strip().startswith("#"), f"{line.strip()} has no reason above it"
