"""The operator's view of its children: one informer per child kind, as client-go has.

An informer LISTs its kind in pages, keeps the projection (`snapshot.compact`) of each object,
then WATCHes from the list's resourceVersion and keeps the projections current; it lists again
when the watch expires (410). Whole objects live only while a page or an event is decoded, so
a restart over thousands of children costs their projections, not their bodies. (Kopf's own
indices hold every listed body until every kind has been listed; at 1,000 backends that is
23,000 bodies at once.)

`synced` is set once the first LIST is complete. A reconcile must not run before: it would
see children missing and create them again.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from sbo_operator.kube import Kube, WatchExpired
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.snapshot import compact, owner_key
from sbo_operator.workqueue import Key

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class ChildIndex(Mapping[Key, Collection[dict[str, Any]]]):
    """Projections of one kind's children, by the ScalableBackend that owns them (uid within).

    ``owner`` finds that backend (default: the controller owner reference), ``project`` keeps
    what reconcile reads (default: :func:`snapshot.compact`).
    """

    def __init__(
        self,
        *,
        owner: Callable[[Mapping[str, Any]], Key | None] = owner_key,
        project: Callable[[Mapping[str, Any]], dict[str, Any]] = compact,
    ) -> None:
        self._owner = owner
        self._project = project
        self._by_owner: dict[Key, dict[str, dict[str, Any]]] = {}
        self._owner_of: dict[str, Key] = {}  # uid -> owner, to move or drop a child

    def __getitem__(self, key: Key) -> Collection[dict[str, Any]]:
        return self._by_owner[key].values()

    def __iter__(self) -> Iterator[Key]:
        return iter(self._by_owner)

    def __len__(self) -> int:
        return len(self._by_owner)

    def put(self, body: Mapping[str, Any]) -> set[Key]:
        """Remember the object's projection; the owners whose children changed."""
        uid = body["metadata"]["uid"]
        touched = self.remove(uid)
        key = self._owner(body)
        if key is not None:
            self._by_owner.setdefault(key, {})[uid] = self._project(body)
            self._owner_of[uid] = key
            touched.add(key)
        return touched

    def remove(self, uid: str) -> set[Key]:
        key = self._owner_of.pop(uid, None)
        if key is None:
            return set()
        children = self._by_owner[key]
        del children[uid]
        if not children:
            del self._by_owner[key]
        return {key}

    def uids(self, namespace: str | None = None) -> set[str]:
        """The children's uids, in one namespace or all (a child is in its owner's namespace)."""
        return {uid for uid, key in self._owner_of.items() if namespace is None or key.namespace == namespace}


class ChildInformer:
    """LIST then WATCH one child kind in one namespace (or all), into a ChildIndex."""

    def __init__(
        self,
        kube: Kube,
        *,
        api_version: str,
        kind: str,
        index_name: str,
        label_selector: str,
        namespace: str | None,
        namespace_patterns: Sequence[str] = (),
        page_size: int,
        watch_seconds: int,
        on_change: Callable[[Key], None],
        metrics: OperatorMetrics,
        index: ChildIndex | None = None,
    ) -> None:
        self.kube = kube
        self.api_version, self.kind, self.index_name = api_version, kind, index_name
        self.label_selector = label_selector
        self.namespace = namespace
        self.namespace_patterns = tuple(namespace_patterns)
        self.page_size = page_size
        self.watch_seconds = watch_seconds
        self.on_change = on_change
        self.metrics = metrics
        self.index = index if index is not None else ChildIndex()
        self.synced = asyncio.Event()

    def _wanted(self, body: Mapping[str, Any]) -> bool:
        if not self.namespace_patterns:
            return True
        namespace = body["metadata"].get("namespace", "")
        return any(fnmatch.fnmatchcase(namespace, pattern) for pattern in self.namespace_patterns)

    def _changed(self, keys: set[Key]) -> None:
        for key in keys:
            self.on_change(key)

    async def list(self) -> str:
        """One complete LIST, page by page; objects gone since the last one are dropped."""
        seen: set[str] = set()
        token: str | None = None
        while True:
            page = await self.kube.list_page(
                self.api_version,
                self.kind,
                namespace=self.namespace,
                label_selector=self.label_selector,
                limit=self.page_size,
                continue_token=token,
            )
            self.metrics.list_pages.labels(kind=self.kind).inc()
            for item in page.get("items") or ():
                # A LIST's items carry neither apiVersion nor kind.
                item.setdefault("apiVersion", self.api_version)
                item.setdefault("kind", self.kind)
                if self._wanted(item):
                    seen.add(item["metadata"]["uid"])
                    self._changed(self.index.put(item))
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                break
        # Informers of one kind in several namespaces share the index: forget only our own.
        for uid in self.index.uids(self.namespace) - seen:
            self._changed(self.index.remove(uid))
        self.synced.set()
        return str(metadata.get("resourceVersion", ""))

    async def watch(self, version: str) -> str:
        """Follow events from `version` for a while; returns where to resume."""
        async for kind, body in self.kube.watch(
            self.api_version,
            self.kind,
            namespace=self.namespace,
            label_selector=self.label_selector,
            resource_version=version,
            timeout_seconds=self.watch_seconds,
        ):
            version = body["metadata"].get("resourceVersion", version)
            self.observe(kind, body)
        return version

    def observe(self, event: str, body: Mapping[str, Any]) -> None:
        """A watch event: remember or forget the object, and enqueue the owners it changed."""
        if event == "BOOKMARK" or not self._wanted(body):
            return
        if event == "DELETED":
            self._changed(self.index.remove(body["metadata"]["uid"]))
        else:
            self._changed(self.index.put(body))

    async def run(self) -> None:
        """Forever: list, watch, resume; list again when the watch expired or failed."""
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self.list()
                version = await self.watch(version)
            except asyncio.CancelledError:
                raise
            except WatchExpired:
                version = None
            except Exception:
                log.exception("watching %s failed; listing again in %.0fs", self.kind, RETRY_SECONDS)
                version = None
                await asyncio.sleep(RETRY_SECONDS)
