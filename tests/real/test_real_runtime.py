"""Runtime promises on the real node: what restarts, rollouts and the collector's reach do to users' work.

- A backend container restarted while Redis is down waits for Redis before it serves, and logs no password.
- After WebSocket chats, no container's log holds an access token (uvicorn logs the query string of every accepted
  WebSocket; the chart's backend command redacts it).
- The data collector reaches public addresses only: not the cloud metadata endpoint, private addresses or the
  cluster's pods, until networkPolicy.collectorEgress.allowedPrivateCIDRs opens a range. The addresses are put on
  the node's own bridge for the test, with a listener behind each: nothing leaves the machine.
- Rollouts of the frontend and the backend under load fail no request at their Services (preStop sleeps); a request
  in flight on a replaced backend pod (a slow client's upload; the app's pipelines, its long requests, need an LLM
  and a stored key, which the app cannot save on the chart's database: a known issue) completes after the pod got
  SIGTERM; and each open WebSocket is closed with 1012 (Service Restart) and opens again through the Service.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest

from harness import realnode
from harness.apphttp import open_websocket
from harness.cluster import component_objects, wait_for

BRIDGE = realnode.BRIDGE
NODE_NFT_TABLE = "agentforge_node"  # scripts/kube/node.sh's table
PRIVATE = "10.244.0.1"  # the node on its bridge: a private address
METADATA = "169.254.169.254"  # the cloud metadata endpoint's address
PUBLIC = "198.51.100.7"  # TEST-NET-2: a public address as far as policies go
LISTEN_PORT = 18089


def release_secret(real_cli, namespace: str, release: str, key: str) -> str:
    """A key of the release's app Secret (the one the backend's REDIS_URL comes from)."""
    secret = real_cli.get(namespace, "secret", f"{release}-secrets")
    return base64.b64decode(secret["data"][key]).decode()


def pod_logs(real_cli, namespace: str, pod: str, container: str, previous: bool = False) -> str:
    args = ["logs", "--namespace", namespace, pod, "--container", container] + (["--previous"] if previous else [])
    return real_cli.kubectl(*args, check=False).stdout


def test_backend_restarted_while_redis_is_down_waits_and_logs_no_password(real_cli, real_release, record_property):
    namespace, release, _ = real_release
    password = release_secret(real_cli, namespace, release, "REDIS_PASSWORD")
    pod = realnode.running_pod(real_cli, namespace, "backend")
    name = pod["metadata"]["name"]
    before = realnode.container_status(pod, "backend")["restartCount"]
    (redis,) = [s["metadata"]["name"] for s in component_objects(real_cli, namespace, "statefulsets", "redis")]
    real_cli.kubectl("scale", "statefulset", redis, "--namespace", namespace, "--replicas=0")
    try:
        wait_for(lambda: not real_cli.component_pods(namespace, "redis"), timeout=120, interval=1,
                 what="the Redis pod gone")
        os.kill(realnode.main_pid(pod, "backend"), signal.SIGKILL)

        def started_again():
            live = real_cli.get(namespace, "pod", name)
            status = realnode.container_status(live, "backend")
            return live if status["restartCount"] > before and "running" in status["state"] else None
        live = wait_for(started_again, timeout=120, interval=1, what=f"{name}/backend started again")
        time.sleep(12)
        live = real_cli.get(namespace, "pod", name)
        status = realnode.container_status(live, "backend")
        assert "running" in status["state"] and not status.get("ready"), status
        with pytest.raises(ConnectionRefusedError):  # nothing listens: uvicorn has not started
            socket.create_connection((live["status"]["podIP"], 8000), timeout=5).close()
        waiting = pod_logs(real_cli, namespace, name, "backend")
        assert "waiting for Redis" in waiting, waiting
    finally:
        real_cli.kubectl("scale", "statefulset", redis, "--namespace", namespace, "--replicas=1")
    started = time.monotonic()
    live = wait_for(lambda: (p := real_cli.get(namespace, "pod", name)) and
                    realnode.container_status(p, "backend").get("ready") and p, timeout=300, interval=2,
                    what=f"{name}/backend Ready once Redis is back")
    record_property("timing: real: backend Ready after Redis came back", f"{time.monotonic() - started:.0f} s")
    real_cli.wait_ready(namespace)
    logs = pod_logs(real_cli, namespace, name, "backend") + pod_logs(real_cli, namespace, name, "backend", True)
    assert "Application startup complete" in logs
    assert password not in logs and "Redis unavailable" not in logs
    assert realnode.container_status(live, "backend")["restartCount"] == before + 1, "it waited, never crashed"


def test_no_access_token_in_any_container_log_after_websocket_chats(real_cli, real_release):
    namespace, release, _ = real_release
    api = realnode.Api(real_cli, namespace, release)
    token, conversation = api.new_chat("runtime")
    for _ in range(4):  # through the Service: both backend pods, most likely
        conn, status, _ = open_websocket(api.address, f"/api/v1/ws/chat/{conversation}?token={token}")
        conn.close()
        assert status == 101
    logs = {}
    for pod in real_cli.pods(namespace):
        spec = pod["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            logs[f"{pod['metadata']['name']}/{c['name']}"] = pod_logs(real_cli, namespace, pod["metadata"]["name"],
                                                                       c["name"])
    assert not [where for where, text in logs.items() if token in text]
    redacted = [where for where, text in logs.items() if "?token=[redacted]" in text]
    assert redacted and all("backend" in where for where in redacted), redacted


@contextmanager
def listeners(addresses: list[str]) -> Iterator[None]:
    """A TCP listener on LISTEN_PORT at each address, the ones not on the node yet added to its bridge, and a rule in
    the node's nftables input chain that lets pods reach that port there (the node lets pods reach only the API
    server and the kubelet on the host); all removed after."""
    added, servers, closed = [], [], threading.Event()
    rule = (f"ip daddr {{ {', '.join(addresses)} }} tcp dport {LISTEN_PORT} accept comment \"af-real-runtime\"")
    subprocess.run(["nft", "insert", "rule", "inet", NODE_NFT_TABLE, "input", *rule.split()], check=True)
    try:
        for address in addresses:
            if subprocess.run(["ip", "-4", "addr", "show", "to", address], capture_output=True,
                              text=True).stdout.strip() == "":
                subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", BRIDGE], check=True)
                added.append(address)
            server = socket.create_server((address, LISTEN_PORT))
            server.settimeout(0.5)
            servers.append(server)

        def accept(server: socket.socket) -> None:
            while not closed.is_set():
                try:
                    server.accept()[0].close()
                except OSError:
                    continue
        for server in servers:
            threading.Thread(target=accept, args=(server,), daemon=True).start()
        yield
    finally:
        closed.set()
        for server in servers:
            server.close()
        for address in added:
            subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", BRIDGE], check=True)
        listing = subprocess.run(["nft", "--handle", "list", "chain", "inet", NODE_NFT_TABLE, "input"],
                                 capture_output=True, text=True, check=True).stdout
        for line in listing.splitlines():
            if "af-real-runtime" in line:
                handle = line.rsplit("# handle ", 1)[1].strip()
                subprocess.run(["nft", "delete", "rule", "inet", NODE_NFT_TABLE, "input", "handle", handle],
                               check=True)


def reach(real_cli, namespace: str, component: str, index: int) -> dict[str, bool]:
    """{address: whether a pod of the component connected to it}, from the pod's own network namespace."""
    pod = realnode.running_pod(real_cli, namespace, component)
    targets = [(address, LISTEN_PORT) for address in (PUBLIC, PRIVATE, METADATA)]
    connected = realnode.probe_from_pod(real_cli, pod, targets, realnode.image_ref("backend"), index)
    return dict(zip((PUBLIC, PRIVATE, METADATA), connected, strict=True))


