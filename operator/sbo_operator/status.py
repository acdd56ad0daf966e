"""Status, computed purely from a snapshot of the children.

Conditions follow kstatus: `Ready` says the object is current; `Reconciling`
and `Stalled` are "abnormal-true" conditions, True only while work is in
flight or blocked. Each component has its own condition, and every condition
carries a CamelCase reason and a message a person can act on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sbo_operator.api.v1alpha1 import ConditionStatus, ConditionType, ScalableBackend
from sbo_operator.autoscaler.conditions import autoscaling_conditions
from sbo_operator.autoscaler.decide import Decision
from sbo_operator.builders.labels import api_selector_string
from sbo_operator.builders.names import API_SERVICE_PORT, POSTGRES_PORT, REDIS_PORT, child_names, service_host
from sbo_operator.snapshot import Snapshot


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something only a person can fix; it becomes the Stalled condition."""

    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Progress:
    """How far one workload is towards its desired state."""

    ready: bool
    replicas: int
    ready_replicas: int
    reason: str
    message: str


def deployment_progress(deployment: dict[str, Any] | None, *, name: str) -> Progress:
    """Ready when the newest ReplicaSet has every replica updated and available."""
    if deployment is None:
        return Progress(False, 0, 0, "Creating", f"Deployment {name} does not exist yet")
    spec, status = deployment.get("spec", {}), deployment.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    ready_replicas = int(status.get("readyReplicas", 0))
    if status.get("observedGeneration", 0) < deployment["metadata"].get("generation", 0):
        return Progress(
            False, replicas, ready_replicas, "Progressing", f"Deployment {name}: change not seen yet"
        )
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return Progress(
                False,
                replicas,
                ready_replicas,
                "ProgressDeadlineExceeded",
                f"Deployment {name}: {condition.get('message', 'rollout is stuck')}",
            )
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    total = int(status.get("replicas", 0))
    if updated < replicas or available < replicas or total > replicas:
        return Progress(
            False,
            replicas,
            ready_replicas,
            "RollingOut",
            f"Deployment {name}: {updated}/{replicas} updated, {available}/{replicas} available",
        )
    return Progress(
        True, replicas, ready_replicas, "Available", f"Deployment {name}: {ready_replicas}/{replicas} ready"
    )


def statefulset_progress(statefulset: dict[str, Any] | None, *, name: str) -> Progress:
    """Ready when every replica is ready on the current revision."""
    if statefulset is None:
        return Progress(False, 0, 0, "Creating", f"StatefulSet {name} does not exist yet")
    spec, status = statefulset.get("spec", {}), statefulset.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    ready_replicas = int(status.get("readyReplicas", 0))
    if status.get("observedGeneration", 0) < statefulset["metadata"].get("generation", 0):
        return Progress(
            False, replicas, ready_replicas, "Progressing", f"StatefulSet {name}: change not seen yet"
        )
    if ready_replicas < replicas:
        return Progress(
            False,
            replicas,
            ready_replicas,
            "PodsNotReady",
            f"StatefulSet {name}: {ready_replicas}/{replicas} ready",
        )
    if status.get("updateRevision") and status.get("currentRevision") != status.get("updateRevision"):
        return Progress(
            False, replicas, ready_replicas, "RollingOut", f"StatefulSet {name}: rolling out a new revision"
        )
    return Progress(
        True, replicas, ready_replicas, "Available", f"StatefulSet {name}: {ready_replicas}/{replicas} ready"
    )


def job_state(job: dict[str, Any] | None) -> Literal["Absent", "Running", "Complete", "Failed"]:
    if job is None:
        return "Absent"
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return "Complete" if condition["type"] == "Complete" else "Failed"
    return "Running"


