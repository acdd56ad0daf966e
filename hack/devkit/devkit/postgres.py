"""Real PostgreSQL servers for tests and benchmarks: a primary and streaming read replicas.

Each server listens on a free port on 127.0.0.1, keeps its data in a temporary directory and
runs in its own process group, so that it can be stopped cleanly, killed like a crash, and
started again on the same port and data::

    primary = PostgresServer.start(tmp_path)
    replica = start_replica_of(primary)
    primary.execute("CREATE TABLE t (id int)")
    replica.wait_for_replay()
    replica.pause_replay()          # make the replica lag on purpose
    primary.stop(); primary.start_again()
    replica.destroy(); primary.destroy()

PostgreSQL refuses to run as root. When the tests run as root, every PostgreSQL process runs
as an unprivileged system user (``postgres`` by default, ``SBO_PG_USER`` to override; it is
created if missing) and the data directories belong to that user. As a normal user the
processes run as yourself. The binaries are found in ``SBO_PG_BINDIR``, then the newest
``/usr/lib/postgresql/*/bin``, then ``pg_config --bindir``, then ``PATH``; if none is found,
``start`` raises :class:`ServerError` saying so (tests must fail, not skip).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from devkit.process import LOOPBACK, ManagedProcess, ServerError, free_port, log_tail, wait_until

__all__ = ["PostgresServer", "ServerError", "find_postgres_bindir", "start_replica_of"]

SUPERUSER = "postgres"

# Fast, disposable clusters: no fsync (the OS still has the pages after a SIGKILL, so a killed
# server recovers every acknowledged commit; synchronous_commit stays on for that reason), no
# unix sockets (loopback TCP only), room for two app workers' pools.
DEFAULT_SETTINGS: Mapping[str, str] = {
    "listen_addresses": LOOPBACK,
    "unix_socket_directories": "",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "wal_keep_size": "256MB",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    "max_standby_streaming_delay": "-1",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def find_postgres_bindir() -> Path:
    """Locate the directory that holds ``initdb``, ``postgres`` and ``pg_basebackup``."""
    candidates: list[Path] = []
    if env := os.environ.get("SBO_PG_BINDIR"):
        candidates.append(Path(env))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(versions)
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "postgres", "pg_basebackup")):
            return bindir
    raise ServerError(
        "PostgreSQL server binaries (initdb, postgres, pg_basebackup) were not found. "
        "Install them (`make tools`, or apt-get install postgresql) or set SBO_PG_BINDIR."
    )


class _RunAs:
    """Who the PostgreSQL processes run as: ourselves, or an unprivileged user when we are root."""

    def __init__(self) -> None:
        self.entry: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            name = os.environ.get("SBO_PG_USER", "postgres")
            try:
                self.entry = pwd.getpwnam(name)
            except KeyError:
                subprocess.run(
                    ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                    check=True,
                    capture_output=True,
                )
                self.entry = pwd.getpwnam(name)

    def popen_kwargs(self) -> dict[str, Any]:
        if self.entry is None:
            return {}
        return {"user": self.entry.pw_uid, "group": self.entry.pw_gid, "extra_groups": []}

    def own(self, path: Path) -> None:
        if self.entry is not None:
            os.chown(path, self.entry.pw_uid, self.entry.pw_gid)

    def can_traverse(self, path: Path) -> bool:
        """True when the run-as user can reach ``path`` (every ancestor is searchable for it)."""
        if self.entry is None:
            return True
        uid, gid = self.entry.pw_uid, self.entry.pw_gid
        for part in [path, *path.parents]:
            st = part.stat()
            if st.st_uid == uid:
                bit = stat.S_IXUSR
            elif st.st_gid == gid:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                return False
        return True

    def run(self, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        with log.open("ab") as out:
            proc = subprocess.run(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd="/",
                check=False,
                **self.popen_kwargs(),
            )
        if proc.returncode != 0:
            raise ServerError(f"{Path(argv[0]).name} failed with exit code {proc.returncode}{log_tail(log)}")


def _make_server_dir(base_dir: Path | None, run_as: _RunAs, prefix: str) -> Path:
    """A fresh directory for one server, owned by the run-as user and reachable by it.

    ``base_dir`` (e.g. pytest's ``tmp_path``) is used when the run-as user can reach it;
    pytest's root-owned 0700 temp dirs cannot be reached by ``postgres``, so the system
    temp dir is used instead.
    """
    parent = base_dir if base_dir is not None and run_as.can_traverse(base_dir) else None
    server_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    server_dir.chmod(0o755)
    run_as.own(server_dir)
    return server_dir


class PostgresServer(ManagedProcess):
    """One PostgreSQL server (a primary, or a streaming replica) on 127.0.0.1.

    Create one with :meth:`start` or :func:`start_replica_of`. The superuser is ``postgres``
    with a random password (scram-sha-256 authentication, also for replication).
    """

    # Fast shutdown: disconnect clients, checkpoint, exit.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        *,
        server_dir: Path,
        port: int,
        password: str,
        bindir: Path,
        settings: Mapping[str, str],
        run_as: _RunAs,
        primary: PostgresServer | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name=f"postgres on port {port}", log_path=server_dir / "postgres.log")
        self.server_dir = server_dir
        self.data_dir = server_dir / "data"
        self.port = port
        self.password = password
        self.user = SUPERUSER
        self.bindir = bindir
        self.settings = dict(settings)
        self.primary = primary
        self.extra_env = dict(extra_env or {})
        self._run_as = run_as

    # ---- lifecycle -----------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        base_dir: Path | None = None,
        *,
        settings: Mapping[str, str] | None = None,
        pg_stat_statements: bool = False,
        extra_env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> PostgresServer:
        """initdb a new cluster under ``base_dir`` (or the system temp dir) and start it.

        ``settings`` are extra ``postgresql.conf`` parameters. ``pg_stat_statements`` preloads
        the extension and creates it in the ``postgres`` database. ``extra_env`` is added to the
        server's environment, which its archive_command inherits (e.g. object store credentials).
        """
        bindir = find_postgres_bindir()
        run_as = _RunAs()
        merged = {**DEFAULT_SETTINGS, **(settings or {})}
        if pg_stat_statements:
            merged["shared_preload_libraries"] = "pg_stat_statements"
            merged.setdefault("pg_stat_statements.track", "all")
        server = cls(
            server_dir=_make_server_dir(base_dir, run_as, "sbo-pg-"),
            port=free_port(),
            password=secrets.token_urlsafe(12),
            bindir=bindir,
            settings=merged,
            run_as=run_as,
            extra_env=extra_env,
        )
        pwfile = server.server_dir / "pwfile"
        pwfile.write_text(server.password + "\n")
        run_as.own(pwfile)
        run_as.run(
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(server.data_dir),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            server.log_path,
        )
        pwfile.unlink()
        server.start_again(timeout=timeout)
        if pg_stat_statements:
            server.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return server

    @classmethod
    def unstarted_copy_of(cls, source: PostgresServer, base_dir: Path | None = None) -> PostgresServer:
        """A server for a copy of ``source``'s data that something else will make (a restore).

        Its ``data_dir`` does not exist yet; its directory belongs to the user the servers run as,
        so a script run with :meth:`popen_options` can create it. Then :meth:`start_again`.
        Superuser and password are ``source``'s, as they come with the data.
        """
        return cls(
            server_dir=_make_server_dir(base_dir, source._run_as, "sbo-pg-copy-"),
            port=free_port(),
            password=source.password,
            bindir=source.bindir,
            settings=DEFAULT_SETTINGS,
            run_as=source._run_as,
        )

    def start_again(self, timeout: float = 60.0) -> None:
        """Start the server process on the same port and data directory (after stop/kill)."""
        self.launch(timeout)

    def command(self) -> list[str]:
        argv = [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def working_dir(self) -> Path:
        return Path("/")

    def environment(self) -> Mapping[str, str] | None:
        return {**os.environ, **self.extra_env} if self.extra_env else None

    def popen_options(self) -> dict[str, Any]:
        return self._run_as.popen_kwargs()

    def is_ready(self) -> bool:
        try:
            self.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.server_dir, ignore_errors=True)

    # ---- addresses -----------------------------------------------------------------------

    def url(self, database: str = "postgres", *, password: bool = True, scheme: str = "postgresql") -> str:
        """A URL such as ``postgresql://postgres:pw@127.0.0.1:5432/db``.

        ``password=False`` leaves the password out, as the operator does (it passes the
        password separately, from a Secret).
        """
        auth = f"{self.user}:{quote(self.password, safe='')}" if password else self.user
        return f"{scheme}://{auth}@{LOOPBACK}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        """URL of the ``postgres`` database, with the password."""
        return self.url()

    # ---- SQL helpers -----------------------------------------------------------------------

    def connect(self, database: str = "postgres", *, autocommit: bool = True) -> psycopg.Connection[Any]:
        """A psycopg connection (autocommit by default). Close it, or use it as a context manager."""
        return psycopg.connect(
            host=LOOPBACK,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            autocommit=autocommit,
            connect_timeout=3,
        )

    def execute(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, *, database: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; return its rows (empty when it has none)."""
        with self.connect(database) as conn, conn.cursor() as cur:
            cur.execute(sql.encode(), params)  # bytes: tests pass trusted literal SQL
            return list(cur.fetchall()) if cur.description is not None else []

    def wait_for_true(
        self, sql: str, params: Sequence[Any], *, timeout: float, what: str, log: Path | None = None
    ) -> None:
        """Poll ``sql`` (one row, one boolean-like value) on this server until it answers true."""
        wait_until(lambda: bool(self.execute(sql, params)[0][0]), timeout, what, log=log or self.log_path)

    def create_database(self, name: str) -> str:
        """Create a database (on a primary) and return its name."""
        self.execute(f'CREATE DATABASE "{name}"')
        return name

    # ---- replication -----------------------------------------------------------------------

    def _require_replica(self) -> PostgresServer:
        if self.primary is None:
            raise ServerError("this server is not a replica")
        return self.primary

    def wait_for_replay(self, timeout: float = 30.0) -> None:
        """Wait until this replica has replayed everything its primary has written so far."""
        primary = self._require_replica()
        (target,) = primary.execute("SELECT pg_current_wal_insert_lsn()::text")[0]
        self.wait_for_true(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)",
            (target,),
            timeout=timeout,
            what=f"replica on port {self.port} to replay {target}",
        )

    def pause_replay(self) -> None:
        """Stop applying WAL (streaming continues): reads from this replica go stale."""
        self._require_replica()
        self.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self._require_replica()
        self.execute("SELECT pg_wal_replay_resume()")

    def __repr__(self) -> str:
        role = "replica" if self.primary is not None else "primary"
        return f"<PostgresServer {role} 127.0.0.1:{self.port} {self.server_dir}>"


