"""Everything a process holds open: built in the lifespan, closed on shutdown, kept on app.state."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.cache import EntityCache
from app.core.config import Settings
from app.core.db import Database
from app.core.metrics import Metrics
from app.core.queue import TaskQueue
from app.core.ratelimit import RateLimiter
from app.core.redis_client import CircuitBreaker, RedisGateway, create_redis_client


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    db: Database
    redis: RedisGateway
    cache: EntityCache
    limiter: RateLimiter
    queue: TaskQueue

    @classmethod
    def create(cls, settings: Settings, metrics: Metrics) -> Services:
        """Build the pools (connections open lazily, so this works with the database down)."""
        redis = RedisGateway(
            create_redis_client(settings),
            CircuitBreaker(settings.REDIS_BREAKER_FAILURES, settings.REDIS_BREAKER_RESET_SECONDS),
            metrics,
        )
        return cls(
            settings=settings,
            metrics=metrics,
            db=Database(settings, metrics),
            redis=redis,
            cache=EntityCache(redis, metrics, settings),
            limiter=RateLimiter(
                redis,
                limit=settings.RATE_LIMIT_REQUESTS,
                window_seconds=settings.RATE_LIMIT_WINDOW_SECONDS,
                enabled=settings.RATE_LIMIT_ENABLED,
            ),
            queue=TaskQueue(
                redis,
                stream=settings.TASK_STREAM,
                group=settings.TASK_GROUP,
                maxlen=settings.TASK_STREAM_MAXLEN,
            ),
        )

    async def close(self) -> None:
        """Release the pools: database connections first, then Redis."""
        try:
            await self.db.dispose()
        finally:
            await self.redis.aclose()
