"""Runtime: the snapshot a reconcile reads is the watches' indices, joined per backend."""

from __future__ import annotations

from typing import Any

import kmock
import pytest

from sbo_operator.builders.network_policies import OperatorPods
from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.runtime import CHILD_RESOURCES, Runtime
from sbo_operator.settings import OperatorSettings
from sbo_operator.snapshot import compact
from sbo_operator.workqueue import Key
from tests.unit.factories import example_body, parse, running_stack

pytestmark = [pytest.mark.unit, pytest.mark.kmock(cls=kmock.KubernetesScaffold)]

KEY = Key("demo", "shop")


def indices_of(body: dict[str, Any], children: list[dict[str, Any]]) -> dict[str, Any]:
    """The indices as Kopf keeps them: per resource, key -> the objects of that key."""
    indices: dict[str, Any] = {"backends": {KEY: [compact(body)]}}
    for resource in CHILD_RESOURCES:
        of_kind = [compact(c) for c in children if c["kind"] == resource.kind]
        indices[resource.index] = {KEY: of_kind} if of_kind else {}
    return indices


async def test_the_snapshot_joins_the_backend_and_its_children_of_every_kind(
    kube: Kube, metrics: OperatorMetrics
) -> None:
    body = example_body()
    children = running_stack(parse(body))
    runtime = Runtime(OperatorSettings(), indices=indices_of(body, children), kube=kube, metrics=metrics)

    snapshot = runtime.snapshot(KEY)
    assert snapshot is not None
    assert snapshot.backend["metadata"]["name"] == "shop"
    assert set(snapshot.children) == {(c["kind"], c["metadata"]["name"]) for c in children}
    assert "data" not in snapshot.children[("Secret", "shop-app-secrets")], (
        "the indices keep no secret values"
    )
    assert runtime.snapshot(Key("demo", "other")) is None


async def test_the_reconciler_gets_the_operators_own_pods_from_the_settings(
    kube: Kube, metrics: OperatorMetrics
) -> None:
    body = example_body()
    indices = indices_of(body, [])
    outside = Runtime(OperatorSettings(), indices=indices, kube=kube, metrics=metrics)
    assert outside.reconciler.operator_pods is None
    settings = OperatorSettings.model_validate(
        {"SBO_OPERATOR_NAMESPACE": "sbo-system", "SBO_OPERATOR_POD_LABELS": "app.kubernetes.io/instance=sbo"}
    )
    inside = Runtime(settings, indices=indices, kube=kube, metrics=metrics)
    assert inside.reconciler.operator_pods == OperatorPods(
        "sbo-system", {"app.kubernetes.io/instance": "sbo"}
    )
