"""Engines and sessions: writes to the primary, reads to the replicas, read-your-writes.

Read-your-writes uses WAL positions (LSNs), not timers. After a write commits, the API returns
the primary's WAL insert position as a consistency token. A read that carries a token runs on
the replica only if the replica has replayed at least that far
(``pg_last_wal_replay_lsn() >= token``); otherwise it runs on the primary. A lagging or paused
replica therefore never hides a client's own write, and reads without a token stay on the
replicas.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.core.config import DatabaseSettings
from app.core.metrics import Metrics

# Errors that mean "the database is unreachable or going away": answered with 503, not 500.
DB_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    OSError,  # includes ConnectionRefusedError and TimeoutError from the driver's connect
)

_LSN_RE = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


# NULL on a primary (nothing to replay): then the server is current by definition.
_REPLAYED_AT_LEAST = text(
    "SELECT coalesce(pg_last_wal_replay_lsn() >= CAST(CAST(:lsn AS text) AS pg_lsn), true)"
)


def parse_lsn(value: str | None) -> int | None:
    """``'16/B374D848'`` -> its 64-bit position; None for anything that is not an LSN."""
    if value is None or not _LSN_RE.match(value):
        return None
    high, low = value.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def is_db_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, DB_UNAVAILABLE_ERRORS):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def create_engine_for(url: Any, settings: DatabaseSettings, application_name: str) -> AsyncEngine:
    """An asyncpg engine with explicit pool sizing and fast failure when the server is down."""
    return create_async_engine(
        url,
        pool_size=settings.DB_POOL_SIZE,
        max_overflow=settings.DB_MAX_OVERFLOW,
        pool_timeout=settings.DB_POOL_TIMEOUT_SECONDS,
        pool_recycle=settings.DB_POOL_RECYCLE_SECONDS,
        pool_pre_ping=settings.DB_POOL_PRE_PING,
        connect_args={
            "timeout": settings.DB_CONNECT_TIMEOUT_SECONDS,
            "server_settings": {
                "application_name": application_name,
                "statement_timeout": str(settings.DB_STATEMENT_TIMEOUT_MS),
            },
        },
    )


def _track_pool_usage(
    engine: AsyncEngine, pool_name: str, metrics: Metrics, settings: DatabaseSettings
) -> None:
    in_use = metrics.db_pool_in_use.labels(pool_name)
    metrics.db_pool_max.labels(pool_name).set(settings.DB_POOL_SIZE + settings.DB_MAX_OVERFLOW)

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _checkout(*_: Any) -> None:
        in_use.inc()

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _checkin(*_: Any) -> None:
        in_use.dec()


class Database:
    """The primary engine, the optional replica engine, and sessions bound to them."""

    def __init__(
        self, settings: DatabaseSettings, metrics: Metrics, application_name: str = "sbo-sample-app"
    ):
        self._metrics = metrics
        self.primary = create_engine_for(settings.database_url_async, settings, application_name)
        _track_pool_usage(self.primary, "primary", metrics, settings)
        self._primary_sessions = async_sessionmaker(self.primary, expire_on_commit=False)
        read_url = settings.database_read_url_async
        self.replica: AsyncEngine | None = None
        self._replica_sessions: async_sessionmaker[AsyncSession] | None = None
        if read_url is not None:
            self.replica = create_engine_for(read_url, settings, application_name)
            _track_pool_usage(self.replica, "replica", metrics, settings)
            self._replica_sessions = async_sessionmaker(self.replica, expire_on_commit=False)

    def writer(self) -> AsyncSession:
        """A session on the primary. Use ``async with db.writer() as s, s.begin(): ...``."""
        return self._primary_sessions()

    @asynccontextmanager
    async def reader(self, min_lsn: str | None = None) -> AsyncIterator[AsyncSession]:
        """A read session: on a replica that has replayed ``min_lsn``, else on the primary.

        A replica that cannot be reached is skipped too: reads then load the primary, which is
        better than failing them.
        """
        session = await self._replica_session_at(min_lsn)
        if session is None:
            session = self._primary_sessions()
        async with session:
            yield session

    async def _replica_session_at(self, min_lsn: str | None) -> AsyncSession | None:
        if self._replica_sessions is None:
            return None
        session = self._replica_sessions()
        try:
            if min_lsn is not None and parse_lsn(min_lsn) is not None:
                replayed = await session.scalar(
                    _REPLAYED_AT_LEAST,
                    {"lsn": min_lsn},
                )
                if not replayed:
                    await session.close()
                    self._metrics.db_replica_fallbacks.labels("behind").inc()
                    return None
            else:
                await session.connection()
        except Exception as exc:
            await session.close()
            if not is_db_unavailable(exc):
                raise
            self._metrics.db_replica_fallbacks.labels("unavailable").inc()
            return None
        return session

    @staticmethod
    async def wal_position(session: AsyncSession) -> str:
        """The primary's current WAL insert position: at or after every commit made so far."""
        return str(await session.scalar(text("SELECT pg_current_wal_insert_lsn()::text")))

    async def ping(self) -> None:
        """Raise unless the primary answers a trivial query."""
        async with self.primary.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.primary.dispose()
        if self.replica is not None:
            await self.replica.dispose()
