"""The child informer against the real apiserver: paged LIST, then WATCH, into compact projections.

The informer is what a restarted operator reads its children with, so these are the
properties a restart at scale depends on: every child listed (in pages, never a whole kind
at once), `synced` only after the last page, projections without secret values, and the
owner of every added, changed or deleted child enqueued.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client

from devkit.backends import valid_manifest
from devkit.cluster import LocalCluster
from devkit.process import wait_until_async
from sbo_operator.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION
from sbo_operator.builders.labels import MANAGED_BY, MANAGED_BY_LABEL
from sbo_operator.informer import ChildInformer
from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.workqueue import Key

pytestmark = pytest.mark.integration

PAGE_SIZE = 2
SECRETS = 5


@pytest.fixture
def owner(cluster: LocalCluster, crd: None, unserved_namespace: str) -> dict[str, Any]:
    """A ScalableBackend for the children to belong to (the garbage collector removes orphans)."""
    backend = valid_manifest(unserved_namespace)
    created: dict[str, Any] = client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        GROUP, VERSION, unserved_namespace, PLURAL, backend
    )
    return created


def secret(owner: dict[str, Any], name: str) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=name,
            labels={MANAGED_BY_LABEL: MANAGED_BY},
            owner_references=[
                client.V1OwnerReference(
                    api_version=owner["apiVersion"],
                    kind=KIND,
                    name=owner["metadata"]["name"],
                    uid=owner["metadata"]["uid"],
                    controller=True,
                )
            ],
        ),
        string_data={"password": f"value-of-{name}"},
    )


@pytest.fixture
async def kube(cluster: LocalCluster) -> AsyncIterator[Kube]:
    """The operator's I/O layer on the official asyncio client, as the operator builds it."""
    async with cluster.dynamic_client() as dynamic:
        yield Kube(dynamic.client, dynamic, field_manager="test", metrics=OperatorMetrics.create())


def secrets_informer(
    kube: Kube, namespace: str, changed: list[Key], metrics: OperatorMetrics
) -> ChildInformer:
    return ChildInformer(
        kube,
        api_version="v1",
        kind="Secret",
        index_name="children_secrets",
        label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}",
        namespace=namespace,
        page_size=PAGE_SIZE,
        watch_seconds=30,
        on_change=changed.append,
        metrics=metrics,
    )


async def test_the_informer_lists_in_pages_then_follows_every_change(
    cluster: LocalCluster, kube: Kube, owner: dict[str, Any], unserved_namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    namespace = unserved_namespace
    for number in range(SECRETS):
        core.create_namespaced_secret(namespace, secret(owner, f"shop-{number}"))
    key = Key(namespace, "shop")
    changed: list[Key] = []
    metrics = OperatorMetrics.create()
    informer = secrets_informer(kube, namespace, changed, metrics)

    version = await informer.list()
    assert informer.synced.is_set()
    pages = metrics.registry.get_sample_value("sbo_list_pages_total", {"kind": "Secret"})
    assert pages == -(-SECRETS // PAGE_SIZE), "listed page by page, never the whole kind at once"
    children = list(informer.index[key])
    assert sorted(c["metadata"]["name"] for c in children) == [f"shop-{n}" for n in range(SECRETS)]
    assert all("data" not in c and c["dataKeys"] == ["password"] for c in children), "no secret values"
    assert all("managedFields" not in c["metadata"] for c in children), "projections, not bodies"
    assert set(changed) == {key}

    changed.clear()
    watching = asyncio.create_task(informer.watch(version))
    try:
        core.create_namespaced_secret(namespace, secret(owner, "shop-new"))
        core.delete_namespaced_secret("shop-0", namespace)
        core.patch_namespaced_secret("shop-1", namespace, {"metadata": {"labels": {"touched": "yes"}}})

        async def followed() -> bool:
            by_name = {c["metadata"]["name"]: c for c in informer.index.get(key, ())}
            return (
                "shop-new" in by_name
                and "shop-0" not in by_name
                and by_name["shop-1"]["metadata"]["labels"].get("touched") == "yes"
            )

        await wait_until_async(followed, 30, "the watch to bring the create, the delete and the change")
        assert changed, "each change enqueued the owner"
        assert set(changed) == {key}
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching

    # Listing again (after a watch expired) forgets what is gone, and says so.
    core.delete_namespaced_secret("shop-2", namespace)
    changed.clear()
    await informer.list()
    assert "shop-2" not in {c["metadata"]["name"] for c in informer.index[key]}
    assert key in changed
