"""External PostgreSQL and Redis over TLS and with ACL users: the rendered wait and connect commands, run by the
app's virtualenvs, against real servers with their own certificates."""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from harness import appsrc, servers
from harness.external import DB_CA, EXTERNAL_DB, PASSWORD, USERNAME, secret_data
from harness.objects import container, env_of, volumes_by_mount
from harness.render import render_chart
from harness.values import deep_merge

# What the backend does with the URLs, run by the backend's virtualenv (the versions its requirements pin): an async
# engine as backend/shared/database.py creates it (alembic/env.py uses the same dialect), and redis.asyncio's
# from_url as gateway/rate_limiter.py calls it. One JSON line: what the server says, or the error.
BACKEND = ("Deployment", "agentforge-backend")

CLIENT = r'''
import asyncio, json, sys


async def database(url):
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, pool_pre_ping=True)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))).one()
            return {"user": row[0], "tls": row[1]}
    finally:
        await engine.dispose()


async def redis(url):
    from redis.asyncio import Redis

    client = Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
    try:
        await client.set("chart-test", "stored")
        return {"ping": await client.ping(), "get": await client.get("chart-test"), "user": await client.acl_whoami()}
    finally:
        await client.aclose()


kind, url = sys.argv[1:3]
try:
    print(json.dumps({"ok": True, **asyncio.run(globals()[kind](url))}))
except Exception as error:
    print(json.dumps({"ok": False, "error": f"{type(error).__name__}: {error}"}))
'''


@pytest.fixture(scope="module")
def app_python() -> Path:
    python = appsrc.install_dir("backend") / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: the application's clients (SQLAlchemy, asyncpg, redis-py at the versions it "
                    "pins) come from its virtualenv, which `make tools` installs", pytrace=False)
    return python


@pytest.fixture(scope="module")
def pki(request):
    ca = servers.ThrowawayCa()
    request.addfinalizer(ca.cleanup)
    return ca


@pytest.fixture(scope="module")
def other_ca(request):
    """A CA that signed none of the servers' certificates."""
    ca = servers.ThrowawayCa("Some other CA")
    request.addfinalizer(ca.cleanup)
    return ca


class Pod:
    """A rendered container's view of its CA volumes, on this machine: each configMap/secret volume it mounts,
    projected (items: key -> path) into a temp dir from the data the test gives for that Secret or ConfigMap."""

    def __init__(self, objects, workload: tuple[str, str], container_name: str, data: dict[tuple[str, str], dict]):
        self.root = Path(tempfile.mkdtemp(prefix="af-pod-"))
        atexit.register(shutil.rmtree, self.root, True)  # the client runs after this object is gone
        self.mounts: dict[str, Path] = {}
        obj = objects.get(*workload)
        self.env = {name: e.get("value") for name, e in env_of(container(obj, container_name)).items()}
        for mount_path, volume in volumes_by_mount(obj, container_name).items():
            for field, kind, name_field in (("secret", "Secret", "secretName"), ("configMap", "ConfigMap", "name")):
                if field in volume:
                    folder = self.root / f"volume{len(self.mounts)}"
                    folder.mkdir()
                    for item in volume[field]["items"]:
                        (folder / item["path"]).write_text(data[(kind, volume[field][name_field])][item["key"]])
                    self.mounts[mount_path] = folder

    def path(self, path: str) -> str:
        """Where a path inside the container is on this machine."""
        for mount_path, folder in self.mounts.items():
            if path.startswith(mount_path + "/"):
                return str(folder / path.removeprefix(mount_path + "/"))
        raise AssertionError(f"{path} is in no volume the container mounts ({sorted(self.mounts)})")


