"""The concurrency limit: past it, 503 + Retry-After at once; exempt paths always pass; slots free up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from app.core.config import Settings
from app.core.load_shedding import ConcurrencyLimitMiddleware
from app.core.metrics import Metrics
from app.main import create_app

pytestmark = pytest.mark.unit

LIMIT = 2


class SlowApp:
    """A Starlette app whose /slow requests wait until released; /boom raises; /healthz answers."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0
        self._entering = asyncio.Condition()
        self.metrics = Metrics()

        async def slow(request: Request) -> PlainTextResponse:
            async with self._entering:
                self.entered += 1
                self._entering.notify_all()
            await self.release.wait()
            return PlainTextResponse("done")

        async def boom(request: Request) -> PlainTextResponse:
            raise RuntimeError("handler failed")

        async def healthz(request: Request) -> JSONResponse:
            return JSONResponse({"status": "ok"})

        inner = Starlette(routes=[Route("/slow", slow), Route("/boom", boom), Route("/healthz", healthz)])
        self.asgi = ConcurrencyLimitMiddleware(
            inner, limit=LIMIT, retry_after_seconds=3, exempt_paths={"/healthz"}, metrics=self.metrics
        )

    def shed_count(self) -> float:
        value = self.metrics.registry.get_sample_value("load_shed_requests_total")
        return 0.0 if value is None else value

    async def wait_until_entered(self, count: int) -> None:
        async with asyncio.timeout(5), self._entering:
            await self._entering.wait_for(lambda: self.entered >= count)


@pytest.fixture
async def slow_app() -> AsyncIterator[tuple[SlowApp, httpx.AsyncClient]]:
    app = SlowApp()
    transport = httpx.ASGITransport(app=app.asgi, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield app, client


async def test_past_the_limit_requests_are_shed_at_once_then_admitted_again(
    slow_app: tuple[SlowApp, httpx.AsyncClient],
) -> None:
    app, client = slow_app
    held = [asyncio.create_task(client.get("/slow")) for _ in range(LIMIT)]
    await app.wait_until_entered(LIMIT)
    assert app.asgi.in_flight == LIMIT

    async with asyncio.timeout(1):  # answered without waiting for a slot
        shed = await client.get("/slow")
    assert shed.status_code == 503
    assert shed.headers["Retry-After"] == "3"
    assert shed.headers["content-type"] == "application/json"
    assert shed.json() == {"detail": "Server overloaded, retry later"}
    assert app.entered == LIMIT  # the shed request never reached the handler
    assert app.shed_count() == 1

    healthz = await client.get("/healthz")  # exempt: passes even when full
    assert healthz.status_code == 200
    assert app.shed_count() == 1

    app.release.set()
    assert [r.status_code for r in await asyncio.gather(*held)] == [200] * LIMIT
    assert app.asgi.in_flight == 0
    again = await asyncio.gather(*(client.get("/slow") for _ in range(LIMIT)))
    assert [r.status_code for r in again] == [200] * LIMIT
    assert app.shed_count() == 1


async def test_a_failing_request_frees_its_slot(slow_app: tuple[SlowApp, httpx.AsyncClient]) -> None:
    app, client = slow_app
    for _ in range(LIMIT + 1):
        assert (await client.get("/boom")).status_code == 500
    assert app.asgi.in_flight == 0
    app.release.set()
    responses = await asyncio.gather(*(client.get("/slow") for _ in range(LIMIT)))
    assert [r.status_code for r in responses] == [200] * LIMIT
    assert app.shed_count() == 0


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrencyLimitMiddleware(
            Starlette(), limit=0, retry_after_seconds=1, exempt_paths=(), metrics=Metrics()
        )


def app_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "DATABASE_URL": "postgresql://app@db:5432/app",
        "REDIS_URL": "redis://cache:6379/0",
        "SECRET_KEY": "k" * 40,
        **overrides,
    }
    return Settings.model_validate(values)


def test_the_app_sheds_outermost_except_probes_and_not_at_all_with_a_zero_limit() -> None:
    app = create_app(app_settings(CONCURRENCY_LIMIT=8, CONCURRENCY_LIMIT_RETRY_AFTER_SECONDS=2))
    outermost = app.user_middleware[0]
    assert outermost.cls is ConcurrencyLimitMiddleware
    assert outermost.kwargs["limit"] == 8
    assert outermost.kwargs["retry_after_seconds"] == 2
    assert outermost.kwargs["exempt_paths"] == {"/healthz", "/readyz", "/metrics"}

    unlimited = create_app(app_settings(CONCURRENCY_LIMIT=0))
    assert all(m.cls is not ConcurrencyLimitMiddleware for m in unlimited.user_middleware)
