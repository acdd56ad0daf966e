"""The backup scripts of builders/backup_scripts.py, run exactly as the pods run them, on loopback.

Shared by tests/integration/backup/ and bench/backup.py.

A :class:`BackupRig` writes the scripts to a directory the PostgreSQL user can read, starts the
machine's PostgreSQL with the emitted archive settings and the store's credentials in its
environment (which archive_command inherits, as in the pod), and runs ``sh <script>`` as the
PostgreSQL user with the documented environment, pointed at a MinIO on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from devkit.object_store import MinioServer
from devkit.postgres import PostgresServer, find_postgres_bindir
from devkit.process import ServerError, wait_until
from sbo_operator.builders.backup_scripts import archive_settings, backup_script_files

BUCKET = "backups"
DESTINATION = f"s3://{BUCKET}/shop"
SERVER_NAME = "postgres"
WAL_PREFIX = f"shop/{SERVER_NAME}/wals/"


def segment_after(segment: str) -> str:
    """The WAL segment file that follows ``segment`` on its timeline (16 MiB segments)."""
    timeline, log, seg = segment[:8], int(segment[8:16], 16), int(segment[16:24], 16)
    log, seg = (log, seg + 1) if seg < 0xFF else (log + 1, 0)
    return f"{timeline}{log:08X}{seg:08X}"


@dataclass
class RunningRestore:
    process: subprocess.Popen[str]
    restored: PostgresServer

    def wait(self, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        stdout, stderr = self.process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, stdout, stderr)


@dataclass
class BackupRig:
    """A MinIO, the scripts on disk, and the environment the scripts get in a pod."""

    store: MinioServer
    scripts_dir: Path
    archive_timeout_seconds: int = 30
    # SBO_BACKUP_COMPRESSION for archiving and base backups; None leaves the scripts' default.
    compression: str | None = None
    owned: list[PostgresServer] = field(default_factory=list)

    @classmethod
    def create(cls, store: MinioServer, *, compression: str | None = None) -> BackupRig:
        scripts_dir = Path(tempfile.mkdtemp(prefix="sbo-bk-scripts-"))
        scripts_dir.chmod(0o755)
        for name, text in backup_script_files().items():
            (scripts_dir / name).write_text(text)
            (scripts_dir / name).chmod(0o644)
        return cls(store=store, scripts_dir=scripts_dir, compression=compression)

    # ---- environments -----------------------------------------------------------------------

    def client_env(self) -> dict[str, str]:
        """The store's credentials, with its CA (if any) copied where the PostgreSQL user can read it,
        as a CA mounted from a ConfigMap is in the pod."""
        env = self.store.client_env()
        if self.store.ca_bundle is not None:
            readable = self.scripts_dir / "ca.crt"
            shutil.copyfile(self.store.ca_bundle, readable)
            readable.chmod(0o644)
            env["AWS_CA_BUNDLE"] = str(readable)
        return env

    def store_env(self) -> dict[str, str]:
        """What the postgres container gets: the destination and the store's credentials."""
        return {
            **self.client_env(),
            "SBO_BACKUP_DESTINATION": DESTINATION,
            "SBO_BACKUP_SERVER_NAME": SERVER_NAME,
            "SBO_BACKUP_ENDPOINT_URL": self.store.endpoint_url,
            **({"SBO_BACKUP_COMPRESSION": self.compression} if self.compression is not None else {}),
        }

    def restore_env(self) -> dict[str, str]:
        return {
            **self.client_env(),
            "SBO_RESTORE_SOURCE": DESTINATION,
            "SBO_RESTORE_SERVER_NAME": SERVER_NAME,
            "SBO_RESTORE_ENDPOINT_URL": self.store.endpoint_url,
            "SBO_BACKUP_SCRIPTS_DIR": str(self.scripts_dir),
        }

    def base_env(self) -> dict[str, str]:
        bindir = find_postgres_bindir()
        return {"PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC"}

    # ---- servers ----------------------------------------------------------------------------

    def start_primary(self, **extra_settings: str) -> PostgresServer:
        """A primary archiving with wal-archive.sh (archive settings exactly as emitted)."""
        settings = {
            name: value.strip("'")
            for name, value in archive_settings(
                archive_timeout_seconds=self.archive_timeout_seconds, scripts_dir=str(self.scripts_dir)
            )
        }
        # Commit timestamps: the tests compare what a restore brought back with when it committed.
        settings["track_commit_timestamp"] = "on"
        server = PostgresServer.start(
            settings={**settings, **extra_settings}, extra_env={**self.base_env(), **self.store_env()}
        )
        self.owned.append(server)
        return server

    # ---- the scripts ------------------------------------------------------------------------

    def run(
        self, script: str, env: Mapping[str, str], *args: str, runner: PostgresServer, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """``sh <script> args...`` as the user the servers run as, with exactly ``env``."""
        return subprocess.run(
            ["sh", str(self.scripts_dir / script), *args],
            env={**self.base_env(), **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
            **runner.popen_options(),
        )

    def base_backup(
        self, primary: PostgresServer, *, timeout: float = 300, **env: str
    ) -> subprocess.CompletedProcess[str]:
        libpq = {"PGHOST": "127.0.0.1", "PGPORT": str(primary.port), "PGUSER": "postgres"}
        libpq["PGPASSWORD"] = primary.password
        done = self.run(
            "base-backup.sh", {**self.store_env(), **libpq, **env}, runner=primary, timeout=timeout
        )
        if done.returncode != 0:
            raise ServerError(f"base-backup.sh failed ({done.returncode}):\n{done.stderr}")
        return done

    def restore(
        self,
        source: PostgresServer,
        *,
        target_time: datetime | None = None,
        target_lsn: str | None = None,
        timeout: float = 300,
    ) -> tuple[subprocess.CompletedProcess[str], PostgresServer]:
        """Run restore.sh into a new server's (empty) data directory; the server is not started."""
        env, restored = self._restore_env(source, target_time, target_lsn)
        return self.run("restore.sh", env, runner=source, timeout=timeout), restored

    def run_in_background_restore(self, source: PostgresServer) -> RunningRestore:
        """restore.sh to latest, started and not waited for."""
        env, restored = self._restore_env(source, None, None)
        process = subprocess.Popen(
            ["sh", str(self.scripts_dir / "restore.sh")],
            env={**self.base_env(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
            **source.popen_options(),
        )
        return RunningRestore(process, restored)

    def _restore_env(
        self, source: PostgresServer, target_time: datetime | None, target_lsn: str | None
    ) -> tuple[dict[str, str], PostgresServer]:
        restored = PostgresServer.unstarted_copy_of(source)
        self.owned.append(restored)
        config_dir, socket_dir = restored.server_dir / "config", restored.server_dir / "run"
        for directory in (config_dir, socket_dir):
            directory.mkdir(mode=0o700)
            shutil.chown(directory, *_owner(restored.server_dir))
        (config_dir / "postgresql.conf").write_text(
            "shared_buffers = 32MB\nmax_connections = 20\nfsync = off\n"
        )
        (config_dir / "pg_hba.conf").write_text("local all all peer\n")
        env = {
            **self.restore_env(),
            "PGDATA": str(restored.data_dir),
            "SBO_PG_CONFIG_DIR": str(config_dir),
            "SBO_PG_SOCKET_DIR": str(socket_dir),
            "SBO_PG_RUNTIME_DIR": str(restored.server_dir),
            "SBO_PG_PORT": str(restored.port),
        }
        if target_time is not None:
            env["SBO_RESTORE_TARGET_TIME"] = target_time.isoformat()
        if target_lsn is not None:
            env["SBO_RESTORE_TARGET_LSN"] = target_lsn
        return env, restored

    # ---- what the store and the server say ------------------------------------------------------

    def archived_segments(self) -> list[str]:
        """The WAL segment names in the store (history and .backup files left out)."""
        names = [key.rsplit("/", 1)[-1] for key in self.store.list_keys(BUCKET, WAL_PREFIX)]
        for suffix in (".gz", ".bz2", ".snappy"):
            names = [name.removesuffix(suffix) for name in names]
        return sorted(
            name for name in names if len(name) == 24 and all(c in "0123456789ABCDEF" for c in name)
        )

    def wait_archived(self, primary: PostgresServer, timeout: float = 60) -> str:
        """Switch to a new segment and wait until the one before is archived; its name."""
        (segment,) = primary.execute("SELECT pg_walfile_name(pg_switch_wal())")[0]
        wait_until(
            lambda: primary.execute("SELECT last_archived_wal FROM pg_stat_archiver")[0][0] == segment,
            timeout,
            f"segment {segment} to be archived",
            log=primary.log_path,
            interval=0.2,
        )
        return str(segment)

    def cleanup(self) -> None:
        for server in reversed(self.owned):
            server.destroy()
        shutil.rmtree(self.scripts_dir, ignore_errors=True)


def _owner(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_uid, stat.st_gid


def rows(server: PostgresServer) -> list[int]:
    return [row[0] for row in server.execute("SELECT id FROM orders ORDER BY id")]


def insert_one_per_transaction(server: PostgresServer, count: int) -> list[tuple[int, datetime, str]]:
    """``count`` rows into ``orders``, one committed transaction each.

    Each as (id, commit timestamp, the WAL insert position right after its commit).
    """
    committed: list[tuple[int, datetime, str]] = []
    with server.connect() as conn:
        for _ in range(count):
            inserted = conn.execute("INSERT INTO orders (note) VALUES ('x') RETURNING id").fetchone()
            assert inserted is not None
            after = conn.execute(
                "SELECT pg_xact_commit_timestamp(xmin), pg_current_wal_insert_lsn()::text"
                " FROM orders WHERE id = %s",
                inserted,
            ).fetchone()
            assert after is not None
            committed.append((int(inserted[0]), after[0], str(after[1])))
    return committed


def cmdlines() -> Iterator[tuple[int, str]]:
    """Every process's command line, as (pid, text) with NULs as spaces."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                raw = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            yield int(entry.name), raw.replace(b"\0", b" ").decode(errors="replace")
