"""Secrets: where every secret env var comes from, no secret outside Secrets, URLs composed and encoded."""

import base64
import re
from urllib.parse import unquote, urlsplit

import pytest

from harness.appsecret import ENCRYPTION_KEY, SECRET, decoded
from harness.objects import SECRET_ENV_NAMES, env_sources, pod_spec
from harness.render import render_chart, render_error

APP_SECRET_KEYS = {"SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_USER", "POSTGRES_PASSWORD", "REDIS_PASSWORD",
                   "DATABASE_URL", "REDIS_URL"}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod")


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


@pytest.mark.parametrize("workload,container,keys", [
    (("Deployment", "agentforge-backend"), "backend", {"SECRET_KEY", "ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL"}),
    (("Job", "agentforge-migrate"), "migrate", {"SECRET_KEY", "DATABASE_URL"}),
    (("Deployment", "agentforge-backend"), "wait-for-redis", {"REDISCLI_AUTH"}),
    (("Job", "agentforge-migrate"), "wait-for-database", {"PGUSER"}),
    (("Deployment", "agentforge-data-collector"), "data-collector", set()),
])
def test_each_container_gets_only_the_secret_keys_its_code_reads(default_render, workload, container, keys):
    """Least privilege: no container gets the whole Secret (test_app_settings.py checks the names on the code)."""
    sources = env_sources(default_render, default_render.get(*workload), container)
    from_secret = {env: key for env, (kind, name, key) in sources.items() if kind == "Secret"}
    assert set(from_secret) == keys
    assert all(name == SECRET for kind, name, _ in sources.values() if kind == "Secret")
    assert all(env == key for env, key in from_secret.items() if env != "REDISCLI_AUTH" and env != "PGUSER")


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


