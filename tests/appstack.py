"""A scenario's release, running for real: AgentForge's own code in the containers the chart renders.

For one values scenario (the default install, or a file of the chart's ci/ folder), `Release` renders the chart
and resolves every reference a pod makes, to rendered objects or to the objects a user of that scenario creates
beside the release (an existing Secret, an LLM key Secret, a ConfigMap of prompts). `Stack` then starts, on
127.0.0.1, real PostgreSQL and Redis configured from that render (the bundled servers' rendered settings, or the
credentials the chart composed for an external one), and runs the rendered containers (tests/pods.py) in the
order the cluster would: the migration Job's wait and migrate containers, the data collector, the backend's
wait-for-redis init container, the backend.

Every in-cluster name resolves as cluster DNS would resolve it: a Service's name in its short and qualified forms
(from the rendered Services and the scenario's cluster domain) and the external hosts the values name. Each name
leads to the real server behind it; a Service port leads to the container port its targetPort names.

Each scenario renders with fixed secrets (and a database and Redis password full of URL- and configparser-special
characters) so that two renders of the same container are comparable: `distinct_scenarios` keeps only the
scenarios in which a container differs.
"""

from __future__ import annotations

import base64
import json
from functools import cache
from urllib.parse import quote, urlsplit

import yaml

import servers
from chart import CHART, SCENARIOS, Manifests, deep_merge, pod_spec, render_chart
from pods import Image, ObjectStore, Pod, Upstream, resolve_env

# % @ : / #, a space and a non-ASCII letter: what breaks URLs (percent-encoding) and configparser (interpolation).
HOSTILE_PASSWORD = "p%40 @:/#é%"
SECRET_KEY = "conformance-secret-key-with-more-than-32-chars"
ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
FIXED = {"secrets": {"secretKey": SECRET_KEY, "encryptionKey": ENCRYPTION_KEY},
         "postgresql": {"auth": {"password": HOSTILE_PASSWORD}},
         "redis": {"auth": {"password": HOSTILE_PASSWORD}}}
NAMESPACE = "agentforge"
RELEASE = "agentforge"
CHART_DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
COMPONENT = "app.kubernetes.io/component"


def scenario_values(scenario: str) -> dict:
    return deep_merge(FIXED, SCENARIOS[scenario])


class Release:
    """One scenario rendered, with what a user of it creates beside the release."""

    def __init__(self, scenario: str):
        self.scenario = scenario
        self.values = scenario_values(scenario)
        self.objects: Manifests = render_chart(self.values, name=RELEASE, namespace=NAMESPACE)
        secrets, config_maps = self._existing()
        self.store = ObjectStore(self.objects, secrets, config_maps)

    def value(self, *path: str):
        """A value of the scenario, else the chart's default."""
        node, default = self.values, CHART_DEFAULTS
        for key in path:
            node = node.get(key, {}) if isinstance(node, dict) else {}
            default = default.get(key) if isinstance(default, dict) else None
        return node if node != {} else default

    def workload(self, component: str) -> dict:
        found = [o for o in self.objects if o["kind"] in ("Deployment", "StatefulSet", "Job")
                 and pod_spec(o) and o["spec"]["template"]["metadata"]["labels"].get(COMPONENT) == component]
        if len(found) != 1:
            raise AssertionError(f"{self.scenario}: {len(found)} workloads of component {component}")
        return found[0]

    def service(self, component: str) -> dict | None:
        found = [o for o in self.objects.of_kind("Service") if o["spec"]["selector"].get(COMPONENT) == component]
        return found[0] if found else None

    def container(self, component: str, name: str) -> dict:
        spec = pod_spec(self.workload(component))
        for c in spec.get("initContainers", []) + spec["containers"]:
            if c["name"] == name:
                return c
        raise AssertionError(f"{self.scenario}: the {component} pod renders no container {name}")

    def env(self, component: str, name: str) -> dict[str, str]:
        """A container's environment as the kubelet resolves it."""
        return resolve_env(self.store, self.workload(component), self.container(component, name))

    def service_hosts(self, component: str) -> tuple[str, ...]:
        """The names cluster DNS answers for a component's Service."""
        name = self.service(component)["metadata"]["name"]
        domain = self.value("global", "clusterDomain")
        return name, f"{name}.{NAMESPACE}", f"{name}.{NAMESPACE}.svc", f"{name}.{NAMESPACE}.svc.{domain}"

    def _existing(self) -> tuple[dict, dict]:
        """The Secrets and ConfigMaps the scenario's values name but the chart does not render."""
        secrets: dict[str, dict[str, str]] = {}
        config_maps: dict[str, dict[str, str]] = {}
        own = self.value("secrets", "existingSecret")
        if own:
            # What the values document: every key the chart would generate, URLs composed by the user with the
            # percent-encoded password, hosts as cluster DNS names them.
            user = self.value("postgresql", "auth", "username")
            database = self.value("postgresql", "auth", "database")
            db_host = self.service_hosts("postgresql")[-1]
            redis_host = self.service_hosts("redis")[-1]
            password = quote(HOSTILE_PASSWORD, safe="")
            secrets[own] = {
                "SECRET_KEY": SECRET_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY,
                "POSTGRES_USER": user, "POSTGRES_PASSWORD": HOSTILE_PASSWORD, "REDIS_PASSWORD": HOSTILE_PASSWORD,
                "DATABASE_URL": f"postgresql+asyncpg://{quote(user, safe='')}:{password}@{db_host}:5432/{database}",
                "REDIS_URL": f"redis://:{password}@{redis_host}:6379/0",
            }
        llm = self.value("secrets", "llmApiKeysSecret")
        if llm:
            secrets[llm] = {"OPENAI_API_KEY": "sk-conformance-not-a-real-key"}
        for component in ("backend", "dataCollector", "frontend"):
            for volume in self.value(component, "extraVolumes") or []:
                if "configMap" in volume:
                    config_maps[volume["configMap"]["name"]] = {"example.txt": "provided by the user\n"}
                if "secret" in volume:
                    secrets[volume["secret"]["secretName"]] = {"example.txt": "provided by the user\n"}
        return secrets, config_maps


