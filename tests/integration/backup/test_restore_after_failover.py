"""A restore from the store after a failover follows the new primary's timeline, to the row.

As the operator's instances do: a primary archiving with wal-archive.sh and a base backup; a
streaming standby of it with the same archive settings, so that once promoted it archives to the
same path (its timeline history file, the old timeline's last segment as ``.partial``, then its
own segments). Rows 1..200 are written on timeline 1, the primary stops, the standby is promoted
and rows 201..300 are written on timeline 2. A new data directory restored with restore.sh and
the fetcher, exactly as the operator runs them, must hold every row, or every row up to a target
on timeline 2.

The fork lies within the fetcher's read-ahead: the old timeline's segment of the fork's number
(the ``.partial``, or the whole one the old primary archived late) is fetched ahead before
recovery asks for the new timeline's, and must not be served for it.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import pytest

from devkit.backup_rig import BackupRig, rows
from devkit.postgres import PostgresServer, start_replica_of

pytestmark = pytest.mark.integration

Commit = tuple[int, datetime, str]

# How the old primary goes: "fast" (SIGINT: a shutdown checkpoint the standby receives) or
# "immediate" (SIGQUIT: no checkpoint, as a pod killed at the end of its grace period).
STOP_SIGNALS = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT}
# Or "late": still running when the standby is promoted (a pod in its grace period, a partition),
# it archives its last timeline-1 segments, past the fork and of the numbers timeline 2 has too,
# after the new primary has archived its own; then it stops.
OLD_PRIMARY_ENDINGS = [*STOP_SIGNALS, "late"]


@dataclass
class FailedOver:
    rig: BackupRig
    old_primary: PostgresServer
    new_primary: PostgresServer
    on_new_timeline: list[Commit]


def insert_each(server: PostgresServer, ids: Iterable[int]) -> list[Commit]:
    """One committed transaction per id; each as (id, commit timestamp, WAL insert LSN after it)."""
    committed: list[Commit] = []
    with server.connect() as conn:
        for row_id in ids:
            conn.execute("INSERT INTO orders VALUES (%s, 'x')", (row_id,))
            after = conn.execute(
                "SELECT pg_xact_commit_timestamp(xmin), pg_current_wal_insert_lsn()::text"
                " FROM orders WHERE id = %s",
                (row_id,),
            ).fetchone()
            assert after is not None
            committed.append((row_id, after[0], str(after[1])))
    return committed


def timeline_of(server: PostgresServer) -> int:
    return int(server.execute("SELECT timeline_id FROM pg_control_checkpoint()")[0][0])


def fail_over(rig: BackupRig, stop: str) -> FailedOver:
    primary = rig.start_primary()
    primary.execute("CREATE TABLE orders (id bigint PRIMARY KEY, note text)")
    primary.execute("INSERT INTO orders SELECT g, 'x' FROM generate_series(1, 100) g")
    rig.base_backup(primary)
    primary.execute("INSERT INTO orders SELECT g, 'x' FROM generate_series(101, 200) g")
    standby = start_replica_of(primary, extra_env={**rig.base_env(), **rig.store_env()})
    rig.owned.append(standby)
    rig.wait_archived(primary)
    standby.wait_for_replay()

    if stop in STOP_SIGNALS:
        primary.stop(sig=STOP_SIGNALS[stop])
    standby.execute("SELECT pg_promote()")
    standby.execute("CHECKPOINT")  # pg_control names timeline 2
    assert timeline_of(standby) == 2
    after: list[Commit] = []
    for first in range(201, 301, 20):  # over several segments: recovery takes them from the prefetch
        after += insert_each(standby, range(first, first + 20))
        rig.wait_archived(standby)
    if stop == "late":
        for _ in range(3):  # WAL nobody replays: a checkpoint record in each segment it switches
            primary.execute("CHECKPOINT")
            rig.wait_archived(primary)
        primary.stop()
    return FailedOver(rig, primary, standby, after)


def restored(failed_over: FailedOver, **target: datetime | str) -> tuple[list[int], str]:
    """restore.sh into a new data directory: the rows it holds, and the segment recovery ended on."""
    done, server = failed_over.rig.restore(failed_over.new_primary, **target)  # type: ignore[arg-type]
    recovery_log = server.server_dir / "restore-recovery.log"
    assert done.returncode == 0, done.stderr + recovery_log.read_text()
    # restore.sh's own account, from the recovery server's log: what the pod's log keeps.
    replayed = re.search(r"WAL replayed through ([0-9A-F]{24}), new timeline 3\)", done.stderr)
    assert replayed, done.stderr + recovery_log.read_text()
    server.start_again()
    return rows(server), replayed[1]


def segment_numbers(rig: BackupRig, timeline: int) -> set[str]:
    return {name[8:] for name in rig.archived_segments() if int(name[:8], 16) == timeline}


@pytest.mark.parametrize("stop", OLD_PRIMARY_ENDINGS)
def test_a_restore_to_latest_after_a_failover_has_the_rows_of_both_timelines(
    rig: BackupRig, stop: str
) -> None:
    failed_over = fail_over(rig, stop)
    if stop == "late":  # the old timeline's segments past the fork are in the store, whole
        assert segment_numbers(rig, 1) & segment_numbers(rig, 2)
    rows_restored, last_segment = restored(failed_over)
    assert rows_restored == list(range(1, 301))
    assert last_segment.startswith("00000002")


def test_a_restore_to_a_time_or_an_lsn_on_the_new_timeline_stops_there(rig: BackupRig) -> None:
    failed_over = fail_over(rig, "fast")
    row_id, committed, lsn = failed_over.on_new_timeline[49]
    assert row_id == 250
    for target in ({"target_time": committed}, {"target_lsn": lsn}):
        rows_restored, last_segment = restored(failed_over, **target)
        assert rows_restored == list(range(1, 251)), target
        assert last_segment.startswith("00000002"), target
