"""A regenerated Secret rolls every pod that reads it, and only those; a steady state rolls nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sbo_operator.builders.labels import SECRET_UIDS_ANNOTATION
from sbo_operator.credentials import regenerated_message, secret_readers, secret_uids
from sbo_operator.desired import desired_state
from tests.unit.factories import (
    Body,
    Manifest,
    edited,
    example_body,
    parse,
    postgres_pods,
    ready_statefulset,
    running_stack,
    snapshot,
    with_worker,
)

pytestmark = pytest.mark.unit

WORKLOADS = {"Deployment", "StatefulSet", "Job"}


def full_body() -> Body:
    return edited(example_body("full.yaml"), with_worker)


def regenerated(children: list[Manifest], secret: str, uid: str = "uid-new") -> list[Manifest]:
    """The children after `secret` was deleted by hand and created again (a new uid)."""
    changed = copy.deepcopy(children)
    for child in changed:
        if (child["kind"], child["metadata"]["name"]) == ("Secret", secret):
            child["metadata"]["uid"] = uid
    return changed


def templates(manifests: list[Manifest]) -> dict[str, Any]:
    """Pod templates by workload, but Jobs: a migrations Job's name follows its template."""
    return {
        f"{m['kind']}/{m['metadata']['name']}": m["spec"]["template"]
        for m in manifests
        if m["kind"] in WORKLOADS - {"Job"}
    }


def job_names(manifests: list[Manifest]) -> set[str]:
    return {m["metadata"]["name"] for m in manifests if m["kind"] == "Job"}


def changed_templates(body: Body, before: list[Manifest], after: list[Manifest]) -> set[str]:
    backend = parse(body)
    old = templates(desired_state(backend, snapshot(body, *before)).workloads)
    new = templates(desired_state(backend, snapshot(body, *after)).workloads)
    assert old.keys() == new.keys()
    return {key for key in old if old[key] != new[key]}


def test_a_running_stack_wants_the_pod_templates_it_runs() -> None:
    body = full_body()
    running = running_stack(parse(body))
    desired = desired_state(parse(body), snapshot(body, *running))
    assert templates(desired.workloads) == templates(running)


def test_a_regenerated_postgres_secret_rolls_postgres_and_every_app_pod() -> None:
    body = full_body()
    running = running_stack(parse(body))
    changed = changed_templates(body, running, regenerated(running, "shop-postgres-app"))
    # The migrations Job too, once the primary runs the new credentials (the next test).
    assert changed == {
        "Deployment/shop-api",
        "Deployment/shop-worker",
        "StatefulSet/shop-postgres",
    }


def test_a_regenerated_redis_secret_rolls_redis_and_its_clients_only() -> None:
    body = full_body()
    running = running_stack(parse(body))
    after = regenerated(running, "shop-redis")
    changed = changed_templates(body, running, after)
    assert changed == {"Deployment/shop-api", "Deployment/shop-worker", "StatefulSet/shop-redis"}
    # The migrations Job reads REDIS_PASSWORD too (it shares the api's environment): a new Job.
    desired = desired_state(parse(body), snapshot(body, *after))
    assert job_names(desired.workloads) - job_names(running)


def test_the_annotation_names_the_secrets_and_their_uids_never_their_values() -> None:
    body = full_body()
    running = running_stack(parse(body))
    desired = desired_state(parse(body), snapshot(body, *running))
    instances = next(m for m in desired.workloads if m["metadata"]["name"] == "shop-postgres")
    annotation = instances["spec"]["template"]["metadata"]["annotations"][SECRET_UIDS_ANNOTATION]
    assert annotation == (
        "shop-postgres-app=uid-Secret-shop-postgres-app,shop-postgres-operator=uid-Secret-shop-postgres-operator"
    )
    api = next(m for m in desired.workloads if m["metadata"]["name"] == "shop-api")
    assert api["spec"]["template"]["metadata"]["annotations"][SECRET_UIDS_ANNOTATION] == (
        "shop-app-secrets=uid-Secret-shop-app-secrets,"
        "shop-postgres-app=uid-Secret-shop-postgres-app,"
        "shop-redis=uid-Secret-shop-redis"
    )


def test_migrations_wait_until_the_primary_runs_the_regenerated_credentials() -> None:
    body = full_body()
    backend = parse(body)
    running = regenerated(running_stack(backend), "shop-postgres-app")
    # The primary still runs (ready) with the old Secret: a Job started now would log in with the
    # new password before the primary has it, and a failed Job stays failed.
    desired = desired_state(backend, snapshot(body, *running))
    assert not job_names(desired.workloads) - job_names(running)
    assert "primary" in desired.waiting["api"]
    instances = next(m for m in desired.workloads if m["metadata"]["name"] == "shop-postgres")
    others = [c for c in running if c["metadata"]["name"] != "shop-postgres"]
    # The new template applied, but the primary's pod not restarted yet: it still runs (ready)
    # with the old password, so the Job still waits.
    old_pods = [pod for child in running for pod in postgres_pods(child)]
    applied = desired_state(backend, snapshot(body, *others, ready_statefulset(instances), pods=old_pods))
    assert not job_names(applied.workloads) - job_names(running)
    assert "primary" in applied.waiting["api"]
    # Once the primary's pod restarted from the new template and is ready, the new Job starts.
    after = desired_state(backend, snapshot(body, *others, ready_statefulset(instances)))
    assert job_names(after.workloads) - job_names(running)


def test_secret_uids_are_those_of_the_secrets_in_the_snapshot() -> None:
    body = full_body()
    running = running_stack(parse(body))
    assert secret_uids(snapshot(body, *running)) == {
        "shop-app-secrets": "uid-Secret-shop-app-secrets",
        "shop-postgres-app": "uid-Secret-shop-postgres-app",
        "shop-postgres-operator": "uid-Secret-shop-postgres-operator",
        "shop-redis": "uid-Secret-shop-redis",
    }


def test_the_readers_of_a_secret_are_the_workloads_whose_pods_read_it() -> None:
    body = full_body()
    running = snapshot(body, *running_stack(parse(body)))
    readers = secret_readers(running, "shop-redis")
    assert readers == [
        "Deployment shop-api",
        "Deployment shop-worker",
        "StatefulSet shop-redis",
    ]
    assert secret_readers(snapshot(body), "shop-redis") == []


def test_the_warning_names_the_secret_and_the_rolled_workloads_never_a_value() -> None:
    message = regenerated_message("shop-redis", ["Deployment shop-api", "StatefulSet shop-redis"])
    assert "Secret shop-redis" in message
    assert "Deployment shop-api, StatefulSet shop-redis" in message
