"""Alerts: the rules the chart renders, run by the pinned promtool, in the bundled Prometheus and for an Operator.

The rule groups are defined once (templates/monitoring/_alerts.tpl) and rendered twice: as alerts.yml in the bundled
Prometheus' ConfigMap, which its prometheus.yml names in rule_files, and as a PrometheusRule. Every alert is run by
`promtool test rules` on the rules file as rendered, over synthetic series that carry the labels the chart's own
scrape configuration gives the chart's own pods (test_prometheus.py's model of its relabeling): a firing case and a
quiet case each, the scoping to the release, and the boundary that each threshold from values moves. The metrics
are the ones the backend exports (test_grafana.EXPORTED_METRICS; the app-tier tests below read the application's
source for their labels and buckets).
"""

from __future__ import annotations

import copy
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from harness.alerts import BUCKETS, PROMETHEUS, matched_metrics, rules, rules_file, target_labels
from harness.monitoring import (
    EXPORTED_METRICS,
    PROMTOOL,
    crd_errors,
    metric_names,
    prometheus_config,
)
from harness.objects import container, volumes_by_mount
from harness.policy import Cluster, External, pod_of
from harness.render import CHART, load_yaml, render_chart, render_error
from harness.values import SCENARIOS

RULE = "agentforge-alerts"
OPERATOR = {"monitoring": {"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}}}
DEFAULTS = load_yaml((CHART / "values.yaml").read_text())["monitoring"]["alerts"]
ALERTS = {"AgentForgeTargetDown": "targetDown", "AgentForgeTargetMissing": "targetDown",
          "AgentForgeBackendHighErrorRate": "backendErrors", "AgentForgeBackendHighLatency": "backendLatency",
          "AgentForgePipelineFailures": "pipelineFailures", "AgentForgeLLMSpendHigh": "llmSpend"}


def alerts_values(**alerts) -> dict:
    return {"monitoring": {"alerts": alerts}}


@pytest.fixture(scope="module")
def promtool():
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is missing: run `make tools` (scripts/install-tools.sh builds it)")
    return str(PROMTOOL)


@pytest.fixture(scope="module")
def operator():
    return render_chart(OPERATOR)


# --- Synthetic series with the labels of the chart's own scrape targets ------------------------------------------


@pytest.fixture(scope="module")
def backend(default_render):
    return target_labels(default_render, "backend")


@pytest.fixture(scope="module")
def collector(default_render):
    return target_labels(default_render, "data-collector")


def other_release(labels):
    """The same component of another release of the chart in the namespace, which a shared Prometheus scrapes too."""
    return labels | {"pod": labels["pod"].replace("agentforge-", "other-agentforge-", 1)}


def other_namespace(labels):
    return labels | {"namespace": "elsewhere"}


def operator_scraped(labels, endpoint=None):
    """As a PodMonitor's target: the Operator sets `endpoint` (the port's name), so the app's label of that name
    becomes exported_endpoint."""
    labels = labels | {"endpoint": "http"}
    if endpoint:
        labels["exported_endpoint"] = endpoint
    return labels


def series(metric, labels, values):
    matchers = ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return {"series": f"{metric}{{{matchers}}}", "values": values}


def requests(labels, per_step, status="200", endpoint="/api/v1/conversations"):
    return series("http_requests_total", labels | {"method": "GET", "endpoint": endpoint, "status": status},
                  f"0+{per_step}x120")


def histogram(labels, per_step: dict[str, int], endpoint="/api/v1/conversations", operator_mode=False):
    """http_request_duration_seconds_bucket series: per_step maps a bucket's upper bound to the observations that
    fall in it at each step (the cumulative counts follow)."""
    labels = labels | {"method": "POST"}
    labels = operator_scraped(labels, endpoint) if operator_mode else labels | {"endpoint": endpoint}
    out, total = [], 0
    for le in BUCKETS:
        total += per_step.get(le, 0)
        out.append(series("http_request_duration_seconds_bucket", labels | {"le": le}, f"0+{total}x120"))
    return out


def pipelines(labels, **per_step):
    return [series("pipeline_executions_total", labels | {"status": status}, f"0+{n}x130")
            for status, n in per_step.items()]


def spend(labels, dollars_per_minute, model="gpt-4o-mini"):
    """A minute apart (SPEND cases), so that two hours of evaluations stay quick."""
    return series("llm_cost_dollars_total", labels | {"provider": "openai", "model": model},
                  f"0+{dollars_per_minute}x150")


def up(labels, value):
    return series("up", labels, f"{value}x60")


# --- promtool --------------------------------------------------------------------------------------------------

@dataclass
class Case:
    """One `promtool test rules` run: the series, when to look, and the alerts expected to fire then ([]: quiet)."""

    alert: str
    input_series: list
    eval_time: str
    fires: list = field(default_factory=list)
    interval: str = "15s"  # of the series and of the evaluations (the chart's default scrape interval)


def expected(alert, labels, description, values=None):
    """An alert as promtool reports it: labels of the result plus the rule's, the rendered annotations."""
    settings = (values or {}).get("monitoring", {}).get("alerts", {})
    severity = settings.get(ALERTS[alert], {}).get("severity", DEFAULTS[ALERTS[alert]]["severity"])
    return {"exp_labels": settings.get("labels", {}) | labels | {"severity": severity},
            "exp_annotations": {"summary": SUMMARIES[alert], "description": description}}


SUMMARIES = {
    "AgentForgeTargetDown": "An AgentForge metrics target is down",
    "AgentForgeTargetMissing": "Prometheus has no AgentForge target of a component",
    "AgentForgeBackendHighErrorRate": "The AgentForge backend answers too many requests with a 5xx status",
    "AgentForgeBackendHighLatency": "The AgentForge backend answers slowly",
    "AgentForgePipelineFailures": "Many AgentForge pipeline executions fail",
    "AgentForgeLLMSpendHigh": "AgentForge's LLM spend is above its daily limit",
}


def promtool_test_file(case: Case) -> str:
    """A promtool test file of one case, over the rules file alerts.yml beside it."""
    return yaml.safe_dump({"rule_files": ["alerts.yml"], "evaluation_interval": case.interval, "tests": [{
        "interval": case.interval, "input_series": case.input_series,
        "alert_rule_test": [{"eval_time": case.eval_time, "alertname": case.alert, "exp_alerts": case.fires}]}]},
        sort_keys=False)


def run_cases(promtool, folder: Path, runs: dict[str, tuple[str, Case]]) -> dict[str, list[str]]:
    """{case id: promtool's failures} of (rules file text, case) pairs, from one `promtool test rules` run: each case
    a test file in a folder of its own beside its rules file, read from promtool's JUnit report (one process for all
    cases rather than one per case)."""
    for case_id, (rules_text, case) in runs.items():
        (folder / case_id).mkdir()
        (folder / case_id / "alerts.yml").write_text(rules_text)
        (folder / case_id / "test.yml").write_text(promtool_test_file(case))
    proc = subprocess.run([promtool, "test", "rules", "--junit=report.xml", *(f"{c}/test.yml" for c in runs)],
                          cwd=folder, capture_output=True, text=True, timeout=120)
    assert (folder / "report.xml").exists(), proc.stdout + proc.stderr
    results = {suite.get("name").removesuffix("/test.yml"): [e.text for e in suite.iter()
                                                             if e.tag in ("failure", "error")]
               for suite in ElementTree.parse(folder / "report.xml").iter("testsuite")}
    assert results.keys() == runs.keys() and (proc.returncode == 0) == (not any(results.values())), proc.stdout
    return results


BACKEND = {"job": "backend", "namespace": "agentforge"}


def error_rate(value="10%", threshold="5%", window="5m"):
    return (f"{value} of the backend's responses in namespace agentforge had a 5xx status over the last {window} "
            f"(threshold {threshold}).")


def latency(value="1.75s", threshold="1"):
    return (f"The backend's 95th percentile response time in namespace agentforge was {value} over the last 5m "
            f"(threshold {threshold}s; /api/v1/pipelines/execute, /api/v1/pipelines/execute-direct not counted).")


def pipeline_failures(value="33.33%", threshold="25%"):
    return (f"{value} of the pipeline executions in namespace agentforge failed or timed out over the last 1h "
            f"(threshold {threshold}).")


def llm_spend(value="57.60", limit="10"):
    return (f"At the rate of the last 1h, the LLM calls of the backend in namespace agentforge cost {value} USD a day "
            f"(limit {limit} USD).")


def target_down(labels):
    return (f"Prometheus has failed to scrape {labels['job']} pod {labels['pod']} in namespace agentforge for 5m: "
            "the pod does not answer on its metrics port.")


def target_missing(job):
    return (f"Prometheus has had no {job} target in namespace agentforge for 5m: no pod of it runs, or the scrape "
            "configuration does not select it (the rules expect the job label that the chart's scrape "
            "configuration, PodMonitors and ServiceMonitors set).")


FAST = {"0.25": 4, "0.5": 5}          # 9 observations at or under 0.5 s
SLOW = {"2.5": 1}                     # 1 in (1 s, 2.5 s]: with FAST, the 95th percentile is 1 + 1.5 * 0.5 = 1.75 s


def cases(b, d) -> dict[str, Case]:
    """Every alert's cases with the default values, over the backend's (b) and data collector's (d) target labels."""
    return {
        # Targets.
        "target-down-fires": Case("AgentForgeTargetDown", [up(b, 0), up(d, 1)], "10m",
                                  [expected("AgentForgeTargetDown", b, target_down(b))]),
        "collector-down-fires": Case("AgentForgeTargetDown", [up(b, 1), up(d, 0)], "10m",
                                     [expected("AgentForgeTargetDown", d, target_down(d))]),
        "targets-up-quiet": Case("AgentForgeTargetDown", [up(b, 1), up(d, 1)], "10m"),
        "other-release-down-quiet": Case("AgentForgeTargetDown",
                                         [up(b, 1), up(d, 1), up(other_release(b), 0), up(other_namespace(d), 0)],
                                         "10m"),
        "target-down-pending-before-for": Case("AgentForgeTargetDown", [up(b, 0), up(d, 1)], "4m"),
        "collector-missing-fires": Case("AgentForgeTargetMissing", [up(b, 1)], "10m", [
            expected("AgentForgeTargetMissing", {"job": "data-collector", "namespace": "agentforge"},
                     target_missing("data-collector"))]),
        "only-other-release-collector-fires": Case("AgentForgeTargetMissing", [up(b, 1), up(other_release(d), 1)],
                                                   "10m", [
            expected("AgentForgeTargetMissing", {"job": "data-collector", "namespace": "agentforge"},
                     target_missing("data-collector"))]),
        "both-present-quiet": Case("AgentForgeTargetMissing", [up(b, 0), up(d, 1)], "10m"),
        # 5xx share: 1 in 10 responses fires over 5 %, 1 in 50 does not.
        "errors-fire": Case("AgentForgeBackendHighErrorRate", [requests(b, 1, "500"), requests(b, 9)], "20m",
                            [expected("AgentForgeBackendHighErrorRate", BACKEND, error_rate())]),
        "errors-quiet": Case("AgentForgeBackendHighErrorRate", [requests(b, 1, "503"), requests(b, 49)], "20m"),
        "errors-pending-before-for": Case("AgentForgeBackendHighErrorRate",
                                          [requests(b, 1, "500"), requests(b, 9)], "9m"),
        "errors-4xx-quiet": Case("AgentForgeBackendHighErrorRate", [requests(b, 5, "429"), requests(b, 5)], "20m"),
        "other-release-errors-quiet": Case("AgentForgeBackendHighErrorRate", [
            requests(b, 49), requests(other_release(b), 9, "500"), requests(other_namespace(b), 9, "500")], "20m"),
        # Latency: 9 fast and 1 slow observation per step put the 95th percentile at 1.75 s.
        "latency-fires": Case("AgentForgeBackendHighLatency", histogram(b, FAST | SLOW), "20m",
                              [expected("AgentForgeBackendHighLatency", BACKEND, latency())]),
        "latency-quiet": Case("AgentForgeBackendHighLatency", histogram(b, FAST | {"0.5": 6}), "20m"),
        "latency-pipelines-excluded-quiet": Case("AgentForgeBackendHighLatency", [
            *histogram(b, {"0.1": 10}), *histogram(b, {"+Inf": 10}, endpoint="/api/v1/pipelines/execute"),
            *histogram(b, {"+Inf": 10}, endpoint="/api/v1/pipelines/execute-direct")], "20m"),
        "latency-excluded-also-under-an-operator-quiet": Case("AgentForgeBackendHighLatency", [
            *histogram(b, {"0.1": 10}, operator_mode=True),
            *histogram(b, {"+Inf": 10}, endpoint="/api/v1/pipelines/execute", operator_mode=True)], "20m"),
        "latency-slow-elsewhere-fires": Case("AgentForgeBackendHighLatency", [
            *histogram(b, {"0.1": 10}), *histogram(b, {"+Inf": 10}, endpoint="/api/v1/templates")], "20m",
            [expected("AgentForgeBackendHighLatency", BACKEND, latency("10s"))]),
        # Pipelines: 1 failure in 3 executions fires over 25 %; timeouts count, partial results do not.
        "pipelines-fire": Case("AgentForgePipelineFailures", pipelines(b, failed=1, completed=2), "30m",
                               [expected("AgentForgePipelineFailures", BACKEND, pipeline_failures())]),
        "pipeline-timeouts-fire": Case("AgentForgePipelineFailures", pipelines(b, timeout=1, completed=2), "30m",
                                       [expected("AgentForgePipelineFailures", BACKEND, pipeline_failures())]),
        "pipelines-quiet": Case("AgentForgePipelineFailures", pipelines(b, failed=1, completed=9), "30m"),
        "pipelines-partial-quiet": Case("AgentForgePipelineFailures", pipelines(b, partial=5, completed=5), "30m"),
        # Spend: 0.04 USD a minute is 57.60 USD a day, over the 10 USD default.
        "spend-fires": Case("AgentForgeLLMSpendHigh", [spend(b, 0.04)], "2h",
                            [expected("AgentForgeLLMSpendHigh", BACKEND, llm_spend())], "1m"),
        "spend-quiet": Case("AgentForgeLLMSpendHigh", [spend(b, 0.004)], "2h", interval="1m"),
        # 7.20 USD a day per pod: two pods together are over the limit, one pod scraped twice (a PodMonitor and a
        # ServiceMonitor) is not.
        "spend-of-two-pods-adds-up": Case("AgentForgeLLMSpendHigh", [
            spend(b, 0.005), spend(b | {"pod": "agentforge-backend-def34", "instance": "10.1.2.4:8000"}, 0.005)],
            "2h", [expected("AgentForgeLLMSpendHigh", BACKEND, llm_spend("14.40"))], "1m"),
        "spend-of-a-pod-scraped-twice-counts-once": Case("AgentForgeLLMSpendHigh", [
            spend(operator_scraped(b), 0.005),
            spend(operator_scraped(b) | {"service": "agentforge-backend"}, 0.005)], "2h", interval="1m"),
        "spend-of-other-releases-quiet": Case("AgentForgeLLMSpendHigh", [
            spend(b, 0.004), spend(other_release(b), 0.04), spend(other_namespace(b), 0.04)], "2h", interval="1m"),
    }


CASE_IDS = list(cases({"pod": "p", "job": "j"}, {"pod": "p", "job": "j"}))


@pytest.fixture(scope="module")
def every_case(promtool, tmp_path_factory, default_render, backend, collector):
    """{case id: promtool's failures} of every case over the default rules file."""
    return run_cases(promtool, tmp_path_factory.mktemp("alert-cases"),
                     {case_id: (rules_file(default_render), case)
                      for case_id, case in cases(backend, collector).items()})


class TestEveryAlert:
    """Each alert of the default rules file, by promtool: it fires on what it watches, and only then."""

    @pytest.mark.parametrize("case_id", CASE_IDS)
    def test_case(self, every_case, case_id):
        assert every_case[case_id] == [], every_case[case_id]

    def test_every_alert_has_a_firing_and_a_quiet_case(self, default_render):
        fires = {c.alert for c in cases({"pod": "p", "job": "j"}, {"pod": "p", "job": "j"}).values() if c.fires}
        quiet = {c.alert for c in cases({"pod": "p", "job": "j"}, {"pod": "p", "job": "j"}).values() if not c.fires}
        assert fires == quiet == set(rules(default_render)) == set(ALERTS)

    def test_a_wrong_expectation_fails(self, promtool, tmp_path, default_render, backend, collector):
        """Control: a case whose expectation is wrong is reported failed, so the passes above mean something."""
        case = cases(backend, collector)["errors-quiet"]
        case.fires = [expected("AgentForgeBackendHighErrorRate", BACKEND, error_rate("2%"))]
        failures = run_cases(promtool, tmp_path, {"wrong": (rules_file(default_render), case),
                                                  "right": (rules_file(default_render), cases(backend, collector)[
                                                      "errors-quiet"])})
        assert failures["right"] == [] and "AgentForgeBackendHighErrorRate" in "".join(failures["wrong"])


# --- Values reach the rules -------------------------------------------------------------------------------------

# (alert, values, firing case, description when it fires): the same series, on each side of the boundary.
BOUNDARIES = {
    "errors": ("backendErrors", "ratio", 0.09, 0.11, "errors-fire",
               lambda t: error_rate(threshold=f"{t * 100:.4g}%")),
    "latency": ("backendLatency", "seconds", 1.7, 1.8, "latency-fires", lambda t: latency(threshold=f"{t}")),
    "pipelines": ("pipelineFailures", "ratio", 0.3, 0.35, "pipelines-fire",
                  lambda t: pipeline_failures(threshold=f"{t * 100:.4g}%")),
    "spend": ("llmSpend", "dailyLimitDollars", 57, 58, "spend-fires", lambda t: llm_spend(limit=f"{t}")),
}
HOLDS = {"15m": False, "2m": True}  # targetDown.for: whether a target down for 4 minutes fires
WINDOW_VALUES = alerts_values(labels={"team": "ai-platform", "severity": "ignored"},
                              backendErrors={"window": "30m", "for": "20m", "severity": "page"})
EXCLUDED_VALUES = alerts_values(backendLatency={"excludedEndpoints": ["/api/v1/pipelines/{id}/result"]})


def from_values_cases(b, d) -> dict[str, tuple[dict, Case]]:
    """{case id: (values, case)} of the tests below: each runs over the rules file those values render."""
    out = {}
    for name, (key, setting, below, above, case_id, describe) in BOUNDARIES.items():
        for side, threshold in (("below", below), ("above", above)):
            case = cases(b, d)[case_id]
            case.fires = [dict(f, exp_annotations=f["exp_annotations"] | {"description": describe(threshold)})
                          for f in case.fires] if side == "below" else []
            out[f"threshold-{name}-{side}"] = alerts_values(**{key: {setting: threshold}}), case
    for hold, fires in HOLDS.items():
        case = cases(b, d)["target-down-fires"]
        case.eval_time = "4m"
        case.fires = [dict(f, exp_annotations=f["exp_annotations"] | {
            "description": target_down(b).replace("for 5m", f"for {hold}")}) for f in case.fires] if fires else []
        out[f"for-{hold}"] = alerts_values(targetDown={"for": hold}), case
    case = cases(b, d)["errors-fire"]
    case.eval_time = "25m"
    case.fires = [expected("AgentForgeBackendHighErrorRate", BACKEND, error_rate(window="30m"), WINDOW_VALUES)]
    out["window"] = WINDOW_VALUES, case
    # Left out endpoints come from values; an id segment ({id}) is a literal, not a regex repetition.
    out["excluded-quiet"] = EXCLUDED_VALUES, Case("AgentForgeBackendHighLatency", [
        *histogram(b, {"0.1": 10}), *histogram(b, {"+Inf": 10}, endpoint="/api/v1/pipelines/{id}/result")], "20m")
    case = cases(b, d)["latency-pipelines-excluded-quiet"]
    case.fires = [expected("AgentForgeBackendHighLatency", BACKEND, latency("10s").replace(
        "/api/v1/pipelines/execute, /api/v1/pipelines/execute-direct", "/api/v1/pipelines/{id}/result"))]
    out["excluded-default-now-counted"] = EXCLUDED_VALUES, case
    return out


@pytest.fixture(scope="module")
def from_values(promtool, tmp_path_factory, backend, collector):
    """{case id: promtool's failures} of from_values_cases, each over the rules file its values render."""
    return run_cases(promtool, tmp_path_factory.mktemp("alert-values"),
                     {case_id: (rules_file(render_chart(values)), case)
                      for case_id, (values, case) in from_values_cases(backend, collector).items()})


class TestThresholdsFromValues:
    @pytest.mark.parametrize("name", BOUNDARIES)
    @pytest.mark.parametrize("side", ["below", "above"])
    def test_threshold_moves_the_boundary(self, from_values, name, side):
        assert from_values[f"threshold-{name}-{side}"] == []

    @pytest.mark.parametrize("hold", HOLDS)
    def test_for_from_values(self, from_values, hold):
        """targetDown.for decides how long a target is down before the alert fires (the default 5m: 10m fires)."""
        assert from_values[f"for-{hold}"] == []

    def test_window_severity_and_labels_from_values(self, from_values):
        objects = render_chart(WINDOW_VALUES)
        rule = rules(objects)["AgentForgeBackendHighErrorRate"]
        assert rule["expr"].count("[30m]") == 2 and "[5m]" not in rule["expr"]
        assert (rule["for"], rule["labels"]) == ("20m", {"severity": "page", "team": "ai-platform"})
        assert from_values["window"] == []
        assert rules(objects)["AgentForgeLLMSpendHigh"]["labels"] == {"severity": "warning", "team": "ai-platform"}

    @pytest.mark.parametrize("key", sorted(set(ALERTS.values())))
    def test_every_for_and_window_reach_the_rules(self, key):
        settings = {"for": "17m"} | ({"window": "23m"} if "window" in DEFAULTS[key] else {})
        objects = render_chart(alerts_values(**{key: settings}))
        for alert, rule in rules(objects).items():
            changed = ALERTS[alert] == key
            assert (rule["for"] == "17m") is changed, alert
            assert ("[23m]" in rule["expr"]) is (changed and "window" in settings), alert

    def test_excluded_endpoints_from_values(self, from_values):
        """Left out endpoints come from values; an id segment ({id}) is a literal, not a regex repetition."""
        assert from_values["excluded-quiet"] == from_values["excluded-default-now-counted"] == []


# --- The bundled Prometheus ---------------------------------------------------------------------------------------

def mounted_layout(objects, root: Path, name=PROMETHEUS) -> Path:
    """Write the Prometheus pod's ConfigMap volumes under root as the kubelet mounts them; return the config file."""
    deployment = objects.get("Deployment", name)
    for mount_path, volume in volumes_by_mount(deployment, "prometheus").items():
        if "configMap" in volume:
            folder = root / mount_path.lstrip("/")
            folder.mkdir(parents=True, exist_ok=True)
            for key, text in objects.get("ConfigMap", volume["configMap"]["name"])["data"].items():
                (folder / key).write_text(text)
    (config,) = [a.split("=", 1)[1] for a in container(deployment, "prometheus")["args"]
                 if a.startswith("--config.file=")]
    return root / config.lstrip("/")


def check_config(promtool, path: Path):
    return subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)


class TestBundled:
    def test_rules_file_passes_promtool_check_rules(self, promtool, tmp_path, default_render):
        path = tmp_path / "alerts.yml"
        path.write_text(rules_file(default_render))
        proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout

    @pytest.mark.parametrize("values", [{}, {"prometheus": {"alertmanagers": ["http://alertmanager.monitoring:9093"]}},
                                        SCENARIOS["all-options"]], ids=["default", "alertmanager", "all-options"])
    def test_prometheus_loads_the_rules_where_the_pod_mounts_them(self, promtool, tmp_path, values):
        """promtool check config on the config file at the path Prometheus is started with, in the folders the pod
        mounts: rule_files resolves to the rules file of the ConfigMap, and every rule in it loads."""
        objects = render_chart(values)
        proc = check_config(promtool, mounted_layout(objects, tmp_path))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"SUCCESS: {len(rules(objects))} rules found" in proc.stdout + proc.stderr
        assert prometheus_config(objects)["rule_files"] == ["alerts.yml"]

    def test_a_rule_file_that_is_not_mounted_fails_the_check(self, promtool, tmp_path, default_render):
        """Control: a rule_files entry the pod does not have fails promtool check config."""
        objects = copy.deepcopy(default_render)
        del objects.get("ConfigMap", PROMETHEUS)["data"]["alerts.yml"]
        proc = check_config(promtool, mounted_layout(objects, tmp_path))
        assert proc.returncode != 0 and "alerts.yml" in proc.stdout + proc.stderr

    def test_pod_rolls_when_the_rules_change(self, default_render):
        def checksums(objects):
            annotations = objects.get("Deployment", PROMETHEUS)["spec"]["template"]["metadata"]["annotations"]
            return annotations["checksum/rules"], annotations["checksum/config"]
        rules_sum, config_sum = checksums(default_render)
        changed = checksums(render_chart(alerts_values(backendErrors={"ratio": 0.1}), fresh=True))
        assert changed == (changed[0], config_sum) and changed[0] != rules_sum
        # The same rules (a fresh render, or a value outside them): the same checksum, no roll.
        for values in ({}, {"prometheus": {"retention": "30d"}}):
            assert checksums(render_chart(values, fresh=True))[0] == rules_sum, values

    def test_evaluated_at_the_scrape_interval(self):
        config = prometheus_config(render_chart({"prometheus": {"scrapeInterval": "30s"}}))
        assert config["global"]["evaluation_interval"] == "30s"


class TestDisabled:
    @pytest.mark.parametrize("values", [
        alerts_values(enabled=False),
        alerts_values(**{key: {"enabled": False} for key in set(ALERTS.values())}),
    ], ids=["alerts-off", "every-alert-off"])
    def test_no_rules_no_rule_files(self, values):
        objects = render_chart(values)
        assert set(objects.get("ConfigMap", PROMETHEUS)["data"]) == {"prometheus.yml"}
        assert "rule_files" not in prometheus_config(objects)
        assert not objects.of_kind("PrometheusRule")

    def test_refused_with_a_prometheus_rule(self):
        values = copy.deepcopy(OPERATOR)
        values["monitoring"]["alerts"] = {"enabled": False}
        assert "monitoring.prometheusRule.enabled is true while no alert is on" in render_error(values)

    @pytest.mark.parametrize("key", sorted(set(ALERTS.values())))
    def test_one_alert_off(self, key):
        objects = render_chart(alerts_values(**{key: {"enabled": False}}))
        assert set(rules(objects)) == {a for a, k in ALERTS.items() if k != key}
        groups = load_yaml(rules_file(objects))["groups"]
        assert all(g["rules"] for g in groups), "no empty group"


# --- Operator mode ------------------------------------------------------------------------------------------------

class TestPrometheusRule:
    def test_off_by_default(self, default_render):
        assert not default_render.of_kind("PrometheusRule")

    def test_valid_against_the_crd(self, operator):
        assert crd_errors(operator.get("PrometheusRule", RULE)) == []

    def test_strict_validation_catches_a_typo(self, operator):
        """Control: a field the CRD lacks fails, so the validation above would catch one."""
        rule = copy.deepcopy(operator.get("PrometheusRule", RULE))
        rule["spec"]["groups"][0]["rules"][0]["expression"] = rule["spec"]["groups"][0]["rules"][0].pop("expr")
        assert any("expression" in e or "expr" in e for e in crd_errors(rule))

    def test_same_groups_as_the_bundled_rules(self, operator):
        assert operator.get("PrometheusRule", RULE)["spec"]["groups"] == load_yaml(rules_file(operator))["groups"]

    def test_labels_for_the_rule_selector(self, operator):
        labels = operator.get("PrometheusRule", RULE)["metadata"]["labels"]
        assert labels["release"] == "kube-prometheus-stack"
        assert labels["app.kubernetes.io/instance"] == "agentforge"

    def test_without_the_bundled_prometheus(self, operator):
        values = copy.deepcopy(OPERATOR)
        values["monitoring"]["enabled"] = False
        objects = render_chart(values)
        assert objects.find("ConfigMap", PROMETHEUS) is None
        assert objects.get("PrometheusRule", RULE)["spec"] == operator.get("PrometheusRule", RULE)["spec"]

    def test_other_release_and_namespace_select_their_own_targets(self, promtool, tmp_path):
        """A release elsewhere watches its own pods: promtool over its PrometheusRule, with its pods' labels."""
        objects = render_chart(OPERATOR, name="chat", namespace="team-a")
        text = yaml.safe_dump({"groups": objects.get("PrometheusRule", "chat-agentforge-alerts")["spec"]["groups"]})
        labels = target_labels(objects, "backend", namespace="team-a", prefix="chat-agentforge")
        description = target_down(labels).replace("namespace agentforge", "namespace team-a")
        case = Case("AgentForgeTargetDown", [up(labels, 0), up(labels | {"namespace": "agentforge"}, 0)], "10m",
                    [expected("AgentForgeTargetDown", labels, description)])
        assert run_cases(promtool, tmp_path, {"other-release": (text, case)})["other-release"] == []

    def test_all_options_scenario(self):
        objects = render_chart(SCENARIOS["all-options"])
        rule = objects.get("PrometheusRule", RULE)
        assert crd_errors(rule) == [] and rule["spec"]["groups"] == load_yaml(rules_file(objects))["groups"]


# --- Alertmanagers --------------------------------------------------------------------------------------------------

class TestAlertmanagers:
    URLS = ["http://alertmanager-operated.monitoring.svc:9093", "https://alerts.example.com/alertmanager/",
            "http://[fd00::9]:9094"]

    @pytest.fixture(scope="class")
    @classmethod
    def objects(cls):
        return render_chart({"prometheus": {"alertmanagers": cls.URLS},
                             "networkPolicy": {"egress": {"enabled": True}}})

    def test_none_by_default(self, default_render):
        assert "alerting" not in prometheus_config(default_render)

    def test_rendered_into_prometheus_yml(self, objects):
        assert prometheus_config(objects)["alerting"] == {"alertmanagers": [
            {"scheme": "http", "static_configs": [{"targets": ["alertmanager-operated.monitoring.svc:9093"]}]},
            {"scheme": "https", "path_prefix": "/alertmanager",
             "static_configs": [{"targets": ["alerts.example.com:443"]}]},
            {"scheme": "http", "static_configs": [{"targets": ["[fd00::9]:9094"]}]},
        ]}

    def test_promtool_accepts_them(self, promtool, tmp_path, objects):
        proc = check_config(promtool, mounted_layout(objects, tmp_path))
        assert proc.returncode == 0, proc.stdout + proc.stderr

    @pytest.mark.parametrize("url,key", [
        ("http://user:pw@alertmanager:9093", "/prometheus/alertmanagers/0"),
        ("alertmanager:9093", "/prometheus/alertmanagers/0"),
        ("ftp://alertmanager:9093", "/prometheus/alertmanagers/0"),
        ("http://alertmanager:9093/?x=1", "/prometheus/alertmanagers/0"),
        ("http://alertmanager:70000", "prometheus.alertmanagers[0] (http://alertmanager:70000): port 70000"),
    ])
    def test_bad_urls_refused_by_name(self, url, key):
        assert key in render_error({"prometheus": {"alertmanagers": [url]}})

    def test_egress_lets_prometheus_alone_reach_their_ports(self, objects):
        cluster = Cluster(objects.of_kind("NetworkPolicy"))
        prometheus = pod_of(objects.get("Deployment", PROMETHEUS), "10.0.0.5")
        backend = pod_of(objects.get("Deployment", "agentforge-backend"), "10.0.0.6")
        alertmanager = External("alertmanager", "10.200.0.9")
        for port in (9093, 9094, 443):
            assert cluster.allowed(prometheus, alertmanager, port), port
            assert not cluster.allowed(backend, alertmanager, port), port
        assert not cluster.allowed(prometheus, alertmanager, 9095)

    def test_egress_to_their_cidrs(self):
        objects = render_chart({"prometheus": {"alertmanagers": ["http://alertmanager.monitoring:9093"]},
                                "networkPolicy": {"egress": {"enabled": True, "alertmanagerCIDRs": ["10.200.0.0/16"]}}})
        cluster = Cluster(objects.of_kind("NetworkPolicy"))
        prometheus = pod_of(objects.get("Deployment", PROMETHEUS), "10.0.0.5")
        assert cluster.allowed(prometheus, External("alertmanager", "10.200.0.9"), 9093)
        assert not cluster.allowed(prometheus, External("elsewhere", "192.0.2.9"), 9093)


# --- Only what the application exports -------------------------------------------------------------------------

def test_rules_query_only_exported_metrics(default_render):
    """The backend's metrics the dashboard may query (test_grafana.EXPORTED_METRICS, which the app tier checks
    against the running app), and `up`, which Prometheus itself writes for every target."""
    for alert, rule in rules(default_render).items():
        names = metric_names(rule["expr"])
        assert names and names <= EXPORTED_METRICS | {"up"}, (alert, names)


def test_rules_query_the_release_pods_only(default_render):
    """Every series a rule reads is matched on the component's job, the namespace and the release's pod names."""
    for alert, rule in rules(default_render).items():
        for name, matched in matched_metrics(rule["expr"]).items():
            assert {"job", "namespace", "pod"} <= matched, (alert, name)
        assert 'namespace="agentforge"' in rule["expr"] and "agentforge-backend" in rule["expr"], alert

