"""The bench's writes to the API: the official asyncio client and the operator's own I/O layer.

ScalableBackends are created with the official client (the floor needs the uid they get).
The floor's children go through `sbo_operator.kube.Kube`, as the operator's do: server-side
apply under the operator's field manager, Secrets created. So the two phases differ only in
the control loop, not in the client. Every request waits for the concurrency budget (the
operator's connection count); throttling and 5xx answers are retried with backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.dynamic import DynamicClient

from sbo_operator.api.v1alpha1 import GROUP, VERSION
from sbo_operator.builders import Manifest
from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 5
BACKEND_API_VERSION = f"{GROUP}/{VERSION}"

T = TypeVar("T")


class BenchClient:
    """Writes within a budget of concurrent requests, through the official client and `Kube`."""

    def __init__(self, dynamic: DynamicClient, *, budget: int, field_manager: str) -> None:
        self.dynamic = dynamic
        self.kube = Kube(
            dynamic.client, dynamic, field_manager=field_manager, metrics=OperatorMetrics.create()
        )
        self._budget = asyncio.Semaphore(budget)

    async def discover(self, kinds: set[tuple[str, str]]) -> None:
        """Look the kinds up once, before a clock starts: discovery is not the cluster's work."""
        for api_version, kind in sorted(kinds | {(BACKEND_API_VERSION, "ScalableBackend")}):
            await self.dynamic.resources.get(api_version=api_version, kind=kind)

    async def create_backend(self, manifest: Manifest) -> str:
        """POST one ScalableBackend; returns its uid."""
        resource = await self.dynamic.resources.get(api_version=BACKEND_API_VERSION, kind="ScalableBackend")
        namespace = manifest["metadata"]["namespace"]
        created = await self._retrying(
            lambda: self.dynamic.create(resource, body=manifest, namespace=namespace)
        )
        return str(created.metadata.uid)

    async def create(self, manifest: Manifest) -> None:
        """Create (a generated Secret: never applied, as the operator does it)."""
        await self._retrying(lambda: self.kube.create(manifest))

    async def apply(self, manifest: Manifest) -> None:
        """Server-side apply under the operator's field manager, without force."""
        await self._retrying(lambda: self.kube.apply(manifest, force=False))

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(ATTEMPTS):
            last = attempt == ATTEMPTS - 1
            async with self._budget:
                try:
                    return await call()
                except ApiException as error:
                    if error.status not in RETRIED_STATUSES or last:
                        raise
                except (aiohttp.ClientError, TimeoutError):
                    if last:
                        raise
            await asyncio.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")
