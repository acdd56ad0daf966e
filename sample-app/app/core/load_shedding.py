"""Load shedding: at most ``limit`` requests in flight per process; past it, 503 at once.

Invariant: a request over the limit never waits and costs no database or Redis work. It is
answered ``503`` with ``Retry-After`` and a small JSON body, and counted in
``load_shed_requests_total``. Without this, an overloaded process queues without bound: every
request waits for a pool connection, clients time out, and the work done for them is wasted, so
goodput collapses (offered 10% over its capacity, the app served a fifth of it). Shedding keeps
the requests in flight few enough to be served quickly, so goodput stays near capacity.

Probe and metrics paths are never shed: liveness, readiness and scraping must keep working
under overload. The count is per process (per uvicorn worker); the event loop runs one task at a
time, so a plain integer needs no lock.

The middleware wraps the HTTP metrics middleware: ``http_requests_total`` and
``http_request_duration_seconds`` describe the requests the app served, not those it refused.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.metrics import Metrics


class ConcurrencyLimitMiddleware:
    """Pure ASGI middleware that refuses HTTP requests past ``limit`` in flight."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        retry_after_seconds: int,
        exempt_paths: Collection[str],
        metrics: Metrics,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.app = app
        self.limit = limit
        self.exempt_paths = frozenset(exempt_paths)
        self.in_flight = 0
        self._shed = metrics.load_shed_requests
        # Built once: answering a shed request must cost as little as possible.
        self._overloaded = JSONResponse(
            status_code=503,
            content={"detail": "Server overloaded, retry later"},
            headers={"Retry-After": str(retry_after_seconds)},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self._shed.inc()
            await self._overloaded(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
