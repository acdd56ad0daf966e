"""Backups and recovery: spec.postgres.backup and spec.postgres.bootstrap.recovery.

WAL is archived continuously, and base backups taken on a schedule, to an S3-compatible object
store with barman-cloud; a new backend can bootstrap from such a store, to the latest WAL, a time or
an LSN. The invariant: every format (destination, endpoint, schedule, retention, archive timeout,
recovery target) is refused at admission with a message naming the fix, and every CEL rule here is
mirrored by a validator raising the same message. The rules that relate backup and recovery (the
same path, recovery fixed at creation) sit on PostgresSpec, which holds both.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import ConfigDict, Field, model_validator

from sbo_operator.api.base import ApiModel, cel_rules, schema_default
from sbo_operator.api.formats import (
    ArchiveTimeout,
    ConfigMapKey,
    CronSchedule,
    DnsSubdomain,
    EndpointUrl,
    Lsn,
    Region,
    Retention,
    S3Destination,
    Timestamp,
    parse_duration,
)

__all__ = [
    "DEFAULT_ARCHIVE_TIMEOUT",
    "DEFAULT_BACKUP_SCHEDULE",
    "RECOVERY_IMMUTABLE_MESSAGE",
    "RECOVERY_SOURCE_IS_DESTINATION_MESSAGE",
    "RECOVERY_TARGET_MESSAGE",
    "BackupCompression",
    "BackupSpec",
    "BootstrapSpec",
    "ObjectStoreCa",
    "ObjectStoreCredentials",
    "ObjectStoreSpec",
    "RecoverySpec",
    "RecoveryTarget",
    "recovery_source_is_destination",
]

DEFAULT_BACKUP_SCHEDULE = "0 3 * * *"
# A commit reaches the store within about this long plus one upload: the data-loss window.
DEFAULT_ARCHIVE_TIMEOUT = "30s"

_RETENTION_UNITS = {"d": "DAYS", "w": "WEEKS", "m": "MONTHS"}


class ObjectStoreCredentials(ApiModel):
    """The keys of a Secret holding the object store's access key, for barman-cloud's S3 client."""

    secret_name: DnsSubdomain = Field(
        description="Secret in the backend's namespace with the keys. Only the PostgreSQL pods read it."
    )
    access_key_id_key: ConfigMapKey = Field(
        default="AWS_ACCESS_KEY_ID", description="Key of the access key id in the Secret."
    )
    secret_access_key_key: ConfigMapKey = Field(
        default="AWS_SECRET_ACCESS_KEY", description="Key of the secret access key in the Secret."
    )
    session_token_key: ConfigMapKey | None = Field(
        default=None,
        description="Key of a session token in the Secret, for temporary credentials. Absent: none.",
    )


class ObjectStoreCa(ApiModel):
    """A CA bundle (PEM) that the object store's TLS certificate must chain to."""

    secret_name: DnsSubdomain = Field(description="Secret in the backend's namespace holding the bundle.")
    key: ConfigMapKey = Field(default="ca.crt", description="Key of the PEM bundle in the Secret.")


class ObjectStoreSpec(ApiModel):
    """Where an archive lives: an S3-compatible bucket and path, and how to reach it."""

    destination: S3Destination = Field(
        description=(
            "The archive: s3://<bucket>[/<path>], e.g. s3://backups/shop. Give each backend its own path."
        )
    )
    endpoint_url: EndpointUrl | None = Field(
        default=None,
        alias="endpointURL",
        description="URL of an S3-compatible store, e.g. https://minio.storage.svc:9000. Absent: AWS S3.",
    )
    region: Region | None = Field(
        default=None, description="Region of the bucket, e.g. us-east-1. Absent: the store's default."
    )
    credentials: ObjectStoreCredentials = Field(description="The Secret with the store's access key.")
    ca: ObjectStoreCa | None = Field(
        default=None,
        description="A CA bundle for the endpoint's TLS certificate. Absent: the image's system CAs.",
    )


class BackupCompression(StrEnum):
    """How base backups and WAL segments are compressed in the store (barman-cloud's options).

    none restores and backs up fastest (measured in docs/benchmarks.md, "Backups"); gzip and bzip2
    store fewer bytes for more CPU on both sides. barman's snappy is left out: the image has no
    python3-snappy.
    """

    NONE = "none"
    GZIP = "gzip"
    BZIP2 = "bzip2"


