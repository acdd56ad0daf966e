"""The backups component: WAL archiving and base backups of PostgreSQL, and recovery from them.

The instances themselves are wired by the PostgreSQL builders (``builders.backup``); this
component lists the Secrets the object stores need (a missing one holds the StatefulSet back, and
the condition names it), and reports: status.postgres.backup (through :func:`backup_status`,
which the PostgreSQL component places) and the ``ContinuousArchiving`` condition, both from what
the primary answered the operator's SQL probe (``postgres_backup.ArchiveState``). When no primary
answered in this pass, what the status already shows stands: a probe gap is not a change.

Under a write load the primary archives a WAL file every ``archive_timeout``; reporting each one
would write the status as often. So ``lastArchivedWAL``/``At`` move on only once the newest file
is ``snapshot.archive_status_interval`` (``SBO_POSTGRES_ARCHIVE_STATUS_SECONDS``) newer than the
one shown, or when the condition's status or reason changes; the exact time is the metric
``sbo_postgres_last_archived_timestamp_seconds`` (:func:`exact_backup_status`).

``ContinuousArchiving`` does not gate Ready: a backend whose archiving fails still serves; the
condition and its alert say what to fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sbo_operator.api.conditions import ConditionState, ConditionStatus, ConditionType, Reason
from sbo_operator.api.v1alpha1 import BackupStatus, BaseBackupStatus, ScalableBackend
from sbo_operator.api.v1alpha1.backup import ObjectStoreSpec
from sbo_operator.builders.backup import build_recovery_check_job
from sbo_operator.builders.labels import Component as ComponentLabel
from sbo_operator.builders.names import child_names
from sbo_operator.builders.postgres import CONFIG_DIR as POSTGRES_CONFIG_DIR
from sbo_operator.components.base import Component, OperatorInputs, Plan, Problem, StatusFragment, present
from sbo_operator.postgres_backup import ArchiveState
from sbo_operator.recovery_check import RecoveryVerdict
from sbo_operator.references import Reference
from sbo_operator.snapshot import Snapshot

__all__ = [
    "Backup",
    "archive_state",
    "archiving_failing",
    "backup_status",
    "exact_backup_status",
    "recovery_condition",
    "recovery_hold",
    "store_references",
]


def store_references(field: str, store: ObjectStoreSpec) -> Iterator[Reference]:
    """The Secret keys an object store's clients read: the access key, a token, a CA bundle."""
    credentials = store.credentials
    for key_field, key in (
        ("accessKeyIdKey", credentials.access_key_id_key),
        ("secretAccessKeyKey", credentials.secret_access_key_key),
        ("sessionTokenKey", credentials.session_token_key),
    ):
        if key is not None:
            yield Reference(f"{field}.credentials.{key_field}", "Secret", credentials.secret_name, key)
    if store.ca is not None:
        yield Reference(f"{field}.ca.key", "Secret", store.ca.secret_name, store.ca.key)


def archive_state(snapshot: Snapshot) -> ArchiveState | None:
    """What the primary (reachable, not in recovery) answered in this pass; None if none did."""
    for _, probe in sorted(snapshot.probes.items()):
        if probe.reachable and probe.in_recovery is False and probe.archive is not None:
            return probe.archive
    return None


def _stored(snapshot: Snapshot) -> Mapping[str, Any]:
    status = snapshot.backend.get("status") or {}
    return (status.get("postgres") or {}).get("backup") or {}


def _from_state(state: ArchiveState, destination: str) -> BackupStatus:
    record = state.last_backup
    if record is not None and record.destination not in (None, destination):
        record = None  # the recovery source's, restored with the data: not this backend's backup
    last = None
    if record is not None:
        last = BaseBackupStatus(
            name=record.name,
            started_at=record.started_at,
            completed_at=record.completed_at,
            begin_lsn=record.begin_lsn,
            end_lsn=record.end_lsn,
        )
    return BackupStatus(
        last_successful_backup=last,
        first_recoverability_point=None if record is None else record.first_recoverability_point,
        last_archived_wal=state.last_archived_wal,
        last_archived_at=state.last_archived_at,
        last_failed_wal=state.last_failed_wal,
        last_failed_at=state.last_failed_at,
    )


