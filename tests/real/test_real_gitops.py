"""GitOps on the real node, as Argo CD syncs: `helm template` with the chart README's ci/gitops-values.yaml (helm test
hooks left out, as Argo CD leaves them) piped to `kubectl apply`, twice. The first apply brings the stack up from
Secrets the user manages, the plain migration Job completing against the bundled PostgreSQL (no hook waits for a
database that comes after it); the second changes nothing, no Secret and no Job; a user registers through the
backend."""

from __future__ import annotations

import base64
import json
import os
import time

import yaml

from harness import realnode
from harness.cluster import RESTRICTED
from harness.render import CHART

NAMESPACE = "af-real-gitops"
RELEASE = "agentforge"
GITOPS_VALUES = CHART / "ci" / "gitops-values.yaml"


def user_secret(name: str) -> dict:
    """The Secret ci/gitops-values.yaml names, with every key secrets.existingSecret documents."""
    password = base64.urlsafe_b64encode(os.urandom(18)).decode()
    host = f"{RELEASE}-{{}}.{NAMESPACE}.svc.cluster.local"
    data = {
        "SECRET_KEY": os.urandom(32).hex(),
        "ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "POSTGRES_USER": "agentforge",
        "POSTGRES_PASSWORD": password,
        "REDIS_PASSWORD": password,
        "DATABASE_URL": f"postgresql+asyncpg://agentforge:{password}@{host.format('postgresql')}:5432/agentforge",
        "REDIS_URL": f"redis://:{password}@{host.format('redis')}:6379/0",
    }
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NAMESPACE},
            "stringData": data}


def state(real_cli) -> dict[tuple[str, str], str]:
    """What a second apply must leave as it is: each Secret's and Job's resourceVersion, each workload's
    generation."""
    objects = real_cli.get(NAMESPACE, "secrets,jobs,deployments,statefulsets")["items"]
    return {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
            if o["kind"] in ("Secret", "Job") else o["metadata"]["generation"] for o in objects}


def test_template_applied_twice_comes_up_once_and_changes_nothing(real_cli, real_release, record_property):
    values = yaml.safe_load(GITOPS_VALUES.read_text())
    real_cli.create_namespace(NAMESPACE, RESTRICTED)
    try:
        real_cli.kubectl("apply", "-f", "-", input=json.dumps(user_secret(values["secrets"]["existingSecret"])))
        # Small: the main release runs beside it on this 2-core node. One pod of each (a PDB needs two), CPU
        # requests of 10m, no Prometheus.
        small = ["backend.replicaCount=1", "frontend.replicaCount=1", "backend.pdb.enabled=false",
                 "frontend.pdb.enabled=false", "monitoring.enabled=false"]
        small += [f"{c}.resources.requests.cpu=10m" for c in ("backend", "frontend", "dataCollector", "postgresql",
                                                              "redis")]
        small = [f"--set={key}" for key in small]
        manifest = real_cli.helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--skip-tests",
                                 *realnode.chart_values(), "--values", str(GITOPS_VALUES), *small).stdout
        started = time.monotonic()
        real_cli.kubectl("apply", "--namespace", NAMESPACE, "-f", "-", input=manifest)
        real_cli.kubectl("wait", "--namespace", NAMESPACE, "--for=condition=complete", "job",
                         "--selector", "app.kubernetes.io/component=migrations", "--timeout=600s", timeout=660)
        real_cli.wait_ready(NAMESPACE)
        seconds = time.monotonic() - started
        record_property("timing: real: GitOps first apply to every pod Ready", f"{seconds:.0f} s")
        before = state(real_cli)
        again = real_cli.kubectl("apply", "--namespace", NAMESPACE, "-f", "-", input=manifest).stdout
        after = state(real_cli)
        assert after == before and {"Job", "Secret", "Deployment"} <= {kind for kind, _ in before}, (before, after)
        # kubectl reports a StatefulSet "configured" on every apply: the API server adds apiVersion, kind,
        # volumeMode and status to its volumeClaimTemplates, an atomic list it then sends whole (a no-op: the
        # generation above did not move).
        changed = [line for line in again.splitlines()
                   if not line.endswith(" unchanged") and not line.startswith("statefulset.apps/")]
        assert not changed, changed
        account = {"email": "gitops@example.com", "password": "Gitops-" + os.urandom(6).hex(),
                   "display_name": "GitOps"}
        status, body = realnode.Api(real_cli, NAMESPACE, RELEASE).post("/api/v1/auth/register", account)
        assert status == 201, body
        print(f"GitOps: first apply to every pod Ready in {seconds:.0f} s; second apply: "
              f"{len(again.splitlines())} objects unchanged")
    finally:
        real_cli.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=300s", check=False,
                         timeout=360)
