"""Cache-aside for single entities, with stampede protection and consistent invalidation.

* Hit: the cached JSON is returned as is.
* Miss: one loader per key fills the cache (single flight). Within a process concurrent
  misses share one future; across processes (uvicorn workers, pods) a short Redis lock elects
  one filler while the others poll the key for up to ``CACHE_FILL_WAIT_SECONDS``. N concurrent
  misses therefore cost one database query, not N (the "thundering herd").
* Write: the key is deleted and a *fence* (the write's WAL position) is stored beside it. A
  filler reads at or after the fence (see ``Database.reader``), and its ``SET`` only lands if
  the fence did not move while it was loading, so a fill racing a write cannot put stale data
  back for a whole TTL.
* Redis down: every call goes to the loader (the database); nothing raises.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

from app.core.config import Settings
from app.core.db import format_lsn, parse_lsn
from app.core.metrics import Metrics
from app.core.redis_client import RedisGateway, RedisUnavailable

logger = logging.getLogger(__name__)

# Loader: reads the entity at or after the given WAL position; returns its JSON or None (absent).
Loader = Callable[[str | None], Awaitable[bytes | None]]

# SET the value only if the fence is what the filler saw before loading; then drop the lock
# if it is still ours. KEYS: value, fence, lock. ARGV: value, ttl, fence seen, lock token.
_FILL_SCRIPT = """
local fence = redis.call('GET', KEYS[2]) or ''
local stored = 0
if fence == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
  stored = 1
end
if redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('DEL', KEYS[3])
end
return stored
"""


# Drop the fill lock only if it is still ours. KEYS: lock. ARGV: token.
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def newest_lsn(*values: str | None) -> str | None:
    positions = [p for p in (parse_lsn(v) for v in values) if p is not None]
    return format_lsn(max(positions)) if positions else None


class EntityCache:
    """Cache-aside over Redis for ``resource``/``id`` JSON documents."""

    def __init__(self, redis: RedisGateway, metrics: Metrics, settings: Settings) -> None:
        self._redis = redis
        self._metrics = metrics
        self.enabled = settings.CACHE_ENABLED
        self.ttl_seconds = settings.CACHE_TTL_SECONDS
        self.fence_seconds = settings.READ_YOUR_WRITES_SECONDS
        self.lock_ms = max(1, int(settings.CACHE_FILL_LOCK_SECONDS * 1000))
        self.wait_seconds = settings.CACHE_FILL_WAIT_SECONDS
        self._inflight: dict[tuple[str, str | None], asyncio.Future[bytes | None]] = {}
        self._fill = redis.client.register_script(_FILL_SCRIPT)
        self._release = redis.client.register_script(_RELEASE_SCRIPT)

    @staticmethod
    def key(resource: str, entity_id: int) -> str:
        return f"cache:v1:{resource}:{entity_id}"

    async def get_or_load(
        self, resource: str, entity_id: int, load: Loader, min_lsn: str | None = None
    ) -> bytes | None:
        if not self.enabled:
            return await load(min_lsn)
        key = self.key(resource, entity_id)
        try:
            cached, fence = await self._redis.call(lambda r: r.mget(key, f"{key}:fence"))
        except RedisUnavailable:
            self._metrics.cache_requests.labels(resource, "bypass").inc()
            return await load(min_lsn)
        if cached is not None:
            self._metrics.cache_requests.labels(resource, "hit").inc()
            return _as_bytes(cached)
        self._metrics.cache_requests.labels(resource, "miss").inc()
        fence_text = _as_bytes(fence).decode() if fence is not None else None
        read_at = newest_lsn(min_lsn, fence_text)
        flight = (key, read_at)
        if (running := self._inflight.get(flight)) is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._inflight[flight] = future
        try:
            value = await self._fill_once(key, fence_text, read_at, load)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: followers may be gone
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._inflight[flight]

    async def _fill_once(
        self, key: str, fence: str | None, read_at: str | None, load: Loader
    ) -> bytes | None:
        lock_key = f"{key}:lock"
        token = secrets.token_hex(8)
        try:
            won = await self._redis.call(lambda r: r.set(lock_key, token, nx=True, px=self.lock_ms))
        except RedisUnavailable:
            return await load(read_at)
        if not won:
            waited = await self._wait_for_fill(key)
            if waited is not None:
                return waited
            return await load(read_at)  # the filler is slow or died: serve from the database
        try:
            # Double check: a filler may have finished between our miss and our lock.
            cached = await self._redis.call(lambda r: r.get(key))
            if cached is not None:
                await self._redis.call(lambda r: self._release(keys=[lock_key], args=[token], client=r))
                return _as_bytes(cached)
        except RedisUnavailable:
            return await load(read_at)
        value = await load(read_at)
        try:
            if value is None:
                await self._redis.call(lambda r: self._release(keys=[lock_key], args=[token], client=r))
            else:
                await self._redis.call(
                    lambda r: self._fill(
                        keys=[key, f"{key}:fence", lock_key],
                        args=[value, self.ttl_seconds, fence or "", token],
                        client=r,
                    )
                )
        except RedisUnavailable:
            logger.debug("could not fill %s: Redis unavailable", key)
        return value

    async def _wait_for_fill(self, key: str) -> bytes | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        delay = 0.005
        while loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            try:
                cached = await self._redis.call(lambda r: r.get(key))
            except RedisUnavailable:
                return None
            if cached is not None:
                return _as_bytes(cached)
        return None

    async def invalidate(self, resource: str, entity_id: int, written_at: str) -> None:
        """Drop the cached entity and fence it at the write's WAL position."""
        if not self.enabled:
            return
        key = self.key(resource, entity_id)

        async def drop(r: object) -> None:
            async with self._redis.client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.set(f"{key}:fence", written_at, ex=self.fence_seconds)
                await pipe.execute()

        try:
            await self._redis.call(drop)
        except RedisUnavailable:
            # Redis is down: it comes back empty if it restarted; otherwise entries expire by TTL.
            logger.warning("could not invalidate %s: Redis unavailable", key)
