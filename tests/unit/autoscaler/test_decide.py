"""Table-driven tests of decide(): every rule, one row each, in the style of KEDA's scaler tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sbo_operator.api.autoscaling import (
    AutoscalingHistory,
    AutoscalingMode,
    AutoscalingSpec,
    ReplicaRecommendation,
    ScaleEvent,
)
from sbo_operator.autoscaler import (
    DecisionBasis,
    MetricError,
    MetricErrorKind,
    MetricOutcome,
    MetricSample,
    ScalingLimit,
    decide,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)

RPS = {"name": "rps", "query": "sum(rate(http_requests_total[1m]))", "targetPerReplica": 50}
P95 = {"name": "p95", "query": "histogram_quantile(0.95, x)", "target": 0.2}
TIMEOUT = MetricError(MetricErrorKind.TIMEOUT, "query timed out after 5s")
BAD_QUERY = MetricError(MetricErrorKind.QUERY_ERROR, 'parse error: unexpected "}"')


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def make_spec(**overrides: Any) -> AutoscalingSpec:
    """minReplicas 2, maxReplicas 20, metric rps; no stabilization so rows test one rule at a time."""
    body: dict[str, Any] = {
        "minReplicas": 2,
        "maxReplicas": 20,
        "metrics": [RPS],
        "scaleDown": {"stabilizationSeconds": 0},
    }
    body.update(overrides)
    return AutoscalingSpec.model_validate(body)


def recs(*pairs: tuple[float, int]) -> list[ReplicaRecommendation]:
    """Recommendations from (seconds ago, replicas) pairs."""
    return [ReplicaRecommendation(time=ago(seconds), replicas=replicas) for seconds, replicas in pairs]


def events(*triples: tuple[float, int, int]) -> list[ScaleEvent]:
    """Scale events from (seconds ago, from, to) triples."""
    return [ScaleEvent(time=ago(s), from_replicas=a, to_replicas=b) for s, a, b in triples]


@dataclass(frozen=True)
class Case:
    id: str
    spec: AutoscalingSpec
    current: int
    samples: dict[str, MetricOutcome]
    desired: int
    limit: ScalingLimit = ScalingLimit.NONE
    basis: DecisionBasis = DecisionBasis.METRICS
    reason: str = ""
    history: AutoscalingHistory = field(default_factory=AutoscalingHistory)
    failures: int = 0


def rps(value: float) -> dict[str, MetricOutcome]:
    return {"rps": MetricSample(value)}


CASES = [
    # ---- one metric ----
    Case(
        "targetPerReplica: ceil(value / target)",
        make_spec(),
        current=5,
        samples=rps(412.0),
        desired=9,
        reason="rps=412.0 (target 50/replica) -> 9 replicas",
    ),
    Case(
        "target: ceil(current * value / target), float noise ignored",
        make_spec(metrics=[P95]),
        current=4,
        samples={"p95": MetricSample(0.35)},
        desired=7,
        reason="p95=0.35 (target 0.2 at 4 replicas) -> 7 replicas",
    ),
    Case(
        "several metrics: the maximum wins",
        make_spec(metrics=[RPS, P95]),
        current=4,
        samples={"rps": MetricSample(100.0), "p95": MetricSample(0.35)},
        desired=7,
        reason="p95=0.35",
    ),
    Case(
        "several metrics: the maximum wins downwards too",
        make_spec(metrics=[RPS, P95]),
        current=10,
        samples={"rps": MetricSample(100.0), "p95": MetricSample(0.1)},
        desired=5,
        reason="p95=0.1 (target 0.2 at 10 replicas) -> 5 replicas",
    ),
    Case(
        "negative value asks for zero, raised to minReplicas",
        make_spec(),
        current=4,
        samples=rps(-3.0),
        desired=2,
        limit=ScalingLimit.TOO_FEW_REPLICAS,
        reason="raised to minReplicas 2",
    ),
    # ---- tolerance ----
    Case(
        "within tolerance above: no change",
        make_spec(),
        current=4,
        samples=rps(215.0),
        desired=4,
        reason="within 10% tolerance",
    ),
    Case("within tolerance below: no change", make_spec(), current=4, samples=rps(185.0), desired=4),
    Case("exactly at the tolerance: no change", make_spec(), current=4, samples=rps(220.0), desired=4),
    Case("just outside the tolerance: scale", make_spec(), current=4, samples=rps(221.0), desired=5),
    Case(
        "zero tolerance: any deviation scales", make_spec(tolerance=0), current=4, samples=rps(201), desired=5
    ),
    Case(
        "target metric within tolerance: no change",
        make_spec(metrics=[P95]),
        current=4,
        samples={"p95": MetricSample(0.21)},
        desired=4,
    ),
    Case(
        "several metrics each within tolerance: no change",
        make_spec(metrics=[RPS, P95]),
        current=4,
        samples={"rps": MetricSample(190.0), "p95": MetricSample(0.215)},
        desired=4,
    ),
    # ---- stabilization ----
    Case(
        "scale-down window: the highest recommendation in it holds",
        make_spec(scaleDown={"stabilizationSeconds": 300}),
        current=8,
        samples=rps(100.0),
        history=AutoscalingHistory(recommendations=recs((100, 8))),
        desired=8,
        reason="scale-down stabilized to 8 (highest recommendation in the last 300s)",
    ),
    Case(
        "scale-down window: older recommendations fall out of it",
        make_spec(scaleDown={"stabilizationSeconds": 300}),
        current=8,
        samples=rps(100.0),
        history=AutoscalingHistory(recommendations=recs((400, 10), (200, 5))),
        desired=5,
    ),
    Case(
        "scale-down window: defaults to 300 s",
        make_spec(scaleDown={}),
        current=8,
        samples=rps(100.0),
        history=AutoscalingHistory(recommendations=recs((299, 6))),
        desired=6,
    ),
    Case(
        "scale-down window: does not hold back a scale up",
        make_spec(scaleDown={"stabilizationSeconds": 300}),
        current=4,
        samples=rps(300.0),
        history=AutoscalingHistory(recommendations=recs((100, 3))),
        desired=6,
    ),
    Case(
        "scale-up window: the lowest recommendation in it holds",
        make_spec(scaleUp={"stabilizationSeconds": 60}),
        current=4,
        samples=rps(450.0),
        history=AutoscalingHistory(recommendations=recs((30, 5))),
        desired=5,
        reason="scale-up stabilized to 5 (lowest recommendation in the last 60s)",
    ),
    Case(
        "scale-up window: a recommendation exactly at its edge is out",
        make_spec(scaleUp={"stabilizationSeconds": 60}),
        current=5,
        samples=rps(450.0),
        history=AutoscalingHistory(recommendations=recs((60, 5))),
        desired=9,
    ),
    Case(
        "scale-up window: a low recommendation never scales down",
        make_spec(scaleUp={"stabilizationSeconds": 60}),
        current=6,
        samples=rps(450.0),
        history=AutoscalingHistory(recommendations=recs((30, 2))),
        desired=6,
    ),
    # ---- scale-up policies ----
    Case(
        "Percent up: 50% per period",
        make_spec(scaleUp={"policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}),
        current=4,
        samples=rps(500.0),
        desired=6,
        limit=ScalingLimit.SCALE_UP_LIMIT,
        reason="limited to 6 by the scaleUp policies",
    ),
    Case(
        "Percent up: computed in integers (10% of 10 is 11, not 12)",
        make_spec(scaleUp={"policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]}),
        current=10,
        samples=rps(1000.0),
        desired=11,
        limit=ScalingLimit.SCALE_UP_LIMIT,
    ),
    Case(
        "Pods up: 2 per period",
        make_spec(scaleUp={"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}),
        current=4,
        samples=rps(500.0),
        desired=6,
        limit=ScalingLimit.SCALE_UP_LIMIT,
    ),
    Case(
        "default scale up: max(100%, 4 pods) from 2 is 6",
        make_spec(),
        current=2,
        samples=rps(1000.0),
        desired=6,
        limit=ScalingLimit.SCALE_UP_LIMIT,
    ),
    Case(
        "default scale up: max(100%, 4 pods) from 6 is 12",
        make_spec(),
        current=6,
        samples=rps(1000.0),
        desired=12,
        limit=ScalingLimit.SCALE_UP_LIMIT,
    ),
    Case(
        "selectPolicy Max up: the policy allowing the most wins",
        make_spec(
            scaleUp={
                "selectPolicy": "Max",
                "policies": [
                    {"type": "Percent", "value": 100, "periodSeconds": 60},
                    {"type": "Pods", "value": 1, "periodSeconds": 60},
                ],
            }
        ),
        current=4,
        samples=rps(1000.0),
        desired=8,
        limit=ScalingLimit.SCALE_UP_LIMIT,
    ),
    Case(
        "selectPolicy Min up: the policy allowing the least wins",
        make_spec(
            scaleUp={
                "selectPolicy": "Min",
                "policies": [
                    {"type": "Percent", "value": 100, "periodSeconds": 60},
                    {"type": "Pods", "value": 1, "periodSeconds": 60},
                ],
            }
        ),
        current=4,
        samples=rps(1000.0),
        desired=5,
        limit=ScalingLimit.SCALE_UP_LIMIT,
    ),
    Case(
        "selectPolicy Disabled up: never scales up",
        make_spec(scaleUp={"selectPolicy": "Disabled"}),
        current=4,
        samples=rps(1000.0),
        desired=4,
        limit=ScalingLimit.SCALE_UP_LIMIT,
    ),
    Case(
        "Percent up: a scale up within the period counts against it",
        make_spec(scaleUp={"policies": [{"type": "Percent", "value": 100, "periodSeconds": 60}]}),
        current=4,
        samples=rps(1000.0),
        history=AutoscalingHistory(scale_events=events((30, 2, 4))),
        desired=4,
        limit=ScalingLimit.SCALE_UP_LIMIT,
    ),
    Case(
        "Percent up: a scale up older than the period does not",
        make_spec(scaleUp={"policies": [{"type": "Percent", "value": 100, "periodSeconds": 60}]}),
        current=4,
        samples=rps(1000.0),
        history=AutoscalingHistory(scale_events=events((60, 2, 4))),
        desired=8,
        limit=ScalingLimit.SCALE_UP_LIMIT,
    ),
    Case(
        "Pods up: a scale down within the period gives room back",
        make_spec(scaleUp={"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}),
        current=4,
        samples=rps(1000.0),
        history=AutoscalingHistory(scale_events=events((30, 6, 4))),
        desired=8,
        limit=ScalingLimit.SCALE_UP_LIMIT,
    ),
    # ---- scale-down policies ----
    Case(
        "Percent down: 50% per period",
        make_spec(
            scaleDown={
                "stabilizationSeconds": 0,
                "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
            }
        ),
        current=10,
        samples=rps(100.0),
        desired=5,
        limit=ScalingLimit.SCALE_DOWN_LIMIT,
        reason="limited to 5 by the scaleDown policies",
    ),
    Case(
        "Percent down: truncates (50% of 5 leaves 2)",
        make_spec(
            minReplicas=1,
            scaleDown={
                "stabilizationSeconds": 0,
                "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
            },
        ),
        current=5,
        samples=rps(10.0),
        desired=2,
        limit=ScalingLimit.SCALE_DOWN_LIMIT,
    ),
    Case(
        "Pods down: 3 per period",
        make_spec(
            scaleDown={
                "stabilizationSeconds": 0,
                "policies": [{"type": "Pods", "value": 3, "periodSeconds": 60}],
            }
        ),
        current=10,
        samples=rps(100.0),
        desired=7,
        limit=ScalingLimit.SCALE_DOWN_LIMIT,
    ),
    Case(
        "selectPolicy Max down: the policy allowing the biggest drop wins",
        make_spec(
            scaleDown={
                "stabilizationSeconds": 0,
                "selectPolicy": "Max",
                "policies": [
                    {"type": "Percent", "value": 50, "periodSeconds": 60},
                    {"type": "Pods", "value": 3, "periodSeconds": 60},
                ],
            }
        ),
        current=10,
        samples=rps(100.0),
        desired=5,
        limit=ScalingLimit.SCALE_DOWN_LIMIT,
    ),
    Case(
        "selectPolicy Min down: the policy allowing the smallest drop wins",
        make_spec(
            scaleDown={
                "stabilizationSeconds": 0,
                "selectPolicy": "Min",
                "policies": [
                    {"type": "Percent", "value": 50, "periodSeconds": 60},
                    {"type": "Pods", "value": 3, "periodSeconds": 60},
                ],
            }
        ),
        current=10,
        samples=rps(100.0),
        desired=7,
        limit=ScalingLimit.SCALE_DOWN_LIMIT,
    ),
    Case(
        "selectPolicy Disabled down: never scales down",
        make_spec(scaleDown={"stabilizationSeconds": 0, "selectPolicy": "Disabled"}),
        current=10,
        samples=rps(100.0),
        desired=10,
        limit=ScalingLimit.SCALE_DOWN_LIMIT,
    ),
    Case(
        "Percent down: a scale down within the period counts against it",
        make_spec(
            scaleDown={
                "stabilizationSeconds": 0,
                "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
            }
        ),
        current=10,
        samples=rps(100.0),
        history=AutoscalingHistory(scale_events=events((30, 20, 10))),
        desired=10,
        limit=ScalingLimit.SCALE_DOWN_LIMIT,
    ),
    # ---- clamp ----
    Case(
        "above maxReplicas: capped, ScalingLimited TooManyReplicas",
        make_spec(),
        current=15,
        samples=rps(5000.0),
        desired=20,
        limit=ScalingLimit.TOO_MANY_REPLICAS,
        reason="capped at maxReplicas 20",
    ),
    Case(
        "at maxReplicas and asking for more: TooManyReplicas",
        make_spec(),
        current=20,
        samples=rps(5000.0),
        desired=20,
        limit=ScalingLimit.TOO_MANY_REPLICAS,
    ),
    Case(
        "below minReplicas: raised, ScalingLimited TooFewReplicas",
        make_spec(),
        current=2,
        samples=rps(10.0),
        desired=2,
        limit=ScalingLimit.TOO_FEW_REPLICAS,
    ),
    Case(
        "current below minReplicas: moved to it whatever the metrics",
        make_spec(),
        current=1,
        samples={"rps": TIMEOUT},
        desired=2,
        limit=ScalingLimit.TOO_FEW_REPLICAS,
        basis=DecisionBasis.OUT_OF_RANGE,
        failures=1,
    ),
    Case(
        "current zero: moved to minReplicas",
        make_spec(),
        current=0,
        samples=rps(0.0),
        desired=2,
        limit=ScalingLimit.TOO_FEW_REPLICAS,
        basis=DecisionBasis.OUT_OF_RANGE,
    ),
    Case(
        "current above maxReplicas: moved to it",
        make_spec(),
        current=30,
        samples=rps(5000.0),
        desired=20,
        limit=ScalingLimit.TOO_MANY_REPLICAS,
        basis=DecisionBasis.OUT_OF_RANGE,
        reason="30 replicas is outside [2, 20] -> maxReplicas 20",
    ),
    # ---- failures ----
    Case(
        "every metric failed, no fallback: hold",
        make_spec(),
        current=7,
        samples={"rps": TIMEOUT},
        desired=7,
        basis=DecisionBasis.HOLD,
        failures=1,
        reason="holding 7 replicas: every metric failed: rps failed: Timeout: query",
    ),
    Case(
        "every metric failed, before afterFailures: hold",
        make_spec(fallback={"afterFailures": 3, "replicas": 4}),
        current=7,
        samples={"rps": BAD_QUERY},
        history=AutoscalingHistory(consecutive_failures=1),
        desired=7,
        basis=DecisionBasis.HOLD,
        failures=2,
        reason="fallback after 3",
    ),
    Case(
        "every metric failed, at afterFailures: fallback down",
        make_spec(fallback={"afterFailures": 3, "replicas": 4}),
        current=7,
        samples={"rps": BAD_QUERY},
        history=AutoscalingHistory(consecutive_failures=2),
        desired=4,
        basis=DecisionBasis.FALLBACK,
        failures=3,
        reason="fallback to 4 replicas after 3 failed polls (rps failed: QueryError: parse error",
    ),
    Case(
        "every metric failed, past afterFailures: fallback up",
        make_spec(fallback={"afterFailures": 1, "replicas": 4}),
        current=2,
        samples={"rps": TIMEOUT},
        history=AutoscalingHistory(consecutive_failures=5),
        desired=4,
        basis=DecisionBasis.FALLBACK,
        failures=6,
    ),
    Case(
        "fallback still passes through the scale-down window",
        make_spec(fallback={"afterFailures": 1, "replicas": 4}, scaleDown={"stabilizationSeconds": 300}),
        current=7,
        samples={"rps": TIMEOUT},
        history=AutoscalingHistory(recommendations=recs((100, 7))),
        desired=7,
        basis=DecisionBasis.FALLBACK,
        failures=1,
    ),
    Case(
        "a missing sample counts as a failure",
        make_spec(),
        current=7,
        samples={},
        desired=7,
        basis=DecisionBasis.HOLD,
        failures=1,
        reason="NotQueried",
    ),
    Case(
        "a NaN sample counts as a failure",
        make_spec(),
        current=7,
        samples=rps(float("nan")),
        desired=7,
        basis=DecisionBasis.HOLD,
        failures=1,
        reason="NotANumber",
    ),
    Case(
        "an infinite sample counts as a failure",
        make_spec(),
        current=7,
        samples=rps(float("inf")),
        desired=7,
        basis=DecisionBasis.HOLD,
        failures=1,
        reason="Infinite",
    ),
    Case(
        "partial failure asking for fewer: never scale down",
        make_spec(metrics=[RPS, P95]),
        current=8,
        samples={"rps": MetricSample(100.0), "p95": TIMEOUT},
        desired=8,
        basis=DecisionBasis.PARTIAL_METRICS,
        failures=1,
        reason="holding 8 replicas: never scale down while a metric fails",
    ),
    Case(
        "partial failure asking for more: scale up on the metrics that worked",
        make_spec(metrics=[RPS, P95]),
        current=5,
        samples={"rps": MetricSample(412.0), "p95": TIMEOUT},
        desired=9,
        basis=DecisionBasis.PARTIAL_METRICS,
        failures=1,
        reason="rps=412.0 (target 50/replica) -> 9 replicas; scaling up only (p95 failed: Timeout",
    ),
    Case(
        "partial failure past afterFailures: fallback may raise",
        make_spec(metrics=[RPS, P95], fallback={"afterFailures": 2, "replicas": 6}),
        current=4,
        samples={"rps": MetricSample(100.0), "p95": TIMEOUT},
        history=AutoscalingHistory(consecutive_failures=1),
        desired=6,
        basis=DecisionBasis.FALLBACK,
        failures=2,
    ),
    Case(
        "partial failure past afterFailures: fallback never lowers",
        make_spec(metrics=[RPS, P95], fallback={"afterFailures": 2, "replicas": 4}),
        current=8,
        samples={"rps": MetricSample(100.0), "p95": TIMEOUT},
        history=AutoscalingHistory(consecutive_failures=1),
        desired=8,
        basis=DecisionBasis.PARTIAL_METRICS,
        failures=2,
    ),
    Case(
        "a full success resets consecutiveFailures",
        make_spec(fallback={"afterFailures": 3, "replicas": 4}),
        current=5,
        samples=rps(250.0),
        history=AutoscalingHistory(consecutive_failures=7),
        desired=5,
        failures=0,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_decide(case: Case) -> None:
    decision = decide(
        spec=case.spec,
        current_replicas=case.current,
        samples=case.samples,
        history=case.history,
        now=NOW,
    )
    assert decision.desired_replicas == case.desired, decision.reason
    assert decision.limit is case.limit, decision.reason
    assert decision.scaling_limited == (case.limit is not ScalingLimit.NONE)
    assert decision.basis is case.basis, decision.reason
    assert decision.consecutive_failures == case.failures
    assert decision.history.consecutive_failures == case.failures
    assert case.reason in decision.reason
    assert spec_bounds_hold(case.spec, decision.desired_replicas)


def spec_bounds_hold(spec: AutoscalingSpec, replicas: int) -> bool:
    return spec.min_replicas <= replicas <= spec.max_replicas


# ---- per-metric detail -----------------------------------------------------------------------------


def test_per_metric_detail_reports_value_ask_and_prometheus_error() -> None:
    decision = decide(
        spec=make_spec(metrics=[RPS, P95]),
        current_replicas=5,
        samples={"rps": MetricSample(412.0), "p95": BAD_QUERY},
        history=AutoscalingHistory(),
        now=NOW,
    )
    rps_detail, p95_detail = decision.metrics
    assert (rps_detail.name, rps_detail.value, rps_detail.desired_replicas, rps_detail.error) == (
        "rps",
        412.0,
        9,
        None,
    )
    assert (p95_detail.name, p95_detail.value, p95_detail.desired_replicas) == ("p95", None, None)
    assert p95_detail.error == BAD_QUERY
    assert decision.failed_metrics == (p95_detail,)


def test_a_wild_value_is_bounded_per_metric_then_capped() -> None:
    decision = decide(
        spec=make_spec(),
        current_replicas=20,
        samples=rps(1e300),
        history=AutoscalingHistory(),
        now=NOW,
    )
    assert decision.metrics[0].desired_replicas == 2**31 - 1
    assert decision.desired_replicas == 20
    assert decision.limit is ScalingLimit.TOO_MANY_REPLICAS


# ---- mode and memory -------------------------------------------------------------------------------


def test_active_records_the_scale_event_and_time() -> None:
    decision = decide(
        spec=make_spec(scaleDown={}),
        current_replicas=5,
        samples=rps(412.0),
        history=AutoscalingHistory(),
        now=NOW,
    )
    assert decision.mode is AutoscalingMode.ACTIVE
    assert decision.changes_replicas
    assert decision.history.scale_events == [ScaleEvent(time=NOW, from_replicas=5, to_replicas=9)]
    assert decision.history.last_scale_time == NOW
    assert decision.history.recommendations == [ReplicaRecommendation(time=NOW, replicas=9)]


def test_dry_run_reports_the_decision_but_records_no_scale_event() -> None:
    earlier = ago(600)
    decision = decide(
        spec=make_spec(mode="DryRun", scaleDown={}),
        current_replicas=5,
        samples=rps(412.0),
        history=AutoscalingHistory(last_scale_time=earlier),
        now=NOW,
    )
    assert decision.mode is AutoscalingMode.DRY_RUN
    assert decision.desired_replicas == 9
    assert decision.history.scale_events == []
    assert decision.history.last_scale_time == earlier
    # The recommendation is still remembered, so the dry run reports what Active would do.
    assert decision.history.recommendations == [ReplicaRecommendation(time=NOW, replicas=9)]


def test_hold_records_no_recommendation() -> None:
    history = AutoscalingHistory(recommendations=recs((10, 6)))
    decision = decide(
        spec=make_spec(scaleDown={"stabilizationSeconds": 300}),
        current_replicas=6,
        samples={"rps": TIMEOUT},
        history=history,
        now=NOW,
    )
    assert decision.history.recommendations == history.recommendations
    assert decision.history.scale_events == []


def test_history_keeps_only_what_the_windows_and_periods_can_use() -> None:
    spec = make_spec(
        scaleDown={
            "stabilizationSeconds": 300,
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 60}],
        },
        scaleUp={"policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]},
    )
    history = AutoscalingHistory(
        recommendations=recs((400, 9), (250, 3), (200, 6), (100, 6), (50, 7)),
        scale_events=events((90, 2, 4), (30, 4, 6)),
    )
    decision = decide(spec=spec, current_replicas=6, samples=rps(350.0), history=history, now=NOW)
    assert decision.desired_replicas == 7
    # 400 s is outside the longest window; (200, 6) is dominated by (100, 6) and (50, 7) by the
    # new 7: no window can hold them without also holding an entry at least as high and as low.
    assert [(rec.time, rec.replicas) for rec in decision.history.recommendations] == [
        (ago(250), 3),
        (ago(100), 6),
        (NOW, 7),
    ]
    # 90 s is older than the longest policy period (60 s).
    assert decision.history.scale_events == [
        *events((30, 4, 6)),
        ScaleEvent(time=NOW, from_replicas=6, to_replicas=7),
    ]


def test_status_round_trips_through_json() -> None:
    decision = decide(
        spec=make_spec(metrics=[RPS, P95]),
        current_replicas=5,
        samples={"rps": MetricSample(412.0), "p95": BAD_QUERY},
        history=AutoscalingHistory(consecutive_failures=2),
        now=NOW,
    )
    status = decision.to_status()
    body = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert body["mode"] == "Active"
    assert body["desiredReplicas"] == 9
    assert body["consecutiveFailures"] == 3
    assert body["lastScaleTime"] == "2025-06-01T12:00:00Z"
    assert body["metrics"] == [
        {"name": "rps", "value": 412.0, "desiredReplicas": 9},
        {"name": "p95", "errorKind": "QueryError", "lastError": 'parse error: unexpected "}"'},
    ]
    assert type(status).model_validate(body) == status
    # The history is the operator's memory, not the status: a status changes only with a decision.
    assert "history" not in body
    history = decision.history.model_dump(mode="json", by_alias=True)
    assert AutoscalingHistory.model_validate(history) == decision.history


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(
            spec=make_spec(),
            current_replicas=2,
            samples=rps(1.0),
            history=AutoscalingHistory(),
            now=datetime(2025, 1, 1),
        )
