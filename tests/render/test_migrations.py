"""The migration Job: a Helm hook that never deadlocks an install, and whose pods no backend object selects."""

import re

import pytest

from harness.objects import container, env_sources, pod_spec
from harness.render import render_chart

JOB = "agentforge-migrate"


def selects(selector: dict, labels: dict) -> bool:
    return selector.items() <= labels.items()


class TestHook:
    def test_hook_annotations(self, default_render):
        annotations = default_render.get("Job", JOB)["metadata"]["annotations"]
        phases = set(annotations["helm.sh/hook"].split(","))
        assert "pre-upgrade" in phases
        # Never pre-install: the bundled database is created by the release itself.
        assert phases == {"post-install", "pre-upgrade"}
        # Only before-hook-creation: hook-succeeded would delete the Job and its logs, which NOTES.txt points to.
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"

    def test_job_bounds(self, default_render):
        spec = default_render.get("Job", JOB)["spec"]
        assert spec["backoffLimit"] == 3
        assert spec["activeDeadlineSeconds"] == 900
        assert spec["ttlSecondsAfterFinished"] == 3600
        assert pod_spec(default_render.get("Job", JOB))["restartPolicy"] == "Never"

    def test_runs_alembic_in_backend_dir_with_backend_image(self, default_render):
        job = default_render.get("Job", JOB)
        migrate = container(job, "migrate")
        # alembic upgrade head, with DATABASE_URL's "%" doubled for alembic's configparser first (test_app_migrations.py
        # runs it with a password full of them).
        assert migrate["command"][:2] == ["sh", "-c"] and migrate["command"][-3:] == ["alembic", "upgrade", "head"]
        assert 'sed "s/%/%%/g"' in migrate["command"][2] and migrate["command"][2].endswith('exec "$@"')
        assert migrate["workingDir"] == "/app/backend"
        backend = container(default_render.get("Deployment", "agentforge-backend"), "backend")
        assert migrate["image"] == backend["image"]
        assert "envFrom" not in migrate  # only what the migrations read (test_app_settings.py checks the code)
        assert {e["name"] for e in migrate["env"]} == {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "DEBUG", "SECRET_KEY",
                                                       "DATABASE_URL"}

    def test_waits_for_bundled_postgres_first(self, default_render):
        wait = pod_spec(default_render.get("Job", JOB))["initContainers"][0]
        assert "pg_isready" in wait["command"][-1]
        env = {e["name"]: e.get("value") for e in wait["env"]}
        assert env["DB_HOST"] == "agentforge-postgresql.agentforge.svc.cluster.local"
        assert env["DB_PORT"] == "5432"

    def test_wait_names_a_user(self, default_render):
        """Without one, pg_isready under a uid the image does not know never tries
        (tests/servers/test_real_servers.py)."""
        wait = pod_spec(default_render.get("Job", JOB))["initContainers"][0]
        assert env_sources(default_render, default_render.get("Job", JOB), "wait-for-database")["PGUSER"] == (
            "Secret", "agentforge-secrets", "POSTGRES_USER")
        assert "--username" not in wait["command"][-1]

    def test_waits_for_external_database(self):
        objects = render_chart({"postgresql": {"enabled": False},
                                "externalDatabase": {"host": "db.example.net", "port": 6432, "password": "pw"}})
        wait = pod_spec(objects.get("Job", JOB))["initContainers"][0]
        env = {e["name"]: e.get("value") for e in wait["env"]}
        assert (env["DB_HOST"], env["DB_PORT"]) == ("db.example.net", "6432")


class TestNotSelectedByBackend:
    def test_pods_have_their_own_component(self, default_render):
        labels = default_render.get("Job", JOB)["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "migrations"

    @pytest.mark.parametrize("kind,path", [
        ("Service", ("spec", "selector")),
        ("PodDisruptionBudget", ("spec", "selector", "matchLabels")),
        ("Deployment", ("spec", "selector", "matchLabels")),
    ])
    def test_backend_selectors_miss_migration_pods(self, default_render, kind, path):
        labels = default_render.get("Job", JOB)["spec"]["template"]["metadata"]["labels"]
        selector = default_render.get(kind, "agentforge-backend")
        for key in path:
            selector = selector[key]
        assert selector, "empty selector would select everything"
        assert not selects(selector, labels)

    def test_hpa_scales_only_the_backend_deployment(self, default_render):
        hpa = default_render.get("HorizontalPodAutoscaler", "agentforge-backend")
        target = hpa["spec"]["scaleTargetRef"]
        deployment = default_render.get(target["kind"], target["name"])
        job_labels = default_render.get("Job", JOB)["spec"]["template"]["metadata"]["labels"]
        assert not selects(deployment["spec"]["selector"]["matchLabels"], job_labels)


class TestPlainJob:
    def test_plain_job_has_no_hook_and_a_content_name(self):
        objects = render_chart({"migrations": {"useHelmHooks": False}})
        (job,) = objects.of_kind("Job")
        assert "annotations" not in job["metadata"]
        assert re.fullmatch(JOB + "-[0-9a-f]{8}", job["metadata"]["name"]), job["metadata"]["name"]

    @staticmethod
    def job_name(backend):
        """The Job's name in a render of its own (fresh: a cached render would return the same object twice)."""
        values = {"migrations": {"useHelmHooks": False}, "backend": backend}
        return render_chart(values, fresh=True).of_kind("Job")[0]["metadata"]["name"]

    @pytest.mark.parametrize("change", [
        {"image": {"tag": "1.0.1"}},
        {"extraEnv": [{"name": "LOG_LEVEL", "value": "debug"}]},
        {"podLabels": {"team": "ai"}},
        {"podSecurityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}},
    ])
    def test_plain_job_name_changes_with_any_pod_template_change(self, change):
        """A Job's pod template is immutable: any change must give a new Job, or the upgrade fails. The changed
        name is itself stable (a random one would differ from the base trivially, and rerun the Job every sync)."""
        changed = self.job_name(change)
        assert changed == self.job_name(change)
        assert self.job_name({}) != changed

    def test_plain_job_name_is_stable(self):
        # Two separate renders of the same values: the name must not depend on anything random, not even the
        # secrets generated anew on every render (which the pod reads by reference only).
        assert self.job_name({}) == self.job_name({})

    def test_plain_job_name_ignores_what_its_pod_does_not_hold(self):
        """Values outside the Job's pod template (a config value the pod reads through the ConfigMap, the frontend)
        keep its name: a new name would rerun the migration for nothing."""
        values = {"migrations": {"useHelmHooks": False}}
        base = render_chart(values, fresh=True).of_kind("Job")[0]["metadata"]["name"]
        other = render_chart(values | {"config": {"authRateLimit": 9}, "frontend": {"replicaCount": 3}},
                             fresh=True).of_kind("Job")[0]["metadata"]["name"]
        assert other == base

    def test_plain_job_has_no_ttl(self):
        """A GitOps tool would see a TTL-deleted Job as missing and run the migration again."""
        job = render_chart({"migrations": {"useHelmHooks": False}}).of_kind("Job")[0]
        assert "ttlSecondsAfterFinished" not in job["spec"]

    def test_disabled(self):
        assert render_chart({"migrations": {"enabled": False}}).of_kind("Job") == []
