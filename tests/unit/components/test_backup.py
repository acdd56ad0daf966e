"""The backups' report: status.postgres.backup and ContinuousArchiving, from the primary's probe."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sbo_operator.backup_schedule import record_backup_metrics
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.postgres_backup import ArchiveState, BaseBackupRecord
from sbo_operator.postgres_probe import InstanceProbe
from sbo_operator.status import compute_status, status_patch
from tests.unit.factories import Body, edited, example_body, parse, running_stack, snapshot

pytestmark = pytest.mark.unit

NOW = "2026-01-31T12:00:00Z"
ARCHIVED = datetime(2026, 1, 31, 11, 0, tzinfo=UTC)
FAILED = datetime(2026, 1, 31, 11, 30, tzinfo=UTC)
BACKUP = BaseBackupRecord(
    name="20260131T030000",
    started_at=datetime(2026, 1, 31, 3, 0, tzinfo=UTC),
    completed_at=datetime(2026, 1, 31, 3, 1, tzinfo=UTC),
    begin_lsn="0/2000028",
    end_lsn="0/2000138",
    first_recoverability_point=datetime(2026, 1, 1, 3, 1, tzinfo=UTC),
)


def primary(archive: ArchiveState | None) -> InstanceProbe:
    return InstanceProbe(reachable=True, in_recovery=False, timeline=1, lsn=1, replay_lsn=1, archive=archive)


def replica() -> InstanceProbe:
    return InstanceProbe(reachable=True, in_recovery=True, timeline=1, lsn=1, replay_lsn=1)


def status_of(
    body: Body, probes: dict[str, InstanceProbe] | None = None, **settings: timedelta
) -> dict[str, Any]:
    """``settings``: the operator's, as the reconciler puts them in the snapshot."""
    backend = parse(body)
    current = snapshot(body, *running_stack(backend))
    current = dataclasses.replace(current, probes=probes or {}, **settings)
    return status_patch(
        compute_status(backend, current, applied=(), waiting={}, problems=(), previous=(), now=NOW)
    )


def archiving(status: dict[str, Any]) -> tuple[str, str, str] | None:
    for condition in status["conditions"]:
        if condition["type"] == "ContinuousArchiving":
            return condition["status"], condition["reason"], condition["message"]
    return None


def ready(status: dict[str, Any]) -> str:
    return next(c["status"] for c in status["conditions"] if c["type"] == "Ready")


def test_a_backend_that_never_had_backups_reports_no_archiving_at_all() -> None:
    status = status_of(example_body("basic.yaml"))
    assert archiving(status) is None
    assert "backup" not in status["postgres"]


def test_archiving_is_true_once_wal_reaches_the_store_and_the_status_shows_the_last_backup() -> None:
    state = ArchiveState(
        last_archived_wal="000000010000000000000003", last_archived_at=ARCHIVED, last_backup=BACKUP
    )
    status = status_of(
        example_body("backups.yaml"), {"shop-postgres-0": primary(state), "shop-postgres-1": replica()}
    )
    assert archiving(status) == ("True", "Archiving", "WAL is archived to s3://backups/shop")
    assert status["postgres"]["backup"] == {
        "lastSuccessfulBackup": {
            "name": "20260131T030000",
            "startedAt": "2026-01-31T03:00:00Z",
            "completedAt": "2026-01-31T03:01:00Z",
            "beginLSN": "0/2000028",
            "endLSN": "0/2000138",
        },
        "firstRecoverabilityPoint": "2026-01-01T03:01:00Z",
        "lastArchivedWAL": "000000010000000000000003",
        "lastArchivedAt": "2026-01-31T11:00:00Z",
        "lastFailedWAL": None,
        "lastFailedAt": None,
    }
    assert ready(status) == "True"


def test_a_failure_after_the_last_success_is_archiving_failing_naming_the_wal_and_time() -> None:
    state = ArchiveState(
        last_archived_wal="000000010000000000000003",
        last_archived_at=ARCHIVED,
        last_failed_wal="000000010000000000000004",
        last_failed_at=FAILED,
    )
    status = status_of(example_body("backups.yaml"), {"shop-postgres-0": primary(state)})
    condition = archiving(status)
    assert condition is not None
    assert condition[:2] == ("False", "ArchivingFailing")
    assert "000000010000000000000004" in condition[2]
    assert "2026-01-31T11:30:00Z" in condition[2]
    assert "000000010000000000000003 at 2026-01-31T11:00:00Z" in condition[2]
    assert ready(status) == "True", "a backend whose archiving fails still serves: the alert says so"


