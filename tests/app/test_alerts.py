"""The alerting rules against the application's own code (AGENTFORGE_SRC): the series, labels, buckets and statuses
the rules read are the ones the app exports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from harness.alerts import BUCKETS, matched_metrics, rules, target_labels
from harness.render import CHART


def code_metrics(source: Path) -> dict[str, dict]:
    """{sample name: {"labels": [...], "buckets": (...)}} of backend/shared/metrics.py, read from its syntax tree."""
    out = {}
    for node in ast.walk(ast.parse((source / "backend" / "shared" / "metrics.py").read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("Counter", "Histogram", "Gauge"):
            name = node.args[0].value.removesuffix("_total")  # prometheus_client adds it back to a counter
            labels = [e.value for e in node.args[2].elts] if len(node.args) > 2 else []
            buckets = next((tuple(e.value for e in k.value.elts) for k in node.keywords if k.arg == "buckets"), ())
            suffixes = {"Counter": ["_total"], "Histogram": ["_bucket", "_sum", "_count"], "Gauge": [""]}
            for suffix in suffixes[node.func.id]:
                out[name + suffix] = {"labels": labels + (["le"] if suffix == "_bucket" else []), "buckets": buckets}
    return out


class TestAgainstTheSource:
    """The application's own code (AGENTFORGE_SRC): the series, labels, buckets and statuses the rules read."""

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls):
        from harness import appsrc
        return appsrc.source_root()

    def test_every_matched_label_is_exported(self, source, default_render):
        defined = code_metrics(source)
        target = set(target_labels(default_render, "backend"))
        for alert, rule in rules(default_render).items():
            for name, matched in matched_metrics(rule["expr"]).items():
                assert name == "up" or name in defined, (alert, name)
                labels = set(defined[name]["labels"]) if name != "up" else set()
                # Under an Operator, whose targets carry `endpoint`, the app's label of that name is
                # exported_endpoint.
                allowed = labels | target | ({"exported_endpoint"} if "endpoint" in labels else set())
                assert matched <= allowed, (alert, name, matched - allowed)

    def test_histogram_bounds_match_the_source(self, source):
        """BUCKETS here and the schema's bound on backendLatency.seconds: histogram_quantile never exceeds the
        largest finite bucket, so a threshold at or above it could never fire."""
        buckets = code_metrics(source)["http_request_duration_seconds_bucket"]["buckets"]
        assert tuple(float(b) for b in BUCKETS[:-1]) == buckets
        schema = yaml.safe_load((CHART / "values.schema.yaml").read_text())
        seconds = schema["properties"]["monitoring"]["properties"]["alerts"]["properties"]["backendLatency"][
            "properties"]["seconds"]
        assert seconds["exclusiveMaximum"] == max(buckets)

    def test_failure_statuses_are_recorded(self, source):
        """The statuses the pipeline alert counts as failures are ones the orchestrator records."""
        code = (source / "backend" / "pipeline" / "orchestrator.py").read_text()
        recorded = set(re.findall(r'PIPELINE_EXECUTIONS_TOTAL\.labels\(status="(\w+)"\)', code))
        recorded |= set(re.findall(r'^\s*status = "(\w+)"', code, re.M))
        assert {"failed", "timeout"} <= recorded and {"completed", "partial"} <= recorded

    def test_cost_metric_is_recorded_per_call(self, source):
        code = (source / "backend" / "pipeline" / "llm_router.py").read_text()
        assert "LLM_COST_DOLLARS_TOTAL.labels(" in code and ".inc(response.cost_estimate)" in code
