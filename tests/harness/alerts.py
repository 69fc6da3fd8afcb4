"""The alerting rules as rendered: the rules file, its groups, the metrics the rules read and the labels of the
targets they watch."""

from __future__ import annotations

import re

from harness.monitoring import (
    PROMETHEUS,
    app_job,
    prometheus_config,
    scrape_targets,
)
from harness.render import load_yaml

# The backend's histogram buckets (backend/shared/metrics.py; test_histogram_bounds_match_the_source checks them).
BUCKETS = ("0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf")


def rules_file(objects, name=PROMETHEUS) -> str | None:
    return objects.get("ConfigMap", name)["data"].get("alerts.yml")


def rules(objects) -> dict[str, dict]:
    """{alert name: rule} of the bundled rules file."""
    return {r["alert"]: r for g in load_yaml(rules_file(objects))["groups"] for r in g["rules"]}


def target_labels(objects, component, namespace="agentforge", prefix="agentforge") -> dict[str, str]:
    """The labels the bundled Prometheus gives every series of the component's pod: its relabeling, run over the
    pod the render itself defines (job, namespace, pod, container), and the instance."""
    job = app_job(prometheus_config(objects, f"{prefix}-prometheus"))
    (target,) = scrape_targets(job, objects.get("Deployment", f"{prefix}-{component}"), namespace)
    return {k: v for k, v in target.items() if not k.startswith("__")} | {"instance": target["__address__"]}


def matched_metrics(expr: str) -> dict[str, set[str]]:
    """{metric: label names it is matched on} of a PromQL expression."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    out: dict[str, set[str]] = {}
    for name, matchers in re.findall(r"(?<![\w$])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})", bare):
        out.setdefault(name, set()).update(re.findall(r"(\w+)\s*[=!]~?", matchers))
    return out
