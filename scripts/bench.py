#!/usr/bin/env python3
"""Benchmark: how long rendering takes, one render and the whole test tiers. Prints figures; asserts nothing.

- `helm template` of this chart beside a `helm create` scaffold (the helm CLI, a process per render);
- one render through the render server the tests use (scripts/render-server), without and with kubeconform;
- the render tier (`make test-render`'s selection), here and, with --before REF, at another commit, checked out into
  a temporary git worktree that borrows this checkout's .tools and .venv;
- the full `make test` with the toolchain already installed;
- with --cold-demo (or --cold-tools, for `make tools`): a cold `make demo` in a throwaway clone of HEAD, with empty
  tool folders and an empty Go build cache. Only the download caches are reused (Go's module cache GOMODCACHE, and
  pip's and npm's caches in HOME): nothing is downloaded again, everything is compiled and installed. Prints each
  build step's time, each phase and the total, and the CPU time of it all. --jobs N sets how many build steps run
  at once (STEPS_JOBS, default 2).

Usage: make bench, or .venv/bin/python scripts/bench.py [--runs N] [--before REF] [--no-full]
       .venv/bin/python scripts/bench.py --cold-demo|--cold-tools [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELM = ROOT / ".tools" / "bin" / "helm"
CHART = ROOT / "charts" / "agentforge"
RENDER_TIER = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "worksteal", "-m",
               "not e2e and not servers and not app and not real"]


def timed(cmd: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def template_times(chart: Path, runs: int) -> list[float]:
    cmd = [str(HELM), "template", "bench", str(chart), "--kube-version", "1.37.0"]
    timed(cmd)  # warm the page cache
    return [timed(cmd) for _ in range(runs)]


def server_times(values: dict, runs: int, validate: tuple[str, ...]) -> list[float]:
    sys.path.insert(0, str(ROOT / "tests"))  # the harness package
    from harness.render import RENDERER

    RENDERER.render(json.dumps(values), validate=validate)  # start the server, compile the schemas
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        RENDERER.render(json.dumps(values), validate=validate, objects=True)
        out.append(time.perf_counter() - start)
    return out


def describe(label: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (f"{label:<52} median {statistics.median(ms):7.1f} ms   min {min(ms):7.1f}   max {max(ms):7.1f}"
            f"   (n={len(ms)})")


def cpu_seconds() -> float:
    """CPU time of every ended child process and of theirs (pytest's workers, render servers, helm, checkov...)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tier(checkout: Path) -> str:
    """The tier's wall time and test count, and the CPU time of all its processes: divided by the cores, the least
    wall time any scheduling could reach."""
    start, cpu = time.perf_counter(), cpu_seconds()
    proc = subprocess.run([sys.executable, *RENDER_TIER], cwd=checkout, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    summary = (re.findall(r"^=*\s*(\d+ passed.*?) in [\d.]+s", proc.stdout, re.M) or ["no summary"])[-1]
    cores = os.cpu_count() or 1
    return (f"{wall:6.1f} s wall, {summary.strip()}; {cpu:.0f} CPU-seconds, so at least {cpu / cores:.1f} s on "
            f"{cores} cores" + ("" if proc.returncode == 0 else f" (exit {proc.returncode})"))


def tier_before(ref: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), ref], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for shared in (".tools", ".venv"):
                (worktree / shared).symlink_to(ROOT / shared)
            return tier(worktree)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=True)


def cold(target: str, jobs: int) -> None:
    """Times `make TARGET` (demo or tools) in a fresh clone whose .tools/ is empty, with an empty Go build cache (see
    the docstring)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    path = f"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{Path(go).parent}"
    modcache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory(prefix="cold-demo-") as tmp:
        copy = Path(tmp) / "agentforge"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(copy)], check=True)
        # The app's source where this checkout finds it (the copy's ../shared is not there).
        src = os.environ.get("AGENTFORGE_SRC", str(ROOT.parent / "shared" / "agentforge-src"))
        env = {"HOME": os.environ["HOME"], "PATH": path, "GOMODCACHE": modcache, "GOCACHE": f"{tmp}/go-build",
               "STEPS_JOBS": str(jobs), "AGENTFORGE_SRC": src}
        print(f"cold make {target}: a clone of {head.strip()}, empty .tools/ and Go build cache, the Go module "
              f"download cache ({modcache}) reused, STEPS_JOBS={jobs}", flush=True)
        start = time.perf_counter()
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen(["make", target], cwd=copy, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            if line.startswith(("==>", "    ", "!!!")):
                print(f"  [{time.perf_counter() - start:4.0f} s] {line.rstrip()}", flush=True)
        status = proc.wait()
        total = time.perf_counter() - start
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("ru_utime", "ru_stime"))
        durations = copy / ".tools" / "logs" / "durations.tsv"
        steps = durations.read_text().splitlines() if durations.exists() else []
        if target == "demo":
            subprocess.run(["make", "demo-down"], cwd=copy, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    outcome = "ok" if status == 0 else f"FAILED (exit {status})"
    print(f"cold make {target}: {outcome} in {total:.0f} s ({total / 60:.1f} min) on {os.cpu_count()} cores")
    print(f"  CPU time of every process it ran: {cpu:.0f} s, so at least {cpu / os.cpu_count():.0f} s "
          f"({cpu / os.cpu_count() / 60:.1f} min) of wall time on {os.cpu_count()} cores however the steps are ordered")
    for row in steps:
        _, name, seconds = row.split("\t")
        print(f"  step {name:<14} {int(seconds):5d} s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before", help="a commit to time the render tier of too, for comparison")
    parser.add_argument("--no-full", action="store_true", help="skip timing the full `make test`")
    parser.add_argument("--cold-demo", action="store_true", help="time only a cold `make demo` (builds everything)")
    parser.add_argument("--cold-tools", action="store_true", help="time only a cold `make tools` (builds everything)")
    parser.add_argument("--jobs", type=int, default=2, help="with --cold-*: build steps run at once")
    args = parser.parse_args()
    if args.cold_demo or args.cold_tools:
        cold("demo" if args.cold_demo else "tools", args.jobs)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(HELM), "create", "scaffold"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        scaffold = template_times(Path(tmp) / "scaffold", args.runs)
    ours = template_times(CHART, args.runs)
    objects = subprocess.run([str(HELM), "template", "bench", str(CHART)], check=True, capture_output=True,
                             text=True).stdout.count("\nkind: ")
    print(f"helm: {subprocess.run([str(HELM), 'version', '--short'], capture_output=True, text=True).stdout.strip()}")
    print(describe("helm template (scaffold)", scaffold))
    print(describe(f"helm template (agentforge, {objects} objects)", ours))
    print(f"ratio agentforge/scaffold: {statistics.median(ours) / statistics.median(scaffold):.2f}x")
    print(describe("render server (agentforge)", server_times({}, args.runs, ())))
    print(describe("render server + kubeconform, 2 versions (agentforge)",
                   server_times({}, args.runs, ("1.30.0", "1.37.0"))))
    if args.before:
        print(f"render tier before ({args.before}): {tier_before(args.before)}")
    print(f"render tier now: {tier(ROOT)}")
    if not args.no_full:
        print(f"make test (toolchain installed): {timed(['make', 'test'], cwd=ROOT):.1f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
