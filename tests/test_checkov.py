"""checkov on every scenario's render: no failed check beyond the ones listed, with reasons, under ci/."""

import json
import subprocess

import pytest
import yaml

from chart import CHART, ROOT, SCENARIOS, TOOLS_BIN, helm

CONFIG = ROOT / "ci" / "checkov.yaml"
EXCEPTIONS = yaml.safe_load((ROOT / "ci" / "checkov-exceptions.yaml").read_text())


def allowed(check: str, resource: str, scenario: str) -> dict | None:
    """The exception that covers a finding, if any."""
    for e in EXCEPTIONS:
        if e["check"] == check and e["resource"] in ("*", resource) and scenario in e.get("scenarios", [scenario]):
            return e
    return None


def checkov_failures(manifest: str, tmp_path) -> tuple[set[tuple[str, str]], int]:
    (tmp_path / "rendered.yaml").write_text(manifest)
    proc = subprocess.run([str(TOOLS_BIN / "checkov"), "--config-file", str(CONFIG), "-d", str(tmp_path),
                           "--output", "json"], capture_output=True, text=True, timeout=600)
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = set()
    passed = 0
    for r in reports:
        passed += r["summary"]["passed"]
        for f in r["results"]["failed_checks"]:
            kind, _namespace, name = f["resource"].split(".", 2)
            failed.add((f["check_id"], f"{kind}/{name.split('.')[0]}"))
    return failed, passed


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    out = {}
    for scenario, values in SCENARIOS.items():
        values_file = tmp_path_factory.mktemp("values") / "values.yaml"
        values_file.write_text(json.dumps(values))
        manifest = helm("template", "agentforge", str(CHART), "--namespace", "agentforge",
                        "--values", str(values_file)).stdout
        out[scenario] = checkov_failures(manifest, tmp_path_factory.mktemp(scenario))
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
