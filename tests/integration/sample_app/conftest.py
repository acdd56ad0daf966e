"""Fixtures for the sample app against real servers: a Postgres primary + streaming replica, Redis.

The servers are shared by the session. Each test module gets its own database (migrated with
alembic) and starts from an empty Redis, so counts and ids are predictable within a module.
Tests that stop, kill or pause a server start their own with ``make_postgres``/``make_redis``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from devkit import fixtures_servers
from devkit.postgres import PostgresServer
from devkit.redis import RedisServer
from tests.integration.sample_app.helpers import app_settings, create_migrated_database, register, running_app

# The shared server fixtures (see hack/devkit/devkit/fixtures_servers.py), made visible here.
postgres_primary = fixtures_servers.postgres_primary
postgres_replica = fixtures_servers.postgres_replica
redis_server = fixtures_servers.redis_server
make_postgres = fixtures_servers.make_postgres
make_redis = fixtures_servers.make_redis


@pytest.fixture(scope="module")
def database(
    postgres_primary: PostgresServer, postgres_replica: PostgresServer, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A migrated database for this module, already replayed by the replica."""
    name = "m_" + re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])[:50]
    create_migrated_database(postgres_primary, name)
    postgres_replica.wait_for_replay()
    yield name
    postgres_primary.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def settings(
    postgres_primary: PostgresServer,
    postgres_replica: PostgresServer,
    redis_server: RedisServer,
    database: str,
) -> Settings:
    with redis_server.client() as client:
        client.flushall()
    return app_settings(postgres_primary, database, redis_server, postgres_replica)


@pytest.fixture(scope="module")
async def app_and_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings) as pair:
        yield pair


@pytest.fixture(scope="module")
def app(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> FastAPI:
    return app_and_client[0]


@pytest.fixture(scope="module")
def client(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_and_client[1]


@pytest.fixture(scope="module")
async def auth_headers(client: httpx.AsyncClient) -> dict[str, str]:
    return await register(client)
