"""Scheduled database dumps (backup.*): a CronJob whose pod runs `pg_dump --format=custom` of the application's
database, bundled or external, into a claim that outlives the release, keeping the newest `backup.retention` dumps.

Render tests (unmarked): what the CronJob, its claim and its NetworkPolicy render, from every backup.* key, for the
bundled and an external database, and the values refused by name. Real-server tests (marker `servers`): the rendered
container's own shell script, under Debian's shell and tools and under busybox's (the alpine image's), with its
rendered environment resolved from the rendered Secret, against a real PostgreSQL on 127.0.0.1: retention, a failed or
stopped dump, and the chart README's restore command. With the app (markers `servers` and `app`): the application's
schema (its own alembic migrations) and a user registered through its backend are dumped, the database is lost, the
README's restore brings it back into the running server and into a fresh one, and the backend logs the user in.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import unquote, urlsplit

import pytest

from harness.backup import (
    BACKUP,
    NAME,
    backup_container,
    check_job,
    cronjob,
    env,
    job_spec,
    pod,
    readme_restore_command,
    script,
)
from harness.podsecurity import restricted_violations
from harness.policy import External, Pod
from harness.reachability import ALL_PORTS, EXTERNAL_DB, Scene, merged
from harness.render import CHART, load_yaml, render_chart, render_error
from harness.values import deep_merge

EXTERNAL = merged(EXTERNAL_DB, BACKUP)
DEFAULTS = load_yaml((CHART / "values.yaml").read_text())


def literal(objects, name: str) -> str:
    return env(objects)[name]["value"]


def secret_ref(objects, name: str) -> dict:
    return env(objects)[name]["valueFrom"]["secretKeyRef"]


def app_database_url(objects) -> tuple[str, int, str]:
    """Host, port and database of the DATABASE_URL the chart gives the application."""
    data = objects.get("Secret", "agentforge-secrets")["data"]
    url = urlsplit(base64.b64decode(data["DATABASE_URL"]).decode())
    return url.hostname, url.port, unquote(url.path.lstrip("/"))


class TestOnlyWhenEnabled:
    def test_off_by_default(self, default_render):
        assert DEFAULTS["backup"]["enabled"] is False
        assert not [o for o in default_render if "backup" in o["metadata"]["name"]]
        assert "backup" not in json.dumps(default_render.get("NetworkPolicy", "agentforge-postgresql"))

    def test_on_renders_the_cronjob_its_claim_and_its_policy(self):
        objects = render_chart(BACKUP)
        backup = {(o["kind"], re.sub(r"-[0-9a-f]{8}$", "-<hash>", o["metadata"]["name"])) for o in objects
                  if "backup" in o["metadata"]["name"]}
        assert backup == {("CronJob", NAME), ("PersistentVolumeClaim", NAME), ("Job", f"{NAME}-check-<hash>"),
                          ("NetworkPolicy", "agentforge-backup-egress")}
        # Nothing else changes but the database's ingress policy, which admits the backup pods (generated secrets
        # and the checksums of the objects holding them aside).
        default = {_comparable(o) for o in render_chart({}) if o["kind"] != "Secret"}
        changed = {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] != "Secret"
                   and _comparable(o) not in default and "backup" not in o["metadata"]["name"]}
        assert changed == {("NetworkPolicy", "agentforge-postgresql")}


def _comparable(obj: dict) -> str:
    return re.sub(r'"checksum/[a-z]+": "[0-9a-f]{64}"', "", json.dumps(obj, sort_keys=True))


class TestDump:
    @pytest.mark.parametrize("values", [BACKUP, EXTERNAL], ids=["bundled", "external"])
    def test_pg_dump_custom_format_of_the_apps_database(self, values):
        objects = render_chart(values)
        text = script(objects)
        assert re.search(r"^pg_dump --format=custom --no-password --file=\"\$partial\" &$", text, re.M), text
        host, port, database = app_database_url(objects)
        assert (literal(objects, "PGHOST"), literal(objects, "PGPORT"), literal(objects, "PGDATABASE")) == \
               (host, str(port), database)

    def test_bundled_database_is_the_postgresql_service(self):
        objects = render_chart(BACKUP)
        service = objects.get("Service", "agentforge-postgresql")
        assert literal(objects, "PGHOST") == "agentforge-postgresql.agentforge.svc.cluster.local"
        assert literal(objects, "PGPORT") == str(service["spec"]["ports"][0]["port"]) == "5432"
        assert literal(objects, "PGDATABASE") == DEFAULTS["postgresql"]["auth"]["database"]

    def test_external_database_from_its_values(self):
        objects = render_chart(merged(EXTERNAL, {"externalDatabase": {"port": 6432, "database": "af_prod"}}))
        assert (literal(objects, "PGHOST"), literal(objects, "PGPORT"), literal(objects, "PGDATABASE")) == \
               ("db.example.com", "6432", "af_prod")

    @pytest.mark.parametrize("values", [BACKUP, EXTERNAL], ids=["bundled", "external"])
    def test_credentials_from_the_app_secret_only(self, values):
        password = "never-on-a-command-line"
        values = merged(values, {"postgresql": {"auth": {"password": password}}} if "externalDatabase" not in values
                        else {"externalDatabase": {"password": password}})
        objects = render_chart(values)
        assert secret_ref(objects, "PGUSER") == {"name": "agentforge-secrets", "key": "POSTGRES_USER"}
        assert secret_ref(objects, "PGPASSWORD") == {"name": "agentforge-secrets", "key": "POSTGRES_PASSWORD"}
        data = objects.get("Secret", "agentforge-secrets")["data"]
        assert base64.b64decode(data["POSTGRES_PASSWORD"]).decode() == password
        assert password not in json.dumps(cronjob(objects))
        # pg_dump reads PGPASSWORD itself: the script never names it, so it never reaches an argv.
        assert "PGPASSWORD" not in script(objects) and "password=" not in script(objects).lower()

    def test_existing_secret(self):
        objects = render_chart(merged(BACKUP, {"secrets": {"existingSecret": "my-app-secrets"}}))
        assert secret_ref(objects, "PGUSER") == {"name": "my-app-secrets", "key": "POSTGRES_USER"}
        assert secret_ref(objects, "PGPASSWORD") == {"name": "my-app-secrets", "key": "POSTGRES_PASSWORD"}

    def test_url_from_the_users_secret_takes_the_password_from_there(self):
        values = merged(BACKUP, {"postgresql": {"enabled": False}, "externalDatabase": {
            "host": "db.example.com", "existingSecret": "db-credentials", "existingSecretUrlKey": "url",
            "existingSecretPasswordKey": "pass"}})
        objects = render_chart(values)
        assert secret_ref(objects, "PGPASSWORD") == {"name": "db-credentials", "key": "pass"}
        assert secret_ref(objects, "PGUSER") == {"name": "agentforge-secrets", "key": "POSTGRES_USER"}

    def test_connection_settings(self):
        objects = render_chart(BACKUP)
        assert literal(objects, "PGCONNECT_TIMEOUT") == "30"
        # A new pod's address is admitted by the NetworkPolicies a moment after it starts: the script waits for the
        # server (pg_isready) up to BACKUP_WAIT_SECONDS before it dumps.
        assert literal(objects, "BACKUP_WAIT_SECONDS") == "120"
        text = script(objects)
        assert text.index("until pg_isready --quiet") < text.index("pg_dump ")
        assert literal(objects, "PGAPPNAME") == "agentforge-backup"
        assert "PGSSLMODE" not in env(objects) and "PGSSLROOTCERT" not in env(objects)


class TestExternalTls:
    CA = {"externalDatabase": {"sslMode": "verify-full", "sslRootCert": {"configMap": "db-ca", "key": "bundle.pem"}}}

    def test_mode_and_ca_of_the_app(self):
        objects = render_chart(merged(EXTERNAL, self.CA))
        assert literal(objects, "PGSSLMODE") == "verify-full"
        assert literal(objects, "PGSSLROOTCERT") == "/etc/agentforge/tls/postgresql/ca.crt"
        volumes = {v["name"]: v for v in pod(objects)["spec"]["volumes"]}
        assert volumes["postgresql-ca"]["configMap"] == {"name": "db-ca",
                                                        "items": [{"key": "bundle.pem", "path": "ca.crt"}]}
        mounts = {m["name"]: m for m in backup_container(objects)["volumeMounts"]}
        assert mounts["postgresql-ca"] == {"name": "postgresql-ca", "mountPath": "/etc/agentforge/tls/postgresql",
                                           "readOnly": True}

    def test_backup_ssl_mode_wins(self):
        objects = render_chart(merged(EXTERNAL, self.CA, {"backup": {"sslMode": "require"}}))
        assert literal(objects, "PGSSLMODE") == "require"

    def test_backup_ssl_mode_for_a_url_from_the_users_secret(self):
        objects = render_chart(merged(BACKUP, {"postgresql": {"enabled": False}, "externalDatabase": {
            "host": "db.example.com", "existingSecret": "db", "existingSecretUrlKey": "url"},
            "backup": {"sslMode": "require"}}))
        assert literal(objects, "PGSSLMODE") == "require"


class TestClaim:
    def test_kept_claim_mounted_where_the_script_writes(self):
        objects = render_chart(BACKUP)
        claim = objects.get("PersistentVolumeClaim", NAME)
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
        assert claim["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"
        (volume,) = [v for v in pod(objects)["spec"]["volumes"] if v["name"] == "backups"]
        assert volume == {"name": "backups", "persistentVolumeClaim": {"claimName": NAME}}
        (mount,) = [m for m in backup_container(objects)["volumeMounts"] if m["name"] == "backups"]
        assert mount["mountPath"] == literal(objects, "BACKUP_DIR") == "/backups"
        assert "readOnly" not in mount

    def test_size_class_and_access_modes(self):
        objects = render_chart(merged(BACKUP, {"backup": {"persistence": {
            "size": "50Gi", "storageClass": "cold", "accessModes": ["ReadWriteMany"]}}}))
        assert objects.get("PersistentVolumeClaim", NAME)["spec"] == {
            "accessModes": ["ReadWriteMany"], "storageClassName": "cold",
            "resources": {"requests": {"storage": "50Gi"}}}

    @pytest.mark.parametrize("own,global_class,expected", [("", "standard", "standard"), ("-", "standard", ""),
                                                           ("fast", "standard", "fast")])
    def test_storage_class_falls_back_to_the_global_one(self, own, global_class, expected):
        objects = render_chart(merged(BACKUP, {"global": {"storageClass": global_class},
                                               "backup": {"persistence": {"storageClass": own}}}))
        assert objects.get("PersistentVolumeClaim", NAME)["spec"]["storageClassName"] == expected

    def test_existing_claim(self):
        objects = render_chart(merged(BACKUP, {"backup": {"persistence": {"existingClaim": "nfs-dumps"}}}))
        assert objects.find("PersistentVolumeClaim", NAME) is None
        (volume,) = [v for v in pod(objects)["spec"]["volumes"] if v["name"] == "backups"]
        assert volume["persistentVolumeClaim"] == {"claimName": "nfs-dumps"}

    def test_common_annotations_cannot_drop_the_keep(self):
        objects = render_chart(merged(BACKUP, {"commonAnnotations": {"team": "db", "helm.sh/resource-policy": ""}}))
        annotations = objects.get("PersistentVolumeClaim", NAME)["metadata"]["annotations"]
        assert annotations == {"helm.sh/resource-policy": "keep", "team": "db"}


class TestClaimCheck:
    """A plain Job that mounts the backup claim at every install and upgrade, so that a claim of a WaitForFirstConsumer
    StorageClass is bound then (helm --wait, and Argo CD's health check, wait for it), and that proves it writable."""

    def test_mounts_the_claim_as_the_dump_pods_do(self):
        objects = render_chart(BACKUP)
        spec = check_job(objects)["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        assert spec["volumes"] == [v for v in _pod_spec(objects)["volumes"] if v["name"] == "backups"]
        assert c["volumeMounts"] == [m for m in backup_container(objects)["volumeMounts"] if m["name"] == "backups"]
        assert c["image"] == backup_container(objects)["image"]
        assert spec["securityContext"] == _pod_spec(objects)["securityContext"]
        assert c["securityContext"] == backup_container(objects)["securityContext"]
        assert restricted_violations(spec) == [] and spec["automountServiceAccountToken"] is False
        assert spec["restartPolicy"] == "Never"
        # It connects to nothing and holds no credential.
        assert c["env"] == [{"name": "BACKUP_DIR", "value": "/backups"}] and "envFrom" not in c
        assert pod(objects)["metadata"]["labels"] == check_job(objects)["spec"]["template"]["metadata"]["labels"]

    def test_named_after_its_pod_template(self):
        """A Job's pod template is immutable: a new one gets a new name (and Helm deletes the old one); the same
        values give the same name, render after render."""
        first = check_job(render_chart(BACKUP, fresh=True))["metadata"]["name"]
        assert check_job(render_chart(BACKUP, fresh=True))["metadata"]["name"] == first
        other = render_chart(merged(BACKUP, {"postgresql": {"image": {"tag": "16.4-alpine"}}}))
        assert check_job(other)["metadata"]["name"] != first
        assert len(first) <= 63

    def test_existing_claim(self):
        objects = render_chart(merged(BACKUP, {"backup": {"persistence": {"existingClaim": "nfs-dumps"}}}))
        (volume,) = check_job(objects)["spec"]["template"]["spec"]["volumes"]
        assert volume["persistentVolumeClaim"] == {"claimName": "nfs-dumps"}

    def test_off_without_backups(self, default_render):
        assert not [o for o in default_render.of_kind("Job") if "backup" in o["metadata"]["name"]]


class TestSchedule:
    def test_defaults(self):
        objects = render_chart(BACKUP)
        spec = cronjob(objects)["spec"]
        assert spec["schedule"] == "0 3 * * *"
        assert spec["concurrencyPolicy"] == "Forbid"
        assert "timeZone" not in spec and "suspend" not in spec
        assert job_spec(objects)["template"]["spec"]["restartPolicy"] == "Never"

    def test_retention_and_deadline_reach_the_script(self):
        objects = render_chart(merged(BACKUP, {"backup": {"retention": 30, "activeDeadlineSeconds": 7201}}))
        assert literal(objects, "BACKUP_RETENTION") == "30"
        # A partial file older than the deadline, rounded up to the minute, belongs to no live run.
        assert literal(objects, "BACKUP_STALE_MINUTES") == "121"
        assert '"$BACKUP_STALE_MINUTES"' in script(objects) and "$BACKUP_RETENTION" in script(objects)


def _pod_spec(objects):
    return pod(objects)["spec"]


# Every backup.* key beside enabled: a value other than its default, and where it must render.
KEYS = {
    "schedule": ("*/30 2-4 * * MON-FRI", lambda o: cronjob(o)["spec"]["schedule"]),
    "timeZone": ("Europe/Berlin", lambda o: cronjob(o)["spec"]["timeZone"]),
    "retention": (2, lambda o: int(literal(o, "BACKUP_RETENTION"))),
    "startingDeadlineSeconds": (120, lambda o: cronjob(o)["spec"]["startingDeadlineSeconds"]),
    "successfulJobsHistoryLimit": (1, lambda o: cronjob(o)["spec"]["successfulJobsHistoryLimit"]),
    "failedJobsHistoryLimit": (5, lambda o: cronjob(o)["spec"]["failedJobsHistoryLimit"]),
    "backoffLimit": (0, lambda o: job_spec(o)["backoffLimit"]),
    "activeDeadlineSeconds": (600, lambda o: job_spec(o)["activeDeadlineSeconds"]),
    "resources": ({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
                  lambda o: backup_container(o)["resources"]),
    "podSecurityContext": ({"runAsNonRoot": True, "runAsUser": 1001, "runAsGroup": 1001, "fsGroup": 1001,
                            "fsGroupChangePolicy": "Always", "seccompProfile": {"type": "RuntimeDefault"}},
                           lambda o: _pod_spec(o)["securityContext"]),
    "containerSecurityContext": ({"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                  "capabilities": {"drop": ["ALL"]}, "runAsUser": 1002},
                                 lambda o: backup_container(o)["securityContext"]),
    "automountServiceAccountToken": (True, lambda o: _pod_spec(o)["automountServiceAccountToken"]),
    "nodeSelector": ({"disk": "large"}, lambda o: _pod_spec(o)["nodeSelector"]),
    "tolerations": ([{"key": "backups", "operator": "Exists", "effect": "NoSchedule"}],
                    lambda o: _pod_spec(o)["tolerations"]),
    "affinity": ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
        lambda o: _pod_spec(o)["affinity"]),
    "podAnnotations": ({"example.com/backup": "nightly"}, lambda o: pod(o)["metadata"]["annotations"]),
    "podLabels": ({"tier": "backup"}, lambda o: {"tier": pod(o)["metadata"]["labels"]["tier"]}),
    "priorityClassName": ("backups", lambda o: _pod_spec(o)["priorityClassName"]),
    "annotations": ({"example.com/owner": "dba"}, lambda o: cronjob(o)["metadata"]["annotations"]),
    "sslMode": ("verify-ca", lambda o: literal(o, "PGSSLMODE")),
    "image": ({"registry": "mirror.example", "repository": "postgres", "tag": "17.2", "pullPolicy": "Always",
               "pullSecrets": ["mirror"]},
              lambda o: {"registry": backup_container(o)["image"].split("/")[0],
                         "repository": backup_container(o)["image"].split("/", 1)[1].split(":")[0],
                         "tag": backup_container(o)["image"].rsplit(":", 1)[1],
                         "pullPolicy": backup_container(o)["imagePullPolicy"],
                         "pullSecrets": [s["name"] for s in _pod_spec(o)["imagePullSecrets"]]}),
    "persistence": ({"size": "1Gi", "storageClass": "nfs", "accessModes": ["ReadWriteMany"], "existingClaim": ""},
                    lambda o: {"size": o.get("PersistentVolumeClaim", NAME)["spec"]["resources"]["requests"]["storage"],
                               "storageClass": o.get("PersistentVolumeClaim", NAME)["spec"]["storageClassName"],
                               "accessModes": o.get("PersistentVolumeClaim", NAME)["spec"]["accessModes"],
                               "existingClaim": ""}),
}
# Keys that need another setting to render: sslMode and the CA are an external server's.
KEY_CONTEXT = {"sslMode": merged(EXTERNAL_DB, {"externalDatabase": {"sslRootCert": {"secret": "db-ca"}}})}


class TestEveryKey:
    def test_the_table_covers_every_key(self):
        assert set(KEYS) == set(DEFAULTS["backup"]) - {"enabled"}

    @pytest.mark.parametrize("key", sorted(KEYS))
    def test_key_renders_where_it_must(self, key):
        value, where = KEYS[key]
        assert value != DEFAULTS["backup"][key]
        objects = render_chart(deep_merge(KEY_CONTEXT.get(key, {}), {"backup": {"enabled": True, key: value}}))
        assert where(objects) == value

    def test_existing_claim_key(self):
        objects = render_chart(merged(BACKUP, {"backup": {"persistence": {"existingClaim": "mine"}}}))
        assert _pod_spec(objects)["volumes"][0]["persistentVolumeClaim"]["claimName"] == "mine"

    def test_digest_wins_over_the_tag(self):
        digest = "sha256:" + "ab" * 32
        objects = render_chart(merged(BACKUP, {"backup": {"image": {"repository": "postgres", "digest": digest}}}))
        assert backup_container(objects)["image"] == f"postgres@{digest}"
        assert backup_container(objects)["imagePullPolicy"] == "IfNotPresent"


class TestImage:
    def test_the_bundled_servers_image_by_default(self):
        objects = render_chart(BACKUP)
        server = objects.get("StatefulSet", "agentforge-postgresql")["spec"]["template"]["spec"]["containers"][0]
        assert backup_container(objects)["image"] == server["image"] == "library/postgres:16-alpine"
        assert backup_container(objects)["imagePullPolicy"] == server["imagePullPolicy"]

    def test_follows_the_postgresql_image(self):
        digest = "sha256:" + "cd" * 32
        objects = render_chart(merged(BACKUP, {"global": {"imageRegistry": "mirror.example"}, "postgresql": {
            "image": {"tag": "16.4-alpine", "digest": digest, "pullPolicy": "Always", "pullSecrets": ["pg-pull"]}}}))
        assert backup_container(objects)["image"] == f"mirror.example/library/postgres@{digest}"
        assert backup_container(objects)["imagePullPolicy"] == "Always"
        assert {"name": "pg-pull"} in _pod_spec(objects)["imagePullSecrets"]

    def test_global_pull_secrets(self):
        objects = render_chart(merged(BACKUP, {"global": {"imagePullSecrets": ["regcred"]}}))
        assert _pod_spec(objects)["imagePullSecrets"] == [{"name": "regcred"}]


class TestPod:
    def test_restricted_and_the_postgresql_pods_security_context(self):
        objects = render_chart(BACKUP)
        spec = _pod_spec(objects)
        assert restricted_violations(spec) == []
        server = objects.get("StatefulSet", "agentforge-postgresql")["spec"]["template"]["spec"]
        assert spec["securityContext"] == server["securityContext"]
        assert backup_container(objects)["securityContext"] == server["containers"][0]["securityContext"]
        assert backup_container(objects)["securityContext"]["readOnlyRootFilesystem"] is True
        assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False

    def test_requests_and_limits(self):
        resources = backup_container(render_chart(BACKUP))["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])

    def test_labels_select_the_backup_component_only(self):
        objects = render_chart(BACKUP)
        selector = {"app.kubernetes.io/name": "agentforge", "app.kubernetes.io/instance": "agentforge",
                    "app.kubernetes.io/component": "backup"}
        for labels in (cronjob(objects)["metadata"]["labels"], cronjob(objects)["spec"]["jobTemplate"]["metadata"][
                "labels"], pod(objects)["metadata"]["labels"]):
            assert selector.items() <= labels.items()
        for service in objects.of_kind("Service"):
            assert not service["spec"]["selector"].items() <= pod(objects)["metadata"]["labels"].items()

    def test_namespace_override_and_common_metadata(self):
        objects = render_chart(merged(BACKUP, {"namespaceOverride": "data", "commonLabels": {"team": "ai"},
                                               "commonAnnotations": {"a": "common", "b": "common"},
                                               "backup": {"annotations": {"b": "own"}}}))
        for kind in ("CronJob", "PersistentVolumeClaim"):
            assert objects.get(kind, NAME)["metadata"]["namespace"] == "data"
            assert objects.get(kind, NAME)["metadata"]["labels"]["team"] == "ai"
        assert cronjob(objects)["metadata"]["annotations"] == {"a": "common", "b": "own"}
        assert literal(objects, "PGHOST") == "agentforge-postgresql.data.svc.cluster.local"
        assert objects.get("NetworkPolicy", "agentforge-backup-egress")["metadata"]["namespace"] == "data"

    @pytest.mark.parametrize("release", ["r", "x" * 53, "agentforge-" + "y" * 42])
    def test_names_fit_for_every_release_name(self, release):
        objects = render_chart(BACKUP, name=release)
        (job,) = objects.of_kind("CronJob")
        # The controller names each Job <cronjob>-<minutes since the epoch, 8 digits>, at most 63 characters (its
        # pods' job-name label); the API refuses a CronJob name beyond 52.
        assert len(job["metadata"]["name"]) <= 52 and job["metadata"]["name"].endswith("-backup")


class TestNetworkPolicy:
    """Who the backup pods may reach, by the API's semantics (tests/netpol.py) over the render's own policies."""

    KUBE_DNS = Pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, "10.96.0.10")
    DATABASE = External("database", "192.0.2.10")
    ELSEWHERE = External("elsewhere", "198.51.100.7")

    @pytest.fixture(scope="class", params=[False, True], ids=["egress-off", "egress-on"])
    @classmethod
    def scene(cls, request):
        return Scene(merged(BACKUP, {"networkPolicy": {"egress": {"enabled": request.param}}}))

    def test_backup_reaches_postgresql_and_dns_only(self, scene):
        backup = scene.pod("backup")
        reached = {(d, port) for s, d, port in scene.cluster.reachability([backup], scene.pods + scene.outsiders,
                                                                          ALL_PORTS) if s == "backup"}
        assert reached == {("postgresql", 5432)}
        assert scene.cluster.allowed(backup, self.KUBE_DNS, 53, "UDP")
        assert scene.cluster.allowed(backup, self.KUBE_DNS, 53, "TCP")
        assert not scene.cluster.allowed(backup, self.KUBE_DNS, 80)
        for port in (80, 443, 5432):
            assert not scene.cluster.allowed(backup, self.ELSEWHERE, port)

    def test_nothing_reaches_the_backup_pods(self, scene):
        backup = scene.pod("backup")
        assert scene.cluster.isolated(backup, "Ingress")
        assert not any(scene.cluster.allowed(source, backup, port) for source in scene.pods + scene.outsiders
                       for port in ALL_PORTS if source is not backup)

    def test_others_keep_their_paths_to_postgresql(self, scene):
        sources = {s for s, d, port in scene.matrix() if d == "postgresql"}
        assert sources == {"backend", "migrations", "backup"}

    @pytest.mark.parametrize("cidr,database_ok,elsewhere_ok", [("192.0.2.10/32", True, False), ("", True, True)])
    def test_external_database(self, cidr, database_ok, elsewhere_ok):
        scene = Scene(merged(EXTERNAL, {"networkPolicy": {"egress": {"externalDatabaseCIDR": cidr}}}))
        backup = scene.pod("backup")
        assert scene.cluster.allowed(backup, self.DATABASE, 5432) is database_ok
        assert scene.cluster.allowed(backup, self.ELSEWHERE, 5432) is elsewhere_ok
        assert not scene.cluster.allowed(backup, self.DATABASE, 5433)
        assert not scene.cluster.allowed(backup, self.ELSEWHERE, 443)
        assert not scene.cluster.reachability([backup], scene.pods, ALL_PORTS)

    def test_extra_to_opens_the_backup_pods_too(self):
        scene = Scene(merged(BACKUP, {"networkPolicy": {"egress": {"extraTo": [
            {"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "ports": [{"port": 9000, "protocol": "TCP"}]}]}}}))
        assert scene.cluster.allowed(scene.pod("backup"), self.ELSEWHERE, 9000)
        assert not scene.cluster.allowed(scene.pod("backup"), self.ELSEWHERE, 9001)

    def test_no_policy_without_network_policies(self):
        objects = render_chart(merged(BACKUP, {"networkPolicy": {"enabled": False}}))
        assert objects.of_kind("NetworkPolicy") == [] and objects.find("CronJob", NAME) is not None


class TestValidation:
    @pytest.mark.parametrize("values,message", [
        ({"retention": 0}, "backup/retention"),
        ({"retention": "7"}, "backup/retention"),
        ({"schedule": "every night"}, "backup/schedule"),
        ({"schedule": "0 3 * *"}, "backup/schedule"),
        ({"schedule": "TZ=UTC 0 3 * * *"}, "backup/schedule"),
        ({"schedule": "@every 1h"}, "backup/schedule"),
        ({"timeZone": "Mars Time"}, "backup/timeZone"),
        ({"backoffLimit": -1}, "backup/backoffLimit"),
        ({"activeDeadlineSeconds": 10}, "backup/activeDeadlineSeconds"),
        ({"successfulJobsHistoryLimit": 1000}, "backup/successfulJobsHistoryLimit"),
        ({"sslMode": "on"}, "backup/sslMode"),
        ({"persistence": {"size": "ten gigs"}}, "backup/persistence/size"),
        ({"persistence": {"accessModes": []}}, "backup/persistence/accessModes"),
        ({"persistence": {"existingClaim": "Not_A_Name"}}, "backup/persistence/existingClaim"),
        ({"image": {"repository": "Postgres"}}, "backup/image/repository"),
        ({"image": {"pullPolicy": "Sometimes"}}, "backup/image/pullPolicy"),
        ({"resources": {"limits": {"memory": "lots"}}}, "backup/resources"),
        ({"unknownKey": 1}, "unknownKey"),
    ])
    def test_schema_refuses_naming_the_key(self, values, message):
        assert message in render_error({"backup": {"enabled": True, **values}})

    @pytest.mark.parametrize("values,messages", [
        ({"backup": {"image": {"repository": "postgres"}}},
         ["backup.image.tag (or backup.image.digest) is required with backup.image.repository"]),
        ({"backup": {"image": {"tag": "17"}}}, ["backup.image.tag is set while backup.image.repository is empty"]),
        ({"backup": {"image": {"pullSecrets": ["x"]}}},
         ["backup.image.pullSecrets is set while backup.image.repository is empty"]),
        ({"backup": {"sslMode": "require"}}, ["backup.sslMode (\"require\") is set while postgresql.enabled is true"]),
        (merged(EXTERNAL_DB, {"backup": {"sslMode": "verify-full"}}),
         ["backup.sslMode (or externalDatabase.sslMode) \"verify-full\"", "externalDatabase.sslRootCert"]),
    ])
    def test_cross_key_checks_name_every_key(self, values, messages):
        error = render_error(deep_merge(values, BACKUP))
        for message in messages:
            assert message in error

    def test_external_database_needs_its_host(self):
        error = render_error(merged(BACKUP, {"postgresql": {"enabled": False}, "externalDatabase": {"password": "x"}}))
        assert "externalDatabase" in error and "host" in error

    def test_backup_settings_are_not_checked_while_off(self):
        assert render_chart({"backup": {"image": {"tag": "17"}, "sslMode": "require"}}).find("CronJob", NAME) is None

    @pytest.mark.parametrize("schedule", ["@daily", "@hourly", "@weekly", "*/15 * * * *", "0 3 * * 1-5",
                                          "30 2 1,15 * *", "0 3 * * MON", "0\t3 * * *"])
    def test_schedules_the_controller_takes(self, schedule):
        assert cronjob(render_chart(merged(BACKUP, {"backup": {"schedule": schedule}})))["spec"]["schedule"] == schedule


class TestReadme:
    """The chart README's reader pod (backup-reader.yaml) and restore command fit what the chart renders."""

    @pytest.fixture(scope="class")
    @classmethod
    def reader(cls):
        from harness.realnode import reader_manifest

        objects = render_chart(BACKUP)
        image = backup_container(objects)["image"]
        manifest = load_yaml(reader_manifest({"release": "agentforge", "fullname": "agentforge", "image": image}))
        manifest["metadata"]["namespace"] = "agentforge"
        return objects, manifest

    def test_restricted_with_the_backup_pods_security_context(self, reader):
        objects, manifest = reader
        assert restricted_violations(manifest["spec"]) == []
        assert manifest["spec"]["securityContext"].items() <= _pod_spec(objects)["securityContext"].items()
        assert manifest["spec"]["automountServiceAccountToken"] is False

    def test_reads_the_claim_and_the_secret_the_render_has(self, reader):
        objects, manifest = reader
        (volume,) = manifest["spec"]["volumes"]
        assert volume["persistentVolumeClaim"]["claimName"] == NAME
        (c,) = manifest["spec"]["containers"]
        assert c["volumeMounts"][0]["mountPath"] == literal(objects, "BACKUP_DIR")
        reader_env = {e["name"]: e for e in c["env"]}
        for name in ("PGUSER", "PGPASSWORD"):
            assert reader_env[name] == env(objects)[name]
        assert reader_env["PGDATABASE"]["value"] == literal(objects, "PGDATABASE")
        # The Service's short name, which resolves in the release's namespace.
        assert literal(objects, "PGHOST").startswith(reader_env["PGHOST"]["value"] + ".agentforge.svc.")

    def test_the_policies_let_it_reach_the_database_only(self, reader):
        from harness.policy import pod_of

        objects, manifest = reader
        scene = Scene(BACKUP)
        pod = pod_of(manifest, "10.244.9.9", name="reader")
        reached = {(d, port) for _, d, port in scene.cluster.reachability([pod], scene.pods, ALL_PORTS)}
        assert reached == {("postgresql", 5432)}

    def test_restore_command(self):
        command = readme_restore_command()
        assert command.startswith("pg_restore ") and "--dbname=\"$PGDATABASE\"" in command
        assert "--single-transaction" in command


# -- real servers ---------------------------------------------------------------------------------------------------


# -- with the application ---------------------------------------------------------------------------------------


