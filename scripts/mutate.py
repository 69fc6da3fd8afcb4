"""Mutation testing of the chart's tests: `make mutate`.

Each mutant of ci/mutants.yaml is a small edit that breaks one promise of the READMEs. For each, this script copies
the chart into a temp folder (never touching charts/agentforge), applies the edit, and runs the render and server
tiers against the copy (AGENTFORGE_CHART=<copy>, `pytest -m "not e2e and not app and not real" -x`). The tiers must
fail: the mutant is then killed. A mutant the tiers pass survived: no test holds the promise it breaks.

Before any mutant, the unmutated copy must pass (the baseline), and every mutant's search text must occur exactly
once in its file (else that mutant is an error, not a kill). The chart is copied once, at the start, so edits made
to the working tree during the run change nothing.

To save time, each mutant first meets the tiers' tests of its component alone (the test files named after a word of
its id or its file, else a few cross-cutting ones; one process, `-x`): a failure there is a failure of the tiers, and
kills it in seconds. Only a mutant that passes them runs the whole tiers.

    scripts/mutate.py                  every mutant
    scripts/mutate.py --only ID[,ID]   some of them
    scripts/mutate.py --list           list them
    scripts/mutate.py --check          only check that every mutant applies (no tests run)

Exit status: 0 when every mutant was killed, 1 when one survived or was an error, 2 when the baseline fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "agentforge"
MUTANTS = ROOT / "ci" / "mutants.yaml"
PYTHON = ROOT / ".venv" / "bin" / "python"
FIELDS = ("id", "promise", "file", "search", "replace")

# The render and server tiers, stopped at the first failure: one failure kills the mutant. Two xdist workers: the
# full tier takes about 65 s with them and about twice that without, on 2 cores.
# The modules of the other tiers are not even imported (tests/conftest.py leaves out the files of a tier -m deselects):
# their import-time code (appstack renders every scenario) would count a failure of its own as a kill.
PYTEST_ARGS = ["-m", "not e2e and not app and not real", "-x", "-p", "no:cacheprovider", "-q", "-rfE", "-n", "2"]

# The focused first pass: the same tiers, in one process, over the test files named after the mutant.
FOCUS_ARGS = ["-m", "not e2e and not app and not real", "-x", "-p", "no:cacheprovider", "-q", "-rfE", "-p", "no:xdist"]
# Test files of other tiers, never focused on.
OTHER_TIERS = ("test_app_", "test_e2e_")
# The focus of a mutant no test file is named after: the cross-cutting files (about 20 s).
FOCUS_DEFAULT = ["test_secrets.py", "test_security.py", "test_values_contract.py", "test_chart.py"]

# Tests that do not read the chart through AGENTFORGE_CHART, left out of every run (baseline included): they would
# kill every mutant, or none, for reasons of their own.
DESELECT = {
    # The Makefile's promises: `make lint` lints charts/agentforge and compares `git status` before and after, which
    # other edits to the working tree during the run would change.
    "tests/test_makefile.py": "tests the Makefile and the working tree, not the chart",
}

# A whole-run limit: a mutant that makes a test hang (a server waiting forever) is an error, not a kill.
TIMEOUT = 1200
# `FAILED <node id> - <message>`; a parametrized id may hold spaces inside its brackets.
SUMMARY_LINE = re.compile(r"^(FAILED|ERROR) (\S+?(?:\[.*?\])?)(?: - .*)?$")


@dataclass
class Mutant:
    id: str
    promise: str
    file: str
    search: str
    replace: str


@dataclass
class Result:
    outcome: str  # killed, SURVIVED, error
    seconds: float
    detail: str = ""


def load_mutants(path: Path = MUTANTS) -> list[Mutant]:
    entries = yaml.safe_load(path.read_text())
    if not isinstance(entries, list):
        raise SystemExit(f"{path}: expected a list of mutants")
    mutants, seen = [], set()
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or set(entry) != set(FIELDS):
            raise SystemExit(f"{path}: mutant {number} must have exactly the fields {', '.join(FIELDS)}: {entry!r}")
        if not all(isinstance(entry[field], str) for field in FIELDS) or not entry["search"]:
            raise SystemExit(f"{path}: mutant {number} ({entry['id']}): every field is a string, search non-empty")
        if entry["id"] in seen:
            raise SystemExit(f"{path}: mutant id {entry['id']} appears twice")
        seen.add(entry["id"])
        mutants.append(Mutant(**entry))
    return mutants


def apply(mutant: Mutant, chart: Path) -> str | None:
    """Applies the mutant to the chart copy; returns why it cannot be applied, or None."""
    path = chart / mutant.file
    if not path.resolve().is_relative_to(chart.resolve()):
        return f"{mutant.file} is outside the chart"
    if not path.is_file():
        return f"{mutant.file}: no such file in the chart"
    text = path.read_text()
    count = text.count(mutant.search)
    if count != 1:
        return f"search text found {count} times in {mutant.file} (must be exactly once)"
    mutated = text.replace(mutant.search, mutant.replace)
    if mutated == text:
        return "the replacement changes nothing"
    # A mutant that breaks the file's syntax tests the parser, not the promise.
    try:
        if path.suffix == ".json":
            json.loads(mutated)
        elif path.suffix in (".yaml", ".yml") and "templates" not in path.relative_to(chart).parts:
            yaml.safe_load(mutated)
    except (ValueError, yaml.YAMLError) as err:
        return f"the mutated {mutant.file} no longer parses: {str(err).splitlines()[0]}"
    path.write_text(mutated)
    return None


def focus(mutant: Mutant) -> list[str]:
    """The tier's test files named after a word of the mutant's id or file (test_data_collector.py: data-collector),
    else FOCUS_DEFAULT."""
    words = f"{mutant.id} {mutant.file}".replace("/", " ").replace(".", " ")
    files = [f"tests/{path.name}" for path in sorted((ROOT / "tests").glob("test_*.py"))
             if not path.name.startswith(OTHER_TIERS)
             and re.search(rf"(^|[ _-]){re.escape(path.stem.removeprefix('test_').replace('_', '-'))}s?($|[ _-])",
                           words)]
    return files or [f"tests/{name}" for name in FOCUS_DEFAULT]


def run_tiers(chart: Path, workdir: Path, tests: list[str] | None = None) -> tuple[int | None, str]:
    """Runs the render and server tiers (or only the test files given) against the chart; (pytest's exit status or
    None on timeout, output)."""
    cmd = [str(PYTHON), "-m", "pytest", *(FOCUS_ARGS if tests else PYTEST_ARGS), *(tests or [])]
    for test in DESELECT:
        cmd += ["--deselect", test]
    env = {**os.environ, "AGENTFORGE_CHART": str(chart)}
    log = workdir / ("focus.log" if tests else "pytest.log")
    with log.open("w") as out:
        # A session of its own, so a timeout stops the xdist workers and the servers too.
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            status = None
    return status, log.read_text(errors="replace")


def first_failure(output: str) -> str | None:
    """The first FAILED/ERROR test id of pytest's short summary (-rfE)."""
    for line in output.splitlines():
        match = SUMMARY_LINE.match(line)
        if match:
            return f"{match.group(1)} {match.group(2)}"
    return None


