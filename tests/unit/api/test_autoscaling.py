"""The autoscaling API models: defaults, the CEL rules and their pydantic mirrors, the schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from sbo_operator.api.autoscaling import (
    AutoscalingSpec,
    AutoscalingStatus,
    PrometheusSpec,
    ScalingPolicy,
    ScalingPolicyType,
    SelectPolicy,
)
from sbo_operator.api.crd import to_structural_schema
from sbo_operator.api.formats import PROMETHEUS_URL_MESSAGE

pytestmark = pytest.mark.unit

ISSUE_EXAMPLE = {
    "mode": "Active",
    "minReplicas": 2,
    "maxReplicas": 20,
    "tolerance": 0.1,
    "metrics": [
        {
            "name": "rps",
            "query": 'sum(rate(http_requests_total{namespace="demo",backend="shop"}[1m]))',
            "targetPerReplica": 50,
        },
        {
            "name": "p95",
            "query": "histogram_quantile(0.95, sum by (le) "
            '(rate(http_request_duration_seconds_bucket{backend="shop"}[1m])))',
            "target": 0.2,
        },
    ],
    "scaleUp": {
        "stabilizationSeconds": 0,
        "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 15},
            {"type": "Pods", "value": 4, "periodSeconds": 15},
        ],
    },
    "scaleDown": {
        "stabilizationSeconds": 300,
        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
    },
    "fallback": {"afterFailures": 3, "replicas": 4},
}
MINIMAL = {"maxReplicas": 5, "metrics": [{"name": "rps", "query": "x", "targetPerReplica": 1}]}


def test_the_issue_example_parses_and_round_trips() -> None:
    spec = AutoscalingSpec.model_validate(ISSUE_EXAMPLE)
    assert spec.metrics[1].target == 0.2
    assert spec.scale_down.policies == [
        ScalingPolicy(type=ScalingPolicyType.PERCENT, value=50, period_seconds=60)
    ]
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped == {
        **ISSUE_EXAMPLE,
        "scaleUp": {**ISSUE_EXAMPLE["scaleUp"], "selectPolicy": "Max"},
        "scaleDown": {**ISSUE_EXAMPLE["scaleDown"], "selectPolicy": "Max"},
    }
    assert AutoscalingSpec.model_validate(dumped) == spec


def test_defaults_match_hpa() -> None:
    spec = AutoscalingSpec.model_validate(MINIMAL)
    assert (spec.mode, spec.min_replicas, spec.tolerance, spec.fallback) == ("Active", 1, 0.1, None)
    assert spec.scale_up.stabilization_seconds == 0
    assert spec.scale_up.select_policy is SelectPolicy.MAX
    assert [(p.type, p.value, p.period_seconds) for p in spec.scale_up.policies] == [
        ("Percent", 100, 15),
        ("Pods", 4, 15),
    ]
    assert spec.scale_down.stabilization_seconds == 300
    assert [(p.type, p.value, p.period_seconds) for p in spec.scale_down.policies] == [("Percent", 100, 15)]
    # A partial scaleDown keeps HPA's per-direction defaults for what it leaves out.
    partial = AutoscalingSpec.model_validate(
        {**MINIMAL, "scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}
    )
    assert partial.scale_down.stabilization_seconds == 300

    prometheus = PrometheusSpec()
    assert (
        prometheus.url,
        prometheus.poll_seconds,
        prometheus.timeout_seconds,
        prometheus.insecure_skip_verify,
    ) == (
        None,
        15,
        5,
        False,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**MINIMAL, "minReplicas": 6}, "minReplicas must not exceed maxReplicas"),
        ({**MINIMAL, "metrics": []}, "at least 1 item"),
        (
            {**MINIMAL, "metrics": [MINIMAL["metrics"][0], MINIMAL["metrics"][0]]},  # type: ignore[index]
            "metric names must be unique",
        ),
        (
            {**MINIMAL, "metrics": [{"name": "a", "query": "x", "target": 1, "targetPerReplica": 1}]},
            "set exactly one of targetPerReplica and target",
        ),
        (
            {**MINIMAL, "metrics": [{"name": "a", "query": "x"}]},
            "set exactly one of targetPerReplica and target",
        ),
        ({**MINIMAL, "metrics": [{"name": "a", "query": "x", "target": 0}]}, "greater than 0"),
        (
            {**MINIMAL, "fallback": {"replicas": 9}},
            "fallback.replicas must lie within [minReplicas, maxReplicas]",
        ),
        ({**MINIMAL, "scaleUp": {"policies": []}}, "at least 1 item"),
        ({**MINIMAL, "scaleUp": {"selectPolicy": "Sometimes"}}, "'Max', 'Min' or 'Disabled'"),
        (
            {**MINIMAL, "scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 1801}]}},
            "1800",
        ),
        ({**MINIMAL, "mode": "Off"}, "'Active' or 'DryRun'"),
        ({**MINIMAL, "minReplica": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_autoscaling_is_rejected(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AutoscalingSpec.model_validate(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"pollSeconds": 0}, "greater than or equal to 1"),
        ({"url": "prometheus:9090"}, PROMETHEUS_URL_MESSAGE),
        (
            {"bearerTokenSecretRef": {"name": "t", "key": "token"}, "basicAuthSecretRef": {"name": "b"}},
            "set at most one of bearerTokenSecretRef and basicAuthSecretRef",
        ),
        (
            {"caSecretRef": {"name": "s", "key": "ca.crt"}, "caConfigMapRef": {"name": "c", "key": "ca.crt"}},
            "set at most one of caSecretRef and caConfigMapRef",
        ),
    ],
)
def test_invalid_prometheus_is_rejected(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PrometheusSpec.model_validate(body)


def test_cel_rules_are_in_the_schema() -> None:
    schema = AutoscalingSpec.model_json_schema(by_alias=True)
    rules = {rule["rule"]: rule["message"] for rule in schema["x-kubernetes-validations"]}
    assert (
        rules["self.metrics.all(m, self.metrics.exists_one(n, n.name == m.name))"]
        == "metric names must be unique"
    )
    assert "minReplicas must not exceed maxReplicas" in rules.values()
    metric_rules = schema["$defs"]["MetricSpec"]["x-kubernetes-validations"]
    assert metric_rules == [
        {
            "rule": "has(self.targetPerReplica) != has(self.target)",
            "message": "set exactly one of targetPerReplica and target",
        }
    ]
    prometheus_rules = PrometheusSpec.model_json_schema(by_alias=True)["x-kubernetes-validations"]
    assert {
        "rule": "!has(self.pollSeconds) || self.pollSeconds >= 1",
        "message": "pollSeconds must be at least 1",
        "fieldPath": ".pollSeconds",
    } in prometheus_rules
    # CEL cost estimation needs bounded lists and strings.
    assert schema["properties"]["metrics"]["maxItems"] == 16
    assert schema["$defs"]["MetricSpec"]["properties"]["name"]["maxLength"] == 63


def properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for model in [schema, *schema.get("$defs", {}).values()]:
        for name, prop in model.get("properties", {}).items():
            yield f"{model.get('title')}.{name}", prop


def structural_properties(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, prop in node.get("properties", {}).items():
        yield f"{path}.{name}", prop
        yield from structural_properties(prop, f"{path}.{name}")
    if "items" in node:
        yield from structural_properties(node["items"], f"{path}[]")


@pytest.mark.parametrize("model", [AutoscalingSpec, PrometheusSpec, AutoscalingStatus])
def test_schema_is_documented_and_structural(model: type[BaseModel]) -> None:
    schema = model.model_json_schema(by_alias=True)
    for path, prop in properties(schema):
        assert prop.get("description"), f"{path} has no description"
        assert "anyOf" not in prop, f"{path} is a union: {prop}"
    # The CRD generator drops the optional fields' `default: null` (absent already means None).
    structural = to_structural_schema(schema)
    for path, prop in structural_properties(structural, model.__name__):
        assert prop.get("default", "absent") is not None, f"{path} has default null"
