"""Status from a snapshot: workload progress, kstatus conditions, settled transition times, no secrets."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from sbo_operator.api.conditions import ConditionState, ConditionStatus, ConditionType, Reason
from sbo_operator.api.v1alpha1 import ScalableBackendStatus
from sbo_operator.builders import api, redis
from sbo_operator.builders.labels import api_selector_string
from sbo_operator.components.base import Problem
from sbo_operator.snapshot import Snapshot
from sbo_operator.status import compute_status, settle_conditions, status_patch
from sbo_operator.status import without_none as _without_none
from tests.unit.factories import (
    NOW,
    Body,
    Manifest,
    edited,
    example_body,
    generated_secrets,
    merge_patch,
    parse,
    postgres_pod,
    ready_deployment,
    running_stack,
    snapshot,
    unready_statefulset,
    with_worker,
    without_postgres,
    without_redis,
)

pytestmark = pytest.mark.unit

LATER = "2025-06-01T00:00:00Z"
Edit = Callable[[dict[str, Any]], object]


# ---- compute_status ---------------------------------------------------------------------------------


def status_of(
    body: Body,
    children: Sequence[Manifest],
    *,
    applied: Sequence[str] = (),
    waiting: dict[str, str] | None = None,
    problems: Sequence[Problem] = (),
    held: dict[str, Problem] | None = None,
    previous: Sequence[dict[str, Any]] = (),
    now: str = NOW,
    pods: Sequence[Manifest] | None = None,
) -> dict[str, Any]:
    """The status as reconcile patches it (conditions settled against `previous`).

    ``pods``: the PostgreSQL pods; by default those a ready instances' StatefulSet runs."""
    return status_patch(
        compute_status(
            parse(body),
            snapshot(body, *children, pods=pods),
            applied=applied,
            waiting=waiting or {},
            problems=problems,
            held=held,
            previous=previous,
            now=now,
        )
    )


def test_a_held_rollout_is_reported_on_its_component_with_the_reference() -> None:
    body = example_body()
    missing = Problem(
        Reason.SECRET_NOT_FOUND, "spec.api.env[0].valueFrom.secretKeyRef: Secret demo/payments not found"
    )
    status = status_of(body, running_stack(parse(body)), problems=[missing], held={"api": missing})
    api_ready = conditions(status)["ApiReady"]
    assert (api_ready.status, api_ready.reason) == ("False", "SecretNotFound")
    assert "held back" in api_ready.message
    assert "spec.api.env[0].valueFrom.secretKeyRef" in api_ready.message
    assert conditions(status)["Stalled"].reason == "SecretNotFound"
    assert conditions(status)["RedisReady"].status == "True", "other components report as usual"


def conditions(status: dict[str, Any]) -> dict[str, ConditionState]:
    return {
        c["type"]: ConditionState(
            ConditionType(c["type"]), ConditionStatus(c["status"]), c["reason"], c["message"]
        )
        for c in status["conditions"]
    }


