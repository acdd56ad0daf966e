"""Load shedding: at most ``limit`` requests at work per process, a few more waiting briefly, 503 past that.

Invariant: a request is admitted only while fewer than ``limit`` are at work in the process; the
default limit is the database pool's size (``DB_POOL_SIZE + DB_MAX_OVERFLOW``), the real bound on
the work the process can do at once. Past the limit a request waits in a FIFO queue of at most
``queue_size`` for up to ``queue_timeout_seconds``; if the queue is full it is refused at once, and
if no slot frees up in time it is refused then. A refused request never reaches the routing and costs
no database or Redis work: it is answered ``503`` with ``Retry-After`` and a small JSON body, and
counted in ``load_shed_requests_total``. A finished request hands its slot straight to the oldest
waiter, so the queue is served in order and no newcomer overtakes it.

Why: an overloaded process that admits everything queues without bound: every request waits for a
pool connection, clients time out, the work done for them is wasted, and goodput collapses. A limit
well above the pool (the previous default, 64) only moves that queue into the pool, where admitted
requests wait long enough to time out. A limit at the pool keeps the requests admitted few enough
to be served quickly; the short queue absorbs bursts (a closed loop of twice the pool per process
waits instead of being refused, as long as slots free up within the timeout) without letting a
request wait past ``queue_timeout_seconds``.

Probe and metrics paths are never shed: liveness, readiness and scraping must keep working under
overload. The count is per process (per uvicorn worker); the event loop runs one task at a time,
so plain integers and a deque need no lock.

The app applies it outside its whole stack (``app.main.SampleApp``): a refusal costs the server's
parsing and two socket writes, one counter increment, and nothing of FastAPI's error handling,
telemetry, routing or HTTP metrics. So ``http_requests_total`` and ``http_request_duration_seconds``
describe the requests the app served, not those it refused.

Under ``python -m app.serve`` the refusals that need no waiting (every slot taken, the queue full)
come even earlier: the lifespan publishes the limiter in the server's state under
``LOAD_SHEDDING_STATE``, and the HTTP protocol (``app.core.http_protocol``) asks
``refuses_at_once`` before it starts an ASGI task, answering the same 503 itself. The decision is
this module's either way.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.metrics import Metrics

OVERLOADED = {"detail": "Server overloaded, retry later"}
# The key under which the app's lifespan state carries its limiter (see app.core.http_protocol).
LOAD_SHEDDING_STATE = "load_shedding"


def _give(slot: asyncio.Future[bool], admitted: bool) -> None:
    if not slot.done():
        slot.set_result(admitted)


class ConcurrencyLimitMiddleware:
    """Pure ASGI middleware: ``limit`` HTTP requests at work, ``queue_size`` waiting, 503 for the rest."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        queue_size: int,
        queue_timeout_seconds: float,
        retry_after_seconds: int,
        exempt_paths: Collection[str],
        metrics: Metrics,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if queue_size < 0:
            raise ValueError(f"queue_size must not be negative, got {queue_size}")
        if queue_timeout_seconds <= 0:
            raise ValueError(f"queue_timeout_seconds must be positive, got {queue_timeout_seconds}")
        self.app = app
        self.limit = limit
        self.queue_size = queue_size
        self.queue_timeout_seconds = queue_timeout_seconds
        self.retry_after_seconds = retry_after_seconds
        self.exempt_paths = frozenset(exempt_paths)
        self.in_flight = 0
        # Pending futures of the requests waiting for a slot, oldest first. A slot is handed over
        # by resolving the future with True; a timeout resolves it with False.
        self.waiting: deque[asyncio.Future[bool]] = deque()
        self._shed = metrics.load_shed_requests
        # Rendered once: answering a shed request must cost as little as possible.
        self.refusal_body = json.dumps(OVERLOADED, separators=(",", ":")).encode()
        self.refusal_headers: tuple[tuple[bytes, bytes], ...] = (
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.refusal_body)).encode()),
            (b"retry-after", str(retry_after_seconds).encode()),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight < self.limit:
            self.in_flight += 1
        elif len(self.waiting) >= self.queue_size or not await self._wait_for_slot():
            await self._refuse(send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    def refuses_at_once(self, scope: Scope) -> bool:
        """Whether a request with this scope, arriving now, would be refused without waiting:
        every slot taken and the queue full (the same test as ``__call__``'s)."""
        return (
            self.in_flight >= self.limit
            and len(self.waiting) >= self.queue_size
            and scope["type"] == "http"
            and scope["path"] not in self.exempt_paths
        )

    def count_refusal(self) -> None:
        self._shed.inc()

    async def _refuse(self, send: Send) -> None:
        """503 + Retry-After, straight to the server: two messages, no Response object."""
        self.count_refusal()
        # A fresh header list: a server or wrapper may extend the one it is given.
        await send({"type": "http.response.start", "status": 503, "headers": list(self.refusal_headers)})
        await send({"type": "http.response.body", "body": self.refusal_body})

    async def _wait_for_slot(self) -> bool:
        """Queue for a slot; True once one is handed over, False after the queue timeout."""
        loop = asyncio.get_running_loop()
        slot: asyncio.Future[bool] = loop.create_future()
        self.waiting.append(slot)
        timer = loop.call_later(self.queue_timeout_seconds, _give, slot, False)
        try:
            return await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled() and slot.result():
                self._release()  # handed a slot this request will never use
            raise
        finally:
            timer.cancel()
            if slot in self.waiting:  # timed out or cancelled: not handed over
                self.waiting.remove(slot)

    def _release(self) -> None:
        """Hand the slot to the oldest waiter still waiting, else free it."""
        while self.waiting:
            slot = self.waiting.popleft()
            if not slot.done():  # a timed-out waiter may not have woken up to leave yet
                slot.set_result(True)
                return
        self.in_flight -= 1
