"""Fixtures of the unit tier: a Kube client talking to kmock, the Kubernetes API mock server.

kmock stands in for the apiserver only where the real one cannot be made to answer on cue
(a 409 or 422 at a given moment); everything else is tested against the real one in the
integration and e2e tiers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kmock
import kopf
import pytest
from kopf._core.engines.posting import event_queue_loop_var, event_queue_var, settings_var
from kubernetes.aio import client
from kubernetes.aio.dynamic import DynamicClient

from sbo_operator.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION
from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.runtime import CHILD_RESOURCES

FIELD_MANAGER = "scalable-backend-operator"
# What the apiserver answers to a patch of the backend; the operator reads nothing from it.
BACKEND_ECHO = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": "shop"}}


def serve_discovery(server: kmock.KubernetesScaffold) -> None:
    """Declare the ScalableBackend and every child kind, so the dynamic client finds them."""
    server.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(
        kind=KIND, namespaced=True, subresources={"status"}, verbs={"get", "list", "patch"}
    )
    server.resources["v1/persistentvolumeclaims"] = kmock.ResourceInfo(
        kind="PersistentVolumeClaim", namespaced=True, verbs={"get", "list", "patch"}
    )
    server.resources["v1/pods"] = kmock.ResourceInfo(
        kind="Pod", namespaced=True, verbs={"get", "list", "patch", "delete"}
    )
    for resource in CHILD_RESOURCES:
        group_version = f"{resource.group}/{resource.version}" if resource.group else resource.version
        server.resources[f"{group_version}/{resource.plural}"] = kmock.ResourceInfo(
            kind=resource.kind, namespaced=True, verbs={"get", "list", "create", "patch", "delete"}
        )


@pytest.fixture
def apiserver(kmock: kmock.KubernetesScaffold) -> kmock.KubernetesScaffold:
    """kmock under a name that does not hide the kmock module in the tests."""
    return kmock


@pytest.fixture
def metrics() -> OperatorMetrics:
    return OperatorMetrics.create()


@pytest.fixture
async def kube(kmock: kmock.KubernetesScaffold, metrics: OperatorMetrics) -> AsyncIterator[Kube]:
    """The operator's Kube, talking to kmock (a stateless scaffold: it answers only what a test says)."""
    serve_discovery(kmock)
    api = client.ApiClient(client.Configuration(host=str(kmock.url).rstrip("/")))
    kube = Kube(api, await DynamicClient(api), field_manager=FIELD_MANAGER, metrics=metrics)
    yield kube
    await kube.close()


def writes(server: kmock.KubernetesScaffold) -> list[tuple[str, str]]:
    """Every request the server saw that writes: (method, path)."""
    return [
        (str(request.method.value), request.url.path)
        for request in server
        if request.method.value not in ("GET", "HEAD", "OPTIONS")
    ]


@contextlib.contextmanager
def kopf_events() -> Iterator[asyncio.Queue[Any]]:
    """The queue Kopf's event poster would send from: kopf.event() needs it outside a running Kopf.

    Tasks see it only if created inside this context (they copy the context they start in).
    """
    events: asyncio.Queue[Any] = asyncio.Queue()
    settings_token = settings_var.set(kopf.OperatorSettings())
    queue_token = event_queue_var.set(events)
    loop_token = event_queue_loop_var.set(asyncio.get_running_loop())
    try:
        yield events
    finally:
        event_queue_loop_var.reset(loop_token)
        event_queue_var.reset(queue_token)
        settings_var.reset(settings_token)