def exact_backup_status(backend: ScalableBackend, snapshot: Snapshot) -> BackupStatus | None:
    """The backups' state: from the primary's answer, else as stored; None without backups."""
    if backend.spec.postgres.backup is None:
        return None
    state = archive_state(snapshot)
    if state is not None:
        return _from_state(state, backend.spec.postgres.backup.destination)
    return BackupStatus.model_validate(_stored(snapshot))


def backup_status(backend: ScalableBackend, snapshot: Snapshot) -> BackupStatus | None:
    """status.postgres.backup: the exact state, but for lastArchivedWAL/At, which keep the stored
    file until the newest is ``snapshot.archive_status_interval`` newer, while the condition's
    status and reason hold (stored, exact, and as the fields shown would give it)."""
    exact = exact_backup_status(backend, snapshot)
    if exact is None or exact.last_archived_at is None:
        return exact
    stored = BackupStatus.model_validate(_stored(snapshot))
    if stored.last_archived_at is None or stored.last_archived_wal is None:
        return exact
    age = exact.last_archived_at - stored.last_archived_at
    if not timedelta(0) <= age < snapshot.archive_status_interval:
        return exact
    shown = exact.model_copy(
        update={"last_archived_wal": stored.last_archived_wal, "last_archived_at": stored.last_archived_at}
    )
    condition = _archiving_kind(exact)
    if _stored_condition_kind(snapshot) != condition or _archiving_kind(shown) != condition:
        return exact
    return shown


def archiving_failing(status: BackupStatus) -> bool:
    """The last attempt to archive a WAL file failed (none succeeded since)."""
    return status.last_failed_at is not None and (
        status.last_archived_at is None or status.last_failed_at > status.last_archived_at
    )


def _archiving_kind(status: BackupStatus) -> tuple[ConditionStatus, Reason]:
    """ContinuousArchiving's status and reason for a backend with backups on."""
    if status.last_failed_at is not None and archiving_failing(status):
        return ConditionStatus.FALSE, Reason.ARCHIVING_FAILING
    if status.last_archived_wal is None:
        return ConditionStatus.UNKNOWN, Reason.ARCHIVING_PENDING
    return ConditionStatus.TRUE, Reason.ARCHIVING


def _stored_condition_kind(snapshot: Snapshot) -> tuple[str, str] | None:
    conditions = (snapshot.backend.get("status") or {}).get("conditions") or ()
    for condition in conditions:
        if condition.get("type") == ConditionType.CONTINUOUS_ARCHIVING:
            return condition.get("status"), condition.get("reason")
    return None


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _verdict_message(backend: ScalableBackend, verdict: RecoveryVerdict) -> str:
    """Why the target cannot be reached, and the fix (bootstrap is immutable)."""
    recovery = backend.spec.postgres.bootstrap.recovery if backend.spec.postgres.bootstrap else None
    source = recovery.source.destination if recovery else "the source"
    if verdict.reason == Reason.RECOVERY_CHECK_FAILED:
        return verdict.message
    first = verdict.first_recoverability_point
    if verdict.reason == Reason.RECOVERY_SOURCE_EMPTY:
        fix = f"take a base backup into {source} first, then create a new ScalableBackend restoring from it"
    elif first is not None:
        fix = f"create a new ScalableBackend with a target at or after the first recoverability point {first}"
    else:
        fix = "create a new ScalableBackend with another target"
    return f"{verdict.message}; {fix} (bootstrap is immutable)"


def recovery_hold(backend: ScalableBackend, snapshot: Snapshot) -> str | None:
    """Why the instances' StatefulSet is not created yet; None to go ahead.

    Only before it exists: once created (restored, or restoring), nothing holds it again."""
    postgres = backend.spec.postgres
    if not postgres.enabled or postgres.bootstrap is None or postgres.bootstrap.recovery is None:
        return None
    if snapshot.child("StatefulSet", child_names(backend).postgres_instances) is not None:
        return None
    verdict = snapshot.recovery
    if verdict is None:
        return f"checking the recovery target against {postgres.bootstrap.recovery.source.destination}"
    if verdict.recoverable:
        return None
    return _verdict_message(backend, verdict)


