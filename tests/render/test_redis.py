"""Bundled Redis: the password only in the Secret, redis.conf in a ConfigMap, a memory limit above maxmemory."""

import json

import pytest

from harness.objects import container, env_of, env_sources, pod_spec, volumes_by_mount
from harness.render import render_chart, render_error

REDIS = "agentforge-redis"
SELECTOR = {"app.kubernetes.io/name": "agentforge", "app.kubernetes.io/instance": "agentforge",
            "app.kubernetes.io/component": "redis"}
PING = 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p 6379 ping'


def statefulset(objects):
    return objects.get("StatefulSet", REDIS)


def redis_conf(objects) -> list[str]:
    return objects.get("ConfigMap", REDIS)["data"]["redis.conf"].splitlines()


def claim(objects):
    (template,) = statefulset(objects)["spec"]["volumeClaimTemplates"]
    return template


def memory(maxmemory, limit):
    return {"redis": {"maxmemory": maxmemory, "resources": {"limits": {"memory": limit}}}}


class TestStatefulSet:
    def test_one_replica_of_redis_7_alpine(self, default_render):
        sts = statefulset(default_render)
        assert sts["spec"]["replicas"] == 1
        assert container(sts, "redis")["image"] == "library/redis:7-alpine"

    def test_headless_service_governs_it(self, default_render):
        service = default_render.get("Service", REDIS)
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["ports"] == [{"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}]
        assert service["spec"]["selector"] == SELECTOR
        assert statefulset(default_render)["spec"]["serviceName"] == REDIS

    def test_uid_999_gid_1000(self, default_render):
        sts = statefulset(default_render)
        ctx = pod_spec(sts)["securityContext"]
        assert (ctx["runAsUser"], ctx["runAsGroup"], ctx["fsGroup"], ctx["runAsNonRoot"]) == (999, 1000, 1000, True)
        assert container(sts, "redis")["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod_spec(sts)["automountServiceAccountToken"] is False


class TestPersistence:
    def test_2gi_claim_mounted_at_data(self, default_render):
        template = claim(default_render)
        assert template["spec"]["resources"]["requests"]["storage"] == "2Gi"
        assert "storageClassName" not in template["spec"]
        assert template["metadata"]["labels"] == SELECTOR
        mounts = {m["name"]: m["mountPath"] for m in container(statefulset(default_render), "redis")["volumeMounts"]}
        assert mounts[template["metadata"]["name"]] == "/data"
        assert "dir /data" in redis_conf(default_render)

    @pytest.mark.parametrize("storage_class,expected", [("standard", "standard"), ("-", "")])
    def test_storage_class(self, storage_class, expected):
        objects = render_chart({"redis": {"persistence": {"storageClass": storage_class}}})
        assert claim(objects)["spec"]["storageClassName"] == expected

    def test_claims_kept_when_deleted_or_scaled(self, default_render):
        policy = statefulset(default_render)["spec"]["persistentVolumeClaimRetentionPolicy"]
        assert policy == {"whenDeleted": "Retain", "whenScaled": "Retain"}

    def test_no_standalone_claim_helm_would_delete(self, default_render):
        claims = default_render.of_kind("PersistentVolumeClaim")
        assert [c for c in claims if c["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"] == []


class TestConfig:
    def test_memory_settings(self, default_render):
        conf = redis_conf(default_render)
        assert "maxmemory 256mb" in conf
        assert "maxmemory-policy allkeys-lru" in conf
        assert "appendonly yes" in conf

    def test_settings_are_values(self):
        objects = render_chart({"redis": {"maxmemoryPolicy": "allkeys-lfu", "extraConfig": "timeout 300\n"}})
        conf = redis_conf(objects)
        assert "maxmemory-policy allkeys-lfu" in conf
        assert conf[-1] == "timeout 300"

    def test_no_password_directive_in_the_configmap(self, default_render):
        assert not any(line.split()[0] in ("requirepass", "masterauth", "user") for line in redis_conf(default_render))

    @pytest.mark.parametrize("line", ["requirepass hunter2", "  masterauth x", "user default on >x"])
    def test_password_in_extra_config_refused(self, line):
        stderr = render_error({"redis": {"extraConfig": f"timeout 0\n{line}\n"}})
        assert "redis.extraConfig must not set requirepass" in stderr

    def test_pod_rolls_when_config_changes(self):
        def annotations(values):
            # A render of its own each time: a cached one would compare one object with itself.
            return statefulset(render_chart(values, fresh=True))["spec"]["template"]["metadata"]["annotations"]

        base = {"redis": {"auth": {"password": "a"}}}
        changed = {"redis": {"auth": {"password": "a"}, "maxmemoryPolicy": "volatile-lru"}}
        assert annotations(base) == annotations(base)
        assert annotations(base)["checksum/config"] != annotations(changed)["checksum/config"]
        assert annotations(base)["checksum/password"] == annotations(changed)["checksum/password"]
        other_password = {"redis": {"auth": {"password": "b"}}}
        assert annotations(base)["checksum/password"] != annotations(other_password)["checksum/password"]

    def test_config_file_and_runtime_dir_mounted(self, default_render):
        sts = statefulset(default_render)
        mounted = volumes_by_mount(sts, "redis")
        assert mounted["/etc/redis"]["configMap"]["name"] == REDIS
        # The file that holds the password lives in memory, not on the node's disk.
        assert mounted["/run/redis"]["emptyDir"]["medium"] == "Memory"


class TestPassword:
    PASSWORD = "Redis-Only-In-The-Secret-77"

    @pytest.fixture(scope="class")
    @classmethod
    def objects(cls):
        return render_chart({"redis": {"auth": {"password": cls.PASSWORD}}})

    def test_password_from_the_secret_by_key_ref(self, objects):
        sources = env_sources(objects, statefulset(objects), "redis")
        assert sources["REDIS_PASSWORD"] == ("Secret", "agentforge-secrets", "REDIS_PASSWORD")
        assert [name for name, (kind, _, _) in sources.items() if kind == "literal"] == []

    def test_password_in_no_other_object(self, objects):
        for obj in objects:
            if obj["kind"] != "Secret":
                assert self.PASSWORD not in json.dumps(obj), f"{obj['kind']}/{obj['metadata']['name']}"

    def test_never_on_a_command_line(self, objects):
        c = container(statefulset(objects), "redis")
        script = c["command"][-1]
        # redis-server gets only the path of its config file; the variable is gone before exec.
        assert "exec redis-server /run/redis/redis.conf\n" in script
        assert "unset REDIS_PASSWORD" in script
        assert "requirepass" in script and "include /etc/redis/redis.conf" in script
        assert "args" not in c

    @pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
    def test_probes_authenticate(self, objects, probe):
        command = container(statefulset(objects), "redis")[probe]["exec"]["command"]
        assert command[:2] == ["sh", "-c"]
        assert command[2].startswith(PING + " | grep")

    def test_liveness_tolerates_loading(self, objects):
        assert "LOADING" in container(statefulset(objects), "redis")["livenessProbe"]["exec"]["command"][2]

    def test_existing_secret_is_read(self):
        objects = render_chart({"secrets": {"existingSecret": "my-secrets"}})
        env = env_of(container(statefulset(objects), "redis"))
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "my-secrets", "key": "REDIS_PASSWORD"}


class TestMemoryGuard:
    """The limit must be at least maxmemory + 25% and maxmemory + 32Mi."""

    def test_default_limit_has_headroom(self, default_render):
        resources = container(statefulset(default_render), "redis")["resources"]
        assert resources["limits"]["memory"] == "384Mi"

    @pytest.mark.parametrize("maxmemory,limit", [
        ("256mb", "256Mi"),   # the upstream defect: limit equal to maxmemory
        ("256mb", "319Mi"),
        ("1gb", "1Gi"),
        ("1gb", "1279Mi"),
        ("1g", "1249M"),      # 1g = 10^9 bytes
        ("10mb", "41Mi"),     # small maxmemory: 32Mi of headroom still required
        ("256mb", "200Mi"),
    ])
    def test_limit_without_headroom_refused(self, maxmemory, limit):
        stderr = render_error(memory(maxmemory, limit))
        assert f"redis.resources.limits.memory ({limit}" in stderr
        assert f"must exceed redis.maxmemory ({maxmemory}" in stderr

    @pytest.mark.parametrize("maxmemory,limit", [
        ("256mb", "384Mi"),
        ("256mb", "320Mi"),
        ("1gb", "1280Mi"),
        ("1gb", "2Gi"),
        ("1g", "1250M"),
        ("1g", "1.25G"),
        ("10mb", "42Mi"),
        ("256mb", 402653184),  # plain bytes
    ])
    def test_limit_with_headroom_accepted(self, maxmemory, limit):
        # The guard alone is under test here: no schema validation of every object, which other tests do.
        resources = container(statefulset(render_chart(memory(maxmemory, limit), validate=False)), "redis")["resources"]
        assert resources["limits"]["memory"] == limit

    @pytest.mark.parametrize("maxmemory", ["268435456", "268435456b", "262144kb", "256mb"])
    def test_redis_units(self, maxmemory):
        # Each is 256 MiB: 320Mi is just enough, 319Mi is not.
        render_chart(memory(maxmemory, "320Mi"), validate=False)
        assert "must exceed redis.maxmemory" in render_error(memory(maxmemory, "319Mi"))

    @pytest.mark.parametrize("maxmemory,ok,refused", [("268435k", "320Mi", "319Mi"), ("268m", "335M", "334M")])
    def test_decimal_redis_units(self, maxmemory, ok, refused):
        render_chart(memory(maxmemory, ok), validate=False)
        assert "must exceed redis.maxmemory" in render_error(memory(maxmemory, refused))

    def test_missing_limit_refused(self):
        stderr = render_error({"redis": {"resources": {"limits": {"memory": None}}}})
        assert "redis.resources.limits.memory is required" in stderr

    def test_unbounded_maxmemory_refused(self):
        assert "redis.maxmemory must not be 0" in render_error({"redis": {"maxmemory": "0"}})

    def test_guard_off_with_external_redis(self):
        objects = render_chart({"redis": {"enabled": False, **memory("1gb", "1Gi")["redis"]},
                                "externalRedis": {"host": "cache.example.net"}})
        assert objects.find("StatefulSet", REDIS) is None
