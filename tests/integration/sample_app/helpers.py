"""Helpers for the sample app's integration tests (settings, in-process app, users, metrics)."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from alembic import command
from alembic.config import Config
from fastapi import FastAPI

import app as app_package
from app.core.config import Settings
from app.main import create_app
from devkit.postgres import PostgresServer
from devkit.redis import RedisServer

SAMPLE_APP_DIR = Path(app_package.__file__).resolve().parents[1]
ALEMBIC_INI = SAMPLE_APP_DIR / "alembic.ini"
SECRET_KEY = "test-secret-key-that-is-long-enough-for-hs256"
PASSWORD = "correct-horse-battery"
_emails = itertools.count(1)


def migrate(server: PostgresServer, database: str) -> None:
    """Run ``alembic upgrade head`` on ``database`` (in-process, same env.py as the Job)."""
    config = Config(str(ALEMBIC_INI))
    config.attributes["url"] = server.url(database, scheme="postgresql+asyncpg")
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def create_migrated_database(server: PostgresServer, name: str) -> str:
    server.create_database(name)
    migrate(server, name)
    return name


def app_settings(
    primary: PostgresServer,
    database: str,
    redis: RedisServer,
    replica: PostgresServer | None = None,
    **overrides: Any,
) -> Settings:
    """Settings the way the operator provides them: URLs without passwords, passwords apart."""
    values: dict[str, Any] = {
        "DATABASE_URL": primary.url(database, password=False),
        "DATABASE_PASSWORD": primary.password,
        "DATABASE_READ_URL": replica.url(database, password=False) if replica is not None else None,
        "REDIS_URL": redis.url_for(password=False),
        "REDIS_PASSWORD": redis.password,
        "SECRET_KEY": SECRET_KEY,
        "RATE_LIMIT_REQUESTS": 100_000,
        "DB_POOL_SIZE": 5,
        "DB_MAX_OVERFLOW": 5,
        # The stampede and degraded-mode tests fire 50 and 30 requests at once into one process;
        # with the default queue (as long as the limit, the pool of 10) a burst past 20 is shed.
        # test_load_shedding sets its own limit and queue.
        "CONCURRENCY_QUEUE_SIZE": 64,
        "DB_CONNECT_TIMEOUT_SECONDS": 2.0,
        "REDIS_BREAKER_RESET_SECONDS": 0.5,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan running, and an async client talking to it in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


async def register(client: httpx.AsyncClient, email: str | None = None) -> dict[str, str]:
    """Sign up a fresh user and return bearer headers for it."""
    email = email or f"user{next(_emails)}@example.com"
    response = await client.post("/api/v1/users/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    token = await client.post("/api/v1/login/access-token", data={"username": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` in exposition ``text``."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        parsed = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
        if all(parsed.get(k) == v for k, v in labels.items()):
            total += float(value)
            found = True
    return total if found else 0.0
