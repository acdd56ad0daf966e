"""The child index: projections by owner; the owners an event changed; namespace patterns."""

from __future__ import annotations

from typing import Any

import pytest

from sbo_operator.informer import ChildIndex, ChildInformer
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.workqueue import Key

pytestmark = pytest.mark.unit


def child(name: str, *, uid: str, owner: str | None, namespace: str = "demo") -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": uid,
        "managedFields": [{"manager": "kube-controller-manager"}],
    }
    if owner:
        metadata["ownerReferences"] = [{"kind": "ScalableBackend", "name": owner, "controller": True}]
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": {"password": "c2VjcmV0"}}


def test_the_index_keeps_projections_by_owner_and_says_which_owners_changed() -> None:
    index = ChildIndex()
    assert index.put(child("shop-app", uid="1", owner="shop")) == {Key("demo", "shop")}
    assert index.put(child("shop-redis", uid="2", owner="shop")) == {Key("demo", "shop")}
    (kept, _) = sorted(index[Key("demo", "shop")], key=lambda c: c["metadata"]["name"])
    assert "managedFields" not in kept["metadata"]
    assert "data" not in kept
    assert kept["dataKeys"] == ["password"]

    # A child whose controller changed: both the old and the new owner must look again.
    assert index.put(child("shop-redis", uid="2", owner="cart")) == {Key("demo", "shop"), Key("demo", "cart")}
    assert [c["metadata"]["name"] for c in index[Key("demo", "cart")]] == ["shop-redis"]

    assert index.remove("1") == {Key("demo", "shop")}
    assert Key("demo", "shop") not in index, "an owner without children leaves the index"
    assert index.remove("1") == set(), "removing twice changes nothing"
    assert index.put(child("orphan", uid="3", owner=None)) == set()
    assert index.uids() == {"2"}


def test_a_namespace_pattern_keeps_only_the_matching_namespaces() -> None:
    changed: list[Key] = []
    informer = ChildInformer(
        None,  # type: ignore[arg-type]  # observe() does no I/O
        api_version="v1",
        kind="Secret",
        index_name="children_secrets",
        label_selector="",
        namespace=None,
        namespace_patterns=("team-*", "billing"),
        page_size=100,
        watch_seconds=60,
        on_change=changed.append,
        metrics=OperatorMetrics.create(),
    )
    informer.observe("ADDED", child("a", uid="1", owner="shop", namespace="team-a"))
    informer.observe("ADDED", child("b", uid="2", owner="shop", namespace="billing"))
    informer.observe("ADDED", child("c", uid="3", owner="shop", namespace="other"))
    assert sorted(informer.index) == [Key("billing", "shop"), Key("team-a", "shop")]
    assert changed == [Key("team-a", "shop"), Key("billing", "shop")]

    informer.observe("DELETED", child("a", uid="1", owner="shop", namespace="team-a"))
    assert sorted(informer.index) == [Key("billing", "shop")]
    assert changed[-1] == Key("team-a", "shop")


class OnePage:
    """A Kube that answers every LIST with one page of the given objects."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    async def list_page(self, *_: Any, **__: Any) -> dict[str, Any]:
        return {"items": [dict(item) for item in self.items], "metadata": {"resourceVersion": "7"}}


async def test_informers_of_one_kind_in_several_namespaces_forget_only_their_own() -> None:
    """With exact namespaces each has an informer, and they share the kind's index."""
    index = ChildIndex()
    informers = {
        namespace: ChildInformer(
            OnePage([child(f"{namespace}-app", uid=namespace, owner="shop", namespace=namespace)]),  # type: ignore[arg-type]
            api_version="v1",
            kind="Secret",
            index_name="children_secrets",
            label_selector="",
            namespace=namespace,
            page_size=100,
            watch_seconds=60,
            on_change=lambda key: None,
            metrics=OperatorMetrics.create(),
            index=index,
        )
        for namespace in ("shop", "billing")
    }
    await informers["shop"].list()
    await informers["billing"].list()
    assert sorted(index) == [Key("billing", "shop"), Key("shop", "shop")]

    informers["shop"].kube.items = []  # type: ignore[attr-defined]
    await informers["shop"].list()
    assert sorted(index) == [Key("billing", "shop")], "the other namespace's children stay"
