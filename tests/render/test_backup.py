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

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from test_networkpolicy import ALL_PORTS, EXTERNAL_DB, Scene, merged
from test_security import restricted_violations

from chart import CHART, ROOT, deep_merge, load_yaml, render_chart, render_error
from netpol import External, Pod

NAME = "agentforge-backup"
BACKUP = {"backup": {"enabled": True}}
EXTERNAL = merged(EXTERNAL_DB, BACKUP)
DEFAULTS = load_yaml((CHART / "values.yaml").read_text())
DUMP_NAME = re.compile(r"^agentforge-\d{8}T\d{6}Z\.dump$")
README = CHART / "README.md"


def cronjob(objects) -> dict:
    return objects.get("CronJob", NAME)


def job_spec(objects) -> dict:
    return cronjob(objects)["spec"]["jobTemplate"]["spec"]


def pod(objects) -> dict:
    return job_spec(objects)["template"]


def backup_container(objects) -> dict:
    (c,) = pod(objects)["spec"]["containers"]
    assert c["name"] == "backup"
    return c


def script(objects) -> str:
    """The shell script the container runs: `sh -c SCRIPT`, nothing else on its command line."""
    c = backup_container(objects)
    assert c["command"][:2] == ["sh", "-c"] and len(c["command"]) == 3 and "args" not in c, c["command"]
    return c["command"][2]


def env(objects) -> dict[str, dict]:
    return {e["name"]: e for e in backup_container(objects)["env"]}


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


def check_job(objects) -> dict:
    (job,) = [o for o in objects.of_kind("Job") if o["metadata"]["name"].startswith(f"{NAME}-check-")]
    return job


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
        spec = cronjob(render_chart(BACKUP))["spec"]
        assert spec["schedule"] == "0 3 * * *"
        assert spec["concurrencyPolicy"] == "Forbid"
        assert "timeZone" not in spec and "suspend" not in spec
        assert job_spec(render_chart(BACKUP))["template"]["spec"]["restartPolicy"] == "Never"

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
        from test_real_backup import reader_manifest

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
        from netpol import pod_of

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

BUSYBOX_APPLETS = ("sh", "find", "date", "sleep", "rm", "sync", "mv", "wc", "ls", "grep", "sort", "tail", "cat",
                   "id")


def busybox_bin(base: Path) -> Path:
    """A folder of busybox's applets (the alpine image's shell and tools), the only tools on PATH beside PostgreSQL's
    own."""
    if not shutil.which("busybox"):
        subprocess.run(["bash", str(ROOT / "scripts" / "install-test-servers.sh")], check=False, timeout=600)
    busybox = shutil.which("busybox")
    if not busybox:
        pytest.fail("busybox missing: run scripts/install-test-servers.sh")
    folder = base / "busybox-bin"
    folder.mkdir(exist_ok=True)
    for applet in BUSYBOX_APPLETS:
        if not (folder / applet).exists():
            (folder / applet).symlink_to(busybox)
    return folder


class Runner:
    """The rendered backup container's script, run by a shell of this machine with the rendered environment (the
    Secret's keys resolved) in which only the database's host and port and the claim's folder are replaced."""

    def __init__(self, objects, binaries: dict, shell: str, base: Path):
        from pods import ObjectStore, resolve_env

        self.script = script(objects)
        self.env = resolve_env(ObjectStore(objects), cronjob(objects), backup_container(objects))
        if shell == "busybox":
            folder = busybox_bin(base)
            self.shell, self.path = str(folder / "sh"), f"{folder}:{binaries['pg']}"
        else:
            self.shell, self.path = "/bin/sh", binaries["PATH"]

    def environment(self, server, folder: Path, **override: str) -> dict[str, str]:
        return {**self.env, "PATH": self.path, "LANG": "C.UTF-8", "PGHOST": "127.0.0.1", "PGPORT": str(server.port),
                "BACKUP_DIR": str(folder), **override}

    def popen(self, server, folder: Path, **override: str) -> subprocess.Popen:
        return subprocess.Popen([self.shell, "-c", self.script], env=self.environment(server, folder, **override),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, server, folder: Path, **override: str) -> subprocess.CompletedProcess:
        proc = self.popen(server, folder, **override)
        out, err = proc.communicate(timeout=300)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def readme_restore_command() -> str:
    """The pg_restore command of the chart README's restore step, as the reader pod's shell runs it."""
    found = re.findall(r"exec agentforge-backup-reader -- sh -c '(pg_restore [^']*/backups/<dump>)'",
                       README.read_text())
    assert len(found) == 1, found
    assert "--clean --if-exists --no-owner" in found[0], found[0]
    return found[0]


