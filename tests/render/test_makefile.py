"""The commands a person types: `make help` lists every target, `make docs` regenerates, `make lint` writes nothing."""

import re
import subprocess

from harness.render import ROOT

MAKEFILE = (ROOT / "Makefile").read_text()


def make(*args: str) -> str:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


def targets() -> set[str]:
    return set(re.search(r"^\.PHONY:(.*)$", MAKEFILE, re.M).group(1).split())


def test_every_target_is_phony_and_every_phony_a_target():
    defined = set(re.findall(r"^([a-z0-9-]+):", MAKEFILE, re.M))
    assert defined == targets()


def test_help_lists_every_target():
    listed = {line.split()[0] for line in make("help").splitlines() if line.strip()}
    assert listed == targets()


def test_docs_regenerates_and_docs_check_only_checks():
    assert make("-n", "docs").split() == [".venv/bin/python", "scripts/gen_docs.py"]
    assert make("-n", "docs-check").split() == [".venv/bin/python", "scripts/gen_docs.py", "--check"]


def test_lint_writes_nothing():
    """`make lint` checks: it runs no generator and no fixer, and leaves every tracked file as it was."""
    assert make("-n", "lint").splitlines()[-1] == "bash ci/lint.sh"  # after `tools`
    recipe = (ROOT / "ci" / "lint.sh").read_text()
    assert "gen_docs.py" not in recipe.replace("gen_docs.py --check", "") and "--fix" not in recipe
    assert "ct lint" in recipe
    before = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    make("lint")
    after = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    assert after == before
