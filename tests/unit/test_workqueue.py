"""The work queue collapses bursts, never runs a key twice at once, and retries with backoff."""

from __future__ import annotations

import asyncio

import pytest

from sbo_operator.workqueue import Key, WorkQueue

pytestmark = pytest.mark.unit

SHOP = Key("demo", "shop")


async def run_workers(queue: WorkQueue, reconcile, workers: int = 4, seconds: float = 0.3) -> None:  # type: ignore[no-untyped-def]
    tasks = [asyncio.create_task(queue.run_worker(reconcile)) for _ in range(workers)]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_burst_of_events_collapses_into_one_reconcile() -> None:
    queue = WorkQueue()
    calls: list[Key] = []

    async def reconcile(key: Key) -> None:
        calls.append(key)

    for _ in range(50):
        queue.add(SHOP)
    queue.add(Key("demo", "other"))
    await run_workers(queue, reconcile)
    assert sorted(calls) == sorted([SHOP, Key("demo", "other")])


async def test_key_is_never_reconciled_concurrently_and_reruns_when_dirty() -> None:
    queue = WorkQueue()
    active = 0
    peak = 0
    calls = 0

    async def reconcile(key: Key) -> None:
        nonlocal active, peak, calls
        calls += 1
        active += 1
        peak = max(peak, active)
        if calls == 1:
            queue.add(key)  # an event arrives while we work
        await asyncio.sleep(0.05)
        active -= 1

    queue.add(SHOP)
    await run_workers(queue, reconcile)
    assert peak == 1
    assert calls == 2, "the event during the first reconcile causes exactly one more"


async def test_failures_are_retried_with_growing_backoff() -> None:
    queue = WorkQueue(base_backoff=0.01, max_backoff=0.04)
    requested: list[float] = []
    schedule = queue.add_after

    def recording_add_after(key: Key, delay: float) -> None:
        requested.append(delay)
        schedule(key, delay)

    queue.add_after = recording_add_after  # type: ignore[method-assign]
    calls = 0

    async def reconcile(key: Key) -> None:
        nonlocal calls
        calls += 1
        if calls < 5:
            raise RuntimeError("apiserver said no")

    queue.add(SHOP)
    await run_workers(queue, reconcile, seconds=0.6)
    assert calls == 5, "retried until it succeeded, then stopped"
    assert requested == [0.01, 0.02, 0.04, 0.04], "doubling, capped at max_backoff"


async def test_requeue_after_looks_again_later() -> None:
    queue = WorkQueue()
    calls = 0

    async def reconcile(key: Key) -> float | None:
        nonlocal calls
        calls += 1
        return 0.05 if calls == 1 else None

    queue.add(SHOP)
    await run_workers(queue, reconcile, seconds=0.3)
    assert calls == 2
