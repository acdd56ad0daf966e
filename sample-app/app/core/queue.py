"""The task queue: a Redis Stream read by a consumer group (``python -m app.worker``)."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from app.core.metrics import QueueDepth
from app.core.redis_client import RedisGateway

TASK_ID_FIELD = "task_id"


class TaskQueue:
    def __init__(self, redis: RedisGateway, *, stream: str, group: str, maxlen: int) -> None:
        self._redis = redis
        self.stream = stream
        self.group = group
        self.maxlen = maxlen

    async def enqueue(self, task_id: int) -> str:
        """XADD the task id; raises RedisUnavailable (the outbox sweep re-enqueues it later)."""
        entry_id = await self._redis.call(
            lambda r: r.xadd(self.stream, {TASK_ID_FIELD: str(task_id)}, maxlen=self.maxlen, approximate=True)
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def depth(self) -> QueueDepth:
        """Entries not yet delivered to the group (lag) and delivered but not acknowledged."""

        async def read(r: Any) -> QueueDepth:
            try:
                groups = await r.xinfo_groups(self.stream)
            except ResponseError:  # no stream yet
                return QueueDepth(waiting=0, pending=0)
            for group in groups:
                name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
                if name == self.group:
                    lag = group.get("lag")
                    return QueueDepth(waiting=int(lag or 0), pending=int(group["pending"]))
            return QueueDepth(waiting=int(await r.xlen(self.stream)), pending=0)

        return await self._redis.call(read)
