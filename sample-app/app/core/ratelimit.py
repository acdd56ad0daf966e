"""Rate limiting in Redis: a fixed window per client, refused with 429 and ``Retry-After``.

All API workers and pods share the counters, so the limit holds for the whole Deployment.
When Redis is unavailable the limiter lets requests through: availability over strictness.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from app.core.redis_client import RedisGateway, RedisUnavailable


@dataclass(frozen=True)
class RateLimitDecision:
    allowed: bool
    remaining: int
    retry_after_seconds: int


class RateLimiter:
    def __init__(self, redis: RedisGateway, *, limit: int, window_seconds: int, enabled: bool = True) -> None:
        self._redis = redis
        self.limit = limit
        self.window_seconds = window_seconds
        self.enabled = enabled

    async def hit(self, client_id: str, now: float | None = None) -> RateLimitDecision:
        """Count one request for ``client_id`` in the current window and decide."""
        if not self.enabled:
            return RateLimitDecision(True, self.limit, 0)
        now = time.time() if now is None else now
        window = int(now // self.window_seconds)
        key = f"ratelimit:{client_id}:{window}"

        async def count(r: object) -> int:
            async with self._redis.client.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, self.window_seconds + 1, nx=True)
                hits, _ = await pipe.execute()
            return int(hits)

        try:
            hits = await self._redis.call(count)
        except RedisUnavailable:
            return RateLimitDecision(True, self.limit, 0)
        if hits <= self.limit:
            return RateLimitDecision(True, self.limit - hits, 0)
        window_end = (window + 1) * self.window_seconds
        return RateLimitDecision(False, 0, max(1, math.ceil(window_end - now)))
