"""Rate limiting in Redis: 429 with Retry-After, shared by all app instances."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from devkit.redis import RedisServer
from tests.integration.sample_app.helpers import metric_value, running_app

pytestmark = pytest.mark.integration


async def test_over_the_limit_is_429_with_retry_after(settings: Settings) -> None:
    # Fixed windows are aligned to the clock: a long one makes crossing a boundary mid-test unlikely.
    limited = settings.model_copy(update={"RATE_LIMIT_REQUESTS": 5, "RATE_LIMIT_WINDOW_SECONDS": 3600})
    async with running_app(limited) as (_, client):
        statuses = [(await client.get("/api/v1/tasks")).status_code for _ in range(5)]
        assert statuses == [200] * 5
        refused = await client.get("/api/v1/tasks/1")
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 3600
        assert refused.json() == {"detail": "Too many requests"}
        # Writes and logins are limited too (before any password hashing).
        login = await client.post("/api/v1/login/access-token", data={"username": "a@b.cd", "password": "x"})
        assert login.status_code == 429
        # Probes and metrics are not limited.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        metrics = await client.get("/metrics")
        assert metric_value(metrics.text, "rate_limited_requests_total") == 2


async def test_the_limit_is_shared_across_instances(settings: Settings, redis_server: RedisServer) -> None:
    """Counters live in Redis: two workers together allow the limit, not twice the limit."""
    with redis_server.client() as r:
        for key in r.scan_iter("ratelimit:*"):
            r.delete(key)
    limited = settings.model_copy(update={"RATE_LIMIT_REQUESTS": 4, "RATE_LIMIT_WINDOW_SECONDS": 3600})
    async with running_app(limited) as (_, first), running_app(limited) as (_, second):
        clients = [first, second]
        codes = [(await clients[i % 2].get("/api/v1/orders")).status_code for i in range(6)]
    assert codes == [200, 200, 200, 200, 429, 429]
