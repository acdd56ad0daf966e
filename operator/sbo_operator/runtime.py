"""The running operator: API client, child informers, work queue, workers and periodic resync.

Built once at startup and kept in Kopf's memo (the gafaelfawr pattern), so
nothing lives in module globals and tests can build one of their own. The
workers take no key before every child informer has listed its kind.

With peering, the runtime works only while Kopf has not paused the operator
(`peering.py`): while paused, no worker, resync or autoscaler runs and the
informers' events do not reach the queue (they keep the child indices warm for
a takeover); on resuming, every known backend is enqueued.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any

import kopf
from prometheus_client import start_http_server

from sbo_operator.autoscaler.scheduler import AutoscalerScheduler
from sbo_operator.builders.labels import COMPONENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL, Component
from sbo_operator.informer import ChildIndex, ChildInformer
from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.peering import PauseSignal
from sbo_operator.postgres_failover import PostgresRoles
from sbo_operator.postgres_monitor import PostgresMonitor
from sbo_operator.reconcile import Reconciler
from sbo_operator.settings import OperatorSettings
from sbo_operator.snapshot import Snapshot, compact_pod, pod_owner_key
from sbo_operator.workqueue import Key, WorkQueue

log = logging.getLogger(__name__)

MANAGED_BY_SELECTOR = {MANAGED_BY_LABEL: MANAGED_BY}
# The server ends each watch after this long; below the API client's 5-minute request timeout.
WATCH_SECONDS = 240


@dataclasses.dataclass(frozen=True)
class ChildResource:
    group: str
    version: str
    plural: str
    kind: str

    @property
    def index(self) -> str:
        return f"children_{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


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


# The PostgreSQL pods: not children (their StatefulSet owns them), but the operator labels them
# with their role and deletes a failed primary's; their own informer and index.
POSTGRES_PODS = ChildResource("", "v1", "pods", "Pod")
POSTGRES_PODS_INDEX = "postgres_pods"


class Runtime:
    def __init__(
        self,
        settings: OperatorSettings,
        *,
        indices: Mapping[str, Mapping[Key, Collection[dict[str, Any]]]],
        kube: Kube,
        metrics: OperatorMetrics,
        informers: Sequence[ChildInformer] = (),
        queue: WorkQueue | None = None,
        pause: PauseSignal | None = None,
    ) -> None:
        self.settings = settings
        self.indices = indices
        self.kube = kube
        self.metrics = metrics
        self.queue = queue if queue is not None else WorkQueue()
        self.informers = tuple(informers)
        self._pause = pause  # Kopf's peering pause; None: always active once started
        self._started = False
        self._activations = 0  # all but the first enqueue every backend
        self.active = False
        self._tasks: list[asyncio.Task[None]] = []
        self._active_tasks: list[asyncio.Task[None]] = []  # workers, resync, autoscaler
        self._informer_tasks: list[asyncio.Task[None]] = []
        self.autoscaler = AutoscalerScheduler(
            kube=kube, settings=settings, metrics=metrics, on_report=self.queue.add
        )
        self.postgres_monitor = PostgresMonitor(
            kube=kube,
            networks=settings.postgres_probe_networks,
            interval_seconds=settings.postgres_probe_seconds,
            on_change=self.child_changed,
            metrics=metrics,
        )
        self.reconciler = Reconciler(
            kube=kube,
            metrics=metrics,
            autoscaler=self.autoscaler,
            snapshots=self.snapshot,
            images=settings.data_service_images,
            operator_pods=settings.operator_pods,
            roles=PostgresRoles(kube=kube, monitor=self.postgres_monitor),
            archive_status_interval=settings.archive_status_interval,
        )

    @classmethod
    async def start(
        cls,
        settings: OperatorSettings,
        *,
        backends: kopf.Index[Key, dict[str, Any]],
        pause: PauseSignal | None = None,
    ) -> Runtime:
        """Connect, and start the child informers: they list while Kopf lists the backends."""
        metrics = OperatorMetrics.create()
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr="0.0.0.0", registry=metrics.registry)  # noqa: S104
        kube = await Kube.connect(
            field_manager=settings.field_manager, connections=settings.api_threads, metrics=metrics
        )
        indices: dict[str, Mapping[Key, Collection[dict[str, Any]]]] = {"backends": backends}
        runtime = cls(settings, indices=indices, kube=kube, metrics=metrics, pause=pause)
        runtime.informers = tuple(
            child_informers(settings, kube=kube, metrics=metrics, on_change=runtime.child_changed)
        )
        for informer in runtime.informers:
            indices[informer.index_name] = informer.index
        runtime.start_informers()
        return runtime

    def child_changed(self, key: Key) -> None:
        """A child of `key` changed: look at it, if this replica works now (else the resume will)."""
        if self.active:
            self.queue.add(key)

    def start_informers(self) -> None:
        for informer in self.informers:
            name = f"informer-{informer.kind}-{informer.namespace or 'all'}"
            self._informer_tasks.append(asyncio.create_task(informer.run(), name=name))

    async def children_synced(self) -> None:
        """Until every child informer has listed its kind once."""
        for informer in self.informers:
            await informer.synced.wait()

    def ensure_workers(self) -> None:
        """Start working, from the first event handler; with peering, only while Kopf lets us.

        Not from the startup handler: Kopf sets up the posting of Events for
        its watches, and tasks inherit the context they are created in. And
        Kopf delivers no event before it has looked at its peers.
        """
        if self._started:
            return
        self._started = True
        if self._pause is None:
            self._activate()
        else:
            self._tasks.append(asyncio.create_task(self._follow_pause(self._pause), name="peering-follower"))

    async def _follow_pause(self, pause: PauseSignal) -> None:
        while True:
            await pause.wait_for(False)
            self._activate()
            await pause.wait_for(True)
            await self._deactivate()

    def _activate(self) -> None:
        """Start the workers, the resync and the autoscaler; on resuming, look at every backend.

        Not on the first activation: Kopf's first events bring every backend anyway.
        Events dropped while paused, and whatever another replica changed, are caught
        up by the resync on resuming.
        """
        self.active = True
        self.metrics.active.set(1)
        if self._activations:
            for key in list(self.indices["backends"]):
                self.queue.add(key)
        self._activations += 1
        for number in range(self.settings.workers):
            self._start_active_task(self._work(), f"reconcile-worker-{number}")
        self._start_active_task(self._resync_forever(), "resync")
        self._start_active_task(self.autoscaler.run(), "autoscaler")
        self._start_active_task(self.postgres_monitor.run(), "postgres-monitor")
        log.info("active: started %d reconcile workers", self.settings.workers)

    async def _deactivate(self) -> None:
        """Kopf paused this replica (a peer works): stop every task that could write."""
        self.active = False
        self.metrics.active.set(0)
        tasks, self._active_tasks = self._active_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = [task for task in self._tasks if task not in tasks]
        self.autoscaler.pause()
        log.info("paused by Kopf peering: another replica works; reconciles and autoscaling stopped")

    def _start_active_task(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._active_tasks.append(task)
        self._tasks.append(task)

    async def _work(self) -> None:
        await self.children_synced()
        await self.queue.run_worker(self.reconciler.reconcile)

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._informer_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
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
        pods_index = self.indices.get(POSTGRES_PODS_INDEX, {})
        pods = {pod["metadata"]["name"]: pod for pod in pods_index[key]} if key in pods_index else {}
        return Snapshot(backend=backend, children=children, pods=pods)

    async def _resync_forever(self) -> None:
        """Level-triggered safety net: look at every backend now and then, even without events."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.settings.resync_seconds)
            for key in list(self.indices["backends"]):
                self.queue.add(key)
            self.metrics.queue_depth.set(len(self.queue))
            log.debug("resync enqueued %d backends after %.0fs", len(self.queue), time.monotonic() - started)


