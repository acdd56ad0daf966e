"""A level-triggered work queue of ScalableBackend keys, like controller-runtime's.

Events only say *which* object to look at; the reconcile reads the current
state itself. So a burst of events for one object collapses into one
reconcile, the same key is never reconciled by two workers at once, and a
key that changes while it is being reconciled is reconciled again after.
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
        self._retry_timers: dict[Key, asyncio.TimerHandle] = {}
        self._base_backoff = base_backoff
        self._max_backoff = max_backoff

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: Key) -> None:
        if key in self._running:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Enqueue later, unless an earlier retry for the key is already pending."""
        if key in self._retry_timers:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._retry_timers.pop(key, None)
            self.add(key)

        self._retry_timers[key] = loop.call_later(delay, fire)

    def forget(self, key: Key) -> None:
        """The object is gone: drop its retries and failure count."""
        self._failures.pop(key, None)
        timer = self._retry_timers.pop(key, None)
        if timer:
            timer.cancel()

    async def run_worker(self, reconcile: Callable[[Key], Awaitable[float | None]]) -> None:
        """Take keys forever. `reconcile` may return seconds after which to look again."""
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._running.add(key)
            try:
                requeue_after = await reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(self._base_backoff * 2 ** (failures - 1), self._max_backoff)
                log.exception("reconcile of %s failed (attempt %d); retrying in %.1fs", key, failures, delay)
                self.add_after(key, delay)
            else:
                self._failures.pop(key, None)
                if requeue_after is not None:
                    self.add_after(key, requeue_after)
            finally:
                self._running.discard(key)
                self._queue.task_done()
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