def restore(runner: Runner, server, dump: Path) -> subprocess.CompletedProcess:
    """The README's restore command, with the reader pod's environment (the CronJob's), from `dump`."""
    command = readme_restore_command().replace("/backups/<dump>", str(dump))
    return subprocess.run([runner.shell, "-c", command], env=runner.environment(server, dump.parent),
                          capture_output=True, text=True, timeout=600)


def dumps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if DUMP_NAME.match(p.name))


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


RETENTION = 3
# Rows of filler text (128 hex characters each, which compress about as text does): a database of some size, for the
# timings.
FILLER_ROWS = 300_000


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """A real PostgreSQL with the rendered bundled server's user, password (full of characters that break URLs and
    shells) and database, holding a table of filler rows; and the render (retention 3)."""
    import servers
    from appstack import scenario_values

    objects = render_chart(deep_merge(scenario_values("default"), {"backup": {"enabled": True,
                                                                              "retention": RETENTION}}))
    rendered = servers.rendered_servers(objects)
    binaries = servers.binaries()
    server = servers.start_postgres(binaries, rendered["secret"]["POSTGRES_USER"],
                                    rendered["secret"]["POSTGRES_PASSWORD"], "agentforge")
    try:
        asyncio.run(_execute(server, "CREATE TABLE filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || "
                                     f"md5((g * 13)::text) || md5((g * 31)::text) AS body "
                                     f"FROM generate_series(1, {FILLER_ROWS}) g; "
                                     "ALTER TABLE filler ADD PRIMARY KEY (id)"))
        yield {"objects": objects, "binaries": binaries, "server": server, "base": tmp_path_factory.mktemp("backup")}
    finally:
        server.stop()


async def _connect(server, database: str | None = None):
    import asyncpg

    return await asyncpg.connect(host="127.0.0.1", port=server.port, user=server.user, password=server.password,
                                 database=database or server.database, timeout=10)


async def _execute(server, sql: str, database: str | None = None) -> None:
    conn = await _connect(server, database)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fetchval(server, sql: str, database: str | None = None):
    conn = await _connect(server, database)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest.mark.servers
