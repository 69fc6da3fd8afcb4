"""Mutation testing of the chart's tests: `make mutate`.

Each mutant is a small edit of the chart that breaks one promise of the READMEs. The tiers of tests must notice it
(fail): the mutant is then killed. A mutant the tiers pass survived: no test holds the promise it breaks.

    ci/mutants.yaml       mutants the render and server tiers must kill
                          (`pytest -m "not e2e and not app and not real"`)
    ci/mutants-app.yaml   mutants only the app tier can kill: AgentForge's own code, run in the pods the chart renders
                          (`pytest -m app`; root, `make tools` and AGENTFORGE_SRC). Each first runs the render and
                          server tiers, which must pass it: one they kill belongs in ci/mutants.yaml, and is reported
                          as an error.

What runs is a snapshot of a commit (HEAD unless --rev): `git archive` into a temp folder, with the checkout's .tools/
and .venv/ linked into it. The mutants, the chart and the tests are the snapshot's, never the working tree's: an
uncommitted edit, or one made during the run, changes nothing. Each mutant is applied to a copy of the snapshot's
chart, and the snapshot's tests run against that copy (AGENTFORGE_CHART=<copy>, from the snapshot's folder, with
AGENTFORGE_SRC set to the absolute path of the application's source: AGENTFORGE_SRC, else ../shared/agentforge-src
beside the checkout).

Before any mutant, the unmutated snapshot must pass every tier the chosen mutants run (the baseline). A mutant's
search text must occur exactly once in its file, else the mutant is an error.

A kill is confirmed: the tests that failed on the mutant run again, alone, on the unmutated chart. The mutant is
killed only when they all pass there; a test that fails on the unmutated chart too makes the mutant `flaky` (a
failure of the test, not a notice of the mutation).

To save time, a mutant of ci/mutants.yaml first meets the render and server tiers' test files named after a word of
its id or its file (else a few cross-cutting ones; one process, `-x`): a confirmed failure there kills it in seconds.
Only a mutant that passes them runs the whole tiers.

    scripts/mutate.py                  every mutant of both files
    scripts/mutate.py --only ID[,ID]   some of them
    scripts/mutate.py --list           list them, with the tiers that must kill each
    scripts/mutate.py --check          only check that every mutant of both files applies (no tests run)
    scripts/mutate.py --rev REV        a snapshot of REV instead of HEAD

Each pytest run's output is kept in .tools/logs/mutate/<start time>/.

Exit status: 0 when every mutant was killed (--check, --list: every mutant applies); 1 when a mutant survived, was
flaky or was an error (--check: one does not apply), or a mutant file is missing or malformed; 2 when the baseline
fails, the snapshot cannot be made, or the command line is wrong (an unknown id for --only); 130 when interrupted
(Ctrl-C or SIGTERM: the running pytest session is stopped, servers included).
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
CHART_PATH = Path("charts") / "agentforge"
FIELDS = ("id", "promise", "file", "search", "replace")

# The render and server tiers, and the app tier: pytest's marker expression for each.
RENDER_SERVERS = "render+servers"
APP = "app"
MARKERS = {RENDER_SERVERS: "not e2e and not app and not real", APP: "app"}
# The mutant files, each with the tier that must kill its mutants.
MUTANT_FILES = {Path("ci") / "mutants.yaml": RENDER_SERVERS, Path("ci") / "mutants-app.yaml": APP}

COMMON = ["-p", "no:cacheprovider", "-q", "-rfE"]
# A tier's whole run, stopped at the first failure: one failure kills the mutant. The render and server tiers on two
# xdist workers (as `make test-render`); the app tier on two, a test module per worker (as `make test-app`: a module's
# fixtures start the pods it tests once). tests/conftest.py imports no module of a tier -m leaves out: their
# import-time code (the app stack renders every scenario) would count a failure of its own as a kill.
TIER_ARGS = {RENDER_SERVERS: ["-x", "-n", "2"], APP: ["-x", "-n", "2", "--dist", "loadfile"]}
# The focused first pass (render and server tiers), and the confirmation of a kill: one process.
ONE_PROCESS = ["-p", "no:xdist"]
# The test folders of the tiers, and the file name prefixes that mark a tier's files in the flat tests/ layout.
TIER_FOLDERS = {"render": RENDER_SERVERS, "servers": RENDER_SERVERS, "app": APP, "e2e": "e2e", "real": "real"}
TIER_PREFIXES = {"test_app_": APP, "test_e2e_": "e2e", "test_real_": "real"}
# The focus of a mutant no test file is named after: the cross-cutting files.
FOCUS_DEFAULT = ("test_secrets.py", "test_security.py", "test_values_contract.py", "test_chart.py")

# Tests that do not read the chart through AGENTFORGE_CHART, left out of every run (baseline included): they would
# kill every mutant, or none, for reasons of their own.
DESELECT = {
    # The Makefile's promises: `make lint` lints charts/agentforge and compares `git status` before and after; a
    # snapshot is no git checkout.
    "test_makefile.py": "tests the Makefile and the git checkout, not the chart",
}

# Whole-run limits: a mutant that makes a test hang (a server waiting forever) is an error, not a kill.
TIMEOUT = {RENDER_SERVERS: 1200, APP: 3600}
# `FAILED <node id> - <message>`; a parametrized id may hold spaces inside its brackets.
SUMMARY_LINE = re.compile(r"^(FAILED|ERROR) (\S+?(?:\[.*?\])?)(?: - .*)?$")


@dataclass
class Mutant:
    id: str
    promise: str
    file: str
    search: str
    replace: str
    tier: str = RENDER_SERVERS
    source: str = ""


@dataclass
class Result:
    outcome: str  # killed, SURVIVED, flaky, error
    seconds: float
    detail: str = ""


@dataclass
class Run:
    status: int | None  # pytest's exit status, None on timeout
    output: str
    failures: list[str]  # node ids of the FAILED/ERROR lines of the short summary


# ------------------------------------------------------------------------------------------------ the snapshot

def make_snapshot(rev: str, folder: Path) -> str:
    """`git archive REV` extracted into folder, with the checkout's .tools/ and .venv/ linked into it; REV's commit."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True,
                            text=True)
    if commit.returncode != 0:
        raise SystemExit(f"mutate: {rev} is no commit of {ROOT}: {commit.stderr.strip()}")
    folder.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", "--format=tar", commit.stdout.strip()], cwd=ROOT,
                               stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(folder)], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
        raise SystemExit(f"mutate: git archive {rev} failed")
    for name in (".tools", ".venv"):
        if not (ROOT / name).is_dir():
            raise SystemExit(f"mutate: {ROOT / name} is missing: run `make tools`")
        (folder / name).symlink_to(ROOT / name)
    return commit.stdout.strip()


