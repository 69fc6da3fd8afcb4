"""The real-pod tier's harness: the local single-node cluster whose pods are real containers (scripts/kube/node.sh),
the images built here from packages and the application's source (scripts/images/build.sh) loaded into it, and the
chart installed there with the values that point at them (scripts/kube/node-values.yaml)."""

from __future__ import annotations

import fcntl
import json
import re
import secrets
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.cluster import Cli, wait_for
from harness.netns import serve
from harness.render import CHART, ROOT

NODE_SH = ROOT / "scripts" / "kube" / "node.sh"
IMAGES_SH = ROOT / "scripts" / "images" / "build.sh"
IMAGES_OUT = ROOT / ".tools" / "images" / "out"
NODE_VALUES = ROOT / "scripts" / "kube" / "node-values.yaml"
# The node's bridge (scripts/kube/node.sh): pods, and the node's own address.
BRIDGE = "af-br0"
# Screenshots and reports of the tier (git-ignored).
ARTIFACTS = ROOT / ".artifacts" / "real"


def node(*args: str, timeout: int = 1800) -> str:
    """Run scripts/kube/node.sh; its stdout. A failure raises with its output."""
    proc = subprocess.run(["bash", str(NODE_SH), *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"node.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc.stdout


def _locked(name: str):
    lock = open(ROOT / f".{name}.lock", "w")  # noqa: SIM115 (held for the caller's block)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def node_kubeconfig() -> str:
    """Start the node (or reuse the running one), build the images that are out of date and load them into it;
    the node's kubeconfig path."""
    with _locked("node"):
        node("up")
        built = subprocess.run(["bash", str(IMAGES_SH)], capture_output=True, text=True, timeout=3600)
        if built.returncode != 0:
            raise AssertionError(f"scripts/images/build.sh failed ({built.returncode}):\n{built.stderr}{built.stdout}")
        node("load", *sorted(str(p) for p in IMAGES_OUT.glob("*.tar")))
        return node("kubeconfig").strip()


def image_ref(name: str) -> str:
    return (IMAGES_OUT / f"{name}.ref").read_text().strip()


def chart_values() -> list[str]:
    """helm arguments: the built images, then the node's settings."""
    return ["--values", str(IMAGES_OUT / "values.yaml"), "--values", str(NODE_VALUES)]


class RealCli(Cli):
    """helm and kubectl on the real node, with the pod-level helpers the tier needs."""

    def pods(self, namespace: str, selector: str = "") -> list[dict]:
        args = ["pods"] + (["--selector", selector] if selector else [])
        return self.get(namespace, *args)["items"]

    def component_pods(self, namespace: str, component: str) -> list[dict]:
        return [p for p in self.pods(namespace, f"app.kubernetes.io/component={component}")
                if not p["metadata"].get("deletionTimestamp")]

    def exec(self, namespace: str, pod: str, *command: str, container: str | None = None,
             check: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
        args = ["exec", "--namespace", namespace, pod] + (["--container", container] if container else [])
        return self.kubectl(*args, "--", *command, check=check, timeout=timeout)

    def upgrade(self, release: str, namespace: str, *args: str) -> None:
        """helm upgrade --wait of the chart, then every workload Ready (helm's wait ends before old pods are gone)."""
        self.helm("upgrade", release, str(CHART), "--namespace", namespace, "--wait", "--timeout", "10m", *args,
                  timeout=900)
        self.wait_ready(namespace)

    def wait_ready(self, namespace: str, timeout: int = 600) -> None:
        """Every Deployment and StatefulSet of the namespace has all its replicas Ready and updated."""
        def ready():
            for w in self.get(namespace, "deployments,statefulsets")["items"]:
                want = w["spec"].get("replicas", 1)
                status = w["status"]
                if status.get("readyReplicas", 0) < want or status.get("updatedReplicas", 0) < want:
                    return False
            # Deployments do not count terminating pods: they are waited for here.
            return not any(p["metadata"].get("deletionTimestamp") for p in self.pods(namespace))
        wait_for(ready, timeout=timeout, interval=2, what=f"every workload of {namespace} Ready")


def running_pod(real_cli, namespace: str, component: str) -> dict:
    return wait_for(lambda: next((p for p in real_cli.component_pods(namespace, component)
                                  if all(s.get("ready") for s in p["status"].get("containerStatuses", []))), None),
                    timeout=300, interval=2, what=f"a Ready {component} pod")


def restarted(real_cli, namespace: str, name: str, container: str, before: int) -> dict:
    """The pod once its container restarted and is Ready again."""
    def ready_again():
        pod = real_cli.get(namespace, "pod", name)
        status = container_status(pod, container)
        return pod if status["restartCount"] > before and status.get("ready") else None
    return wait_for(ready_again, timeout=300, interval=2, what=f"{name}/{container} restarted and Ready")


# Connects to every target at once; a connection that neither succeeds nor is refused within 4 s was dropped.
PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
targets = json.loads(sys.argv[1])
def connect(target):
    try:
        socket.create_connection((target[0], target[1]), timeout=4).close()
        return True
    except OSError:
        return False
with ThreadPoolExecutor(len(targets) or 1) as pool:
    print(json.dumps(list(pool.map(connect, targets))))
"""


def probe_from_pod(real_cli, pod: dict, targets: list[tuple[str, int]], image: str, index: int) -> list[bool]:
    """Run PROBE in an ephemeral container of `pod` (restricted profile: the namespace enforces it)."""
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    container = f"netcheck-{index}"
    real_cli.kubectl("debug", f"pod/{name}", "--namespace", namespace, "--image", image, "--profile", "restricted",
                     "--container", container, "--", "python", "-c", PROBE, json.dumps(targets))

    def finished():
        live = real_cli.get(namespace, "pod", name)
        status = next((s for s in live["status"].get("ephemeralContainerStatuses", []) if s["name"] == container),
                      None)
        return status if status and "terminated" in status["state"] else None
    wait_for(finished, timeout=120, interval=1, what=f"{container} in {name}")
    log = real_cli.kubectl("logs", "--namespace", namespace, name, "--container", container).stdout
    return json.loads(log.strip().splitlines()[-1])


def rollout(real_cli: RealCli, release: str, namespace: str, *components: str) -> float:
    """A `helm upgrade` (the node's values) that rolls the pods of the components given (values keys), by a new pod
    annotation, until every workload is Ready and no old pod is left; the seconds it took."""
    stamp = str(time.time_ns())
    started = time.monotonic()
    real_cli.upgrade(release, namespace, *chart_values(),
                     *(f"--set-string={component}.podAnnotations.rolled={stamp}" for component in components))
    return time.monotonic() - started


def resolve(cli: Cli, name: str) -> str:
    """A cluster DNS name resolved by the cluster's CoreDNS (asked directly, over UDP, from the node)."""
    dns = cli.get("kube-system", "service", "kube-dns")["spec"]["clusterIP"]
    query = _dns_query(name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query, (dns, 53))
        answer, _ = sock.recvfrom(4096)
    return _dns_a_record(answer, name)


def _dns_query(name: str) -> bytes:
    header = bytes.fromhex("af01 0100 0001 0000 0000 0000".replace(" ", ""))
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.rstrip(".").split("."))
    return header + labels + b"\x00" + b"\x00\x01\x00\x01"


def _dns_a_record(answer: bytes, name: str) -> str:
    rcode = answer[3] & 0x0F
    count = int.from_bytes(answer[6:8], "big")
    if rcode or not count:
        raise AssertionError(f"CoreDNS has no A record for {name} (rcode {rcode})")
    # The answer's last record is the A record: its last 4 bytes are the address.
    return socket.inet_ntoa(answer[-4:])


class Api:
    """The backend's API through its Service's ClusterIP (CoreDNS resolves the name)."""

    def __init__(self, real_cli, namespace: str, release: str):
        self.address = (resolve(real_cli, f"{release}-backend.{namespace}.svc.cluster.local"), 8000)
        self.base = f"http://{self.address[0]}:{self.address[1]}"

    def post(self, path: str, body: dict, token: str | None = None) -> tuple[int, dict]:
        # A client address of its own for each call (the backend trusts one proxy's X-Forwarded-For), so the login
        # rate limiter does not count these calls against each other.
        headers = {"Content-Type": "application/json", "X-Forwarded-For": f"198.51.100.{secrets.randbelow(250) + 1}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def new_chat(self, label: str) -> tuple[str, str]:
        return new_chat(self.post, label)


def new_chat(post, label: str) -> tuple[str, str]:
    """A new user (of the default role, who may hold 2 chat WebSockets), registered and logged in, with a
    conversation of theirs, through `post(path, body, token=None) -> (status, body)`: (the access token, the
    conversation's id)."""
    account = {"email": f"{label}-{secrets.token_hex(4)}@example.com",
               "password": secrets.token_urlsafe(12) + "Aa1", "display_name": label}
    status, body = post("/api/v1/auth/register", account)
    assert status == 201, body
    status, tokens = post("/api/v1/auth/login", {"email": account["email"], "password": account["password"]})
    assert status == 200, tokens
    status, conversation = post("/api/v1/conversations", {"title": label}, tokens["access_token"])
    assert status == 201, conversation
    return tokens["access_token"], conversation["id"]


@contextmanager
def relays(targets: dict[int, tuple[str, int]]) -> Iterator[None]:
    """TCP relays from 127.0.0.1:<port> to addresses of the cluster (Services' ClusterIPs): what a browser on this
    machine opens goes through a Service (kube-proxy) to a pod, as it would through an edge proxy."""
    closed, listeners = threading.Event(), []

    def connect(target: tuple[str, int]) -> socket.socket:
        upstream = socket.create_connection(target, timeout=10)
        upstream.settimeout(None)
        return upstream
    try:
        for port, target in targets.items():
            listeners.append(socket.create_server(("127.0.0.1", port)))
            serve(listeners[-1], lambda t=target: connect(t), closed)
        yield
    finally:
        closed.set()
        for listener in listeners:
            listener.close()


# Container resource usage, read from the node's cgroups (cgroup v1, the kubelet's cgroupfs layout).
CGROUP = Path("/sys/fs/cgroup")


def container_status(pod: dict, container: str) -> dict:
    """The status of one of a pod's containers."""
    return next(s for s in pod["status"]["containerStatuses"] if s["name"] == container)


def container_cgroup(pod: dict, container: str, controller: str) -> Path:
    """The cgroup folder of a running container of a pod, under one controller."""
    cid = container_status(pod, container)["containerID"].split("://", 1)[1]
    uid = pod["metadata"]["uid"]
    matches = list((CGROUP / controller / "kubepods").glob(f"**/pod{uid}/{cid}"))
    if not matches:
        raise AssertionError(f"no {controller} cgroup for container {container} ({cid}) of {pod['metadata']['name']}")
    return matches[0]


def memory_bytes(pod: dict, container: str) -> int:
    """The container's memory use as the kubelet counts it (working set: usage less inactive file pages)."""
    folder = container_cgroup(pod, container, "memory")
    usage = int((folder / "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
    return max(0, usage - int(stat.get("total_inactive_file", 0)))


def cpu_seconds(pod: dict, container: str) -> float:
    return int((container_cgroup(pod, container, "cpuacct") / "cpuacct.usage").read_text()) / 1e9


def main_pid(pod: dict, container: str) -> int:
    """The host pid of the container's first process (its PID 1)."""
    procs = (container_cgroup(pod, container, "pids") / "cgroup.procs").read_text().split()
    return min((int(p) for p in procs if _ns_pid_is_one(int(p))), default=0)


def _ns_pid_is_one(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    nspid = re.search(r"^NSpid:\s+(.*)$", status, re.M)
    return bool(nspid) and nspid.group(1).split()[-1] == "1"


def quantity(value: str | None) -> float:
    """A Kubernetes quantity as a number (bytes or cores)."""
    if value is None:
        return 0.0
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def running_pods(cli: RealCli, namespace: str) -> list[dict]:
    return [p for p in cli.pods(namespace) if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


def containers(pods: list[dict]) -> Iterator[tuple[dict, dict]]:
    """(pod, container spec) of every container of the pods."""
    return ((pod, c) for pod in pods for c in pod["spec"]["containers"])


def cpu_totals(pods: list[dict]) -> dict[tuple[str, str], float]:
    """{(pod, container): CPU-seconds used so far}."""
    return {(pod["metadata"]["name"], c["name"]): cpu_seconds(pod, c["name"]) for pod, c in containers(pods)}


def usage(pods: list[dict], cpu_before: dict[tuple[str, str], float], seconds: float,
          memory: dict[tuple[str, str], int] | None = None) -> list[dict]:
    """Each container's memory (`memory`'s figure, else now) and CPU over the last `seconds` (since `cpu_before`),
    beside its requests and limits."""
    rows = []
    for pod, c in containers(pods):
        key = (pod["metadata"]["name"], c["name"])
        used = memory[key] if memory is not None else memory_bytes(pod, c["name"])
        res = c.get("resources", {})
        rows.append({
            "pod": key[0], "container": key[1],
            "component": pod["metadata"]["labels"].get("app.kubernetes.io/component"),
            "memory_mib": round(used / 2**20, 1),
            "cpu_millicores": round((cpu_seconds(pod, c["name"]) - cpu_before[key]) / seconds * 1000, 1),
            "requests": res.get("requests", {}), "limits": res.get("limits", {}),
        })
    return rows


def footprint(cli: RealCli, namespace: str, seconds: float = 5.0) -> list[dict]:
    """Each running container's memory, and its CPU averaged over `seconds`, beside its requests and limits."""
    pods = running_pods(cli, namespace)
    before = cpu_totals(pods)
    time.sleep(seconds)
    return usage(pods, before, seconds)


def write_artifact(name: str, data: object) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.write_text(json.dumps(data, indent=2) if not isinstance(data, str) else data)
    return path


def retag(ref: str, suffix: str) -> str:
    """Tag an image loaded on the node again (the same content under a new tag, as a new release of it would be);
    the new ref."""
    new = f"{ref}-{suffix}"
    node("ctr", "images", "tag", "--force", ref, new)
    return new


README = CHART / "README.md"


def reader_manifest(placeholders: dict[str, str]) -> str:
    (manifest,) = re.findall(r"```yaml\n# backup-reader.yaml\n(.*?)```", README.read_text(), re.S)
    return fill(manifest, placeholders)


def fill(text: str, placeholders: dict[str, str]) -> str:
    for key, value in placeholders.items():
        text = text.replace(f"<{key}>", value)
    assert not re.search(r"<[a-z]+>", text), f"a placeholder is left in: {text}"
    return text
