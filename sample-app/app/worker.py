"""The task worker: ``python -m app.worker``.

It reads the task stream with a consumer group and guarantees at-least-once processing:

* An entry is acknowledged (XACK) only after its work is committed in PostgreSQL. A worker that
  dies in between leaves the entry pending; another worker claims it with XAUTOCLAIM once it has
  been idle for ``WORKER_CLAIM_IDLE_MS`` and processes it again.
* Processing is idempotent: the task moves ``pending -> completed`` with a conditional UPDATE,
  so a redelivered entry finds the task already completed and changes nothing.
* Outbox sweep: tasks committed while Redis was down (or whose XADD was lost with a crashed API
  process) are pending with no recent ``enqueued_at``; the sweep puts them on the stream.

SIGTERM/SIGINT stop it after the entry in hand; unacknowledged entries stay pending for others.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import start_http_server
from redis.exceptions import ResponseError
from sqlalchemy import func, select, text, update

from app.core.cache import EntityCache
from app.core.config import Settings
from app.core.db import Database, is_db_unavailable
from app.core.metrics import Metrics, prepare_multiprocess_dir
from app.core.queue import TASK_ID_FIELD
from app.core.redis_client import REDIS_DOWN_ERRORS, CircuitBreaker, RedisGateway, create_redis_client
from app.models import Task, TaskStatus

logger = logging.getLogger("app.worker")

RETRY_DELAY_SECONDS = 1.0


@dataclass(frozen=True)
class StreamEntry:
    entry_id: str
    fields: dict[str, str]


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(raw: Any) -> list[StreamEntry]:
    entries = []
    for entry_id, fields in raw or []:
        if fields is None:  # deleted from the stream (trimmed) while pending
            entries.append(StreamEntry(_decode(entry_id), {}))
            continue
        entries.append(StreamEntry(_decode(entry_id), {_decode(k): _decode(v) for k, v in fields.items()}))
    return entries


def summarise(task: Task) -> str:
    """The "work": a deterministic summary of the task."""
    text_ = f"{task.title}\n{task.description or ''}"
    digest = hashlib.sha256(text_.encode()).hexdigest()[:12]
    return f"{len(text_.split())} words, sha256 {digest}"


class TaskWorker:
    """One consumer in the task group. Methods are public so tests can drive each step."""

    def __init__(
        self, settings: Settings, db: Database, client: aioredis.Redis, metrics: Metrics, consumer: str
    ):
        self.settings = settings
        self.db = db
        self.redis = client
        self.metrics = metrics
        self.consumer = consumer
        self.stream = settings.TASK_STREAM
        self.group = settings.TASK_GROUP
        gateway = RedisGateway(client, CircuitBreaker(1, 0.5), metrics)
        self.cache = EntityCache(gateway, metrics, settings)

    async def ensure_group(self) -> None:
        """Create the consumer group from the start of the stream (entries added before it count)."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_new(self, count: int | None = None, block_ms: int | None = None) -> list[StreamEntry]:
        """Entries never delivered to the group (they become pending for this consumer)."""
        reply = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=count or self.settings.WORKER_BATCH_SIZE,
            block=block_ms if block_ms is not None else self.settings.WORKER_BLOCK_MS,
        )
        streams: list[Any] = list(reply or [])
        return [entry for _, raw in streams for entry in _entries(raw)]

    async def claim_stale(self, min_idle_ms: int | None = None, max_entries: int = 1000) -> list[StreamEntry]:
        """Take over entries left pending by dead (or stuck) consumers."""
        idle = min_idle_ms if min_idle_ms is not None else self.settings.WORKER_CLAIM_IDLE_MS
        claimed: list[StreamEntry] = []
        cursor = "0-0"
        while len(claimed) < max_entries:
            reply = await self.redis.xautoclaim(
                self.stream, self.group, self.consumer, min_idle_time=idle, start_id=cursor, count=100
            )
            cursor = _decode(reply[0])
            claimed.extend(_entries(reply[1]))
            if cursor == "0-0":
                break
        return claimed

    async def process(self, entry: StreamEntry) -> str:
        """Do the entry's work and commit it. Returns the outcome; does NOT acknowledge."""
        raw_id = entry.fields.get(TASK_ID_FIELD, "")
        if not raw_id.isdigit():
            return "missing"
        task_id = int(raw_id)
        async with self.db.writer() as session:
            task = await session.get(Task, task_id)
            if task is None:
                return "missing"
            if task.status != TaskStatus.PENDING:
                return "duplicate"
            done = await session.execute(
                update(Task)
                .where(Task.id == task_id, Task.status == TaskStatus.PENDING.value)
                .values(status=TaskStatus.COMPLETED.value, result=summarise(task), processed_at=func.now())
                .returning(Task.id)
            )
            if done.first() is None:  # another consumer completed it since we looked
                await session.rollback()
                return "duplicate"
            await session.commit()
            written_at = await Database.wal_position(session)
        await self.cache.invalidate("task", task_id, written_at)
        return "processed"

    async def ack(self, entry: StreamEntry) -> None:
        await self.redis.xack(self.stream, self.group, entry.entry_id)

    async def handle(self, entry: StreamEntry) -> str:
        """Process, then acknowledge. If processing fails the entry stays pending (retried later)."""
        try:
            outcome = await self.process(entry)
        except Exception as exc:
            self.metrics.worker_tasks.labels("failed").inc()
            if not is_db_unavailable(exc):
                logger.exception("processing %s failed; it stays pending", entry.entry_id)
            raise
        await self.ack(entry)
        self.metrics.worker_tasks.labels(outcome).inc()
        return outcome

    async def sweep_unqueued(self, limit: int = 100) -> int:
        """Outbox: enqueue pending tasks that never reached the stream (or long ago)."""
        async with self.db.writer() as session:
            stale = text(f"now() - interval '{int(self.settings.WORKER_SWEEP_AFTER_SECONDS)} seconds'")
            rows = await session.scalars(
                select(Task.id)
                .where(Task.status == TaskStatus.PENDING.value)
                .where((Task.enqueued_at.is_(None)) | (Task.enqueued_at < stale))
                .order_by(Task.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = list(rows)
            for task_id in ids:
                await self.redis.xadd(
                    self.stream,
                    {TASK_ID_FIELD: str(task_id)},
                    maxlen=self.settings.TASK_STREAM_MAXLEN,
                    approximate=True,
                )
            if ids:
                await session.execute(update(Task).where(Task.id.in_(ids)).values(enqueued_at=func.now()))
            await session.commit()
        return len(ids)

    async def run(self, stop: asyncio.Event) -> None:
        """The main loop, until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        next_claim = next_sweep = loop.time()
        group_ready = False
        while not stop.is_set():
            try:
                if not group_ready:
                    await self.ensure_group()
                    group_ready = True
                entries: list[StreamEntry] = []
                if loop.time() >= next_claim:
                    entries += await self.claim_stale()
                    next_claim = loop.time() + self.settings.WORKER_CLAIM_INTERVAL_SECONDS
                if loop.time() >= next_sweep:
                    swept = await self.sweep_unqueued()
                    if swept:
                        logger.info("re-enqueued %d task(s) that missed the stream", swept)
                    next_sweep = loop.time() + self.settings.WORKER_SWEEP_INTERVAL_SECONDS
                if not entries:
                    entries = await self.read_new()
                for entry in entries:
                    if stop.is_set():
                        break  # unhandled entries stay pending; another consumer claims them
                    await self.handle(entry)
            except REDIS_DOWN_ERRORS as exc:
                logger.warning("redis unavailable (%s); retrying", exc.__class__.__name__)
                group_ready = False
                await _sleep_unless(stop, RETRY_DELAY_SECONDS)
            except Exception as exc:
                if not is_db_unavailable(exc):
                    logger.exception("worker iteration failed")
                else:
                    logger.warning("database unavailable (%s); retrying", exc.__class__.__name__)
                await _sleep_unless(stop, RETRY_DELAY_SECONDS)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def default_consumer_name() -> str:
    """Stable per pod and process: the pod name (hostname) and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


async def run_worker(settings: Settings) -> None:
    metrics = Metrics()
    if settings.WORKER_METRICS_PORT is not None:
        start_http_server(settings.WORKER_METRICS_PORT, registry=metrics.registry)
    db = Database(settings, metrics, application_name="sbo-sample-worker")
    # XREADGROUP blocks on the server: the socket timeout must outlast the block.
    client = create_redis_client(settings, socket_timeout=settings.WORKER_BLOCK_MS / 1000 + 5)
    worker = TaskWorker(
        settings, db, client, metrics, settings.WORKER_CONSUMER_NAME or default_consumer_name()
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logger.info("worker %s consuming %s as group %s", worker.consumer, worker.stream, worker.group)
    try:
        await worker.run(stop)
    finally:
        await db.dispose()
        await client.aclose()
        logger.info("worker %s stopped", worker.consumer)


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.LOG_LEVEL.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # The image sets PROMETHEUS_MULTIPROC_DIR for every command; the worker is its only process
    # in the pod, so it owns the directory (without it, the first gauge fails to open its file).
    if settings.PROMETHEUS_MULTIPROC_DIR is not None:
        prepare_multiprocess_dir(settings.PROMETHEUS_MULTIPROC_DIR)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
