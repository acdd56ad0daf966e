"""Probes and metrics, outside the versioned API (no rate limit, no auth)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Response, status
from starlette.concurrency import run_in_threadpool

from app.api.deps import ServicesDep
from app.core.db import is_db_unavailable
from app.core.metrics import render_metrics
from app.core.redis_client import RedisUnavailable

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

READY_TIMEOUT_SECONDS = 2.0
RETRY_AFTER_SECONDS = "5"


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process serves requests. Deliberately checks no dependency, so an outage
    of the database or Redis never gets healthy pods restarted."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep, response: Response) -> dict[str, str]:
    """Readiness: the primary answers. Redis is reported but not required (the app degrades)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await services.db.ping()
        database = "ok"
    except Exception as exc:
        if not (is_db_unavailable(exc) or isinstance(exc, TimeoutError)):
            raise
        database = "unavailable"
    redis = "ok" if await services.redis.ping() else "unavailable"
    if database != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return {"status": "unavailable", "database": database, "redis": redis}
    return {"status": "ready", "database": database, "redis": redis}


@router.get("/metrics")
async def metrics(services: ServicesDep) -> Response:
    try:
        depth = await services.queue.depth()
    except RedisUnavailable:
        depth = None
    body = await run_in_threadpool(render_metrics, services.metrics, depth)
    return Response(content=body, media_type="text/plain; version=0.0.4; charset=utf-8")
