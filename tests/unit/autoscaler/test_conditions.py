"""The condition helpers: status, CamelCase reason and message for each kind of decision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sbo_operator.api.autoscaling import AutoscalingHistory, AutoscalingSpec
from sbo_operator.api.conditions import ConditionState, ConditionType
from sbo_operator.autoscaler import (
    Decision,
    MetricError,
    MetricErrorKind,
    MetricOutcome,
    MetricSample,
    autoscaling_active_condition,
    autoscaling_conditions,
    decide,
    metrics_unavailable_condition,
    scaling_limited_condition,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
PROMQL_ERROR = MetricError(
    MetricErrorKind.QUERY_ERROR, '1:14: parse error: unexpected "}" in label matching, expected string'
)


def decision_for(
    current: int,
    samples: dict[str, MetricOutcome],
    *,
    failures: int = 0,
    **spec_overrides: Any,
) -> Decision:
    body: dict[str, Any] = {
        "minReplicas": 2,
        "maxReplicas": 10,
        "metrics": [
            {"name": "rps", "query": "a", "targetPerReplica": 50},
            {"name": "p95", "query": "b", "target": 0.2},
        ],
    }
    body.update(spec_overrides)
    return decide(
        spec=AutoscalingSpec.model_validate(body),
        current_replicas=current,
        samples=samples,
        history=AutoscalingHistory(consecutive_failures=failures),
        now=NOW,
    )


HEALTHY = {"rps": MetricSample(200.0), "p95": MetricSample(0.1)}


def test_healthy_decision() -> None:
    decision = decision_for(4, HEALTHY)
    active, limited, unavailable = autoscaling_conditions(decision)
    assert active == ConditionState(
        ConditionType.AUTOSCALING_ACTIVE, "True", "ValidMetricFound", decision.reason
    )
    assert (limited.type, limited.status, limited.reason) == (
        ConditionType.SCALING_LIMITED,
        "False",
        "DesiredWithinRange",
    )
    assert unavailable == ConditionState(
        ConditionType.METRICS_UNAVAILABLE,
        "False",
        "MetricsAvailable",
        "all 2 metrics returned a value",
    )


@pytest.mark.parametrize(
    ("current", "rps", "reason"),
    [
        (8, 5000.0, "TooManyReplicas"),
        (2, 1.0, "TooFewReplicas"),
        (2, 5000.0, "ScaleUpLimit"),
        (1, 200.0, "TooFewReplicas"),
    ],
)
def test_scaling_limited(current: int, rps: float, reason: str) -> None:
    decision = decision_for(current, {"rps": MetricSample(rps), "p95": MetricSample(0.01)})
    condition = scaling_limited_condition(decision)
    assert (condition.status, condition.reason) == ("True", reason)
    assert condition.message == decision.reason


def test_scaling_limited_by_the_scale_down_policy() -> None:
    decision = decision_for(
        10,
        {"rps": MetricSample(1.0), "p95": MetricSample(0.01)},
        scaleDown={
            "stabilizationSeconds": 0,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
    )
    assert scaling_limited_condition(decision).reason == "ScaleDownLimit"


def test_dry_run_is_not_active() -> None:
    decision = decision_for(4, {"rps": MetricSample(450.0), "p95": MetricSample(0.1)}, mode="DryRun")
    condition = autoscaling_active_condition(decision)
    assert (condition.status, condition.reason) == ("False", "DryRun")
    assert "would run 8" in condition.message


def test_every_metric_failing_holds_and_reports_prometheus_text() -> None:
    decision = decision_for(
        4, {"rps": PROMQL_ERROR, "p95": MetricError(MetricErrorKind.TIMEOUT, "timed out")}
    )
    active = autoscaling_active_condition(decision)
    unavailable = metrics_unavailable_condition(decision)
    assert (active.status, active.reason) == ("False", "FailedGetMetrics")
    assert (unavailable.status, unavailable.reason) == ("True", "QueryError")
    assert unavailable.message == (
        'rps: QueryError: 1:14: parse error: unexpected "}" in label matching, expected string; '
        "p95: Timeout: timed out"
    )


def test_fallback_is_not_active() -> None:
    decision = decision_for(
        4,
        {"rps": PROMQL_ERROR, "p95": PROMQL_ERROR},
        failures=2,
        fallback={"afterFailures": 3, "replicas": 6},
    )
    assert decision.desired_replicas == 6
    active = autoscaling_active_condition(decision)
    assert (active.status, active.reason) == ("False", "FallbackActive")
    assert "fallback to 6 replicas after 3 failed polls" in active.message


def test_partial_failure_is_still_active_but_metrics_unavailable() -> None:
    decision = decision_for(
        4, {"rps": MetricSample(200.0), "p95": MetricError(MetricErrorKind.EMPTY_RESULT, "no series")}
    )
    assert autoscaling_active_condition(decision).status == "True"
    unavailable = metrics_unavailable_condition(decision)
    assert (unavailable.status, unavailable.reason) == ("True", "EmptyResult")
    assert unavailable.message.startswith("p95: EmptyResult: no series")