@pytest.mark.parametrize("shell", ["debian", "busybox"])
class TestAgainstARealServer:
    def test_the_password_is_hostile(self, database, shell):
        from appstack import HOSTILE_PASSWORD

        assert database["server"].password == HOSTILE_PASSWORD

    def test_retention_keeps_the_newest(self, database, shell, record_property):
        runner = Runner(database["objects"], database["binaries"], shell, database["base"])
        folder = database["base"] / f"retention-{shell}"
        folder.mkdir()
        # Files of the claim that are not dumps of the chart's, never touched.
        (folder / "notes.txt").write_text("keep me\n")
        (folder / "agentforge-manual.dump").write_bytes(b"mine")
        made = []
        for _ in range(RETENTION + 2):
            started = time.monotonic()
            done = runner.run(database["server"], folder)
            seconds = time.monotonic() - started
            assert done.returncode == 0, done.stderr
            made.append(re.search(r"into (agentforge-\S+\.dump):", done.stdout).group(1))
        assert dumps(folder) == sorted(made[-RETENTION:])
        assert (folder / "notes.txt").exists() and (folder / "agentforge-manual.dump").exists()
        assert partials(folder) == []
        assert f"deleted {made[1]} (backup.retention: {RETENTION})" in done.stdout
        size = (folder / made[-1]).stat().st_size
        record_property(f"timing: backup ({shell}): pg_dump of {FILLER_ROWS} rows "
                        f"({asyncio.run(_table_mib(database['server'])):.0f} MiB table), dump "
                        f"{size / 2**20:.1f} MiB, s", round(seconds, 2))

    def test_a_failed_dump_deletes_nothing_and_leaves_no_partial(self, database, shell):
        runner = Runner(database["objects"], database["binaries"], shell, database["base"])
        folder = database["base"] / f"failed-{shell}"
        folder.mkdir()
        for _ in range(RETENTION):
            assert runner.run(database["server"], folder).returncode == 0
        before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
        wrong = runner.run(database["server"], folder, PGPASSWORD="wrong")
        assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
        # Nothing answers: the script waits (here 4 s of its rendered BACKUP_WAIT_SECONDS), then pg_dump fails.
        unreachable = runner.run(database["server"], folder, PGPORT="1", BACKUP_WAIT_SECONDS="4")
        assert unreachable.returncode != 0 and "waiting for 127.0.0.1:1 to answer" in unreachable.stdout
        assert "connection to server" in unreachable.stderr
        assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
        assert "deleted" not in wrong.stdout + unreachable.stdout

    def test_a_stopped_dump_removes_its_partial_file(self, database, shell):
        """SIGTERM (the Job's deadline, an eviction) while pg_dump waits: the shell stops it and removes the partial
        file it had opened; the older dumps stay."""
        runner = Runner(database["objects"], database["binaries"], shell, database["base"])
        folder = database["base"] / f"stopped-{shell}"
        folder.mkdir()
        assert runner.run(database["server"], folder).returncode == 0
        before = dumps(folder)
        code, stderr = asyncio.run(_dump_stopped_while_locked(database["server"], runner, folder))
        assert code == 143, stderr
        assert dumps(folder) == before and partials(folder) == []
        still = subprocess.run(["pgrep", "-f", "--", f"--file={folder}/"], capture_output=True, text=True).stdout
        assert not still.split(), "pg_dump still runs"

    def test_the_claim_check_writes_and_leaves_nothing(self, database, shell):
        runner = Runner(database["objects"], database["binaries"], shell, database["base"])
        folder = database["base"] / f"check-{shell}"
        folder.mkdir()
        (c,) = check_job(database["objects"])["spec"]["template"]["spec"]["containers"]
        assert c["command"][:2] == ["sh", "-c"]
        done = subprocess.run([runner.shell, "-c", c["command"][2]], capture_output=True, text=True, timeout=60,
                              env={"PATH": runner.path, "BACKUP_DIR": str(folder)})
        assert done.returncode == 0 and "the backup claim is writable" in done.stdout, done.stderr
        assert list(folder.iterdir()) == []
        missing = subprocess.run([runner.shell, "-c", c["command"][2]], capture_output=True, text=True, timeout=60,
                                 env={"PATH": runner.path, "BACKUP_DIR": str(folder / "not-mounted")})
        assert missing.returncode != 0, "a claim it cannot write to fails the Job"

    def test_a_partial_file_older_than_the_deadline_is_removed(self, database, shell):
        runner = Runner(database["objects"], database["binaries"], shell, database["base"])
        folder = database["base"] / f"stale-{shell}"
        folder.mkdir()
        stale = folder / ".agentforge-20000101T000000Z.dump.partial"
        live = folder / ".agentforge-29990101T000000Z.dump.partial"
        for path in (stale, live):
            path.write_bytes(b"partial")
        minutes = int(runner.env["BACKUP_STALE_MINUTES"])
        old = time.time() - (minutes + 2) * 60
        os.utime(stale, (old, old))
        assert runner.run(database["server"], folder).returncode == 0
        assert not stale.exists() and live.exists()

    def test_the_readme_restore_brings_the_data_into_a_fresh_server(self, database, shell, record_property):
        import servers

        runner = Runner(database["objects"], database["binaries"], shell, database["base"])
        folder = database["base"] / f"restore-{shell}"
        folder.mkdir()
        done = runner.run(database["server"], folder)
        assert done.returncode == 0, done.stderr
        (dump,) = dumps(folder)
        source = database["server"]
        fresh = servers.start_postgres(database["binaries"], source.user, source.password, source.database)
        try:
            started = time.monotonic()
            restored = restore(runner, fresh, folder / dump)
            seconds = time.monotonic() - started
            assert restored.returncode == 0, restored.stderr
            query = "SELECT count(*) || ':' || md5(string_agg(body, '' ORDER BY id)) FROM filler"
            assert asyncio.run(_fetchval(fresh, query)) == asyncio.run(_fetchval(source, query))
            # Again, into the server that now holds the data: --clean --if-exists replaces it.
            again = restore(runner, fresh, folder / dump)
            assert again.returncode == 0, again.stderr
            assert asyncio.run(_fetchval(fresh, query)) == asyncio.run(_fetchval(source, query))
        finally:
            fresh.stop()
        size = (folder / dump).stat().st_size
        record_property(f"timing: backup ({shell}): pg_restore (README) of a {size / 2**20:.1f} MiB dump into a fresh "
                        "server, s", round(seconds, 2))