def test_collector_reaches_public_addresses_only_until_a_private_range_is_opened(real_cli, real_release):
    namespace, release, _ = real_release
    with listeners([PUBLIC, PRIVATE, METADATA]):
        assert reach(real_cli, namespace, "backend", 101) == {PUBLIC: True, PRIVATE: True, METADATA: True}, \
            "the backend's egress is not restricted: every listener answers"
        assert reach(real_cli, namespace, "data-collector", 102) == {PUBLIC: True, PRIVATE: False, METADATA: False}
        opened = ["--set", f"networkPolicy.collectorEgress.allowedPrivateCIDRs[0]={PRIVATE}/32"]
        real_cli.upgrade(release, namespace, *realnode.chart_values(), *opened)
        try:
            assert reach(real_cli, namespace, "data-collector", 103) == {PUBLIC: True, PRIVATE: True,
                                                                        METADATA: False}
        finally:
            real_cli.upgrade(release, namespace, *realnode.chart_values())


class Load:
    """GET requests to URLs at a fixed rate in threads, counting outcomes by URL: status codes, or the error."""

    def __init__(self, urls: list[str], rate: float = 20.0):
        self.urls, self.rate = urls, rate
        self.outcomes: dict[str, Counter] = {url: Counter() for url in urls}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(url,), daemon=True) for url in urls]

    def run(self, url: str) -> None:
        interval = len(self.urls) / self.rate
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    response.read()
                    outcome = str(response.status)
            except urllib.error.HTTPError as err:
                outcome = str(err.code)
            except OSError as err:
                outcome = type(err).__name__
            self.outcomes[url][outcome] += 1
            self.stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


def close_code(conn: socket.socket, timeout: float) -> int | None:
    """Read server frames until a close frame: its status code (None when the connection ends without one). Pings
    are answered, as a browser does: uvicorn's server closes a WebSocket whose pings go unanswered with 1011."""
    conn.settimeout(timeout)
    buffer = b""
    try:
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                return None
            buffer += chunk
            while len(buffer) >= 2:
                opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
                start = 2 + {126: 2, 127: 8}.get(length, 0)
                if length >= 126:
                    length = int.from_bytes(buffer[2:start], "big")
                if len(buffer) < start + length:
                    break
                payload, buffer = buffer[start:start + length], buffer[start + length:]
                if opcode == 0x8:
                    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if opcode == 0x9:  # a pong with the ping's payload, masked (a client's frames are), FIN set
                    mask = os.urandom(4)
                    conn.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask +
                                 bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    except OSError:
        return None


