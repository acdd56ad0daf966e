"""What the operator remembers of an object, and which ScalableBackend a child belongs to."""

from __future__ import annotations

import base64
import copy
import json
from types import MappingProxyType
from typing import Any

import pytest

from sbo_operator.builders import postgres
from sbo_operator.drift import apply_reason, with_applied_hash
from sbo_operator.reconcile import _owned_by
from sbo_operator.snapshot import KEPT_METADATA, Snapshot, compact, owner_key
from sbo_operator.workqueue import Key
from tests.unit.factories import (
    RANDOM_BYTES,
    UID,
    Manifest,
    all_manifests,
    example_body,
    parse,
    ready_statefulset,
    stored,
)

pytestmark = pytest.mark.unit

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def postgres_secret() -> Manifest:
    secret = postgres.build_postgres_secret(
        parse(example_body()), existing_data=None, random_bytes=RANDOM_BYTES
    )
    return stored(secret)


def secret_values(secret: Manifest) -> set[str]:
    """The Secret's values, base64 and decoded, that are long enough to be unmistakable."""
    encoded = {value for value in secret["data"].values() if len(value) >= 16}
    return encoded | {base64.b64decode(value).decode() for value in encoded}


def test_compact_drops_server_bookkeeping_and_keeps_what_reconcile_reads() -> None:
    statefulset = ready_statefulset(postgres.build_postgres_statefulset(parse(example_body())))
    statefulset["metadata"]["deletionTimestamp"] = "2025-01-01T00:01:00Z"
    kept = compact(statefulset)

    assert set(kept) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert set(kept["metadata"]) == {
        "name",
        "namespace",
        "uid",
        "generation",
        "labels",
        "ownerReferences",
        "deletionTimestamp",
    }
    assert set(kept["metadata"]) <= set(KEPT_METADATA)
    for dropped in ("managedFields", "resourceVersion", "creationTimestamp"):
        assert dropped not in kept["metadata"]
    assert kept["spec"] == statefulset["spec"]
    assert kept["status"] == statefulset["status"]


def test_compact_keeps_annotations_for_the_applied_hash() -> None:
    manifest = with_applied_hash(postgres.build_postgres_statefulset(parse(example_body())) or {})
    kept = compact(stored(manifest))
    assert kept["metadata"]["annotations"] == manifest["metadata"]["annotations"]


@pytest.mark.parametrize(
    "manifest",
    [
        pytest.param(m, id=f"{m['kind']}-{m['metadata']['name']}")
        for m in all_manifests(parse(example_body("full.yaml")))
        if m["kind"] != "Secret"
    ],
)
def test_a_compacted_child_applied_by_us_needs_no_apply(manifest: Manifest) -> None:
    """compact() keeps everything drift detection compares, so a steady state writes nothing."""
    stamped = with_applied_hash(manifest)
    assert apply_reason(stamped, compact(stored(stamped))) is None


def test_compacted_secret_keeps_only_its_key_names() -> None:
    secret = postgres_secret()
    kept = compact(secret)

    assert "data" not in kept
    assert "stringData" not in kept
    assert kept["dataKeys"] == sorted(kept["dataKeys"])
    assert {"password", "replication-password", "uri"} <= set(kept["dataKeys"])
    assert kept["type"] == "Opaque"
    text = json.dumps(kept)
    for value in secret_values(secret):
        assert value not in text


def test_string_data_is_not_kept_either() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "stringData": {"k": "plain-value"},
    }
    kept = compact(secret)
    assert "stringData" not in kept
    assert kept["dataKeys"] == ["k"]
    assert "plain-value" not in json.dumps(kept)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"data": None}, {"dataKeys": []}, id="null-data"),
        pytest.param({"data": {}}, {"dataKeys": []}, id="empty-data"),
        pytest.param({}, {}, id="no-data"),
    ],
)
def test_compacted_secret_without_data(data: dict[str, Any], expected: dict[str, Any]) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque", **data}
    assert compact(secret) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "type": "Opaque",
        **expected,
    }


def test_data_of_other_kinds_is_kept() -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"redis.conf": "x"},
    }
    assert compact(config_map)["data"] == {"redis.conf": "x"}
    assert "dataKeys" not in compact(config_map)