def app_source() -> Path:
    """The application's source as tests/appsrc.py finds it from the checkout (not from the snapshot's folder)."""
    return Path(os.environ.get("AGENTFORGE_SRC") or ROOT.parent / "shared" / "agentforge-src").resolve()


def load_mutants(snapshot: Path) -> tuple[list[Mutant], list[str]]:
    """The mutants of both files of the snapshot, and what is wrong with the files (a missing file, a malformed
    entry, an id used twice)."""
    mutants, problems, seen = [], [], {}
    for relative, tier in MUTANT_FILES.items():
        path = snapshot / relative
        if not path.is_file():
            problems.append(f"{relative}: not in the snapshot (committed?)")
            continue
        entries = yaml.safe_load(path.read_text())
        if not isinstance(entries, list):
            problems.append(f"{relative}: expected a list of mutants")
            continue
        for number, entry in enumerate(entries, 1):
            if not isinstance(entry, dict) or set(entry) != set(FIELDS):
                problems.append(f"{relative}: mutant {number} must have exactly the fields {', '.join(FIELDS)}")
                continue
            if not all(isinstance(entry[field], str) for field in FIELDS) or not entry["search"]:
                problems.append(f"{relative}: mutant {number} ({entry['id']}): every field a string, search non-empty")
                continue
            if entry["id"] in seen:
                problems.append(f"{relative}: mutant id {entry['id']} is also in {seen[entry['id']]}")
                continue
            seen[entry["id"]] = relative
            mutants.append(Mutant(**entry, tier=tier, source=str(relative)))
    return mutants, problems


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


