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


@dataclasses.dataclass(frozen=True)
class _Observed:
    """A workload whose controller has seen its latest spec: its replica counts and status."""

    kind: str
    name: str
    replicas: int
    ready_replicas: int
    status: dict[str, Any]

    def progress(self, ready: bool, reason: Reason, detail: str) -> Progress:
        return Progress(
            ready, self.replicas, self.ready_replicas, reason, f"{self.kind} {self.name}: {detail}"
        )


def _observe(kind: str, workload: dict[str, Any] | None, name: str) -> _Observed | Progress:
    """The workload's counts, or its Progress already if it is absent or its change is not seen yet."""
    if workload is None:
        return Progress(False, 0, 0, Reason.CREATING, f"{kind} {name} does not exist yet")
    spec, status = workload.get("spec", {}), workload.get("status") or {}
    observed = _Observed(
        kind, name, int(spec.get("replicas", 1)), int(status.get("readyReplicas", 0)), status
    )
    if status.get("observedGeneration", 0) < workload["metadata"].get("generation", 0):
        return observed.progress(False, Reason.PROGRESSING, "change not seen yet")
    return observed


def deployment_progress(deployment: dict[str, Any] | None, *, name: str) -> Progress:
    """Ready when the newest ReplicaSet has every replica updated and available."""
    observed = _observe("Deployment", deployment, name)
    if isinstance(observed, Progress):
        return observed
    status, replicas = observed.status, observed.replicas
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return observed.progress(
                False, Reason.PROGRESS_DEADLINE_EXCEEDED, condition.get("message", "rollout is stuck")
            )
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    total = int(status.get("replicas", 0))
    if updated < replicas or available < replicas or total > replicas:
        return observed.progress(
            False, Reason.ROLLING_OUT, f"{updated}/{replicas} updated, {available}/{replicas} available"
        )
    return observed.progress(True, Reason.AVAILABLE, f"{observed.ready_replicas}/{replicas} ready")


def statefulset_progress(statefulset: dict[str, Any] | None, *, name: str) -> Progress:
    """Ready when every replica is ready on the current revision."""
    observed = _observe("StatefulSet", statefulset, name)
    if isinstance(observed, Progress):
        return observed
    status, replicas, ready_replicas = observed.status, observed.replicas, observed.ready_replicas
    if ready_replicas < replicas:
        return observed.progress(False, Reason.PODS_NOT_READY, f"{ready_replicas}/{replicas} ready")
    if status.get("updateRevision") and status.get("currentRevision") != status.get("updateRevision"):
        return observed.progress(False, Reason.ROLLING_OUT, "rolling out a new revision")
    return observed.progress(True, Reason.AVAILABLE, f"{ready_replicas}/{replicas} ready")


def job_state(job: dict[str, Any] | None) -> JobState:
    """Complete or Failed once the Job says so; Absent if there is none."""
    if job is None:
        return "Absent"
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return "Complete" if condition["type"] == "Complete" else "Failed"
    return "Running"