async def _table_mib(server) -> float:
    return await _fetchval(server, "SELECT pg_total_relation_size('filler')") / 2**20


async def _dump_stopped_while_locked(server, runner: Runner, folder: Path) -> tuple[int, str]:
    """Start the backup while another session holds an ACCESS EXCLUSIVE lock on the filler table (pg_dump then waits
    for it), and SIGTERM the shell once pg_dump has opened its partial file: the shell's exit code and stderr."""
    blocker = await _connect(server)
    proc = None
    try:
        await blocker.execute("BEGIN; LOCK TABLE filler IN ACCESS EXCLUSIVE MODE")
        proc = runner.popen(server, folder)
        deadline = time.monotonic() + 30
        while not partials(folder):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "pg_dump opened no partial file"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert proc.poll() is None, "the dump should be waiting for the lock"
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the shell did not stop on SIGTERM"
            await asyncio.sleep(0.1)
        return proc.returncode, proc.stderr.read()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        await blocker.close()


# -- with the application ---------------------------------------------------------------------------------------

USER = {"email": "kept@example.com", "password": "Backup-restore-1", "display_name": "Kept"}


def _client() -> dict:
    """A client address of its own for each call: the login rate limit counts per address."""
    _client.count = getattr(_client, "count", 0) + 1
    return {"X-Forwarded-For": f"203.0.113.{_client.count}"}


def _start_backend(stack, migrate: bool):
    """What the cluster runs, in its order: the migration Job (unless the schema comes from a dump), the data
    collector, the backend's wait-for-redis, the backend."""
    import appsrc

    image = appsrc.python_image("backend")
    if migrate:
        stack.run_to_completion("migrations", "wait-for-database", appsrc.tool_image("postgresql"), timeout=60)
        stack.run_to_completion("migrations", "migrate", image, timeout=300)
    if "data-collector" not in stack.pods:
        stack.serve("data-collector", "data-collector", appsrc.python_image("data-collector"))
    stack.run_to_completion("backend", "wait-for-redis", appsrc.tool_image("redis"), timeout=60)
    return stack.serve("backend", "backend", image)


def _logs_in(backend) -> bool:
    from apphttp import request

    status, body = request(backend, "POST", "/api/v1/auth/login",
                           {"email": USER["email"], "password": USER["password"]}, _client())
    return status == 200 and "access_token" in body


