"""When a child must be applied: missing, changed spec, or edited by hand; never otherwise."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sbo_operator.drift import (
    APPLIED_HASH_ANNOTATION,
    ApplyReason,
    apply_reason,
    is_derivative,
    manifest_hash,
    with_applied_hash,
)

pytestmark = pytest.mark.unit


def deployment(replicas: int = 2, image: str = "app:1") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop-api", "namespace": "demo", "labels": {"app.kubernetes.io/name": "shop"}},
        "spec": {
            "replicas": replicas,
            "template": {
                "spec": {"containers": [{"name": "api", "image": image, "ports": [{"containerPort": 8000}]}]}
            },
        },
    }


def as_stored_by_server(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: our fields plus defaults, metadata and status."""
    stored = copy.deepcopy(manifest)
    stored["metadata"].update(uid="123", resourceVersion="42", generation=1, managedFields=[{"manager": "x"}])
    container = stored["spec"]["template"]["spec"]["containers"][0]
    container.update(terminationMessagePath="/dev/termination-log", imagePullPolicy="IfNotPresent")
    container["ports"][0]["protocol"] = "TCP"
    stored["spec"]["revisionHistoryLimit"] = 10
    stored["status"] = {"readyReplicas": 2}
    return stored


def test_hash_ignores_its_own_annotation_and_key_order() -> None:
    manifest = deployment()
    stamped = with_applied_hash(manifest)
    assert stamped["metadata"]["annotations"][APPLIED_HASH_ANNOTATION] == manifest_hash(manifest)
    assert manifest_hash(stamped) == manifest_hash(manifest)
    reordered = dict(reversed(list(manifest.items())))
    assert manifest_hash(reordered) == manifest_hash(manifest)
    assert "annotations" not in manifest["metadata"], "with_applied_hash does not mutate its input"


def test_missing_child_is_applied() -> None:
    assert apply_reason(with_applied_hash(deployment()), None) is ApplyReason.MISSING


def test_server_defaults_are_not_drift() -> None:
    desired = with_applied_hash(deployment())
    assert apply_reason(desired, as_stored_by_server(desired)) is None


def test_spec_change_is_detected_by_hash() -> None:
    actual = as_stored_by_server(with_applied_hash(deployment(image="app:1")))
    assert apply_reason(with_applied_hash(deployment(image="app:2")), actual) is ApplyReason.CHANGED


def test_removed_field_is_detected_by_hash() -> None:
    old = deployment()
    old["spec"]["template"]["spec"]["containers"][0]["command"] = ["run"]
    actual = as_stored_by_server(with_applied_hash(old))
    # The new desired state is a derivative of the old object; only the hash tells.
    assert is_derivative(deployment()["spec"], actual["spec"])
    assert apply_reason(with_applied_hash(deployment()), actual) is ApplyReason.CHANGED


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda o: o["spec"].update(replicas=5), id="kubectl-scale"),
        pytest.param(
            lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="evil"), id="image"
        ),
        pytest.param(lambda o: o["metadata"]["labels"].pop("app.kubernetes.io/name"), id="label-removed"),
        pytest.param(
            lambda o: o["spec"]["template"]["spec"]["containers"].append({"name": "sidecar"}),
            id="container-added",
        ),
    ],
)
def test_hand_edits_are_drift(edit: Any) -> None:
    desired = with_applied_hash(deployment())
    actual = as_stored_by_server(desired)
    edit(actual)
    assert apply_reason(desired, actual) is ApplyReason.DRIFTED


def test_extra_labels_added_by_others_are_not_drift() -> None:
    desired = with_applied_hash(deployment())
    actual = as_stored_by_server(desired)
    actual["metadata"]["labels"]["team"] = "payments"
    assert apply_reason(desired, actual) is None


@pytest.mark.parametrize(
    ("desired", "actual", "expected"),
    [
        (1, 1.0, True),
        (True, 1, False),
        ("1", 1, False),
        ({"a": 1}, {"a": 1, "b": 2}, True),
        ({"a": 1}, {}, False),
        ([1, 2], [1, 2, 3], False),
        ([{"a": 1}], [{"a": 1, "b": 0}], True),
        (None, None, True),
        # The server omits Go's zero values (omitempty): absent matches them, nothing else.
        ({"name": "EMPTY", "value": ""}, {"name": "EMPTY"}, True),
        ({"a": 0, "b": False, "c": [], "d": {}, "e": None, "f": 0.0}, {}, True),
        ({"name": "X", "value": "0"}, {"name": "X"}, False),
        ({"a": True}, {}, False),
        ({"a": [0]}, {}, False),
        ({"a": {"b": ""}}, {}, False),
        ({"name": "EMPTY", "value": ""}, {"name": "EMPTY", "value": "set by hand"}, False),
    ],
)
def test_is_derivative_table(desired: Any, actual: Any, expected: bool) -> None:
    assert is_derivative(desired, actual) is expected


def test_empty_env_value_as_stored_by_server_is_not_drift() -> None:
    """Issue 15, item 8: `value: ""` comes back without `value`. Failed before: DRIFTED on every pass."""
    manifest = deployment()
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "EMPTY", "value": ""}, {"name": "ROCKET", "value": "\U0001f680"}]
    desired = with_applied_hash(manifest)
    actual = as_stored_by_server(desired)
    actual["spec"]["template"]["spec"]["containers"][0]["env"][0] = {"name": "EMPTY"}
    assert apply_reason(desired, actual) is None
    actual["spec"]["template"]["spec"]["containers"][0]["env"][0] = {"name": "EMPTY", "value": "x"}
    assert apply_reason(desired, actual) is ApplyReason.DRIFTED