def test_generated_values_new_per_render():
    """Each render (each install) generates its own: a constant "generated" value would pass every length check."""
    first, second = (decoded(render_chart({}, fresh=True).get("Secret", SECRET)) for _ in range(2))
    for key in ("SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        assert first[key] != second[key], key
    assert first["POSTGRES_USER"] == second["POSTGRES_USER"] == "agentforge"


def test_urls_carry_the_generated_passwords_of_the_same_render(default_render):
    """The URLs and the servers' passwords come from one generated value each (the chart remembers it for the
    render): the backend would be locked out of a server started with another."""
    data = decoded(default_render.get("Secret", SECRET))
    assert unquote(urlsplit(data["DATABASE_URL"]).password) == data["POSTGRES_PASSWORD"]
    assert unquote(urlsplit(data["REDIS_URL"]).password) == data["REDIS_PASSWORD"]


def test_generated_values_have_strength(default_render):
    data = decoded(default_render.get("Secret", SECRET))
    assert len(data["SECRET_KEY"]) == 64
    assert len(data["POSTGRES_PASSWORD"]) == 32 and len(data["REDIS_PASSWORD"]) == 32
    # ENCRYPTION_KEY: an AES-256-GCM key, 32 bytes in url-safe base64 (test_app_backend.py uses it with the app's code).
    assert len(base64.urlsafe_b64decode(data["ENCRYPTION_KEY"])) == 32


def test_generated_encryption_key_is_url_safe_base64():
    """The documented form (values.yaml): 32 bytes in url-safe base64, 44 characters with the padding. Each of 12
    fresh renders draws a new key; a plain base64 one would show `+` or `/` in one of them (all 12 free of both by
    chance: about 1 in 10^7)."""
    for _ in range(12):
        key = decoded(render_chart(fresh=True).get("Secret", SECRET))["ENCRYPTION_KEY"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}=", key), key
        assert len(base64.urlsafe_b64decode(key)) == 32


def test_given_values_win():
    values = {"secrets": {"secretKey": "s" * 40, "encryptionKey": ENCRYPTION_KEY},
              "postgresql": {"auth": {"password": "pg"}}, "redis": {"auth": {"password": "rd"}}}
    data = decoded(render_chart(values).get("Secret", SECRET))
    assert (data["SECRET_KEY"], data["ENCRYPTION_KEY"]) == ("s" * 40, ENCRYPTION_KEY)
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
        sources = env_sources(objects, objects.get("Deployment", "agentforge-backend"), "backend")
        assert {name for kind, name, _ in sources.values() if kind == "Secret"} == {"my-app-secrets"}
        assert {env: key for env, (kind, _, key) in sources.items() if kind == "Secret"} == {
            key: key for key in ("SECRET_KEY", "ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL")}


def test_llm_api_keys_secret_loaded_by_backend_only():
    objects = render_chart({"secrets": {"llmApiKeysSecret": "llm-keys"}})
    env_from = pod_spec(objects.get("Deployment", "agentforge-backend"))["containers"][0]["envFrom"]
    assert {"secretRef": {"name": "llm-keys"}} in env_from
    job_env_from = pod_spec(objects.get("Job", "agentforge-migrate"))["containers"][0].get("envFrom", [])
    assert {"secretRef": {"name": "llm-keys"}} not in job_env_from
    # The Secret is outside the render: every variable it holds reaches the backend, and nothing else reads it.
    backend = env_sources(objects, objects.get("Deployment", "agentforge-backend"), "backend")
    assert backend["*"] == ("Secret", "llm-keys", "*")
    for obj, name in app_containers(objects):
        if (obj["kind"], name) != ("Deployment", "backend"):
            assert "*" not in env_sources(objects, obj, name), f"{obj['metadata']['name']}:{name}"


class TestChecksums:
    def annotations(self, values):
        """The backend's pod annotations in a render of its own (a cached render would compare one object with
        itself)."""
        deployment = render_chart(values, fresh=True).get("Deployment", "agentforge-backend")
        return deployment["spec"]["template"]["metadata"]["annotations"]

    def test_config_change_rolls_pods(self):
        a = self.annotations({"config": {"authRateLimit": 5}, "secrets": {"existingSecret": "s"}})
        b = self.annotations({"config": {"authRateLimit": 6}, "secrets": {"existingSecret": "s"}})
        assert a["checksum/config"] != b["checksum/config"]
        assert a["checksum/secret"] == b["checksum/secret"]

    def test_secret_change_rolls_pods(self):
        base = {"secrets": {"secretKey": "a" * 40, "encryptionKey": ENCRYPTION_KEY},
                "postgresql": {"auth": {"password": "x"}}, "redis": {"auth": {"password": "y"}}}
        changed = {**base, "secrets": {"secretKey": "b" * 40, "encryptionKey": ENCRYPTION_KEY}}
        assert self.annotations(base) == self.annotations(base)
        assert self.annotations(base)["checksum/secret"] != self.annotations(changed)["checksum/secret"]
        assert self.annotations(base)["checksum/config"] == self.annotations(changed)["checksum/config"]


class TestKeyFormats:
    """The schema refuses keys the backend cannot use (test_app_settings.py checks the same cases against the
    app's own code)."""

    @pytest.mark.parametrize("key", [
        base64.urlsafe_b64encode(bytes(31)).decode(),            # 31 bytes
        base64.urlsafe_b64encode(bytes(33)).decode(),            # 33 bytes
        base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="),  # no padding: the decoder refuses it
        "k" * 44,                                                  # not base64 of anything
        "gAAAAABh" + "A" * 36,                                     # 44 characters, not a key
    ])
    def test_encryption_key_that_is_not_one_refused(self, key):
        assert "at '/secrets/encryptionKey'" in render_error({"secrets": {"encryptionKey": key}})

    @pytest.mark.parametrize("key", [
        base64.urlsafe_b64encode(bytes(range(200, 232))).decode(),  # url-safe (-, _)
        base64.b64encode(bytes(range(200, 232))).decode(),          # standard (+, /), which the decoder also takes
    ])
    def test_encryption_key_of_32_bytes_accepted(self, key):
        assert decoded(render_chart({"secrets": {"encryptionKey": key}}).get("Secret", SECRET))["ENCRYPTION_KEY"] == key

    @pytest.mark.parametrize("length,refused", [(1, True), (31, True), (32, False)])
    def test_secret_key_of_at_least_32_characters(self, length, refused):
        values = {"secrets": {"secretKey": "x" * length}}
        if refused:
            assert "at '/secrets/secretKey'" in render_error(values)
        else:
            render_chart(values)


