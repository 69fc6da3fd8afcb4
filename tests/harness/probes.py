"""The kubelet's probes of a running pod (harness.pods.Pod): their time budget, and waiting until they pass."""

from __future__ import annotations

import time

from harness.pods import Pod, PodError


def probe_budget(probe: dict) -> float:
    """Seconds a probe may keep failing before the kubelet gives up (its defaults where fields are left out)."""
    return probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)


def wait_for_probe(pod: Pod, probe: dict) -> float:
    """Poll an httpGet probe as the kubelet would (its path, port, timeout and budget); the seconds it took."""
    get = probe["httpGet"]
    return wait_for_http(pod, get["port"], get["path"], probe_budget(probe),
                         request_timeout=probe.get("timeoutSeconds", 1))


def wait_for_http(pod: Pod, port: int | str, path: str, timeout: float, expect: int = 200,
                  request_timeout: float = 5) -> float:
    """Poll a path as a kubelet probe would until it answers `expect`; the seconds it took."""
    import urllib.error
    import urllib.request

    started = time.monotonic()
    url = pod.url(port, path)
    last = ""
    while time.monotonic() - started < timeout:
        if not pod.running():
            raise PodError(f"{pod.name} exited with {pod.proc.returncode} before {path} answered; log:\n"
                           f"{pod.logs()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=request_timeout) as response:
                if response.status == expect:
                    return time.monotonic() - started
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            last = f"HTTP {err.code}"
            if err.code == expect:
                return time.monotonic() - started
        except OSError as err:
            last = str(err)
        time.sleep(0.2)
    raise PodError(f"{pod.name}: {path} did not answer {expect} within {timeout}s (last: {last}); log:\n"
                   f"{pod.logs()[-4000:]}")
