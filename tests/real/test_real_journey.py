"""A user's journey on the real node, in headless Chromium (Debian's): the frontend's page loads, a user registers,
logs in, creates a conversation and opens its chat, whose WebSocket connects. The browser reaches the frontend on
http://localhost:3000 and the API on http://localhost:8000, the origins the frontend image was built with; each is
a relay on 127.0.0.1 to the address CoreDNS gives the chart's Service, so every request goes through the Services
and DNS the chart creates (kube-proxy picks the pod)."""

from __future__ import annotations

import json

import pytest

from harness import appsrc, realnode
from harness.browser import browser_page, open_chat


@pytest.fixture(scope="module")
def edge(real_cli, real_release):
    """localhost:3000 and localhost:8000 relayed to the frontend's and the backend's Services."""
    namespace, release, _ = real_release
    domain = "cluster.local"
    targets = {}
    for port, component in ((3000, "frontend"), (8000, "backend")):
        name = f"{release}-{component}.{namespace}.svc.{domain}"
        targets[port] = (realnode.resolve(real_cli, name), port)
    with realnode.relays(targets):
        yield


def test_register_login_and_chat_websocket_in_a_browser(edge, record_property):
    sockets = []
    with browser_page() as page:
        page.on("websocket", lambda ws: sockets.append(ws))
        open_chat(page)
        shot = realnode.ARTIFACTS / "journey-chat.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        record_property("timing: real: journey screenshot", str(shot))
    chats = [ws.url for ws in sockets if "/api/v1/ws/chat/" in ws.url]
    assert chats and chats[0].startswith("ws://localhost:8000/api/v1/ws/chat/"), [ws.url for ws in sockets]


def test_chat_reconnects_when_a_backend_rollout_closes_it(real_cli, real_release, edge, record_property):
    """The frontend's chat opens its WebSocket again after any close (ChatWindow.tsx: backoff from 1 s, 5 attempts),
    so a backend rollout, whose pods close their WebSockets with 1012, shows the user "Reconnected to AgentForge"."""
    namespace, release, _ = real_release
    closed, opened = [], []
    with browser_page() as page:
        page.on("websocket", lambda ws: opened.append(ws.url) or ws.on("close", lambda _: closed.append(ws.url)))
        open_chat(page)
        seconds = realnode.rollout(real_cli, release, namespace, "backend")
        page.get_by_text("Reconnected to AgentForge").first.wait_for(timeout=60_000)
        assert page.get_by_text("Connection lost").count() == 0
    chats = [url for url in opened if "/api/v1/ws/chat/" in url]
    record_property("timing: real: chat across a backend rollout",
                    f"{seconds:.0f} s rollout, {len(chats)} chat WebSockets opened, {len(closed)} closed")
    assert len(chats) >= 2 and closed, (chats, closed)


def test_backend_pod_reads_back_the_collectors_collections(real_cli, real_release):
    """From a backend pod, with the backend's own settings and client: DATA_COLLECTOR_URL leads through the
    collector's Service to its one process, which answers every later read of a collection it created."""
    namespace, _, _ = real_release
    pod = real_cli.component_pods(namespace, "backend")[0]["metadata"]["name"]
    out = real_cli.exec(namespace, pod, "python", "-c", appsrc.COLLECTOR_READS, container="backend").stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["codes"] == [200] * 30, result