# ---------------------------------------------------------------------------------------------- the test files

def tier_of(test_file: Path, tests: Path) -> str:
    """The tier of a test file: its tier folder (tests/render/ ...), else in the flat layout its name's prefix; the
    other flat files hold render and server tests."""
    parts = test_file.relative_to(tests).parts
    if len(parts) > 1 and parts[0] in TIER_FOLDERS:
        return TIER_FOLDERS[parts[0]]
    return next((tier for prefix, tier in TIER_PREFIXES.items() if test_file.name.startswith(prefix)), RENDER_SERVERS)


def test_files(snapshot: Path) -> dict[str, str]:
    """{path relative to the snapshot: tier} of every test file of the snapshot."""
    tests = snapshot / "tests"
    return {str(path.relative_to(snapshot)): tier_of(path, tests) for path in sorted(tests.glob("**/test_*.py"))}


def deselected(snapshot: Path) -> list[str]:
    return [path for path in test_files(snapshot) if Path(path).name in DESELECT]


def focus(mutant: Mutant, snapshot: Path) -> list[str]:
    """The render and server tiers' test files named after a word of the mutant's id or file (test_data_collector.py:
    data-collector), else FOCUS_DEFAULT's."""
    words = f"{mutant.id} {mutant.file}".replace("/", " ").replace(".", " ")
    files = [path for path, tier in test_files(snapshot).items() if tier == RENDER_SERVERS]
    named = [path for path in files
             if re.search(rf"(^|[ _-]){re.escape(Path(path).stem.removeprefix('test_').replace('_', '-'))}s?($|[ _-])",
                          words)]
    return named or [path for path in files if Path(path).name in FOCUS_DEFAULT]


# ----------------------------------------------------------------------------------------------- running tests

