"""The ScalableBackend status: what the operator and the apiserver's defaults write parses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sbo_operator.api.v1alpha1 import (
    UNOBSERVED_GENERATION,
    ApiStatus,
    PostgresPhase,
    PostgresStatus,
    ScalableBackend,
)
from sbo_operator.postgres_roles import Phase, RolesState

pytestmark = pytest.mark.unit


def manifest() -> dict[str, object]:
    return {
        "apiVersion": "sbo.dev/v1alpha1",
        "kind": "ScalableBackend",
        "metadata": {"name": "shop", "namespace": "demo"},
        "spec": {"image": "registry.example.com/sbo-sample-app:0.1.0"},
    }


def test_a_status_the_operator_has_not_written_parses() -> None:
    # The apiserver defaults a new object's status to {observedGeneration: -1}.
    body = {**manifest(), "status": {"observedGeneration": UNOBSERVED_GENERATION}}
    status = ScalableBackend.model_validate(body).status
    assert status is not None
    assert status.observed_generation == -1


def test_api_status_summary() -> None:
    status = ApiStatus.from_counts(desired=3, replicas=3, ready_replicas=2, selector="a=b")
    assert status.ready_summary == "2/3"


def test_the_roles_state_round_trips_through_status_postgres_in_camel_case() -> None:
    state = RolesState(
        phase=Phase.FAILING_OVER,
        current_primary="shop-postgres-0",
        target_primary="shop-postgres-1",
        fenced_pod_uid="0d5c",
        timeline=3,
        switchover_id="move-1",
        since=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    )
    status = state.into_status(PostgresStatus(primary_ready=False, ready_replicas=1))
    wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire == {
        "primaryReady": False,
        "readyReplicas": 1,
        "phase": "FailingOver",
        "currentPrimary": "shop-postgres-0",
        "targetPrimary": "shop-postgres-1",
        "fencedPodUid": "0d5c",
        "timeline": 3,
        "switchoverId": "move-1",
        "since": "2026-01-01T12:00:00Z",
        "instances": [],
    }
    assert RolesState.from_status(PostgresStatus.model_validate(wire)) == state


def test_a_status_from_before_the_election_starts_it_afresh() -> None:
    # Written by an operator version with two StatefulSets: no phase yet.
    assert RolesState.from_status(PostgresStatus(primary_ready=True, ready_replicas=1)) == RolesState()
    assert RolesState.from_status(None) == RolesState()
    assert RolesState().phase is PostgresPhase.BOOTSTRAP


def test_instances_parse_in_camel_case() -> None:
    status = PostgresStatus.model_validate(
        {
            "instances": [
                {"name": "shop-postgres-1", "role": "replica", "ready": True, "timeline": 2, "lagBytes": 0}
            ]
        }
    )
    assert status.instances[0].lag_bytes == 0