@cache
def release(scenario: str) -> Release:
    return Release(scenario)


def signature(rel: Release, component: str, names: tuple[str, ...]) -> str:
    """What running a component's containers depends on: command, environment (as rendered and as resolved),
    working directory, security contexts, volumes mounted, probes (not the image, resources or scheduling)."""
    workload = rel.workload(component)
    spec = pod_spec(workload)
    parts = {"pod": spec.get("securityContext"), "volumes": spec.get("volumes")}
    for name in names:
        c = rel.container(component, name)
        parts[name] = {key: c.get(key) for key in ("command", "args", "workingDir", "env", "envFrom",
                                                  "securityContext", "volumeMounts", "ports", "startupProbe",
                                                  "readinessProbe", "livenessProbe")}
        parts[name]["resolved env"] = rel.env(component, name)
    return json.dumps(parts, sort_keys=True, default=str)


def distinct_scenarios(component: str, *containers: str) -> list[str]:
    """The scenarios in which the component's containers differ from every scenario before (default first)."""
    seen: set[str] = set()
    out = []
    for scenario in SCENARIOS:
        rel = release(scenario)
        try:
            rel.workload(component)
        except AssertionError:
            continue
        sig = signature(rel, component, containers)
        if sig not in seen:
            seen.add(sig)
            out.append(scenario)
    return out


class Stack:
    """Real servers and sandboxed containers for one release; `close` stops everything it started."""

    def __init__(self, rel: Release):
        self.rel = rel
        self.binaries = servers.binaries()
        self.closers: list = []
        self.postgres = None
        self.redis = None
        self.pods: dict[str, Pod] = {}
        self.upstreams: list[Upstream] = []

    # -- data stores ---------------------------------------------------------------------------------------
    def start_postgres(self) -> None:
        rel = self.rel
        if rel.value("postgresql", "enabled"):
            env = rel.env("postgresql", "postgresql")
            readiness = rel.container("postgresql", "postgresql")["readinessProbe"]["exec"]["command"]
            server = servers.start_postgres(self.binaries, env["POSTGRES_USER"], env["POSTGRES_PASSWORD"],
                                            env["POSTGRES_DB"], readiness)
            hosts = rel.service_hosts("postgresql")
            port = rel.service("postgresql")["spec"]["ports"][0]["port"]
        else:
            url = rel.env("backend", "backend")["DATABASE_URL"]
            user, password = servers.url_credentials(url)
            server = servers.start_postgres(self.binaries, user, password, urlsplit(url).path.lstrip("/"))
            hosts, port = (rel.value("externalDatabase", "host"),), rel.value("externalDatabase", "port")
        self.closers.append(server.stop)
        self.postgres = server
        self.upstreams.append(Upstream(hosts, port, server.port))

    def start_redis(self) -> None:
        rel = self.rel
        if rel.value("redis", "enabled"):
            password = rel.env("redis", "redis")["REDIS_PASSWORD"]
            conf = rel.objects.get("ConfigMap", rel.service("redis")["metadata"]["name"])["data"]["redis.conf"]
            rendered = {"secret": {"REDIS_PASSWORD": password}, "redis_conf": conf,
                        "redis": rel.container("redis", "redis")}
            server = servers.start_redis(self.binaries, rendered)
            hosts = rel.service_hosts("redis")
            port = rel.service("redis")["spec"]["ports"][0]["port"]
        else:
            _, password = servers.url_credentials(rel.env("backend", "backend")["REDIS_URL"])
            server = servers.PlainRedis(password).start()
            hosts, port = (rel.value("externalRedis", "host"),), rel.value("externalRedis", "port")
        self.closers.append(server.stop)
        self.redis = server
        self.upstreams.append(Upstream(hosts, port, server.port))

    # -- containers ----------------------------------------------------------------------------------------
    def pod(self, component: str, container: str, image: Image, **kwargs) -> Pod:
        """A container of a component, in a sandbox reaching the stack's servers; stopped by `close`."""
        kwargs.setdefault("upstreams", list(self.upstreams))
        pod = Pod(self.rel.store, self.rel.workload(component), container, image, **kwargs)
        self.closers.append(pod.cleanup)
        return pod

    def serve(self, component: str, container: str, image: Image, **kwargs) -> Pod:
        """Start a long-running container and wire its Service's name to it, as the Service would."""
        pod = self.pod(component, container, image, **kwargs).start()
        self.pods[component] = pod
        service = self.rel.service(component)
        if service is not None:
            port = service["spec"]["ports"][0]
            self.upstreams.append(Upstream(self.rel.service_hosts(component), port["port"],
                                           pod.port(port["targetPort"])))
        return pod

    def run_to_completion(self, component: str, container: str, image: Image, timeout: float) -> Pod:
        pod = self.pod(component, container, image).start()
        code = pod.wait(timeout)
        if code != 0:
            raise AssertionError(f"{self.rel.scenario}: {component} container {container} exited with {code}; "
                                 f"log:\n{pod.logs()[-4000:]}")
        return pod

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()

