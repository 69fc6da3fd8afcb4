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
import base64
import glob
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis

from chart import ROOT, container, render_chart

pytestmark = pytest.mark.servers

PASSWORD = "p@ss:w/rd%?#+ &=é"
VALUES = {"postgresql": {"auth": {"username": "af_user", "database": "af_db", "password": PASSWORD}},
          "redis": {"auth": {"password": PASSWORD}}}
START_TIMEOUT = 30
STOP_TIMEOUT = 15
IS_ROOT = os.geteuid() == 0


# -- what the chart renders ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered():
    objects = render_chart(VALUES)
    secret = {k: base64.b64decode(v).decode() for k, v in objects.get("Secret", "agentforge-secrets")["data"].items()}
    return {
        "secret": secret,
        "config": objects.get("ConfigMap", "agentforge-config")["data"],
        "redis_conf": objects.get("ConfigMap", "agentforge-redis")["data"]["redis.conf"],
        "redis": container(objects.get("StatefulSet", "agentforge-redis"), "redis"),
        "postgresql": container(objects.get("StatefulSet", "agentforge-postgresql"), "postgresql"),
    }


def local_url(url: str, port: int, scheme: str | None = None) -> str:
    """The rendered URL with its host and port replaced by 127.0.0.1:port (userinfo kept, still encoded)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit((scheme or parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- process helpers -------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(os.path.realpath(initdb)).parent if initdb else None


@pytest.fixture(scope="module")
def binaries():
    if pg_bin() is None or not shutil.which("redis-server"):
        subprocess.run(["bash", str(ROOT / "scripts" / "install-test-servers.sh")], check=False, timeout=600)
    if pg_bin() is None or not shutil.which("redis-server"):
        pytest.fail("PostgreSQL or Redis missing: run scripts/install-test-servers.sh")
    return {"pg": pg_bin(), "PATH": f"{pg_bin()}:{os.environ['PATH']}"}


def wait_until(check, what: str, log: Path, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not ready after {timeout}s; log:\n{log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


def probe_ok(command: list[str], env: dict[str, str]) -> bool:
    """Run a rendered exec probe as the kubelet would: success is exit code 0."""
    try:
        return subprocess.run(command, env=env, capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# -- PostgreSQL --------------------------------------------------------------------------------------------------

class PostgresServer:
    """initdb and postgres as the `postgres` user (when root), like the image's entrypoint does with its env."""

    def __init__(self, binaries: dict, rendered: dict):
        self.bin = binaries["pg"]
        self.path = binaries["PATH"]
        self.user = rendered["secret"]["POSTGRES_USER"]
        self.password = rendered["secret"]["POSTGRES_PASSWORD"]
        self.database = rendered["config"]["POSTGRES_DB"]
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="af-pg-"))
        self.data = self.base / "pgdata"
        self.log = self.base / "postgres.log"
        self.proc: subprocess.Popen | None = None
        if IS_ROOT:
            os.chown(self.base, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
        self.account = {"user": "postgres", "group": "postgres"} if IS_ROOT else {}

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": self.path, "LANG": "C.UTF-8", "HOME": str(self.base), **extra}

    def start(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if IS_ROOT:
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
                        "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                       env=self.env(), check=True, capture_output=True, timeout=120, **self.account)
        pwfile.unlink()
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-c", "listen_addresses=127.0.0.1",
                 "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.base}", "-c", "fsync=off"],
                env=self.env(), stdout=log, stderr=subprocess.STDOUT, process_group=0, **self.account)

    def probe_env(self, **extra: str) -> dict[str, str]:
        """The container's environment for the rendered probes: POSTGRES_USER/DB, plus the port."""
        return self.env(POSTGRES_USER=self.user, POSTGRES_DB=self.database, PGPORT=str(self.port), **extra)

    def stop(self) -> None:
        if self.proc:
            stop(self.proc, signal.SIGINT)  # fast shutdown
        shutil.rmtree(self.base, ignore_errors=True)


async def create_database(server: PostgresServer) -> None:
    """What the image's entrypoint does after initdb when POSTGRES_DB is not `postgres`."""
    conn = await asyncpg.connect(host="127.0.0.1", port=server.port, user=server.user, password=server.password,
                                 database="postgres", timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{server.database}"')
    finally:
        await conn.close()


def started_postgres(request, binaries, rendered) -> PostgresServer:
    """A PostgreSQL server, stopped when the requesting test or module ends, ready by the rendered probe."""
    server = PostgresServer(binaries, rendered)
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

    def test_wrong_password_refused(self, postgres, rendered):
        dsn = local_url(rendered["secret"]["DATABASE_URL"].replace("%40", "%41", 1), postgres.port, "postgresql")

        async def attempt():
            conn = await asyncpg.connect(dsn, timeout=10)
            await conn.close()

        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(attempt())


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

class RedisServer:
    """redis-server started by the rendered start script, with the rendered redis.conf moved into a temp dir."""

    def __init__(self, binaries: dict, rendered: dict):
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="af-redis-"))
        self.log = self.base / "redis.log"
        self.password = rendered["secret"]["REDIS_PASSWORD"]
        # A redis-server first on PATH that records its arguments and whether REDIS_PASSWORD is still set, then
        # execs the real one: Redis rewrites its process title over argv and environ, so /proc/<pid>/cmdline
        # and /proc/<pid>/environ alone would not show what it was started with.
        (self.base / "bin").mkdir()
        self.argv = self.base / "argv"
        self.env_state = self.base / "env-state"
        wrapper = self.base / "bin" / "redis-server"
        wrapper.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$@" > {self.argv}\n'
            f'if [ -n "${{REDIS_PASSWORD+set}}" ]; then echo set; else echo unset; fi > {self.env_state}\n'
            f'exec {shutil.which("redis-server")} "$@"\n')
        wrapper.chmod(0o755)
        self.path = f"{self.base / 'bin'}:{binaries['PATH']}"
        (self.base / "etc").mkdir()
        (self.base / "run").mkdir()
        (self.base / "data").mkdir()
        conf = []
        for line in rendered["redis_conf"].splitlines():
            key = line.split(" ", 1)[0]
            conf.append({"dir": f"dir {self.base / 'data'}", "port": f"port {self.port}"}.get(key, line))
        conf += ["bind 127.0.0.1", "daemonize no", f"logfile {self.log}"]
        (self.base / "etc" / "redis.conf").write_text("\n".join(conf) + "\n")
        script = rendered["redis"]["command"][-1]
        assert script.count("/etc/redis/redis.conf") == 1 and script.count("/run/redis/redis.conf") == 2, script
        self.script = (script.replace("/etc/redis/redis.conf", str(self.base / "etc" / "redis.conf"))
                       .replace("/run/redis/redis.conf", str(self.base / "run" / "redis.conf")))
        self.command = [*rendered["redis"]["command"][:-1], self.script]
        self.proc: subprocess.Popen | None = None

    def env(self, password: str | None = None) -> dict[str, str]:
        return {"PATH": self.path, "REDIS_PASSWORD": self.password if password is None else password}

    def probe(self, command: list[str]) -> list[str]:
        return [*command[:-1], command[-1].replace("-p 6379", f"-p {self.port}")]

    def start(self) -> None:
        self.log.touch()
        self.proc = subprocess.Popen(self.command, env=self.env(), stdout=subprocess.DEVNULL,
                                     stderr=self.log.open("a"), process_group=0)

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)


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
