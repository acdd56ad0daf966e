"""What the primary says about its backups: the WAL archiver and the backup sidecar's record.

Read by the operator's SQL probe (``postgres_probe``) from the primary only, as ``sbo_operator``
(a member of pg_monitor, which reads pg_stat_archiver; SELECT on the record is granted by the
sidecar). The record is a table the ``backup`` sidecar writes after each base backup
(``BACKUP_RECORD_TABLE``, database postgres). Nothing here touches the Kubernetes API, and an
answer changes what the operator reports only when archiving starts, fails or recovers, or a new
base backup completes (:meth:`ArchiveState.significant`): a busy archiver causes no status write.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import psycopg

__all__ = [
    "ARCHIVER_QUERY",
    "BACKUP_RECORD_QUERY",
    "BACKUP_RECORD_TABLE",
    "ArchiveState",
    "BaseBackupRecord",
    "read_archive_state",
]

BACKUP_RECORD_SCHEMA = "sbo"
BACKUP_RECORD_TABLE = f"{BACKUP_RECORD_SCHEMA}.base_backups"

ARCHIVER_QUERY = """
SELECT last_archived_wal, last_archived_time, last_failed_wal, last_failed_time
FROM pg_stat_archiver
"""

# The newest completed backup, and the first recoverability point the sidecar saw after it; none
# while the sidecar has recorded none (to_regclass: the table may not exist yet). Newest of any
# destination: the operator ignores one that is not its backend's (a restored database's).
BACKUP_RECORD_QUERY = """
SELECT name, started_at, completed_at, begin_lsn, end_lsn, first_recoverability_point, destination
FROM sbo.base_backups
ORDER BY completed_at DESC, name DESC
LIMIT 1
"""
_RECORD_EXISTS_QUERY = "SELECT to_regclass('sbo.base_backups') IS NOT NULL"


@dataclasses.dataclass(frozen=True)
class BaseBackupRecord:
    name: str
    started_at: datetime | None
    completed_at: datetime | None
    begin_lsn: str | None
    end_lsn: str | None
    first_recoverability_point: datetime | None
    destination: str | None = None  # the archive it went to (a restored database keeps the source's rows)


@dataclasses.dataclass(frozen=True)
class ArchiveState:
    """pg_stat_archiver's last success and failure, and the last base backup recorded."""

    last_archived_wal: str | None = None
    last_archived_at: datetime | None = None
    last_failed_wal: str | None = None
    last_failed_at: datetime | None = None
    last_backup: BaseBackupRecord | None = None

    @property
    def failing(self) -> bool:
        """The last attempt failed: a failure, and no success since it."""
        if self.last_failed_at is None:
            return False
        return self.last_archived_at is None or self.last_failed_at > self.last_archived_at

    def significant(self) -> tuple[bool, bool, str | None]:
        """What is worth a reconcile when it changes: not every archived segment."""
        return (
            self.last_archived_wal is not None,
            self.failing,
            None if self.last_backup is None else self.last_backup.name,
        )


def _row_of(values: Any) -> tuple[Any, ...]:
    return tuple(values) if values is not None else ()


async def read_archive_state(connection: psycopg.AsyncConnection[Any]) -> ArchiveState:
    """The archiver's and the sidecar's state, on a primary's open connection."""
    cursor = await connection.execute(ARCHIVER_QUERY)
    archiver = _row_of(await cursor.fetchone()) or (None, None, None, None)
    last_backup = None
    cursor = await connection.execute(_RECORD_EXISTS_QUERY)
    exists = await cursor.fetchone()
    if exists is not None and exists[0]:
        cursor = await connection.execute(BACKUP_RECORD_QUERY)
        row = await cursor.fetchone()
        if row is not None:
            last_backup = BaseBackupRecord(*row)
    return ArchiveState(
        last_archived_wal=archiver[0],
        last_archived_at=archiver[1],
        last_failed_wal=archiver[2],
        last_failed_at=archiver[3],
        last_backup=last_backup,
    )