def child_informers(
    settings: OperatorSettings, *, kube: Kube, metrics: OperatorMetrics, on_change: Callable[[Key], None]
) -> list[ChildInformer]:
    """An informer per child kind: cluster-wide, or one per namespace the operator is given.

    Namespace patterns (`team-*`) come with a ClusterRole (see the chart): the informer lists
    every namespace and keeps the children of the matching ones. Informers of one kind share
    its index.
    """
    patterns = [p for p in settings.namespaces if any(char in p for char in "*?[]!")]
    if settings.clusterwide or patterns:
        namespaces: list[str | None] = [None]
    else:
        namespaces = list(settings.namespaces)
    selector = ",".join(f"{label}={value}" for label, value in MANAGED_BY_SELECTOR.items())
    pods_selector = f"{selector},{COMPONENT_LABEL}={Component.POSTGRES.value}"
    informers = []
    resources = [(resource, resource.index, selector, ChildIndex()) for resource in CHILD_RESOURCES]
    resources.append(
        (
            POSTGRES_PODS,
            POSTGRES_PODS_INDEX,
            pods_selector,
            ChildIndex(owner=pod_owner_key, project=compact_pod),
        )
    )
    for resource, index_name, label_selector, index in resources:
        for namespace in namespaces:
            informers.append(
                ChildInformer(
                    kube,
                    api_version=resource.api_version,
                    kind=resource.kind,
                    index_name=index_name,
                    label_selector=label_selector,
                    namespace=namespace,
                    namespace_patterns=settings.namespaces if patterns else (),
                    page_size=settings.list_page_size,
                    watch_seconds=WATCH_SECONDS,
                    on_change=on_change,
                    metrics=metrics,
                    index=index,
                )
            )
    return informers
