"""The autoscaler's decision: a pure function of replicas, metric samples, spec, memory and time.

It follows the HPA controller (k8s.io/kubernetes pkg/controller/podautoscaler/horizontal.go):
per-metric replica counts with a tolerance, the maximum over metrics, the stabilization windows of
``stabilizeRecommendationWithBehaviors``, the rate policies of
``calculateScaleUpLimitWithScalingRules`` / ``calculateScaleDownLimitWithBehaviors``, and the
min/max clamp of ``convertDesiredReplicasWithBehaviorRate``. On top of it: explicit handling of
failed queries (hold, scale up only on a partial failure, fallback after N failures).

No I/O, no clock, no randomness: ``now`` is an argument and the memory goes in and comes out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sbo_operator.api.autoscaling import (
    AutoscalingHistory,
    AutoscalingMode,
    AutoscalingSpec,
    AutoscalingStatus,
    MetricSpec,
    MetricStatus,
    ReplicaRecommendation,
    ScaleDownRules,
    ScaleEvent,
    ScaleUpRules,
    ScalingPolicyType,
    SelectPolicy,
)
from sbo_operator.autoscaler.history import (
    prune_recommendations,
    prune_scale_events,
    replicas_changed_within,
)
from sbo_operator.autoscaler.samples import MetricError, MetricErrorKind, MetricOutcome, MetricSample

__all__ = [
    "Decision",
    "DecisionBasis",
    "MetricRecommendation",
    "ScalingLimit",
    "decide",
]

# Replica counts are int32 in the Deployment API; a wild metric must not overflow the status.
MAX_REPLICAS_PER_METRIC = 2**31 - 1
# Floating-point slack so that e.g. 55/50 counts as exactly 10% off, and 0.3/0.1 as exactly 3.
_FLOAT_SLACK = 1e-9


class ScalingLimit(StrEnum):
    """Why the desired replicas differ from what the metrics asked; HPA's ScalingLimited reasons."""

    NONE = "DesiredWithinRange"
    TOO_MANY_REPLICAS = "TooManyReplicas"
    TOO_FEW_REPLICAS = "TooFewReplicas"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"


class DecisionBasis(StrEnum):
    """What the desired replicas were computed from."""

    METRICS = "Metrics"
    """Every metric returned a value."""
    PARTIAL_METRICS = "PartialMetrics"
    """Some metrics failed: the others may scale up, never down."""
    FALLBACK = "Fallback"
    """Metrics failed for ``fallback.afterFailures`` polls: the fallback replicas apply."""
    HOLD = "Hold"
    """Every metric failed and no fallback applies: the current replicas are held."""
    OUT_OF_RANGE = "OutOfRange"
    """The current replicas lie outside [minReplicas, maxReplicas]: moved to the nearest bound."""


