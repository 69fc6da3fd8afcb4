"""External PostgreSQL and Redis: no bundled object is rendered or referenced, and the URLs point outside."""

import base64
import json
from urllib.parse import unquote, urlsplit

import pytest

from chart import env_sources, pod_spec, render_chart, render_error

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
