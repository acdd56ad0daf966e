"""Which claims grow, and when a StatefulSet must be replaced to change its claim templates."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sbo_operator.storage import claim_templates_changed, claims_to_grow, service_name_changed

pytestmark = pytest.mark.unit


def statefulset(size: str = "2Gi", name: str = "shop-postgres-replica") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": size}}}}
            ],
        },
    }


def claim(name: str, size: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"resources": {"requests": {"storage": size}}}}


def test_unchanged_templates_with_server_defaults_need_no_replacement() -> None:
    actual = copy.deepcopy(statefulset())
    template = actual["spec"]["volumeClaimTemplates"][0]
    template["spec"].update(volumeMode="Filesystem", accessModes=["ReadWriteOnce"])
    template["status"] = {"phase": "Pending"}
    assert not claim_templates_changed(statefulset(), actual)
    assert not claim_templates_changed(statefulset(), None), "a missing StatefulSet is simply created"


@pytest.mark.parametrize(
    "actual",
    [
        pytest.param(statefulset("1Gi"), id="smaller"),
        pytest.param({"metadata": {"name": "x"}, "spec": {}}, id="no-templates-yet"),
    ],
)
def test_changed_templates_need_replacement(actual: dict[str, Any]) -> None:
    assert claim_templates_changed(statefulset("2Gi"), actual)


def test_only_smaller_claims_of_this_statefulset_grow() -> None:
    claims = [
        claim("data-shop-postgres-replica-0", "1Gi"),
        claim("data-shop-postgres-replica-1", "2Gi"),  # already there
        claim("data-shop-postgres-replica-7", "1024Mi"),  # retained after a scale-down
        claim("data-shop-postgres-primary-0", "1Gi"),  # another StatefulSet
        claim("data-shop-postgres-replica-x", "1Gi"),  # not an ordinal
        claim("other-shop-postgres-replica-0", "1Gi"),  # another template
    ]
    assert claims_to_grow(statefulset("2Gi"), claims) == [
        ("data-shop-postgres-replica-0", "2Gi"),
        ("data-shop-postgres-replica-7", "2Gi"),
    ]


def test_a_new_governing_service_needs_replacement() -> None:
    """serviceName is immutable: a StatefulSet made before the headless Services must be replaced."""
    desired = {
        **statefulset(),
        "spec": {**statefulset()["spec"], "serviceName": "shop-postgres-replica-headless"},
    }
    old = {**statefulset(), "spec": {**statefulset()["spec"], "serviceName": "shop-postgres-ro"}}
    assert service_name_changed(desired, old)
    assert not service_name_changed(desired, copy.deepcopy(desired))
    assert not service_name_changed(desired, None), "a missing StatefulSet is simply created"
