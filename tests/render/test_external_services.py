"""External PostgreSQL and Redis: no bundled object is rendered or referenced, and the URLs point outside; their TLS
and ACL settings, CA certificates and URLs kept whole in a Secret of the user's, rendered, then proven against real
TLS servers on 127.0.0.1 with the application's own clients (marker `servers`)."""

import base64
import json
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from harness.external import DB_CA, EXTERNAL_DB, PASSWORD, USERNAME, secret_data
from harness.objects import container, env_of, env_sources, pod_spec, volumes_by_mount
from harness.render import HELM, HELM3, render_chart, render_error
from harness.values import deep_merge

EXTERNAL_REDIS = {"redis": {"enabled": False},
                  "externalRedis": {"host": "cache.example.net", "port": 6380, "database": 3, "password": PASSWORD}}


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


