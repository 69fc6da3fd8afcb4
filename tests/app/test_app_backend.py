"""The backend, run for real: AgentForge's backend code laid out as docker/Dockerfile.backend lays it out, started
with the rendered command, environment, uid and mounts, after the migration Job and the wait-for-redis init
container, against real PostgreSQL and Redis and the real data collector (tests/harness/appstack.py). Every scenario in
which the backend's containers differ runs."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import signal
import time
import urllib.request
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis

from harness import appsrc, servers
from harness.apphttp import exposition_types, request, sample_labels, websocket_handshake
from harness.appstack import Release, Stack, distinct_scenarios, release, scenario_values
from harness.objects import pod_spec
from harness.pods import Pod
from harness.probes import probe_budget, wait_for_probe

SCENARIOS = distinct_scenarios("backend", "wait-for-redis", "backend")
REDIS_UNAVAILABLE = "Redis unavailable"
USER = {"email": "conformance@example.com", "password": "Conformance1-password", "display_name": "Conformance"}
# What ingress-nginx sends by default: X-Forwarded-For replaced with the address of the client it serves.
CLIENT_IP = "203.0.113.7"


def start_backend(stack: Stack) -> Pod:
    """What a cluster does, in its order: the migration Job, the data collector, the backend's init container, the
    backend (ready by its startupProbe)."""
    backend_image = appsrc.python_image("backend")
    stack.run_to_completion("migrations", "wait-for-database", appsrc.tool_image("postgresql"), timeout=60)
    stack.run_to_completion("migrations", "migrate", backend_image, timeout=300)
    stack.serve("data-collector", "data-collector", appsrc.python_image("data-collector"))
    stack.run_to_completion("backend", "wait-for-redis", appsrc.tool_image("redis"), timeout=60)
    return stack.serve("backend", "backend", backend_image)


@pytest.fixture(scope="module", params=SCENARIOS)
def stack(request, app_ready):
    stack = Stack(release(request.param))
    request.addfinalizer(stack.close)
    stack.start_postgres()
    stack.start_redis()
    start_backend(stack)
    return stack


@pytest.fixture(scope="module")
def user(stack):
    """A user registered and logged in through the ingress controller (X-Forwarded-For)."""
    headers = {"X-Forwarded-For": CLIENT_IP}
    backend = stack.pods["backend"]
    status, body = request(backend, "POST", "/api/v1/auth/register", USER, headers)
    assert status == 201, body
    status, tokens = request(backend, "POST", "/api/v1/auth/login",
                             {"email": USER["email"], "password": USER["password"]}, headers)
    assert status == 200, tokens
    return tokens


def redis_client(stack: Stack) -> redis.Redis:
    """A client of the stack's Redis, on the database REDIS_URL names."""
    database = int(urlsplit(stack.rel.env("backend", "backend")["REDIS_URL"]).path.lstrip("/") or 0)
    return redis.Redis(host="127.0.0.1", port=stack.redis.port, password=stack.redis.password or None,
                       db=database, socket_timeout=5, decode_responses=True)


class TestProbes:
    def test_every_probe_path_answers_within_the_startup_budget(self, stack, record_property):
        container = stack.rel.container("backend", "backend")
        record_property(f"timing: app {stack.rel.scenario}: backend startup probe passed after",
                        f"{stack.pods['backend'].startup_seconds:.1f} s "
                        f"(budget {probe_budget(container['startupProbe']):.0f} s)")
        for kind in ("readinessProbe", "livenessProbe"):
            wait_for_probe(stack.pods["backend"], container[kind])


def test_one_server_process_under_the_pod_identity(stack):
    """One uvicorn process (no worker supervisor), as the pod's uid and gid, with no capability left."""
    spec = pod_spec(stack.rel.workload("backend"))
    processes = stack.pods["backend"].processes()
    assert len(processes) == 1, processes
    (process,) = processes
    assert "uvicorn" in process["cmdline"]
    assert (process["uid"], process["gid"]) == (spec["securityContext"]["runAsUser"],
                                                spec["securityContext"]["runAsGroup"])
    assert process["CapEff"] == 0 and process["NoNewPrivs"] == 1


