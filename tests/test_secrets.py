"""Secrets: where every secret env var comes from, no secret outside Secrets, URLs composed and encoded."""

import base64
from urllib.parse import unquote, urlsplit

import pytest

from chart import SECRET_ENV_NAMES, env_sources, pod_spec, render_chart

SECRET = "agentforge-secrets"
APP_SECRET_KEYS = {"SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_USER", "POSTGRES_PASSWORD", "REDIS_PASSWORD",
                   "DATABASE_URL", "REDIS_URL"}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod")


def decoded(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def app_containers(objects):
    for obj in objects:
        if obj["kind"] in WORKLOAD_KINDS:
            spec = pod_spec(obj)
            for c in spec["containers"] + spec.get("initContainers", []):
                yield obj, c["name"]


def test_secret_holds_exactly_the_app_keys(default_render):
    assert set(default_render.get("Secret", SECRET)["data"]) == APP_SECRET_KEYS


def test_secret_kept_on_uninstall(default_render):
    assert default_render.get("Secret", SECRET)["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.parametrize("workload,container", [
    (("Deployment", "agentforge-backend"), "backend"),
    (("Job", "agentforge-migrate"), "migrate"),
])
def test_secret_env_read_from_the_app_secret(default_render, workload, container):
    sources = env_sources(default_render, default_render.get(*workload), container)
    for key in APP_SECRET_KEYS:
        assert sources[key] == ("Secret", SECRET, key)


def test_secret_env_vars_never_literal_or_from_configmaps(default_render):
    for obj, name in app_containers(default_render):
        for env, (kind, _, _) in env_sources(default_render, obj, name).items():
            if env in SECRET_ENV_NAMES:
                assert kind == "Secret", f"{obj['kind']}/{obj['metadata']['name']}:{name} {env} from {kind}"


def test_no_configmap_holds_a_secret_value(default_render):
    data = decoded(default_render.get("Secret", SECRET))
    secret_values = {data[k] for k in data if k in SECRET_ENV_NAMES}
    for cm in default_render.of_kind("ConfigMap"):
        for key, value in cm.get("data", {}).items():
            assert key not in SECRET_ENV_NAMES
            assert not any(s in value for s in secret_values), f"{cm['metadata']['name']}:{key}"


def test_generated_values_have_strength(default_render):
    data = decoded(default_render.get("Secret", SECRET))
    assert len(data["SECRET_KEY"]) == 64
    assert len(data["POSTGRES_PASSWORD"]) == 32 and len(data["REDIS_PASSWORD"]) == 32
    # ENCRYPTION_KEY is a Fernet key: 32 bytes in url-safe base64.
    assert len(base64.urlsafe_b64decode(data["ENCRYPTION_KEY"])) == 32


def test_given_values_win():
    values = {"secrets": {"secretKey": "s" * 40, "encryptionKey": "e" * 44},
              "postgresql": {"auth": {"password": "pg"}}, "redis": {"auth": {"password": "rd"}}}
    data = decoded(render_chart(values).get("Secret", SECRET))
    assert (data["SECRET_KEY"], data["ENCRYPTION_KEY"]) == ("s" * 40, "e" * 44)
    assert (data["POSTGRES_PASSWORD"], data["REDIS_PASSWORD"]) == ("pg", "rd")


class TestUrls:
    PASSWORD = "p@ss:w/rd%?#+ é"

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):
        values = {"postgresql": {"auth": {"password": cls.PASSWORD, "username": "af_user"}},
                  "redis": {"auth": {"password": cls.PASSWORD}}}
        return decoded(render_chart(values).get("Secret", SECRET))

    def test_database_url_round_trips_special_password(self, data):
        url = urlsplit(data["DATABASE_URL"])
        assert url.scheme == "postgresql+asyncpg"
        assert unquote(url.password) == self.PASSWORD
        assert url.username == "af_user"
        assert url.hostname == "agentforge-postgresql.agentforge.svc.cluster.local"
        assert url.port == 5432
        assert url.path == "/agentforge"
        assert "$(" not in data["DATABASE_URL"]

    def test_redis_url_round_trips_special_password(self, data):
        url = urlsplit(data["REDIS_URL"])
        assert (url.scheme, url.hostname, url.port, url.path) == (
            "redis", "agentforge-redis.agentforge.svc.cluster.local", 6379, "/0")
        assert unquote(url.password) == self.PASSWORD

    def test_raw_password_kept_for_servers(self, data):
        assert data["POSTGRES_PASSWORD"] == self.PASSWORD
        assert data["REDIS_PASSWORD"] == self.PASSWORD


class TestExistingSecret:
    @pytest.fixture(scope="class")
    @classmethod
    def objects(cls):
        return render_chart({"secrets": {"existingSecret": "my-app-secrets"}})

    def test_no_app_secret_rendered(self, objects):
        assert objects.find("Secret", SECRET) is None
        assert all("SECRET_KEY" not in s.get("data", {}) for s in objects.of_kind("Secret"))

    def test_pods_read_the_existing_secret(self, objects):
        backend = objects.get("Deployment", "agentforge-backend")
        env_from = pod_spec(backend)["containers"][0]["envFrom"]
        assert {"secretRef": {"name": "my-app-secrets"}} in env_from


def test_llm_api_keys_secret_loaded_by_backend_only():
    objects = render_chart({"secrets": {"llmApiKeysSecret": "llm-keys"}})
    env_from = pod_spec(objects.get("Deployment", "agentforge-backend"))["containers"][0]["envFrom"]
    assert {"secretRef": {"name": "llm-keys"}} in env_from
    job_env_from = pod_spec(objects.get("Job", "agentforge-migrate"))["containers"][0]["envFrom"]
    assert {"secretRef": {"name": "llm-keys"}} not in job_env_from


class TestChecksums:
    def annotations(self, values):
        deployment = render_chart(values).get("Deployment", "agentforge-backend")
        return deployment["spec"]["template"]["metadata"]["annotations"]

    def test_config_change_rolls_pods(self):
        a = self.annotations({"config": {"authRateLimit": 5}, "secrets": {"existingSecret": "s"}})
        b = self.annotations({"config": {"authRateLimit": 6}, "secrets": {"existingSecret": "s"}})
        assert a["checksum/config"] != b["checksum/config"]
        assert a["checksum/secret"] == b["checksum/secret"]

    def test_secret_change_rolls_pods(self):
        base = {"secrets": {"secretKey": "a" * 40, "encryptionKey": "k"},
                "postgresql": {"auth": {"password": "x"}}, "redis": {"auth": {"password": "y"}}}
        changed = {**base, "secrets": {"secretKey": "b" * 40, "encryptionKey": "k"}}
        assert self.annotations(base)["checksum/secret"] == self.annotations(base)["checksum/secret"]
        assert self.annotations(base)["checksum/secret"] != self.annotations(changed)["checksum/secret"]
