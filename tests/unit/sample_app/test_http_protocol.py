"""The serving protocol: uvicorn's own httptools protocol class, driven byte by byte over a recording
transport. A request the concurrency limit would refuse at once is answered by the protocol, with
the bytes uvicorn writes when the middleware refuses it, in one write and without an ASGI task;
every other request reaches the app as before."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from uvicorn.importer import import_from_string
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app import serve
from app.core.http_protocol import SheddingHttpToolsProtocol
from app.core.load_shedding import LOAD_SHEDDING_STATE, ConcurrencyLimitMiddleware
from app.core.metrics import Metrics
from app.main import create_app
from tests.unit.sample_app.test_concurrency_limit_middleware import app_settings

pytestmark = pytest.mark.unit

GET = b"GET /work HTTP/1.1\r\nHost: example\r\n\r\n"
REFUSAL_BODY = b'{"detail":"Server overloaded, retry later"}'


class RecordingTransport(asyncio.Transport):
    """What a socket would get: each write, and whether the connection was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Server:
    """One connection to uvicorn's protocol (``protocol_class``) in front of a limited app."""

    def __init__(self, protocol_class: type[HttpToolsProtocol], *, publish_limiter: bool = True) -> None:
        self.reached_app: list[str] = []

        async def work(request: Request) -> PlainTextResponse:
            self.reached_app.append(request.url.path)
            return PlainTextResponse("done")

        self.metrics = Metrics()
        inner = Starlette(
            routes=[Route("/work", work, methods=["GET", "HEAD", "POST"]), Route("/healthz", work)]
        )
        self.limiter = ConcurrencyLimitMiddleware(
            inner,
            limit=1,
            queue_size=0,
            queue_timeout_seconds=1.0,
            retry_after_seconds=3,
            exempt_paths={"/healthz"},
            metrics=self.metrics,
        )
        config = uvicorn.Config(app=self.limiter, lifespan="off", log_level="warning")
        self.state = ServerState()
        app_state = {LOAD_SHEDDING_STATE: self.limiter} if publish_limiter else {}
        self.protocol = protocol_class(config=config, server_state=self.state, app_state=app_state)
        self.transport = RecordingTransport()
        self.protocol.connection_made(self.transport)

    def take_every_slot(self) -> None:
        self.limiter.in_flight = self.limiter.limit  # as requests at work would

    def receive(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def shed_count(self) -> float:
        value = self.metrics.registry.get_sample_value("load_shed_requests_total")
        return 0.0 if value is None else value

    async def answered(self) -> bytes:
        """Every byte written once the ASGI tasks started so far have finished."""
        if self.state.tasks:
            await asyncio.wait(set(self.state.tasks), timeout=5)
        return b"".join(self.transport.writes)


def refusal(*extra_headers: bytes, body: bytes = REFUSAL_BODY) -> bytes:
    headers = [
        b"content-type: application/json",
        b"content-length: " + str(len(REFUSAL_BODY)).encode(),
        b"retry-after: 3",
        *extra_headers,
    ]
    return b"HTTP/1.1 503 Service Unavailable\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


async def test_a_request_refused_at_once_is_answered_in_one_write_without_reaching_the_app() -> None:
    server = Server(SheddingHttpToolsProtocol)
    server.take_every_slot()

    server.receive(GET)

    assert server.transport.writes == [refusal()]  # one write: status line, headers and body
    assert not server.state.tasks  # no ASGI task was started for it
    assert server.reached_app == []
    assert server.shed_count() == 1
    assert not server.transport.closed  # kept alive: the next request on it is read as usual

    server.receive(GET)
    assert server.transport.writes == [refusal(), refusal()]
    assert server.shed_count() == 2

    server.receive(b"GET /work HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n")
    assert server.transport.writes[-1] == refusal(b"connection: close")
    assert server.transport.closed


REQUESTS = {
    "GET, kept alive": GET,
    "HEAD": b"HEAD /work HTTP/1.1\r\nHost: example\r\n\r\n",
    "GET, closing": b"GET /work HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n",
    "HTTP/1.0": b"GET /work HTTP/1.0\r\n\r\n",
    "POST with a body": b"POST /work HTTP/1.1\r\nHost: example\r\nContent-Length: 5\r\n\r\nhello",
    "with a query": b"GET /work?page=2 HTTP/1.1\r\nHost: example\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", list(REQUESTS.values()), ids=list(REQUESTS))
async def test_the_protocol_writes_what_uvicorn_writes_when_the_middleware_refuses(
    request_bytes: bytes,
) -> None:
    early = Server(SheddingHttpToolsProtocol)
    # uvicorn's own protocol: the request becomes an ASGI task and the middleware refuses it.
    through_the_app = Server(HttpToolsProtocol, publish_limiter=False)
    for server in (early, through_the_app):
        server.take_every_slot()
        server.receive(request_bytes)

    assert len(through_the_app.state.tasks) == 1
    assert await early.answered() == await through_the_app.answered()
    assert early.transport.closed == through_the_app.transport.closed
    assert early.shed_count() == through_the_app.shed_count() == 1


@pytest.mark.parametrize(
    ("prepare", "path"),
    [
        (Server.take_every_slot, b"/healthz"),  # exempt, even when full
        (lambda server: None, b"/work"),  # a free slot
        # Full, but with room in the queue: waiting (and its timeout) is the middleware's.
        (lambda server: (server.take_every_slot(), setattr(server.limiter, "queue_size", 1)), b"/work"),
    ],
    ids=["exempt path", "free slot", "room in the queue"],
)
async def test_every_other_request_reaches_the_app(prepare: Callable[[Server], object], path: bytes) -> None:
    server = Server(SheddingHttpToolsProtocol)
    prepare(server)
    server.receive(b"GET " + path + b" HTTP/1.1\r\nHost: example\r\n\r\n")
    assert len(server.state.tasks) == 1  # handed to the app as an ASGI task
    if path == b"/work" and server.limiter.in_flight:
        server.limiter.in_flight = 0  # the request at work finishes: the queued one gets its slot
        server.limiter._release()
    answer = await server.answered()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"done")
    assert server.reached_app == [path.decode()]
    assert server.shed_count() == 0


async def test_the_app_publishes_its_limiter_to_the_server_only_when_it_sheds() -> None:
    shedding = create_app(app_settings(CONCURRENCY_LIMIT=4))
    async with shedding.router.lifespan_context(shedding) as state:
        assert state == {LOAD_SHEDDING_STATE: shedding.load_shedding}
    unlimited = create_app(app_settings(CONCURRENCY_LIMIT=0))
    async with unlimited.router.lifespan_context(unlimited) as state:
        assert state == {}


def test_the_server_runs_the_shedding_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DATABASE_URL": "postgresql://app@db:5432/app",
        "REDIS_URL": "redis://cache:6379/0",
        "SECRET_KEY": "k" * 40,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    ran: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: ran.update(kwargs))
    serve.main()
    assert import_from_string(ran["http"]) is SheddingHttpToolsProtocol
