"""Pure helpers turning a decision into the inputs of the autoscaler's status conditions.

Each helper returns the condition's status, a CamelCase reason and a message; the reconciler
adds the timestamps and writes them.
"""

from __future__ import annotations

from sbo_operator.api.autoscaling import AutoscalingMode
from sbo_operator.api.conditions import ConditionState, ConditionStatus, ConditionType, Reason
from sbo_operator.autoscaler.decide import Decision, DecisionBasis, ScalingLimit

__all__ = [
    "autoscaling_active_condition",
    "autoscaling_conditions",
    "metrics_unavailable_condition",
    "scaling_limited_condition",
]


def autoscaling_active_condition(decision: Decision) -> ConditionState:
    """True while the autoscaler computes replicas from metrics and applies them.

    False in DryRun, while every metric fails (holding), and while the fallback applies.
    """
    kind = ConditionType.AUTOSCALING_ACTIVE
    if decision.mode is AutoscalingMode.DRY_RUN:
        return ConditionState(
            kind,
            ConditionStatus.FALSE,
            Reason.DRY_RUN,
            f"dry run, replicas are never changed; would run {decision.desired_replicas}: {decision.reason}",
        )
    if decision.basis is DecisionBasis.HOLD:
        return ConditionState(kind, ConditionStatus.FALSE, Reason.FAILED_GET_METRICS, decision.reason)
    if decision.basis is DecisionBasis.FALLBACK:
        return ConditionState(kind, ConditionStatus.FALSE, Reason.FALLBACK_ACTIVE, decision.reason)
    if decision.basis is DecisionBasis.OUT_OF_RANGE:
        return ConditionState(kind, ConditionStatus.TRUE, Reason.REPLICAS_OUT_OF_RANGE, decision.reason)
    return ConditionState(kind, ConditionStatus.TRUE, Reason.VALID_METRIC_FOUND, decision.reason)


def scaling_limited_condition(decision: Decision) -> ConditionState:
    """True when min/max or a rate policy kept the replicas from what the metrics asked."""
    kind = ConditionType.SCALING_LIMITED
    if decision.limit is ScalingLimit.NONE:
        return ConditionState(
            kind, ConditionStatus.FALSE, ScalingLimit.NONE, "the desired replicas are within range"
        )
    return ConditionState(kind, ConditionStatus.TRUE, decision.limit, decision.reason)


def metrics_unavailable_condition(decision: Decision) -> ConditionState:
    """True when a query failed; the message carries Prometheus's own error text.

    The reason is the first failure's kind (e.g. ``QueryError``, ``Timeout``, ``EmptyResult``).
    """
    kind = ConditionType.METRICS_UNAVAILABLE
    failed = decision.failed_metrics
    if not failed:
        return ConditionState(
            kind,
            ConditionStatus.FALSE,
            Reason.METRICS_AVAILABLE,
            f"all {len(decision.metrics)} metrics returned a value",
        )
    first_error = failed[0].error
    assert first_error is not None
    # No count of failed polls: the message stays the same for a whole outage, so the status
    # is written when the failure begins, not on every poll. /metrics has the count.
    message = "; ".join(f"{metric.name}: {metric.error}" for metric in failed)
    return ConditionState(kind, ConditionStatus.TRUE, first_error.kind, message)


def autoscaling_conditions(decision: Decision) -> tuple[ConditionState, ...]:
    """All three conditions for one decision, in a stable order."""
    return (
        autoscaling_active_condition(decision),
        scaling_limited_condition(decision),
        metrics_unavailable_condition(decision),
    )
