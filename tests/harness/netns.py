"""A pod's network, as the harness stands in for the cluster's: the pod's own network namespace, in-cluster host
names that resolve there (/etc/hosts), and forwarders that relay each Service port to a real server on 127.0.0.1, and
the kubelet's address into the pod."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

# The pod's own address inside its namespace, as the kubelet and Services reach it: not 127.0.0.1, so a server that
# listens on loopback only fails here as it would in a cluster (any 127/8 address is local to the namespace).
POD_ADDRESS = "127.0.2.1"


CLONE_NEWNET = 0x40000000


_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Upstream:
    """Something the pod may reach: the names it answers to, its port, and the real server on 127.0.0.1 behind it."""

    hosts: tuple[str, ...]
    port: int
    target_port: int


def _enter_netns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns into the pod's network namespace: {os.strerror(err)}")


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Relay bytes both ways until either side closes."""
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    try:
        while True:
            for key, _ in sel.select(timeout=60):
                data = key.fileobj.recv(65536)
                if not data:
                    return
                key.data.sendall(data)
    except OSError:
        return
    finally:
        sel.close()
        a.close()
        b.close()


def serve(listener: socket.socket, connect, closed: threading.Event) -> None:
    """Accept on `listener` until `closed` (or the listener is closed); relay each client to a connection that
    `connect()` opens."""
    def loop() -> None:
        while not closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = connect()
            except OSError:
                client.close()
                continue
            threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


class Forwarder:
    """TCP relays between this machine's loopback and one pod's network namespace."""

    def __init__(self, netns_path: str):
        self.fd = os.open(netns_path, os.O_RDONLY)
        # A thread that lives in the pod's namespace: sockets it creates belong there, whoever uses them later.
        self.inside = ThreadPoolExecutor(1, initializer=_enter_netns, initargs=(self.fd,))
        self.listeners: list[socket.socket] = []
        self.closed = threading.Event()

    def _listen(self, host: str, port: int, inside: bool) -> socket.socket:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # bubblewrap brings the pod's loopback up while we start: retry until its addresses exist.
            deadline = time.monotonic() + 10
            while True:
                try:
                    s.bind((host, port))
                    break
                except OSError as err:
                    if err.errno != errno.EADDRNOTAVAIL or time.monotonic() > deadline:
                        s.close()
                        raise
                    time.sleep(0.02)
            s.listen(64)
            return s
        s = self.inside.submit(make).result() if inside else make()
        self.listeners.append(s)
        return s

    def service(self, address: str, upstream: Upstream) -> None:
        """Inside the pod: address:upstream.port relays to the real server on this machine."""
        listener = self._listen(address, upstream.port, inside=True)
        serve(listener, lambda: socket.create_connection(("127.0.0.1", upstream.target_port), 10), self.closed)

    def expose(self, container_port: int) -> int:
        """On this machine: a free 127.0.0.1 port that relays to the container port inside the pod."""
        listener = self._listen("127.0.0.1", 0, inside=False)

        def connect() -> socket.socket:
            s = self.inside.submit(socket.socket, socket.AF_INET, socket.SOCK_STREAM).result()
            s.settimeout(10)
            s.connect((POD_ADDRESS, container_port))
            s.settimeout(None)
            return s
        serve(listener, connect, self.closed)
        return listener.getsockname()[1]

    def close(self) -> None:
        self.closed.set()
        for s in self.listeners:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.inside.shutdown(wait=False)
        os.close(self.fd)


def hosts_file(upstreams: list[Upstream], hostname: str) -> tuple[str, list[str]]:
    """/etc/hosts of the pod, and the loopback address of each upstream (one each, for all its names)."""
    addresses = [f"127.0.1.{i + 1}" for i in range(len(upstreams))]
    lines = ["127.0.0.1\tlocalhost", f"127.0.0.1\t{hostname}"]
    lines += [f"{address}\t{' '.join(u.hosts)}" for address, u in zip(addresses, upstreams, strict=True)]
    return "\n".join(lines) + "\n", addresses
