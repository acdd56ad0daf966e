"""Benchmark backups to an object store: ``python -m bench.backup`` (``make bench-backup``).

Real servers on 127.0.0.1 only: the machine's PostgreSQL, archiving with the emitted settings
(archive_timeout at its default) through wal-archive.sh to a MinIO built by ``make tools``; the
scripts of builders/backup_scripts.py run exactly as the pods run them (devkit.backup_rig).

1. A database of about ``--size-gib`` GiB (1 by default): one table, a bigint primary key and
   64 characters of md5 text a row, loaded in one transaction, and its WAL archived.
2. The base backup: base-backup.sh (barman-cloud-backup, ``--compression``: none by default, as
   spec.postgres.backup.compression), timed, and the bytes it takes in the store.
3. The data-loss window at the default archive timeout: on an otherwise idle server, one row is
   committed at a random moment, then the store is polled (every 0.2 s) until the WAL segment
   holding that commit is an object there. ``--window-samples`` times.
4. The restore: restore.sh to latest into an empty data directory (download, WAL replay,
   promotion), timed, and broken down by phase from the timestamps of its log and of the recovery
   server's; the row count is checked.
5. The same data through pg_dump -Fc and pg_restore --jobs 2 into a fresh server (the approach
   of charts that ship a dump CronJob), each timed; the row count is checked.

It prints one JSON line and records it in the "## Backups" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devkit.backup_rig import BUCKET, WAL_PREFIX, BackupRig
from devkit.object_store import MinioServer
from devkit.postgres import PostgresServer, find_postgres_bindir
from devkit.process import wait_until
from devkit.records import BENCHMARKS_DOC, record_json_result
from sbo_operator.builders.backup_scripts import DEFAULT_ARCHIVE_TIMEOUT_SECONDS

# A bound on each step, not an expectation: on this shared 2-core machine a 1 GiB base backup took
# more than 5 minutes.
SCRIPT_TIMEOUT_SECONDS = 3600
ROW_BYTES_ON_DISK = 130  # heap tuple + its share of the primary key index, measured on PostgreSQL 15


def load(primary: PostgresServer, size_gib: float) -> int:
    """Create and fill the table; returns its row count."""
    count = int(size_gib * 2**30 / ROW_BYTES_ON_DISK)
    primary.execute("CREATE TABLE payload (id bigint PRIMARY KEY, body text NOT NULL)")
    primary.execute(
        "INSERT INTO payload SELECT g, md5(g::text) || md5((g + 1)::text) FROM generate_series(1, %s) g",
        (count,),
    )
    return count


def timed(action: Any) -> tuple[float, Any]:
    started = time.monotonic()
    result = action()
    return round(time.monotonic() - started, 2), result


def data_loss_window(rig: BackupRig, primary: PostgresServer, samples: int, seed: int) -> list[float]:
    """Seconds from a commit until the segment holding it is an object in the store."""
    randomness = random.Random(seed)
    windows = []
    for _ in range(samples):
        time.sleep(randomness.uniform(0, DEFAULT_ARCHIVE_TIMEOUT_SECONDS))
        with primary.connect() as conn:
            conn.execute("INSERT INTO payload VALUES (-%s, 'window probe')", (len(windows) + 1,))
            committed = time.monotonic()
            row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
        segment = str(row[0]) if row else ""
        wait_until(
            lambda segment=segment: any(segment in key for key in rig.store.list_keys(BUCKET, WAL_PREFIX)),
            DEFAULT_ARCHIVE_TIMEOUT_SECONDS * 4,
            f"segment {segment} in the store",
            interval=0.2,
        )
        windows.append(round(time.monotonic() - committed, 2))
    return windows


def dump_and_restore(primary: PostgresServer, work: Path) -> dict[str, Any]:
    bindir = find_postgres_bindir()
    dump = work / "payload.dump"
    env = {**os.environ, "PGPASSWORD": primary.password}
    dump_seconds, _ = timed(
        lambda: subprocess.run(
            [str(bindir / "pg_dump"), "-Fc", "-f", str(dump), primary.url(password=False)],
            env=env,
            check=True,
        )
    )
    target = PostgresServer.start()
    try:
        target.create_database("restored")
        restore_env = {**os.environ, "PGPASSWORD": target.password}
        command = [
            str(bindir / "pg_restore"),
            "--jobs",
            "2",
            "--no-owner",
            "-d",
            target.url("restored", password=False),
        ]
        restore_seconds, _ = timed(lambda: subprocess.run([*command, str(dump)], env=restore_env, check=True))
        (rows,) = target.execute("SELECT count(*) FROM payload", database="restored")[0]
    finally:
        target.destroy()
    return {
        "pg_dump_seconds": dump_seconds,
        "pg_restore_seconds": restore_seconds,
        "dump_bytes": dump.stat().st_size,
        "rows_after_pg_restore": rows,
    }


# restore.sh's own lines ("2026-12-07T15:20:01.123Z restore.sh: ...") and the recovery server's
# (log_line_prefix '%m [%p] ': "2026-12-07 15:20:01.123 UTC [42] LOG:  ...") mark the phases.
_SCRIPT_MARKS = {
    "restoring backup": "backup_chosen",
    "base backup downloaded": "downloaded",
    "promoted; stopping": "promotion_seen",
    "restored and promoted": "done",
}
_SERVER_MARKS = {
    "redo starts at": "redo_started",
    "redo done at": "redo_done",
    # During recovery the server logs restartpoints: its first checkpoint is the end-of-recovery one.
    "checkpoint starting: end-of-recovery": "checkpoint_started",
    "checkpoint complete": "checkpoint_done",
    "database system is ready to accept connections": "promoted",
}

# Each phase as (name, the mark it starts at, the mark it ends at), in order.
_PHASES = [
    ("list_and_choose", "started", "backup_chosen"),
    ("download_and_unpack", "backup_chosen", "downloaded"),
    ("server_start_to_redo", "downloaded", "redo_started"),
    ("wal_fetch_and_replay", "redo_started", "redo_done"),
    ("end_of_recovery_checkpoint_and_promotion", "redo_done", "promoted"),
    # ... that one split: the lookups past the end (the next segment, timeline history files),
    # the end-of-recovery checkpoint itself, then the step to accepting connections.
    ("end_of_recovery_lookups", "redo_done", "checkpoint_started"),
    ("end_of_recovery_checkpoint", "checkpoint_started", "checkpoint_done"),
    ("checkpoint_to_ready", "checkpoint_done", "promoted"),
    ("promotion_noticed", "promoted", "promotion_seen"),
    ("shutdown_and_move", "promotion_seen", "done"),
]


def _script_time(line: str) -> datetime | None:
    stamp = line.split(" ", 1)[0]
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _server_time(line: str) -> datetime | None:
    try:
        return datetime.strptime(line[:27], "%Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=UTC)
    except ValueError:
        return None


def restore_phases(started: datetime, stderr: str, recovery_log: str) -> dict[str, Any]:
    """Seconds per phase of one restore, from the timestamps in its logs (not from guesses)."""
    marks: dict[str, datetime] = {"started": started}
    for line in stderr.splitlines():
        moment = _script_time(line)
        for text, mark in _SCRIPT_MARKS.items():
            if moment is not None and text in line:
                marks.setdefault(mark, moment)
    fetched = 0
    for line in recovery_log.splitlines():
        moment = _server_time(line)
        fetched += "restored log file" in line
        for text, mark in _SERVER_MARKS.items():
            if moment is not None and text in line:
                marks.setdefault(mark, moment)
    phases: dict[str, Any] = {}
    for name, begin, end in _PHASES:
        if begin in marks and end in marks:
            phases[name] = round((marks[end] - marks[begin]).total_seconds(), 2)
    phases["wal_files_restored"] = fetched
    return phases


def stored_bytes(store: MinioServer, prefix: str) -> int:
    """Bytes on the store's disk under ``prefix`` (MinIO's object parts and metadata)."""
    root = store.data_dir / BUCKET / prefix
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="sbo-bench-backup-"))
    store = MinioServer.start(work)
    rig = BackupRig.create(store, compression=args.compression)
    try:
        store.create_bucket(BUCKET)
        primary = rig.start_primary()
        load_seconds, _ = timed(lambda: load(primary, args.size_gib))
        (database_bytes,) = primary.execute("SELECT pg_database_size('postgres')")[0]
        catch_up_seconds, _ = timed(lambda: rig.wait_archived(primary, timeout=1800))
        backup_seconds, _ = timed(lambda: rig.base_backup(primary, timeout=SCRIPT_TIMEOUT_SECONDS))
        backup_keys = store.list_keys(BUCKET, "shop/postgres/base/")
        backup_bytes = stored_bytes(store, "shop/postgres/base")
        windows = data_loss_window(rig, primary, args.window_samples, args.seed)
        rig.wait_archived(primary)
        (rows,) = primary.execute("SELECT count(*) FROM payload")[0]
        restore_started = datetime.now(UTC)
        restore_seconds, (done, restored) = timed(
            lambda: rig.restore(primary, timeout=SCRIPT_TIMEOUT_SECONDS)
        )
        if done.returncode != 0:
            raise RuntimeError(f"restore.sh failed ({done.returncode}): {done.stderr}")
        recovery_log = (restored.server_dir / "restore-recovery.log").read_text(errors="replace")
        phases = restore_phases(restore_started, done.stderr, recovery_log)
        restored.start_again()
        (restored_rows,) = restored.execute("SELECT count(*) FROM payload")[0]
        restored.destroy()
        dump = dump_and_restore(primary, work)
    finally:
        rig.cleanup()
        store.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "benchmark": "backup",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        "postgres_database_bytes": database_bytes,
        "rows": rows,
        "load_seconds": load_seconds,
        "archive_catch_up_after_load_seconds": catch_up_seconds,
        "base_backup_seconds": backup_seconds,
        "base_backup_objects": len(backup_keys),
        "base_backup_stored_bytes": backup_bytes,
        "compression": args.compression,
        "restore_seconds": restore_seconds,
        "restore_phases_seconds": phases,
        "rows_after_restore": restored_rows,
        "archive_timeout_seconds": DEFAULT_ARCHIVE_TIMEOUT_SECONDS,
        "data_loss_window_seconds": windows,
        "data_loss_window_max_seconds": max(windows),
        **dump,
        "targets": {
            "data_loss_window_at_most_60s": max(windows) <= 60,
            "restore_faster_than_pg_restore": restore_seconds < dump["pg_restore_seconds"],
            "restore_complete": restored_rows == rows == dump["rows_after_pg_restore"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gib", type=float, default=1.0, help="size of the database to back up")
    parser.add_argument(
        "--window-samples", type=int, default=4, help="commits timed until they are in the store"
    )
    parser.add_argument(
        "--compression",
        choices=["gzip", "bzip2", "snappy", "none"],
        default="none",
        help="SBO_BACKUP_COMPRESSION for archiving and the base backup (default: the spec's, none)",
    )
    parser.add_argument("--seed", type=int, default=13, help="seed of the commits' random moments")
    parser.add_argument("--no-record", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result))
    if not args.no_record:
        record_json_result(
            BENCHMARKS_DOC,
            result,
            section="## Backups (make bench-backup)",
            marker="bench-backup",
            heading=f"`make bench-backup` (`python -m bench.backup --size-gib {args.size_gib}`), "
            + result["when"],
        )


if __name__ == "__main__":
    main()
