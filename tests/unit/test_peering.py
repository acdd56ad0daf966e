"""Peering: distinct priorities by start time, Kopf's pause state found, and the runtime following it.

`find_kopf_pause()` reads a Kopf internal (there is no public hook): the test that runs
Kopf's own spawn_tasks() fails if Kopf renames or moves what it reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kmock
import kopf
import pytest
from kopf._cogs.aiokits.aiotoggles import ToggleSet

from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.peering import PauseSignal, find_kopf_pause, start_time_priority
from sbo_operator.runtime import CHILD_RESOURCES, Runtime
from sbo_operator.settings import OperatorSettings
from sbo_operator.snapshot import compact
from sbo_operator.workqueue import Key
from tests.unit.conftest import BACKEND_ECHO, writes
from tests.unit.factories import example_body

pytestmark = [pytest.mark.unit, pytest.mark.kmock(cls=kmock.KubernetesScaffold)]

KEY = Key("demo", "shop")
STATUS_PATH = "/apis/sbo.dev/v1alpha1/namespaces/demo/scalablebackends/shop/status"
KOPF_DEV_PRIORITY = 666  # `kopf run --dev`


def test_an_earlier_start_has_the_higher_priority_and_no_two_starts_tie() -> None:
    started = 1_796_000_000_000_000_000  # ns, in 2026
    assert start_time_priority(started) > start_time_priority(started + 1_000)
    assert start_time_priority(started) != start_time_priority(started + 1_000), "a tie pauses both"
    assert start_time_priority(started) < KOPF_DEV_PRIORITY, "an operator run with --dev still wins"


async def test_kopfs_pause_state_is_found_from_a_startup_handler() -> None:
    registry = kopf.OperatorRegistry()
    found: asyncio.Future[PauseSignal] = asyncio.get_running_loop().create_future()

    @kopf.on.startup(registry=registry)
    async def find(**_: Any) -> None:
        found.set_result(find_kopf_pause())

    tasks = await kopf.spawn_tasks(registry=registry, clusterwide=True, standalone=True)
    try:
        paused = await asyncio.wait_for(found, timeout=10)
        assert isinstance(paused, ToggleSet)
        assert not paused.is_on()
        # The very toggle set Kopf's watchers block on while peering pauses the operator.
        orchestrating = next(t for t in asyncio.all_tasks() if t.get_name() == "multidimensional multitasker")
        orchestrator: Any = orchestrating.get_coro().cr_frame.f_locals["coro"]  # type: ignore[union-attr]
        assert orchestrator.cr_frame.f_locals["operator_paused"] is paused
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def pause() -> ToggleSet:
    return ToggleSet(any)


@pytest.fixture
async def runtime(kube: Kube, metrics: OperatorMetrics, pause: ToggleSet) -> AsyncIterator[Runtime]:
    invalid = example_body()
    invalid["spec"]["api"]["replicas"] = -1  # each reconcile writes exactly one status patch
    indices: dict[str, Any] = {"backends": {KEY: [compact(invalid)]}}
    indices.update({resource.index: {} for resource in CHILD_RESOURCES})
    settings = OperatorSettings(resync_seconds=3600, peering=True)
    runtime = Runtime(settings, indices=indices, kube=kube, metrics=metrics, pause=pause)
    yield runtime
    for task in runtime._tasks:
        task.cancel()
    await asyncio.gather(*runtime._tasks, return_exceptions=True)


async def settle() -> None:
    await asyncio.sleep(0.3)


def reconciles(metrics: OperatorMetrics) -> float:
    return metrics.registry.get_sample_value("sbo_reconciles_total", {"result": "ok"}) or 0.0


async def test_the_runtime_works_only_while_kopf_has_not_paused_it(
    apiserver: kmock.KubernetesScaffold, runtime: Runtime, pause: ToggleSet, metrics: OperatorMetrics
) -> None:
    apiserver[kmock.method.PATCH] << BACKEND_ECHO
    conflict = await pause.make_toggle(True, name="a peer with a higher priority")

    runtime.ensure_workers()
    runtime.queue.add(KEY)  # as Kopf's handler does, from an event that slipped in
    runtime.child_changed(KEY)
    await settle()
    assert reconciles(metrics) == 0, "paused from the start: nothing reconciled"
    assert writes(apiserver) == []
    assert metrics.registry.get_sample_value("sbo_active") == 0

    await conflict.turn_to(False)
    await settle()
    assert reconciles(metrics) == 1, "active: the queued key reconciled"
    assert writes(apiserver) == [("PATCH", STATUS_PATH)]
    assert metrics.registry.get_sample_value("sbo_active") == 1

    await conflict.turn_to(True)
    await settle()
    runtime.queue.add(KEY)
    await settle()
    assert reconciles(metrics) == 1, "paused again: no worker takes a key"
    assert not runtime.active
    assert metrics.registry.get_sample_value("sbo_active") == 0

    await conflict.turn_to(False)
    await settle()
    assert reconciles(metrics) == 2, "resumed: the waiting key reconciled"

    await conflict.turn_to(True)
    await settle()
    runtime.child_changed(KEY)
    assert len(runtime.queue) == 0, "a child's event while paused does not reach the queue"
    await conflict.turn_to(False)
    await settle()
    assert reconciles(metrics) == 3, "resumed: every known backend enqueued, though no event came"
