"""The task worker: processing, a crash before XACK, redelivery, no duplicates, the outbox sweep."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from app.core.db import Database
from app.core.metrics import Metrics
from app.core.redis_client import create_redis_client
from app.worker import TaskWorker
from devkit.postgres import PostgresServer
from devkit.process import free_port, wait_until_async
from devkit.redis import RedisServer
from tests.integration.sample_app.helpers import SAMPLE_APP_DIR, metric_value, running_app

pytestmark = pytest.mark.integration

WorkerFactory = Callable[[str], TaskWorker]


@asynccontextmanager
async def worker_pool(settings: Settings) -> AsyncIterator[WorkerFactory]:
    """Build TaskWorkers (one per consumer name) sharing nothing but the servers."""
    resources: list[tuple[Database, Any]] = []

    def make(consumer: str) -> TaskWorker:
        metrics = Metrics()
        db = Database(settings, metrics, application_name=f"test-{consumer}")
        client = create_redis_client(settings, socket_timeout=5)
        resources.append((db, client))
        return TaskWorker(settings, db, client, metrics, consumer)

    try:
        yield make
    finally:
        for db, client in resources:
            await db.dispose()
            await client.aclose()


async def create_tasks(client: httpx.AsyncClient, headers: dict[str, str], n: int) -> list[int]:
    ids = []
    for i in range(n):
        response = await client.post(
            "/api/v1/tasks", json={"title": f"job {i}", "description": "do it"}, headers=headers
        )
        assert response.status_code == 201
        ids.append(response.json()["id"])
    return ids


def task_rows(
    primary: PostgresServer, database: str, ids: list[int]
) -> dict[int, tuple[str, str | None, datetime]]:
    rows = primary.execute(
        "SELECT id, status, result, processed_at FROM tasks WHERE id = ANY(%s)", (ids,), database=database
    )
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


async def pending_count(worker: TaskWorker) -> int:
    summary = await worker.redis.xpending(worker.stream, worker.group)
    return int(summary["pending"])


async def drain(worker: TaskWorker) -> list[str]:
    """Read and handle everything waiting on the stream."""
    outcomes = []
    while entries := await worker.read_new(block_ms=50):
        outcomes += [await worker.handle(e) for e in entries]
    return outcomes


async def test_the_worker_processes_tasks(
    settings: Settings,
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    postgres_primary: PostgresServer,
    database: str,
) -> None:
    async with worker_pool(settings) as make:
        worker = make("w1")
        await worker.ensure_group()
        await drain(worker)  # whatever other tests left
        ids = await create_tasks(client, auth_headers, 3)
        outcomes = await drain(worker)
        assert outcomes.count("processed") == 3
        assert await pending_count(worker) == 0
    rows = task_rows(postgres_primary, database, ids)
    assert {status for status, _, _ in rows.values()} == {"completed"}
    assert all(result and result.startswith("4 words, sha256 ") for _, result, _ in rows.values())
    # The API shows the result at once: the worker invalidated the cached "pending" copy.
    for task_id in ids:
        body = (await client.get(f"/api/v1/tasks/{task_id}")).json()
        assert body["status"] == "completed"
        assert body["processed_at"] is not None


async def test_a_crash_before_xack_is_redelivered_without_duplicates(
    settings: Settings,
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    postgres_primary: PostgresServer,
    database: str,
) -> None:
    async with worker_pool(settings) as make:
        crashing, survivor = make("crashing"), make("survivor")
        await crashing.ensure_group()
        await drain(survivor)
        [task_id] = await create_tasks(client, auth_headers, 1)

        [entry] = await crashing.read_new(block_ms=100)
        assert await crashing.process(entry) == "processed"  # committed ... then the process dies
        assert await pending_count(crashing) == 1
        first = task_rows(postgres_primary, database, [task_id])[task_id]
        assert first[0] == "completed"

        # A live consumer's entries are not stolen before they have been idle long enough.
        assert await survivor.claim_stale(min_idle_ms=60_000) == []
        claimed = await survivor.claim_stale(min_idle_ms=0)
        assert [e.entry_id for e in claimed] == [entry.entry_id]
        assert await survivor.handle(claimed[0]) == "duplicate"
        assert await pending_count(survivor) == 0

    # Processed exactly once: the redelivery changed nothing.
    assert task_rows(postgres_primary, database, [task_id])[task_id] == first
    assert metric_value(generate(survivor), "worker_tasks_total", outcome="duplicate") == 1
    assert metric_value(generate(survivor), "worker_tasks_total", outcome="processed") == 0


async def test_a_crash_before_processing_is_redelivered_and_processed(
    settings: Settings,
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    postgres_primary: PostgresServer,
    database: str,
) -> None:
    async with worker_pool(settings) as make:
        crashing, survivor = make("crashing-early"), make("survivor-2")
        await crashing.ensure_group()
        await drain(survivor)
        ids = await create_tasks(client, auth_headers, 2)
        entries = await crashing.read_new(block_ms=100)
        assert len(entries) == 2  # delivered to a consumer that dies before doing anything
        claimed = await survivor.claim_stale(min_idle_ms=0)
        assert sorted(await asyncio.gather(*(survivor.handle(e) for e in claimed))) == [
            "processed",
            "processed",
        ]
        assert await pending_count(survivor) == 0
    assert {s for s, _, _ in task_rows(postgres_primary, database, ids).values()} == {"completed"}


async def test_tasks_created_while_redis_is_down_are_swept_onto_the_stream(
    settings: Settings,
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    postgres_primary: PostgresServer,
    database: str,
) -> None:
    no_redis = settings.model_copy(update={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    async with running_app(no_redis) as (_, offline):
        created = await offline.post(
            "/api/v1/tasks", json={"title": "written while redis is down"}, headers=auth_headers
        )
        assert created.status_code == 201
        task_id = created.json()["id"]
    [(enqueued_at,)] = postgres_primary.execute(
        "SELECT enqueued_at FROM tasks WHERE id = %s", (task_id,), database=database
    )
    assert enqueued_at is None

    async with worker_pool(settings) as make:
        worker = make("sweeper")
        await worker.ensure_group()
        await drain(worker)
        assert await worker.sweep_unqueued() >= 1
        assert "processed" in await drain(worker)
    assert task_rows(postgres_primary, database, [task_id])[task_id][0] == "completed"


@pytest.mark.parametrize("multiprocess_dir", [False, True], ids=["plain", "image-env"])
async def test_python_m_app_worker_runs_and_stops_on_sigterm(
    settings: Settings,
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    postgres_primary: PostgresServer,
    redis_server: RedisServer,
    database: str,
    multiprocess_dir: bool,
    tmp_path: Path,
) -> None:
    # "image-env": the image sets PROMETHEUS_MULTIPROC_DIR for every command, to a directory that
    # does not exist yet (the worker crash-looped on the real node until it made it).
    extra = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")} if multiprocess_dir else {}
    env = {
        **extra,
        "PATH": os.environ["PATH"],
        "DATABASE_URL": postgres_primary.url(database, password=False),
        "DATABASE_PASSWORD": postgres_primary.password,
        "REDIS_URL": redis_server.url_for(password=False),
        "REDIS_PASSWORD": redis_server.password or "",
        "SECRET_KEY": settings.secret_key,
        "WORKER_BLOCK_MS": "200",
        "WORKER_CLAIM_IDLE_MS": "1000",
        "WORKER_CLAIM_INTERVAL_SECONDS": "0.5",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.worker",
        cwd=SAMPLE_APP_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        ids = await create_tasks(client, auth_headers, 5)

        async def all_completed() -> bool:
            return {s for s, _, _ in task_rows(postgres_primary, database, ids).values()} == {"completed"}

        await wait_until_async(all_completed, 20, "the worker process to complete the tasks")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15):
                raw, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            raw, _ = await proc.communicate()
    output = raw.decode()
    assert proc.returncode == 0, output
    assert "stopped" in output


def generate(worker: TaskWorker) -> str:
    from prometheus_client import generate_latest

    return generate_latest(worker.metrics.registry).decode()
