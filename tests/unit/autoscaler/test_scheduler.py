"""AutoscalerScheduler: it follows the registry's autoscaling targets, scales through the spec,
reports a decision once, and drops a target whose autoscaling was removed.

kmock plays both Prometheus (``/api/v1/query``) and the apiserver (the spec patch).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest

from sbo_operator.autoscaler.scheduler import AutoscalerScheduler
from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.settings import OperatorSettings
from sbo_operator.workqueue import Key
from tests.unit.conftest import kopf_events, writes
from tests.unit.factories import edited, example_body, parse

pytestmark = [pytest.mark.unit, pytest.mark.kmock(cls=kmock.KubernetesScaffold)]

KEY = Key("demo", "shop")
SPEC_PATH = "/apis/sbo.dev/v1alpha1/namespaces/demo/scalablebackends/shop"
RPS_412 = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "412"]}]},
}


def autoscaled_body(prometheus_url: str) -> dict[str, Any]:
    def autoscale_api(spec: dict[str, Any]) -> None:
        spec["prometheus"] = {"url": prometheus_url, "pollSeconds": 3600}
        spec["api"]["autoscaling"] = {
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [
                {"name": "rps", "query": "sum(rate(http_requests_total[1m]))", "targetPerReplica": 50}
            ],
        }

    return edited(example_body(), autoscale_api)


@pytest.fixture
async def scheduler(
    kube: Kube, metrics: OperatorMetrics
) -> AsyncIterator[tuple[AutoscalerScheduler, list[Key], asyncio.Queue[Any]]]:
    """A running scheduler, the keys it reported, and the events it posted."""
    reported: list[Key] = []
    scheduler = AutoscalerScheduler(
        kube=kube, settings=OperatorSettings(), metrics=metrics, on_report=reported.append
    )
    with kopf_events() as events:
        loop = asyncio.create_task(scheduler.run())
    yield scheduler, reported, events
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    await scheduler.close()


async def wait_for(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def scale_up_once(
    apiserver: kmock.KubernetesScaffold, autoscaler: AutoscalerScheduler, reported: list[Key]
) -> None:
    """Track an api autoscaled on rps, with Prometheus answering 412: the first poll scales up."""
    apiserver["/api/v1/query"] << RPS_412
    apiserver[kmock.method.PATCH] << {
        "apiVersion": "sbo.dev/v1alpha1",
        "kind": "ScalableBackend",
        "metadata": {},
    }
    body = autoscaled_body(str(apiserver.url).rstrip("/"))
    autoscaler.track(KEY, parse(body), body)
    await wait_for(lambda: reported)


async def test_a_tracked_target_is_polled_scaled_through_the_spec_and_reported(
    apiserver: kmock.KubernetesScaffold,
    scheduler: tuple[AutoscalerScheduler, list[Key], asyncio.Queue[Any]],
) -> None:
    autoscaler, reported, events = scheduler
    await scale_up_once(apiserver, autoscaler, reported)

    kubernetes_writes = [(verb, path) for verb, path in writes(apiserver) if path != "/api/v1/query"]
    assert kubernetes_writes == [("PATCH", SPEC_PATH)], "replicas change through spec.api.replicas only"
    [patch] = [json.loads(r.text) for r in apiserver if r.url.path == SPEC_PATH]
    assert set(patch) == {"spec"}
    assert set(patch["spec"]) == {"api"}
    assert patch["spec"]["api"]["replicas"] > 2
    assert set(autoscaler.reports(KEY)) == {"api"}, "only the autoscaled component reports"
    scaled = events.get_nowait()
    assert (scaled.type, scaled.reason) == ("Normal", "Scaled")
    assert scaled.message.startswith("api: ")

    # Autoscaling removed from the spec: the target goes, and the status is recomputed without it.
    reported.clear()
    autoscaler.track(KEY, parse(example_body()), example_body())
    assert reported == [KEY]
    assert autoscaler.reports(KEY) == {}


async def test_forget_drops_every_target_of_the_backend(
    apiserver: kmock.KubernetesScaffold,
    scheduler: tuple[AutoscalerScheduler, list[Key], asyncio.Queue[Any]],
) -> None:
    autoscaler, reported, _ = scheduler
    await scale_up_once(apiserver, autoscaler, reported)

    autoscaler.forget(KEY)
    assert autoscaler.reports(KEY) == {}
