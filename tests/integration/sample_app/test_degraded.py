"""Degraded modes: Redis killed mid-test (serve from the database, never 500), then restored;
the database stopped (503 + Retry-After, /readyz fails, /healthz stays up), then started."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.core.config import Settings
from devkit.fixtures_servers import MakePostgres, MakeRedis
from devkit.process import wait_until_async
from tests.integration.sample_app.helpers import (
    app_settings,
    create_migrated_database,
    metric_value,
    register,
    running_app,
)

pytestmark = pytest.mark.integration


async def test_redis_killed_mid_test_then_restored(
    make_postgres: MakePostgres, make_redis: MakeRedis
) -> None:
    primary, redis = make_postgres(), make_redis(password="pw")
    await asyncio.to_thread(create_migrated_database, primary, "app")
    settings: Settings = app_settings(primary, "app", redis)
    async with running_app(settings) as (_, client):
        headers = await register(client)
        ids = [
            (await client.post("/api/v1/tasks", json={"title": f"t{i}"}, headers=headers)).json()["id"]
            for i in range(3)
        ]
        assert (await client.get(f"/api/v1/tasks/{ids[0]}")).status_code == 200  # cached

        redis.kill()
        for _ in range(3):  # every path keeps working, from the database
            for task_id in ids:
                response = await client.get(f"/api/v1/tasks/{task_id}")
                assert response.status_code == 200, response.text
            assert (await client.get("/api/v1/tasks")).status_code == 200
        created = await client.post("/api/v1/tasks", json={"title": "while redis is down"}, headers=headers)
        assert created.status_code == 201
        assert created.json()["status"] == "pending"
        patched = await client.patch(f"/api/v1/tasks/{ids[0]}", json={"title": "changed"}, headers=headers)
        assert patched.status_code == 200
        assert (await client.get(f"/api/v1/tasks/{ids[0]}")).json()["title"] == "changed"
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["redis"] == "unavailable"
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert metric_value(metrics.text, "redis_circuit_open") == 1
        assert metric_value(metrics.text, "cache_requests_total", result="bypass") >= 1
        # Concurrent load while Redis is gone: no 5xx at all.
        burst = await asyncio.gather(*(client.get(f"/api/v1/tasks/{ids[i % 3]}") for i in range(30)))
        assert {r.status_code for r in burst} == {200}

        redis.restart()

        async def cache_back() -> bool:
            await client.get(f"/api/v1/tasks/{ids[1]}")
            text = (await client.get("/metrics")).text
            return metric_value(text, "redis_circuit_open") == 0

        await wait_until_async(cache_back, 10, "the circuit breaker to close")
        before = metric_value((await client.get("/metrics")).text, "cache_requests_total", result="hit")
        await client.get(f"/api/v1/tasks/{ids[2]}")
        await client.get(f"/api/v1/tasks/{ids[2]}")
        after = metric_value((await client.get("/metrics")).text, "cache_requests_total", result="hit")
        assert after == before + 1
        assert (await client.get("/readyz")).json()["redis"] == "ok"


async def test_database_stopped_then_started(make_postgres: MakePostgres, make_redis: MakeRedis) -> None:
    primary, redis = make_postgres(), make_redis()
    await asyncio.to_thread(create_migrated_database, primary, "app")
    async with running_app(app_settings(primary, "app", redis)) as (_, client):
        headers = await register(client)
        cached_id = (await client.post("/api/v1/tasks", json={"title": "cached"}, headers=headers)).json()[
            "id"
        ]
        other_id = (await client.post("/api/v1/tasks", json={"title": "not cached"}, headers=headers)).json()[
            "id"
        ]
        assert (await client.get(f"/api/v1/tasks/{cached_id}")).status_code == 200

        primary.stop()
        responses = {
            "uncached get": await client.get(f"/api/v1/tasks/{other_id}"),
            "list": await client.get("/api/v1/orders"),
            "post": await client.post("/api/v1/tasks", json={"title": "x"}, headers=headers),
            "login": await client.post(
                "/api/v1/login/access-token", data={"username": "a@b.cd", "password": "x"}
            ),
        }
        for what, response in responses.items():
            assert response.status_code == 503, (what, response.text)
            assert response.headers["Retry-After"] == "5", what
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"] == "unavailable"
        assert (await client.get("/healthz")).status_code == 200
        # What is cached is still served.
        assert (await client.get(f"/api/v1/tasks/{cached_id}")).status_code == 200
        assert metric_value((await client.get("/metrics")).text, "db_unavailable_responses_total") >= 4

        primary.start_again()

        async def ready_again() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await wait_until_async(ready_again, 15, "/readyz to recover")
        assert (await client.get(f"/api/v1/tasks/{other_id}")).status_code == 200
        assert (
            await client.post("/api/v1/tasks", json={"title": "after"}, headers=headers)
        ).status_code == 201


async def test_database_killed_mid_request_stream(make_postgres: MakePostgres, make_redis: MakeRedis) -> None:
    """A crash (SIGKILL) instead of a clean stop: pooled connections die under the app."""
    primary, redis = make_postgres(), make_redis()
    await asyncio.to_thread(create_migrated_database, primary, "app")
    async with running_app(app_settings(primary, "app", redis, CACHE_ENABLED=False)) as (_, client):
        headers = await register(client)
        task_id = (await client.post("/api/v1/tasks", json={"title": "x"}, headers=headers)).json()["id"]
        assert (await client.get(f"/api/v1/tasks/{task_id}")).status_code == 200
        primary.kill()
        statuses = {(await client.get(f"/api/v1/tasks/{task_id}")).status_code for _ in range(5)}
        assert statuses == {503}
        primary.start_again()

        async def serving() -> bool:
            response: httpx.Response = await client.get(f"/api/v1/tasks/{task_id}")
            assert response.status_code in (200, 503)
            return response.status_code == 200

        await wait_until_async(serving, 15, "reads to recover after the crash")