def test_a_success_after_a_failure_is_archiving_again() -> None:
    state = ArchiveState(
        last_archived_wal="000000010000000000000005",
        last_archived_at=FAILED.replace(minute=31),
        last_failed_wal="000000010000000000000004",
        last_failed_at=FAILED,
    )
    status = status_of(example_body("backups.yaml"), {"shop-postgres-0": primary(state)})
    assert (archiving(status) or ("",))[0] == "True"


def test_nothing_archived_yet_is_pending() -> None:
    status = status_of(example_body("backups.yaml"), {"shop-postgres-0": primary(ArchiveState())})
    assert (archiving(status) or ("", ""))[:2] == ("Unknown", "ArchivingPending")
    no_probe = status_of(example_body("backups.yaml"))
    assert (archiving(no_probe) or ("", ""))[:2] == ("Unknown", "ArchivingPending")


def test_without_an_answer_from_the_primary_the_stored_status_stands() -> None:
    body = example_body("backups.yaml")
    stored = {"lastArchivedWAL": "000000010000000000000003", "lastArchivedAt": "2026-01-31T11:00:00Z"}
    body["status"] = {"postgres": {"backup": stored}}
    status = status_of(
        body, {"shop-postgres-0": InstanceProbe(reachable=False), "shop-postgres-1": replica()}
    )
    assert status["postgres"]["backup"]["lastArchivedWAL"] == "000000010000000000000003"
    assert (archiving(status) or ("",))[0] == "True"


def test_turning_backups_off_says_so_and_drops_the_backup_status() -> None:
    def without_backup(spec: dict[str, Any]) -> None:
        del spec["postgres"]["backup"]

    body = edited(example_body("backups.yaml"), without_backup)
    body["status"] = {
        "postgres": {"backup": {"lastArchivedWAL": "000000010000000000000003"}},
        "conditions": [
            {
                "type": "ContinuousArchiving",
                "status": "True",
                "reason": "Archiving",
                "message": "",
                "lastTransitionTime": NOW,
            }
        ],
    }
    status = status_of(body)
    assert (archiving(status) or ("", ""))[:2] == ("False", "BackupsDisabled")
    assert status["postgres"]["backup"] is None, "a merge patch deletes it"
    assert ready(status) == "True"


def test_archive_state_significance_ignores_each_new_segment() -> None:
    one = ArchiveState(last_archived_wal="000000010000000000000003", last_archived_at=ARCHIVED)
    two = ArchiveState(last_archived_wal="000000010000000000000004", last_archived_at=FAILED)
    assert one.significant() == two.significant()
    failing = dataclasses.replace(
        two, last_failed_wal="000000010000000000000005", last_failed_at=FAILED.replace(minute=40)
    )
    assert failing.significant() != two.significant()
    assert dataclasses.replace(two, last_backup=BACKUP).significant() != two.significant()


def test_a_backup_recorded_for_another_destination_is_not_this_backends() -> None:
    """A database restored from another backend's archive carries that backend's record."""
    theirs = dataclasses.replace(BACKUP, destination="s3://backups/elsewhere")
    state = ArchiveState(
        last_archived_wal="000000010000000000000003", last_archived_at=ARCHIVED, last_backup=theirs
    )
    status = status_of(example_body("backups.yaml"), {"shop-postgres-0": primary(state)})
    assert status["postgres"]["backup"]["lastSuccessfulBackup"] is None
    ours = dataclasses.replace(BACKUP, destination="s3://backups/shop")
    state = dataclasses.replace(state, last_backup=ours)
    status = status_of(example_body("backups.yaml"), {"shop-postgres-0": primary(state)})
    assert status["postgres"]["backup"]["lastSuccessfulBackup"]["name"] == "20260131T030000"


# ---- the archived WAL shown moves on at most every interval ----------------------------------------

WAL_3, WAL_4, WAL_9 = (f"0000000100000000000000{n:02}" for n in (3, 4, 9))


def shown_archiving(wal: str, at: datetime, condition: tuple[str, str, str]) -> Body:
    """backups.yaml with the status the operator wrote: ``wal`` archived ``at``, and ``condition``."""
    body = example_body("backups.yaml")
    status, reason, message = condition
    body["status"] = {
        "postgres": {"backup": {"lastArchivedWAL": wal, "lastArchivedAt": at.strftime("%Y-%m-%dT%H:%M:%SZ")}},
        "conditions": [
            {
                "type": "ContinuousArchiving",
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": "2026-01-31T10:00:00Z",
            }
        ],
    }
    return body


ARCHIVING = ("True", "Archiving", "WAL is archived to s3://backups/shop")


