"""Fuzz every operation of the OpenAPI schema with schemathesis against a real server: no 5xx."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from app.core.config import Settings
from devkit.process import Command, answers_ok, free_port
from tests.integration.sample_app.helpers import PASSWORD, SAMPLE_APP_DIR

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served_app(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``python -m app.serve`` (1 worker) on loopback, and a bearer token for a real user."""
    port = free_port()
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": settings.DATABASE_URL,
        "DATABASE_READ_URL": settings.DATABASE_READ_URL or "",
        "DATABASE_PASSWORD": settings.database_password or "",
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_PASSWORD": settings.redis_password or "",
        "SECRET_KEY": settings.secret_key,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "RATE_LIMIT_REQUESTS": "1000000",
    }
    base = f"http://127.0.0.1:{port}"
    ready = f"{base}/readyz"
    server = Command(
        [sys.executable, "-m", "app.serve"],
        log_path=log,
        ready=lambda: answers_ok(ready),
        env=env,
        cwd=SAMPLE_APP_DIR,
    )
    with server:
        server.launch(timeout=30)
        email = "fuzzer@example.com"
        httpx.post(f"{base}/api/v1/users/signup", json={"email": email, "password": PASSWORD})
        token = httpx.post(
            f"{base}/api/v1/login/access-token", data={"username": email, "password": PASSWORD}
        )
        yield base, token.json()["access_token"]
    server_log = Path(log).read_text()
    assert "Traceback" not in server_log, server_log


def test_no_server_errors(served_app: tuple[str, str]) -> None:
    """Positive and negative examples for every operation; the only check is "no 5xx".

    (Driven through hypothesis directly: schemathesis' pytest plugin does not support pytest 9.)
    """
    base, token = served_app
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=base,
                headers={"Authorization": f"Bearer {token}"},
                checks=[not_a_server_error],
                timeout=30,
            )

        try:
            exercise()
        except Exception as exc:
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:2000]
    assert operations >= 12
    assert failures == {}
