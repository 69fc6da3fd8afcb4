"""Real PostgreSQL and Redis, configured from the rendered objects, reached with the rendered URLs.

Each server runs on 127.0.0.1 on a free port in a temp dir, from Debian's packages
(scripts/install-test-servers.sh installs them; this module runs it when they are missing). The servers get
exactly what the chart gives the containers: credentials from the rendered Secret, Redis settings from the
rendered ConfigMap, Redis started by the rendered start script, readiness checked by the rendered probe
commands. The clients (asyncpg, redis-py) connect with the rendered DATABASE_URL and REDIS_URL, whose password
is full of URL-special characters. Every server is stopped by a finalizer, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import re
import socket
import stat
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest
import redis

from harness import servers
from harness.objects import container
from harness.render import render_chart, render_error
from harness.servers import (
    IS_ROOT,
    STOP_TIMEOUT,
    PostgresServer,
    RedisServer,
    create_database,
    local_url,
    probe_ok,
    rendered_servers,
    wait_until,
)
from harness.values import deep_merge

PASSWORD = "p@ss:w/rd%?#+ &=é"
# postgresql.config: a limit above the backend's worst case (79 at the defaults), a size, a string that needs quoting.
SERVER_CONFIG = {"max_connections": 90, "work_mem": "8MB", "cluster_name": "af's cluster"}
VALUES = {"postgresql": {"auth": {"username": "af_user", "database": "af_db", "password": PASSWORD},
                         "config": SERVER_CONFIG},
          "redis": {"auth": {"password": PASSWORD}}}


# -- what the chart renders ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered():
    return rendered_servers(render_chart(VALUES))


@pytest.fixture(scope="module")
def binaries():
    return servers.binaries()


def started_postgres(request, binaries, rendered) -> PostgresServer:
    """A PostgreSQL server, stopped when the requesting test or module ends, ready by the rendered probe."""
    server = PostgresServer(binaries, rendered["secret"]["POSTGRES_USER"], rendered["secret"]["POSTGRES_PASSWORD"],
                            {e["name"]: e.get("value") for e in rendered["postgresql"]["env"]}["POSTGRES_DB"],
                            config=rendered["postgresql_conf"])
    request.addfinalizer(server.stop)
    server.start()
    readiness = rendered["postgresql"]["readinessProbe"]["exec"]["command"]
    wait_until(lambda: probe_ok(readiness, server.probe_env()), "postgres (rendered readiness probe)", server.log)
    return server


@pytest.fixture(scope="module")
def postgres(request, binaries, rendered):
    server = started_postgres(request, binaries, rendered)
    asyncio.run(create_database(server))
    return server


class TestPostgres:
    def test_rendered_probes_pass(self, postgres, rendered):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe_ok(rendered["postgresql"][probe]["exec"]["command"], postgres.probe_env()), probe

    def test_rendered_database_url_connects(self, postgres, rendered):
        url = rendered["secret"]["DATABASE_URL"]
        assert url.startswith("postgresql+asyncpg://")
        dsn = local_url(url, postgres.port, scheme="postgresql")

        async def session():
            conn = await asyncpg.connect(dsn, timeout=10)
            try:
                await conn.execute("CREATE TABLE IF NOT EXISTS probe (v text)")
                await conn.execute("INSERT INTO probe VALUES ($1)", PASSWORD)
                return (await conn.fetchval("SELECT current_user"), await conn.fetchval("SELECT current_database()"),
                        await conn.fetchval("SELECT v FROM probe LIMIT 1"))
            finally:
                await conn.close()

        assert asyncio.run(session()) == ("af_user", "af_db", PASSWORD)

    def test_postgresql_config_reaches_the_server(self, postgres, rendered):
        """The server runs the chart's configuration file: postgresql.config's values, and initdb's file before them
        (initdb writes default_text_search_config = 'pg_catalog.english'; PostgreSQL's built-in is 'simple')."""
        dsn = local_url(rendered["secret"]["DATABASE_URL"], postgres.port, scheme="postgresql")

        async def show(names):
            conn = await asyncpg.connect(dsn, timeout=10)
            try:
                return {name: await conn.fetchval(f"SHOW {name}") for name in names}
            finally:
                await conn.close()

        shown = asyncio.run(show([*SERVER_CONFIG, "default_text_search_config"]))
        assert shown == {**{k: str(v) for k, v in SERVER_CONFIG.items()},
                         "default_text_search_config": "pg_catalog.english"}

    def test_wrong_password_refused(self, postgres, rendered):
        dsn = local_url(rendered["secret"]["DATABASE_URL"].replace("%40", "%41", 1), postgres.port, "postgresql")

        async def attempt():
            conn = await asyncpg.connect(dsn, timeout=10)
            await conn.close()

        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(attempt())


def test_the_least_max_connections_the_chart_accepts_holds_exactly_its_worst_case(request, binaries):
    """The connection check against the real server: the chart names the least max_connections it accepts (the
    backend's worst case, README: Database connections); a server run with exactly that, from the rendered file,
    takes that many connections of the app's user at once and refuses one more."""
    message = render_error(deep_merge(VALUES, {"postgresql": {"config": {"max_connections": 1}}}))
    least = int(re.search(r"Raise postgresql.config.max_connections to at least (\d+)", message).group(1))
    assert least == 79  # 5 pods x (5 + 10) + the migration Job + 3 reserved, at the defaults
    at_least = {"postgresql": {"config": {"max_connections": least}}}
    rendered = rendered_servers(render_chart(deep_merge(VALUES, at_least)))
    server = started_postgres(request, binaries, rendered)
    dsn = local_url(rendered["secret"]["DATABASE_URL"], server.port, scheme="postgresql").replace("/af_db", "/postgres")

    async def fill() -> tuple[int, type | None]:
        held = [await asyncpg.connect(dsn, timeout=10) for _ in range(least)]
        try:
            await asyncpg.connect(dsn, timeout=10)
            refused = None
        except asyncpg.PostgresError as err:
            refused = type(err)
        finally:
            for conn in held:
                await conn.close()
        return len(held), refused

    assert asyncio.run(fill()) == (least, asyncpg.TooManyConnectionsError)


class TestMigrationWait:
    """The migration Job's wait-for-database command, run as the backend's uid, which the postgres image lacks."""

    UID_WITHOUT_PASSWD_ENTRY = 54321

    def run_wait(self, postgres, with_user: bool, timeout: float = 20) -> subprocess.CompletedProcess:
        wait = container(render_chart(VALUES).get("Job", "agentforge-migrate"), "wait-for-database")
        sources = {e["name"]: e for e in wait["env"]}
        assert sources["PGUSER"]["valueFrom"]["secretKeyRef"]["key"] == "POSTGRES_USER"
        env = postgres.env(DB_HOST="127.0.0.1", DB_PORT=str(postgres.port), HOME="/nonexistent")
        if with_user:
            env["PGUSER"] = postgres.user
        return subprocess.run(wait["command"], env=env, capture_output=True, text=True, timeout=timeout,
                              user=self.UID_WITHOUT_PASSWD_ENTRY)

    @pytest.mark.skipif(not IS_ROOT, reason="runs the command under another uid")
    def test_wait_ends_once_postgres_answers(self, postgres):
        assert self.run_wait(postgres, with_user=True).returncode == 0

    @pytest.mark.skipif(not IS_ROOT, reason="runs the command under another uid")
    def test_without_a_user_name_it_would_wait_forever(self, postgres):
        """The defect PGUSER fixes: libpq cannot name an unknown uid, so pg_isready never even tries."""
        with pytest.raises(subprocess.TimeoutExpired):
            self.run_wait(postgres, with_user=False, timeout=6)


def test_postgres_pre_stop_hook_stops_fast(request, binaries, rendered):
    """The rendered preStop (`pg_ctl stop --mode=fast`) ends PostgreSQL even while a client stays connected."""
    server = started_postgres(request, binaries, rendered)

    async def hold_a_connection_and_stop():
        conn = await asyncpg.connect(host="127.0.0.1", port=server.port, user=server.user,
                                     password=server.password, database="postgres", timeout=10)
        pre_stop = rendered["postgresql"]["lifecycle"]["preStop"]["exec"]["command"]
        proc = await asyncio.create_subprocess_exec(
            *pre_stop, env=server.probe_env(PGDATA=str(server.data)), user=server.account.get("user"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
        conn.terminate()
        return proc.returncode, out.decode(errors="replace")

    started = time.monotonic()
    code, out = asyncio.run(hold_a_connection_and_stop())
    assert code == 0, out
    server.proc.wait(timeout=STOP_TIMEOUT)
    assert time.monotonic() - started < 20


# -- Redis -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis_server(request, binaries, rendered):
    server = RedisServer(binaries, rendered)
    request.addfinalizer(server.stop)
    server.start()
    readiness = server.probe(rendered["redis"]["readinessProbe"]["exec"]["command"])
    wait_until(lambda: probe_ok(readiness, server.env()), "redis (rendered readiness probe)", server.log)
    return server


@pytest.fixture
def client(redis_server, rendered):
    url = local_url(rendered["secret"]["REDIS_URL"], redis_server.port)
    c = redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)
    yield c
    c.close()


class TestRedis:
    def test_rendered_url_authenticates(self, client):
        assert client.ping() is True
        client.set("chart-test", PASSWORD)
        assert client.get("chart-test") == PASSWORD

    @pytest.mark.parametrize("command", [b"PING", b"GET chart-test", b"CONFIG GET maxmemory"])
    def test_unauthenticated_commands_refused(self, redis_server, command):
        # A raw connection: redis-py 8 opens with HELLO (RESP3), which hides Redis' plain NOAUTH reply.
        with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as conn:
            conn.sendall(command + b"\r\n")
            assert conn.recv(512).startswith(b"-NOAUTH")

    def test_unauthenticated_client_refused(self, redis_server):
        anonymous = redis.Redis(host="127.0.0.1", port=redis_server.port, protocol=2, socket_timeout=5)
        try:
            with pytest.raises(redis.exceptions.AuthenticationError):
                anonymous.get("chart-test")
        finally:
            anonymous.close()

    def test_wrong_password_refused(self, redis_server):
        wrong = redis.Redis(host="127.0.0.1", port=redis_server.port, password=PASSWORD + "x", socket_timeout=5)
        try:
            with pytest.raises(redis.exceptions.AuthenticationError):
                wrong.ping()
        finally:
            wrong.close()

    def test_memory_settings_from_the_configmap(self, client):
        assert client.config_get("maxmemory") == {"maxmemory": "268435456"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}

    def test_password_not_on_the_command_line_nor_in_the_environment(self, redis_server):
        pid = redis_server.proc.pid
        # The start script exec'd redis-server: the process the container runs is Redis itself.
        assert Path(f"/proc/{pid}/comm").read_text().strip().startswith("redis-server")
        # Its arguments: the generated config file's path, nothing else.
        assert redis_server.argv.read_text().splitlines() == [str(redis_server.base / "run" / "redis.conf")]
        assert redis_server.env_state.read_text().strip() == "unset"
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        secret = PASSWORD.encode()
        hex_escaped = "".join(f"\\x{b:02x}" for b in secret).encode()
        for text in (cmdline, environ):
            assert secret not in text and hex_escaped not in text
        assert b"REDIS_PASSWORD=" not in environ

    def test_password_file_private(self, redis_server):
        conf = redis_server.base / "run" / "redis.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
        assert PASSWORD not in conf.read_text(encoding="utf-8", errors="replace")  # hex-escaped, not raw

    @pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
    def test_rendered_probes(self, redis_server, rendered, probe):
        command = redis_server.probe(rendered["redis"][probe]["exec"]["command"])
        assert probe_ok(command, redis_server.env())
        if probe != "livenessProbe":
            assert not probe_ok(command, redis_server.env(password="wrong"))


def test_redis_refuses_to_start_without_a_password(binaries, rendered):
    server = RedisServer(binaries, rendered)
    try:
        proc = subprocess.run(server.command, env=server.env(password=""), capture_output=True, text=True,
                              timeout=10)
        assert proc.returncode != 0
        assert "REDIS_PASSWORD is empty" in proc.stderr
    finally:
        server.stop()