def start_replica_of(
    primary: PostgresServer,
    base_dir: Path | None = None,
    timeout: float = 60.0,
    *,
    extra_env: Mapping[str, str] | None = None,
) -> PostgresServer:
    """Clone ``primary`` with pg_basebackup and start it as a hot standby streaming from it.

    The replica has ``standby.signal`` and a ``primary_conninfo`` pointing at the primary, the
    same settings and superuser password, and its own port. It is read-only. ``extra_env`` is
    added to its environment, as for :meth:`PostgresServer.start` (what its archive_command
    needs once it is promoted).
    """
    run_as = primary._run_as
    replica = PostgresServer(
        server_dir=_make_server_dir(base_dir, run_as, "sbo-pg-replica-"),
        port=free_port(),
        password=primary.password,
        bindir=primary.bindir,
        settings=primary.settings,
        run_as=run_as,
        primary=primary,
        extra_env=extra_env,
    )
    run_as.run(
        [
            str(primary.bindir / "pg_basebackup"),
            "--host",
            LOOPBACK,
            "--port",
            str(primary.port),
            "--username",
            SUPERUSER,
            "--pgdata",
            str(replica.data_dir),
            "--wal-method",
            "stream",
            "--checkpoint",
            "fast",
            "--no-sync",
        ],
        replica.log_path,
        env={"PGPASSWORD": primary.password},
    )
    application_name = f"replica_{replica.port}"
    conninfo = (
        f"host={LOOPBACK} port={primary.port} user={SUPERUSER} "
        f"password={primary.password} application_name={application_name}"
    )
    with (replica.data_dir / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"primary_conninfo = '{conninfo}'\n")
    signal_file = replica.data_dir / "standby.signal"
    signal_file.touch()
    run_as.own(signal_file)
    replica.start_again(timeout=timeout)
    primary.wait_for_true(
        "SELECT count(*) FROM pg_stat_replication WHERE application_name = %s AND state = 'streaming'",
        (application_name,),
        timeout=timeout,
        what=f"replica on port {replica.port} to stream",
        log=replica.log_path,
    )
    return replica
