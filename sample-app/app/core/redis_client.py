"""The Redis client, behind a circuit breaker.

Redis is an optimisation here (cache, rate limits) plus the task queue. When it fails, callers
get :class:`RedisUnavailable` at once and fall back (serve from the database, let the request
through); after ``REDIS_BREAKER_FAILURES`` consecutive failures the breaker opens and Redis is
not even tried for ``REDIS_BREAKER_RESET_SECONDS``, so a dead Redis costs no timeouts.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core.config import Settings
from app.core.metrics import Metrics

T = TypeVar("T")

# Errors that mean "Redis is not reachable" (as opposed to a bad command).
REDIS_DOWN_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisUnavailable(Exception):
    """Redis could not be used; the caller should degrade gracefully."""


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Consecutive-failure circuit breaker with a half-open trial after a cool-down."""

    def __init__(
        self, failure_threshold: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.reset_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a call go to Redis now? In half-open state only one trial call is let through."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._trial_in_flight = False
        self._failures += 1
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()


def create_redis_client(settings: Settings, *, socket_timeout: float | None = None) -> aioredis.Redis:
    """A client with a bounded, blocking pool and a single immediate retry.

    The retry re-opens a connection that died (e.g. Redis restarted); more retries with
    backoff would only make a dead Redis slower to detect.
    """
    timeout = socket_timeout if socket_timeout is not None else settings.REDIS_SOCKET_TIMEOUT_SECONDS
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        password=settings.redis_password,
        max_connections=settings.REDIS_MAX_CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries=1),
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)


class RedisGateway:
    """Runs Redis calls through the circuit breaker and turns outages into RedisUnavailable."""

    def __init__(self, client: aioredis.Redis, breaker: CircuitBreaker, metrics: Metrics) -> None:
        self.client = client
        self.breaker = breaker
        self._metrics = metrics

    async def call(self, operation: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        if not self.breaker.allow():
            raise RedisUnavailable("circuit open")
        was_closed = self.breaker.state is BreakerState.CLOSED
        try:
            result = await operation(self.client)
        except REDIS_DOWN_ERRORS as exc:
            self.breaker.record_failure()
            if self.breaker.state is BreakerState.OPEN:
                self._metrics.redis_circuit_open.set(1)
            raise RedisUnavailable(str(exc)) from exc
        self.breaker.record_success()
        if not was_closed:
            self._metrics.redis_circuit_open.set(0)
        return result

    async def ping(self) -> bool:
        try:
            return bool(await self.call(lambda r: r.ping()))
        except RedisUnavailable:
            return False

    async def aclose(self) -> None:
        await self.client.aclose()
