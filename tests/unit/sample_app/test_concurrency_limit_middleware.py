"""The concurrency limit and its queue: requests past the limit wait (FIFO, bounded, for a short
time) for a slot; past the queue, or after the wait, 503 + Retry-After; exempt paths always pass;
slots free up and are handed to the oldest waiter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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

    def __init__(self, *, queue_size: int = 0, queue_timeout_seconds: float = 30.0) -> None:
        self.release = asyncio.Event()
        self.entered = 0
        self.order: list[str] = []  # the "n" query parameter of each /slow request, as it enters
        self._entering = asyncio.Condition()
        self.metrics = Metrics()

        async def slow(request: Request) -> PlainTextResponse:
            async with self._entering:
                self.entered += 1
                self.order.append(request.query_params.get("n", ""))
                self._entering.notify_all()
            await self.release.wait()
            return PlainTextResponse("done")

        async def boom(request: Request) -> PlainTextResponse:
            raise RuntimeError("handler failed")

        async def healthz(request: Request) -> JSONResponse:
            return JSONResponse({"status": "ok"})

        inner = Starlette(routes=[Route("/slow", slow), Route("/boom", boom), Route("/healthz", healthz)])
        self.asgi = ConcurrencyLimitMiddleware(
            inner,
            limit=LIMIT,
            queue_size=queue_size,
            queue_timeout_seconds=queue_timeout_seconds,
            retry_after_seconds=3,
            exempt_paths={"/healthz"},
            metrics=self.metrics,
        )

    def shed_count(self) -> float:
        value = self.metrics.registry.get_sample_value("load_shed_requests_total")
        return 0.0 if value is None else value

    async def wait_until_entered(self, count: int) -> None:
        async with asyncio.timeout(5), self._entering:
            await self._entering.wait_for(lambda: self.entered >= count)


@asynccontextmanager
async def client_of(app: SlowApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app.asgi, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def slow_app() -> AsyncIterator[tuple[SlowApp, httpx.AsyncClient]]:
    """No queue: past the limit, refused at once."""
    app = SlowApp()
    async with client_of(app) as client:
        yield app, client


async def settle() -> None:
    """Let every ready task run until it blocks (the requests reach the middleware)."""
    for _ in range(20):
        await asyncio.sleep(0)


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


@pytest.mark.parametrize(
    ("limit", "queue_size", "timeout", "message"),
    [
        (0, 0, 1.0, "limit must be at least 1"),
        (1, -1, 1.0, "queue_size must not be negative"),
        (1, 0, 0.0, "queue_timeout_seconds must be positive"),
    ],
)
def test_a_limit_below_one_a_negative_queue_or_no_wait_is_refused(
    limit: int, queue_size: int, timeout: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ConcurrencyLimitMiddleware(
            Starlette(),
            limit=limit,
            queue_size=queue_size,
            queue_timeout_seconds=timeout,
            retry_after_seconds=1,
            exempt_paths=(),
            metrics=Metrics(),
        )


async def test_queued_requests_are_served_in_order_and_past_the_queue_refused_at_once() -> None:
    app = SlowApp(queue_size=2)
    async with client_of(app) as client:
        held = [asyncio.create_task(client.get("/slow", params={"n": f"held{i}"})) for i in range(LIMIT)]
        await app.wait_until_entered(LIMIT)
        queued = []
        for name in ("first", "second"):  # one at a time, so the queue order is known
            queued.append(asyncio.create_task(client.get("/slow", params={"n": name})))
            await settle()
        assert len(app.asgi.waiting) == 2
        assert not any(task.done() for task in queued)  # waiting, not refused

        async with asyncio.timeout(1):  # the queue is full: refused without waiting
            shed = await client.get("/slow", params={"n": "third"})
        assert shed.status_code == 503
        assert shed.headers["Retry-After"] == "3"
        assert app.shed_count() == 1
        assert (await client.get("/healthz")).status_code == 200  # exempt, even with a full queue

        app.release.set()
        responses = await asyncio.gather(*held, *queued)
        assert [r.status_code for r in responses] == [200] * (LIMIT + 2)
        assert app.order[LIMIT:] == ["first", "second"]  # slots go to the oldest waiter
        assert "third" not in app.order
        assert (app.asgi.in_flight, len(app.asgi.waiting)) == (0, 0)
        assert app.shed_count() == 1


async def test_a_request_queued_past_the_timeout_is_refused_and_never_runs() -> None:
    app = SlowApp(queue_size=1, queue_timeout_seconds=0.2)
    async with client_of(app) as client:
        held = [asyncio.create_task(client.get("/slow")) for _ in range(LIMIT)]
        await app.wait_until_entered(LIMIT)
        start = time.monotonic()
        late = await client.get("/slow", params={"n": "late"})
        waited = time.monotonic() - start
        assert late.status_code == 503
        assert late.headers["Retry-After"] == "3"
        assert 0.2 <= waited < 2  # waited for a slot, then gave up
        assert app.shed_count() == 1
        assert len(app.asgi.waiting) == 0

        app.release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200] * LIMIT
        assert "late" not in app.order
        assert app.asgi.in_flight == 0


async def test_a_waiter_cancelled_in_the_queue_leaves_it_and_takes_no_slot() -> None:
    app = SlowApp(queue_size=1)
    async with client_of(app) as client:
        held = [asyncio.create_task(client.get("/slow")) for _ in range(LIMIT)]
        await app.wait_until_entered(LIMIT)
        gone = asyncio.create_task(client.get("/slow", params={"n": "gone"}))
        await settle()
        assert len(app.asgi.waiting) == 1
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert len(app.asgi.waiting) == 0

        app.release.set()
        await asyncio.gather(*held)
        assert "gone" not in app.order
        assert app.asgi.in_flight == 0
        assert app.shed_count() == 0


def app_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "DATABASE_URL": "postgresql://app@db:5432/app",
        "REDIS_URL": "redis://cache:6379/0",
        "SECRET_KEY": "k" * 40,
        **overrides,
    }
    return Settings.model_validate(values)


def test_the_app_sheds_outermost_except_probes_and_not_at_all_with_a_zero_limit() -> None:
    app = create_app(
        app_settings(
            CONCURRENCY_LIMIT=8,
            CONCURRENCY_QUEUE_SIZE=4,
            CONCURRENCY_QUEUE_TIMEOUT_SECONDS=0.25,
            CONCURRENCY_LIMIT_RETRY_AFTER_SECONDS=2,
        )
    )
    # Outside the whole app (see test_a_refused_request_costs_nothing_of_the_app_behind_the_limit),
    # not among the middleware FastAPI wraps in its error handling.
    outermost = app.load_shedding
    assert isinstance(outermost, ConcurrencyLimitMiddleware)
    assert all(m.cls is not ConcurrencyLimitMiddleware for m in app.user_middleware)
    assert outermost.limit == 8
    assert outermost.queue_size == 4
    assert outermost.queue_timeout_seconds == 0.25
    assert outermost.retry_after_seconds == 2
    assert outermost.exempt_paths == {"/healthz", "/readyz", "/metrics"}

    unlimited = create_app(app_settings(CONCURRENCY_LIMIT=0))
    assert unlimited.load_shedding is None
    assert all(m.cls is not ConcurrencyLimitMiddleware for m in unlimited.user_middleware)


def test_by_default_the_limit_is_the_database_pool_and_the_queue_as_long() -> None:
    settings = app_settings(DB_POOL_SIZE=12, DB_MAX_OVERFLOW=3)
    assert (settings.concurrency_limit, settings.concurrency_queue_size) == (15, 15)
    assert settings.CONCURRENCY_QUEUE_TIMEOUT_SECONDS == 0.5
    outermost = create_app(settings).load_shedding
    assert outermost is not None
    assert (outermost.limit, outermost.queue_size) == (15, 15)
    no_queue = app_settings(DB_POOL_SIZE=4, DB_MAX_OVERFLOW=0, CONCURRENCY_QUEUE_SIZE=0)
    assert (no_queue.concurrency_limit, no_queue.concurrency_queue_size) == (4, 0)


async def test_a_refused_request_costs_nothing_of_the_app_behind_the_limit() -> None:
    """The refusal comes before FastAPI builds or runs its stack (error handling, telemetry, the
    HTTP metrics, routing): under overload most requests are refused, at the served ones' expense."""
    app = create_app(app_settings(CONCURRENCY_LIMIT=1, CONCURRENCY_QUEUE_SIZE=0))
    shedding = app.load_shedding
    assert shedding is not None
    shedding.in_flight = shedding.limit  # every slot taken, as by requests at work
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        raise AssertionError("a refusal does not read the request body")

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/api/v1/tasks/1", "headers": [], "query_string": b""}
    await app(scope, receive, send)  # type: ignore[arg-type]

    body = b'{"detail":"Server overloaded, retry later"}'
    assert sent == [
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
            ],
        },
        {"type": "http.response.body", "body": body},
    ]
    assert "app" not in scope  # FastAPI's and Starlette's __call__ never ran
    assert app.middleware_stack is None  # nor was their stack even built
