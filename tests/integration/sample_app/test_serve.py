"""``python -m app.serve`` for real: 2 uvicorn workers, aggregated /metrics, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from devkit.process import Command, answers_ok, free_port
from tests.integration.sample_app.helpers import SAMPLE_APP_DIR, metric_value, register

pytestmark = pytest.mark.integration


def operator_env(settings: Settings, port: int, multiproc_dir: Path) -> dict[str, str]:
    """The environment the operator gives the API container."""
    return {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": settings.DATABASE_URL,
        "DATABASE_READ_URL": settings.DATABASE_READ_URL or "",
        "DATABASE_PASSWORD": settings.database_password or "",
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_PASSWORD": settings.redis_password or "",
        "SECRET_KEY": settings.secret_key,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
        "RATE_LIMIT_REQUESTS": "100000",
    }


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[tuple[Command, str]]:
    port = free_port()
    stale = tmp_path / "prom"
    stale.mkdir()
    (stale / "counter_999999.db").write_bytes(b"stale")  # a previous run's leftovers must go
    base = f"http://127.0.0.1:{port}"
    # Its own process group (the kit's launchers all start one): uvicorn's workers are killed with it.
    app = Command(
        [sys.executable, "-m", "app.serve"],
        log_path=tmp_path / "serve.log",
        ready=lambda: answers_ok(f"{base}/readyz"),
        env=operator_env(settings, port, stale),
        cwd=SAMPLE_APP_DIR,
        name="python -m app.serve",
    )
    app.launch(timeout=30)
    yield app, base
    app.kill()


async def test_metrics_aggregate_both_workers(server: tuple[Command, str]) -> None:
    _, base = server
    pids = set()
    async with httpx.AsyncClient(base_url=base) as client:
        headers = await register(client)
        task_id = (await client.post("/api/v1/tasks", json={"title": "m"}, headers=headers)).json()["id"]
        n = 60
        # New connections spread requests over both worker processes.
        for _ in range(n):
            async with httpx.AsyncClient(base_url=base) as fresh:
                response = await fresh.get(f"/api/v1/tasks/{task_id}")
                assert response.status_code == 200
        for _ in range(10):
            async with httpx.AsyncClient(base_url=base) as fresh:
                pids.add((await fresh.get("/metrics")).text.count("\n"))
        text = (await client.get("/metrics")).text
    route = "/api/v1/tasks/{task_id}"
    assert metric_value(text, "http_requests_total", method="GET", route=route, status="200") == n
    assert metric_value(text, "http_request_duration_seconds_count", method="GET", route=route) == n
    assert metric_value(text, "http_request_duration_seconds_bucket", route=route, le="+Inf") == n
    assert f'route="/api/v1/tasks/{task_id}"' not in text  # templates, not raw paths
    assert (
        metric_value(text, "cache_requests_total", result="hit")
        + metric_value(text, "cache_requests_total", result="miss")
        == n
    )
    assert "task_queue_depth" in text
    assert 'db_pool_connections_max{pool="primary"} 30.0' in text  # 2 workers x (10 + 5)
    assert "counter_999999" not in text


async def test_sigterm_finishes_in_flight_requests_then_exits(
    server: tuple[Command, str],
) -> None:
    app, base = server
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        headers = await register(client)
        in_flight = [
            asyncio.create_task(
                client.post("/api/v1/users/signup", json={"email": f"s{i}@x.io", "password": "p" * 12})
            )
            for i in range(4)
        ]  # Argon2 hashing makes these take a while
        await asyncio.sleep(0.05)
        os.kill(app.pid, signal.SIGTERM)  # the uvicorn supervisor only, as the kubelet does
        responses = await asyncio.gather(*in_flight)
        assert [r.status_code for r in responses] == [201] * 4
        returncode = await asyncio.to_thread(app.wait_exit, 30)
        output = app.log_path.read_text()
        assert returncode == 0, output
        assert "pools released" in output or "Finished server process" in output
        with pytest.raises(httpx.ConnectError):
            await client.get("/healthz", headers=headers)