def stop(proc: subprocess.Popen) -> None:
    """Stops pytest's session: SIGTERM, then SIGKILL to what is left of it (a server pytest started, then died)."""
    def kill(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    kill(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    kill(signal.SIGKILL)
    proc.wait()


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


class Runner:
    def __init__(self, snapshot: Path, logs: Path) -> None:
        self.snapshot = snapshot
        self.chart = snapshot / CHART_PATH
        self.logs = logs
        self.deselect = [arg for path in deselected(snapshot) for arg in ("--deselect", path)]
        self.count = 0

    def pytest(self, chart: Path, tier: str, args: list[str], label: str) -> Run:
        """pytest of the snapshot, with the marker of the tier, against the chart."""
        cmd = [str(self.snapshot / ".venv" / "bin" / "python"), "-m", "pytest", "-m", MARKERS[tier], *COMMON,
               *args, *self.deselect]
        env = {**os.environ, "AGENTFORGE_CHART": str(chart), "AGENTFORGE_SRC": str(app_source())}
        self.count += 1
        log = self.logs / f"{self.count:04d}-{label}.log"
        with log.open("w") as out:
            out.write("$ " + " ".join(cmd) + f"\n# AGENTFORGE_CHART={chart}\n")
            out.flush()
            # A session of its own, so that a timeout or an interruption stops the xdist workers and the servers too.
            proc = subprocess.Popen(cmd, cwd=self.snapshot, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                status = proc.wait(timeout=TIMEOUT[tier])
            except subprocess.TimeoutExpired:
                stop(proc)
                status = None
            except BaseException:  # Ctrl-C, SIGTERM: the session would outlive this process
                stop(proc)
                raise
        output = log.read_text(errors="replace")
        failures = []
        for line in output.splitlines():
            match = SUMMARY_LINE.match(line)
            if match and match.group(2) not in failures:
                failures.append(match.group(2))
        return Run(status, output, failures)

    def tier(self, chart: Path, tier: str, label: str) -> Run:
        return self.pytest(chart, tier, TIER_ARGS[tier], label)

    def focused(self, chart: Path, files: list[str], label: str) -> Run:
        return self.pytest(chart, RENDER_SERVERS, ["-x", *ONE_PROCESS, *files], label)

    def judge(self, run: Run, tier: str, label: str) -> tuple[str, str]:
        """(outcome, detail) of a mutant's run. With -x, pytest exits 1 at the first failure, or 2 under xdist (the
        session is interrupted); either must name a failing test to count. A module that fails to import (an ERROR
        without `::`) is an error. A failure counts as a kill only when the failing tests pass, alone, on the
        unmutated chart."""
        if run.status is None:
            return "error", f"timed out after {TIMEOUT[tier]} s"
        if run.status == 0:
            return "SURVIVED", ""
        tests = [failure for failure in run.failures if "::" in failure]
        if run.status not in (1, 2) or not tests or len(tests) != len(run.failures):
            if run.failures:
                return "error", f"pytest exited {run.status}, at collection: {run.failures[0]}"
            return "error", f"pytest exited {run.status}: {' | '.join(run.output.strip().splitlines()[-3:])}"
        again = self.pytest(self.chart, tier, [*ONE_PROCESS, *tests], f"{label}-unmutated")
        if again.status == 0:
            return "killed", f"{tests[0]}" + (f" (+{len(tests) - 1})" if len(tests) > 1 else "")
        if again.status is None:
            return "error", f"confirming {tests[0]}: timed out after {TIMEOUT[tier]} s on the unmutated chart"
        also = [failure for failure in again.failures if failure in tests] or again.failures
        if again.status == 1 and also:
            return "flaky", f"{also[0]} fails on the unmutated chart too"
        return "error", f"confirming {tests[0]}: pytest exited {again.status} on the unmutated chart"


def run_mutant(runner: Runner, mutant: Mutant, chart: Path) -> tuple[str, str]:
    label = mutant.id
    if mutant.tier == RENDER_SERVERS:
        outcome, detail = runner.judge(runner.focused(chart, focus(mutant, runner.snapshot), f"{label}-focus"),
                                       RENDER_SERVERS, f"{label}-focus")
        if outcome == "killed":
            return outcome, detail
        return runner.judge(runner.tier(chart, RENDER_SERVERS, label), RENDER_SERVERS, label)
    # An app mutant: the render and server tiers must pass it, then the app tier must kill it.
    outcome, detail = runner.judge(runner.tier(chart, RENDER_SERVERS, f"{label}-render"), RENDER_SERVERS,
                                   f"{label}-render")
    if outcome == "killed":
        return "error", f"the render and server tiers kill it ({detail}): it belongs in ci/mutants.yaml"
    if outcome != "SURVIVED":
        return outcome, f"render and server tiers: {detail}"
    outcome, detail = runner.judge(runner.tier(chart, APP, f"{label}-app"), APP, f"{label}-app")
    return outcome, (f"app tier: {detail}" if detail else "the render, server and app tiers pass it")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--only", metavar="ID[,ID]", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true", help="check that every mutant applies, run no test")
    parser.add_argument("--rev", default="HEAD", help="the commit to snapshot (default HEAD)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, interrupted)  # as Ctrl-C: stop the running pytest, remove the temp folder

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agentforge-mutate-") as tmp:
        tmp = Path(tmp)
        snapshot = tmp / "snapshot"
        try:
            commit = make_snapshot(args.rev, snapshot)
        except (SystemExit, subprocess.CalledProcessError) as failed:
            print(failed if isinstance(failed, SystemExit) else f"mutate: {failed}", file=sys.stderr)
            return 2
        mutants, problems = load_mutants(snapshot)
        for problem in problems:
            print(f"error: {problem}")
        if args.only:
            wanted = [i for i in args.only.split(",") if i]
            unknown = sorted(set(wanted) - {m.id for m in mutants})
            if unknown:
                parser.error(f"unknown mutant(s) in {commit[:12]}: {', '.join(unknown)} (see --list)")
            mutants = [m for m in mutants if m.id in wanted]
        if not mutants:
            print("no mutants")
            return 1
        width = max(len(m.id) for m in mutants)
        if args.list:
            for m in mutants:
                print(f"{m.id:<{width}}  {m.tier:<14}  {m.file:<40}  {m.promise}")
            print(f"{len(mutants)} mutants of {commit[:12]}")
            return 1 if problems else 0

        results: dict[str, Result] = {}
        chart = snapshot / CHART_PATH
        for m in mutants:
            copy = tmp / "mutants" / m.id / "agentforge"
            shutil.copytree(chart, copy, symlinks=True)
            problem = apply(m, copy)
            if problem:
                results[m.id] = Result("error", 0.0, problem)
        if args.check:
            for m in mutants:
                result = results.get(m.id)
                print(f"{m.id:<{width}}  {m.source:<20}  {'error: ' + result.detail if result else 'applies'}")
            print(f"{len(mutants)} mutants of {commit[:12]}: {len(mutants) - len(results)} apply")
            return 1 if results or problems else 0

        logs = ROOT / ".tools" / "logs" / "mutate" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        logs.mkdir(parents=True, exist_ok=True)
        runner = Runner(snapshot, logs)
        tiers = [RENDER_SERVERS] + ([APP] if any(m.tier == APP for m in mutants) else [])
        print(f"snapshot of {commit[:12]} ({args.rev}); AGENTFORGE_SRC={app_source()}", flush=True)
        print(f"{len(mutants)} mutants, {len(mutants) - len(results)} applicable; tiers: "
              + "; ".join(f"pytest -m '{MARKERS[t]}' {' '.join(TIER_ARGS[t])}" for t in tiers), flush=True)
        print(f"left out of every run: {', '.join(runner.deselect[1::2]) or 'nothing'}; pytest's output: {logs}",
              flush=True)
        for tier in tiers:
            t0 = time.monotonic()
            run = runner.tier(chart, tier, f"baseline-{tier}")
            if run.status != 0:
                detail = (run.failures or [" | ".join(run.output.strip().splitlines()[-3:])])[0]
                print(f"baseline FAILED ({tier}, {time.monotonic() - t0:.0f} s): the unmutated snapshot does not "
                      f"pass: {detail}")
                return 2
            print(f"baseline passed ({tier}, {time.monotonic() - t0:.0f} s)", flush=True)

        for m in mutants:
            if m.id in results:
                continue
            copy = tmp / "mutants" / m.id / "agentforge"
            t0 = time.monotonic()
            outcome, detail = run_mutant(runner, m, copy)
            results[m.id] = r = Result(outcome, time.monotonic() - t0, detail)
            print(f"{m.id:<{width}}  {r.outcome:<8}  {r.seconds:6.1f} s  {r.detail}", flush=True)
            shutil.rmtree(copy.parent)
        for m in mutants:
            r = results[m.id]
            if r.outcome == "error" and r.seconds == 0.0:
                print(f"{m.id:<{width}}  {r.outcome:<8}  {r.seconds:6.1f} s  {r.detail}")

    outcomes = ("killed", "SURVIVED", "flaky", "error")
    counts = {o: sum(r.outcome == o for r in results.values()) for o in outcomes}
    print(f"\n{len(results)} mutants of {commit[:12]}: " + ", ".join(f"{counts[o]} {o.lower()}" for o in outcomes)
          + f" in {time.monotonic() - started:.0f} s")
    for m in mutants:
        r = results[m.id]
        if r.outcome != "killed":
            print(f"  {r.outcome}: {m.id} ({m.file}) — {m.promise}")
    return 0 if counts["killed"] == len(results) and not problems else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nmutate: interrupted", file=sys.stderr)
        sys.exit(130)
