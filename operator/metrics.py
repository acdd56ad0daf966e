"""The operator's own Prometheus metrics, in a registry owned by the process."""

from __future__ import annotations

import dataclasses

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclasses.dataclass(frozen=True)
class OperatorMetrics:
    registry: CollectorRegistry
    reconciles: Counter
    reconcile_errors: Counter
    reconcile_duration: Histogram
    api_writes: Counter
    queue_depth: Gauge
    autoscaler_decisions: Counter

    @classmethod
    def create(cls) -> OperatorMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            reconciles=Counter(
                "sbo_reconciles", "Reconciles of ScalableBackends, by result.", ["result"], registry=registry
            ),
            reconcile_errors=Counter(
                "sbo_reconcile_errors", "Reconciles that failed, by reason.", ["reason"], registry=registry
            ),
            reconcile_duration=Histogram(
                "sbo_reconcile_duration_seconds",
                "Time one reconcile takes.",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                registry=registry,
            ),
            api_writes=Counter(
                "sbo_api_writes",
                "Write requests sent to the Kubernetes API.",
                ["verb", "kind"],
                registry=registry,
            ),
            queue_depth=Gauge("sbo_reconcile_queue_depth", "ScalableBackends waiting.", registry=registry),
            autoscaler_decisions=Counter(
                "sbo_autoscaler_decisions",
                "Autoscaler decisions, by component and direction.",
                ["component", "direction"],
                registry=registry,
            ),
        )
