"""The running operator: API client, work queue, workers and periodic resync.

Built once at startup and kept in Kopf's memo (the gafaelfawr pattern), so
nothing lives in module globals and tests can build one of their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf
from prometheus_client import start_http_server

from sbo_operator.autoscaler.scheduler import AutoscalerScheduler
from sbo_operator.builders.labels import MANAGED_BY, MANAGED_BY_LABEL
from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.reconcile import Reconciler
from sbo_operator.settings import OperatorSettings
from sbo_operator.snapshot import Snapshot
from sbo_operator.workqueue import Key, WorkQueue

log = logging.getLogger(__name__)

MANAGED_BY_SELECTOR = {MANAGED_BY_LABEL: MANAGED_BY}


@dataclasses.dataclass(frozen=True)
class ChildResource:
    group: str
    version: str
    plural: str
    kind: str

    @property
    def index(self) -> str:
        return f"children_{self.plural}"


# Every kind the operator creates; each gets a watch, an index and RBAC.
CHILD_RESOURCES = (
    ChildResource("apps", "v1", "deployments", "Deployment"),
    ChildResource("apps", "v1", "statefulsets", "StatefulSet"),
    ChildResource("", "v1", "services", "Service"),
    ChildResource("", "v1", "configmaps", "ConfigMap"),
    ChildResource("", "v1", "secrets", "Secret"),
    ChildResource("", "v1", "serviceaccounts", "ServiceAccount"),
    ChildResource("batch", "v1", "jobs", "Job"),
    ChildResource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ChildResource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    ChildResource("networking.k8s.io", "v1", "ingresses", "Ingress"),
)


class Runtime:
    def __init__(
        self,
        settings: OperatorSettings,
        *,
        indices: Mapping[str, kopf.Index[Key, dict[str, Any]]],
        kube: Kube,
        metrics: OperatorMetrics,
    ) -> None:
        self.settings = settings
        self.indices = indices
        self.kube = kube
        self.metrics = metrics
        self.queue = WorkQueue()
        self._tasks: list[asyncio.Task[None]] = []
        self.autoscaler = AutoscalerScheduler(
            kube=kube, settings=settings, metrics=metrics, on_report=self.queue.add
        )
        self.reconciler = Reconciler(
            kube=kube,
            metrics=metrics,
            autoscaler=self.autoscaler,
            snapshots=self.snapshot,
            images=settings.data_service_images,
        )

    @classmethod
    async def start(
        cls, settings: OperatorSettings, *, indices: Mapping[str, kopf.Index[Key, dict[str, Any]]]
    ) -> Runtime:
        metrics = OperatorMetrics.create()
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr="0.0.0.0", registry=metrics.registry)  # noqa: S104
        kube = await Kube.connect(
            field_manager=settings.field_manager, connections=settings.api_threads, metrics=metrics
        )
        return cls(settings, indices=indices, kube=kube, metrics=metrics)

    def ensure_workers(self) -> None:
        """Start the reconcile workers, from the first event handler.

        Not from the startup handler: Kopf sets up the posting of Events for
        its watches, and tasks inherit the context they are created in.
        """
        if self._tasks:
            return
        for number in range(self.settings.workers):
            self._tasks.append(
                asyncio.create_task(
                    self.queue.run_worker(self.reconciler.reconcile), name=f"reconcile-worker-{number}"
                )
            )
        self._tasks.append(asyncio.create_task(self._resync_forever(), name="resync"))
        self._tasks.append(asyncio.create_task(self.autoscaler.run(), name="autoscaler"))
        log.info("started %d reconcile workers", self.settings.workers)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.autoscaler.close()
        await self.kube.close()

    def forget(self, key: Key) -> None:
        self.queue.forget(key)
        self.autoscaler.forget(key)
        self.reconciler.forget(key)

    def snapshot(self, key: Key) -> Snapshot | None:
        """The backend and its children as the watches last saw them, or None if it is gone."""
        backends = self.indices["backends"]
        if key not in backends:
            return None
        backend = next(iter(backends[key]))
        children: dict[tuple[str, str], dict[str, Any]] = {}
        for resource in CHILD_RESOURCES:
            index = self.indices[resource.index]
            if key in index:
                for child in index[key]:
                    children[(child["kind"], child["metadata"]["name"])] = child
        return Snapshot(backend=backend, children=children)

    async def _resync_forever(self) -> None:
        """Level-triggered safety net: look at every backend now and then, even without events."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.settings.resync_seconds)
            for key in list(self.indices["backends"]):
                self.queue.add(key)
            self.metrics.queue_depth.set(len(self.queue))
            log.debug("resync enqueued %d backends after %.0fs", len(self.queue), time.monotonic() - started)
