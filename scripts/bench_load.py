#!/usr/bin/env python3
"""Load benchmark of the chart on the real node (`make bench-load`): bounded load on the backend's Service, from the
node, and only to this cluster's addresses. It starts the node and loads the images if needed, installs the chart in
namespace af-bench with the node's values, and for a fixed time sends requests at a fixed rate (half GET
/api/v1/health, half an authenticated GET /api/v1/conversations that reads PostgreSQL) while a few authenticated chat
WebSockets stay open. It prints latency percentiles, errors, and each container's CPU and memory, idle and under the
load, beside its requests and limits; the release is uninstalled afterwards (--keep leaves it).

Usage: bench_load.py [--rate 20] [--seconds 60] [--websockets 5] [--keep]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness import realnode
from harness.apphttp import open_websocket
from harness.cluster import RESTRICTED

NAMESPACE = "af-bench"
RELEASE = "agentforge"


def call(base: str, path: str, token: str | None = None, body: dict | None = None) -> tuple[int, float]:
    headers = {"Content-Type": "application/json", "X-Forwarded-For": "198.51.100.7"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers=headers, method="POST" if data else "GET")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except OSError:
        status = 0
    return status, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def print_footprint(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"  {'container':<32} {'memory MiB':>10} {'request':>8} {'limit':>7}   {'CPU m':>6} {'request':>8} "
          f"{'limit':>6}")
    for row in sorted(rows, key=lambda r: r["pod"]):
        print(f"  {row['pod'][:22] + '/' + row['container'][:9]:<32} {row['memory_mib']:>10} "
              f"{row['requests'].get('memory', '-'):>8} {row['limits'].get('memory', '-'):>7}   "
              f"{row['cpu_millicores']:>6} {row['requests'].get('cpu', '-'):>8} {row['limits'].get('cpu', '-'):>6}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20, help="requests per second (default 20)")
    parser.add_argument("--seconds", type=int, default=60, help="length of the load (default 60)")
    parser.add_argument("--websockets", type=int, default=5, help="chat WebSockets held open (default 5)")
    parser.add_argument("--keep", action="store_true", help="leave the release installed")
    args = parser.parse_args()
    if not (0 < args.rate <= 200 and 0 < args.seconds <= 600 and 0 <= args.websockets <= 50):
        parser.error("the load is bounded: rate 1-200/s, 1-600 s, 0-50 WebSockets")

    cli = realnode.RealCli(realnode.node_kubeconfig())
    if cli.helm("status", RELEASE, "--namespace", NAMESPACE, check=False).returncode != 0:
        cli.create_namespace(NAMESPACE, RESTRICTED)
        took = cli.install(RELEASE, NAMESPACE, *realnode.chart_values(), timeout="10m")
        print(f"installed {RELEASE} in {NAMESPACE} in {took:.0f} s")
    cli.wait_ready(NAMESPACE)
    try:
        api = realnode.Api(cli, NAMESPACE, RELEASE)
        base = api.base
        users = [api.new_chat("bench") for _ in range(max(1, args.websockets))]
        token = users[0][0]
        idle = realnode.footprint(cli, NAMESPACE, seconds=10)
        sockets = []
        for user_token, conversation in users[:args.websockets]:
            conn, status, _ = open_websocket(api.address, f"/api/v1/ws/chat/{conversation}?token={user_token}")
            if status != 101:
                raise RuntimeError(f"a chat WebSocket was refused: HTTP {status}")
            sockets.append(conn)

        pods = realnode.running_pods(cli, NAMESPACE)
        cpu_before = realnode.cpu_totals(pods)
        peak: dict[tuple[str, str], int] = {}
        stop = threading.Event()

        def sample_memory():
            while not stop.is_set():
                for p, c in realnode.containers(pods):
                    key = (p["metadata"]["name"], c["name"])
                    peak[key] = max(peak.get(key, 0), realnode.memory_bytes(p, c["name"]))
                stop.wait(2)
        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()

        results: list[tuple[str, int, float]] = []
        interval, total = 1 / args.rate, int(args.rate * args.seconds)
        started = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            futures = []
            for i in range(total):
                time.sleep(max(0.0, started + i * interval - time.perf_counter()))
                path, auth = (("/api/v1/health", None) if i % 2 == 0 else ("/api/v1/conversations", token))
                futures.append((path, pool.submit(call, base, path, auth)))
            for path, future in futures:
                status, seconds = future.result()
                results.append((path, status, seconds))
        elapsed = time.perf_counter() - started
        stop.set()
        sampler.join()
        open_after = 0
        for sock in sockets:
            sock.setblocking(False)
            try:
                open_after += sock.recv(1) != b""
            except BlockingIOError:
                open_after += 1  # nothing to read and not closed: still open
            except OSError:
                pass
            sock.close()

        loaded = realnode.usage(pods, cpu_before, elapsed, peak)

        print(f"\nload: {len(results)} requests in {elapsed:.1f} s ({len(results) / elapsed:.1f}/s), "
              f"{args.websockets} WebSockets open, {open_after} still open at the end")
        for path in ("/api/v1/health", "/api/v1/conversations"):
            times = sorted(s * 1000 for p, status, s in results if p == path and status == 200)
            errors = [status for p, status, _ in results if p == path and status != 200]
            if times:
                print(f"  GET {path:<24} ok {len(times):>5}  errors {len(errors):>3}  p50 {percentile(times, 50):6.1f} "
                      f"ms  p90 {percentile(times, 90):6.1f} ms  p99 {percentile(times, 99):6.1f} ms  max "
                      f"{times[-1]:6.1f} ms")
            else:
                print(f"  GET {path:<24} no successful request; errors {errors[:10]}")
        print_footprint("idle (10 s)", idle)
        print_footprint(f"under load ({elapsed:.0f} s; memory: peak of 2 s samples)", loaded)
        report = realnode.write_artifact("bench-load.json", {"rate": args.rate, "seconds": args.seconds,
                                                              "results": results, "idle": idle, "loaded": loaded})
        print(f"\nraw figures: {report}")
        return 0 if all(status == 200 for _, status, _ in results) else 1
    finally:
        if not args.keep:
            cli.cleanup(NAMESPACE, RELEASE)


if __name__ == "__main__":
    sys.exit(main())