def run_client(app_python: Path, kind: str, url: str, env: dict[str, str] | None = None) -> dict:
    """The app's client against a URL, with an empty HOME (no ~/.postgresql/root.crt, as in the image)."""
    with tempfile.TemporaryDirectory(prefix="af-home-") as home:
        proc = subprocess.run([str(app_python), "-c", CLIENT, kind, url], capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "HOME": home, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


DB_VALUES = {"postgresql": {"enabled": False},
             "externalDatabase": {"host": "db.example.net", "database": "af_tls", "username": "af_app",
                                  "password": PASSWORD, "sslRootCert": {"secret": "db-ca", "key": "ca.pem"}}}


class TestDatabaseTlsServers:
    """A PostgreSQL that takes TLS connections only (hostssl), with a certificate for `localhost` signed by a test
    CA; the URL as rendered for each mode, host and port swapped for the server's; the CA where the rendered
    PGSSLROOTCERT points, projected from the Secret the values name."""

    @pytest.fixture(scope="class")
    @staticmethod
    def server(request, pki):
        cert = pki.issue("postgresql", ["localhost"])
        server = servers.start_postgres(servers.binaries(), "af_app", PASSWORD, "af_tls", tls=cert)
        request.addfinalizer(server.stop)
        return server

    def connect(self, app_python, server, mode: str, ca_pem: str | None, host: str = "localhost") -> dict:
        values = deep_merge(DB_VALUES, {"externalDatabase": {"sslMode": mode}})
        if ca_pem is None:
            values["externalDatabase"]["sslRootCert"] = {"secret": ""}
        objects = render_chart(values)
        url = servers.local_url(secret_data(objects)["DATABASE_URL"], server.port, host=host)
        pod = Pod(objects, BACKEND, "backend", {("Secret", "db-ca"): {"ca.pem": ca_pem}})
        env = {"PGSSLROOTCERT": pod.path(pod.env["PGSSLROOTCERT"])} if ca_pem is not None else {}
        return run_client(app_python, "database", url, env)

    def test_require_connects_over_tls(self, app_python, server):
        assert self.connect(app_python, server, "require", None) == {"ok": True, "user": "af_app", "tls": True}

    def test_verify_full_with_the_right_ca_and_hostname(self, app_python, server, pki):
        assert self.connect(app_python, server, "verify-full", pki.ca_cert.read_text()) == {
            "ok": True, "user": "af_app", "tls": True}

    def test_verify_full_refuses_another_ca(self, app_python, server, other_ca):
        result = self.connect(app_python, server, "verify-full", other_ca.ca_cert.read_text())
        assert not result["ok"] and "CERTIFICATE_VERIFY_FAILED" in result["error"]

    def test_verify_full_refuses_another_hostname_which_verify_ca_accepts(self, app_python, server, pki):
        full = self.connect(app_python, server, "verify-full", pki.ca_cert.read_text(), host="127.0.0.1")
        assert not full["ok"] and "CERTIFICATE_VERIFY_FAILED" in full["error"] and "127.0.0.1" in full["error"]
        assert self.connect(app_python, server, "verify-ca", pki.ca_cert.read_text(), host="127.0.0.1")["ok"]

    def test_require_with_a_ca_verifies_the_chain(self, app_python, server, other_ca):
        result = self.connect(app_python, server, "require", other_ca.ca_cert.read_text())
        assert not result["ok"] and "CERTIFICATE_VERIFY_FAILED" in result["error"]

    def test_verify_full_without_a_ca_fails_as_the_chart_warns(self, app_python, server):
        """Why the chart refuses verify-full without sslRootCert: asyncpg reads no system CA."""
        url = servers.local_url(secret_data(render_chart(deep_merge(EXTERNAL_DB, {"externalDatabase": {
            "sslMode": "verify-full", "sslRootCert": DB_CA}})))["DATABASE_URL"], server.port, host="localhost")
        result = run_client(app_python, "database", url)
        assert not result["ok"] and "root certificate file" in result["error"]

    def test_tls_server_refuses_plain_connections(self, app_python, server):
        result = self.connect(app_python, server, "disable", None)
        assert not result["ok"] and "no pg_hba.conf entry" in result["error"]

    def test_libpq_spelling_fails_every_connection(self, app_python, server):
        """Why the chart writes `ssl=`: SQLAlchemy hands `sslmode` to asyncpg.connect, which has no such argument."""
        rendered = secret_data(render_chart(deep_merge(DB_VALUES, {"externalDatabase": {
            "sslMode": "require", "sslRootCert": {"secret": ""}}})))["DATABASE_URL"]
        result = run_client(app_python, "database",
                            servers.local_url(rendered.replace("?ssl=", "?sslmode="), server.port))
        assert not result["ok"] and "unexpected keyword argument 'sslmode'" in result["error"]


def test_require_refused_by_a_server_without_tls(app_python):
    server = servers.start_postgres(servers.binaries(), "af_app", PASSWORD, "af_tls")
    try:
        url = secret_data(render_chart(deep_merge(DB_VALUES, {"externalDatabase": {
            "sslMode": "require", "sslRootCert": {"secret": ""}}})))["DATABASE_URL"]
        result = run_client(app_python, "database", servers.local_url(url, server.port))
        assert not result["ok"] and "rejected SSL upgrade" in result["error"]
        # The same server, the same URL without the parameter: asyncpg's default `prefer` falls back to plain TCP.
        plain = run_client(app_python, "database", servers.local_url(url.removesuffix("?ssl=require"), server.port))
        assert plain == {"ok": True, "user": "af_app", "tls": False}
    finally:
        server.stop()


REDIS_VALUES = {"redis": {"enabled": False},
                "externalRedis": {"host": "cache.example.net", "port": 6380, "database": 3, "username": USERNAME,
                                  "password": PASSWORD, "tls": {"enabled": True,
                                                                "caCert": {"secret": "redis-ca", "key": "ca.pem"}}}}


class TestRedisTlsServers:
    """A Redis that listens with TLS only (tls-port) and knows one ACL user (the default user off), with a
    certificate for `localhost` signed by a test CA; the rendered REDIS_URL, host and port swapped for the server's,
    its ssl_ca_certs path mapped to the CA projected from the Secret the values name."""

    @pytest.fixture(scope="class")
    @staticmethod
    def server(request, pki):
        servers.binaries()
        cert, key = pki.issue("redis", ["localhost"])
        server = servers.PlainRedis(PASSWORD, username=USERNAME, tls=(cert, key, pki.ca_cert))
        request.addfinalizer(server.stop)
        return server.start()

    def url(self, server, values=REDIS_VALUES, ca_pem: str | None = None, host: str = "localhost") -> str:
        """The rendered URL, its host and port swapped, and the CA path it names replaced by where this machine has
        the file the container would see there; nothing else changed."""
        objects = render_chart(values)
        url = servers.local_url(secret_data(objects)["REDIS_URL"], server.port, host=host)
        for path in parse_qs(urlsplit(url).query).get("ssl_ca_certs", []):
            pod = Pod(objects, BACKEND, "backend", {("Secret", "redis-ca"): {"ca.pem": ca_pem}})
            assert url.count(f"ssl_ca_certs={path}") == 1
            url = url.replace(f"ssl_ca_certs={path}", f"ssl_ca_certs={pod.path(path)}")
        return url

    def test_rendered_url_authenticates_as_the_acl_user_over_tls(self, app_python, server, pki):
        result = run_client(app_python, "redis", self.url(server, ca_pem=pki.ca_cert.read_text()))
        assert result == {"ok": True, "ping": True, "get": "stored", "user": USERNAME}

    def test_wrong_password_refused(self, app_python, server, pki):
        wrong = deep_merge(REDIS_VALUES, {"externalRedis": {"password": PASSWORD + "x"}})
        result = run_client(app_python, "redis", self.url(server, wrong, ca_pem=pki.ca_cert.read_text()))
        assert not result["ok"] and result["error"].startswith("AuthenticationError")

    def test_plain_tcp_refused(self, app_python, server):
        plain = {"redis": REDIS_VALUES["redis"], "externalRedis": {
            k: v for k, v in REDIS_VALUES["externalRedis"].items() if k != "tls"}}
        url = self.url(server, plain)
        assert url.startswith("redis://")
        result = run_client(app_python, "redis", url)
        assert not result["ok"] and result["error"].startswith("ConnectionError")

    def test_another_ca_refused(self, app_python, server, other_ca):
        result = run_client(app_python, "redis", self.url(server, ca_pem=other_ca.ca_cert.read_text()))
        assert not result["ok"] and "CERTIFICATE_VERIFY_FAILED" in result["error"]

    def test_hostname_checked_unless_turned_off(self, app_python, server, pki):
        ca = pki.ca_cert.read_text()
        checked = run_client(app_python, "redis", self.url(server, ca_pem=ca, host="127.0.0.1"))
        assert not checked["ok"] and "CERTIFICATE_VERIFY_FAILED" in checked["error"]
        unchecked = deep_merge(REDIS_VALUES, {"externalRedis": {"tls": {"checkHostname": False}}})
        assert run_client(app_python, "redis", self.url(server, unchecked, ca_pem=ca, host="127.0.0.1"))["ok"]

    def wait_for_redis(self, app_python, url: str) -> subprocess.Popen:
        """The rendered wait-for-redis command, run by the backend's virtualenv with the given REDIS_URL."""
        wait = container(render_chart(REDIS_VALUES).get(*BACKEND), "wait-for-redis")
        assert wait["command"][0] == "python"
        return subprocess.Popen([str(app_python), *wait["command"][1:]], stdout=subprocess.PIPE, text=True,
                                env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "REDIS_URL": url})

    def test_wait_for_redis_ends_once_the_backends_client_gets_pong(self, app_python, server, pki):
        proc = self.wait_for_redis(app_python, self.url(server, ca_pem=pki.ca_cert.read_text()))
        assert proc.wait(timeout=60) == 0, proc.stdout.read()

    @pytest.mark.parametrize("problem", ["wrong password", "another CA"])
    def test_wait_for_redis_keeps_waiting_when_the_backend_would_fail(self, app_python, server, pki, other_ca,
                                                                      problem):
        wrong = "not-the-password-Zq9"
        values = deep_merge(REDIS_VALUES, {"externalRedis": {"password": wrong}}) if problem == "wrong password" \
            else REDIS_VALUES
        ca = (other_ca if problem == "another CA" else pki).ca_cert.read_text()
        proc = self.wait_for_redis(app_python, self.url(server, values, ca_pem=ca))
        timer = threading.Timer(60, proc.kill)
        timer.start()
        try:
            line = proc.stdout.readline()
            assert proc.poll() is None, "the wait ended"
        finally:
            timer.cancel()
            proc.kill()
            proc.wait(timeout=10)
        expected = "AuthenticationError" if problem == "wrong password" else "CERTIFICATE_VERIFY_FAILED"
        assert line.startswith("waiting for Redis to answer the backend's authenticated PING") and expected in line
        assert wrong not in line and PASSWORD not in line  # no password in the log
