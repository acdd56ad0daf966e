"""The base backup schedule: which tick is due, and when the primary's pod is annotated."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from sbo_operator.backup_schedule import (
    BackupRequest,
    due_request,
    latest_tick,
    next_tick,
    record_backup_metrics,
    seconds_until_next,
)
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.postgres_backup import ArchiveState, BaseBackupRecord
from sbo_operator.postgres_probe import InstanceProbe
from tests.unit.factories import backend_from, postgres_pod, snapshot

pytestmark = pytest.mark.unit

STORE = {"destination": "s3://backups/shop", "credentials": {"secretName": "shop-backup"}}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "now", "latest", "following"),
    [
        ("0 3 * * *", "2026-01-31T12:00:00", "2026-01-31T03:00:00", "2026-02-01T03:00:00"),
        ("0 3 * * *", "2026-01-31T03:00:00", "2026-01-31T03:00:00", "2026-02-01T03:00:00"),
        ("0 3 * * *", "2026-01-31T02:59:59.9", "2026-01-30T03:00:00", "2026-01-31T03:00:00"),
        ("* * * * *", "2026-01-31T12:00:30.5", "2026-01-31T12:00:00", "2026-01-31T12:01:00"),
        ("*/15 * * * 1-5", "2026-01-31T12:00:00", "2026-01-30T23:45:00", "2026-02-02T00:00:00"),
        ("@weekly", "2026-01-31T12:00:00", "2026-01-25T00:00:00", "2026-02-01T00:00:00"),
    ],
)
def test_ticks_at_or_before_and_after_now_in_utc(
    schedule: str, now: str, latest: str, following: str
) -> None:
    assert latest_tick(schedule, at(now)) == at(latest)
    assert next_tick(schedule, at(now)) == at(following)


def body(spec: dict[str, Any]) -> dict[str, Any]:
    return backend_from(spec).model_dump(mode="json", by_alias=True, exclude_none=True)


def test_the_primary_gets_the_latest_tick_once() -> None:
    spec = {"postgres": {"readReplicas": 1, "backup": {**STORE, "schedule": "0 3 * * *"}}}
    backend = backend_from(spec)
    pods = [postgres_pod("shop-postgres-0", role="replica"), postgres_pod("shop-postgres-1", role="primary")]
    now = at("2026-01-31T12:00:00")
    assert due_request(backend, snapshot(body(spec), pods=pods), now) == BackupRequest(
        "shop-postgres-1", "uid-shop-postgres-1", "2026-01-31T03:00:00Z"
    )
    pods[1]["metadata"]["annotations"] = {"sbo.dev/backup-request": "2026-01-31T03:00:00Z"}
    assert due_request(backend, snapshot(body(spec), pods=pods), now) is None, "no write between ticks"
    assert due_request(backend, snapshot(body(spec), pods=pods), at("2026-02-01T03:00:01")) == BackupRequest(
        "shop-postgres-1", "uid-shop-postgres-1", "2026-02-01T03:00:00Z"
    )
    assert seconds_until_next(backend, now) == 15 * 3600


def test_nothing_is_requested_without_backups_or_without_a_primary() -> None:
    now = at("2026-01-31T12:00:00")
    pods = [postgres_pod("shop-postgres-0", role="primary")]
    assert due_request(backend_from({}), snapshot(body({}), pods=pods), now) is None
    assert seconds_until_next(backend_from({}), now) is None
    spec = {"postgres": {"backup": STORE}}
    unlabelled = [postgres_pod("shop-postgres-0", role=None)]
    assert due_request(backend_from(spec), snapshot(body(spec), pods=unlabelled), now) is None
    terminating = [postgres_pod("shop-postgres-0", role="primary", terminating=True)]
    assert due_request(backend_from(spec), snapshot(body(spec), pods=terminating), now) is None


def gauges(metrics: OperatorMetrics) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name.startswith(
            (
                "sbo_postgres_archiving",
                "sbo_postgres_last_backup",
                "sbo_postgres_backup_",
                "sbo_postgres_last_archived",
            )
        )
        and sample.labels.get("name") == "shop"
    }


def test_the_backup_gauges_follow_the_primarys_answer_and_go_with_the_backups() -> None:
    metrics = OperatorMetrics.create()
    spec = {"postgres": {"backup": {**STORE, "schedule": "0 3 * * *"}}}
    backend = backend_from(spec)
    completed = at("2026-01-31T03:01:00")
    record = BaseBackupRecord("20260131T030000", None, completed, None, None, completed)
    failing = ArchiveState(
        last_archived_wal="000000010000000000000003",
        last_archived_at=at("2026-01-31T11:00:00"),
        last_failed_wal="000000010000000000000004",
        last_failed_at=at("2026-01-31T11:30:00"),
        last_backup=record,
    )
    primary = InstanceProbe(reachable=True, in_recovery=False, archive=failing)
    current = dataclasses.replace(snapshot(body(spec)), probes={"shop-postgres-0": primary})
    record_backup_metrics(metrics, backend, current, at("2026-01-31T12:00:00"))
    assert gauges(metrics) == {
        "sbo_postgres_archiving_failing": 1.0,
        "sbo_postgres_last_backup_timestamp_seconds": completed.timestamp(),
        "sbo_postgres_backup_scheduled_timestamp_seconds": at("2026-01-31T03:00:00").timestamp(),
        "sbo_postgres_last_archived_timestamp_seconds": at("2026-01-31T11:00:00").timestamp(),
    }
    record_backup_metrics(metrics, backend_from({}), snapshot(body({})), at("2026-01-31T12:00:00"))
    assert gauges(metrics) == {}, "no series, so no alert, once backups are off"
