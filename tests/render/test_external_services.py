"""External PostgreSQL and Redis: no bundled object is rendered or referenced, and the URLs point outside; their TLS
and ACL settings, CA certificates and URLs kept whole in a Secret of the user's, rendered, then proven against real
TLS servers on 127.0.0.1 with the application's own clients (marker `servers`)."""

import atexit
import base64
import json
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

import appsrc
import servers
from chart import (
    HELM,
    HELM3,
    container,
    deep_merge,
    env_of,
    env_sources,
    pod_spec,
    render_chart,
    render_error,
    volumes_by_mount,
)

PASSWORD = "p@ss:w/rd%?#+ &=é"
EXTERNAL_DB = {"postgresql": {"enabled": False},
               "externalDatabase": {"host": "db.example.net", "port": 6432, "database": "af_prod",
                                    "username": "af_app", "password": PASSWORD}}
EXTERNAL_REDIS = {"redis": {"enabled": False},
                  "externalRedis": {"host": "cache.example.net", "port": 6380, "database": 3, "password": PASSWORD}}


def secret_data(objects) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in objects.get("Secret", "agentforge-secrets")["data"].items()}


def claim_templates(objects):
    return [t for sts in objects.of_kind("StatefulSet") for t in sts["spec"].get("volumeClaimTemplates", [])]


class TestExternalDatabase:
    @pytest.fixture(scope="class")
    @staticmethod
    def objects():
        return render_chart(EXTERNAL_DB)

    def test_no_bundled_postgresql_object(self, objects):
        assert ("StatefulSet", "agentforge-postgresql") not in objects.inventory()
        assert ("Service", "agentforge-postgresql") not in objects.inventory()
        assert not [o for o in objects if o["metadata"]["labels"]["app.kubernetes.io/component"] == "postgresql"]
        assert [t["metadata"]["labels"]["app.kubernetes.io/component"] for t in claim_templates(objects)] == ["redis"]

    def test_nothing_references_the_bundled_service(self, objects):
        assert "agentforge-postgresql" not in json.dumps(list(objects))
        assert "agentforge-postgresql" not in secret_data(objects)["DATABASE_URL"]

    def test_database_url(self, objects):
        data = secret_data(objects)
        url = urlsplit(data["DATABASE_URL"])
        assert url.scheme == "postgresql+asyncpg"
        assert (url.hostname, url.port, url.path, url.username) == ("db.example.net", 6432, "/af_prod", "af_app")
        assert unquote(url.password) == PASSWORD
        assert (data["POSTGRES_USER"], data["POSTGRES_PASSWORD"]) == ("af_app", PASSWORD)

    def test_migrations_wait_for_the_external_host(self, objects):
        wait = pod_spec(objects.get("Job", "agentforge-migrate"))["initContainers"][0]
        assert "pg_isready" in wait["command"][-1]
        env = {e["name"]: e.get("value") for e in wait["env"]}
        assert (env["DB_HOST"], env["DB_PORT"]) == ("db.example.net", "6432")

    def test_bundled_redis_still_there(self, objects):
        assert ("StatefulSet", "agentforge-redis") in objects.inventory()


