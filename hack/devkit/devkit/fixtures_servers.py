"""pytest fixtures for real PostgreSQL, Redis and object store (MinIO) servers on loopback.

Use them with ``pytest_plugins = ["devkit.fixtures_servers"]`` in a conftest.py, or
import the fixtures you need. Shared servers are session-scoped: tests that share them must
not stop them. Tests that stop, kill or pause a server ask for their own with the
``make_postgres`` / ``make_redis`` factories (cleaned up after the test).

A missing binary fails the test with a clear message; it never skips.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from devkit.object_store import MinioServer
from devkit.postgres import PostgresServer, start_replica_of
from devkit.process import ManagedProcess, ServerError
from devkit.redis import RedisServer

__all__ = [
    "make_object_store",
    "make_postgres",
    "make_redis",
    "postgres_primary",
    "postgres_replica",
    "redis_server",
]


S = TypeVar("S", bound=ManagedProcess)


def _start_or_fail(launch: Callable[[], S]) -> S:
    """Start a server; a missing binary or a failed start fails the test (never skips)."""
    try:
        return launch()
    except ServerError as exc:
        pytest.fail(f"cannot start a test server: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL primary shared by the whole session, with pg_stat_statements loaded."""
    directory = tmp_path_factory.mktemp("pg-primary")
    with _start_or_fail(lambda: PostgresServer.start(directory, pg_stat_statements=True)) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_replica(
    postgres_primary: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PostgresServer]:
    """A hot standby streaming from ``postgres_primary``. Do not pause it: use make_postgres."""
    directory = tmp_path_factory.mktemp("pg-replica")
    with _start_or_fail(lambda: start_replica_of(postgres_primary, directory)) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis server (with a password) shared by the whole session. Do not kill it."""
    directory = tmp_path_factory.mktemp("redis")
    with _start_or_fail(lambda: RedisServer.start(directory, password="redis-test-password")) as server:
        yield server


MakePostgres = Callable[..., PostgresServer]
MakeObjectStore = Callable[..., MinioServer]
MakeRedis = Callable[..., RedisServer]


@pytest.fixture
def make_postgres(tmp_path: Path) -> Iterator[MakePostgres]:
    """Factory for servers this test owns: ``make_postgres()`` or ``make_postgres(replica_of=p)``.

    Keyword arguments other than ``replica_of`` go to :meth:`PostgresServer.start`.
    """
    with contextlib.ExitStack() as owned:  # on exit, the last started first: replicas before their primary

        def make(*, replica_of: PostgresServer | None = None, **kwargs: Any) -> PostgresServer:
            if replica_of is not None:
                return owned.enter_context(_start_or_fail(lambda: start_replica_of(replica_of, tmp_path)))
            return owned.enter_context(_start_or_fail(lambda: PostgresServer.start(tmp_path, **kwargs)))

        yield make


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[MakeRedis]:
    """Factory for Redis servers this test owns: ``make_redis(password=None)``."""
    with contextlib.ExitStack() as owned:

        def make(**kwargs: Any) -> RedisServer:
            return owned.enter_context(_start_or_fail(lambda: RedisServer.start(tmp_path, **kwargs)))

        yield make


@pytest.fixture
def make_object_store(tmp_path: Path) -> Iterator[MakeObjectStore]:
    """Factory for MinIO stores this test owns, each with ``bucket`` made:
    ``make_object_store(bucket="backups", tls=False)``. Stop and start them at will."""
    with contextlib.ExitStack() as owned:

        def make(*, bucket: str = "backups", tls: bool = False) -> MinioServer:
            store = owned.enter_context(_start_or_fail(lambda: MinioServer.start(tmp_path, tls=tls)))
            store.create_bucket(bucket)
            return store

        yield make
