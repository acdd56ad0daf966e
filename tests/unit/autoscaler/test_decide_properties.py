"""Properties of decide() over generated specs, samples and histories (hypothesis)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sbo_operator.api.autoscaling import (
    AutoscalingHistory,
    AutoscalingSpec,
    ReplicaRecommendation,
    ScaleEvent,
)
from sbo_operator.autoscaler import (
    Decision,
    DecisionBasis,
    MetricError,
    MetricErrorKind,
    MetricOutcome,
    MetricSample,
    decide,
)
from sbo_operator.autoscaler.history import MAX_HISTORY_ENTRIES

pytestmark = pytest.mark.unit

T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
POLL = timedelta(seconds=15)

policies = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["Pods", "Percent"]),
            "value": st.integers(1, 200),
            "periodSeconds": st.integers(1, 120),
        }
    ),
    min_size=1,
    max_size=3,
)
rules = st.fixed_dictionaries(
    {
        "stabilizationSeconds": st.integers(0, 600),
        "selectPolicy": st.sampled_from(["Max", "Min", "Disabled"]),
        "policies": policies,
    }
)
# Rules that can always move, so convergence is reachable.
moving_rules = st.fixed_dictionaries(
    {
        "stabilizationSeconds": st.integers(0, 600),
        "selectPolicy": st.sampled_from(["Max", "Min"]),
        "policies": policies,
    }
)
per_replica_metric = st.fixed_dictionaries(
    {"query": st.just("q"), "targetPerReplica": st.floats(0.5, 500, allow_nan=False)}
)
whole_metric = st.fixed_dictionaries({"query": st.just("q"), "target": st.floats(0.01, 10, allow_nan=False)})


@st.composite
def specs(draw: st.DrawFn, *, rule_strategy: st.SearchStrategy[dict[str, Any]] = rules) -> AutoscalingSpec:
    min_replicas = draw(st.integers(1, 10))
    max_replicas = draw(st.integers(min_replicas, 50))
    metrics = draw(st.lists(st.one_of(per_replica_metric, whole_metric), min_size=1, max_size=3))
    body: dict[str, Any] = {
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "tolerance": draw(st.floats(0, 0.5)),
        "metrics": [{"name": f"m{index}", **metric} for index, metric in enumerate(metrics)],
        "scaleUp": draw(rule_strategy),
        "scaleDown": draw(rule_strategy),
    }
    if draw(st.booleans()):
        body["fallback"] = {
            "afterFailures": draw(st.integers(1, 4)),
            "replicas": draw(st.integers(min_replicas, max_replicas)),
        }
    return AutoscalingSpec.model_validate(body)


outcomes: st.SearchStrategy[MetricOutcome] = st.one_of(
    st.builds(MetricSample, st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(MetricSample, st.floats(-10, 50_000)),
    st.builds(MetricError, st.sampled_from(MetricErrorKind), st.text(max_size=20)),
)


@st.composite
def histories(draw: st.DrawFn) -> AutoscalingHistory:
    def when() -> datetime:
        return T0 - timedelta(seconds=draw(st.integers(1, 1000)))

    recommendations = sorted(
        (
            ReplicaRecommendation(time=when(), replicas=draw(st.integers(0, 80)))
            for _ in range(draw(st.integers(0, 8)))
        ),
        key=lambda rec: rec.time,
    )
    events = sorted(
        (
            ScaleEvent(
                time=when(), from_replicas=draw(st.integers(0, 60)), to_replicas=draw(st.integers(0, 60))
            )
            for _ in range(draw(st.integers(0, 5)))
        ),
        key=lambda event: event.time,
    )
    return AutoscalingHistory(
        recommendations=recommendations,
        scale_events=events,
        consecutive_failures=draw(st.integers(0, 6)),
    )


@given(spec=specs(), current=st.integers(0, 80), data=st.data(), history=histories())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_result_is_always_within_min_and_max(
    spec: AutoscalingSpec, current: int, data: st.DataObject, history: AutoscalingHistory
) -> None:
    samples = {metric.name: data.draw(outcomes) for metric in spec.metrics}
    decision = decide(spec=spec, current_replicas=current, samples=samples, history=history, now=T0)
    assert spec.min_replicas <= decision.desired_replicas <= spec.max_replicas, decision.reason

    if not spec.min_replicas <= current <= spec.max_replicas:
        assert decision.basis is DecisionBasis.OUT_OF_RANGE
    elif decision.failed_metrics:
        if decision.basis is not DecisionBasis.FALLBACK:
            # A failure never scales down; only the fallback may, once every metric failed.
            assert decision.desired_replicas >= current, decision.reason
        if decision.basis is DecisionBasis.HOLD:
            assert decision.desired_replicas == current

    # Pure: the same inputs give the same decision.
    again = decide(spec=spec, current_replicas=current, samples=samples, history=history, now=T0)
    assert again == decision


def run(spec: AutoscalingSpec, current: int, samples: dict[str, MetricOutcome], polls: int) -> list[Decision]:
    """Feed the same samples poll after poll, applying each decision, as the operator would."""
    history = AutoscalingHistory()
    decisions = []
    for poll in range(polls):
        decision = decide(
            spec=spec, current_replicas=current, samples=samples, history=history, now=T0 + poll * POLL
        )
        decisions.append(decision)
        current = decision.desired_replicas
        # Stored in the status: the history must survive JSON both ways.
        history = AutoscalingHistory.model_validate_json(decision.history.model_dump_json(by_alias=True))
    return decisions


@given(
    spec=specs(rule_strategy=moving_rules),
    start=st.integers(1, 50),
    values=st.lists(st.floats(0, 20_000), min_size=3, max_size=3),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_stable_inputs_converge_without_changing_direction(
    spec: AutoscalingSpec, start: int, values: list[float]
) -> None:
    current = min(max(start, spec.min_replicas), spec.max_replicas)
    samples: dict[str, MetricOutcome] = {
        metric.name: MetricSample(value) for metric, value in zip(spec.metrics, values, strict=False)
    }
    decisions = run(spec, current, samples, polls=520)
    replicas = [current, *(decision.desired_replicas for decision in decisions)]
    steps = [after - before for before, after in itertools.pairwise(replicas)]
    assert not (any(step > 0 for step in steps) and any(step < 0 for step in steps)), replicas
    assert len(set(replicas[-20:])) == 1, replicas


@given(
    spec=specs(),
    start=st.integers(1, 50),
    noise=st.lists(st.floats(-0.999, 0.999), min_size=1, max_size=40),
)
@settings(max_examples=150, deadline=None)
def test_noise_within_tolerance_never_changes_replicas(
    spec: AutoscalingSpec, start: int, noise: list[float]
) -> None:
    current = min(max(start, spec.min_replicas), spec.max_replicas)
    history = AutoscalingHistory()
    for poll, jitter in enumerate(noise):
        samples: dict[str, MetricOutcome] = {}
        for metric in spec.metrics:
            deviation = 1 + jitter * spec.tolerance
            if metric.target_per_replica is not None:
                samples[metric.name] = MetricSample(metric.target_per_replica * current * deviation)
            else:
                assert metric.target is not None
                samples[metric.name] = MetricSample(metric.target * deviation)
        decision = decide(
            spec=spec, current_replicas=current, samples=samples, history=history, now=T0 + poll * POLL
        )
        assert decision.desired_replicas == current, decision.reason
        history = decision.history


@given(spec=specs(), rounds=st.lists(st.lists(outcomes, min_size=3, max_size=3), min_size=1, max_size=12))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_history_stays_small_whatever_happens(
    spec: AutoscalingSpec, rounds: list[list[MetricOutcome]]
) -> None:
    current = spec.min_replicas
    history = AutoscalingHistory()
    for poll in range(300):
        answers = rounds[poll % len(rounds)]
        samples = {metric.name: answer for metric, answer in zip(spec.metrics, answers, strict=False)}
        decision = decide(
            spec=spec,
            current_replicas=current,
            samples=samples,
            history=history,
            now=T0 + timedelta(seconds=poll),  # a 1 s poll: the most entries per window
        )
        history = decision.history
        current = decision.desired_replicas
        assert len(history.recommendations) <= MAX_HISTORY_ENTRIES
        assert len(history.scale_events) <= MAX_HISTORY_ENTRIES
        # Kept recommendations are distinct values, so at most one per replica count.
        assert len({rec.replicas for rec in history.recommendations}) == len(history.recommendations)