def archived(status: dict[str, Any]) -> tuple[str, str]:
    backup = status["postgres"]["backup"]
    return backup["lastArchivedWAL"], backup["lastArchivedAt"]


@pytest.mark.parametrize(
    ("later", "interval", "shown"),
    [
        pytest.param(timedelta(seconds=60), timedelta(minutes=5), (WAL_3, "2026-01-31T11:00:00Z"), id="held"),
        pytest.param(
            timedelta(minutes=5), timedelta(minutes=5), (WAL_9, "2026-01-31T11:05:00Z"), id="moves-on"
        ),
        pytest.param(timedelta(seconds=60), timedelta(0), (WAL_9, "2026-01-31T11:01:00Z"), id="interval-0"),
        # A restored or re-created primary's archiver starts over: what it says is the truth.
        pytest.param(-timedelta(hours=1), timedelta(minutes=5), (WAL_9, "2026-01-31T10:00:00Z"), id="older"),
    ],
)
def test_the_archived_wal_shown_moves_on_at_most_every_interval(
    later: timedelta, interval: timedelta, shown: tuple[str, str]
) -> None:
    """Under a write load a WAL file is archived every archive_timeout: showing each would write
    the status as often. The condition's message does not name it while archiving works."""
    body = shown_archiving(WAL_3, ARCHIVED, ARCHIVING)
    state = ArchiveState(last_archived_wal=WAL_9, last_archived_at=ARCHIVED + later)
    status = status_of(body, {"shop-postgres-0": primary(state)}, archive_status_interval=interval)
    assert archived(status) == shown
    assert archiving(status) == ARCHIVING


# WAL_4 archived a minute after the one shown, then WAL_9 failed.
FAILING_AFTER_WAL_4 = ArchiveState(
    last_archived_wal=WAL_4,
    last_archived_at=ARCHIVED + timedelta(seconds=60),
    last_failed_wal=WAL_9,
    last_failed_at=ARCHIVED + timedelta(seconds=90),
)


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        pytest.param(ARCHIVING, (WAL_4, "2026-01-31T11:01:00Z"), id="changed-to-failing-exact"),
        pytest.param(
            ("False", "ArchivingFailing", "archiving WAL ... failed"),
            (WAL_3, "2026-01-31T11:00:00Z"),
            id="still-failing-held",
        ),
    ],
)
def test_the_archived_wal_shown_is_exact_when_the_condition_changes_and_named_as_shown(
    stored: tuple[str, str, str], shown: tuple[str, str]
) -> None:
    body = shown_archiving(WAL_3, ARCHIVED, stored)
    status = status_of(body, {"shop-postgres-0": primary(FAILING_AFTER_WAL_4)})
    assert archived(status) == shown
    condition = archiving(status)
    assert condition is not None
    assert condition[:2] == ("False", "ArchivingFailing")
    assert f"last archived: {shown[0]} at {shown[1]}" in condition[2], (
        "the message names what the fields show"
    )


def test_the_archived_wal_shown_never_contradicts_the_condition() -> None:
    """Held, 11:00 would be older than the failure at 11:00:30 that a success at 11:01 followed:
    the status would read as failing while the condition says archiving works."""
    body = shown_archiving(WAL_3, ARCHIVED, ARCHIVING)
    state = ArchiveState(
        last_archived_wal=WAL_9,
        last_archived_at=ARCHIVED + timedelta(seconds=60),
        last_failed_wal=WAL_4,
        last_failed_at=ARCHIVED + timedelta(seconds=30),
    )
    status = status_of(body, {"shop-postgres-0": primary(state)})
    assert archiving(status) == ARCHIVING
    assert archived(status) == (WAL_9, "2026-01-31T11:01:00Z")


def test_the_metric_has_the_exact_time_of_the_last_archived_wal_while_the_status_holds_an_older() -> None:
    body = shown_archiving(WAL_3, ARCHIVED, ARCHIVING)
    exact = ARCHIVED + timedelta(seconds=60)
    probes = {"shop-postgres-0": primary(ArchiveState(last_archived_wal=WAL_9, last_archived_at=exact))}
    backend = parse(body)
    current = dataclasses.replace(snapshot(body, *running_stack(backend)), probes=probes)
    metrics = OperatorMetrics.create()
    record_backup_metrics(metrics, backend, current, datetime(2026, 1, 31, 12, 0, tzinfo=UTC))
    series = {"namespace": "demo", "name": "shop"}
    assert metrics.registry.get_sample_value("sbo_postgres_last_archived_timestamp_seconds", series) == (
        exact.timestamp()
    )
    assert archived(status_of(body, probes)) == (WAL_3, "2026-01-31T11:00:00Z")
