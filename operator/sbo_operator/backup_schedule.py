"""Scheduled base backups: the operator keeps the clock, the primary's ``backup`` sidecar does the work.

At each tick of spec.postgres.backup.schedule (cron, UTC) the operator annotates the pod labelled
primary ``sbo.dev/backup-request: <the tick, RFC 3339>``. The sidecar reads its own annotation
through the downward API, and when it is the primary and the request is one it has not recorded,
runs base-backup.sh and records the result in the primary's ``sbo.base_backups`` table (which the
SQL probe reads into status.postgres.backup). The pods need no API access.

The invariant: a pod already carrying the latest tick is not written again, so between ticks
this costs no API write; a new primary (or a recreated pod) gets the latest tick, and the sidecar
skips a request its table already records.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from croniter import croniter  # type: ignore[import-untyped]

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders.backup import BACKUP_REQUEST_ANNOTATION
from sbo_operator.components.backup import archiving_failing, exact_backup_status
from sbo_operator.components.postgres import primary_pod
from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.snapshot import Snapshot

__all__ = [
    "BACKUP_REQUEST_ANNOTATION",
    "BackupRequest",
    "due_request",
    "latest_tick",
    "next_tick",
    "record_backup_metrics",
    "request_scheduled_backup",
]


def latest_tick(schedule: str, now: datetime) -> datetime:
    """The schedule's last time at or before ``now`` (UTC)."""
    # croniter's get_prev is strictly before its start; ticks fall on whole minutes.
    start = now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
    tick: datetime = croniter(schedule, start).get_prev(datetime)
    return tick.astimezone(UTC)


def next_tick(schedule: str, now: datetime) -> datetime:
    """The schedule's first time after ``now`` (UTC)."""
    tick: datetime = croniter(schedule, now.astimezone(UTC)).get_next(datetime)
    return tick.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class BackupRequest:
    """Annotate this pod (only while it has this uid) with this request."""

    pod: str
    uid: str
    value: str


def due_request(backend: ScalableBackend, snapshot: Snapshot, now: datetime) -> BackupRequest | None:
    """The annotation the primary's pod should get now; None when it has it, or there is none."""
    backup = backend.spec.postgres.backup
    if backup is None or not backend.spec.postgres.enabled:
        return None
    pod = primary_pod(snapshot)
    if pod is None:
        return None
    value = _stamp(latest_tick(backup.schedule, now))
    metadata = pod["metadata"]
    if (metadata.get("annotations") or {}).get(BACKUP_REQUEST_ANNOTATION) == value:
        return None
    return BackupRequest(metadata["name"], metadata.get("uid", ""), value)


def seconds_until_next(backend: ScalableBackend, now: datetime) -> float | None:
    """When to look again: the next tick (None without backups)."""
    backup = backend.spec.postgres.backup
    if backup is None or not backend.spec.postgres.enabled:
        return None
    return max(1.0, (next_tick(backup.schedule, now) - now).total_seconds())


def record_backup_metrics(
    metrics: OperatorMetrics, backend: ScalableBackend, snapshot: Snapshot, now: datetime
) -> None:
    """The backup gauges the alerts read: archiving failing, the last backup, the latest tick."""
    namespace, name = backend.metadata.namespace, backend.metadata.name
    backup = backend.spec.postgres.backup
    status = exact_backup_status(backend, snapshot)
    if backup is None or status is None or not backend.spec.postgres.enabled:
        metrics.forget_backups(namespace, name)
        return
    last = status.last_successful_backup
    completed = last.completed_at if last is not None else None
    archived = status.last_archived_at
    metrics.record_backups(
        namespace,
        name,
        failing=archiving_failing(status),
        last_backup=completed.timestamp() if completed is not None else None,
        scheduled=latest_tick(backup.schedule, now).timestamp(),
        last_archived=archived.timestamp() if archived is not None else None,
    )


async def request_scheduled_backup(
    kube: Kube, backend: ScalableBackend, snapshot: Snapshot, now: datetime
) -> float | None:
    """Annotate the primary if a tick passed; the seconds until the next tick (None: no backups)."""
    request = due_request(backend, snapshot, now)
    if request is not None:
        await kube.annotate_pod(
            backend.metadata.namespace,
            request.pod,
            request.uid,
            {BACKUP_REQUEST_ANNOTATION: request.value},
        )
    return seconds_until_next(backend, now)