def slow_login(address: tuple[str, int], seconds: float, result: dict) -> None:
    """A login whose body is sent a byte at a time over `seconds` (a slow client's request, in flight all along):
    result gets the HTTP status (0 when the connection ended without a response) and when it arrived."""
    body = b'{"email": "slow-client@example.com", "password": "Not-the-password-1"}'
    head = (f"POST /api/v1/auth/login HTTP/1.1\r\nHost: backend\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Forwarded-For: 203.0.113.99\r\nConnection: close\r\n\r\n")
    with socket.create_connection(address, timeout=seconds + 60) as conn:
        conn.sendall(head.encode())
        for byte in body:
            conn.sendall(bytes([byte]))
            time.sleep(seconds / len(body))
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    result["status"] = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0
    result["at"] = time.time()


def deletion_time(real_cli, namespace: str, pod: str, found: dict, stop: threading.Event) -> None:
    """Poll a pod until it is being deleted: found["at"] gets when it was asked to (epoch seconds). The API server
    sets deletionTimestamp to that moment plus the grace period (deletionGracePeriodSeconds)."""
    while not stop.is_set() and "at" not in found:
        live = real_cli.kubectl("get", "pod", pod, "--namespace", namespace, "--output", "json", check=False)
        meta = json.loads(live.stdout)["metadata"] if live.returncode == 0 else {}
        if meta.get("deletionTimestamp"):
            stamp = datetime.fromisoformat(meta["deletionTimestamp"].replace("Z", "+00:00")).timestamp()
            found["at"] = stamp - meta["deletionGracePeriodSeconds"]
        stop.wait(1)


@pytest.mark.parametrize("components", [("frontend",), ("backend", "frontend")], ids=["frontend", "both"])
def test_rollout_under_load_fails_no_request_and_websockets_reconnect(real_cli, real_release, components,
                                                                      record_property):
    namespace, release, _ = real_release
    # Two users with two chats each: a user of the default role may hold two WebSockets (gateway/rbac.py).
    api = realnode.Api(real_cli, namespace, release)
    chats = [api.new_chat("runtime") for _ in range(2)]
    frontend = realnode.resolve(real_cli, f"{release}-frontend.{namespace}.svc.cluster.local")
    urls = [f"http://{frontend}:3000/login", f"{api.base}/api/v1/health"]
    paths = [f"/api/v1/ws/chat/{conversation}?token={token}" for token, conversation in chats]
    sockets = []
    for path in paths * 2:
        conn, status, _ = open_websocket(api.address, path)
        assert status == 101
        sockets.append(conn)
    codes: list[int | None] = [None] * len(sockets)
    readers = [threading.Thread(target=lambda i=i: codes.__setitem__(i, close_code(sockets[i], 900)), daemon=True)
               for i in range(len(sockets))]
    for reader in readers:
        reader.start()
    # A request in flight on a backend pod the rollout replaces, over its preStop sleep and SIGTERM.
    old = realnode.running_pod(real_cli, namespace, "backend")
    slow, deleted, polling = {}, {}, threading.Event()
    helpers = [threading.Thread(target=slow_login, args=((old["status"]["podIP"], 8000), 200, slow), daemon=True),
               threading.Thread(target=deletion_time, args=(real_cli, namespace, old["metadata"]["name"], deleted,
                                                             polling), daemon=True)]
    rolls_backend = "backend" in components
    if rolls_backend:
        for helper in helpers:
            helper.start()
    with Load(urls) as load:
        seconds = realnode.rollout(real_cli, release, namespace, *components)
        time.sleep(2)
    polling.set()
    for reader in readers:
        reader.join(60 if rolls_backend else 5)
    for conn in sockets:
        conn.close()
    outcomes = {url: dict(counter) for url, counter in load.outcomes.items()}
    figures = f"{seconds:.0f} s rollout; requests by outcome {outcomes}; WebSocket close codes {codes}"
    print(f"helm upgrade rolling {' and '.join(components)} under load: {figures}")
    record_property(f"timing: real: rollout of {' and '.join(components)} under load", figures)
    assert all(set(counter) == {"200"} for counter in outcomes.values()), outcomes
    if rolls_backend:
        helpers[0].join(240)
        backend = next(c for c in old["spec"]["containers"] if c["name"] == "backend")
        sleep = backend["lifecycle"]["preStop"]["sleep"]["seconds"]
        record_property("timing: real: slow request across its pod's SIGTERM",
                        f"HTTP {slow.get('status')} {slow.get('at', 0) - deleted.get('at', 0) - sleep:.0f} s after")
        assert slow.get("status") == 401, slow  # an answer (wrong password), not a cut connection
        assert slow["at"] > deleted["at"] + sleep, "the request ended before its pod got SIGTERM"
        assert codes == [1012] * len(sockets), codes
        for path in paths * 2:  # what the chat does next: open it again (every slot given back)
            conn, status, _ = open_websocket(api.address, path)
            conn.close()
            assert status == 101
    else:
        assert codes == [None] * len(sockets), "a frontend rollout closed backend WebSockets"
