"""Exception handlers: dependencies down -> 503 with Retry-After, never a bare 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.core.db import is_db_unavailable
from app.core.metrics import Metrics
from app.core.redis_client import RedisUnavailable
from app.crud import ConflictError

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"


def _unavailable(what: str) -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": f"{what} unavailable, retry later"},
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def install_exception_handlers(app: FastAPI, metrics: Metrics) -> None:
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, IntegrityError):
            return JSONResponse(
                status_code=status.HTTP_409_CONFLICT, content={"detail": "Conflicting change"}
            )
        if not is_db_unavailable(exc):
            raise exc
        metrics.db_unavailable.inc()
        logger.warning("database unavailable: %s", exc.__class__.__name__)
        return _unavailable("Database")

    async def redis_error(request: Request, exc: Exception) -> JSONResponse:
        return _unavailable("Redis")

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status.HTTP_409_CONFLICT, content={"detail": str(exc)})

    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeoutError, database_error)
    app.add_exception_handler(OSError, database_error)
    app.add_exception_handler(RedisUnavailable, redis_error)
    app.add_exception_handler(ConflictError, conflict)
