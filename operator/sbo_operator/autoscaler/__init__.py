"""The autoscaler: a pure ``decide()`` plus a thin Prometheus fetch.

``decide()`` turns replicas, metric samples, the spec, its memory and ``now`` into a ``Decision``;
``fetch_metric_outcomes()`` asks Prometheus and types every odd answer as a ``MetricError``.
"""

from sbo_operator.autoscaler.conditions import (
    autoscaling_active_condition,
    autoscaling_conditions,
    metrics_unavailable_condition,
    scaling_limited_condition,
)
from sbo_operator.autoscaler.decide import (
    Decision,
    DecisionBasis,
    MetricRecommendation,
    ScalingLimit,
    decide,
)
from sbo_operator.autoscaler.samples import MetricError, MetricErrorKind, MetricOutcome, MetricSample

__all__ = [
    "Decision",
    "DecisionBasis",
    "MetricError",
    "MetricErrorKind",
    "MetricOutcome",
    "MetricRecommendation",
    "MetricSample",
    "ScalingLimit",
    "autoscaling_active_condition",
    "autoscaling_conditions",
    "decide",
    "metrics_unavailable_condition",
    "scaling_limited_condition",
]
