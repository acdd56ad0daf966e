"""pytest fixtures for real PostgreSQL and Redis servers on loopback.

Use them with ``pytest_plugins = ["devkit.fixtures_servers"]`` in a conftest.py, or
import the fixtures you need. Shared servers are session-scoped: tests that share them must
not stop them. Tests that stop, kill or pause a server ask for their own with the
``make_postgres`` / ``make_redis`` factories (cleaned up after the test).

A missing binary fails the test with a clear message; it never skips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from devkit.postgres import PostgresServer, start_replica_of
from devkit.process import ServerError
from devkit.redis import RedisServer

__all__ = [
    "make_postgres",
    "make_redis",
    "postgres_primary",
    "postgres_replica",
    "redis_server",
]


def _fail_on_server_error(exc: ServerError) -> NoReturn:
    pytest.fail(f"cannot start a test server: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL primary shared by the whole session, with pg_stat_statements loaded."""
    try:
        server = PostgresServer.start(tmp_path_factory.mktemp("pg-primary"), pg_stat_statements=True)
    except ServerError as exc:
        _fail_on_server_error(exc)
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def postgres_replica(
    postgres_primary: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PostgresServer]:
    """A hot standby streaming from ``postgres_primary``. Do not pause it: use make_postgres."""
    try:
        server = start_replica_of(postgres_primary, tmp_path_factory.mktemp("pg-replica"))
    except ServerError as exc:
        _fail_on_server_error(exc)
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis server (with a password) shared by the whole session. Do not kill it."""
    try:
        server = RedisServer.start(tmp_path_factory.mktemp("redis"), password="redis-test-password")
    except ServerError as exc:
        _fail_on_server_error(exc)
    yield server
    server.destroy()


MakePostgres = Callable[..., PostgresServer]
MakeRedis = Callable[..., RedisServer]


@pytest.fixture
def make_postgres(tmp_path: Path) -> Iterator[MakePostgres]:
    """Factory for servers this test owns: ``make_postgres()`` or ``make_postgres(replica_of=p)``.

    Keyword arguments other than ``replica_of`` go to :meth:`PostgresServer.start`.
    """
    started: list[PostgresServer] = []

    def make(*, replica_of: PostgresServer | None = None, **kwargs: object) -> PostgresServer:
        try:
            if replica_of is not None:
                server = start_replica_of(replica_of, tmp_path)
            else:
                server = PostgresServer.start(tmp_path, **kwargs)  # type: ignore[arg-type]
        except ServerError as exc:
            _fail_on_server_error(exc)
        started.append(server)
        return server

    yield make
    for server in reversed(started):  # replicas before their primary
        server.destroy()


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[MakeRedis]:
    """Factory for Redis servers this test owns: ``make_redis(password=None)``."""
    started: list[RedisServer] = []

    def make(**kwargs: object) -> RedisServer:
        try:
            server = RedisServer.start(tmp_path, **kwargs)  # type: ignore[arg-type]
        except ServerError as exc:
            _fail_on_server_error(exc)
        started.append(server)
        return server

    yield make
    for server in started:
        server.destroy()