def judge(status: int | None, output: str) -> tuple[str, str]:
    """(outcome, detail) of a mutant's run. With -x, pytest exits 1 at the first failure, or 2 under xdist
    (the session is interrupted); either must name a failing test to count as a kill. A module that fails to import
    (an ERROR without `::`) is an error: a test file being edited meanwhile is likelier than a mutant at fault."""
    if status is None:
        return "error", f"timed out after {TIMEOUT} s"
    if status == 0:
        return "SURVIVED", ""
    failure = first_failure(output)
    if status in (1, 2) and failure and "::" in failure:
        return "killed", failure
    if failure:
        return "error", f"pytest exited {status}, at collection: {failure}"
    tail = " | ".join(line for line in output.strip().splitlines()[-3:])
    return "error", f"pytest exited {status}: {tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", metavar="ID[,ID]", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true", help="check that every mutant applies, run no test")
    args = parser.parse_args()

    mutants = load_mutants()
    if args.only:
        wanted = [i for i in args.only.split(",") if i]
        unknown = sorted(set(wanted) - {m.id for m in mutants})
        if unknown:
            parser.error(f"unknown mutant(s): {', '.join(unknown)} (see --list)")
        mutants = [m for m in mutants if m.id in wanted]
    if args.list:
        width = max(len(m.id) for m in mutants)
        for m in mutants:
            print(f"{m.id:<{width}}  {m.file:<44}  {m.promise}")
        print(f"{len(mutants)} mutants")
        return 0

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agentforge-mutate-") as tmp:
        tmp = Path(tmp)
        # One snapshot of the chart: every copy below is taken from it, so edits to the working tree during the
        # run change nothing.
        snapshot = tmp / "snapshot" / CHART.name
        shutil.copytree(CHART, snapshot, symlinks=True)

        results: dict[str, Result] = {}
        runnable = []
        for m in mutants:
            copy = tmp / m.id / CHART.name
            shutil.copytree(snapshot, copy, symlinks=True)
            problem = apply(m, copy)
            if problem:
                results[m.id] = Result("error", 0.0, problem)
            else:
                runnable.append((m, copy))
        if args.check:
            for m in mutants:
                result = results.get(m.id)
                print(f"{m.id:<44} {'error: ' + result.detail if result else 'applies'}")
            return 1 if results else 0

        print(f"{len(mutants)} mutants, {len(runnable)} applicable; pytest {' '.join(PYTEST_ARGS)}", flush=True)
        print(f"left out of every run: {', '.join(DESELECT)}", flush=True)
        t0 = time.monotonic()
        status, output = run_tiers(snapshot, snapshot.parent)
        if status != 0:
            detail = first_failure(output) or " | ".join(output.strip().splitlines()[-3:])
            print(f"baseline FAILED ({time.monotonic() - t0:.0f} s): the unmutated chart does not pass: {detail}")
            print("(the chart was copied at the start: an edit in progress in charts/agentforge shows up here)")
            return 2
        print(f"baseline passed ({time.monotonic() - t0:.0f} s)", flush=True)

        width = max(len(m.id) for m in mutants)
        for m in mutants:
            if m.id in results:
                continue
            copy = tmp / m.id / CHART.name
            t0 = time.monotonic()
            status, output = run_tiers(copy, copy.parent, focus(m))
            outcome, detail = judge(status, output)
            if outcome != "killed":
                status, output = run_tiers(copy, copy.parent)
                outcome, detail = judge(status, output)
            results[m.id] = Result(outcome, time.monotonic() - t0, detail)
            r = results[m.id]
            print(f"{m.id:<{width}}  {r.outcome:<8}  {r.seconds:6.1f} s  {r.detail}", flush=True)
            shutil.rmtree(copy.parent)
        for m in mutants:
            r = results[m.id]
            if r.outcome == "error" and r.seconds == 0.0:
                print(f"{m.id:<{width}}  {r.outcome:<8}  {r.seconds:6.1f} s  {r.detail}")

    counts = {o: sum(r.outcome == o for r in results.values()) for o in ("killed", "SURVIVED", "error")}
    print(f"\n{len(results)} mutants: {counts['killed']} killed, {counts['SURVIVED']} survived, "
          f"{counts['error']} errors in {time.monotonic() - started:.0f} s")
    for m in mutants:
        r = results[m.id]
        if r.outcome != "killed":
            print(f"  {r.outcome}: {m.id} ({m.file}) — {m.promise}")
    return 0 if counts["killed"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
