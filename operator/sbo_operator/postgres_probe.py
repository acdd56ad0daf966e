"""What the operator asks each PostgreSQL instance, and how it promotes one: plain SQL over the
pod's address, as the operator's own role (``sbo_operator``, Secret ``<name>-postgres-operator``).

Every call is bounded (connect_timeout 2 s, and an overall timeout): an instance that does not
answer in time is unreachable, never a stuck reconcile. Nothing here touches the Kubernetes API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from sbo_operator.builders.names import POSTGRES_PORT
from sbo_operator.postgres_backup import ArchiveState, read_archive_state

__all__ = [
    "PROBE_QUERY",
    "REFUSED",
    "SHUTTING_DOWN",
    "STOPPED",
    "TIMED_OUT",
    "UNROUTABLE",
    "Credentials",
    "InstanceProbe",
    "lag_bytes",
    "probe_instance",
    "promote_instance",
    "set_synchronous_standby_names",
    "unreachable_reason",
]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 2
# What a server says to a new connection while it shuts down (lc_messages is 'C' in our
# postgresql.conf): it refuses sessions, but its walsenders may still be sending the last WAL.
SHUTTING_DOWN_MESSAGE = "the database system is shutting down"
# Why an instance did not answer, when it matters to the election (InstanceProbe.error).
SHUTTING_DOWN = "ShuttingDown"
REFUSED = "ConnectionRefused"  # nothing listens: the server is not running
TIMED_OUT = "TimedOut"  # no answer within the connect timeout (or the probe's bound)
# Nothing holds the address any more: the pod's network namespace is gone, and its server with it.
UNROUTABLE = "Unroutable"
UNROUTABLE_MESSAGES = ("No route to host", "Network is unreachable", "Host is unreachable")
# The operator saw this terminating (or deleted) pod's server stop; it never starts again.
STOPPED = "Stopped"
QUERY_TIMEOUT_SECONDS = 3.0
PROMOTE_WAIT_SECONDS = 10  # pg_promote(wait => true, wait_seconds => 10)

# One round trip. LSNs as bytes since 0/0. On a standby: what it received or replayed, whichever
# is further, and the timeline its WAL receiver is on (NULL while it receives nothing).
PROBE_QUERY = """
SELECT
  pg_is_in_recovery() AS in_recovery,
  CASE WHEN pg_is_in_recovery()
    THEN (SELECT received_tli FROM pg_stat_wal_receiver LIMIT 1)
    ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
  END AS timeline,
  CASE WHEN pg_is_in_recovery()
    THEN (GREATEST(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) - '0/0'::pg_lsn)::bigint
    ELSE (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint
  END AS lsn,
  CASE WHEN pg_is_in_recovery()
    THEN (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint
    ELSE (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint
  END AS replay_lsn,
  EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming,
  current_setting('synchronous_standby_names') AS synchronous_standby_names,
  CASE WHEN NOT pg_is_in_recovery()
    THEN ARRAY(SELECT DISTINCT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1)
  END AS streaming_standbys
"""


@dataclasses.dataclass(frozen=True)
class Credentials:
    user: str
    password: str


@dataclasses.dataclass(frozen=True)
class InstanceProbe:
    """One instance's answer; ``reachable`` False and the rest None when it gave none."""

    reachable: bool
    in_recovery: bool | None = None
    timeline: int | None = None
    lsn: int | None = None
    replay_lsn: int | None = None
    streaming: bool | None = None
    # Why it is unreachable: SHUTTING_DOWN, REFUSED or the error's type (never with the password).
    error: str | None = None
    archive: ArchiveState | None = None  # a primary's archiver and last base backup (postgres_backup)
    synchronous_standby_names: str | None = None  # its setting now (SHOW synchronous_standby_names)
    streaming_standbys: tuple[str, ...] | None = None  # a primary's: application_names streaming from it

    @property
    def shutting_down(self) -> bool:
        return self.error == SHUTTING_DOWN

    @property
    def stopped(self) -> bool:
        return self.error == STOPPED

    def significant(self) -> tuple[object, ...]:
        """What makes a new pass worth it when it changes (not the LSNs: they move with every write).
        A standby that starts or stops streaming changes its primary's ``streaming_standbys``."""
        archive = None if self.archive is None else self.archive.significant()
        return (
            self.reachable,
            self.shutting_down,
            self.stopped,
            self.in_recovery,
            self.timeline,
            self.streaming,
            archive,
            self.synchronous_standby_names,
            self.streaming_standbys,
        )


UNREACHABLE = InstanceProbe(reachable=False)


def _conninfo(host: str, credentials: Credentials, port: int) -> str:
    return make_conninfo(
        host=host,
        port=port,
        user=credentials.user,
        password=credentials.password,
        dbname="postgres",
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        application_name="sbo-operator",
        sslmode="disable",
    )


async def probe_instance(host: str, credentials: Credentials, port: int = POSTGRES_PORT) -> InstanceProbe:
    """Ask the instance at ``host`` for its role, timeline, WAL positions and streaming state."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS + QUERY_TIMEOUT_SECONDS):
            connection = await psycopg.AsyncConnection.connect(
                _conninfo(host, credentials, port), autocommit=True
            )
            async with connection:
                cursor = await connection.execute(PROBE_QUERY)
                row = await cursor.fetchone()
                archive = None
                if row is not None and not row[0]:
                    archive = await read_archive_state(connection)
    except (OSError, TimeoutError, psycopg.Error) as error:
        return InstanceProbe(reachable=False, error=unreachable_reason(error))
    if row is None:
        return InstanceProbe(reachable=False, error="no row")
    in_recovery, timeline, lsn, replay_lsn, streaming, standby_names, standbys = row
    return InstanceProbe(
        reachable=True,
        in_recovery=bool(in_recovery),
        timeline=int(timeline) if timeline is not None else None,
        lsn=int(lsn) if lsn is not None else None,
        replay_lsn=int(replay_lsn) if replay_lsn is not None else None,
        streaming=bool(streaming),
        archive=archive,
        synchronous_standby_names=standby_names,
        streaming_standbys=tuple(standbys) if standbys is not None else None,
    )


def unreachable_reason(error: BaseException) -> str:
    """SHUTTING_DOWN, REFUSED, TIMED_OUT or UNROUTABLE when the error says so, else the error's type."""
    text = str(error)
    if isinstance(error, psycopg.errors.ConnectionTimeout | TimeoutError):
        return TIMED_OUT
    if isinstance(error, psycopg.OperationalError):
        if SHUTTING_DOWN_MESSAGE in text:
            return SHUTTING_DOWN
        if "Connection refused" in text:
            return REFUSED
        if any(message in text for message in UNROUTABLE_MESSAGES):
            return UNROUTABLE
    if isinstance(error, ConnectionRefusedError):
        return REFUSED
    return type(error).__name__


async def promote_instance(host: str, credentials: Credentials, port: int = POSTGRES_PORT) -> bool:
    """``SELECT pg_promote(true, 10)``: True once the instance left recovery."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS + PROMOTE_WAIT_SECONDS + QUERY_TIMEOUT_SECONDS):
            connection = await psycopg.AsyncConnection.connect(
                _conninfo(host, credentials, port), autocommit=True
            )
            async with connection:
                cursor = await connection.execute("SELECT pg_promote(true, %s)", (PROMOTE_WAIT_SECONDS,))
                row = await cursor.fetchone()
    except (OSError, TimeoutError, psycopg.Error) as error:
        log.warning("promoting the PostgreSQL instance at %s failed: %s", host, error)
        return False
    return bool(row and row[0])


async def set_synchronous_standby_names(
    host: str, credentials: Credentials, value: str, port: int = POSTGRES_PORT
) -> bool:
    """``ALTER SYSTEM SET synchronous_standby_names`` then ``pg_reload_conf()`` on the primary at
    ``host``; True once both ran. Commits waiting for standbys no longer asked for return."""
    statement = sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(sql.Literal(value))
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS + QUERY_TIMEOUT_SECONDS):
            connection = await psycopg.AsyncConnection.connect(
                _conninfo(host, credentials, port), autocommit=True
            )
            async with connection:
                await connection.execute(statement)
                await connection.execute("SELECT pg_reload_conf()")
    except (OSError, TimeoutError, psycopg.Error) as error:
        log.warning(
            "setting synchronous_standby_names on the PostgreSQL primary at %s failed: %s", host, error
        )
        return False
    return True


def lag_bytes(probes: Mapping[str, InstanceProbe]) -> dict[str, int]:
    """Each reachable instance's WAL not yet replayed: the writable instance's position (probed in
    the same round) minus its replay position; 0 for the writable one. {} without a writable one."""
    primary = max(
        (p.lsn for p in probes.values() if p.reachable and p.in_recovery is False and p.lsn is not None),
        default=None,
    )
    if primary is None:
        return {}
    return {
        name: max(0, primary - probe.replay_lsn)
        for name, probe in probes.items()
        if probe.reachable and probe.replay_lsn is not None
    }