class TestDatabase:
    def test_register_and_login_write_through_database_url(self, stack, user):
        assert user["access_token"] and user["refresh_token"]

        async def stored():
            pg = stack.postgres
            conn = await asyncpg.connect(host="127.0.0.1", port=pg.port, user=pg.user, password=pg.password,
                                         database=pg.database, timeout=10)
            try:
                return await conn.fetchval("SELECT display_name FROM users WHERE email = $1", USER["email"])
            finally:
                await conn.close()

        assert asyncio.run(stored()) == USER["display_name"]


class TestRedis:
    def test_rate_limiter_writes_its_key_through_redis_url(self, stack, user):
        window = stack.rel.env("backend", "backend")["AUTH_RATE_WINDOW_SECONDS"]
        key = f"auth_rate_limit:{CLIENT_IP}:{window}s"
        with redis_client(stack) as client:
            assert client.zcard(key) == 2, f"{key}: the register and the login; keys there: {client.keys('*')}"
        assert REDIS_UNAVAILABLE not in stack.pods["backend"].logs()

    @pytest.mark.parametrize("password", ["wrong", ""])
    def test_wait_for_redis_needs_the_pong_the_backend_would_get(self, stack, password):
        """The init container keeps waiting with a wrong password, and with none against a Redis that has one."""
        if not stack.redis.password:
            pytest.skip("this scenario's Redis has no password")
        pod = stack.pod("backend", "wait-for-redis", appsrc.tool_image("redis"),
                        env_override={"REDISCLI_AUTH": password and stack.redis.password + password}).start()
        time.sleep(4)
        assert pod.running(), pod.logs()
        assert "waiting for Redis" in pod.logs()

    def test_password_only_in_the_environment(self, stack):
        container = stack.rel.container("backend", "wait-for-redis")
        text = json.dumps([container.get("command"), container.get("args")], ensure_ascii=False)
        assert stack.redis.password not in text
        assert {e["name"]: e for e in container["env"]}["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["key"] == \
            "REDIS_PASSWORD"


@pytest.mark.parametrize("redis_password,secret_password,ends", [
    ("", "", True),           # a managed Redis without a password: the backend connects, so the wait ends
    ("", "a-password", False),  # the Secret has one, Redis none: redis-cli still prints PONG, the backend fails
])
def test_wait_for_redis_against_a_redis_without_password(app_ready, redis_password, secret_password, ends):
    values = scenario_values("external-services")
    values["externalRedis"] = {**values["externalRedis"], "password": secret_password}
    stack = Stack(Release(f"external-redis-{bool(secret_password)}", values))
    try:
        server = servers.PlainRedis(redis_password).start()
        stack.closers.append(server.stop)
        stack.wire_external("externalRedis", server.port)
        pod = stack.pod("backend", "wait-for-redis", appsrc.tool_image("redis")).start()
        if ends:
            assert pod.wait(30) == 0, pod.logs()
        else:
            time.sleep(4)
            assert pod.running() and "AUTH failed" in pod.logs(), pod.logs()
    finally:
        stack.close()


def test_backend_container_waits_for_redis_and_logs_no_password(app_ready):
    """Why the backend container's own command waits for Redis: the app checks Redis once, at start, and started
    while Redis does not answer it runs for good with its Redis-backed guards off, and logs REDIS_URL, password
    included ("Redis unavailable at ..."; a known application issue). The init container covers a pod's first start
    only; this covers every start of the container (a crash, an OOM kill, a failed liveness probe). Here Redis is
    down: the container keeps running, waiting, serves nothing, and no log line holds the password."""
    rel = release("default")
    stack = Stack(rel)
    try:
        stack.start_postgres()
        backend = stack.pod("backend", "backend", appsrc.python_image("backend")).start()
        time.sleep(8)
        logs = backend.logs()
        assert backend.running(), logs
        assert logs.count("waiting for Redis") >= 2, logs
        assert REDIS_UNAVAILABLE not in logs
        assert urlsplit(rel.env("backend", "backend")["REDIS_URL"]).password not in logs
        with pytest.raises(OSError):  # nothing listens behind the pod's port: uvicorn has not started
            urllib.request.urlopen(backend.url("http", "/api/v1/health"), timeout=3)
        # The kubelet's SIGTERM (a rollout, a drain) stops a waiting container at once, with status 0: in a
        # container it is PID 1, whose signals without a handler the kernel drops, so it would wait for SIGKILL.
        (process,) = backend.processes()
        os.kill(process["pid"], signal.SIGTERM)
        assert backend.wait(10) == 0
    finally:
        stack.close()


class TestWebSockets:
    @staticmethod
    def frontend_ws_prefix() -> str:
        """The path the frontend opens its chat WebSockets on, read from its source."""
        for path in appsrc.source_root().joinpath("frontend").rglob("*.ts*"):
            if "node_modules" in path.parts or "__tests__" in path.parts:
                continue
            match = re.search(r"\$\{\w+\}(/[\w/-]*/ws/[\w/-]*/)\$\{", path.read_text())
            if match:
                return match.group(1)
        raise AssertionError("no WebSocket URL found in the frontend source")

    @staticmethod
    def routed_to_backend(path: str) -> list[str]:
        """Which edge objects (Ingress, HTTPRoute) of the all-options render send `path` to the backend."""
        rel = release("all-options")
        backend = rel.service("backend")["metadata"]["name"]
        routes = []
        for ingress in rel.objects.of_kind("Ingress"):
            for rule in ingress["spec"]["rules"]:
                best = max((p for p in rule["http"]["paths"] if path.startswith(p["path"])),
                           key=lambda p: len(p["path"]), default=None)
                if best and best["backend"]["service"]["name"] == backend:
                    routes.append(f"Ingress/{ingress['metadata']['name']}")
        matches = [(m["path"]["value"], ref["name"]) for route in rel.objects.of_kind("HTTPRoute")
                   for r in route["spec"]["rules"] for m in r["matches"] for ref in r["backendRefs"]
                   if path.startswith(m["path"]["value"])]
        if matches and max(matches, key=lambda m: len(m[0]))[1] == backend:
            routes.append("HTTPRoute")
        return routes

    def test_the_edge_routes_the_websocket_path_to_the_backend(self):
        prefix = self.frontend_ws_prefix()
        assert sorted(set(r.split("/")[0] for r in self.routed_to_backend(prefix + "x"))) == ["HTTPRoute", "Ingress"]

    def test_authenticated_handshake_succeeds_and_anonymous_is_refused(self, stack, user):
        token = user["access_token"]
        status, conversation = request(stack.pods["backend"], "POST", "/api/v1/conversations",
                                       {"title": "conformance"}, {"Authorization": f"Bearer {token}"})
        assert status == 201, conversation
        path = f"{self.frontend_ws_prefix()}{conversation['id']}"
        assert websocket_handshake(stack.pods["backend"], f"{path}?token={token}") == (101, True)
        # uvicorn logs the path of every accepted WebSocket at INFO, query string included: the token is redacted.
        logs = stack.pods["backend"].logs()
        assert f'"WebSocket {path}?token=[redacted]" [accepted]' in logs, logs[-2000:]
        assert token not in logs
        status, _ = websocket_handshake(stack.pods["backend"], path)
        assert status == 403
        status, _ = websocket_handshake(stack.pods["backend"], f"{path}?token=not-a-token")
        assert status == 403


# -- metrics ---------------------------------------------------------------------------------------------------

def query_parts(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """({metric: label names it is matched on}, grouping labels) of a PromQL expression."""
    grouping = {label.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
                for label in group.split(",") if label.strip()}
    bare = re.sub(r"\b(?:by|without)\s*\([^)]*\)", " ", expr)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    metrics: dict[str, set[str]] = {}
    for name, matchers in re.findall(r"(?<![\w$])([a-zA-Z_:][\w:]*)(?![\w:])\s*(\{[^}]*\})?(?!\s*\()", bare):
        if re.fullmatch(r"le|on|ignoring|group_left|group_right|bool|offset|and|or|unless|inf|nan", name):
            continue
        metrics.setdefault(name, set()).update(re.findall(r"(\w+)\s*[=!]~?", matchers or ""))
    return metrics, grouping


CODE_METRICS = """
import json
import prometheus_client
import backend.shared.metrics as m
out = {}
for value in vars(m).values():
    if isinstance(value, prometheus_client.metrics.MetricWrapperBase):
        names = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}[value._type]
        for suffix in names:
            out[value._name + suffix] = list(value._labelnames) + (["le"] if suffix == "_bucket" else [])
print(json.dumps(out))
"""


def test_metrics_expose_every_metric_and_label_the_dashboard_uses(stack, user, record_property):
    rel = stack.rel
    endpoints = rel.scrape_endpoints("backend")
    if not endpoints:
        pytest.skip(f"{rel.scenario} renders no scrape configuration")
    # Labels of metrics that have no sample yet (no LLM call happens here) come from the code's definitions.
    defined = stack.run_python("backend", "backend", appsrc.python_image("backend"), CODE_METRICS)
    queries = rel.dashboard_queries()
    for port, path in endpoints:
        status, text = request(stack.pods["backend"], "GET", path, port=port)
        assert status == 200, (port, path, text)
        types, samples = exposition_types(text), sample_labels(text)
        for expr in queries:
            metrics, grouping = query_parts(expr)
            assert metrics, expr
            for name, matched in metrics.items():
                family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
                assert family in types, f"{expr}: {name} is not exposed on {port}{path}"
                labels = samples.get(name, set()) | set(defined.get(name, []))
                assert matched <= labels, f"{expr}: {name} has no label {matched - labels} (has {labels})"
                unknown = grouping - labels - rel.target_labels()
                assert not unknown, f"{expr}: grouping by {unknown}, which neither {name} nor the scrape has"
    record_property(f"timing: app {rel.scenario}: dashboard queries checked", str(len(queries)))


def recorded_metrics() -> dict[str, bool]:
    """{metric name: whether any code of the backend records it} from backend/shared/metrics.py's definitions and
    every call of inc/dec/set/observe on them (directly or after .labels(...)) in the backend's code."""
    backend = appsrc.source_root() / "backend"
    names: dict[str, str] = {}
    for node in ast.walk(ast.parse((backend / "shared" / "metrics.py").read_text())):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and node.value.args:
            first = node.value.args[0]
            if isinstance(first, ast.Constant) and isinstance(node.targets[0], ast.Name):
                names[node.targets[0].id] = first.value
    recorded = set()
    for path in backend.rglob("*.py"):
        if "tests" in path.relative_to(backend).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("inc", "dec", "set", "observe"):
                base = node.func.value
                while isinstance(base, (ast.Call, ast.Attribute)):
                    base = base.func if isinstance(base, ast.Call) else base.value
                if isinstance(base, ast.Name) and base.id in names:
                    recorded.add(names[base.id])
    return {name: name in recorded for name in names.values()}


def test_dashboard_queries_only_metrics_the_code_records():
    """A metric that is defined but never set (websocket_connections_active) exposes a constant: a panel on it
    would always show 0."""
    recorded = recorded_metrics()
    assert recorded and any(recorded.values())
    for expr in release("default").dashboard_queries():
        for name in query_parts(expr)[0]:
            family = re.sub(r"_(bucket|sum|count|total)$", "", name)
            assert recorded.get(family, recorded.get(name)), f"{expr}: nothing in the backend records {name}"


# -- the data collector, through the backend ----------------------------------------------------------------------

def test_backend_reaches_the_collector_and_reads_back_its_collections(stack):
    """The backend's own settings and HTTP client, in the backend's pod: DATA_COLLECTOR_URL leads through the
    collector's Service to its one process, which answers every later read of a collection it created (30 reads on
    new connections, 10 at a time; with two collector workers about half answer 404)."""
    result = stack.run_python("backend", "backend", appsrc.python_image("backend"), appsrc.COLLECTOR_READS)
    assert result["base"] == stack.rel.env("backend", "backend")["DATA_COLLECTOR_URL"]
    assert result["codes"] == [200] * 30, result


ROUND_TRIP = """
import json
from backend.shared.encryption import decrypt_api_key, encrypt_api_key
ciphertext, nonce = encrypt_api_key("sk-test")
print(json.dumps(decrypt_api_key(ciphertext, nonce)))
"""


def test_encryption_key_is_accepted_by_the_code(stack):
    """ENCRYPTION_KEY as the backend receives it encrypts and decrypts with the app's own AES-256-GCM code."""
    assert stack.run_python("backend", "backend", appsrc.python_image("backend"), ROUND_TRIP) == "sk-test"


class TestKnownApplicationIssues:
    """What the chart README lists under "Known application issues", shown on the running app. A test here that
    fails means the application changed: update the README."""

    # X-Forwarded-For as it reaches the backend, where S is what the client wrote in the header itself, C the
    # client's address as the first proxy saw it and P that proxy's; then the entry the login rate limit counts for
    # trustedProxyCount 0, 1 and 2, with the chart's --forwarded-allow-ips=*. Read from the code: uvicorn 0.30.0's
    # ProxyHeadersMiddleware makes the leftmost entry the client when it trusts every address; the app
    # (gateway/auth_rate_limiter.py) takes request.client.host for 0, else the (count + 1)-th entry from the right,
    # or the leftmost when there are fewer. The chart README's table is this one.
    FORWARDED = {
        "one proxy that replaces the header": ("C", "CCC"),
        "one proxy that appends to it": ("S, C", "SSS"),
        "two proxies that append to it": ("S, C, P", "SCS"),
        "no proxy": ("S", "SSS"),
    }
    ADDRESSES = {"S": "198.51.100.66", "C": CLIENT_IP, "P": "192.0.2.44"}

    @pytest.mark.parametrize("count", [0, 1, 2])
    def test_trusted_proxy_count_against_a_header_the_client_filled_in(self, stack, user, count):
        """Which address a failed login is counted under, on a backend started with TRUSTED_PROXY_COUNT=count."""
        if stack.rel.scenario != "default":
            pytest.skip("the same code in every scenario: run once")
        backend = stack.pod("backend", "backend", appsrc.python_image("backend"),
                            env_override={"TRUSTED_PROXY_COUNT": str(count)}).start()
        wait_for_probe(backend, stack.rel.container("backend", "backend")["startupProbe"])
        counted = {}
        with redis_client(stack) as client:
            for case, (header, _) in self.FORWARDED.items():
                for key in client.scan_iter("auth_rate_limit:*"):
                    client.delete(key)
                value = ", ".join(self.ADDRESSES[part] for part in header.split(", "))
                status, _ = request(backend, "POST", "/api/v1/auth/login",
                                    {"email": USER["email"], "password": "Wrong-password-1"},
                                    {"X-Forwarded-For": value})
                assert status == 401
                (key,) = client.scan_iter("auth_rate_limit:*")
                address = key.split(":")[1]
                counted[case] = next(name for name, ip in self.ADDRESSES.items() if ip == address)
        assert counted == {case: expected[count] for case, (_, expected) in self.FORWARDED.items()}

    def test_saving_an_llm_key_fails_and_its_500_is_not_counted(self, stack, user):
        backend = stack.pods["backend"]
        status, body = request(backend, "POST", "/api/v1/llm-keys", {"provider": "openai", "api_key": "sk-x" * 8},
                               {"Authorization": f"Bearer {user['access_token']}"})
        assert status == 500, body
        _, metrics = request(backend, "GET", "/metrics")
        assert 'endpoint="/api/v1/llm-keys"' not in metrics