def recovery_condition(backend: ScalableBackend, snapshot: Snapshot) -> ConditionState | None:
    """PostgresReady while a restored backend's instances are held for the recovery check."""
    hold = recovery_hold(backend, snapshot)
    if hold is None:
        return None
    verdict = snapshot.recovery
    reason = Reason.RECOVERING if verdict is None or verdict.reason is None else verdict.reason
    return ConditionState(ConditionType.POSTGRES_READY, ConditionStatus.FALSE, reason, hold)


def _reported_before(snapshot: Snapshot) -> bool:
    conditions = (snapshot.backend.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == ConditionType.CONTINUOUS_ARCHIVING for c in conditions)


def _archiving_condition(backend: ScalableBackend, snapshot: Snapshot) -> ConditionState | None:
    backup = backend.spec.postgres.backup
    if backup is None or not backend.spec.postgres.enabled:
        if not _reported_before(snapshot):
            return None  # never had backups: nothing to say
        return ConditionState(
            ConditionType.CONTINUOUS_ARCHIVING,
            ConditionStatus.FALSE,
            Reason.BACKUPS_DISABLED,
            "spec.postgres.backup is not set: no WAL is archived and no base backup taken",
        )
    status = backup_status(backend, snapshot)
    assert status is not None  # backups are on
    if status.last_failed_at is not None and archiving_failing(status):
        since = "nothing archived yet"
        if status.last_archived_wal is not None and status.last_archived_at is not None:
            since = f"last archived: {status.last_archived_wal} at {_time(status.last_archived_at)}"
        return ConditionState(
            ConditionType.CONTINUOUS_ARCHIVING,
            ConditionStatus.FALSE,
            Reason.ARCHIVING_FAILING,
            f"archiving WAL {status.last_failed_wal} to {backup.destination} failed at "
            f"{_time(status.last_failed_at)} ({since}); the primary's log has "
            "barman-cloud-wal-archive's error (credentials, endpoint, bucket); WAL is kept until it succeeds",
        )
    if status.last_archived_wal is None:
        return ConditionState(
            ConditionType.CONTINUOUS_ARCHIVING,
            ConditionStatus.UNKNOWN,
            Reason.ARCHIVING_PENDING,
            f"no WAL archived to {backup.destination} yet",
        )
    return ConditionState(
        ConditionType.CONTINUOUS_ARCHIVING,
        ConditionStatus.TRUE,
        Reason.ARCHIVING,
        f"WAL is archived to {backup.destination}",
    )


class Backup(Component):
    label = ComponentLabel.BACKUP

    def plan(self, backend: ScalableBackend, snapshot: Snapshot, *, operator: OperatorInputs) -> Plan:
        """The recovery check Job, while a restored backend's instances wait for its verdict."""
        if recovery_hold(backend, snapshot) is None:
            return Plan()  # not restoring, or past the check: a finished Job is deleted
        job = build_recovery_check_job(backend, images=operator.images, config_dir=POSTGRES_CONFIG_DIR)
        verdict = snapshot.recovery
        problems = []
        if verdict is not None and verdict.reason is not None:
            problems.append(Problem(verdict.reason, _verdict_message(backend, verdict)))
        return Plan(manifests=present(job), problems=problems)

    def references(self, backend: ScalableBackend) -> Iterator[Reference]:
        postgres = backend.spec.postgres
        if not postgres.enabled:
            return
        if postgres.backup is not None:
            yield from store_references("spec.postgres.backup", postgres.backup)
        if postgres.bootstrap is not None and postgres.bootstrap.recovery is not None:
            source = postgres.bootstrap.recovery.source
            yield from store_references("spec.postgres.bootstrap.recovery.source", source)

    def status(
        self, backend: ScalableBackend, snapshot: Snapshot, waiting: str | None
    ) -> StatusFragment | None:
        condition = _archiving_condition(backend, snapshot)
        if condition is None:
            return None
        return StatusFragment(condition, gates_ready=False)
