"""Inputs for the operator's pure decision modules: real backends, real children, faked server state.

Backends come from the examples (plus the uid and generation the apiserver adds); children come
from the real builders, stored as the apiserver would return them and compacted as the watches
keep them. Only the server-side `status` is made up here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import api, app, network_policies, postgres, redis, worker
from sbo_operator.snapshot import Snapshot, compact

REPO = Path(__file__).resolve().parents[3]
UID = "6b1f8f0e-4a47-4d0e-9d7c-0000000000aa"
RANDOM_BYTES = bytes(range(32))
NOW = "2025-01-02T03:04:05Z"

Manifest = dict[str, Any]
Body = dict[str, Any]


def example_body(name: str = "basic.yaml", *, generation: int = 3) -> Body:
    """An example ScalableBackend as the apiserver returns it: with a uid and a generation."""
    body: Body = yaml.safe_load((REPO / "examples" / name).read_text())
    body["metadata"].update(uid=UID, generation=generation, resourceVersion="100")
    return body


def edited(body: Body, *edits: Callable[[dict[str, Any]], object]) -> Body:
    """A copy of the body whose spec was changed by each of `edits`, in order."""
    changed = copy.deepcopy(body)
    for edit in edits:
        edit(changed["spec"])
    return changed


def parse(body: Body) -> ScalableBackend:
    return ScalableBackend.from_body(body)


def with_worker(spec: dict[str, Any]) -> None:
    spec["worker"] = {"replicas": 2, "command": ["python", "-m", "app.worker"]}


def with_ingress(spec: dict[str, Any]) -> None:
    spec["api"]["ingress"] = {"host": "shop.example.com"}


def without_redis(spec: dict[str, Any]) -> None:
    spec["redis"] = {"enabled": False}


def without_postgres(spec: dict[str, Any]) -> None:
    spec["postgres"] = {"enabled": False}


def without_migrations(spec: dict[str, Any]) -> None:
    spec["api"].pop("migrations", None)


def with_image(image: str) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        spec["image"] = image

    return edit


# ---- children as the server stores them -------------------------------------------------------------


def stored(
    manifest: Manifest | None, *, generation: int = 1, status: dict[str, Any] | None = None
) -> Manifest:
    """What the apiserver returns for an applied manifest: server metadata plus a status."""
    assert manifest is not None, "the builder returned no manifest for this backend"
    obj = copy.deepcopy(manifest)
    obj["metadata"].update(
        uid=f"uid-{obj['kind']}-{obj['metadata']['name']}",
        resourceVersion="7",
        generation=generation,
        creationTimestamp="2025-01-01T00:00:00Z",
        managedFields=[{"manager": "scalable-backend-operator", "operation": "Apply"}],
    )
    if status is not None:
        obj["status"] = status
    return obj


def ready_statefulset(manifest: Manifest | None) -> Manifest:
    """A StatefulSet whose every replica is ready on the current revision."""
    assert manifest is not None
    replicas = manifest["spec"]["replicas"]
    return stored(
        manifest,
        status={
            "observedGeneration": 1,
            "replicas": replicas,
            "readyReplicas": replicas,
            "currentRevision": "rev-1",
            "updateRevision": "rev-1",
        },
    )


def unready_statefulset(manifest: Manifest | None, *, ready: int = 0) -> Manifest:
    """A StatefulSet that exists but whose pods are not (all) ready yet."""
    assert manifest is not None
    return stored(
        manifest,
        status={
            "observedGeneration": 1,
            "replicas": manifest["spec"]["replicas"],
            "readyReplicas": ready,
            "currentRevision": "rev-1",
            "updateRevision": "rev-1",
        },
    )


def ready_deployment(manifest: Manifest | None) -> Manifest:
    """A Deployment whose newest ReplicaSet has every replica updated and available."""
    assert manifest is not None
    replicas = manifest["spec"]["replicas"]
    return stored(
        manifest,
        status={
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        },
    )


def finished_job(manifest: Manifest | None, outcome: str) -> Manifest:
    """A Job with a True `Complete` or `Failed` condition."""
    assert manifest is not None
    return stored(
        manifest,
        status={"conditions": [{"type": outcome, "status": "True", "reason": "Finished"}]},
    )


def running_job(manifest: Manifest | None) -> Manifest:
    assert manifest is not None
    return stored(manifest, status={"active": 1, "startTime": "2025-01-01T00:00:00Z"})


def being_deleted(obj: Manifest) -> Manifest:
    deleted = copy.deepcopy(obj)
    deleted["metadata"]["deletionTimestamp"] = "2025-01-01T00:01:00Z"
    return deleted


def generated_secrets(backend: ScalableBackend) -> list[Manifest]:
    """The Secrets the reconciler would have created for the backend."""
    secrets = [
        app.build_app_secret(backend, existing_data=None, random_bytes=RANDOM_BYTES),
        postgres.build_postgres_secret(backend, existing_data=None, random_bytes=RANDOM_BYTES),
        redis.build_redis_secret(backend, existing_data=None, random_bytes=RANDOM_BYTES),
    ]
    return [stored(secret) for secret in secrets if secret is not None]


def snapshot(body: Body, *children: Manifest) -> Snapshot:
    """The snapshot reconcile reads: the backend and its compacted children."""
    return Snapshot(
        backend=compact(body),
        children={(child["kind"], child["metadata"]["name"]): compact(child) for child in children},
    )


def running_stack(backend: ScalableBackend, *, image: str | None = None) -> list[Manifest]:
    """Every child of a backend that is up and ready, workloads running `image` (default: desired).

    With migrations, the Job for that image is Complete.
    """
    foundation = [
        api.build_app_service_account(backend),
        api.build_api_service(backend),
        api.build_api_pdb(backend),
        api.build_api_ingress(backend),
        worker.build_worker_pdb(backend),
        redis.build_redis_config_map(backend),
        redis.build_redis_service(backend),
        network_policies.build_redis_network_policy(backend),
        postgres.build_postgres_config_map(backend),
        postgres.build_postgres_read_write_service(backend),
        postgres.build_postgres_read_only_service(backend),
        postgres.build_postgres_primary_pdb(backend),
        postgres.build_postgres_replica_pdb(backend),
        network_policies.build_postgres_network_policy(backend),
    ]
    children = [*generated_secrets(backend), *(stored(m) for m in foundation if m is not None)]
    for builder in (redis.build_redis_statefulset, postgres.build_postgres_primary_statefulset):
        manifest = builder(backend)
        if manifest is not None:
            children.append(ready_statefulset(manifest))
    if backend.spec.postgres.enabled:
        children.append(ready_statefulset(postgres.build_postgres_replica_statefulset(backend)))
    children.append(
        ready_deployment(api.build_api_deployment(backend, replicas=backend.spec.api.replicas, image=image))
    )
    if backend.spec.worker is not None:
        children.append(
            ready_deployment(
                worker.build_worker_deployment(backend, replicas=backend.spec.worker.replicas, image=image)
            )
        )
    if backend.spec.api.migrations is not None:
        children.append(finished_job(api.build_migrations_job(backend, image=image), "Complete"))
    return children


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the apiserver applies a status patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