@dataclass(frozen=True, slots=True)
class MetricRecommendation:
    """What one metric said and asked for on this poll."""

    name: str
    value: float | None
    desired_replicas: int | None
    error: MetricError | None
    explanation: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one poll: desired replicas, why, and the memory to store for the next poll.

    In ``Active`` mode the caller is expected to apply ``desired_replicas``; if it cannot, it should
    keep the previous history, because this one records the change as made. In ``DryRun`` the
    caller reports and never applies; the history then records no scale events.
    """

    mode: AutoscalingMode
    now: datetime
    current_replicas: int
    desired_replicas: int
    reason: str
    basis: DecisionBasis
    limit: ScalingLimit
    metrics: tuple[MetricRecommendation, ...]
    history: AutoscalingHistory

    @property
    def failed_metrics(self) -> tuple[MetricRecommendation, ...]:
        """The metrics whose query failed on this poll."""
        return tuple(metric for metric in self.metrics if metric.error is not None)

    @property
    def consecutive_failures(self) -> int:
        """Polls in a row, this one included, in which at least one metric failed."""
        return self.history.consecutive_failures

    @property
    def scaling_limited(self) -> bool:
        """Whether min/max or a rate policy kept the replicas from what the metrics asked."""
        return self.limit is not ScalingLimit.NONE

    @property
    def changes_replicas(self) -> bool:
        """Whether applying the decision changes the replicas."""
        return self.desired_replicas != self.current_replicas

    def to_status(self) -> AutoscalingStatus:
        """The status to write to ``status.autoscaling.api`` or ``.worker``."""
        return AutoscalingStatus(
            mode=self.mode,
            current_replicas=self.current_replicas,
            desired_replicas=self.desired_replicas,
            reason=self.reason,
            last_poll_time=self.now,
            last_scale_time=self.history.last_scale_time,
            consecutive_failures=self.history.consecutive_failures,
            metrics=[
                MetricStatus(
                    name=metric.name,
                    value=metric.value,
                    desired_replicas=metric.desired_replicas,
                    error_kind=None if metric.error is None else str(metric.error.kind),
                    last_error=None if metric.error is None else metric.error.message,
                )
                for metric in self.metrics
            ],
        )


def decide(
    *,
    spec: AutoscalingSpec,
    current_replicas: int,
    samples: Mapping[str, MetricOutcome],
    history: AutoscalingHistory,
    now: datetime,
) -> Decision:
    """Decide the replicas for one poll.

    ``samples`` maps each metric name of ``spec.metrics`` to what its query yielded; a missing
    name counts as a failed query. ``history`` is what the previous decision returned (or an
    empty ``AutoscalingHistory()``). ``now`` must be timezone-aware.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if current_replicas < 0:
        raise ValueError(f"current_replicas must not be negative, got {current_replicas}")

    metrics = tuple(
        _recommend_for_metric(metric, samples.get(metric.name), current_replicas, spec.tolerance)
        for metric in spec.metrics
    )
    failed = [metric for metric in metrics if metric.error is not None]
    healthy = [metric for metric in metrics if metric.desired_replicas is not None]
    consecutive_failures = history.consecutive_failures + 1 if failed else 0
    fallback_due = (
        spec.fallback is not None and bool(failed) and consecutive_failures >= spec.fallback.after_failures
    )
    failures_text = "; ".join(f"{metric.name} failed: {metric.error}" for metric in failed)

    recommendations = list(history.recommendations)
    outcome: _Outcome
    if not spec.min_replicas <= current_replicas <= spec.max_replicas:
        # As HPA: out-of-range replicas go to the nearest bound before any metric counts.
        bound = min(max(current_replicas, spec.min_replicas), spec.max_replicas)
        limit = ScalingLimit.TOO_FEW_REPLICAS if bound > current_replicas else ScalingLimit.TOO_MANY_REPLICAS
        bound_name = "minReplicas" if limit is ScalingLimit.TOO_FEW_REPLICAS else "maxReplicas"
        outcome = _Outcome(
            desired=bound,
            reason=f"{current_replicas} replicas is outside [{spec.min_replicas}, {spec.max_replicas}]"
            f" -> {bound_name} {bound}",
            basis=DecisionBasis.OUT_OF_RANGE,
            limit=limit,
        )
    elif not healthy:
        if fallback_due:
            assert spec.fallback is not None
            outcome = _scale(
                spec,
                current_replicas,
                raw=spec.fallback.replicas,
                head=f"fallback to {spec.fallback.replicas} replicas after {spec.fallback.after_failures} "
                f"failed polls ({failures_text})",
                basis=DecisionBasis.FALLBACK,
                recommendations=recommendations,
                events=history.scale_events,
                now=now,
            )
        else:
            # No running count in the text: it is written to the status once per outage.
            pending = (
                f" (fallback after {spec.fallback.after_failures} failed polls)"
                if spec.fallback is not None
                else ""
            )
            outcome = _Outcome(
                desired=current_replicas,
                reason=f"holding {_replicas(current_replicas)}: every metric failed{pending}: "
                f"{failures_text}",
                basis=DecisionBasis.HOLD,
                limit=ScalingLimit.NONE,
            )
    else:
        leader = _leading_metric(healthy)
        assert leader.desired_replicas is not None
        raw = leader.desired_replicas
        head = leader.explanation
        basis = DecisionBasis.PARTIAL_METRICS if failed else DecisionBasis.METRICS
        if fallback_due:
            assert spec.fallback is not None
            # On a partial failure the fallback may only raise the replicas.
            if spec.fallback.replicas > max(raw, current_replicas):
                raw = spec.fallback.replicas
                head = f"fallback to {raw} replicas after {spec.fallback.after_failures} failed polls"
                basis = DecisionBasis.FALLBACK
        if failed and raw <= current_replicas:
            outcome = _Outcome(
                desired=current_replicas,
                reason=f"holding {_replicas(current_replicas)}: never scale down while a metric fails "
                f"({head}; {failures_text})",
                basis=basis,
                limit=ScalingLimit.NONE,
            )
        else:
            outcome = _scale(
                spec,
                current_replicas,
                raw=raw,
                head=head if not failed else f"{head}; scaling up only ({failures_text})",
                basis=basis,
                recommendations=recommendations,
                events=history.scale_events,
                now=now,
            )

    return Decision(
        mode=spec.mode,
        now=now,
        current_replicas=current_replicas,
        desired_replicas=outcome.desired,
        reason=outcome.reason,
        basis=outcome.basis,
        limit=outcome.limit,
        metrics=metrics,
        history=_next_history(
            spec,
            history,
            current_replicas=current_replicas,
            desired_replicas=outcome.desired,
            recommendation=outcome.recommendation,
            consecutive_failures=consecutive_failures,
            now=now,
        ),
    )


