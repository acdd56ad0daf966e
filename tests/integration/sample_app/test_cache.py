"""Cache-aside: hits, misses, invalidation on write, and no stampede on concurrent misses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from app.core.config import Settings
from app.core.services import Services
from devkit.postgres import PostgresServer
from devkit.redis import RedisServer
from tests.integration.sample_app.helpers import metric_value, register, running_app

pytestmark = pytest.mark.integration


@contextmanager
def count_task_reads(*apps: FastAPI) -> Iterator[list[str]]:
    """Record every SELECT on ``tasks`` that the apps' engines send (primary and replica)."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM tasks" in statement:
            statements.append(statement)

    engines = []
    for app in apps:
        services: Services = app.state.services
        engines += [e.sync_engine for e in (services.db.primary, services.db.replica) if e is not None]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def cache_counts(client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get("/metrics")).text
    return {r: metric_value(text, "cache_requests_total", resource="task", result=r) for r in ("hit", "miss")}


async def new_task(
    client: httpx.AsyncClient, headers: dict[str, str], replica: PostgresServer, title: str = "cached"
) -> int:
    """Create a task and wait until the replica has it; then read like any other client."""
    response = await client.post("/api/v1/tasks", json={"title": title}, headers=headers)
    assert response.status_code == 201
    client.cookies.clear()  # no read-your-writes token from here on
    await asyncio.to_thread(replica.wait_for_replay)
    return int(response.json()["id"])


async def test_miss_then_hit(
    app: FastAPI,
    settings: Settings,
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    redis_server: RedisServer,
    postgres_replica: PostgresServer,
) -> None:
    task_id = await new_task(client, auth_headers, postgres_replica)
    before = await cache_counts(client)
    with count_task_reads(app) as reads:
        first = await client.get(f"/api/v1/tasks/{task_id}")
        second = await client.get(f"/api/v1/tasks/{task_id}")
        third = await client.get(f"/api/v1/tasks/{task_id}")
    assert first.json() == second.json() == third.json()
    assert len(reads) == 1
    after = await cache_counts(client)
    assert after["miss"] - before["miss"] == 1
    assert after["hit"] - before["hit"] == 2
    with redis_server.client() as r:
        ttl = r.ttl(f"cache:v1:task:{task_id}")
    # Just filled: the entry carries the configured TTL, less the test's own seconds.
    assert settings.CACHE_TTL_SECONDS - 10 < ttl <= settings.CACHE_TTL_SECONDS


async def test_write_invalidates(
    app: FastAPI, client: httpx.AsyncClient, auth_headers: dict[str, str], postgres_replica: PostgresServer
) -> None:
    task_id = await new_task(client, auth_headers, postgres_replica, "old title")
    assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["title"] == "old title"
    await client.patch(f"/api/v1/tasks/{task_id}", json={"title": "new title"}, headers=auth_headers)
    client.cookies.clear()
    with count_task_reads(app) as reads:
        assert (await client.get(f"/api/v1/tasks/{task_id}")).json()["title"] == "new title"
    assert len(reads) == 1  # a miss: the old entry was dropped
    await client.delete(f"/api/v1/tasks/{task_id}", headers=auth_headers)
    client.cookies.clear()
    assert (await client.get(f"/api/v1/tasks/{task_id}")).status_code == 404


async def test_orders_are_cached_and_invalidated_too(
    client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    order = {"customer_name": "Bo", "items": [{"name": "soup", "quantity": 1, "unit_price_cents": 500}]}
    order_id = (await client.post("/api/v1/orders", json=order, headers=auth_headers)).json()["id"]
    text = (await client.get("/metrics")).text
    hits = metric_value(text, "cache_requests_total", resource="order", result="hit")
    await client.get(f"/api/v1/orders/{order_id}")
    await client.get(f"/api/v1/orders/{order_id}")
    text = (await client.get("/metrics")).text
    assert metric_value(text, "cache_requests_total", resource="order", result="hit") == hits + 1
    await client.patch(f"/api/v1/orders/{order_id}", json={"status": "preparing"}, headers=auth_headers)
    assert (await client.get(f"/api/v1/orders/{order_id}")).json()["status"] == "preparing"


async def test_concurrent_misses_cost_one_query(
    app: FastAPI, client: httpx.AsyncClient, auth_headers: dict[str, str], postgres_replica: PostgresServer
) -> None:
    task_id = await new_task(client, auth_headers, postgres_replica, "herd")
    with count_task_reads(app) as reads:
        responses = await asyncio.gather(*(client.get(f"/api/v1/tasks/{task_id}") for _ in range(50)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1
    assert len(reads) == 1


async def test_concurrent_misses_across_processes_cost_one_query(
    settings: Settings,
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    postgres_replica: PostgresServer,
) -> None:
    """Two app instances (think: two uvicorn workers) share the Redis fill lock."""
    task_id = await new_task(client, auth_headers, postgres_replica, "herd across workers")
    async with running_app(settings) as (app_a, client_a), running_app(settings) as (app_b, client_b):
        with count_task_reads(app_a, app_b) as reads:
            responses = await asyncio.gather(
                *(c.get(f"/api/v1/tasks/{task_id}") for _ in range(20) for c in (client_a, client_b))
            )
    assert {r.status_code for r in responses} == {200}
    assert len(reads) == 1


async def test_cache_disabled_reads_the_database_every_time(
    settings: Settings, client: httpx.AsyncClient, postgres_replica: PostgresServer
) -> None:
    headers = await register(client)
    task_id = await new_task(client, headers, postgres_replica, "no cache")
    async with running_app(settings.model_copy(update={"CACHE_ENABLED": False})) as (app_off, client_off):
        with count_task_reads(app_off) as reads:
            for _ in range(3):
                assert (await client_off.get(f"/api/v1/tasks/{task_id}")).status_code == 200
    assert len(reads) == 3