def summary(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {name: (str(c.status), c.reason) for name, c in conditions(status).items()}


def replaced(children: list[Manifest], kind: str, name: str, new: Manifest | None) -> list[Manifest]:
    kept = [c for c in children if (c["kind"], c["metadata"]["name"]) != (kind, name)]
    return kept if new is None else [*kept, new]


def worker_body() -> Body:
    return edited(example_body(), with_worker)


def test_everything_ready_and_nothing_applied_is_ready() -> None:
    body = worker_body()
    status = status_of(body, running_stack(parse(body)))
    assert [c["type"] for c in status["conditions"]] == [
        "Ready",
        "Reconciling",
        "Stalled",
        "ApiReady",
        "WorkerReady",
        "RedisReady",
        "PostgresReady",
    ]
    assert summary(status) == {
        "Ready": ("True", "Ready"),
        "Reconciling": ("False", "Reconciled"),
        "Stalled": ("False", "NoProblems"),
        "ApiReady": ("True", "Available"),
        "WorkerReady": ("True", "Available"),
        "RedisReady": ("True", "Available"),
        "PostgresReady": ("True", "Available"),
    }
    assert conditions(status)["PostgresReady"].message == "primary ready, 2/2 read replicas ready"


def test_anything_applied_in_this_pass_is_reconciling_not_ready() -> None:
    body = worker_body()
    status = status_of(body, running_stack(parse(body)), applied=["updated Deployment shop-api"])
    assert summary(status)["Ready"] == ("False", "Applying")
    assert summary(status)["Reconciling"] == ("True", "Applying")
    assert summary(status)["Stalled"] == ("False", "NoProblems")
    assert conditions(status)["Reconciling"].message == "applied 1 change(s): updated Deployment shop-api"


def test_applied_message_names_at_most_five_changes() -> None:
    body = worker_body()
    applied = [f"created ConfigMap c{i}" for i in range(7)]
    message = conditions(status_of(body, running_stack(parse(body)), applied=applied))["Reconciling"].message
    assert message.startswith("applied 7 change(s): created ConfigMap c0, ")
    assert "c4" in message
    assert "c5" not in message
    assert message.endswith("...")


def test_a_component_not_ready_keeps_the_backend_reconciling() -> None:
    body = worker_body()
    backend = parse(body)
    children = replaced(
        running_stack(backend),
        "StatefulSet",
        "shop-redis",
        unready_statefulset(redis.build_redis_statefulset(backend)),
    )
    status = status_of(body, children)
    assert summary(status)["RedisReady"] == ("False", "PodsNotReady")
    assert summary(status)["Ready"] == ("False", "PodsNotReady")
    assert summary(status)["Reconciling"] == ("True", "PodsNotReady")
    assert summary(status)["Stalled"] == ("False", "NoProblems")
    assert conditions(status)["Ready"].message == "StatefulSet shop-redis: 0/1 ready"


def test_nothing_exists_yet_names_every_missing_workload() -> None:
    body = worker_body()
    status = status_of(body, [])
    assert summary(status)["Ready"] == ("False", "Creating")
    assert summary(status)["Reconciling"] == ("True", "Creating")
    message = conditions(status)["Reconciling"].message
    for name in ("shop-api", "shop-worker", "shop-redis", "shop-postgres"):
        assert f" {name} does not exist yet" in message


@pytest.mark.parametrize("applied", [(), ("created Deployment shop-api",)], ids=["idle", "while-applying"])
def test_a_problem_stalls_and_stops_reconciling(applied: Sequence[str]) -> None:
    body = worker_body()
    problem = Problem("MigrationsFailed", "Job shop-migrations-abc failed; see kubectl logs")
    status = status_of(
        body, running_stack(parse(body)), applied=applied, problems=[problem, Problem("Other", "x")]
    )
    stalled, reconciling, ready = (conditions(status)[t] for t in ("Stalled", "Reconciling", "Ready"))
    assert (stalled.status, stalled.reason, stalled.message) == (
        ConditionStatus.TRUE,
        "MigrationsFailed",
        problem.message,
    )
    assert (reconciling.status, reconciling.reason) == (ConditionStatus.FALSE, "MigrationsFailed")
    assert (ready.status, ready.reason, ready.message) == (
        ConditionStatus.FALSE,
        "MigrationsFailed",
        problem.message,
    )


@pytest.mark.parametrize(
    ("edit", "condition", "key", "field"),
    [
        pytest.param(lambda spec: None, ConditionType.WORKER_READY, "worker", "spec.worker", id="worker"),
        pytest.param(without_redis, ConditionType.REDIS_READY, "redis", "spec.redis", id="redis"),
        pytest.param(
            without_postgres, ConditionType.POSTGRES_READY, "postgres", "spec.postgres", id="postgres"
        ),
    ],
)
def test_disabled_components_are_true_and_their_status_is_none(
    edit: Edit, condition: ConditionType, key: str, field: str
) -> None:
    body = edited(example_body(), edit)  # basic.yaml has no worker
    status = status_of(body, running_stack(parse(body)))
    disabled = conditions(status)[condition]
    assert (disabled.status, disabled.reason) == (ConditionStatus.TRUE, "Disabled")
    assert field in disabled.message
    assert key in status, "present, so that the merge patch deletes the key"
    assert status[key] is None
    assert summary(status)["Ready"] == ("True", "Ready"), "a disabled component does not block Ready"


def test_only_the_app_secret_is_named_without_data_services() -> None:
    body = edited(example_body(), without_redis, without_postgres)
    status = status_of(body, running_stack(parse(body)))
    assert _without_none(status["secrets"]) == {"app": "shop-app-secrets"}
    assert _without_none(status["endpoints"]) == {"api": "http://shop-api.demo.svc:80"}


def test_endpoints_and_secret_names() -> None:
    body = example_body()
    status = status_of(body, running_stack(parse(body)))
    assert status["endpoints"] == {
        "api": "http://shop-api.demo.svc:80",
        "redis": "shop-redis.demo.svc:6379",
        "postgresReadWrite": "shop-postgres-rw.demo.svc:5432",
        "postgresReadOnly": "shop-postgres-ro.demo.svc:5432",
    }
    assert status["secrets"] == {
        "app": "shop-app-secrets",
        "redis": "shop-redis",
        "postgres": "shop-postgres-app",
        "postgresOperator": "shop-postgres-operator",
    }


def test_api_status_backs_the_scale_subresource() -> None:
    body = example_body()
    backend = parse(body)
    # A scale-up from 2 to 5 (the autoscaler's decision) in progress: 3 pods, 2 ready.
    rolling = ready_deployment(api.build_api_deployment(backend, replicas=5))
    rolling["status"].update(replicas=3, readyReplicas=2, availableReplicas=2, updatedReplicas=3)
    scaled = edited(body, lambda spec: spec["api"].update(replicas=5))
    status = status_of(scaled, replaced(running_stack(backend), "Deployment", "shop-api", rolling))
    assert status["api"] == {
        "replicas": 3,
        "readyReplicas": 2,
        "selector": api_selector_string(backend),
        "readySummary": "2/5",
    }
    assert "app.kubernetes.io/instance=shop" in status["api"]["selector"]
    assert "app.kubernetes.io/component=api" in status["api"]["selector"]
    assert summary(status)["ApiReady"] == ("False", "RollingOut")


def test_observed_generation_is_the_backends() -> None:
    body = example_body(generation=42)
    assert status_of(body, [])["observedGeneration"] == 42


@pytest.mark.parametrize(
    ("api_ready", "expected"),
    [
        pytest.param(True, ("False", "MigrationsPending"), id="api-ready"),
        pytest.param(False, ("False", "Creating"), id="api-absent"),
    ],
)
def test_pending_migrations_keep_a_ready_api_not_ready(api_ready: bool, expected: tuple[str, str]) -> None:
    body = example_body()
    children = running_stack(parse(body))
    if not api_ready:
        children = replaced(children, "Deployment", "shop-api", None)
    waiting = {"api": "waiting for migrations Job shop-migrations-abc to succeed before rolling out"}
    status = status_of(body, children, waiting=waiting)
    assert summary(status)["ApiReady"] == expected
    if api_ready:
        assert conditions(status)["ApiReady"].message == waiting["api"]
    assert summary(status)["Ready"][0] == "False"
    assert summary(status)["Reconciling"][0] == "True"


POSTGRES_READINESS = {  # the pods' states (ordinal 0 is labelled primary) -> PostgresReady
    "unlabelled": ((None, None, None), "PodsNotReady", "no PostgreSQL instance is labelled primary yet"),
    "primary-unready": (
        ("unready", "ready", "ready"),
        "PodsNotReady",
        "primary shop-postgres-0 is not ready",
    ),
    "replica-unready": (
        ("ready", "ready", "unready"),
        "PodsNotReady",
        "primary ready, 1/2 read replicas ready",
    ),
    "all-ready": (("ready", "ready", "ready"), "Available", "primary ready, 2/2 read replicas ready"),
}


@pytest.mark.parametrize(("roles", "reason", "message"), POSTGRES_READINESS.values(), ids=POSTGRES_READINESS)
def test_postgres_is_ready_with_the_pod_labelled_primary_and_its_read_replicas(
    roles: tuple[str | None, ...], reason: str, message: str
) -> None:
    body = example_body()
    backend = parse(body)
    pods = [
        postgres_pod(
            f"shop-postgres-{ordinal}",
            role=None if state is None else ("primary" if ordinal == 0 else "replica"),
            ready=state != "unready",
        )
        for ordinal, state in enumerate(roles)
    ]
    status = status_of(body, running_stack(backend), pods=pods)
    assert summary(status)["PostgresReady"] == ("True" if reason == "Available" else "False", reason)
    assert conditions(status)["PostgresReady"].message == message
    assert status["postgres"]["primaryReady"] is (roles[0] == "ready")
    assert status["postgres"]["readyReplicas"] == sum(1 for state in roles[1:] if state == "ready")
    # Without probes (none in this snapshot), each instance shows its pod only.
    assert [(i["name"], i.get("role"), i["ready"]) for i in status["postgres"]["instances"]] == [
        (pod["metadata"]["name"], pod["metadata"]["labels"].get("sbo.dev/postgres-role"), state != "unready")
        for pod, state in zip(pods, roles, strict=True)
    ]


def test_a_terminating_primary_is_not_the_primary() -> None:
    body = example_body()
    pods = [
        postgres_pod("shop-postgres-0", role="primary", terminating=True),
        postgres_pod("shop-postgres-1", role="replica"),
        postgres_pod("shop-postgres-2", role="replica"),
    ]
    status = status_of(body, running_stack(parse(body)), pods=pods)
    assert summary(status)["PostgresReady"] == ("False", "PodsNotReady")
    assert status["postgres"]["primaryReady"] is False


def test_postgres_without_read_replicas_is_ready_with_its_primary() -> None:
    body = edited(example_body(), lambda spec: spec["postgres"].update(readReplicas=0))
    backend = parse(body)
    status = status_of(body, running_stack(backend))
    assert summary(status)["PostgresReady"] == ("True", "Available")
    assert conditions(status)["PostgresReady"].message == "primary ready, 0/0 read replicas ready"


def test_status_never_contains_secret_values() -> None:
    body = example_body()
    backend = parse(body)
    secrets = generated_secrets(backend)
    passwords = {
        base64.b64decode(value).decode()
        for secret in secrets
        for key, value in secret["data"].items()
        if key.endswith("password") or key == "secret-key"
    }
    assert len(passwords) == 5, "the app's secret key, postgres app, replication and operator, redis"
    # Even given the Secrets with their data (not compacted), status reads only their names.
    raw = Snapshot(
        backend=body,
        children={
            **snapshot(body, *running_stack(backend)).children,
            **{(s["kind"], s["metadata"]["name"]): copy.deepcopy(s) for s in secrets},
        },
    )
    status = status_patch(compute_status(backend, raw, applied=(), waiting={}, problems=(), now=NOW))
    text = json.dumps(status)
    encoded = {
        value for s in secrets for key, value in s["data"].items() if key in ("password", "secret-key")
    }
    for password in passwords | encoded:
        assert password not in text
    assert status["secrets"] == {
        "app": "shop-app-secrets",
        "redis": "shop-redis",
        "postgres": "shop-postgres-app",
        "postgresOperator": "shop-postgres-operator",
    }


# ---- the status as stored ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edits",
    [
        pytest.param((), id="basic"),
        pytest.param((with_worker,), id="worker"),
        pytest.param((without_redis, without_postgres), id="api-only"),
    ],
)
@pytest.mark.parametrize("stack", ["empty", "running"])
def test_status_is_valid_for_the_crd_schema(edits: tuple[Edit, ...], stack: str) -> None:
    body = edited(example_body(), *edits)
    children = running_stack(parse(body)) if stack == "running" else []
    status = status_of(body, children, applied=["created Service shop-api"])
    parsed = ScalableBackendStatus.model_validate(_without_none(status))
    assert parsed.observed_generation == 3
    assert len(parsed.conditions) == 7


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(without_redis, id="redis-disabled"),
        pytest.param(without_postgres, id="postgres-disabled"),
    ],
)
def test_disabling_a_data_service_reaches_a_steady_status_in_one_merge_patch(edit: Edit) -> None:
    body = example_body()
    before = status_of(body, running_stack(parse(body)))
    after_body = edited(body, edit)
    patch = status_of(after_body, running_stack(parse(after_body)), previous=before["conditions"])
    written = merge_patch(before, patch)

    assert written == _without_none(patch), "what the apiserver stores is what we computed"
    # reconcile's own "did it change?" test (reconcile._write_status) on the next pass:
    assert _without_none(patch) == {k: v for k, v in written.items() if k in patch}