class BackupSpec(ObjectStoreSpec):
    """Continuous WAL archiving and scheduled base backups with barman-cloud."""

    schedule: CronSchedule = Field(
        default=DEFAULT_BACKUP_SCHEDULE,
        description=(
            "When base backups are taken: a five-field cron expression in UTC, e.g. 0 3 * * * "
            "(03:00 every day), or @daily-style macros."
        ),
    )
    retention: Retention | None = Field(
        default=None,
        description=(
            "How far back a restore must stay possible: <n>d, <n>w or <n>m, e.g. 30d; older base "
            "backups and WAL are deleted after each base backup. Absent: nothing is ever deleted."
        ),
    )
    archive_timeout: ArchiveTimeout = Field(
        default=DEFAULT_ARCHIVE_TIMEOUT,
        description=(
            "PostgreSQL's archive_timeout, 5s to 1h: while anything is written, a WAL segment is closed "
            "and archived at least this often, which bounds the commits lost with the primary's volume."
        ),
    )
    compression: BackupCompression = Field(
        default=BackupCompression.NONE,
        description=(
            "How base backups and WAL are compressed in the store: none (the fastest backup and "
            "restore), gzip or bzip2 (fewer bytes stored, more CPU). A restore reads any of them."
        ),
    )
    write_to_recovery_source: bool = Field(
        default=False,
        description=(
            "true: allow destination to equal bootstrap.recovery.source.destination. The restored "
            "database then writes a new timeline into the archive it was restored from."
        ),
    )

    @property
    def archive_timeout_seconds(self) -> int:
        return int(parse_duration(self.archive_timeout).total_seconds())

    @property
    def recovery_window(self) -> str | None:
        """barman's retention policy for ``retention``, e.g. RECOVERY WINDOW OF 30 DAYS; None: keep all."""
        if self.retention is None:
            return None
        return f"RECOVERY WINDOW OF {self.retention[:-1]} {_RETENTION_UNITS[self.retention[-1]]}"


_ONE_TARGET_RULE = "!(has(self.time) && has(self.lsn))"
RECOVERY_TARGET_MESSAGE = (
    "target: set at most one of time and lsn; neither recovers to the latest archived WAL"
)


class RecoveryTarget(ApiModel):
    """How far to replay the archived WAL. Neither field: to the end of the archive (latest)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules({"rule": _ONE_TARGET_RULE, "message": RECOVERY_TARGET_MESSAGE})
    )

    time: Timestamp | None = Field(
        default=None,
        description=(
            "Recover every transaction committed at or before this RFC 3339 time, e.g. 2026-01-31T14:05:00Z."
        ),
    )
    lsn: Lsn | None = Field(
        default=None, description="Recover up to and including this WAL position, e.g. 0/3000060."
    )

    @property
    def time_value(self) -> datetime | None:
        return None if self.time is None else datetime.fromisoformat(self.time)

    @model_validator(mode="after")
    def _check_cel_rules(self) -> RecoveryTarget:
        if self.time is not None and self.lsn is not None:
            raise ValueError(RECOVERY_TARGET_MESSAGE)
        return self


class RecoverySpec(ApiModel):
    """Bootstrap the database from a backup in an object store instead of an empty one."""

    source: ObjectStoreSpec = Field(
        description="The archive to restore from: another backend's backup destination."
    )
    target: RecoveryTarget = Field(
        default_factory=RecoveryTarget,
        description="How far to recover: a time, an LSN, or neither for the latest archived WAL.",
        json_schema_extra=schema_default({}),
    )


class BootstrapSpec(ApiModel):
    """How the database is created. Read once, when the backend is created; immutable afterwards."""

    recovery: RecoverySpec | None = Field(
        default=None, description="Restore from an object store. Absent: a new, empty database (initdb)."
    )


RECOVERY_IMMUTABLE_MESSAGE = (
    "bootstrap is immutable: it is read once, when the backend is created; to restore again (another "
    "target or source), create a new ScalableBackend"
)
RECOVERY_SOURCE_IS_DESTINATION_MESSAGE = (
    "backup.destination must differ from bootstrap.recovery.source.destination: writing new WAL into the "
    "archive being restored from forks its history; choose another path, or set "
    "backup.writeToRecoverySource: true if that is intended"
)


def recovery_source_is_destination(backup: BackupSpec | None, bootstrap: BootstrapSpec | None) -> bool:
    """The backup would write into the archive the backend restores from, without the flag saying so."""
    return (
        backup is not None
        and bootstrap is not None
        and bootstrap.recovery is not None
        and backup.destination == bootstrap.recovery.source.destination
        and not backup.write_to_recovery_source
    )
