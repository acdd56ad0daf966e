"""Which objects are ready, followed as `kubectl wait` does: one LIST, then a WATCH.

That costs the API server one long request per resource instead of a LIST of every object
each second. Requests go through the official asyncio client.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any

import aiohttp
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.dynamic import DynamicClient
from kubernetes.aio.watch import Watch

from bench.reconcile.workload import key_of
from devkit.measure import say
from devkit.process import WaitTimeout, wait_until_async
from sbo_operator.progress import deployment_progress, job_state, statefulset_progress

Predicate = Callable[[Mapping[str, Any]], bool]
PROGRESS_EVERY = 10.0
WATCH_SECONDS = 60


# ---- readiness -------------------------------------------------------------------------------------


def backend_ready(obj: Mapping[str, Any]) -> bool:
    """`kubectl wait --for=condition=Ready`, and the status is about the current generation."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())


def deployment_ready(obj: Mapping[str, Any]) -> bool:
    return deployment_progress(dict(obj), name=obj["metadata"]["name"]).ready


def statefulset_ready(obj: Mapping[str, Any]) -> bool:
    return statefulset_progress(dict(obj), name=obj["metadata"]["name"]).ready


def job_complete(obj: Mapping[str, Any]) -> bool:
    return job_state(dict(obj)) == "Complete"


class ReadyTracker:
    """Which objects of one kind are ready, kept current by a LIST and then a WATCH."""

    def __init__(
        self,
        dynamic: DynamicClient,
        api_version: str,
        kind: str,
        ready: Predicate,
        *,
        label_selector: str | None = None,
    ) -> None:
        self.dynamic = dynamic
        self.api_version, self.kind = api_version, kind
        self.is_ready = ready
        self.label_selector = label_selector
        self.ready: set[str] = set()
        self.present: set[str] = set()
        self.synced = asyncio.Event()

    def _see(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        key = key_of(obj)
        if deleted:
            self.present.discard(key)
            self.ready.discard(key)
            return
        self.present.add(key)
        if self.is_ready(obj):
            self.ready.add(key)
        else:
            self.ready.discard(key)

    async def _list(self, resource: Any) -> str:
        # serialize=False: plain JSON, not ResourceInstance wrappers (thousands of objects at N=1000).
        response = await self.dynamic.get(resource, label_selector=self.label_selector, serialize=False)
        try:
            listed = await response.json()
        finally:
            response.release()
        self.ready.clear()
        self.present.clear()
        for item in listed.get("items") or ():
            self._see(item)
        self.synced.set()
        version: str = listed["metadata"]["resourceVersion"]
        return version

    async def _watch(self, resource: Any, version: str) -> str | None:
        """Follow events from `version` for a while; returns where to resume, or None to list again."""
        watcher = Watch()
        try:
            async for event in watcher.stream(
                functools.partial(self.dynamic.get, resource),
                label_selector=self.label_selector,
                resource_version=version,
                timeout_seconds=WATCH_SECONDS,
                serialize=False,
            ):
                if event["type"] != "BOOKMARK":
                    self._see(event["raw_object"], deleted=event["type"] == "DELETED")
        except ApiException as error:
            if error.status == 410:  # Gone: the version is too old
                return None
            raise
        finally:
            await watcher.close()
        return str(watcher.resource_version or version)

    async def run(self) -> None:
        """Forever; the phase cancels it."""
        resource = await self.dynamic.resources.get(api_version=self.api_version, kind=self.kind)
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._list(resource)
                version = await self._watch(resource, version)
            except (ApiException, aiohttp.ClientError, TimeoutError, ValueError) as error:
                # e.g. a 429 while a just-started API server is still busy with its own start-up
                problem = (
                    f"HTTP {error.status} {error.reason}" if isinstance(error, ApiException) else repr(error)
                )
                say(f"watch of {self.kind}: {problem}; listing again")
                version = None
                await asyncio.sleep(1)


@contextlib.asynccontextmanager
async def background(*coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run coroutines as tasks for the duration of the block; cancel them on the way out."""
    tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def converge(
    done: Callable[[], bool],
    report: Callable[[float], Awaitable[None]],
    *,
    started: float,
    deadline: float,
    what: str,
) -> bool:
    """Wait (the kit's wait) for a cheap in-memory check; report progress every 10 s. False on timeout."""
    next_report = time.monotonic() + PROGRESS_EVERY

    async def done_or_report() -> bool:
        nonlocal next_report
        if done():
            return True
        now = time.monotonic()
        if now >= next_report:
            await report(now - started)
            next_report += PROGRESS_EVERY
        return False

    try:
        await wait_until_async(done_or_report, max(0.0, deadline - time.monotonic()), what, interval=0.1)
    except WaitTimeout:
        return False
    return True
