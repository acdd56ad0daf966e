"""The backup sidecar and the operator's read of its record, on real PostgreSQL and a real MinIO.

The sidecar script runs as in the pod: it polls its role and request files, takes a base backup
for a new request on the primary, and records it in sbo.base_backups; the operator's probe
(``read_archive_state``, as ``sbo_operator`` with pg_monitor) reads that record and
pg_stat_archiver. A request it has recorded is never taken twice; a replica never acts.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devkit.backup_rig import DESTINATION, BackupRig
from devkit.postgres import PostgresServer
from devkit.process import wait_until
from sbo_operator.builders.backup import BACKUP_SIDECAR_SCRIPT, SIDECAR_SCRIPT_NAME
from sbo_operator.postgres_backup import ArchiveState, read_archive_state

pytestmark = pytest.mark.integration

OPERATOR_PASSWORD = "operator-password-for-the-test"


class Sidecar:
    def __init__(self, rig: BackupRig, primary: PostgresServer, podinfo: Path) -> None:
        (rig.scripts_dir / SIDECAR_SCRIPT_NAME).write_text(BACKUP_SIDECAR_SCRIPT)
        self.role = podinfo / "role"
        self.request = podinfo / "backup-request"
        for path in (self.role, self.request):
            path.write_text("")
            path.chmod(0o644)
        env = {
            **rig.base_env(),
            **rig.store_env(),
            "SBO_BACKUP_SCRIPTS_DIR": str(rig.scripts_dir),
            "SBO_PG_ROLE_FILE": str(self.role),
            "SBO_BACKUP_REQUEST_FILE": str(self.request),
            "SBO_OPERATOR_USER": "sbo_operator",
            "SBO_BACKUP_POLL_SECONDS": "0.2",
            # In the pod: the socket as the postgres OS user; here the server's TCP port and password.
            "SBO_PG_SOCKET_DIR": "127.0.0.1",
            "SBO_PG_PORT": str(primary.port),
            "PGUSER": "postgres",
            "PGPASSWORD": primary.password,
        }
        self.log = podinfo / "sidecar.log"
        self.process = subprocess.Popen(
            ["sh", str(rig.scripts_dir / SIDECAR_SCRIPT_NAME)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("w"),
            cwd="/",
            **primary.popen_options(),
        )

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def primary(rig: BackupRig) -> PostgresServer:
    server = rig.start_primary()
    server.execute(f"CREATE ROLE sbo_operator LOGIN PASSWORD '{OPERATOR_PASSWORD}'")
    server.execute("GRANT pg_monitor TO sbo_operator")
    return server


@pytest.fixture
def sidecar(rig: BackupRig, primary: PostgresServer) -> Iterator[Sidecar]:
    # Beside the scripts: a directory the servers' user can reach, as the podinfo volume.
    podinfo = rig.scripts_dir / "podinfo"
    podinfo.mkdir(mode=0o755)
    running = Sidecar(rig, primary, podinfo)
    yield running
    running.stop()


def probe(primary: PostgresServer) -> ArchiveState:
    """What the operator reads, as sbo_operator."""

    async def read() -> ArchiveState:
        connection = await psycopg.AsyncConnection.connect(
            host="127.0.0.1",
            port=primary.port,
            user="sbo_operator",
            password=OPERATOR_PASSWORD,
            dbname="postgres",
            autocommit=True,
        )
        async with connection:
            return await read_archive_state(connection)

    return asyncio.run(read())


def recorded(primary: PostgresServer) -> list[tuple[str, str]]:
    return [
        (str(name), str(request))
        for name, request in primary.execute("SELECT name, request FROM sbo.base_backups ORDER BY name")
    ]


def has_record(primary: PostgresServer) -> bool:
    return bool(primary.execute("SELECT to_regclass('sbo.base_backups') IS NOT NULL")[0][0]) and bool(
        recorded(primary)
    )


def test_the_primary_takes_each_request_once_and_the_operator_reads_the_record(
    rig: BackupRig, primary: PostgresServer, sidecar: Sidecar
) -> None:
    before = probe(primary)
    assert before.last_backup is None, "no record before the first backup"

    sidecar.request.write_text("2026-01-31T03:00:00Z")
    sidecar.role.write_text("replica")
    time.sleep(2)
    assert primary.execute("SELECT to_regclass('sbo.base_backups')")[0][0] is None, "a replica never acts"

    sidecar.role.write_text("primary")
    wait_until(lambda: has_record(primary), 120, "the sidecar to record the base backup", interval=0.5)
    [(name, request)] = recorded(primary)
    assert request == "2026-01-31T03:00:00Z"

    state = probe(primary)
    assert state.last_backup is not None
    assert state.last_backup.name == name
    assert state.last_backup.destination == DESTINATION
    assert state.last_backup.completed_at is not None
    assert state.last_backup.started_at is not None
    assert state.last_backup.started_at <= state.last_backup.completed_at
    assert state.last_backup.first_recoverability_point == state.last_backup.completed_at, "one backup kept"
    assert state.last_backup.end_lsn is not None
    assert "/" in state.last_backup.end_lsn
    rig.wait_archived(primary)
    archived = probe(primary)
    assert archived.last_archived_wal is not None
    assert not archived.failing

    # The same request again (a pod recreated with the same annotation): not taken twice.
    sidecar.stop()
    restarted = Sidecar(rig, primary, sidecar.role.parent)
    restarted.role.write_text("primary")
    restarted.request.write_text("2026-01-31T03:00:00Z")
    try:
        wait_until(
            lambda: "recorded already" in restarted.log.read_text(), 60, "the sidecar to skip", interval=0.5
        )
        assert len(recorded(primary)) == 1
        time.sleep(1.5)  # a backup id is to the second
        restarted.request.write_text("2026-02-01T03:00:00Z")
        wait_until(lambda: len(recorded(primary)) == 2, 120, "the second base backup", interval=0.5)
        newest = probe(primary).last_backup
        assert newest is not None
        assert newest.name != name
        assert newest.first_recoverability_point == state.last_backup.first_recoverability_point
    finally:
        restarted.stop()
