"""Resource limits and restarts are real on the node: a container whose main process is killed is restarted by the
kubelet and becomes Ready again through its probes; a container pushed past its memory limit is OOM-killed by the
kernel (its cgroup's limit is the chart's) and restarted; and each container's measured footprint, idle, sits
within its limits (printed beside its requests)."""

from __future__ import annotations

import os
import signal

import pytest

from harness import realnode

COMPONENTS = ["backend", "frontend", "data-collector", "postgresql", "redis", "prometheus"]


@pytest.mark.parametrize("component", COMPONENTS)
def test_killed_main_process_is_restarted_and_ready_again(real_cli, real_release, component):
    namespace, _, _ = real_release
    pod = realnode.running_pod(real_cli, namespace, component)
    container = component
    before = realnode.container_status(pod, container)["restartCount"]
    pid = realnode.main_pid(pod, container)
    assert pid, f"no main process found for {pod['metadata']['name']}/{container}"
    os.kill(pid, signal.SIGKILL)
    pod = realnode.restarted(real_cli, namespace, pod["metadata"]["name"], container, before)
    last = realnode.container_status(pod, container)["lastState"]
    assert last["terminated"]["exitCode"] == 137, last


def test_container_past_its_memory_limit_is_oom_killed_and_restarted(real_cli, real_release):
    """A frontend container: its main process is made the OOM killer's first choice (raising a score needs no
    privilege), then a process in the container lowers its own score to 0 (the kubelet gives a Burstable
    container's processes about 1000, which would make the larger allocator the victim) and allocates past the
    limit."""
    namespace, _, _ = real_release
    pod = realnode.running_pod(real_cli, namespace, "frontend")
    name, container = pod["metadata"]["name"], "frontend"
    limit = realnode.quantity(next(c for c in pod["spec"]["containers"] if c["name"] == container)
                              ["resources"]["limits"]["memory"])
    cgroup_limit = int((realnode.container_cgroup(pod, container, "memory") / "memory.limit_in_bytes").read_text())
    assert cgroup_limit == limit, f"the cgroup's limit {cgroup_limit} is not the pod's {limit}"
    before = realnode.container_status(pod, container)["restartCount"]
    with open(f"/proc/{realnode.main_pid(pod, container)}/oom_score_adj", "w") as score:
        score.write("1000")
    hog = ("require('fs').writeFileSync('/proc/self/oom_score_adj', '0');"
           "const a = []; for (;;) a.push(Buffer.alloc(16 << 20, 1));")
    real_cli.exec(namespace, name, "node", "-e", hog, container=container, check=False, timeout=120)
    pod = realnode.restarted(real_cli, namespace, name, container, before)
    last = realnode.container_status(pod, container)["lastState"]
    assert last["terminated"]["reason"] == "OOMKilled", last


def test_idle_footprint_within_limits(real_cli, real_release, record_property):
    namespace, _, _ = real_release
    real_cli.wait_ready(namespace)
    rows = realnode.footprint(real_cli, namespace, seconds=10)
    path = realnode.write_artifact("footprint-idle.json", rows)
    print(f"idle footprint ({path}):")
    for row in sorted(rows, key=lambda r: r["pod"]):
        print(f"  {row['pod']:<45} {row['container']:<15} {row['memory_mib']:>7} MiB "
              f"(request {row['requests'].get('memory')}, limit {row['limits'].get('memory')}) "
              f"{row['cpu_millicores']:>6} m CPU (request {row['requests'].get('cpu')}, "
              f"limit {row['limits'].get('cpu')})")
        record_property(f"timing: real: idle {row['component']}/{row['container']}",
                        f"{row['memory_mib']} MiB, {row['cpu_millicores']} mCPU")
        assert row["memory_mib"] * 2**20 < realnode.quantity(row["limits"]["memory"]), row