@dataclasses.dataclass(frozen=True)
class ConditionState:
    """A condition as computed, before lastTransitionTime is settled."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def _component(type: ConditionType, progress: Progress) -> ConditionState:
    status = ConditionStatus.TRUE if progress.ready else ConditionStatus.FALSE
    return ConditionState(type, status, progress.reason, progress.message)


def _disabled(type: ConditionType, field: str) -> ConditionState:
    return ConditionState(type, ConditionStatus.TRUE, "Disabled", f"{field} is not enabled; nothing to run")


def compute_status(
    backend: ScalableBackend,
    snapshot: Snapshot,
    *,
    api_replicas: int,
    applied: Sequence[str],
    waiting: Mapping[str, str],
    problems: Sequence[Problem],
    autoscaling: Mapping[Literal["api", "worker"], Decision] | None = None,
    now: str,
) -> dict[str, Any]:
    """The whole status, from the children as last seen and what this reconcile did.

    `applied` lists children written in this pass: their new state is not
    observed yet, so the backend is Reconciling rather than Ready.
    """
    names = child_names(backend)
    spec = backend.spec
    api_deployment = snapshot.child("Deployment", names.api)
    api = deployment_progress(api_deployment, name=names.api)
    components = [_component(ConditionType.API_READY, api)]
    if "api" in waiting and api.ready:
        components[0] = ConditionState(
            ConditionType.API_READY, ConditionStatus.FALSE, "MigrationsPending", waiting["api"]
        )

    status: dict[str, Any] = {
        "observedGeneration": backend.metadata.generation,
        "api": {
            "replicas": int((api_deployment or {}).get("status", {}).get("replicas", 0)),
            "readyReplicas": api.ready_replicas,
            "selector": api_selector_string(backend),
            "readySummary": f"{api.ready_replicas}/{api_replicas}",
        },
        "endpoints": {
            "api": f"http://{service_host(names.api, backend.metadata.namespace)}:{API_SERVICE_PORT}"
        },
        "secrets": {"app": names.app_secret},
    }

    if spec.worker is not None:
        worker_deployment = snapshot.child("Deployment", names.worker)
        worker = deployment_progress(worker_deployment, name=names.worker)
        components.append(_component(ConditionType.WORKER_READY, worker))
        status["worker"] = {
            "replicas": int(((worker_deployment or {}).get("status") or {}).get("replicas", 0)),
            "readyReplicas": worker.ready_replicas,
        }
    else:
        components.append(_disabled(ConditionType.WORKER_READY, "spec.worker"))
        status["worker"] = None

    if spec.redis.enabled:
        redis = statefulset_progress(snapshot.child("StatefulSet", names.redis), name=names.redis)
        components.append(_component(ConditionType.REDIS_READY, redis))
        status["redis"] = {"ready": redis.ready}
        status["endpoints"]["redis"] = f"{service_host(names.redis, backend.metadata.namespace)}:{REDIS_PORT}"
        status["secrets"]["redis"] = names.redis
    else:
        # None, not absent: a merge patch deletes only keys set to null.
        components.append(_disabled(ConditionType.REDIS_READY, "spec.redis"))
        status["redis"] = None
        status["endpoints"]["redis"] = None
        status["secrets"]["redis"] = None

    if spec.postgres.enabled:
        namespace = backend.metadata.namespace
        primary = statefulset_progress(
            snapshot.child("StatefulSet", names.postgres_primary), name=names.postgres_primary
        )
        replicas = statefulset_progress(
            snapshot.child("StatefulSet", names.postgres_replica), name=names.postgres_replica
        )
        wanted_replicas = spec.postgres.read_replicas
        if not primary.ready:
            postgres = _component(ConditionType.POSTGRES_READY, primary)
        elif wanted_replicas and not replicas.ready:
            message = waiting.get("postgres", replicas.message)
            postgres = ConditionState(
                ConditionType.POSTGRES_READY, ConditionStatus.FALSE, replicas.reason, message
            )
        else:
            postgres = ConditionState(
                ConditionType.POSTGRES_READY,
                ConditionStatus.TRUE,
                "Available",
                f"primary ready, {replicas.ready_replicas}/{wanted_replicas} read replicas ready",
            )
        components.append(postgres)
        status["postgres"] = {"primaryReady": primary.ready, "readyReplicas": replicas.ready_replicas}
        status["endpoints"]["postgresReadWrite"] = (
            f"{service_host(names.postgres_read_write, namespace)}:{POSTGRES_PORT}"
        )
        status["endpoints"]["postgresReadOnly"] = (
            f"{service_host(names.postgres_read_only, namespace)}:{POSTGRES_PORT}"
        )
        status["secrets"]["postgres"] = names.postgres_secret
    else:
        components.append(_disabled(ConditionType.POSTGRES_READY, "spec.postgres"))
        status["postgres"] = None
        status["endpoints"]["postgresReadWrite"] = None
        status["endpoints"]["postgresReadOnly"] = None
        status["secrets"]["postgres"] = None

    if all(value is None for value in status["secrets"].values()):
        status["secrets"] = None
    status["conditions"] = _summarise(components, applied=applied, problems=problems)
    status["autoscaling"], autoscaling_conditions = _autoscaling(autoscaling or {})
    status["conditions"].extend(autoscaling_conditions)
    return status


def _autoscaling(
    decisions: Mapping[Literal["api", "worker"], Decision],
) -> tuple[dict[str, Any] | None, list[ConditionState]]:
    """status.autoscaling.<component> and the autoscaler's conditions.

    The autoscaler's memory (its history) stays in the operator, so the
    status changes only when a decision does.
    """
    if not decisions:
        return None, []
    report: dict[str, Any] = {}
    conditions: list[ConditionState] = []
    for component, decision in sorted(decisions.items()):
        report[component] = decision.to_status().model_dump(
            mode="json", by_alias=True, exclude={"history"}, exclude_none=True
        )
        for condition in autoscaling_conditions(decision):
            type = str(condition.type) if component == "api" else f"Worker{condition.type}"
            conditions.append(
                ConditionState(type, ConditionStatus(condition.status), condition.reason, condition.message)
            )
    return report, conditions


def _summarise(
    components: list[ConditionState], *, applied: Sequence[str], problems: Sequence[Problem]
) -> list[ConditionState]:
    """Ready, Reconciling and Stalled, followed by one condition per component."""
    not_ready = [c for c in components if c.status != ConditionStatus.TRUE]
    if problems:
        first = problems[0]
        stalled = ConditionState(ConditionType.STALLED, ConditionStatus.TRUE, first.reason, first.message)
        reconciling = ConditionState(
            ConditionType.RECONCILING,
            ConditionStatus.FALSE,
            first.reason,
            "blocked until the problem is fixed",
        )
        ready = ConditionState(ConditionType.READY, ConditionStatus.FALSE, first.reason, first.message)
    else:
        stalled = ConditionState(
            ConditionType.STALLED, ConditionStatus.FALSE, "NoProblems", "nothing blocks progress"
        )
        if applied:
            message = f"applied {len(applied)} change(s): {', '.join(applied[:5])}" + (
                "..." if len(applied) > 5 else ""
            )
            reconciling = ConditionState(ConditionType.RECONCILING, ConditionStatus.TRUE, "Applying", message)
            ready = ConditionState(ConditionType.READY, ConditionStatus.FALSE, "Applying", message)
        elif not_ready:
            first_waiting = not_ready[0]
            message = "; ".join(c.message for c in not_ready)
            reconciling = ConditionState(
                ConditionType.RECONCILING, ConditionStatus.TRUE, first_waiting.reason, message
            )
            ready = ConditionState(ConditionType.READY, ConditionStatus.FALSE, first_waiting.reason, message)
        else:
            reconciling = ConditionState(
                ConditionType.RECONCILING,
                ConditionStatus.FALSE,
                "Reconciled",
                "every component is up to date",
            )
            ready = ConditionState(
                ConditionType.READY, ConditionStatus.TRUE, "Ready", "every component is ready"
            )
    return [ready, reconciling, stalled, *components]


def settle_conditions(
    previous: Sequence[Mapping[str, Any]],
    current: Sequence[ConditionState],
    *,
    now: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Conditions as stored: lastTransitionTime moves only when the status flips."""
    before = {c.get("type"): c for c in previous}
    settled = []
    for condition in current:
        old = before.get(condition.type)
        unchanged = old is not None and old.get("status") == condition.status
        entry: dict[str, Any] = {
            "type": str(condition.type),
            "status": str(condition.status),
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": old.get("lastTransitionTime", now) if old and unchanged else now,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        settled.append(entry)
    return settled