class TestExternalRedis:
    @pytest.fixture(scope="class")
    @staticmethod
    def objects():
        return render_chart(EXTERNAL_REDIS)

    def test_no_bundled_redis_object(self, objects):
        for kind in ("StatefulSet", "Service", "ConfigMap"):
            assert (kind, "agentforge-redis") not in objects.inventory()
        assert not [o for o in objects if o["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"]

    def test_nothing_references_the_bundled_service(self, objects):
        assert "agentforge-redis" not in json.dumps(list(objects))
        assert "agentforge-redis" not in secret_data(objects)["REDIS_URL"]

    def test_redis_url(self, objects):
        data = secret_data(objects)
        url = urlsplit(data["REDIS_URL"])
        assert (url.scheme, url.hostname, url.port, url.path) == ("redis", "cache.example.net", 6380, "/3")
        assert unquote(url.password) == PASSWORD
        assert data["REDIS_PASSWORD"] == PASSWORD

    def test_redis_url_without_password(self):
        data = secret_data(render_chart({"redis": {"enabled": False}, "externalRedis": {"host": "cache.example.net"}}))
        assert data["REDIS_URL"] == "redis://cache.example.net:6379/0"


class TestBothExternal:
    @pytest.fixture(scope="class")
    @staticmethod
    def objects():
        return render_chart(EXTERNAL_DB | EXTERNAL_REDIS)

    def test_no_statefulset_service_or_claim_of_the_data_tier(self, objects):
        assert objects.of_kind("StatefulSet") == []
        components = {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objects}
        assert not components & {"postgresql", "redis"}

    def test_password_in_no_object_but_the_secret(self, objects):
        for obj in objects:
            if obj["kind"] != "Secret":
                assert PASSWORD not in json.dumps(obj, ensure_ascii=False), f"{obj['kind']}/{obj['metadata']['name']}"

    def test_backend_still_reads_both_urls(self, objects):
        sources = env_sources(objects, objects.get("Deployment", "agentforge-backend"), "backend")
        for key in ("DATABASE_URL", "REDIS_URL"):
            assert sources[key] == ("Secret", "agentforge-secrets", key)


@pytest.mark.parametrize("values,key", [
    ({"postgresql": {"enabled": False}}, "externalDatabase"),
    ({"redis": {"enabled": False}}, "externalRedis"),
    ({"postgresql": {"enabled": False}, "externalDatabase": {"host": "https://db.example.net"}}, "host"),
])
def test_external_host_required(values, key):
    assert key in render_error(values)


@pytest.mark.parametrize("values,path", [
    ({"postgresql": {"enabled": False}, "externalDatabase": {"host": "db.example.net", "existingSecret": "db-pw"}},
     "externalDatabase.existingSecret"),
    ({"redis": {"enabled": False}, "externalRedis": {"host": "cache.example.net", "existingSecret": "redis-pw"}},
     "externalRedis.existingSecret"),
])
def test_existing_password_secret_must_exist(values, path):
    # `helm template` cannot read the cluster: the chart says so, naming the value, instead of an empty password.
    assert f"{path}: Secret" in render_error(values)


def test_password_secret_error_points_to_the_url_key_mode():
    error = render_error({"postgresql": {"enabled": False},
                          "externalDatabase": {"host": "db.example.net", "existingSecret": "db-pw"}})
    assert "externalDatabase.existingSecretUrlKey" in error and "helm template" in error


# -- TLS and ACL settings, rendered ------------------------------------------------------------------------------

SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
USERNAME = "af@team:1/%é"  # an ACL user name: anything but whitespace
DB_CA = {"configMap": "db-ca", "key": "bundle.pem"}
TLS_DB = deep_merge(EXTERNAL_DB, {"externalDatabase": {"sslMode": "verify-full", "sslRootCert": DB_CA}})
TLS_REDIS = deep_merge(EXTERNAL_REDIS, {"externalRedis": {"username": USERNAME, "tls": {
    "enabled": True, "caCert": {"secret": "redis-ca", "key": "ca.pem"}}}})
BACKEND, MIGRATE = ("Deployment", "agentforge-backend"), ("Job", "agentforge-migrate")


def app_containers(objects):
    """(workload, container) of every pod the render runs."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "Job", "Pod"):
            spec = pod_spec(obj)
            for c in spec.get("initContainers", []) + spec["containers"]:
                yield obj, c


def consumers(objects) -> dict[tuple[str, str, str], dict[str, tuple[str, str, str]]]:
    """{(kind, workload, container): {URL variable: its source}} of every container that gets DATABASE_URL or
    REDIS_URL, by whatever means."""
    out = {}
    for obj, c in app_containers(objects):
        sources = env_sources(objects, obj, c["name"])
        urls = {k: v for k, v in sources.items() if k in ("DATABASE_URL", "REDIS_URL")}
        if urls:
            out[(obj["kind"], obj["metadata"]["name"], c["name"])] = urls
    return out


def ca_file(objects, workload: tuple[str, str], container_name: str, path: str) -> tuple[str, str, str]:
    """(kind, name, key) of the Secret or ConfigMap whose key the container sees at `path`, as the kubelet projects
    the volume mounted over it (its items: key -> path)."""
    obj = objects.get(*workload)
    for mount_path, volume in volumes_by_mount(obj, container_name).items():
        if path.startswith(mount_path + "/"):
            for field, kind, name_field in (("secret", "Secret", "secretName"), ("configMap", "ConfigMap", "name")):
                if field in volume:
                    items = {i["path"]: i["key"] for i in volume[field]["items"]}
                    return kind, volume[field][name_field], items[path.removeprefix(mount_path + "/")]
    raise AssertionError(f"{container_name}: no volume mounted over {path}")


class TestDatabaseTls:
    @pytest.mark.parametrize("mode", SSL_MODES)
    def test_ssl_mode_is_the_parameter_asyncpg_takes(self, mode):
        ca = {"sslRootCert": DB_CA} if mode.startswith("verify") else {}
        url = urlsplit(secret_data(render_chart(deep_merge(EXTERNAL_DB, {"externalDatabase": {"sslMode": mode, **ca}})))
                       ["DATABASE_URL"])
        # `ssl`, which SQLAlchemy hands to asyncpg.connect(ssl=...); never libpq's `sslmode`.
        assert parse_qs(url.query, strict_parsing=True) == {"ssl": [mode]}
        assert (url.scheme, url.hostname, url.port, url.path, url.username) == (
            "postgresql+asyncpg", "db.example.net", 6432, "/af_prod", "af_app")
        assert unquote(url.password) == PASSWORD

    @pytest.mark.parametrize("mode", ["verify_full", "Require", "true", "sslmode=require"])
    def test_a_mode_asyncpg_does_not_know_is_refused(self, mode):
        assert "/externalDatabase/sslMode" in render_error(deep_merge(EXTERNAL_DB, {"externalDatabase": {
            "sslMode": mode}}))

    def test_no_ssl_mode_no_parameter(self):
        assert urlsplit(secret_data(render_chart(EXTERNAL_DB))["DATABASE_URL"]).query == ""

    @pytest.mark.parametrize("ca", [DB_CA, {"secret": "db-ca-secret"}])
    def test_each_database_client_finds_the_ca_where_pgsslrootcert_points(self, ca):
        values = deep_merge(EXTERNAL_DB, {"externalDatabase": {"sslMode": "verify-full", "sslRootCert": ca}})
        objects = render_chart(values)
        expected = ("ConfigMap", "db-ca", "bundle.pem") if "configMap" in ca else ("Secret", "db-ca-secret", "ca.crt")
        clients = {(kind, name, c) for (kind, name, c), urls in consumers(objects).items() if "DATABASE_URL" in urls}
        assert clients == {(*BACKEND, "backend"), (*MIGRATE, "migrate")}
        for kind, name, c in clients:
            path = env_of(container(objects.get(kind, name), c))["PGSSLROOTCERT"]["value"]
            assert ca_file(objects, (kind, name), c, path) == expected

    def test_no_other_container_gets_the_ca(self):
        objects = render_chart(TLS_DB)
        for obj, c in app_containers(objects):
            if (obj["kind"], obj["metadata"]["name"], c["name"]) not in {(*BACKEND, "backend"), (*MIGRATE, "migrate")}:
                assert "PGSSLROOTCERT" not in env_of(c), c["name"]
                assert not [m for m in c.get("volumeMounts", []) if m["name"] == "postgresql-ca"], c["name"]

    def test_pgsslrootcert_in_extra_env_stands_for_the_ca(self):
        """A CA of the image (a publicly trusted server) named in backend.extraEnv: verify-full without sslRootCert."""
        values = deep_merge(EXTERNAL_DB, {"externalDatabase": {"sslMode": "verify-full"}, "backend": {"extraEnv": [
            {"name": "PGSSLROOTCERT", "value": "/etc/ssl/certs/ca-certificates.crt"}]}})
        objects = render_chart(values)
        assert secret_data(objects)["DATABASE_URL"].endswith("?ssl=verify-full")
        assert env_of(container(objects.get(*MIGRATE), "migrate"))["PGSSLROOTCERT"]["value"] == \
            "/etc/ssl/certs/ca-certificates.crt"


class TestRedisTlsAndUser:
    @pytest.fixture(scope="class")
    @staticmethod
    def objects():
        return render_chart(TLS_REDIS)

    def test_rediss_url_with_the_user_and_ca(self, objects):
        url = urlsplit(secret_data(objects)["REDIS_URL"])
        assert (url.scheme, url.hostname, url.port, url.path) == ("rediss", "cache.example.net", 6380, "/3")
        assert (unquote(url.username), unquote(url.password)) == (USERNAME, PASSWORD)
        query = parse_qs(url.query, strict_parsing=True)
        assert query == {"ssl_cert_reqs": ["required"], "ssl_check_hostname": ["true"],
                         "ssl_ca_certs": ["/etc/agentforge/tls/redis/ca.crt"]}

    def test_both_redis_clients_find_the_ca_where_the_url_points(self, objects):
        path = parse_qs(urlsplit(secret_data(objects)["REDIS_URL"]).query)["ssl_ca_certs"][0]
        clients = {(kind, name, c) for (kind, name, c), urls in consumers(objects).items() if "REDIS_URL" in urls}
        assert clients == {(*BACKEND, "backend"), (*BACKEND, "wait-for-redis")}
        for kind, name, c in clients:
            assert ca_file(objects, (kind, name), c, path) == ("Secret", "redis-ca", "ca.pem")

    def test_hostname_check_can_be_turned_off(self):
        values = deep_merge(TLS_REDIS, {"externalRedis": {"tls": {"checkHostname": False}}})
        assert "ssl_check_hostname" not in parse_qs(urlsplit(secret_data(render_chart(values))["REDIS_URL"]).query)

    def test_tls_without_ca_uses_the_system_cas(self):
        values = deep_merge(EXTERNAL_REDIS, {"externalRedis": {"tls": {"enabled": True}}})
        objects = render_chart(values)
        url = urlsplit(secret_data(objects)["REDIS_URL"])
        assert url.scheme == "rediss" and "ssl_ca_certs" not in parse_qs(url.query)
        assert not [v for v in pod_spec(objects.get(*BACKEND))["volumes"] if v["name"] == "redis-ca"]

    @pytest.mark.parametrize("password,userinfo", [(PASSWORD, f"{USERNAME}:{PASSWORD}@"), ("", f"{USERNAME}@")])
    def test_acl_user_without_tls(self, password, userinfo):
        values = deep_merge(EXTERNAL_REDIS, {"externalRedis": {"username": USERNAME, "password": password}})
        url = secret_data(render_chart(values))["REDIS_URL"]
        assert url.startswith("redis://") and unquote(url.removeprefix("redis://").split("cache.example.net")[0]) \
            == userinfo

    @pytest.mark.parametrize("values", [TLS_REDIS, deep_merge(EXTERNAL_REDIS, {"externalRedis": {"username": "u"}})])
    def test_wait_for_redis_uses_the_backends_client_and_url(self, values):
        """TLS or an ACL user: redis-cli would not connect as the backend does, so the backend image's redis-py does,
        with the backend's own REDIS_URL."""
        objects = render_chart(values)
        wait, backend = (container(objects.get(*BACKEND), name) for name in ("wait-for-redis", "backend"))
        assert wait["image"] == backend["image"] and wait["command"][:2] == ["python", "-c"]
        assert "Redis.from_url(os.environ[\"REDIS_URL\"]" in wait["command"][2]
        sources = {name: env_sources(objects, objects.get(*BACKEND), name) for name in ("wait-for-redis", "backend")}
        assert sources["wait-for-redis"]["REDIS_URL"] == sources["backend"]["REDIS_URL"]
        assert "REDISCLI_AUTH" not in sources["wait-for-redis"]

    def test_plain_external_redis_keeps_redis_cli(self):
        wait = container(render_chart(EXTERNAL_REDIS).get(*BACKEND), "wait-for-redis")
        assert wait["image"].startswith("library/redis:") and "redis-cli" in wait["command"][-1]


# -- URLs kept whole in the user's Secret --------------------------------------------------------------------------

URL_SECRETS = {
    "postgresql": {"enabled": False},
    "externalDatabase": {"host": "db.example.net", "existingSecret": "db-conn", "existingSecretUrlKey": "database-url",
                         "sslRootCert": {"secret": "db-ca"}},
    "redis": {"enabled": False},
    "externalRedis": {"host": "cache.example.net", "existingSecret": "redis-conn", "existingSecretUrlKey": "redis-url",
                      "tls": {"caCert": {"configMap": "redis-ca"}}},
}
FROM_USER = {"DATABASE_URL": ("Secret", "db-conn", "database-url"), "REDIS_URL": ("Secret", "redis-conn", "redis-url")}


class TestUrlsFromTheUsersSecret:
    @pytest.fixture(scope="class")
    @staticmethod
    def objects():
        return render_chart(URL_SECRETS)

    @pytest.mark.parametrize("helm", [HELM, HELM3])
    def test_helm_template_renders_without_a_cluster(self, helm):
        """No lookup: the helm CLI's `helm template` (which has no cluster) renders it, where the password-from-Secret
        mode fails (test_existing_password_secret_must_exist)."""
        objects = render_chart(URL_SECRETS, helm_binary=helm, validate=False)
        assert consumers(objects)[(*BACKEND, "backend")] == FROM_USER

    def test_every_consumer_reads_the_users_secret(self, objects):
        assert consumers(objects) == {
            (*BACKEND, "backend"): FROM_USER,
            (*BACKEND, "wait-for-redis"): {"REDIS_URL": FROM_USER["REDIS_URL"]},
            (*MIGRATE, "migrate"): {"DATABASE_URL": FROM_USER["DATABASE_URL"]},
        }

    def test_data_collector_reads_neither(self, objects):
        collector = objects.get("Deployment", "agentforge-data-collector")
        for c in pod_spec(collector)["containers"]:
            assert not {"DATABASE_URL", "REDIS_URL", "PGSSLROOTCERT"} & set(env_sources(objects, collector, c["name"]))

    def test_chart_secret_holds_no_url_nor_password(self, objects):
        assert set(secret_data(objects)) == {"SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_USER"}

    def test_cas_still_mounted(self, objects):
        """The URL is the user's, the CA mount the chart's: PGSSLROOTCERT for asyncpg, and the path the user's
        REDIS_URL names in ssl_ca_certs."""
        path = env_of(container(objects.get(*MIGRATE), "migrate"))["PGSSLROOTCERT"]["value"]
        assert ca_file(objects, MIGRATE, "migrate", path) == ("Secret", "db-ca", "ca.crt")
        for c in ("backend", "wait-for-redis"):
            assert ca_file(objects, BACKEND, c, "/etc/agentforge/tls/redis/ca.crt") == \
                ("ConfigMap", "redis-ca", "ca.crt")

    def test_one_url_from_a_secret_the_other_composed(self):
        values = {k: v for k, v in URL_SECRETS.items() if k != "externalRedis"} | EXTERNAL_REDIS
        objects = render_chart(values)
        assert consumers(objects)[(*BACKEND, "backend")] == {
            "DATABASE_URL": FROM_USER["DATABASE_URL"], "REDIS_URL": ("Secret", "agentforge-secrets", "REDIS_URL")}
        assert secret_data(objects)["REDIS_URL"].startswith("redis://")
        assert "DATABASE_URL" not in secret_data(objects)

    def test_another_url_source_rolls_the_pods(self):
        """The chart cannot read the user's Secret, so the checksums cover what it can: the reference. Pointing at
        another Secret or key changes the pod templates (and the plain Job's name), not the app Secret's checksum."""
        other = deep_merge(URL_SECRETS, {"externalDatabase": {"existingSecretUrlKey": "database-url-v2"}})
        # Fixed keys: the Secret's content, and so its checksum, is the same in both renders.
        gitops = {"migrations": {"useHelmHooks": False}, "secrets": {
            "secretKey": "k" * 40, "encryptionKey": base64.urlsafe_b64encode(bytes(range(32))).decode()}}
        a, b = render_chart(deep_merge(URL_SECRETS, gitops)), render_chart(deep_merge(other, gitops))
        templates = [o.get(*BACKEND)["spec"]["template"] for o in (a, b)]
        assert templates[0] != templates[1]
        assert templates[0]["metadata"]["annotations"]["checksum/secret"] == \
            templates[1]["metadata"]["annotations"]["checksum/secret"]
        jobs = [{j["metadata"]["name"] for j in o.of_kind("Job")} for o in (a, b)]
        assert jobs[0] != jobs[1]


# -- Proofs against real TLS servers, with the application's own clients ----------------------------------------

# What the backend does with the URLs, run by the backend's virtualenv (the versions its requirements pin): an async
# engine as backend/shared/database.py creates it (alembic/env.py uses the same dialect), and redis.asyncio's
# from_url as gateway/rate_limiter.py calls it. One JSON line: what the server says, or the error.
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


@pytest.mark.servers
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


@pytest.mark.servers
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


@pytest.mark.servers
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

