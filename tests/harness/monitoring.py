"""The bundled monitoring read as Prometheus and the operator read it: the scrape configuration and its relabeling,
the targets it finds, promtool, the metrics the dashboard and alerts read, and the operator CRDs' schemas."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema

from harness.objects import pod_spec
from harness.render import TOOLS_BIN, load_yaml
from harness.servers import EXPORTER_SERIES
from harness.values import closed_schema

# Metrics the backend exports and sets (test_app_backend.py checks them against the running app): a panel may query
# these and nothing else. The app also defines websocket_connections_active but never sets it: no panel uses it.
EXPORTED_METRICS = {
    "http_requests_total", "http_request_duration_seconds", "llm_tokens_total", "llm_cost_dollars_total",
    "llm_request_duration_seconds", "pipeline_executions_total", "pipeline_duration_seconds",
}


# Series of the data stores' exporters (postgresql.metrics, redis.metrics) that the "Data stores" row reads: the server
# tier (tests/servers/test_exporters.py) checks each against the real exporters run against the real servers.
DATA_STORE_METRICS = EXPORTER_SERIES["postgresql"] | EXPORTER_SERIES["redis"]


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression, histogram suffixes (_bucket, _sum, _count) stripped.

    Drops strings, label matchers ({...}), ranges ([...]), offsets and grouping label lists (by/without/on/ignoring
    (...)), then keeps the identifiers that are not functions (followed by `(`), keywords or parts of numbers.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    text = re.sub(r"\boffset\s+-?\w+", "", text)
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group()
        if text[match.end():].lstrip().startswith("(") or name.lower() in PROMQL_WORDS:
            continue
        names.add(name if name in DATA_STORE_METRICS else re.sub(r"_(bucket|sum|count)$", "", name))
    return names


PROMETHEUS = "agentforge-prometheus"


PROMTOOL = TOOLS_BIN / "promtool"


def prometheus_config(objects, name=PROMETHEUS):
    return load_yaml(objects.get("ConfigMap", name)["data"]["prometheus.yml"])


def app_job(config):
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "agentforge"]
    return job


def sanitize(name):
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def pod_targets(workload, namespace, phase="Running", ip="10.1.2.3"):
    """The targets kubernetes_sd_configs (role: pod) makes of a workload's pod: one per container port."""
    template = workload["spec"]["template"]
    pod_name = f"{workload['metadata']['name']}-abc12"
    base = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": pod_name,
        "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_pod_ip": ip,
    }
    for key, value in template["metadata"]["labels"].items():
        base[f"__meta_kubernetes_pod_label_{sanitize(key)}"] = value
        base[f"__meta_kubernetes_pod_labelpresent_{sanitize(key)}"] = "true"
    spec = pod_spec(workload)
    for init, containers in ((False, spec["containers"]), (True, spec.get("initContainers", []))):
        for c in containers:
            labels = {**base, "__meta_kubernetes_pod_container_name": c["name"],
                      "__meta_kubernetes_pod_container_init": str(init).lower()}
            if not c.get("ports"):
                yield {**labels, "__address__": ip}
            for port in c.get("ports", []):
                yield {**labels, "__address__": f"{ip}:{port['containerPort']}",
                       "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                       "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                       "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP")}


def relabel(labels, rules):
    """Prometheus relabel_configs (keep, drop, replace) over one label set; None when the target is dropped."""
    labels = dict(labels)
    for rule in rules:
        action = rule.get("action", "replace")
        value = rule.get("separator", ";").join(labels.get(name, "") for name in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if action == "keep" and not match or action == "drop" and match:
            return None
        if action == "replace" and match:
            replacement = re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", rule.get("replacement", "$1"))
            result = match.expand(replacement)
            if result:
                labels[rule["target_label"]] = result
            else:
                labels.pop(rule["target_label"], None)
        elif action not in ("keep", "drop", "replace"):
            raise NotImplementedError(action)
    return labels


def scrape_targets(job, workload, namespace, **kwargs):
    """The targets a scrape job keeps from a workload's pod, after relabeling."""
    defaults = {"job": job["job_name"], "__metrics_path__": job.get("metrics_path", "/metrics"),
                "__scheme__": job.get("scheme", "http")}
    kept = (relabel({**defaults, **t}, job["relabel_configs"]) for t in pod_targets(workload, namespace, **kwargs))
    return [t for t in kept if t is not None]


CRDS = Path(__file__).resolve().parents[1] / "harness" / "crds"


def load_crds():
    crds = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = load_yaml(path.read_text())
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            crds[(api_version, crd["spec"]["names"]["kind"])] = closed_schema(version["schema"]["openAPIV3Schema"])
    return crds


CRD_SCHEMAS = load_crds()


def crd_errors(obj):
    schema = CRD_SCHEMAS[(obj["apiVersion"], obj["kind"])]
    return [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(obj)]


GRAFANA = "agentforge-grafana"
