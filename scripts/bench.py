#!/usr/bin/env python3
"""Benchmark: `helm template` time of this chart beside a `helm create` scaffold, and the render tier's wall time.

Prints figures; asserts nothing. Usage: make bench (or .venv/bin/python scripts/bench.py [--runs N] [--no-tier]).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELM = ROOT / ".tools" / "bin" / "helm"
CHART = ROOT / "charts" / "agentforge"


def timed(cmd: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def template_times(chart: Path, runs: int) -> list[float]:
    cmd = [str(HELM), "template", "bench", str(chart), "--kube-version", "1.37.0"]
    timed(cmd)  # warm the page cache
    return [timed(cmd) for _ in range(runs)]


def describe(label: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (f"{label:<28} median {statistics.median(ms):7.1f} ms   min {min(ms):7.1f}   max {max(ms):7.1f}"
            f"   (n={len(ms)})")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-tier", action="store_true", help="skip timing the render test tier")
    args = parser.parse_args()

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
    if not args.no_tier:
        tier = timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                      "-m", "not e2e and not servers"], cwd=ROOT)
        print(f"render test tier wall time: {tier:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
