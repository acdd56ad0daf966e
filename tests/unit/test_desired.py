"""Which children should exist now, and in which wave: ordering, holds, migrations, obsolete children."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sbo_operator.api.conditions import Reason
from sbo_operator.builders import api, postgres, redis, worker
from sbo_operator.builders.images import DataServiceImages
from sbo_operator.builders.network_policies import OperatorPods
from sbo_operator.components.base import Problem
from sbo_operator.desired import FOUNDATION_KINDS, DesiredState, desired_state
from sbo_operator.drift import with_applied_hash
from sbo_operator.references import template_references
from tests.unit.factories import (
    Body,
    Manifest,
    being_deleted,
    edited,
    example_body,
    finished_job,
    generated_secret_uids,
    generated_secrets,
    parse,
    ready_deployment,
    ready_statefulset,
    running_job,
    running_stack,
    snapshot,
    stored,
    unready_statefulset,
    with_image,
    with_ingress,
    with_worker,
    without_migrations,
    without_postgres,
    without_redis,
)

pytestmark = pytest.mark.unit

OLD_IMAGE = "sbo-sample-app:0.1.0"
NEW_IMAGE = "sbo-sample-app:0.2.0"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}


def plan(body: Body, *children: Manifest) -> DesiredState:
    # As the reconciler: the status is read from the snapshot, never parsed as input.
    spec_only = {key: value for key, value in body.items() if key != "status"}
    return desired_state(parse(spec_only), snapshot(body, *children))


def secret_ids(desired: DesiredState) -> list[str]:
    return [secret.id for secret in desired.secrets_to_generate]


def keys(manifests: list[Manifest]) -> set[tuple[str, str]]:
    return {(m["kind"], m["metadata"]["name"]) for m in manifests}


def workload(desired: DesiredState, kind: str, name: str) -> Manifest | None:
    return next(
        (m for m in desired.workloads if (m["kind"], m["metadata"]["name"]) == (kind, name)),
        None,
    )


def image_of(deployment: Manifest | None) -> str:
    assert deployment is not None, "the Deployment is not desired"
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def full_body() -> Body:
    """basic.yaml with a worker and an Ingress, so that every child kind occurs."""
    return edited(example_body(), with_worker, with_ingress)


# ---- waves ------------------------------------------------------------------------------------------


def test_first_pass_applies_foundation_before_workloads_and_holds_what_must_wait() -> None:
    body = full_body()
    backend = parse(body)
    desired = plan(body)

    assert keys(desired.foundation) == {
        ("ServiceAccount", "shop-app"),
        ("Service", "shop-api"),
        ("PodDisruptionBudget", "shop-api"),
        ("Ingress", "shop-api"),
        ("PodDisruptionBudget", "shop-worker"),
        ("ConfigMap", "shop-redis-config"),
        ("Service", "shop-redis"),
        ("Service", "shop-redis-headless"),
        ("NetworkPolicy", "shop-redis"),
        ("ConfigMap", "shop-postgres-config"),
        ("Service", "shop-postgres-rw"),
        ("Service", "shop-postgres-ro"),
        ("Service", "shop-postgres-headless"),
        ("PodDisruptionBudget", "shop-postgres"),
        ("NetworkPolicy", "shop-postgres"),
    }
    # Nothing is ready yet: the api and worker wait for migrations. Every PostgreSQL instance
    # starts at once: each waits for the role the operator gives it.
    assert keys(desired.workloads) - {("Job", api.migrations_job_name(backend))} == {
        ("StatefulSet", "shop-redis"),
        ("StatefulSet", "shop-postgres"),
    }
    assert set(desired.waiting) == {"api"}
    assert secret_ids(desired) == ["app", "redis", "postgres", "postgres_operator"]  # registry order
    assert desired.obsolete == []
    assert desired.problems == []


def test_every_manifest_is_in_the_wave_of_its_kind() -> None:
    body = full_body()
    desired = plan(body, *running_stack(parse(body)))
    assert desired.foundation, "a running stack still has foundation children"
    assert {m["kind"] for m in desired.foundation} <= FOUNDATION_KINDS
    assert {m["kind"] for m in desired.workloads} == WORKLOAD_KINDS


def test_without_migrations_the_api_and_worker_are_created_at_once_with_the_desired_image() -> None:
    body = edited(full_body(), without_migrations)
    desired = plan(body)
    assert "api" not in desired.waiting
    assert not any(m["kind"] == "Job" for m in desired.workloads)
    assert image_of(workload(desired, "Deployment", "shop-api")) == OLD_IMAGE
    assert image_of(workload(desired, "Deployment", "shop-worker")) == OLD_IMAGE


def test_replicas_come_from_the_spec() -> None:
    # The autoscaler writes spec.<component>.replicas; reconcile applies what the spec says.
    body = edited(
        full_body(),
        without_migrations,
        lambda spec: spec["api"].update(replicas=7),
        lambda spec: spec["worker"].update(replicas=3),
    )
    desired = plan(body)
    api_deployment = workload(desired, "Deployment", "shop-api")
    worker_deployment = workload(desired, "Deployment", "shop-worker")
    assert api_deployment is not None
    assert worker_deployment is not None
    assert api_deployment["spec"]["replicas"] == 7
    assert worker_deployment["spec"]["replicas"] == 3


def test_a_running_stack_is_desired_as_it_is() -> None:
    body = full_body()
    children = running_stack(parse(body))
    desired = plan(body, *children)
    non_secrets = [c for c in children if c["kind"] != "Secret"]
    assert keys(desired.foundation) | keys(desired.workloads) == keys(non_secrets)
    assert (desired.waiting, desired.problems, desired.obsolete, desired.secrets_to_generate) == (
        {},
        [],
        [],
        [],
    )


# ---- the instances ---------------------------------------------------------------------------------


def with_roles(body: Body, **postgres_status: str) -> Body:
    """The backend with status.postgres as the election persisted it (camelCase)."""
    return {**body, "status": {"postgres": dict(postgres_status)}}


def legacy_statefulset(name: str, replicas: int) -> Manifest:
    """A StatefulSet of the old two-StatefulSet shape, as stored (its pods run)."""
    return ready_statefulset(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": name,
                "namespace": "demo",
                "labels": {"app.kubernetes.io/component": "postgres", "app.kubernetes.io/instance": "shop"},
            },
            "spec": {"replicas": replicas},
        }
    )


LEGACY = ("shop-postgres-primary", "shop-postgres-replica")


@pytest.mark.parametrize(
    ("roles", "kept"),
    [
        pytest.param({}, True, id="no-election-yet"),
        pytest.param(
            {"phase": "Stable", "currentPrimary": "shop-postgres-primary-0"}, True, id="legacy-primary"
        ),
        pytest.param(
            {
                "phase": "SwitchingOver",
                "currentPrimary": "shop-postgres-primary-0",
                "targetPrimary": "shop-postgres-0",
            },
            True,
            id="switching-over-to-an-instance",
        ),
        pytest.param({"phase": "Stable", "currentPrimary": "shop-postgres-0"}, False, id="migrated"),
    ],
)
def test_the_old_shape_is_kept_untouched_until_an_instance_is_the_primary(
    roles: dict[str, str], kept: bool
) -> None:
    body = with_roles(example_body(), **roles)
    desired = plan(body, *(legacy_statefulset(name, 1) for name in LEGACY))
    obsolete = {(kind, name) for _, kind, name in desired.obsolete}
    for name in LEGACY:
        assert ("StatefulSet", name) not in keys(desired.workloads), "never applied: it runs as it is"
        assert (("StatefulSet", name) in obsolete) is not kept
    assert ("StatefulSet", "shop-postgres") in keys(desired.workloads)


LEGACY_SHAPE = Path(__file__).parents[1] / "node" / "legacy_shape"


def test_the_old_primary_gets_the_operators_login_and_nothing_else_then_goes() -> None:
    live = stored(yaml.safe_load((LEGACY_SHAPE / "StatefulSet-shop-postgres-primary.yaml").read_text()))
    replicas = stored(yaml.safe_load((LEGACY_SHAPE / "StatefulSet-shop-postgres-replica.yaml").read_text()))
    body = with_roles(example_body(), phase="Stable", currentPrimary="shop-postgres-primary-0")
    desired = plan(body, live, replicas)
    primary = workload(desired, "StatefulSet", "shop-postgres-primary")
    assert primary is not None
    assert workload(desired, "StatefulSet", "shop-postgres-replica") is None, "the replicas run as they are"
    changed = copy.deepcopy(primary["spec"])
    (init,) = changed["template"]["spec"]["initContainers"]
    added = [variable for variable in init["env"] if variable["name"].startswith("SBO_OPERATOR_")]
    assert added == [
        {
            "name": "SBO_OPERATOR_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "shop-postgres-operator", "key": "password"}},
        },
        {
            "name": "SBO_OPERATOR_USER",
            "valueFrom": {"secretKeyRef": {"name": "shop-postgres-operator", "key": "username"}},
        },
    ]
    init["env"] = [variable for variable in init["env"] if variable not in added]
    assert changed == live["spec"], "nothing else of the old primary changes"
    # Once it has the login it is never applied again (the hand-over scales it to 0), nor deleted.
    again = plan(body, stored(with_applied_hash(primary)), replicas)
    assert workload(again, "StatefulSet", "shop-postgres-primary") is None
    assert "shop-postgres-primary" not in {name for _, _, name in again.obsolete}
    # Migrated: both old StatefulSets go.
    done = plan(with_roles(example_body(), phase="Stable", currentPrimary="shop-postgres-1"), live, replicas)
    assert {name for _, kind, name in done.obsolete if kind == "StatefulSet"} == set(LEGACY)


@pytest.mark.parametrize(
    ("roles", "replicas"),
    [
        pytest.param({}, 3, id="readReplicas-2"),
        pytest.param({"phase": "Stable", "currentPrimary": "shop-postgres-1"}, 3, id="primary-within"),
        pytest.param({"phase": "Stable", "currentPrimary": "shop-postgres-4"}, 5, id="primary-beyond"),
        pytest.param(
            {
                "phase": "SwitchingOver",
                "currentPrimary": "shop-postgres-0",
                "targetPrimary": "shop-postgres-3",
            },
            4,
            id="target-beyond",
        ),
        pytest.param(
            {"phase": "Stable", "currentPrimary": "shop-postgres-primary-0"}, 3, id="legacy-primary"
        ),
    ],
)
def test_a_scale_down_keeps_the_primary_until_it_was_switched_over(
    roles: dict[str, str], replicas: int
) -> None:
    desired = plan(with_roles(example_body(), **roles))
    statefulset = workload(desired, "StatefulSet", "shop-postgres")
    assert statefulset is not None
    assert statefulset["spec"]["replicas"] == replicas


# ---- Secrets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edits", "existing", "expected"),
    [
        pytest.param((), set(), ["app", "redis", "postgres", "postgres_operator"], id="none-exist"),
        pytest.param((), {"shop-app-secrets"}, ["redis", "postgres", "postgres_operator"], id="app-exists"),
        pytest.param(
            (),
            {"shop-app-secrets", "shop-postgres-app"},
            ["redis", "postgres_operator"],
            id="postgres-exists",
        ),
        pytest.param(
            (), {"shop-app-secrets", "shop-redis"}, ["postgres", "postgres_operator"], id="redis-exists"
        ),
        pytest.param(
            (),
            {"shop-app-secrets", "shop-postgres-app", "shop-postgres-operator", "shop-redis"},
            [],
            id="all-exist",
        ),
        pytest.param((without_redis,), set(), ["app", "postgres", "postgres_operator"], id="redis-disabled"),
        pytest.param((without_postgres,), set(), ["app", "redis"], id="postgres-disabled"),
        pytest.param((without_redis, without_postgres), set(), ["app"], id="both-disabled"),
    ],
)
def test_secrets_are_generated_only_when_missing(
    edits: tuple[Callable[[dict[str, Any]], object], ...], existing: set[str], expected: list[str]
) -> None:
    body = edited(example_body(), *edits)
    secrets = [s for s in generated_secrets(parse(example_body())) if s["metadata"]["name"] in existing]
    desired = plan(body, *secrets)
    assert secret_ids(desired) == expected
    assert "Secret" not in {m["kind"] for m in desired.foundation + desired.workloads}, (
        "Secrets are created once by the reconciler, never applied"
    )


# ---- missing references -----------------------------------------------------------------------------

PAYMENTS = ("Secret", "payments")
PAYMENTS_MISSING = Problem(
    Reason.SECRET_NOT_FOUND, "spec.api.env[0].valueFrom.secretKeyRef: Secret demo/payments not found"
)


def with_payments_token(spec: dict[str, Any]) -> None:
    spec["api"]["env"] = [
        {"name": "PAYMENT_TOKEN", "valueFrom": {"secretKeyRef": {"name": "payments", "key": "token"}}}
    ]


def test_a_rollout_whose_pods_need_a_missing_secret_keeps_what_runs() -> None:
    old_body = edited(example_body(), with_worker)
    children = running_stack(parse(old_body))
    body = edited(old_body, with_payments_token, with_image(NEW_IMAGE))
    backend = parse(body)
    desired = desired_state(backend, snapshot(body, *children), {PAYMENTS: PAYMENTS_MISSING})

    # Neither the api's new template nor the migrations Job that shares it is applied...
    assert workload(desired, "Deployment", "shop-api") is None
    assert ("Job", api.migrations_job_name(backend)) not in keys(desired.workloads)
    # ...and the running Deployment is kept, not deleted.
    assert ("apps/v1", "Deployment", "shop-api") not in desired.obsolete
    assert desired.held == {"api": PAYMENTS_MISSING, "migrations": PAYMENTS_MISSING}
    # The worker does not read the Secret: it waits for migrations as usual, on its old image.
    assert image_of(workload(desired, "Deployment", "shop-worker")) == OLD_IMAGE
    assert not any(
        PAYMENTS in template_references(manifest) for manifest in [*desired.foundation, *desired.workloads]
    )


def test_a_deployment_whose_pods_need_a_missing_secret_is_not_created() -> None:
    body = edited(example_body(), with_payments_token, without_migrations)
    desired = desired_state(parse(body), snapshot(body), {PAYMENTS: PAYMENTS_MISSING})
    assert workload(desired, "Deployment", "shop-api") is None
    assert desired.held == {"api": PAYMENTS_MISSING}
    assert ("StatefulSet", "shop-postgres") in keys(desired.workloads), "the rest proceeds"


def test_once_the_secret_exists_the_rollout_proceeds() -> None:
    old_body = edited(example_body(), without_migrations)
    body = edited(old_body, with_payments_token)
    desired = plan(body, *running_stack(parse(old_body)))
    deployment = workload(desired, "Deployment", "shop-api")
    assert deployment is not None
    assert PAYMENTS in template_references(deployment)
    assert desired.held == {}


# ---- migrations -------------------------------------------------------------------------------------


def _upgrade(job_state: str) -> tuple[Body, list[Manifest], str]:
    """A stack running OLD_IMAGE with a worker, its spec now asking for NEW_IMAGE.

    Returns the new body, the children and the name of the new image's migrations Job, which is
    in `job_state` (Absent, Running, Complete or Failed).
    """
    old_body = edited(example_body(), with_worker)
    children = running_stack(parse(old_body))
    new_body = edited(old_body, with_image(NEW_IMAGE))
    new_backend = parse(new_body)
    job = api.build_migrations_job(new_backend, secret_uids=generated_secret_uids(new_backend))
    assert job is not None
    if job_state == "Running":
        children.append(running_job(job))
    elif job_state in ("Complete", "Failed"):
        children.append(finished_job(job, job_state))
    return new_body, children, job["metadata"]["name"]


@pytest.mark.parametrize("job_state", ["Absent", "Running", "Failed"])
def test_until_migrations_succeed_api_and_worker_keep_the_image_they_run(job_state: str) -> None:
    body, children, job_name = _upgrade(job_state)
    desired = plan(body, *children)

    assert image_of(workload(desired, "Deployment", "shop-api")) == OLD_IMAGE
    assert image_of(workload(desired, "Deployment", "shop-worker")) == OLD_IMAGE
    # Only the image is held: the Deployment is what the builder makes of the new spec and old image.
    backend = parse(body)
    assert workload(desired, "Deployment", "shop-api") == api.build_api_deployment(
        backend,
        replicas=backend.spec.api.replicas,
        image=OLD_IMAGE,
        secret_uids=generated_secret_uids(backend),
    )
    job = workload(desired, "Job", job_name)
    assert job is not None
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE
    assert job_name in desired.waiting["api"]


def test_after_migrations_succeed_api_and_worker_roll_to_the_desired_image() -> None:
    body, children, job_name = _upgrade("Complete")
    desired = plan(body, *children)
    assert image_of(workload(desired, "Deployment", "shop-api")) == NEW_IMAGE
    assert image_of(workload(desired, "Deployment", "shop-worker")) == NEW_IMAGE
    assert workload(desired, "Job", job_name) is not None, "the Job stays desired: its success is the record"
    assert "api" not in desired.waiting
    assert desired.problems == []


def test_failed_migrations_are_a_problem_naming_the_job_and_the_fix() -> None:
    body, children, job_name = _upgrade("Failed")
    desired = plan(body, *children)
    assert [p.reason for p in desired.problems] == ["MigrationsFailed"]
    message = desired.problems[0].message
    assert f"Job {job_name} failed" in message
    assert f"kubectl logs job/{job_name}" in message
    assert "spec.api.migrations" in message


@pytest.mark.parametrize("job_state", ["Absent", "Running", "Failed"])
def test_on_first_deploy_the_api_and_worker_are_held_until_migrations_succeed(job_state: str) -> None:
    body = edited(example_body(), with_worker)
    backend = parse(body)
    job = api.build_migrations_job(backend)
    # The database is up: only the migrations hold the api back.
    children = [ready_statefulset(postgres.build_postgres_statefulset(backend))]
    if job_state == "Running":
        children.append(running_job(job))
    elif job_state == "Failed":
        children.append(finished_job(job, "Failed"))
    desired = plan(body, *children)

    workload_keys = keys(desired.workloads)
    assert ("Deployment", "shop-api") not in workload_keys
    assert ("Deployment", "shop-worker") not in workload_keys
    assert ("Job", api.migrations_job_name(backend)) in workload_keys
    assert "migrations" in desired.waiting["api"]


def test_on_first_deploy_the_api_is_created_once_migrations_succeed() -> None:
    body = edited(example_body(), with_worker)
    backend = parse(body)
    desired = plan(body, finished_job(api.build_migrations_job(backend), "Complete"))
    assert image_of(workload(desired, "Deployment", "shop-api")) == OLD_IMAGE
    assert image_of(workload(desired, "Deployment", "shop-worker")) == OLD_IMAGE


@pytest.mark.parametrize(
    ("job_state", "old_job_deleted"),
    [
        pytest.param("Absent", False, id="absent"),
        pytest.param("Running", False, id="running"),
        pytest.param("Failed", False, id="failed"),
        pytest.param("Complete", True, id="complete"),
    ],
)
def test_old_migration_jobs_are_deleted_only_once_the_current_one_completed(
    job_state: str, old_job_deleted: bool
) -> None:
    body, children, job_name = _upgrade(job_state)
    old_backend = parse(edited(body, with_image(OLD_IMAGE)))
    old_job_name = api.migrations_job_name(old_backend, secret_uids=generated_secret_uids(old_backend))
    assert old_job_name is not None
    assert old_job_name != job_name
    assert ("Job", old_job_name) in {(c["kind"], c["metadata"]["name"]) for c in children}

    desired = plan(body, *children)
    expected = [("batch/v1", "Job", old_job_name)] if old_job_deleted else []
    assert desired.obsolete == expected


def test_removing_migrations_deletes_their_jobs_and_releases_the_api() -> None:
    body = example_body()
    children = running_stack(parse(body))
    job = next(c for c in children if c["kind"] == "Job")
    desired = plan(edited(body, without_migrations), *children)
    assert desired.obsolete == [("batch/v1", "Job", job["metadata"]["name"])]
    assert "api" not in desired.waiting


def test_migrations_job_waits_for_the_postgres_primary_on_first_deploy() -> None:
    body = example_body()
    backend = parse(body)
    not_ready = plan(body, unready_statefulset(postgres.build_postgres_statefulset(backend)))
    assert ("Job", api.migrations_job_name(backend)) not in keys(not_ready.workloads)
    assert "api" in not_ready.waiting

    ready = plan(body, ready_statefulset(postgres.build_postgres_statefulset(backend)))
    assert ("Job", api.migrations_job_name(backend)) in keys(ready.workloads)


# ---- obsolete children ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            lambda spec: spec.pop("worker"),
            [("apps/v1", "Deployment", "shop-worker"), ("policy/v1", "PodDisruptionBudget", "shop-worker")],
            id="worker-removed",
        ),
        pytest.param(
            lambda spec: spec["api"].pop("ingress"),
            [("networking.k8s.io/v1", "Ingress", "shop-api")],
            id="ingress-removed",
        ),
        pytest.param(
            without_redis,
            [
                ("v1", "ConfigMap", "shop-redis-config"),
                ("networking.k8s.io/v1", "NetworkPolicy", "shop-redis"),
                ("v1", "Service", "shop-redis"),
                ("v1", "Service", "shop-redis-headless"),
                ("apps/v1", "StatefulSet", "shop-redis"),
            ],
            id="redis-disabled",
        ),
        pytest.param(
            without_postgres,
            [
                ("v1", "ConfigMap", "shop-postgres-config"),
                ("networking.k8s.io/v1", "NetworkPolicy", "shop-postgres"),
                ("policy/v1", "PodDisruptionBudget", "shop-postgres"),
                ("v1", "Service", "shop-postgres-headless"),
                ("v1", "Service", "shop-postgres-ro"),
                ("v1", "Service", "shop-postgres-rw"),
                ("apps/v1", "StatefulSet", "shop-postgres"),
            ],
            id="postgres-disabled",
        ),
        pytest.param(lambda spec: None, [], id="nothing-changed"),
    ],
)
def test_managed_children_no_longer_wanted_are_obsolete_but_secrets_never(
    edit: Callable[[dict[str, Any]], object], expected: list[tuple[str, str, str]]
) -> None:
    body = edited(full_body(), without_migrations)
    children = running_stack(parse(body))
    desired = plan(edited(body, edit), *children)
    assert desired.obsolete == expected
    assert "Secret" not in {kind for _, kind, _ in desired.obsolete}
    assert desired.secrets_to_generate == []


def test_children_being_deleted_are_not_deleted_again() -> None:
    body = edited(full_body(), without_migrations)
    backend = parse(body)
    children = [
        c
        for c in running_stack(backend)
        if (c["kind"], c["metadata"]["name"]) != ("Deployment", "shop-worker")
    ]
    worker_deployment = worker.build_worker_deployment(backend, replicas=2)
    assert worker_deployment is not None
    children.append(being_deleted(ready_deployment(worker_deployment)))
    desired = plan(edited(body, lambda spec: spec.pop("worker")), *children)
    assert desired.obsolete == [("policy/v1", "PodDisruptionBudget", "shop-worker")]


def test_a_secret_of_a_disabled_service_is_kept() -> None:
    body = example_body()
    secret = stored(redis.build_redis_secret(parse(body), existing_data=None, random_bytes=bytes(32)))
    desired = plan(edited(body, without_redis), secret)
    assert desired.obsolete == []


def test_the_data_services_run_the_images_they_are_given_and_the_app_keeps_its_own() -> None:
    """The operator's image settings reach every PostgreSQL and Redis container, and nothing else."""
    body = example_body("full.yaml")
    backend = parse(body)
    mirror = DataServiceImages(
        postgres="mirror.example/library/postgres:{version}", redis="mirror.example/library/redis:{version}"
    )
    desired = desired_state(backend, snapshot(body, *running_stack(backend)), images=mirror)

    def images(manifest: Manifest) -> set[str]:
        pod = manifest["spec"]["template"]["spec"]
        return {container["image"] for container in [*pod.get("initContainers", []), *pod["containers"]]}

    assert {m["metadata"]["name"]: images(m) for m in desired.workloads} == {
        "shop-api": {"registry.example.com/sbo-sample-app:0.1.0"},
        "shop-worker": {"registry.example.com/sbo-sample-app:0.1.0"},
        "shop-postgres": {"mirror.example/library/postgres:16"},
        "shop-redis": {"mirror.example/library/redis:7.2"},
        **{m["metadata"]["name"]: images(m) for m in desired.workloads if m["kind"] == "Job"},
    }
    assert all(
        images(m) == {"registry.example.com/sbo-sample-app:0.1.0"}
        for m in desired.workloads
        if m["kind"] == "Job"
    )


def test_the_operators_pods_widen_only_the_postgres_policy() -> None:
    """The operator's own pods (its settings) reach PostgreSQL's policy and no other child."""
    body = edited(example_body("full.yaml"), lambda spec: spec.update(networkPolicies={"egress": True}))
    backend = parse(body)
    current = snapshot(body, *running_stack(backend))
    operator_pods = OperatorPods(namespace="sbo-system", labels={"app.kubernetes.io/instance": "sbo"})
    without = desired_state(backend, current)
    with_operator = desired_state(backend, current, operator_pods=operator_pods)

    def by_name(desired: DesiredState) -> dict[tuple[str, str], Manifest]:
        return {(m["kind"], m["metadata"]["name"]): m for m in [*desired.foundation, *desired.workloads]}

    before, after = by_name(without), by_name(with_operator)
    assert before.keys() == after.keys()
    assert {key for key in before if before[key] != after[key]} == {("NetworkPolicy", "shop-postgres")}
    rules = after["NetworkPolicy", "shop-postgres"]["spec"]["ingress"]
    assert rules[:-1] == before["NetworkPolicy", "shop-postgres"]["spec"]["ingress"]
    assert rules[-1]["from"] == [operator_pods.peer()]
