"""Load shedding against the real servers: with CONCURRENCY_LIMIT requests stuck on a row lock, the
next CONCURRENCY_QUEUE_SIZE requests wait, the one after is answered 503 + Retry-After at once,
probes and /metrics still answer, and once the lock is released every held and queued request is
served and new ones are too. A request that waits in the queue past its timeout is refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from devkit.postgres import PostgresServer
from devkit.process import wait_until_async
from devkit.redis import RedisServer
from tests.integration.sample_app.helpers import app_settings, metric_value, register, running_app

pytestmark = pytest.mark.integration

LIMIT = 3
QUEUE = 1


def lock_waiters(primary: PostgresServer, database: str) -> int:
    rows = primary.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
        (database,),
    )
    return int(rows[0][0])


def shedding_settings(
    primary: PostgresServer, replica: PostgresServer, redis: RedisServer, database: str, **overrides: Any
) -> Settings:
    # The held requests wait on the lock, not on a statement timeout.
    return app_settings(primary, database, redis, replica, DB_STATEMENT_TIMEOUT_MS=60_000, **overrides)


@asynccontextmanager
async def row_locked(primary: PostgresServer, database: str, task_id: int) -> AsyncIterator[None]:
    """Real slowness: a transaction outside the app holds the task's row lock, so every PATCH of
    it waits in SELECT ... FOR UPDATE, holding its slot, until the block ends."""
    blocker = await asyncio.to_thread(primary.connect, database, autocommit=False)
    try:
        await asyncio.to_thread(blocker.execute, b"SELECT id FROM tasks WHERE id = %s FOR UPDATE", (task_id,))
        yield
    finally:
        await asyncio.to_thread(blocker.rollback)
        await asyncio.to_thread(blocker.close)


async def held_patches(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    primary: PostgresServer,
    database: str,
    task_id: int,
    count: int,
) -> list[asyncio.Task[httpx.Response]]:
    """``count`` PATCHes of the locked task, returned once all of them wait on the lock."""
    held = [
        asyncio.create_task(
            client.patch(f"/api/v1/tasks/{task_id}", json={"title": f"held {i}"}, headers=headers)
        )
        for i in range(count)
    ]

    async def all_held() -> bool:
        return await asyncio.to_thread(lock_waiters, primary, database) == count

    await wait_until_async(all_held, 10, f"{count} requests waiting on the row lock")
    return held


async def test_requests_past_the_limit_are_shed_until_the_held_ones_finish(
    postgres_primary: PostgresServer,
    postgres_replica: PostgresServer,
    redis_server: RedisServer,
    database: str,
) -> None:
    settings = shedding_settings(
        postgres_primary,
        postgres_replica,
        redis_server,
        database,
        CONCURRENCY_LIMIT=LIMIT,
        CONCURRENCY_QUEUE_SIZE=QUEUE,
        CONCURRENCY_QUEUE_TIMEOUT_SECONDS=60,  # the queued request waits for the lock's release
        CONCURRENCY_LIMIT_RETRY_AFTER_SECONDS=2,
    )
    async with running_app(settings) as (_, client):
        headers = await register(client)
        created = await client.post("/api/v1/tasks", json={"title": "contended"}, headers=headers)
        assert created.status_code == 201
        task_id = created.json()["id"]

        async with row_locked(postgres_primary, database, task_id):
            held = await held_patches(client, headers, postgres_primary, database, task_id, LIMIT)
            queued = asyncio.create_task(client.get(f"/api/v1/tasks/{task_id}"))
            await asyncio.sleep(0.5)
            assert not queued.done()  # waiting for a slot, neither served nor refused

            start = time.monotonic()
            shed = await client.get(f"/api/v1/tasks/{task_id}")
            assert time.monotonic() - start < 1.0  # the queue is full: answered at once
            assert shed.status_code == 503
            assert shed.headers["Retry-After"] == "2"
            assert shed.json() == {"detail": "Server overloaded, retry later"}
            write = await client.post("/api/v1/tasks", json={"title": "shed too"}, headers=headers)
            assert write.status_code == 503

            # Probes and scraping are never shed.
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert metric_value(metrics.text, "load_shed_requests_total") == 2
            # Shed requests never reached the app: the HTTP metrics count only served ones.
            assert metric_value(metrics.text, "http_requests_total", status="503") == 0
            assert not any(task.done() for task in (*held, queued))

        patched = await asyncio.gather(*held)
        assert [r.status_code for r in patched] == [200] * LIMIT
        read_after_queueing = await queued
        assert read_after_queueing.status_code == 200
        assert read_after_queueing.json()["id"] == task_id
        served = await client.get(f"/api/v1/tasks/{task_id}")
        assert served.status_code == 200
        assert served.json()["title"].startswith("held ")
        assert (
            await client.post("/api/v1/tasks", json={"title": "after"}, headers=headers)
        ).status_code == 201
        metrics = await client.get("/metrics")
        assert metric_value(metrics.text, "load_shed_requests_total") == 2


async def test_a_request_queued_past_the_timeout_is_refused(
    postgres_primary: PostgresServer,
    postgres_replica: PostgresServer,
    redis_server: RedisServer,
    database: str,
) -> None:
    one_slot = {"CONCURRENCY_LIMIT": 1, "CONCURRENCY_QUEUE_SIZE": 1, "CONCURRENCY_QUEUE_TIMEOUT_SECONDS": 0.3}
    settings = shedding_settings(postgres_primary, postgres_replica, redis_server, database, **one_slot)
    async with running_app(settings) as (_, client):
        headers = await register(client)
        task_id = (await client.post("/api/v1/tasks", json={"title": "late"}, headers=headers)).json()["id"]
        async with row_locked(postgres_primary, database, task_id):
            (held,) = await held_patches(client, headers, postgres_primary, database, task_id, 1)
            start = time.monotonic()
            late = await client.get(f"/api/v1/tasks/{task_id}")
            waited = time.monotonic() - start
            assert late.status_code == 503
            assert late.headers["Retry-After"] == "1"
            assert 0.3 <= waited < 2.0  # it waited for a slot, then gave up
            metrics = await client.get("/metrics")
            assert metric_value(metrics.text, "load_shed_requests_total") == 1
        assert (await held).status_code == 200
        assert (await client.get(f"/api/v1/tasks/{task_id}")).status_code == 200
