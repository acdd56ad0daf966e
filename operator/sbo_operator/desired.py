"""The desired children of one ScalableBackend, given what exists now. Pure.

Builders say what each child looks like; this module decides which children
should exist *now*, and in what order:

* read replicas are created only once the primary is ready;
* with migrations, the api and worker roll to a new image only after the
  migrations Job for that image has succeeded; until then they keep running
  the image they have;
* Secrets are generated only when missing, and never applied again;
* managed children that are no longer wanted (a removed worker, ingress or
  Redis) are deleted. Secrets are kept, so that credentials are never lost.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import api, network_policies, postgres, redis, worker
from sbo_operator.builders.names import child_names
from sbo_operator.snapshot import Snapshot
from sbo_operator.status import Problem, job_state, statefulset_progress

Manifest = dict[str, Any]
GeneratedSecret = Literal["app", "postgres", "redis"]

# Applied first, so that workloads find their config, Secrets and Services.
FOUNDATION_KINDS = frozenset(
    {"ConfigMap", "Secret", "ServiceAccount", "Service", "NetworkPolicy", "PodDisruptionBudget", "Ingress"}
)


@dataclasses.dataclass(frozen=True)
class DesiredState:
    foundation: list[Manifest]
    workloads: list[Manifest]
    secrets_to_generate: list[GeneratedSecret]
    obsolete: list[tuple[str, str, str]]  # (apiVersion, kind, name) to delete
    waiting: dict[str, str]  # component -> why its rollout is held back
    problems: list[Problem]


def desired_state(
    backend: ScalableBackend, snapshot: Snapshot, *, api_replicas: int, worker_replicas: int | None
) -> DesiredState:
    names = child_names(backend)
    waiting: dict[str, str] = {}
    problems: list[Problem] = []
    held: set[tuple[str, str]] = set()

    api_image, worker_image, migration_jobs = _migrations(backend, snapshot, waiting, problems)

    wanted: list[Manifest | None] = [
        api.build_app_service_account(backend),
        api.build_api_service(backend),
        api.build_api_pdb(backend),
        api.build_api_ingress(backend),
        worker.build_worker_pdb(backend),
        redis.build_redis_config_map(backend),
        redis.build_redis_service(backend),
        redis.build_redis_statefulset(backend),
        network_policies.build_redis_network_policy(backend),
        postgres.build_postgres_config_map(backend),
        postgres.build_postgres_read_write_service(backend),
        postgres.build_postgres_read_only_service(backend),
        postgres.build_postgres_primary_statefulset(backend),
        postgres.build_postgres_primary_pdb(backend),
        postgres.build_postgres_replica_pdb(backend),
        network_policies.build_postgres_network_policy(backend),
        *migration_jobs,
    ]

    replicas = postgres.build_postgres_replica_statefulset(backend)
    if replicas is not None:
        primary = snapshot.child("StatefulSet", names.postgres_primary)
        if statefulset_progress(primary, name=names.postgres_primary).ready or snapshot.child(
            "StatefulSet", names.postgres_replica
        ):
            wanted.append(replicas)
        else:
            waiting["postgres"] = "read replicas start once the primary is ready"

    if api_image is not None:
        wanted.append(api.build_api_deployment(backend, replicas=api_replicas, image=api_image or None))
    else:
        held.add(("Deployment", names.api))
    if worker_replicas is not None:
        if worker_image is not None:
            wanted.append(
                worker.build_worker_deployment(backend, replicas=worker_replicas, image=worker_image or None)
            )
        else:
            held.add(("Deployment", names.worker))

    manifests = [m for m in wanted if m is not None]
    wanted_keys = {(m["kind"], m["metadata"]["name"]) for m in manifests} | held

    secrets_to_generate: list[GeneratedSecret] = []
    if snapshot.child("Secret", names.app_secret) is None:
        secrets_to_generate.append("app")
    if backend.spec.postgres.enabled and snapshot.child("Secret", names.postgres_secret) is None:
        secrets_to_generate.append("postgres")
    if backend.spec.redis.enabled and snapshot.child("Secret", names.redis) is None:
        secrets_to_generate.append("redis")

    obsolete = [
        (child["apiVersion"], kind, name)
        for (kind, name), child in sorted(snapshot.children.items())
        if (kind, name) not in wanted_keys
        and kind != "Secret"
        and not (kind == "Job" and waiting.get("api"))  # keep the old Jobs until the new one succeeded
        and not child["metadata"].get("deletionTimestamp")
    ]
    return DesiredState(
        foundation=[m for m in manifests if m["kind"] in FOUNDATION_KINDS],
        workloads=[m for m in manifests if m["kind"] not in FOUNDATION_KINDS],
        secrets_to_generate=secrets_to_generate,
        obsolete=obsolete,
        waiting=waiting,
        problems=problems,
    )


def _migrations(
    backend: ScalableBackend, snapshot: Snapshot, waiting: dict[str, str], problems: list[Problem]
) -> tuple[str | None, str | None, list[Manifest | None]]:
    """The images the api and worker may run now ("" = the desired one, None = hold), and the Job."""
    job_name = api.migrations_job_name(backend)
    if job_name is None:
        return "", "", []
    state = job_state(snapshot.child("Job", job_name))
    if state == "Complete":
        return "", "", [api.build_migrations_job(backend)]

    names = child_names(backend)
    if state == "Absent" and backend.spec.postgres.enabled:
        # A Job started before its database would fail, and a failed Job
        # stays failed: its name is fixed by its pod template.
        primary = snapshot.child("StatefulSet", names.postgres_primary)
        if not statefulset_progress(primary, name=names.postgres_primary).ready:
            waiting["api"] = f"migrations Job {job_name} starts once the PostgreSQL primary is ready"
            return (
                _current_image(snapshot.child("Deployment", names.api)),
                _current_image(snapshot.child("Deployment", names.worker)),
                [],
            )
    if state == "Failed":
        problems.append(
            Problem(
                "MigrationsFailed",
                f"Job {job_name} failed, so the new image is not rolled out; "
                f"see `kubectl logs job/{job_name}`, then fix the image or spec.api.migrations",
            )
        )
    waiting["api"] = f"waiting for migrations Job {job_name} to succeed before rolling out"
    return (
        _current_image(snapshot.child("Deployment", names.api)),
        _current_image(snapshot.child("Deployment", names.worker)),
        [api.build_migrations_job(backend)],
    )


def _current_image(deployment: Manifest | None) -> str | None:
    """The image a Deployment runs now; None if it does not exist yet."""
    if deployment is None:
        return None
    containers = deployment["spec"]["template"]["spec"]["containers"]
    image: str = containers[0]["image"]
    return image
