"""A scenario's release, running for real: AgentForge's own code in the containers the chart renders.

For one values scenario (the default install, or a file of the chart's ci/ folder), `Release` renders the chart
and resolves every reference a pod makes, to rendered objects or to the objects a user of that scenario creates
beside the release (an existing Secret, an LLM key Secret, a ConfigMap of prompts). `Stack` then starts, on
127.0.0.1, real PostgreSQL and Redis configured from that render (the bundled servers' rendered settings, or the
credentials the chart composed for an external one), and runs the rendered containers (tests/harness/pods.py) in the
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

import atexit
import base64
import ipaddress
import json
import re
from functools import cache
from urllib.parse import quote, urlsplit

from harness import policy, servers
from harness.netns import Upstream
from harness.objects import pod_spec
from harness.podenv import ObjectStore, resolve_env
from harness.pods import Image, Pod
from harness.probes import wait_for_probe
from harness.render import CHART, Manifests, load_yaml, render_chart
from harness.values import SCENARIOS, deep_merge

# % @ : / #, a space and a non-ASCII letter: what breaks URLs (percent-encoding) and configparser (interpolation).
HOSTILE_PASSWORD = "p%40 @:/#é%"
SECRET_KEY = "conformance-secret-key-with-more-than-32-chars"
ENCRYPTION_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
FIXED = {"secrets": {"secretKey": SECRET_KEY, "encryptionKey": ENCRYPTION_KEY},
         "postgresql": {"auth": {"password": HOSTILE_PASSWORD}},
         "redis": {"auth": {"password": HOSTILE_PASSWORD}}}
NAMESPACE = "agentforge"
RELEASE = "agentforge"
CHART_DEFAULTS = load_yaml((CHART / "values.yaml").read_text())
COMPONENT = "app.kubernetes.io/component"


def scenario_values(scenario: str) -> dict:
    """The scenario with fixed secrets wherever the chart would generate them (nowhere the values bring their own)."""
    values = SCENARIOS[scenario]
    fixed = {}
    if not values.get("secrets", {}).get("existingSecret"):
        fixed = {"secrets": dict(FIXED["secrets"])}
        for server in ("postgresql", "redis"):
            if values.get(server, {}).get("enabled", True):
                fixed[server] = FIXED[server]
    return deep_merge(fixed, values)


class Release:
    """One scenario rendered, with what a user of it creates beside the release."""

    def __init__(self, scenario: str, values: dict | None = None):
        self.scenario = scenario
        self.values = scenario_values(scenario) if values is None else values
        # The render tier validates the scenarios against the Kubernetes schemas already.
        self.objects: Manifests = render_chart(self.values, name=RELEASE, namespace=NAMESPACE, validate=False)
        self._pki: servers.ThrowawayCa | None = None
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

    def prometheus_jobs(self) -> list[dict]:
        """The scrape configurations of the bundled Prometheus (none without it)."""
        return [job for cm in self.objects.of_kind("ConfigMap") if "prometheus.yml" in cm.get("data", {})
                for job in load_yaml(cm["data"]["prometheus.yml"])["scrape_configs"]]

    def scrape_endpoints(self, component: str) -> list[tuple[str, str]]:
        """(container port name, path) a component's metrics are scraped on: each named port of its pods that the
        bundled Prometheus' keep rules on the component label and the port name let through, at the job's path; and
        the ports a PodMonitor names."""
        out = []
        ports = [port["name"] for obj in self.objects if obj["kind"] in ("Deployment", "StatefulSet")
                 and obj["spec"]["template"]["metadata"]["labels"].get(COMPONENT) == component
                 for c in pod_spec(obj)["containers"] for port in c.get("ports", []) if "name" in port]
        for job in self.prometheus_jobs():
            keep = [r for r in job.get("relabel_configs", []) if r.get("action") == "keep"]
            for port in ports:
                labels = {"__meta_kubernetes_pod_label_app_kubernetes_io_component": component,
                          "__meta_kubernetes_pod_container_port_name": port}
                rules = [r for r in keep if set(r["source_labels"]) <= set(labels)]
                if any("__meta_kubernetes_pod_container_port_name" in r["source_labels"] for r in rules) and all(
                        re.fullmatch(r["regex"], r.get("separator", ";").join(labels[s] for s in r["source_labels"]))
                        for r in rules):
                    out.append((port, job.get("metrics_path", "/metrics")))
        for monitor in self.objects.of_kind("PodMonitor"):
            if monitor["spec"]["selector"]["matchLabels"].get(COMPONENT) == component:
                out += [(e["port"], e.get("path", "/metrics")) for e in monitor["spec"]["podMetricsEndpoints"]]
        return out

    def target_labels(self) -> set[str]:
        """Labels the bundled Prometheus adds to every scraped series (its relabelling's targets, job, instance)."""
        return {r["target_label"] for job in self.prometheus_jobs() for r in job.get("relabel_configs", [])
                if "target_label" in r} | {"job", "instance"}

    def dashboard_queries(self) -> list[str]:
        """Every PromQL expression of the rendered AgentForge dashboard on the app's metrics: the "Data stores" row
        reads the exporters' series (servers.EXPORTER_SERIES), which tests/servers/test_exporters.py checks against
        the real exporters."""
        exporters = set().union(*servers.EXPORTER_SERIES.values())
        for cm in self.objects.of_kind("ConfigMap"):
            for key, text in cm.get("data", {}).items():
                if key.endswith(".json") and '"panels"' in text:
                    return [t["expr"] for p in json.loads(text)["panels"] for t in p.get("targets", [])
                            if not exporters & set(re.findall(r"[a-z_:][a-z0-9_:]*", t["expr"]))]
        raise AssertionError(f"{self.scenario}: no dashboard in the render")

    @property
    def pki(self) -> servers.ThrowawayCa:
        """The CA of the scenario's external servers' certificates (made on first use, removed at exit)."""
        if self._pki is None:
            self._pki = servers.ThrowawayCa()
            atexit.register(self._pki.cleanup)
        return self._pki

    def _existing(self) -> tuple[dict, dict]:
        """The Secrets and ConfigMaps the scenario's values name but the chart does not render."""
        secrets: dict[str, dict[str, str]] = {}
        config_maps: dict[str, dict[str, str]] = {}
        # The CA certificate of an external server, in the Secret or ConfigMap the values name.
        for server, path in (("postgresql", ("externalDatabase", "sslRootCert")),
                             ("redis", ("externalRedis", "tls", "caCert"))):
            ca = {key: self.value(*path, key) for key in ("secret", "configMap", "key")}
            if not self.value(server, "enabled"):
                for field_name, store in (("secret", secrets), ("configMap", config_maps)):
                    if ca.get(field_name):
                        store.setdefault(ca[field_name], {})[ca["key"]] = self.pki.ca_cert.read_text()
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
    """Real servers and sandboxed containers for one release; `close` stops everything it started.

    Each pod reaches only the upstreams the rendered NetworkPolicies let it reach (harness.policy's evaluator, with the
    pods of the render and the external servers at an address in their configured CIDR): the application's own
    connections prove the policies allow what it needs."""

    def __init__(self, rel: Release):
        self.rel = rel
        self.binaries = servers.binaries()
        self.closers: list = []
        self.postgres = None
        self.redis = None
        self.pods: dict[str, Pod] = {}
        self.upstreams: list[tuple[Upstream, policy.Endpoint, int]] = []  # (upstream, policy endpoint, its port)
        self.cluster = policy.Cluster(rel.objects.of_kind("NetworkPolicy"))

    # -- what a pod may reach ------------------------------------------------------------------------------
    def policy_pod(self, component: str) -> policy.Pod:
        return policy.pod_of(self.rel.workload(component), "10.244.0.1", name=component)

    def wire_service(self, component: str, target_port: int) -> None:
        """The component's Service name, on its port, leads to target_port on this machine (its server or pod)."""
        service = self.rel.service(component)["spec"]["ports"][0]
        spec = pod_spec(self.rel.workload(component))
        named = {p.get("name"): p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
        container_port = named.get(service["targetPort"], service["targetPort"])
        self.upstreams.append((Upstream(self.rel.service_hosts(component), service["port"], target_port),
                               policy.pod_of(self.rel.workload(component), "10.244.0.2", name=component),
                               container_port))

    def wire_external(self, kind: str, target_port: int) -> None:
        """An external server (externalDatabase, externalRedis) at the host and port the values name."""
        host, port = self.rel.value(kind, "host"), self.rel.value(kind, "port")
        cidr = self.rel.value("networkPolicy", "egress", f"{kind}CIDR")
        address = str(next(ipaddress.ip_network(cidr).hosts())) if cidr else "192.0.2.10"
        self.upstreams.append((Upstream((host,), port, target_port), policy.External(kind, address), port))

    def reachable(self, component: str) -> list[Upstream]:
        source = self.policy_pod(component)
        return [u for u, endpoint, port in self.upstreams if self.cluster.allowed(source, endpoint, port)]

    # -- data stores ---------------------------------------------------------------------------------------
    def start_postgres(self) -> None:
        rel = self.rel
        if rel.value("postgresql", "enabled"):
            env = rel.env("postgresql", "postgresql")
            readiness = rel.container("postgresql", "postgresql")["readinessProbe"]["exec"]["command"]
            server = servers.start_postgres(self.binaries, env["POSTGRES_USER"], env["POSTGRES_PASSWORD"],
                                            env["POSTGRES_DB"], readiness)
            self.closers.append(server.stop)
            self.wire_service("postgresql", server.port)
        else:
            url = rel.env("backend", "backend")["DATABASE_URL"]
            user, password = servers.url_credentials(url)
            # A server of a scenario with sslMode takes TLS connections only, with a certificate for its host
            # signed by the CA the scenario hands the pods.
            tls = rel.pki.issue("postgresql", [rel.value("externalDatabase", "host")]) \
                if rel.value("externalDatabase", "sslMode") not in ("", "disable") else None
            server = servers.start_postgres(self.binaries, user, password, urlsplit(url).path.lstrip("/"), tls=tls)
            self.closers.append(server.stop)
            self.wire_external("externalDatabase", server.port)
        self.postgres = server

    def start_redis(self) -> None:
        rel = self.rel
        if rel.value("redis", "enabled"):
            password = rel.env("redis", "redis")["REDIS_PASSWORD"]
            conf = rel.objects.get("ConfigMap", rel.service("redis")["metadata"]["name"])["data"]["redis.conf"]
            rendered = {"secret": {"REDIS_PASSWORD": password}, "redis_conf": conf,
                        "redis": rel.container("redis", "redis")}
            server = servers.start_redis(self.binaries, rendered)
            self.closers.append(server.stop)
            self.wire_service("redis", server.port)
        else:
            _, password = servers.url_credentials(rel.env("backend", "backend")["REDIS_URL"])
            server = servers.PlainRedis(password).start()
            self.closers.append(server.stop)
            self.wire_external("externalRedis", server.port)
        self.redis = server

    # -- containers ----------------------------------------------------------------------------------------
    def pod(self, component: str, container: str, image: Image, **kwargs) -> Pod:
        """A container of a component, in a sandbox reaching what the policies allow it; stopped by `close`."""
        kwargs.setdefault("upstreams", self.reachable(component))
        pod = Pod(self.rel.store, self.rel.workload(component), container, image, **kwargs)
        self.closers.append(pod.cleanup)
        return pod

    def serve(self, component: str, container: str, image: Image, **kwargs) -> Pod:
        """Start a long-running container, wire its Service's name to it, and wait for its startupProbe; the
        seconds that took are in `pod.startup_seconds`."""
        pod = self.pod(component, container, image, **kwargs).start()
        self.pods[component] = pod
        pod.startup_seconds = wait_for_probe(pod, self.rel.container(component, container)["startupProbe"])
        if self.rel.service(component) is not None:
            self.wire_service(component, pod.port(self.rel.service(component)["spec"]["ports"][0]["targetPort"]))
        return pod

    def run_to_completion(self, component: str, container: str, image: Image, timeout: float, **kwargs) -> Pod:
        pod = self.pod(component, container, image, **kwargs).start()
        code = pod.wait(timeout)
        if code != 0:
            raise AssertionError(f"{self.rel.scenario}: {component} container {container} exited with {code}; "
                                 f"log:\n{pod.logs()[-4000:]}")
        return pod

    def run_python(self, component: str, container: str, image: Image, script: str, *args: str):
        """Run a Python script in a container's pod (its environment, identity, mounts and reach), in place of its
        command; the JSON the script prints last."""
        pod = self.run_to_completion(component, container, image, 120, command=["python", "-c", script, *args])
        return json.loads(pod.logs().strip().splitlines()[-1])

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()


def serve_alone(request, component: str, image: Image) -> Pod:
    """A component's pod served with nothing else running (no database, no Redis), stopped at the end of the
    requesting fixture's scope; its release is `pod.rel`. `request.param` is the scenario."""
    stack = Stack(release(request.param))
    request.addfinalizer(stack.close)
    pod = stack.serve(component, component, image)
    pod.rel = stack.rel
    return pod
