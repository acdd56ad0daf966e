"""The ASGI application factory: ``uvicorn app.main:create_app --factory`` (or ``python -m app.serve``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import install_exception_handlers
from app.api.main import api_router
from app.api.routes import health
from app.core.config import API_V1_PREFIX, Settings
from app.core.load_shedding import LOAD_SHEDDING_STATE, ConcurrencyLimitMiddleware
from app.core.metrics import Metrics, PrometheusMiddleware, mark_this_process_dead
from app.core.services import Services

logger = logging.getLogger(__name__)


class SampleApp(FastAPI):
    """FastAPI with load shedding in front of everything the app does.

    Middleware added with ``add_middleware`` runs inside FastAPI's telemetry and Starlette's error
    handling; the concurrency limit wraps the application object instead, so a request it refuses
    costs nothing past the limiter's check (under overload most requests are refused: their cost
    is taken from the ones served). Admitted requests, and every lifespan event, go on unchanged.
    """

    def __init__(
        self, *, load_shedding: Callable[[ASGIApp], ConcurrencyLimitMiddleware] | None, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.load_shedding = load_shedding(self._serve) if load_shedding is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.load_shedding is None:
            await super().__call__(scope, receive, send)
        else:
            await self.load_shedding(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def custom_generate_unique_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def probe_paths() -> frozenset[str]:
    """/healthz, /readyz and /metrics: never shed, so probes and scrapes work under overload."""
    return frozenset(route.path for route in health.router.routes if isinstance(route, APIRoute))


def create_app(settings: Settings | None = None) -> SampleApp:
    """Build the app. Settings come from the environment unless given (tests pass them)."""
    settings = settings if settings is not None else Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        services = Services.create(settings, metrics)
        app.state.services = services
        assert isinstance(app, SampleApp)
        try:
            # The server's state: its HTTP protocol refuses at once what the limiter would.
            yield {LOAD_SHEDDING_STATE: app.load_shedding} if app.load_shedding is not None else {}
        finally:
            # uvicorn has stopped accepting and drained in-flight requests by now.
            await services.close()
            mark_this_process_dead()
            logger.info("pools released")

    load_shedding = (
        partial(
            ConcurrencyLimitMiddleware,
            limit=settings.concurrency_limit,
            queue_size=settings.concurrency_queue_size,
            queue_timeout_seconds=settings.CONCURRENCY_QUEUE_TIMEOUT_SECONDS,
            retry_after_seconds=settings.CONCURRENCY_LIMIT_RETRY_AFTER_SECONDS,
            exempt_paths=probe_paths(),
            metrics=metrics,
        )
        if settings.concurrency_limit
        else None
    )
    app = SampleApp(
        load_shedding=load_shedding,
        title=settings.PROJECT_NAME,
        openapi_url=f"{API_V1_PREFIX}/openapi.json",
        generate_unique_id_function=custom_generate_unique_id,
        lifespan=lifespan,
    )
    app.add_middleware(PrometheusMiddleware, metrics=metrics)
    install_exception_handlers(app, metrics)
    app.include_router(api_router)
    app.include_router(health.router)
    return app