def test_worker_replicas_are_the_current_pods() -> None:
    body = worker_body()
    backend = parse(body)
    children = running_stack(backend)
    worker = next(c for c in children if c["metadata"]["name"] == "shop-worker" and c["kind"] == "Deployment")
    worker["spec"]["replicas"] = 4  # scaled up; one pod so far
    worker["status"].update(replicas=1, readyReplicas=1, availableReplicas=1, updatedReplicas=1)
    assert status_of(body, children)["worker"] == {"replicas": 1, "readyReplicas": 1}


# ---- settle_conditions ------------------------------------------------------------------------------


def _state(type: str, status: str, reason: str = "R", message: str = "m") -> ConditionState:
    return ConditionState(ConditionType(type), ConditionStatus(status), reason, message)


def _previous(type: str, status: str, time: str = NOW, **extra: Any) -> dict[str, Any]:
    return {
        "type": type,
        "status": status,
        "reason": "Old",
        "message": "old",
        "lastTransitionTime": time,
        **extra,
    }


@pytest.mark.parametrize(
    ("previous", "current", "expected_time"),
    [
        pytest.param([], _state("Ready", "True"), LATER, id="new-condition"),
        pytest.param([_previous("Ready", "True")], _state("Ready", "True"), NOW, id="same-status-keeps-time"),
        pytest.param(
            [_previous("Ready", "True")],
            _state("Ready", "True", reason="Other", message="changed"),
            NOW,
            id="reason-and-message-change-keep-time",
        ),
        pytest.param([_previous("Ready", "False")], _state("Ready", "True"), LATER, id="flip-moves-time"),
        pytest.param([_previous("Ready", "Unknown")], _state("Ready", "False"), LATER, id="unknown-to-false"),
        pytest.param(
            [{"type": "Ready", "status": "True"}], _state("Ready", "True"), LATER, id="previous-without-time"
        ),
        pytest.param([_previous("Stalled", "True")], _state("Ready", "True"), LATER, id="other-type-only"),
    ],
)
def test_last_transition_time_moves_only_when_the_status_flips(
    previous: list[dict[str, Any]], current: ConditionState, expected_time: str
) -> None:
    [settled] = settle_conditions(previous, [current], now=LATER, generation=5)
    assert settled == {
        "type": current.type,
        "status": str(current.status),
        "reason": current.reason,
        "message": current.message,
        "lastTransitionTime": expected_time,
        "observedGeneration": 5,
    }


