"""Small HTTP and WebSocket clients for the app tier (standard library only), aimed at a pod's forwarded port."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import urllib.error
import urllib.request

from harness.pods import Pod

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def request(pod: Pod, method: str, path: str, body: dict | None = None, headers: dict | None = None,
            port: int | str = "http") -> tuple[int, dict | str]:
    """One request on a new connection; (status, JSON body or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(pod.url(port, path), data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def handshake(conn: socket.socket, path: str, headers: dict[str, str]) -> tuple[int, bool]:
    """The RFC 6455 opening handshake on an open connection (plain or TLS), with `headers` (Host, Origin, Cookie...)
    beside its own: (the HTTP status; whether Sec-WebSocket-Accept is valid)."""
    key = base64.b64encode(os.urandom(16)).decode()
    own = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in {**headers, **own}.items())]
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1])
    accept = next((line.split(":", 1)[1].strip() for line in lines[1:]
                   if line.lower().startswith("sec-websocket-accept:")), None)
    expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    return status, accept == expected


def open_websocket(address: tuple[str, int], path: str) -> tuple[socket.socket, int, bool]:
    """A WebSocket opened on a new connection: (the connection, left open for the caller; the HTTP status; whether
    Sec-WebSocket-Accept is valid)."""
    conn = socket.create_connection(address, timeout=15)
    status, valid = handshake(conn, path, {"Host": "agentforge.example.com",
                                           "Origin": "https://agentforge.example.com"})
    return conn, status, valid


def websocket_handshake(pod: Pod, path: str, port: int | str = "http") -> tuple[int, bool]:
    """Open a WebSocket (RFC 6455 handshake) on a new connection; (HTTP status, Sec-WebSocket-Accept valid)."""
    conn, status, valid = open_websocket(("127.0.0.1", pod.port(port)), path)
    conn.close()
    return status, valid


def exposition_types(text: str) -> dict[str, str]:
    """{family: type} from the `# TYPE` lines of a Prometheus text exposition."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def sample_labels(text: str) -> dict[str, set[str]]:
    """{sample name: label names seen} from a Prometheus text exposition."""
    out: dict[str, set[str]] = {}
    for name, labels in re.findall(r"^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? ", text, re.M):
        out.setdefault(name, set()).update(re.findall(r'(\w+)="', labels or ""))
    return out
