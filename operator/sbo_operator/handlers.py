"""Kopf handlers. They only keep the backends' index and say which ScalableBackend to look at.

Every change to a ScalableBackend puts its key on the work queue; the children
are followed by the runtime's own informers, which do the same for their owner.
`reconcile()` then reads the whole current state from the indices. No handler
here writes to the API, and none asks Kopf to store progress, so Kopf adds no
annotations or finalizers.

Kopf watches the ScalableBackends only. Its indices hold every listed body until
every indexed kind has been listed; for the backends alone that is small, for
their 20-odd children each it was most of a restarted operator's memory.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from sbo_operator.api.v1alpha1 import GROUP, PLURAL, VERSION
from sbo_operator.peering import find_kopf_pause
from sbo_operator.runtime import Runtime
from sbo_operator.settings import OperatorSettings
from sbo_operator.snapshot import compact_backend
from sbo_operator.workqueue import Key

log = logging.getLogger(__name__)


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """All handlers of the operator, in a registry of their own (no global state)."""
    operator_settings = settings  # the handlers' own `settings` kwarg is Kopf's
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the ServiceAccount token; elsewhere: $KUBECONFIG.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
        settings.posting.level = logging.WARNING  # Events come from explicit kopf.event() calls only
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60
        # The initial LIST comes in pages: a thousand backends' StatefulSets in one
        # response would be hundreds of MiB of decoded JSON at once.
        settings.watching.chunk_size = 100
        # Kopf keeps a worker per object, holding its last event's whole body, for this
        # long after the event (default 5 s). When Kopf watched the children too, those
        # bodies added up: peak RSS 143 -> 134 MiB at 200 backends.
        settings.batching.idle_timeout = 0.5
        # With peering, a replica waits for its first look at the peers before it works (Kopf
        # pauses it until then), and does not work without the KopfPeering CRD; alone, it
        # needs neither.
        settings.peering.mandatory = operator_settings.peering
        settings.peering.lifetime = operator_settings.peering_lifetime_seconds
        # Kopf scans namespaces and CRDs only to match glob patterns; without one,
        # scanning would just ask for permissions the operator does not need.
        settings.scanning.disabled = not any(
            char in pattern for pattern in operator_settings.namespaces for char in "*?[]!"
        )
        pause = find_kopf_pause() if operator_settings.peering else None
        memo.runtime = await Runtime.start(operator_settings, backends=kwargs["backends"], pause=pause)

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime | None = getattr(memo, "runtime", None)
        if runtime is not None:
            await runtime.stop()

    @kopf.on.probe(id="queue_depth", registry=registry)
    def queue_depth(memo: kopf.Memo, **_: Any) -> int:
        runtime: Runtime = memo.runtime
        return len(runtime.queue)

    # The index function is async, though it does no I/O: Kopf runs sync handlers in a
    # thread pool, and every watch event would wait there for a thread.
    @kopf.index(GROUP, VERSION, PLURAL, id="backends", registry=registry)
    async def index_backend(
        namespace: str | None, name: str, body: kopf.Body, **_: Any
    ) -> dict[Key, dict[str, Any]]:
        return {Key(namespace or "", name): compact_backend(body)}

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def backend_changed(
        type: str, namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any
    ) -> None:
        runtime: Runtime = memo.runtime
        runtime.ensure_workers()
        key = Key(namespace or "", name)
        if type == "DELETED":
            runtime.forget(key)
        else:
            runtime.queue.add(key, generation=body.get("metadata", {}).get("generation"))

    return registry