# ---- one metric -----------------------------------------------------------------------------------


def _recommend_for_metric(
    metric: MetricSpec, outcome: MetricOutcome | None, current_replicas: int, tolerance: float
) -> MetricRecommendation:
    """The replicas one metric asks for, HPA-style: unchanged within the tolerance."""
    if outcome is None:
        outcome = MetricError(MetricErrorKind.NOT_QUERIED, "no result was supplied for this metric")
    if isinstance(outcome, MetricError):
        return MetricRecommendation(metric.name, None, None, outcome, f"{metric.name}: {outcome}")
    assert isinstance(outcome, MetricSample)
    value = outcome.value
    if not math.isfinite(value):
        kind = MetricErrorKind.NOT_A_NUMBER if math.isnan(value) else MetricErrorKind.INFINITE
        error = MetricError(kind, f"the query returned {value}")
        return MetricRecommendation(metric.name, None, None, error, f"{metric.name}: {error}")

    if metric.target_per_replica is not None:
        target = metric.target_per_replica
        target_text = f"target {target:g}/replica"
        ratio = value / (target * current_replicas) if current_replicas > 0 else math.inf
        unbounded = value / target
    else:
        assert metric.target is not None
        target = metric.target
        target_text = f"target {target:g} at {_replicas(current_replicas)}"
        ratio = value / target
        unbounded = ratio * current_replicas

    within_tolerance = abs(ratio - 1.0) <= tolerance + _FLOAT_SLACK
    if within_tolerance:
        desired = current_replicas
        target_text += f", within {tolerance:.0%} tolerance"
    else:
        desired = _bounded_ceil(unbounded)
    explanation = f"{metric.name}={_number(value)} ({target_text}) -> {_replicas(desired)}"
    return MetricRecommendation(metric.name, value, desired, None, explanation)


def _leading_metric(healthy: Sequence[MetricRecommendation]) -> MetricRecommendation:
    """The metric asking for the most replicas; the first one on a tie."""
    return max(healthy, key=lambda metric: metric.desired_replicas or 0)


# ---- stabilization, rate limits and the clamp -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    desired: int
    reason: str
    basis: DecisionBasis
    limit: ScalingLimit
    # The raw recommendation to remember for the stabilization windows; None records nothing.
    recommendation: int | None = None


