"""A level-triggered work queue of ScalableBackend keys, like controller-runtime's.

Events only say *which* object to look at; the reconcile reads the current
state itself. So a burst of events for one object collapses into one
reconcile, the same key is never reconciled by two workers at once, and a
key that changes while it is being reconciled is reconciled again after.

A key whose reconcile failed waits out its backoff: events for it (a child
changed, our own status write, the resync, the autoscaler) are held until the
retry, which reads the latest state anyway. Only a new generation of the
ScalableBackend, a spec the user changed, runs it at once; the failure count
is kept until a reconcile succeeds, so the next failure still waits longer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple

log = logging.getLogger(__name__)


class Key(NamedTuple):
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class WorkQueue:
    def __init__(self, *, base_backoff: float = 0.5, max_backoff: float = 300.0) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._dirty: set[Key] = set()  # enqueued while running: run again afterwards
        self._failures: dict[Key, int] = {}
        self._requeue_timers: dict[Key, asyncio.TimerHandle] = {}
        # Keys waiting out a failure backoff, with the generation that failed.
        self._backoffs: dict[Key, tuple[asyncio.TimerHandle, int | None]] = {}
        self._generations: dict[Key, int] = {}  # the generation the latest event reported
        self._base_backoff = base_backoff
        self._max_backoff = max_backoff

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: Key, *, generation: int | None = None) -> None:
        """Look at the key soon. `generation` comes with events of the ScalableBackend itself."""
        if generation is not None:
            self._generations[key] = generation
        if key in self._running:
            self._dirty.add(key)
            return
        backoff = self._backoffs.get(key)
        if backoff is not None:
            timer, failed_generation = backoff
            if not self._is_newer(key, failed_generation):
                return  # held: the retry will see this change
            timer.cancel()
            del self._backoffs[key]
        self._enqueue(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Enqueue after ``delay`` seconds, unless a look at the key is pending sooner.

        The earliest wins, as in client-go's delaying queue: a pass that asks to look again in
        0.25 s is not held back by an earlier pass's 1 s (a failure backoff still holds it)."""
        if key in self._backoffs:
            return
        loop = asyncio.get_running_loop()
        pending = self._requeue_timers.get(key)
        if pending is not None:
            if pending.when() <= loop.time() + delay:
                return
            pending.cancel()

        def fire() -> None:
            self._requeue_timers.pop(key, None)
            self.add(key)

        self._requeue_timers[key] = loop.call_later(delay, fire)

    def forget(self, key: Key) -> None:
        """The object is gone: drop its retries, failure count and generation."""
        self._failures.pop(key, None)
        self._generations.pop(key, None)
        timer = self._requeue_timers.pop(key, None)
        if timer:
            timer.cancel()
        backoff = self._backoffs.pop(key, None)
        if backoff:
            backoff[0].cancel()

    def backoff_delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row: doubling, capped."""
        return float(min(self._base_backoff * 2 ** (failures - 1), self._max_backoff))

    async def run_worker(self, reconcile: Callable[[Key], Awaitable[float | None]]) -> None:
        """Take keys forever. `reconcile` may return seconds after which to look again."""
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._running.add(key)
            generation = self._generations.get(key)
            try:
                requeue_after = await reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = self.backoff_delay(failures)
                log.exception("reconcile of %s failed (attempt %d); retrying in %.1fs", key, failures, delay)
                self._back_off(key, delay, failed_generation=generation)
            else:
                self._failures.pop(key, None)
                if requeue_after is not None:
                    self.add_after(key, requeue_after)
            finally:
                self._running.discard(key)
                self._queue.task_done()
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)  # held if it just failed, unless its spec changed meanwhile

    def _back_off(self, key: Key, delay: float, *, failed_generation: int | None) -> None:
        requeue = self._requeue_timers.pop(key, None)
        if requeue:
            requeue.cancel()

        def retry() -> None:
            self._backoffs.pop(key, None)
            self.add(key)

        timer = asyncio.get_running_loop().call_later(delay, retry)
        self._backoffs[key] = (timer, failed_generation)

    def _is_newer(self, key: Key, failed_generation: int | None) -> bool:
        # Not `>`: a backend deleted and created again under the same name starts at 1.
        latest = self._generations.get(key)
        return latest is not None and failed_generation is not None and latest != failed_generation

    def _enqueue(self, key: Key) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)
