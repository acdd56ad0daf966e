"""How far a child workload is towards its desired state, read from its status. Pure.

Components read their workloads' progress here, both to decide what may start
(read replicas wait for the primary, the api for its migrations) and to say
how they are in the status.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from sbo_operator.api.conditions import Reason

__all__ = ["JobState", "Progress", "deployment_progress", "job_state", "statefulset_progress"]

JobState = Literal["Absent", "Running", "Complete", "Failed"]


@dataclasses.dataclass(frozen=True)
class Progress:
    """How far one workload is towards its desired state."""

    ready: bool
    replicas: int
    ready_replicas: int
    reason: Reason
    message: str


def deployment_progress(deployment: dict[str, Any] | None, *, name: str) -> Progress:
    """Ready when the newest ReplicaSet has every replica updated and available."""
    if deployment is None:
        return Progress(False, 0, 0, Reason.CREATING, f"Deployment {name} does not exist yet")
    spec, status = deployment.get("spec", {}), deployment.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    ready_replicas = int(status.get("readyReplicas", 0))
    if status.get("observedGeneration", 0) < deployment["metadata"].get("generation", 0):
        return Progress(
            False, replicas, ready_replicas, Reason.PROGRESSING, f"Deployment {name}: change not seen yet"
        )
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return Progress(
                False,
                replicas,
                ready_replicas,
                Reason.PROGRESS_DEADLINE_EXCEEDED,
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
            Reason.ROLLING_OUT,
            f"Deployment {name}: {updated}/{replicas} updated, {available}/{replicas} available",
        )
    return Progress(
        True,
        replicas,
        ready_replicas,
        Reason.AVAILABLE,
        f"Deployment {name}: {ready_replicas}/{replicas} ready",
    )


def statefulset_progress(statefulset: dict[str, Any] | None, *, name: str) -> Progress:
    """Ready when every replica is ready on the current revision."""
    if statefulset is None:
        return Progress(False, 0, 0, Reason.CREATING, f"StatefulSet {name} does not exist yet")
    spec, status = statefulset.get("spec", {}), statefulset.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    ready_replicas = int(status.get("readyReplicas", 0))
    if status.get("observedGeneration", 0) < statefulset["metadata"].get("generation", 0):
        return Progress(
            False, replicas, ready_replicas, Reason.PROGRESSING, f"StatefulSet {name}: change not seen yet"
        )
    if ready_replicas < replicas:
        return Progress(
            False,
            replicas,
            ready_replicas,
            Reason.PODS_NOT_READY,
            f"StatefulSet {name}: {ready_replicas}/{replicas} ready",
        )
    if status.get("updateRevision") and status.get("currentRevision") != status.get("updateRevision"):
        return Progress(
            False,
            replicas,
            ready_replicas,
            Reason.ROLLING_OUT,
            f"StatefulSet {name}: rolling out a new revision",
        )
    return Progress(
        True,
        replicas,
        ready_replicas,
        Reason.AVAILABLE,
        f"StatefulSet {name}: {ready_replicas}/{replicas} ready",
    )


def job_state(job: dict[str, Any] | None) -> JobState:
    """Complete or Failed once the Job says so; Absent if there is none."""
    if job is None:
        return "Absent"
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return "Complete" if condition["type"] == "Complete" else "Failed"
    return "Running"
