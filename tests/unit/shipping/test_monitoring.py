"""Alerts validated and unit-tested by promtool; the Grafana dashboard's queries parse and cover the brief."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.paths import REPO
from sbo_operator.metrics import OperatorMetrics
from tests.unit.shipping.support import CHART, MONITORING_APIS, helm_template, one, run, tool

pytestmark = pytest.mark.unit

RULES = CHART / "files" / "prometheus-rules.yaml"
RULE_TESTS = Path(__file__).parent / "promtool" / "alerts_test.yaml"
DASHBOARD = CHART / "dashboards" / "scalable-backend.json"
REQUIRED_ALERTS = {
    "ScalableBackendHighLatencyP95",
    "ScalableBackendHighErrorRate",
    "ScalableBackendNotReady",
    "ScalableBackendMetricsUnavailable",
}


def test_promtool_check_rules_on_the_shipped_file() -> None:
    result = run(tool("promtool"), "check", "rules", RULES)
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules_on_the_rendered_prometheusrule(tmp_path: Path) -> None:
    spec = one(helm_template(api_versions=MONITORING_APIS), "PrometheusRule")["spec"]
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump(spec))
    assert "SUCCESS" in run(tool("promtool"), "check", "rules", rendered).stdout


def test_promtool_unit_tests_of_every_alert() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tested = {a["alertname"] for case in tests["tests"] for a in case.get("alert_rule_test", [])}
    alerts = {
        r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r
    }
    assert alerts >= REQUIRED_ALERTS
    assert tested == alerts, "every alert has a promtool test"
    result = run(tool("promtool"), "test", "rules", RULE_TESTS)
    assert "SUCCESS" in result.stdout


def test_the_thresholds_are_the_ones_promised() -> None:
    rules = {
        r.get("alert") or r["record"]: r
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
    }
    assert rules["ScalableBackendHighLatencyP95"]["expr"].endswith("> 0.2")
    assert rules["ScalableBackendHighErrorRate"]["expr"].endswith("> 0.01")
    assert "0.95" in rules["namespace_job:http_request_duration_seconds:p95_5m"]["expr"]


def operator_metric_names() -> set[str]:
    metrics = OperatorMetrics.create()
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names | {
        f"{family.name}_total" for family in metrics.registry.collect() if family.type == "counter"
    }


def test_every_operator_metric_the_alerts_use_exists() -> None:
    text = RULES.read_text()
    used = set(re.findall(r"\b(sbo_[a-z_]+)", text))
    assert used <= operator_metric_names(), used - operator_metric_names()


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel_queries() -> dict[str, list[str]]:
    return {
        p["title"]: [t["expr"] for t in p.get("targets", [])]
        for p in dashboard()["panels"]
        if p["type"] != "row"
    }


def test_the_dashboard_covers_the_operator_and_a_backend() -> None:
    queries = panel_queries()
    for title, metric in [
        ("Request rate", "http_requests_total"),
        ("Latency p95", "http_request_duration_seconds_bucket"),
        ("Error rate", "http_requests_total"),
        ("Replicas: desired vs actual", "kube_deployment_spec_replicas"),
        ("Cache hit ratio", "cache_requests_total"),
        ("Queue depth", "task_queue_depth"),
        ("Reconciles", "sbo_reconciles_total"),
        ("Reconcile errors", "sbo_reconcile_errors_total"),
        ("Reconcile duration", "sbo_reconcile_duration_seconds_bucket"),
    ]:
        assert any(metric in q for q in queries[title]), title
    assert any("sbo_autoscaler_decisions_total" in q for q in queries["Replicas: desired vs actual"])
    assert any("sbo_reconcile_queue_depth" in q for q in queries["Queue depth"])
    assert any("0.95" in q for q in queries["Latency p95"])


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (Grafana's variables filled in) as a recording rule."""
    variables = {"$__rate_interval": "5m", "$namespace": "demo", "$backend": "shop", "$job": "shop-api"}
    rules = []
    for number, expr in enumerate(q for qs in panel_queries().values() for q in qs):
        for name, value in variables.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            selector = re.fullmatch(r"label_values\((.+), \w+\)", variable["query"]["query"])
            assert selector, variable
            rules.append({"record": f"dashboard:var_{variable['name']}", "expr": selector.group(1)})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert "SUCCESS" in run(tool("promtool"), "check", "rules", path).stdout


def test_the_dashboard_metrics_exist_in_the_operator_or_the_sample_app() -> None:
    app_metrics = (REPO / "sample-app" / "app" / "core" / "metrics.py").read_text()
    text = DASHBOARD.read_text()
    for name in set(re.findall(r"\b(sbo_[a-z_]+)", text)):
        assert name in operator_metric_names() or name == "sbo_backend_condition", name
    for family in ("http_requests", "http_request_duration_seconds", "cache_requests", "task_queue_depth"):
        assert f'"{family}"' in app_metrics, family


def condition_samples(metrics: OperatorMetrics) -> dict[tuple[str, ...], float]:
    return {
        (s.labels["namespace"], s.labels["name"], s.labels["type"], s.labels["status"]): s.value
        for family in metrics.registry.collect()
        if family.name == "sbo_backend_condition"
        for s in family.samples
    }


def test_sbo_backend_condition_is_one_for_the_current_status_and_gone_after_delete() -> None:
    metrics = OperatorMetrics.create()
    metrics.record_conditions(
        "demo",
        "shop",
        [{"type": "Ready", "status": "False"}, {"type": "MetricsUnavailable", "status": "True"}],
    )
    samples = condition_samples(metrics)
    assert samples[("demo", "shop", "Ready", "True")] == 0
    assert samples[("demo", "shop", "Ready", "False")] == 1
    assert samples[("demo", "shop", "Ready", "Unknown")] == 0
    assert samples[("demo", "shop", "MetricsUnavailable", "True")] == 1
    metrics.record_conditions("demo", "shop", [{"type": "Ready", "status": "True"}])
    assert condition_samples(metrics)[("demo", "shop", "Ready", "True")] == 1
    metrics.forget_backend("demo", "shop")
    assert condition_samples(metrics) == {}
