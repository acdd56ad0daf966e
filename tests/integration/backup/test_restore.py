"""Point-in-time restore with restore.sh and wal-restore.sh, from a real MinIO, proven to the row.

One source database for the module: rows committed one per transaction (track_commit_timestamp
on), a base backup with base-backup.sh, more rows, and everything archived by wal-archive.sh.
Each test restores it into a new data directory with restore.sh, starts that, and compares the
rows with what the source says was committed by the target.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from devkit.backup_rig import BUCKET, BackupRig, insert_one_per_transaction, rows
from devkit.object_store import MinioServer
from devkit.postgres import PostgresServer
from sbo_operator.builders.backup_scripts import (
    RESTORE_EXIT_BEFORE_FIRST_RECOVERABILITY_POINT,
    RESTORE_EXIT_TARGET_NOT_ARCHIVED,
)

pytestmark = pytest.mark.integration

Commit = tuple[int, datetime, str]


@dataclass
class Source:
    rig: BackupRig
    primary: PostgresServer
    before_backup: list[Commit]
    after_backup: list[Commit]
    outputs: list[str]

    @property
    def commits(self) -> list[Commit]:
        return self.before_backup + self.after_backup


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    store = MinioServer.start(tmp_path_factory.mktemp("store"))
    rig = BackupRig.create(store)
    try:
        store.create_bucket(BUCKET)
        primary = rig.start_primary()
        primary.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, note text)")
        before = insert_one_per_transaction(primary, 10)
        backup = rig.base_backup(primary)
        after = insert_one_per_transaction(primary, 30)
        rig.wait_archived(primary)
        yield Source(rig, primary, before, after, [backup.stdout + backup.stderr])
    finally:
        rig.cleanup()
        store.destroy()


def restored_rows(source: Source, restored: PostgresServer) -> list[int]:
    restored.start_again()
    return rows(restored)


def assert_no_secret(source: Source, text: str) -> None:
    assert source.rig.store.secret_key not in text
    assert source.rig.store.access_key not in text


def test_point_in_time_restore_is_exact_to_the_row(source: Source) -> None:
    _, target, _ = source.after_backup[14]
    done, restored = source.rig.restore(source.primary, target_time=target)
    assert done.returncode == 0, done.stderr
    assert_no_secret(source, done.stdout + done.stderr)
    expected = [row_id for row_id, committed, _ in source.commits if committed <= target]
    assert source.after_backup[14][0] in expected
    assert source.after_backup[15][0] not in expected
    assert restored_rows(source, restored) == expected
    assert not restored.execute("SELECT pg_is_in_recovery()")[0][0]


def test_restore_to_latest_has_every_archived_commit(source: Source) -> None:
    done, restored = source.rig.restore(source.primary)
    assert done.returncode == 0, done.stderr
    assert restored_rows(source, restored) == [row_id for row_id, _, _ in source.commits]
    # The recovery lines are gone once promoted: a replica cloned from it must not stop at a target.
    auto_conf = (restored.data_dir / "postgresql.auto.conf").read_text()
    assert "restore_command" not in auto_conf
    assert not (restored.data_dir / "recovery.signal").exists()
    for output in source.outputs:
        assert_no_secret(source, output)


def test_restore_to_an_lsn(source: Source) -> None:
    row_id, _, lsn = source.after_backup[20]
    done, restored = source.rig.restore(source.primary, target_lsn=lsn)
    assert done.returncode == 0, done.stderr
    assert restored_rows(source, restored) == [r for r, _, _ in source.commits if r <= row_id]


@pytest.mark.parametrize("kind", ["time", "lsn"])
def test_a_target_before_the_first_recoverability_point_is_refused_at_once(source: Source, kind: str) -> None:
    _, committed, lsn = source.before_backup[0]
    started = time.monotonic()
    if kind == "time":
        done, restored = source.rig.restore(source.primary, target_time=committed)
    else:
        done, restored = source.rig.restore(source.primary, target_lsn=lsn)
    assert done.returncode == RESTORE_EXIT_BEFORE_FIRST_RECOVERABILITY_POINT, done.stderr
    assert time.monotonic() - started < 30
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("restore.sh: recovery target ")
    assert "before the first recoverability point" in line
    assert not restored.data_dir.exists()


def test_a_target_in_the_future_is_refused_at_once(source: Source) -> None:
    started = time.monotonic()
    done, restored = source.rig.restore(source.primary, target_time=datetime.now(UTC) + timedelta(hours=1))
    assert done.returncode == RESTORE_EXIT_TARGET_NOT_ARCHIVED, done.stderr
    assert time.monotonic() - started < 30
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("restore.sh: recovery target time ")
    assert line.endswith("is in the future")
    assert not restored.data_dir.exists()


def test_an_lsn_past_the_archive_ends_with_the_reason_not_a_crash_loop(source: Source) -> None:
    started = time.monotonic()
    done, restored = source.rig.restore(source.primary, target_lsn="FF/0")
    assert done.returncode == RESTORE_EXIT_TARGET_NOT_ARCHIVED, done.stderr
    assert time.monotonic() - started < 120
    last = done.stderr.strip().splitlines()[-1]
    archive = source.rig.restore_env()["SBO_RESTORE_SOURCE"]
    assert last == f"restore.sh: recovery target FF/0 is past the last WAL archived in {archive}"
    assert not restored.data_dir.exists()
