"""Pure helpers turning a decision into the inputs of the autoscaler's status conditions.

Each helper returns the condition's status, a CamelCase reason and a message; the reconciler
adds the timestamps and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from sbo_operator.api.autoscaling import AutoscalingMode
from sbo_operator.autoscaler.decide import Decision, DecisionBasis, ScalingLimit

__all__ = [
    "AutoscalingConditionType",
    "ConditionInput",
    "autoscaling_active_condition",
    "autoscaling_conditions",
    "metrics_unavailable_condition",
    "scaling_limited_condition",
]


class AutoscalingConditionType(StrEnum):
    """The autoscaler's vocabulary of conditions."""

    AUTOSCALING_ACTIVE = "AutoscalingActive"
    SCALING_LIMITED = "ScalingLimited"
    METRICS_UNAVAILABLE = "MetricsUnavailable"


@dataclass(frozen=True, slots=True)
class ConditionInput:
    """One condition's type, status, reason and message, without timestamps."""

    type: AutoscalingConditionType
    status: Literal["True", "False"]
    reason: str
    message: str


def autoscaling_active_condition(decision: Decision) -> ConditionInput:
    """True while the autoscaler computes replicas from metrics and applies them.

    False in DryRun, while every metric fails (holding), and while the fallback applies.
    """
    kind = AutoscalingConditionType.AUTOSCALING_ACTIVE
    if decision.mode is AutoscalingMode.DRY_RUN:
        return ConditionInput(
            kind,
            "False",
            "DryRun",
            f"dry run, replicas are never changed; would run {decision.desired_replicas}: {decision.reason}",
        )
    if decision.basis is DecisionBasis.HOLD:
        return ConditionInput(kind, "False", "FailedGetMetrics", decision.reason)
    if decision.basis is DecisionBasis.FALLBACK:
        return ConditionInput(kind, "False", "FallbackActive", decision.reason)
    if decision.basis is DecisionBasis.OUT_OF_RANGE:
        return ConditionInput(kind, "True", "ReplicasOutOfRange", decision.reason)
    return ConditionInput(kind, "True", "ValidMetricFound", decision.reason)


def scaling_limited_condition(decision: Decision) -> ConditionInput:
    """True when min/max or a rate policy kept the replicas from what the metrics asked."""
    kind = AutoscalingConditionType.SCALING_LIMITED
    if decision.limit is ScalingLimit.NONE:
        return ConditionInput(kind, "False", str(ScalingLimit.NONE), "the desired replicas are within range")
    return ConditionInput(kind, "True", str(decision.limit), decision.reason)


def metrics_unavailable_condition(decision: Decision) -> ConditionInput:
    """True when a query failed; the message carries Prometheus's own error text.

    The reason is the first failure's kind (e.g. ``QueryError``, ``Timeout``, ``EmptyResult``).
    """
    kind = AutoscalingConditionType.METRICS_UNAVAILABLE
    failed = decision.failed_metrics
    if not failed:
        return ConditionInput(
            kind, "False", "MetricsAvailable", f"all {len(decision.metrics)} metrics returned a value"
        )
    first_error = failed[0].error
    assert first_error is not None
    # No count of failed polls: the message stays the same for a whole outage, so the status
    # is written when the failure begins, not on every poll. /metrics has the count.
    message = "; ".join(f"{metric.name}: {metric.error}" for metric in failed)
    return ConditionInput(kind, "True", str(first_error.kind), message)


def autoscaling_conditions(decision: Decision) -> tuple[ConditionInput, ...]:
    """All three conditions for one decision, in a stable order."""
    return (
        autoscaling_active_condition(decision),
        scaling_limited_condition(decision),
        metrics_unavailable_condition(decision),
    )
