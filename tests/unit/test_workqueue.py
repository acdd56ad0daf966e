"""The work queue collapses bursts, never runs a key twice at once, and retries with backoff."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from typing import Any

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


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer instead of sleeping.

    So a test observes the delays the queue really waits, in the loop's own
    time, and a five-minute backoff takes no wall-clock time.
    """

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        select = self._selector.select  # type: ignore[attr-defined]

        def select_without_waiting(timeout: float | None = None) -> list[Any]:
            events: list[Any] = select(0)
            if not events and timeout:
                self._now += timeout
            return events

        self._selector.select = select_without_waiting  # type: ignore[attr-defined]

    def time(self) -> float:
        return self._now


def in_virtual_time(main: Callable[[asyncio.AbstractEventLoop], Coroutine[Any, Any, None]]) -> None:
    loop = VirtualClockLoop()
    try:
        loop.run_until_complete(main(loop))
    finally:
        loop.close()


async def run_workers_until(  # type: ignore[no-untyped-def]
    loop: asyncio.AbstractEventLoop, queue: WorkQueue, reconcile, *, until: float, workers: int = 2
) -> None:
    tasks = [loop.create_task(queue.run_worker(reconcile)) for _ in range(workers)]
    await asyncio.sleep(until - loop.time())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_failures_are_retried_with_growing_backoff() -> None:
    """The delays between attempts are the ones the log announces (in loop time)."""
    attempts: list[float] = []

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        queue = WorkQueue(base_backoff=0.01, max_backoff=0.04)

        async def reconcile(key: Key) -> None:
            attempts.append(loop.time())
            if len(attempts) < 5:
                raise RuntimeError("apiserver said no")

        queue.add(SHOP)
        await run_workers_until(loop, queue, reconcile, until=10)

    in_virtual_time(main)
    assert len(attempts) == 5, "retried until it succeeded, then stopped"
    waits = [round(b - a, 6) for a, b in itertools.pairwise(attempts)]
    assert waits == [0.01, 0.02, 0.04, 0.04], "doubling, capped at max_backoff"


def test_events_during_a_backoff_do_not_run_the_key_early() -> None:
    """Child events, our own status writes and the resync wait for the retry (issue 15, item 5).

    Failed before: every event re-ran the key at once, so a namespace being
    deleted produced eight tracebacks in 0.4 s while the log said "retrying in 1s ... 64s".
    """
    attempts: list[float] = []

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        queue = WorkQueue(base_backoff=0.5, max_backoff=300)

        async def reconcile(key: Key) -> None:
            attempts.append(loop.time())
            queue.add(key)  # our own status write comes back as an event while we run
            raise RuntimeError("forbidden")

        async def child_events() -> None:
            while True:
                queue.add(SHOP)
                await asyncio.sleep(0.05)

        events = loop.create_task(child_events())
        queue.add(SHOP)
        await run_workers_until(loop, queue, reconcile, until=60)
        events.cancel()

    in_virtual_time(main)
    waits = [round(b - a, 3) for a, b in itertools.pairwise(attempts)]
    assert waits == [0.5, 1, 2, 4, 8, 16], f"attempts at {attempts}"


def test_a_new_generation_runs_at_once_but_the_backoff_keeps_growing() -> None:
    attempts: list[float] = []

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        queue = WorkQueue(base_backoff=1, max_backoff=300)

        async def reconcile(key: Key) -> None:
            attempts.append(loop.time())
            raise RuntimeError("forbidden")

        async def user() -> None:
            queue.add(SHOP, generation=1)
            await asyncio.sleep(4.5)  # attempts at 0, 1, 3: now waiting until 7
            queue.add(SHOP, generation=1)  # a status-only event: held
            queue.add(SHOP, generation=2)  # the user edits the spec: runs now
            await asyncio.sleep(1)  # waiting until 12.5
            queue.add(SHOP, generation=2)  # held
            queue.add(SHOP, generation=1)  # deleted and created again under the same name: runs now

        loop.create_task(user())
        await run_workers_until(loop, queue, reconcile, until=20)

    in_virtual_time(main)
    assert [round(t, 3) for t in attempts] == [0, 1, 3, 4.5, 5.5]


def test_forget_drops_a_pending_backoff() -> None:
    attempts: list[float] = []

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        queue = WorkQueue(base_backoff=1)

        async def reconcile(key: Key) -> None:
            attempts.append(loop.time())
            raise RuntimeError("forbidden")

        queue.add(SHOP, generation=1)
        workers = loop.create_task(run_workers_until(loop, queue, reconcile, until=30))
        await asyncio.sleep(0.5)
        queue.forget(SHOP)  # the backend was deleted
        await workers

    in_virtual_time(main)
    assert attempts == [0]


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


def test_the_earliest_requeue_wins() -> None:
    """A pass asking to look again sooner than a pending requeue is not held back by it (a
    failover polls its fencing every 0.25 s after a pass that asked for 1 s); a later one
    does not postpone the earlier."""
    attempts: list[float] = []

    async def main(loop: asyncio.AbstractEventLoop) -> None:
        queue = WorkQueue()
        delays = iter([1.0, 0.25, 5.0])

        async def reconcile(key: Key) -> float | None:
            attempts.append(loop.time())
            return next(delays, None)

        async def events() -> None:
            await asyncio.sleep(0.1)
            queue.add(SHOP)  # a pod event: runs now, and asks for 0.25 s while 1 s is pending
            await asyncio.sleep(0.05)
            queue.add(SHOP)  # another: asks for 5 s while 0.25 s is pending

        queue.add(SHOP)
        loop.create_task(events())
        await run_workers_until(loop, queue, reconcile, until=10)

    in_virtual_time(main)
    assert [round(t, 3) for t in attempts] == [0, 0.1, 0.15, 0.35]
