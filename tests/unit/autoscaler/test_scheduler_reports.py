"""During a long Prometheus outage the scheduler reports (asks for a status write) only on transitions.

Issue 15, item 11: the count of failed polls made every poll a report, i.e. a status
write, for the whole outage. The count is on /metrics instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from kopf._core.engines import posting

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.autoscaler import MetricError, MetricErrorKind, MetricOutcome, MetricSample
from sbo_operator.autoscaler.scheduler import AutoscalerScheduler
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.settings import OperatorSettings
from sbo_operator.workqueue import Key

pytestmark = pytest.mark.unit

SHOP = Key("demo", "shop")
UNREACHABLE: dict[str, MetricOutcome] = {
    "rps": MetricError(MetricErrorKind.CONNECTION_ERROR, "cannot reach http://prometheus:9090")
}
POLLS = 40


class SpecPatches:
    """The one write the autoscaler makes itself: spec.<component>.replicas."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch_spec(self, body: dict[str, Any], patch: dict[str, Any]) -> None:
        self.patches.append(patch)


def backend_body(**autoscaling: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sbo.dev/v1alpha1",
        "kind": "ScalableBackend",
        "metadata": {"name": "shop", "namespace": "demo", "uid": "uid-1", "generation": 1},
        "spec": {
            "image": "sbo-sample-app:0.1.0",
            "api": {
                "replicas": 3,
                "autoscaling": {
                    "minReplicas": 1,
                    "maxReplicas": 6,
                    "metrics": [{"name": "rps", "query": "sum(x)", "targetPerReplica": 10}],
                    **autoscaling,
                },
            },
            "redis": {"enabled": False},
            "postgres": {"enabled": False},
        },
    }


async def poll_many(
    body: dict[str, Any], outcomes: list[dict[str, MetricOutcome]]
) -> tuple[list[int], SpecPatches, OperatorMetrics]:
    """Poll once per outcome; return the polls (1-based) after which a status write was asked for."""
    # Kopf's event queue, as the running operator has it (the fallback posts a Scaled event).
    posting.event_queue_var.set(asyncio.Queue())
    posting.event_queue_loop_var.set(asyncio.get_running_loop())
    posting.settings_var.set(kopf.OperatorSettings())
    reports: list[Key] = []
    kube = SpecPatches()
    metrics = OperatorMetrics.create()
    scheduler = AutoscalerScheduler(
        kube=kube,  # type: ignore[arg-type]
        settings=OperatorSettings(),
        metrics=metrics,
        on_report=reports.append,
    )
    scheduler.track(SHOP, ScalableBackend.from_body(body), body)
    target = scheduler._targets[(SHOP, "api")]
    reported_after: list[int] = []
    for number, outcome in enumerate(outcomes, start=1):
        before = len(reports)
        await scheduler._decide(target, outcome)  # one poll, without the HTTP fetch
        if len(reports) > before:
            reported_after.append(number)
    return reported_after, kube, metrics


def failed_polls(metrics: OperatorMetrics) -> float | None:
    return metrics.registry.get_sample_value(
        "sbo_autoscaler_consecutive_failed_polls", {"namespace": "demo", "name": "shop", "component": "api"}
    )


async def test_outage_without_fallback_is_reported_when_it_begins_and_ends() -> None:
    """Failed before: reported after every one of the 40 failed polls."""
    healthy: dict[str, MetricOutcome] = {"rps": MetricSample(30.0)}
    reported_after, kube, metrics = await poll_many(
        backend_body(), [healthy, *[UNREACHABLE] * POLLS, healthy]
    )
    assert reported_after == [1, 2, POLLS + 2], "first decision, failure begins, failure ends"
    assert kube.patches == []
    assert failed_polls(metrics) == 0, "a full success resets the running count"


async def test_outage_with_fallback_is_reported_when_the_fallback_starts() -> None:
    reported_after, kube, metrics = await poll_many(
        backend_body(fallback={"afterFailures": 3, "replicas": 5}), [*[UNREACHABLE] * POLLS]
    )
    # Hold from poll 1, the fallback at poll 3 (scaling 3 -> 5), and poll 4 sees 5 replicas.
    assert reported_after == [1, 3, 4]
    assert kube.patches == [{"spec": {"api": {"replicas": 5}}}], "the fallback is applied once"
    assert failed_polls(metrics) == POLLS, "the running count is on /metrics"
