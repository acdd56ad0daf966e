"""Alembic environment: async migrations over asyncpg, URL from DATABASE_URL (+ password)."""

from __future__ import annotations

import asyncio
import logging
import time
from logging.config import fileConfig

from alembic import context
from asyncpg.exceptions import CannotConnectNowError
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.core.config import DatabaseSettings
from app.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata
log = logging.getLogger("alembic.env")


def database_url() -> str:
    """An explicit URL (tests, ``-x url=...``), else the operator's env vars."""
    explicit = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if explicit:
        return str(explicit)
    return DatabaseSettings().database_url_async.render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def wait_seconds() -> float:
    """How long to wait for the database: the tests' explicit value, else DB_WAIT_SECONDS."""
    if "url" in config.attributes:  # tests run in-process against a server that is up
        return float(config.attributes.get("wait_seconds", 0))
    return DatabaseSettings().DB_WAIT_SECONDS


async def connect_when_reachable(engine: AsyncEngine, wait: float) -> AsyncConnection:
    """A connection, retrying while the server cannot be reached, for up to ``wait`` seconds.

    Only "not reachable yet" is retried (a Service not routed yet, a primary still starting);
    a wrong password or a missing database fails at once.
    """
    deadline = time.monotonic() + wait
    delay = 0.5
    while True:
        try:
            return await engine.connect()
        except (OSError, DBAPIError) as error:
            cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
            unreachable = isinstance(cause, OSError | CannotConnectNowError)
            if not unreachable or time.monotonic() + delay > deadline:
                raise
            log.warning("database not reachable yet (%s); retrying in %.1f s", type(cause).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def run_migrations_online() -> None:
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    try:
        connection = await connect_when_reachable(engine, wait_seconds())
        try:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
        finally:
            await connection.close()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