def _scale(
    spec: AutoscalingSpec,
    current_replicas: int,
    *,
    raw: int,
    head: str,
    basis: DecisionBasis,
    recommendations: Sequence[ReplicaRecommendation],
    events: Sequence[ScaleEvent],
    now: datetime,
) -> _Outcome:
    """Take a raw recommendation through stabilization, the rate policies and [min, max]."""
    steps = [head]
    stabilized = _stabilize(
        raw,
        current_replicas,
        recommendations,
        now=now,
        up_window_seconds=spec.scale_up.stabilization_seconds,
        down_window_seconds=spec.scale_down.stabilization_seconds,
    )
    if stabilized != raw:
        if raw > current_replicas:
            steps.append(
                f"scale-up stabilized to {stabilized} (lowest recommendation in the last "
                f"{spec.scale_up.stabilization_seconds}s)"
            )
        else:
            steps.append(
                f"scale-down stabilized to {stabilized} (highest recommendation in the last "
                f"{spec.scale_down.stabilization_seconds}s)"
            )
    desired, limit = _limit_rate(spec, current_replicas, stabilized, events, now=now)
    if limit is ScalingLimit.TOO_MANY_REPLICAS:
        steps.append(f"capped at maxReplicas {desired}")
    elif limit is ScalingLimit.TOO_FEW_REPLICAS:
        steps.append(f"raised to minReplicas {desired}")
    elif limit is ScalingLimit.SCALE_UP_LIMIT:
        steps.append(f"limited to {desired} by the scaleUp policies")
    elif limit is ScalingLimit.SCALE_DOWN_LIMIT:
        steps.append(f"limited to {desired} by the scaleDown policies")
    return _Outcome(desired=desired, reason="; ".join(steps), basis=basis, limit=limit, recommendation=raw)


def _stabilize(
    raw: int,
    current_replicas: int,
    recommendations: Sequence[ReplicaRecommendation],
    *,
    now: datetime,
    up_window_seconds: int,
    down_window_seconds: int,
) -> int:
    """HPA's stabilizeRecommendationWithBehaviors.

    Scale up no further than the lowest recommendation in the scale-up window, and down no further
    than the highest in the scale-down window; both windows include the raw recommendation.
    """
    up_cutoff = now - timedelta(seconds=up_window_seconds)
    down_cutoff = now - timedelta(seconds=down_window_seconds)
    up_recommendation = raw
    down_recommendation = raw
    for rec in recommendations:
        if rec.time > up_cutoff:
            up_recommendation = min(up_recommendation, rec.replicas)
        if rec.time > down_cutoff:
            down_recommendation = max(down_recommendation, rec.replicas)
    stabilized = current_replicas
    stabilized = max(stabilized, up_recommendation)
    return min(stabilized, down_recommendation)


def _limit_rate(
    spec: AutoscalingSpec,
    current_replicas: int,
    desired: int,
    events: Sequence[ScaleEvent],
    *,
    now: datetime,
) -> tuple[int, ScalingLimit]:
    """HPA's convertDesiredReplicasWithBehaviorRate: the rate policies, then [min, max]."""
    if desired > current_replicas:
        scale_up_limit = max(
            _scale_up_limit(current_replicas, events, spec.scale_up, now=now), current_replicas
        )
        if spec.max_replicas > scale_up_limit:
            allowed, limit = scale_up_limit, ScalingLimit.SCALE_UP_LIMIT
        else:
            allowed, limit = spec.max_replicas, ScalingLimit.TOO_MANY_REPLICAS
        if desired > allowed:
            return allowed, limit
    elif desired < current_replicas:
        scale_down_limit = min(
            _scale_down_limit(current_replicas, events, spec.scale_down, now=now), current_replicas
        )
        if spec.min_replicas < scale_down_limit:
            allowed, limit = scale_down_limit, ScalingLimit.SCALE_DOWN_LIMIT
        else:
            allowed, limit = spec.min_replicas, ScalingLimit.TOO_FEW_REPLICAS
        if desired < allowed:
            return allowed, limit
    return desired, ScalingLimit.NONE


