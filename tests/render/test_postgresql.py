"""Bundled PostgreSQL: a StatefulSet whose claim outlives the release, credentials from the Secret, pg_isready."""

import base64
import json
from urllib.parse import urlsplit

import pytest

from harness.objects import container, env_of, env_sources, pod_spec, volumes_by_mount
from harness.render import RenderError, render_chart, render_error
from harness.values import deep_merge

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


class TestServerConfig:
    """postgresql.config: a configuration file of the chart's that includes initdb's, and the connection budget the
    chart checks against its max_connections (the server tier, tests/servers/test_real_servers.py, runs the file)."""

    def test_the_server_runs_the_charts_configuration_file(self, default_render):
        c = container(statefulset(default_render), "postgresql")
        assert c["args"] == ["postgres", "-c", "config_file=/etc/postgresql/postgresql.conf"]
        volume = volumes_by_mount(statefulset(default_render), "postgresql")["/etc/postgresql"]
        assert volume == {"name": "config", "configMap": {"name": PG}}
        text = default_render.get("ConfigMap", PG)["data"]["postgresql.conf"]
        lines = [line for line in text.splitlines() if line and not line.startswith("#")]
        # initdb's file first, from the container's PGDATA: a setting after it wins.
        assert lines == [f"include_if_exists = '{env_of(c)['PGDATA']['value']}/postgresql.conf'",
                         "max_connections = '100'"]

    def test_every_value_single_quoted_with_quotes_doubled(self):
        objects = render_chart({"postgresql": {"config": {
            "work_mem": "8MB", "jit": False, "random_page_cost": 1.1, "search_path": "\"$user\", public",
            "cluster_name": "it's"}}})
        lines = objects.get("ConfigMap", PG)["data"]["postgresql.conf"].splitlines()[2:]
        assert lines == ["cluster_name = 'it''s'", "jit = 'false'", "max_connections = '100'",
                         "random_page_cost = '1.1'", "search_path = '\"$user\", public'", "work_mem = '8MB'"]

    @pytest.mark.parametrize("key", ["port", "listen_addresses", "data_directory", "hba_file", "ident_file",
                                     "config_file", "unix_socket_directories"])
    def test_the_charts_own_settings_refused(self, key):
        assert f"postgresql.config.{key} is set by the chart" in render_error({"postgresql": {"config": {key: "x"}}})

    @pytest.mark.parametrize("values,key", [
        ({"config": {"max_connections": 0}}, "/postgresql/config/max_connections"),
        ({"config": {"max_connections": "many"}}, "/postgresql/config/max_connections"),
        ({"config": {"work_mem": ["8MB"]}}, "/postgresql/config/work_mem"),
    ])
    def test_bad_values_refused_naming_the_key(self, values, key):
        assert f"at '{key}'" in render_error({"postgresql": values})

    def test_not_a_parameter_name_refused_naming_it(self):
        error = render_error({"postgresql": {"config": {"Bad-Name": "1"}}})
        assert "postgresql.config.Bad-Name is not a PostgreSQL parameter name" in error


def budget_error(values: dict) -> str | None:
    try:
        render_chart(values)
    except RenderError as err:
        return err.stderr
    return None


class TestConnectionBudget:
    """The backend's worst case (README: Database connections) against max_connections, read from the error the
    chart gives; each term moves the limit by what it adds."""

    # The smallest max_connections accepted, by bisection over what the chart refuses.
    @staticmethod
    def least_accepted(values: dict) -> int:
        low, high = 1, 2000
        while low < high:
            middle = (low + high) // 2
            if budget_error(deep_merge(values, {"postgresql": {"config": {"max_connections": middle}}})):
                low = middle + 1
            else:
                high = middle
        return low

    def test_defaults(self):
        """5 pods (the HPA's maximum) x (5 + 10) + 1 (migrations) + 3 (superuser_reserved_connections) = 79."""
        assert self.least_accepted({}) == 79
        assert budget_error({}) is None  # max_connections 100 holds it

    @pytest.mark.parametrize("change,delta", [
        ({"backend": {"autoscaling": {"maxReplicas": 6}}}, 15),
        ({"backend": {"autoscaling": {"enabled": False}, "replicaCount": 2, "pdb": {"minAvailable": 1}}}, -45),
        ({"config": {"dbPoolSize": 2, "dbMaxOverflow": 0}}, -65),
        ({"migrations": {"enabled": False}}, -1),
        ({"postgresql": {"metrics": {"enabled": True}}}, 1),
        ({"postgresql": {"config": {"superuser_reserved_connections": 5}}}, 2),
    ], ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v))
    def test_each_term(self, change, delta):
        assert self.least_accepted(change) == 79 + delta

    def test_the_message_names_every_key_and_the_least_value(self):
        error = budget_error({"backend": {"autoscaling": {"maxReplicas": 7}}})
        assert ("postgresql.config.max_connections (100) cannot hold the backend's worst case, 109 connections: 7 pods "
                "(backend.autoscaling.maxReplicas) x (config.dbPoolSize 5 + config.dbMaxOverflow 10) + 1 for the "
                "migration Job (migrations.enabled) + 0 for the exporter (postgresql.metrics.enabled)") in error
        assert "Raise postgresql.config.max_connections to at least 109" in error

    def test_not_checked_for_an_external_database(self):
        assert budget_error({"postgresql": {"enabled": False}, "externalDatabase": {"host": "db.example.com",
                                                                                  "password": "pw"},
                             "backend": {"autoscaling": {"maxReplicas": 20}}}) is None