@pytest.fixture(scope="module")
def app_dump(app_ready, tmp_path_factory):
    """The default release with backups on, run: the migrations, the backend, a user registered through it; then the
    rendered backup script's dump of that database. Yields the stack (its backend stopped) and the dump."""
    from apphttp import request
    from appstack import Release, Stack, scenario_values

    rel = Release("default", deep_merge(scenario_values("default"), BACKUP))
    stack = Stack(rel)
    try:
        stack.start_postgres()
        stack.start_redis()
        backend = _start_backend(stack, migrate=True)
        status, body = request(backend, "POST", "/api/v1/auth/register", USER, _client())
        assert status == 201, body
        assert _logs_in(backend)
        folder = tmp_path_factory.mktemp("app-backups")
        runner = Runner(rel.objects, stack.binaries, "debian", folder)
        started = time.monotonic()
        done = runner.run(stack.postgres, folder)
        seconds = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        (dump,) = dumps(folder)
        # Scaled to 0 for the restore (README: Restore, step 1).
        stack.pods.pop("backend").stop()
        yield {"rel": rel, "stack": stack, "runner": runner, "dump": folder / dump, "seconds": seconds}
    finally:
        stack.close()


async def _alembic_version(server, database: str | None = None) -> set[str]:
    conn = await _connect(server, database)
    try:
        return {r[0] for r in await conn.fetch("SELECT version_num FROM alembic_version")}
    finally:
        await conn.close()


@pytest.mark.servers
@pytest.mark.app
class TestRestoreWithTheApplication:
    def test_the_dump_holds_the_schema_and_the_user(self, app_dump, record_property):
        import appsrc

        listing = subprocess.run(["pg_restore", "--list", str(app_dump["dump"])], capture_output=True, text=True,
                                 env={"PATH": app_dump["stack"].binaries["PATH"]}, check=True).stdout
        for table in ("users", "conversations", "messages", "alembic_version"):
            assert f"TABLE DATA public {table} " in listing, listing
        assert asyncio.run(_alembic_version(app_dump["stack"].postgres)) == appsrc.head_revisions()
        record_property("timing: backup (app): pg_dump of the app's migrated database with one user, dump "
                        f"{app_dump['dump'].stat().st_size / 1024:.0f} KiB, s", round(app_dump["seconds"], 2))

    def test_restore_into_the_running_server(self, app_dump, record_property):
        """The user's row lost (the users table emptied), the README's restore into the same server brings it back."""
        stack = app_dump["stack"]
        asyncio.run(_execute(stack.postgres, "TRUNCATE users CASCADE"))
        assert asyncio.run(_fetchval(stack.postgres, "SELECT count(*) FROM users")) == 0
        started = time.monotonic()
        done = restore(app_dump["runner"], stack.postgres, app_dump["dump"])
        seconds = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        backend = _start_backend(stack, migrate=False)
        try:
            assert _logs_in(backend)
        finally:
            stack.pods.pop("backend").stop()
        record_property("timing: backup (app): pg_restore (README) into the running server, s", round(seconds, 2))

    @pytest.mark.parametrize("fresh", ["empty", "migrated"])
    def test_restore_into_a_fresh_server(self, app_dump, fresh, record_property):
        """The database dropped; a fresh server (empty, as an external one would be; or migrated by a new
        install's post-install Job), the README's restore, and the backend of the same release logs the user in."""
        import appsrc
        from appstack import Stack

        old = app_dump["stack"].postgres
        asyncio.run(_execute(old, f'DROP DATABASE IF EXISTS "{old.database}" WITH (FORCE)', database="postgres"))
        assert not asyncio.run(_fetchval(old, f"SELECT 1 FROM pg_database WHERE datname = '{old.database}'",
                                         database="postgres"))
        stack = Stack(app_dump["rel"])
        try:
            stack.start_postgres()
            stack.start_redis()
            if fresh == "migrated":
                stack.run_to_completion("migrations", "migrate", appsrc.python_image("backend"), timeout=300)
            started = time.monotonic()
            done = restore(app_dump["runner"], stack.postgres, app_dump["dump"])
            seconds = time.monotonic() - started
            assert done.returncode == 0, done.stderr
            assert asyncio.run(_alembic_version(stack.postgres)) == appsrc.head_revisions()
            backend = _start_backend(stack, migrate=False)
            assert _logs_in(backend)
        finally:
            stack.close()
        record_property(f"timing: backup (app): pg_restore (README) into a fresh {fresh} server, s", round(seconds, 2))
