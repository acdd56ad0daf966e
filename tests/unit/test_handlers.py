"""Handlers and child informers: a child's event reconciles its owner; a deleted backend is forgotten.

The handlers are taken from the registry the operator runs with and called as Kopf calls them;
the Runtime behind them is real, with kmock as its apiserver.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import kmock
import kopf
import pytest

from sbo_operator.handlers import build_registry
from sbo_operator.informer import ChildInformer
from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.runtime import CHILD_RESOURCES, ChildResource, Runtime
from sbo_operator.settings import OperatorSettings
from sbo_operator.snapshot import compact
from sbo_operator.workqueue import Key
from tests.unit.conftest import BACKEND_ECHO, writes
from tests.unit.factories import example_body

pytestmark = [pytest.mark.unit, pytest.mark.kmock(cls=kmock.KubernetesScaffold)]

KEY = Key("demo", "shop")
STATUS_PATH = "/apis/sbo.dev/v1alpha1/namespaces/demo/scalablebackends/shop/status"


def handler(registry: kopf.OperatorRegistry, id: str) -> Callable[..., Any]:
    """A handler as registered for Kopf, by its id."""
    handlers = [*registry._watching.get_all_handlers(), *registry._indexing.get_all_handlers()]
    return next(h.fn for h in handlers if h.id.endswith(id))


def invalid_backend() -> dict[str, Any]:
    """A backend whose reconcile writes exactly one status patch (Stalled, InvalidSpec)."""
    body = example_body()
    body["spec"]["api"]["replicas"] = -1
    return body


@pytest.fixture
async def runtime(kube: Kube, metrics: OperatorMetrics) -> AsyncIterator[Runtime]:
    indices: dict[str, Any] = {"backends": {KEY: [compact(invalid_backend())]}}
    indices.update({resource.index: {} for resource in CHILD_RESOURCES})
    runtime = Runtime(OperatorSettings(resync_seconds=3600), indices=indices, kube=kube, metrics=metrics)
    yield runtime
    for task in runtime._tasks:
        task.cancel()
    await asyncio.gather(*runtime._tasks, return_exceptions=True)


async def settle(runtime: Runtime) -> None:
    """Let the workers take what is queued."""
    for _ in range(50):
        await asyncio.sleep(0.01)
        if not len(runtime.queue):
            await asyncio.sleep(0.05)
            return


def informer_of(runtime: Runtime, resource: ChildResource) -> ChildInformer:
    """The child informer the operator runs for a kind, feeding this runtime's queue and index."""
    return ChildInformer(
        runtime.kube,
        api_version=resource.api_version,
        kind=resource.kind,
        index_name=resource.index,
        label_selector="",
        namespace=None,
        page_size=100,
        watch_seconds=60,
        on_change=runtime.queue.add,
        metrics=runtime.metrics,
    )


async def test_a_child_event_reconciles_its_owner(
    apiserver: kmock.KubernetesScaffold, runtime: Runtime
) -> None:
    apiserver[kmock.method.PATCH] << BACKEND_ECHO
    runtime.ensure_workers()
    deployments = informer_of(runtime, CHILD_RESOURCES[0])
    child = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "shop-api",
            "namespace": "demo",
            "uid": "d1",
            "ownerReferences": [{"kind": "ScalableBackend", "name": "shop", "controller": True, "uid": "u"}],
        },
    }
    deployments.observe("MODIFIED", child)
    await settle(runtime)
    assert writes(apiserver) == [("PATCH", STATUS_PATH)], "the owner was reconciled"


async def test_a_child_without_a_controller_owner_reconciles_nothing(
    apiserver: kmock.KubernetesScaffold, runtime: Runtime
) -> None:
    runtime.ensure_workers()
    configmaps = informer_of(runtime, next(r for r in CHILD_RESOURCES if r.kind == "ConfigMap"))
    orphan = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "shop-api", "namespace": "demo", "uid": "c1"},
    }
    configmaps.observe("ADDED", orphan)
    await settle(runtime)
    assert writes(apiserver) == []


async def test_deleted_forgets_the_backend(
    apiserver: kmock.KubernetesScaffold, runtime: Runtime, metrics: OperatorMetrics
) -> None:
    apiserver[kmock.method.PATCH] << BACKEND_ECHO
    backend_changed = handler(build_registry(runtime.settings), "backend_changed")
    memo = kopf.Memo(runtime=runtime)

    await backend_changed(type="MODIFIED", namespace="demo", name="shop", body=example_body(), memo=memo)
    await settle(runtime)
    stalled = {"namespace": "demo", "name": "shop", "type": "Stalled", "status": "True"}
    assert metrics.registry.get_sample_value("sbo_backend_condition", stalled) == 1

    await backend_changed(type="DELETED", namespace="demo", name="shop", body=example_body(), memo=memo)
    assert metrics.registry.get_sample_value("sbo_backend_condition", stalled) is None, "its series are gone"
    assert len(runtime.queue) == 0
    assert writes(apiserver) == [("PATCH", STATUS_PATH)], "a deleted backend is not reconciled"
