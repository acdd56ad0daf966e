"""Reads go to the replica; a client still reads its own writes when the replica lags.

The replica here is deliberately paused (``pg_wal_replay_pause()``), so it is as stale as a
replica can be: anything a client sees of its own write must have come from the primary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from app.core.config import Settings
from devkit.postgres import PostgresServer, ServerError, start_replica_of
from devkit.redis import RedisServer
from tests.integration.sample_app.helpers import (
    app_settings,
    create_migrated_database,
    metric_value,
    register,
    running_app,
)

pytestmark = pytest.mark.integration

DB = "ryw"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary and a replica this module may pause and stop."""
    try:
        primary = PostgresServer.start(tmp_path_factory.mktemp("ryw-primary"))
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    replica = start_replica_of(primary, tmp_path_factory.mktemp("ryw-replica"))
    create_migrated_database(primary, DB)
    replica.wait_for_replay()
    yield primary, replica
    replica.destroy()
    primary.destroy()


@pytest.fixture(scope="module")
def ryw_settings(servers: tuple[PostgresServer, PostgresServer], redis_server: RedisServer) -> Settings:
    with redis_server.client() as client:
        client.flushall()
    primary, replica = servers
    return app_settings(primary, DB, redis_server, replica)


@pytest.fixture(scope="module")
async def ryw_client(ryw_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(ryw_settings) as (_, client):
        yield client


@pytest.fixture
def paused(servers: tuple[PostgresServer, PostgresServer]) -> Iterator[PostgresServer]:
    replica = servers[1]
    replica.wait_for_replay()
    replica.pause_replay()
    yield replica
    replica.resume_replay()
    replica.wait_for_replay()


async def test_a_client_reads_its_own_write_from_a_paused_replica(
    ryw_client: httpx.AsyncClient, ryw_settings: Settings, paused: PostgresServer
) -> None:
    headers = await register(ryw_client)  # the sign-up went to the primary; replay is paused
    created = await ryw_client.post("/api/v1/tasks", json={"title": "fresh"}, headers=headers)
    assert created.status_code == 201
    task_id = created.json()["id"]
    token = created.headers["X-Consistency-Token"]
    assert ryw_client.cookies.get("sbo_consistency")

    # This client (its cookie jar holds the token) sees the task at once, by id and in lists.
    assert (await ryw_client.get(f"/api/v1/tasks/{task_id}")).status_code == 200
    listed = (await ryw_client.get("/api/v1/tasks")).json()
    assert task_id in [t["id"] for t in listed["data"]]
    # A header works as well as the cookie (clients without cookies). The cache is off here so
    # that every read reaches a database.
    uncached = ryw_settings.model_copy(update={"CACHE_ENABLED": False})
    async with running_app(uncached) as (_, other):
        assert (
            await other.get(f"/api/v1/tasks/{task_id}", headers={"X-Consistency-Token": token})
        ).status_code == 200
        # Another client, without a token, reads the paused replica: proof that reads go there.
        assert (await other.get(f"/api/v1/tasks/{task_id}")).status_code == 404
        assert task_id not in [t["id"] for t in (await other.get("/api/v1/tasks")).json()["data"]]


async def test_after_replay_everyone_sees_the_write(
    ryw_client: httpx.AsyncClient, ryw_settings: Settings, servers: tuple[PostgresServer, PostgresServer]
) -> None:
    headers = await register(ryw_client)
    task_id = (await ryw_client.post("/api/v1/tasks", json={"title": "t"}, headers=headers)).json()["id"]
    servers[1].wait_for_replay()
    async with running_app(ryw_settings) as (_, other):
        assert (await other.get(f"/api/v1/tasks/{task_id}")).status_code == 200


async def test_an_update_is_never_hidden_by_the_cache_or_a_stale_replica(
    ryw_client: httpx.AsyncClient, ryw_settings: Settings, servers: tuple[PostgresServer, PostgresServer]
) -> None:
    """The per-key fence: after a write, cache fills read at or after it, for every client."""
    headers = await register(ryw_client)
    task_id = (await ryw_client.post("/api/v1/tasks", json={"title": "before"}, headers=headers)).json()["id"]
    replica = servers[1]
    replica.wait_for_replay()
    async with running_app(ryw_settings) as (_, other):
        assert (await other.get(f"/api/v1/tasks/{task_id}")).json()["title"] == "before"  # cached now
        replica.pause_replay()
        try:
            patched = await ryw_client.patch(
                f"/api/v1/tasks/{task_id}", json={"title": "after"}, headers=headers
            )
            assert patched.status_code == 200
            # The writer, and a client with no token at all, both see the new title.
            assert (await ryw_client.get(f"/api/v1/tasks/{task_id}")).json()["title"] == "after"
            assert (await other.get(f"/api/v1/tasks/{task_id}")).json()["title"] == "after"
        finally:
            replica.resume_replay()


async def test_reads_fall_back_to_the_primary_when_the_replica_is_down(
    ryw_client: httpx.AsyncClient, servers: tuple[PostgresServer, PostgresServer]
) -> None:
    headers = await register(ryw_client)
    ryw_client.cookies.clear()
    replica = servers[1]
    replica.wait_for_replay()
    replica.stop()
    try:
        created = await ryw_client.post("/api/v1/tasks", json={"title": "replica down"}, headers=headers)
        assert created.status_code == 201
        ryw_client.cookies.clear()
        listed = await ryw_client.get("/api/v1/tasks")
        assert listed.status_code == 200
        assert created.json()["id"] in [t["id"] for t in listed.json()["data"]]
        metrics = (await ryw_client.get("/metrics")).text
        assert metric_value(metrics, "db_replica_fallbacks_total", reason="unavailable") >= 1
    finally:
        replica.start_again()