def test_settled_conditions_are_plain_json_in_order() -> None:
    current = [_state("Ready", "False"), _state("Reconciling", "True"), _state("Stalled", "False")]
    settled = settle_conditions([], current, now=NOW, generation=None)
    assert [c["type"] for c in settled] == ["Ready", "Reconciling", "Stalled"]
    assert all("observedGeneration" not in c for c in settled), "no generation, no observedGeneration"
    assert json.loads(json.dumps(settled)) == settled
    assert all(type(c["status"]) is str and type(c["type"]) is str for c in settled)


def test_a_steady_backend_settles_to_the_same_conditions() -> None:
    body = example_body()
    first = status_of(body, running_stack(parse(body)))["conditions"]
    second = status_of(body, running_stack(parse(body)), previous=first, now=LATER)["conditions"]
    assert second == first


def test_without_none_drops_none_values_at_every_depth() -> None:
    value = {"a": None, "b": {"c": None, "d": 1}, "e": [{"f": None, "g": 2}], "h": []}
    assert _without_none(value) == {"b": {"d": 1}, "e": [{"g": 2}], "h": []}


def test_status_without_none_keeps_only_enabled_components() -> None:
    body = edited(example_body(), without_redis)
    status = _without_none(status_of(body, running_stack(parse(body))))
    assert set(status) == {"observedGeneration", "api", "endpoints", "secrets", "postgres", "conditions"}
