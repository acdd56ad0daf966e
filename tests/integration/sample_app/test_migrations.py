"""Migrations: ``alembic upgrade head`` as the operator's Job runs it, and no drift from the models."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from app.models import Base
from devkit.postgres import PostgresServer
from tests.integration.sample_app.helpers import SAMPLE_APP_DIR

pytestmark = pytest.mark.integration


def alembic(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the alembic CLI from the app's directory (the image's workdir) with only ``env``."""
    alembic_bin = Path(sys.executable).parent / "alembic"
    return subprocess.run(
        [str(alembic_bin), *args],
        cwd=SAMPLE_APP_DIR,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_upgrade_head_with_only_the_operator_env(postgres_primary: PostgresServer, tmp_path: Path) -> None:
    postgres_primary.create_database("migrations_job")
    password_file = tmp_path / "password"
    password_file.write_text(postgres_primary.password + "\n")  # as a mounted Secret
    env = {
        "DATABASE_URL": postgres_primary.url("migrations_job", password=False),
        "DATABASE_PASSWORD_FILE": str(password_file),
    }
    upgraded = alembic(["upgrade", "head"], env)
    assert upgraded.returncode == 0, upgraded.stderr
    tables = postgres_primary.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", database="migrations_job"
    )
    assert [t for (t,) in tables] == ["alembic_version", "orders", "tasks", "users"]
    again = alembic(["upgrade", "head"], env)  # idempotent: the Job may run on every rollout
    assert again.returncode == 0, again.stderr
    current = alembic(["current"], env)
    assert "0001 (head)" in current.stdout

    # No drift: the migrations produce exactly what the models declare.
    engine = create_engine(postgres_primary.url("migrations_job", scheme="postgresql+psycopg"))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []

    down = alembic(["downgrade", "base"], {**env, "DATABASE_PASSWORD": postgres_primary.password})
    assert down.returncode == 0, down.stderr


def test_upgrade_fails_clearly_without_a_password(postgres_primary: PostgresServer) -> None:
    result = alembic(["upgrade", "head"], {"DATABASE_URL": postgres_primary.url("postgres", password=False)})
    assert result.returncode != 0
    assert "password" in result.stderr.lower()


def test_upgrade_waits_for_a_database_that_is_not_reachable_yet(
    make_postgres: Callable[[], PostgresServer],
) -> None:
    """The migrations Job may start before the primary's Service routes to it: it retries, then runs."""
    server = make_postgres()
    server.create_database("late")
    env = {
        "DATABASE_URL": server.url("late", password=False),
        "DATABASE_PASSWORD": server.password,
        "DB_WAIT_SECONDS": "60",
    }
    server.stop()
    alembic_bin = Path(sys.executable).parent / "alembic"
    job = subprocess.Popen(
        [str(alembic_bin), "upgrade", "head"],
        cwd=SAMPLE_APP_DIR,
        env={"PATH": os.environ["PATH"], **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2)  # refused meanwhile: nothing listens on the port
        assert job.poll() is None, job.communicate()
        server.start_again()
        _, stderr = job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode == 0, stderr
    assert "database not reachable yet (ConnectionRefusedError)" in stderr
    assert server.execute("SELECT version_num FROM alembic_version", database="late") == [("0001",)]


def test_upgrade_gives_up_after_db_wait_seconds(make_postgres: Callable[[], PostgresServer]) -> None:
    server = make_postgres()
    env = {"DATABASE_URL": server.url("postgres", password=False), "DATABASE_PASSWORD": server.password}
    server.stop()
    started = time.monotonic()
    failed = alembic(["upgrade", "head"], {**env, "DB_WAIT_SECONDS": "1"})
    assert failed.returncode != 0
    assert "ConnectionRefusedError" in failed.stderr or "Connect call failed" in failed.stderr
    assert time.monotonic() - started < 30


def test_upgrade_fails_at_once_on_a_wrong_password(postgres_primary: PostgresServer) -> None:
    """Only "not reachable" is retried: a refused login is not a reason to wait a minute."""
    env = {
        "DATABASE_URL": postgres_primary.url("postgres", password=False),
        "DATABASE_PASSWORD": "not-the-password",
        "DB_WAIT_SECONDS": "60",
    }
    started = time.monotonic()
    failed = alembic(["upgrade", "head"], env)
    assert failed.returncode != 0
    assert "password authentication failed" in failed.stderr
    assert "not reachable yet" not in failed.stderr
    assert time.monotonic() - started < 30
