"""Continuous archiving with wal-archive.sh to a real MinIO: outages, gaps, TLS and credentials.

The primary runs the archive settings exactly as emitted, with the store's credentials only in
its environment (as the pod's container gets them from a Secret). The numbers an alert reads
come from pg_stat_archiver: archiving is failing while last_failed_time is newer than
last_archived_time.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from devkit.backup_rig import (
    BUCKET,
    DESTINATION,
    SERVER_NAME,
    BackupRig,
    cmdlines,
    insert_one_per_transaction,
    rows,
    segment_after,
)
from devkit.fixtures_servers import MakeObjectStore
from devkit.postgres import PostgresServer
from devkit.process import wait_until

pytestmark = pytest.mark.integration

# What an alert on archiving would evaluate (the same comparison as the exporters' gauges).
ARCHIVING_FAILING = """
SELECT coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false), failed_count
FROM pg_stat_archiver
"""


def archiving_failing(primary: PostgresServer) -> bool:
    return bool(primary.execute(ARCHIVING_FAILING)[0][0])


def first_segment_of_the_backup(rig: BackupRig) -> str:
    listing = subprocess.run(
        [
            "barman-cloud-backup-list",
            "--endpoint-url",
            rig.store.endpoint_url,
            "--format",
            "json",
            DESTINATION,
            SERVER_NAME,
        ],
        env={**rig.base_env(), **rig.store.client_env()},
        capture_output=True,
        text=True,
        check=True,
    )
    (backup,) = json.loads(listing.stdout)["backups_list"]
    return str(backup["begin_wal"])


def make_wal(primary: PostgresServer, segments: int) -> None:
    """Commit something into each of ``segments`` new WAL segments."""
    for _ in range(segments):
        insert_one_per_transaction(primary, 3)
        primary.execute("SELECT pg_switch_wal()")


def test_a_store_outage_shows_in_pg_stat_archiver_and_leaves_no_gap(rig: BackupRig) -> None:
    primary = rig.start_primary()
    primary.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, note text)")
    rig.base_backup(primary)
    first = first_segment_of_the_backup(rig)
    rig.wait_archived(primary)
    assert not archiving_failing(primary)

    rig.store.stop()
    make_wal(primary, 3)
    wait_until(lambda: archiving_failing(primary), 90, "pg_stat_archiver to show failures", interval=0.5)
    (_, failed_count) = primary.execute(ARCHIVING_FAILING)[0]
    assert failed_count >= 1

    rig.store.start_again()
    make_wal(primary, 1)  # the next switch wakes the archiver at once (it would retry within 60 s anyway)
    last = rig.wait_archived(primary, timeout=120)
    assert not archiving_failing(primary)

    archived = set(rig.archived_segments())
    expected, segment = [first], first
    while segment != last:
        segment = segment_after(segment)
        expected.append(segment)
    assert [name for name in expected if name not in archived] == []
    assert len(expected) >= 6  # the backup's, the outage's three, the catch-up's: a real sequence


def test_credentials_never_reach_a_command_line_or_the_output(rig: BackupRig) -> None:
    primary = rig.start_primary()
    primary.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, note text)")
    secrets = (rig.store.secret_key, rig.store.access_key)
    # An outage makes each archive attempt last seconds (the client retries): time to look at it.
    rig.store.stop()
    make_wal(primary, 2)
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not archiving_failing(primary):
        seen.update((pid, line) for pid, line in cmdlines() if "wal-archive" in line)
        time.sleep(0.02)
    seen.update((pid, line) for pid, line in cmdlines() if "wal-archive" in line)
    rig.store.start_again()
    backup = rig.base_backup(primary)
    rig.wait_archived(primary, timeout=120)

    assert any("barman-cloud-wal-archive" in line for line in seen.values()), seen
    assert [line for line in seen.values() if any(secret in line for secret in secrets)] == []
    assert [line for _, line in cmdlines() if any(secret in line for secret in secrets)] == []
    outputs = backup.stdout + backup.stderr + primary.log_path.read_text(errors="replace")
    assert "wal-archive" in primary.log_path.read_text(errors="replace")  # the failures were logged
    assert [secret for secret in secrets if secret in outputs] == []


def test_archiving_and_restore_over_https_with_the_ca_bundle(make_object_store: MakeObjectStore) -> None:
    rig = BackupRig.create(make_object_store(bucket=BUCKET, tls=True))
    try:
        assert rig.store.endpoint_url.startswith("https://")
        primary = rig.start_primary()
        primary.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, note text)")
        rig.base_backup(primary)
        committed = [row_id for row_id, _, _ in insert_one_per_transaction(primary, 5)]
        rig.wait_archived(primary)
        done, restored = rig.restore(primary)
        assert done.returncode == 0, done.stderr
        restored.start_again()
        assert rows(restored) == committed
    finally:
        rig.cleanup()


def test_a_store_outage_during_restore_aborts_it_rather_than_promoting_early(rig: BackupRig) -> None:
    primary = rig.start_primary()
    primary.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, note text)")
    rig.base_backup(primary)
    make_wal(primary, 2)
    rig.wait_archived(primary)
    # The listing and the base backup come through; the store goes away before recovery is done,
    # and a WAL fetch that meets it must abort the recovery, not end it as if the archive ended.
    restore = rig.run_in_background_restore(primary)
    signal_file = restore.restored.data_dir.with_name("data.new") / "recovery.signal"
    wait_until(signal_file.exists, 120, "restore.sh to download the base backup", interval=0.05)
    rig.store.stop()
    done = restore.wait()
    assert done.returncode == 1, done.stderr
    assert "aborting recovery" in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("restore.sh: the recovery server exited before promoting")
    )
    assert not restore.restored.data_dir.exists()
    rig.store.start_again()  # so the primary's shutdown archives its last segment instead of waiting
