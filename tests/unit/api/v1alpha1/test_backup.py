"""Backups and recovery in the spec and status: defaults, what each field means, and bad input refused.

tests/integration/test_admission.py proves the apiserver refuses the same values with the same
messages; these tests prove the operator's parsing agrees.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from sbo_operator.api.formats import (
    ARCHIVE_TIMEOUT_MESSAGE,
    CRON_SCHEDULE_MESSAGE,
    ENDPOINT_URL_MESSAGE,
    LSN_MESSAGE,
    RETENTION_MESSAGE,
    S3_DESTINATION_MESSAGE,
    TIMESTAMP_MESSAGE,
)
from sbo_operator.api.v1alpha1 import (
    DEFAULT_ARCHIVE_TIMEOUT,
    DEFAULT_BACKUP_SCHEDULE,
    RECOVERY_IMMUTABLE_MESSAGE,
    RECOVERY_SOURCE_IS_DESTINATION_MESSAGE,
    RECOVERY_TARGET_MESSAGE,
    BackupCompression,
    BackupStatus,
    PostgresStatus,
    ScalableBackend,
    ScalableBackendSpec,
    check_spec_transition,
)

pytestmark = pytest.mark.unit


def store(destination: str = "s3://backups/shop", **fields: Any) -> dict[str, Any]:
    return {"destination": destination, "credentials": {"secretName": "shop-backup"}, **fields}


def recovery(destination: str = "s3://backups/old", **target: str) -> dict[str, Any]:
    return {"recovery": {"source": store(destination), "target": target}}


def manifest(**postgres: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sbo.dev/v1alpha1",
        "kind": "ScalableBackend",
        "metadata": {"name": "shop", "namespace": "demo"},
        "spec": {"image": "sbo-sample-app:0.1.0", "postgres": postgres},
    }


def spec(**postgres: Any) -> ScalableBackendSpec:
    return ScalableBackend.model_validate(manifest(**postgres)).spec


def rejection(**postgres: Any) -> str:
    with pytest.raises(ValidationError) as error:
        spec(**postgres)
    return str(error.value)


# ---- backup ---------------------------------------------------------------------------------------


def test_no_backup_and_an_empty_database_by_default() -> None:
    postgres = spec().postgres
    assert (postgres.backup, postgres.bootstrap) == (None, None)


def test_backup_defaults() -> None:
    backup = spec(backup=store()).postgres.backup
    assert backup is not None
    assert (backup.schedule, DEFAULT_BACKUP_SCHEDULE) == ("0 3 * * *", "0 3 * * *")
    assert (backup.archive_timeout, backup.archive_timeout_seconds) == (DEFAULT_ARCHIVE_TIMEOUT, 30)
    assert (backup.retention, backup.recovery_window) == (None, None)
    assert (backup.endpoint_url, backup.region, backup.ca) == (None, None, None)
    assert backup.write_to_recovery_source is False
    assert backup.compression is BackupCompression.NONE
    credentials = backup.credentials
    assert credentials.secret_name == "shop-backup"
    assert (credentials.access_key_id_key, credentials.secret_access_key_key) == (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    )
    assert credentials.session_token_key is None


def test_every_backup_field_parses_under_its_wire_name() -> None:
    fields = store(
        endpointURL="https://minio.storage.svc:9000",
        region="us-east-1",
        ca={"secretName": "minio-ca"},
        schedule="@daily",
        retention="4w",
        archiveTimeout="1m30s",
        compression="bzip2",
    )
    fields["credentials"] |= {
        "accessKeyIdKey": "id",
        "secretAccessKeyKey": "secret",
        "sessionTokenKey": "token",
    }
    backup = spec(backup=fields).postgres.backup
    assert backup is not None
    assert (backup.endpoint_url, backup.region) == ("https://minio.storage.svc:9000", "us-east-1")
    assert backup.ca is not None
    assert (backup.ca.secret_name, backup.ca.key) == ("minio-ca", "ca.crt")
    assert (backup.credentials.access_key_id_key, backup.credentials.session_token_key) == ("id", "token")
    assert (backup.schedule, backup.archive_timeout_seconds) == ("@daily", 90)
    dumped = backup.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["endpointURL"] == "https://minio.storage.svc:9000"
    assert dumped["archiveTimeout"] == "1m30s"
    assert (backup.compression, dumped["compression"]) == (BackupCompression.BZIP2, "bzip2")


@pytest.mark.parametrize(
    ("retention", "window"),
    [
        ("1d", "RECOVERY WINDOW OF 1 DAYS"),
        ("30d", "RECOVERY WINDOW OF 30 DAYS"),
        ("4w", "RECOVERY WINDOW OF 4 WEEKS"),
        ("12m", "RECOVERY WINDOW OF 12 MONTHS"),
    ],
)
def test_retention_is_barmans_recovery_window(retention: str, window: str) -> None:
    backup = spec(backup=store(retention=retention)).postgres.backup
    assert backup is not None
    assert backup.recovery_window == window


# ---- recovery -------------------------------------------------------------------------------------


def test_recovery_without_a_target_recovers_to_the_latest_wal() -> None:
    bootstrap = spec(bootstrap={"recovery": {"source": store()}}).postgres.bootstrap
    assert bootstrap is not None
    assert bootstrap.recovery is not None
    target = bootstrap.recovery.target
    assert (target.time, target.lsn, target.time_value) == (None, None, None)
    assert bootstrap.recovery.source.destination == "s3://backups/shop"


@pytest.mark.parametrize(
    ("time", "moment"),
    [
        ("2026-01-31T14:05:00Z", datetime(2026, 1, 31, 14, 5, tzinfo=UTC)),
        ("2026-01-31T15:05:00.5+01:00", datetime(2026, 1, 31, 14, 5, 0, 500000, tzinfo=UTC)),
        (
            "2026-01-31T09:05:00.000001-05:00",
            datetime(2026, 1, 31, 9, 5, 0, 1, tzinfo=timezone(timedelta(hours=-5))),
        ),
    ],
)
def test_a_target_time_is_an_instant(time: str, moment: datetime) -> None:
    bootstrap = spec(bootstrap=recovery(time=time)).postgres.bootstrap
    assert bootstrap is not None
    assert bootstrap.recovery is not None
    assert bootstrap.recovery.target.time_value == moment


def test_a_target_lsn_is_kept_as_written() -> None:
    bootstrap = spec(bootstrap=recovery(lsn="16/B374D848")).postgres.bootstrap
    assert bootstrap is not None
    assert bootstrap.recovery is not None
    assert (bootstrap.recovery.target.lsn, bootstrap.recovery.target.time) == ("16/B374D848", None)


def test_backups_to_another_path_than_the_recovery_source() -> None:
    postgres = spec(backup=store("s3://backups/shop-2"), bootstrap=recovery("s3://backups/shop")).postgres
    assert postgres.backup is not None
    assert postgres.bootstrap is not None


def test_backups_into_the_recovery_source_with_intent() -> None:
    postgres = spec(
        backup=store("s3://backups/shop", writeToRecoverySource=True), bootstrap=recovery("s3://backups/shop")
    ).postgres
    assert postgres.backup is not None
    assert postgres.backup.write_to_recovery_source is True


# ---- bad input ------------------------------------------------------------------------------------

BAD_INPUTS = {
    "destination without a scheme": ({"backup": store("backups/shop")}, S3_DESTINATION_MESSAGE),
    "destination with a short bucket": ({"backup": store("s3://ab/shop")}, S3_DESTINATION_MESSAGE),
    "destination with a trailing slash": ({"backup": store("s3://backups/shop/")}, S3_DESTINATION_MESSAGE),
    "recovery source malformed": ({"bootstrap": recovery("s3://Backups/shop")}, S3_DESTINATION_MESSAGE),
    "endpoint without a scheme": ({"backup": store(endpointURL="minio:9000")}, ENDPOINT_URL_MESSAGE),
    "schedule with six fields": ({"backup": store(schedule="0 0 3 * * *")}, CRON_SCHEDULE_MESSAGE),
    "schedule with a descending range": ({"backup": store(schedule="0 5-1 * * *")}, CRON_SCHEDULE_MESSAGE),
    "schedule with a day of week 7": ({"backup": store(schedule="0 3 * * 7")}, CRON_SCHEDULE_MESSAGE),
    "retention in years": ({"backup": store(retention="1y")}, RETENTION_MESSAGE),
    "archive timeout too short": ({"backup": store(archiveTimeout="1s")}, ARCHIVE_TIMEOUT_MESSAGE),
    "archive timeout too long": ({"backup": store(archiveTimeout="90m")}, ARCHIVE_TIMEOUT_MESSAGE),
    # barman's snappy needs python3-snappy, which the image does not carry.
    "compression snappy": ({"backup": store(compression="snappy")}, "spec.postgres.backup.compression"),
    "compression unknown": ({"backup": store(compression="zstd")}, "spec.postgres.backup.compression"),
    "target time without an offset": ({"bootstrap": recovery(time="2026-01-31T14:05:00")}, TIMESTAMP_MESSAGE),
    "target time on a day that does not exist": (
        {"bootstrap": recovery(time="2026-02-29T14:05:00Z")},
        TIMESTAMP_MESSAGE,
    ),
    "target lsn malformed": ({"bootstrap": recovery(lsn="3000060")}, LSN_MESSAGE),
    "both a time and an lsn": (
        {"bootstrap": recovery(time="2026-01-31T14:05:00Z", lsn="0/3000060")},
        RECOVERY_TARGET_MESSAGE,
    ),
    "backup into the recovery source": (
        {"backup": store("s3://backups/shop"), "bootstrap": recovery("s3://backups/shop")},
        f"backup.destination: {RECOVERY_SOURCE_IS_DESTINATION_MESSAGE}",
    ),
    "credentials without a secret name": (
        {"backup": {"destination": "s3://backups/shop", "credentials": {}}},
        "spec.postgres.backup.credentials.secretName",
    ),
    "credentials key escaping a volume": (
        {"backup": store(credentials={"secretName": "s", "accessKeyIdKey": "../id"})},
        "spec.postgres.backup.credentials.accessKeyIdKey",
    ),
    "ca secret name malformed": (
        {"backup": store(ca={"secretName": "Minio CA"})},
        "spec.postgres.backup.ca.secretName",
    ),
    "unknown backup field": ({"backup": store(serverName="shop")}, "spec.postgres.backup.serverName"),
    "schedule on the recovery source": (
        {"bootstrap": {"recovery": {"source": store(schedule="@daily")}}},
        "spec.postgres.bootstrap.recovery.source.schedule",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_naming_the_field(case: str) -> None:
    postgres, expected = BAD_INPUTS[case]
    assert expected in rejection(**postgres)


# ---- transition rules -----------------------------------------------------------------------------


def test_backup_settings_may_change() -> None:
    check_spec_transition(
        spec(backup=store()), spec(backup=store("s3://backups/shop-2", schedule="@hourly", retention="7d"))
    )
    check_spec_transition(spec(), spec(backup=store()))
    check_spec_transition(spec(backup=store()), spec())


def test_an_unchanged_recovery_passes() -> None:
    check_spec_transition(
        spec(bootstrap=recovery(lsn="0/3000060")), spec(bootstrap=recovery(lsn="0/3000060"))
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param({}, recovery(), id="added-after-creation"),
        pytest.param({}, {}, id="an-empty-bootstrap-added"),
        pytest.param(recovery(), None, id="removed"),
        pytest.param(
            recovery(time="2026-01-31T14:05:00Z"), recovery(time="2026-01-31T14:06:00Z"), id="retargeted"
        ),
        pytest.param(recovery("s3://backups/a"), recovery("s3://backups/b"), id="another-source"),
    ],
)
def test_recovery_is_fixed_at_creation(old: dict[str, Any], new: dict[str, Any] | None) -> None:
    old_spec = spec(bootstrap=old) if old else spec()
    new_spec = spec(bootstrap=new) if new is not None else spec()
    with pytest.raises(ValueError, match=re.escape(f"spec.postgres.bootstrap: {RECOVERY_IMMUTABLE_MESSAGE}")):
        check_spec_transition(old_spec, new_spec)


# ---- status ---------------------------------------------------------------------------------------


def test_backup_status_round_trips_under_its_wire_names() -> None:
    wire = {
        "lastSuccessfulBackup": {
            "name": "20260131T030000",
            "startedAt": "2026-01-31T03:00:00Z",
            "completedAt": "2026-01-31T03:04:10Z",
            "beginLSN": "0/2000028",
            "endLSN": "0/2000138",
        },
        "firstRecoverabilityPoint": "2026-01-01T03:04:10Z",
        "lastArchivedWAL": "000000010000000000000002",
        "lastArchivedAt": "2026-01-31T03:04:11Z",
        "lastFailedWAL": "000000010000000000000001",
        "lastFailedAt": "2026-01-30T22:00:00Z",
    }
    status = PostgresStatus.model_validate({"backup": wire})
    assert status.backup is not None
    backup = status.backup
    assert backup.last_successful_backup is not None
    assert backup.last_successful_backup.end_lsn == "0/2000138"
    assert backup.first_recoverability_point == datetime(2026, 1, 1, 3, 4, 10, tzinfo=UTC)
    assert backup.last_archived_wal == "000000010000000000000002"
    dumped = backup.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert BackupStatus.model_validate(dumped) == backup
    assert set(dumped) == set(wire)
    assert set(dumped["lastSuccessfulBackup"]) == set(wire["lastSuccessfulBackup"])