def _scale_up_limit(
    current_replicas: int, events: Sequence[ScaleEvent], rules: ScaleUpRules, *, now: datetime
) -> int:
    """HPA's calculateScaleUpLimitWithScalingRules: the most replicas the policies allow now."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current_replicas
    proposals = []
    for policy in rules.policies:
        added, removed = replicas_changed_within(events, now=now, period_seconds=policy.period_seconds)
        period_start_replicas = current_replicas - added + removed
        if policy.type is ScalingPolicyType.PODS:
            proposals.append(period_start_replicas + policy.value)
        else:
            # Integer ceil(start * (1 + value/100)); HPA's float form turns 10 * 1.1 into 12.
            proposals.append(-(-period_start_replicas * (100 + policy.value) // 100))
    return max(proposals) if rules.select_policy is SelectPolicy.MAX else min(proposals)


def _scale_down_limit(
    current_replicas: int, events: Sequence[ScaleEvent], rules: ScaleDownRules, *, now: datetime
) -> int:
    """HPA's calculateScaleDownLimitWithBehaviors: the fewest replicas the policies allow now."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current_replicas
    proposals = []
    for policy in rules.policies:
        added, removed = replicas_changed_within(events, now=now, period_seconds=policy.period_seconds)
        period_start_replicas = current_replicas - added + removed
        if policy.type is ScalingPolicyType.PODS:
            proposals.append(period_start_replicas - policy.value)
        else:
            # Truncated start * (1 - value/100), as HPA, in integers.
            proposals.append(period_start_replicas * (100 - policy.value) // 100)
    # Max selects the policy allowing the biggest change, i.e. the lowest limit.
    return min(proposals) if rules.select_policy is SelectPolicy.MAX else max(proposals)


# ---- memory ---------------------------------------------------------------------------------------


def _next_history(
    spec: AutoscalingSpec,
    history: AutoscalingHistory,
    *,
    current_replicas: int,
    desired_replicas: int,
    recommendation: int | None,
    consecutive_failures: int,
    now: datetime,
) -> AutoscalingHistory:
    """The memory after this poll, pruned to what the windows and policies can still use."""
    recommendations = list(history.recommendations)
    if recommendation is not None:
        recommendations.append(ReplicaRecommendation(time=now, replicas=recommendation))
    events = list(history.scale_events)
    last_scale_time = history.last_scale_time
    if spec.mode is AutoscalingMode.ACTIVE and desired_replicas != current_replicas:
        events.append(ScaleEvent(time=now, from_replicas=current_replicas, to_replicas=desired_replicas))
        last_scale_time = now
    longest_window = max(spec.scale_up.stabilization_seconds, spec.scale_down.stabilization_seconds)
    longest_period = max(
        policy.period_seconds for policy in (*spec.scale_up.policies, *spec.scale_down.policies)
    )
    return AutoscalingHistory(
        recommendations=prune_recommendations(recommendations, now=now, keep_seconds=longest_window),
        scale_events=prune_scale_events(events, now=now, keep_seconds=longest_period),
        consecutive_failures=consecutive_failures,
        last_scale_time=last_scale_time,
    )


# ---- words ----------------------------------------------------------------------------------------


def _bounded_ceil(value: float) -> int:
    """Ceiling into [0, MAX_REPLICAS_PER_METRIC], ignoring float noise (0.3 / 0.1 is 3, not 4)."""
    # A huge value over a tiny target overflows to +-Inf; bound before converting to int.
    if value >= MAX_REPLICAS_PER_METRIC:
        return MAX_REPLICAS_PER_METRIC
    if value <= 0:
        return 0
    return math.ceil(round(value, 9))


def _number(value: float) -> str:
    """A metric value for humans: ``412.0``, ``0.35``, ``1.5e+06``."""
    text = f"{value:.6g}"
    return text if any(char in text for char in ".en") else f"{text}.0"


def _replicas(count: int) -> str:
    return f"{count} replica" if count == 1 else f"{count} replicas"