def test_compacted_secret_keeps_no_values_in_annotations() -> None:
    secret = postgres_secret()
    last_applied = {k: v for k, v in secret.items() if k in ("apiVersion", "kind", "data", "type")}
    secret["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(last_applied)}
    text = json.dumps(compact(secret))
    for value in secret_values(secret):
        assert value not in text


def test_compact_makes_plain_independent_copies_of_read_only_views() -> None:
    inner: dict[str, Any] = {"replicas": 2, "template": {"containers": [{"name": "api"}]}}
    body = MappingProxyType(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": MappingProxyType({"name": "d", "labels": MappingProxyType({"a": "b"})}),
            "spec": MappingProxyType(inner),
        }
    )
    kept = compact(body)
    assert type(kept["metadata"]["labels"]) is dict
    assert type(kept["spec"]) is dict
    assert type(kept["spec"]["template"]["containers"]) is list
    inner["template"]["containers"][0]["name"] = "changed"
    assert kept["spec"]["template"]["containers"][0]["name"] == "api"


def test_compact_of_an_already_compacted_object_is_the_same() -> None:
    kept = compact(postgres_secret())
    assert compact(kept) == kept


# ---- owner_key --------------------------------------------------------------------------------------


def _ref(kind: str = "ScalableBackend", name: str = "shop", controller: bool | None = True) -> dict[str, Any]:
    ref: dict[str, Any] = {"apiVersion": "sbo.dev/v1alpha1", "kind": kind, "name": name, "uid": UID}
    if controller is not None:
        ref["controller"] = controller
    return ref


def _child(*refs: dict[str, Any], namespace: str | None = "demo") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "shop-api"}
    if namespace is not None:
        metadata["namespace"] = namespace
    if refs:
        metadata["ownerReferences"] = list(refs)
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata}


@pytest.mark.parametrize(
    ("child", "expected"),
    [
        pytest.param(_child(_ref()), Key("demo", "shop"), id="controller"),
        pytest.param(_child(), None, id="no-owner"),
        pytest.param({"kind": "Service"}, None, id="no-metadata"),
        pytest.param(_child(_ref(controller=False)), None, id="owner-not-controller"),
        pytest.param(_child(_ref(controller=None)), None, id="owner-without-controller-field"),
        pytest.param(_child(_ref(kind="Deployment")), None, id="other-kind-controls"),
        pytest.param(
            _child(_ref(kind="ConfigMap", name="x", controller=False), _ref(name="billing")),
            Key("demo", "billing"),
            id="second-reference",
        ),
        pytest.param(_child(_ref(), namespace=None), Key("", "shop"), id="no-namespace"),
    ],
)
def test_owner_key(child: dict[str, Any], expected: Key | None) -> None:
    assert owner_key(child) == expected


def test_owner_key_of_a_built_child_is_its_backend() -> None:
    manifest = postgres.build_postgres_statefulset(parse(example_body()))
    assert owner_key(compact(stored(manifest))) == Key("demo", "shop")


@pytest.mark.parametrize(
    ("refs", "owned"),
    [
        pytest.param([_ref()], True, id="controller-with-our-uid"),
        pytest.param([{**_ref(), "uid": "someone-else"}], False, id="previous-backend-of-that-name"),
        pytest.param([_ref(controller=False)], False, id="not-controller"),
        pytest.param([], False, id="no-owner"),
    ],
)
def test_owned_by_matches_the_uid_of_the_controller(refs: list[dict[str, Any]], owned: bool) -> None:
    assert _owned_by(_child(*refs), parse(example_body())) is owned


def test_snapshot_child_looks_up_by_kind_and_name() -> None:
    secret = compact(postgres_secret())
    snap = Snapshot(backend={}, children={("Secret", "shop-postgres-app"): secret})
    assert snap.child("Secret", "shop-postgres-app") is secret
    assert snap.child("ConfigMap", "shop-postgres-app") is None
    assert snap.child("Secret", "shop-redis") is None
    assert copy.deepcopy(snap) == snap


def test_compacts_of_separately_decoded_objects_share_their_strings() -> None:
    # Watch events decode every object afresh; the indices of a thousand backends must not
    # hold a thousand copies of the same field names and values.
    manifest = stored(ready_statefulset(postgres.build_postgres_statefulset(parse(example_body()))))
    first, second = (compact(json.loads(json.dumps(manifest))) for _ in range(2))
    assert first == second == compact(manifest)
    container_a = first["spec"]["template"]["spec"]["containers"][0]
    container_b = second["spec"]["template"]["spec"]["containers"][0]
    assert container_a["image"] is container_b["image"]
    key_a = next(k for k in container_a if k == "securityContext")
    key_b = next(k for k in container_b if k == "securityContext")
    assert key_a is key_b
