"""Bundled PostgreSQL: a StatefulSet whose claim outlives the release, credentials from the Secret, pg_isready."""

import base64
import json
from urllib.parse import urlsplit

import pytest

from chart import container, env_of, env_sources, pod_spec, render_chart, volumes_by_mount

PG = "agentforge-postgresql"
SELECTOR = {"app.kubernetes.io/name": "agentforge", "app.kubernetes.io/instance": "agentforge",
            "app.kubernetes.io/component": "postgresql"}
PG_ISREADY = 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB" -h 127.0.0.1'


def statefulset(objects):
    return objects.get("StatefulSet", PG)


def claim(objects):
    (template,) = statefulset(objects)["spec"]["volumeClaimTemplates"]
    return template


class TestStatefulSet:
    def test_one_replica_of_postgres_16_alpine(self, default_render):
        sts = statefulset(default_render)
        assert sts["spec"]["replicas"] == 1
        assert container(sts, "postgresql")["image"] == "library/postgres:16-alpine"

    def test_headless_service_governs_it(self, default_render):
        service = default_render.get("Service", PG)
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["ports"] == [
            {"name": "postgresql", "port": 5432, "targetPort": "postgresql", "protocol": "TCP"}]
        sts = statefulset(default_render)
        assert sts["spec"]["serviceName"] == PG
        assert service["spec"]["selector"] == SELECTOR
        assert SELECTOR.items() <= sts["spec"]["template"]["metadata"]["labels"].items()

    def test_database_url_points_at_the_service(self, default_render):
        data = default_render.get("Secret", "agentforge-secrets")["data"]
        url = urlsplit(base64.b64decode(data["DATABASE_URL"]).decode())
        assert (url.hostname, url.port) == (f"{PG}.agentforge.svc.cluster.local", 5432)

    def test_service_selects_no_other_pod(self, default_render):
        selector = default_render.get("Service", PG)["spec"]["selector"]
        for obj in default_render:
            if obj["kind"] in ("Deployment", "Job", "StatefulSet") and obj["metadata"]["name"] != PG:
                assert not selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items()


class TestPersistence:
    def test_10gi_claim_with_the_default_class(self, default_render):
        spec = claim(default_render)["spec"]
        assert spec["resources"]["requests"]["storage"] == "10Gi"
        assert spec["accessModes"] == ["ReadWriteOnce"]
        # Absent: the cluster's default storage class applies.
        assert "storageClassName" not in spec

    @pytest.mark.parametrize("storage_class,expected", [("fast-ssd", "fast-ssd"), ("-", "")])
    def test_storage_class(self, storage_class, expected):
        objects = render_chart({"postgresql": {"persistence": {"storageClass": storage_class, "size": "50Gi"}}})
        spec = claim(objects)["spec"]
        assert spec["storageClassName"] == expected
        assert spec["resources"]["requests"]["storage"] == "50Gi"

    def test_claims_kept_when_deleted_or_scaled(self, default_render):
        policy = statefulset(default_render)["spec"]["persistentVolumeClaimRetentionPolicy"]
        assert policy == {"whenDeleted": "Retain", "whenScaled": "Retain"}

    def test_no_standalone_claim_helm_would_delete(self, default_render):
        # Only the StatefulSet's template makes the claim: Helm deletes the claims it renders itself on uninstall.
        claims = default_render.of_kind("PersistentVolumeClaim")
        assert [c for c in claims if c["metadata"]["labels"]["app.kubernetes.io/component"] == "postgresql"] == []

    def test_claim_labels_do_not_move_with_the_chart_version(self, default_render):
        # volumeClaimTemplates are immutable: a version label there would make every upgrade fail.
        assert claim(default_render)["metadata"]["labels"] == SELECTOR

    def test_pgdata_is_a_subdirectory_of_the_claim_mount(self, default_render):
        sts = statefulset(default_render)
        c = container(sts, "postgresql")
        mount = next(m for m in c["volumeMounts"] if m["name"] == claim(default_render)["metadata"]["name"])
        assert mount["mountPath"] == "/var/lib/postgresql/data"
        assert env_of(c)["PGDATA"]["value"] == "/var/lib/postgresql/data/pgdata"


class TestCredentials:
    def test_user_and_password_from_the_secret(self, default_render):
        sources = env_sources(default_render, statefulset(default_render), "postgresql")
        assert sources["POSTGRES_USER"] == ("Secret", "agentforge-secrets", "POSTGRES_USER")
        assert sources["POSTGRES_PASSWORD"] == ("Secret", "agentforge-secrets", "POSTGRES_PASSWORD")
        assert sources["POSTGRES_DB"] == ("literal", "", "agentforge")

    def test_existing_secret_is_read(self):
        objects = render_chart({"secrets": {"existingSecret": "my-secrets"}})
        env = env_of(container(statefulset(objects), "postgresql"))
        assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "my-secrets",
                                                                         "key": "POSTGRES_PASSWORD"}

    def test_given_password_appears_in_no_other_object(self):
        password = "Pg-Only-In-The-Secret-41"
        objects = render_chart({"postgresql": {"auth": {"password": password}}})
        for obj in objects:
            if obj["kind"] != "Secret":
                assert password not in json.dumps(obj), f"{obj['kind']}/{obj['metadata']['name']}"


class TestProbes:
    @pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
    def test_pg_isready_on_loopback(self, default_render, probe):
        c = container(statefulset(default_render), "postgresql")
        assert c[probe]["exec"]["command"] == ["sh", "-c", PG_ISREADY]

    def test_startup_allows_initdb(self, default_render):
        probe = container(statefulset(default_render), "postgresql")["startupProbe"]
        assert probe["periodSeconds"] * probe["failureThreshold"] >= 300

    def test_fast_shutdown_within_the_grace_period(self, default_render):
        sts = statefulset(default_render)
        pre_stop = container(sts, "postgresql")["lifecycle"]["preStop"]["exec"]["command"]
        assert "pg_ctl stop --mode=fast" in pre_stop[-1]
        timeout = int(pre_stop[-1].rsplit("--timeout=", 1)[1])
        assert timeout < pod_spec(sts)["terminationGracePeriodSeconds"]


class TestSecurity:
    def test_uid_70_and_fs_group_70(self, default_render):
        ctx = pod_spec(statefulset(default_render))["securityContext"]
        assert (ctx["runAsUser"], ctx["runAsGroup"], ctx["fsGroup"], ctx["runAsNonRoot"]) == (70, 70, 70, True)

    def test_read_only_root_with_socket_and_tmp_dirs(self, default_render):
        sts = statefulset(default_render)
        c = container(sts, "postgresql")
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        mounted = volumes_by_mount(sts, "postgresql")
        for path in ("/var/run/postgresql", "/tmp"):
            assert "emptyDir" in mounted[path], path

    def test_no_token_no_service_links(self, default_render):
        spec = pod_spec(statefulset(default_render))
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
