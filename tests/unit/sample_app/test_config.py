"""Settings: the operator's env contract (URLs without passwords, passwords from env or files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.config import DatabaseSettings, Settings, to_asyncpg_url

pytestmark = pytest.mark.unit

SECRET = "s" * 40


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "DATABASE_READ_URL",
        "DATABASE_PASSWORD",
        "DATABASE_PASSWORD_FILE",
        "REDIS_URL",
        "REDIS_PASSWORD",
        "REDIS_PASSWORD_FILE",
        "SECRET_KEY",
        "SECRET_KEY_FILE",
        "ENVIRONMENT",
    ):
        monkeypatch.delenv(name, raising=False)


def test_operator_env_with_passwords_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db-primary:5432/app")
    monkeypatch.setenv("DATABASE_READ_URL", "postgresql://app@db-replicas:5432/app")
    monkeypatch.setenv("DATABASE_PASSWORD", "db-pw")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("REDIS_PASSWORD", "redis-pw")
    monkeypatch.setenv("SECRET_KEY", SECRET)
    settings = Settings()
    url = settings.database_url_async
    assert (url.drivername, url.username, url.password, url.host, url.database) == (
        "postgresql+asyncpg",
        "app",
        "db-pw",
        "db-primary",
        "app",
    )
    read = settings.database_read_url_async
    assert read is not None
    assert (read.host, read.password) == ("db-replicas", "db-pw")
    assert settings.redis_password == "redis-pw"


def test_passwords_from_mounted_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "db").write_text("from-file\n")
    (tmp_path / "redis").write_text("redis-file")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db/app")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(tmp_path / "db"))
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(tmp_path / "redis"))
    monkeypatch.setenv("SECRET_KEY", SECRET)
    settings = Settings()
    assert settings.database_url_async.password == "from-file"
    assert settings.redis_password == "redis-file"
    assert settings.database_read_url_async is None


def test_a_password_in_the_url_wins() -> None:
    assert to_asyncpg_url("postgresql://app:in-url@db/app", "from-env").password == "in-url"
    settings = Settings(DATABASE_URL="postgres://u@db/x", REDIS_URL="redis://:p@cache/0", SECRET_KEY=SECRET)
    assert settings.redis_password is None  # redis-py takes it from the URL


def test_unreadable_password_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="DATABASE_PASSWORD_FILE"):
        DatabaseSettings(DATABASE_URL="postgresql://u@db/x", DATABASE_PASSWORD_FILE=tmp_path / "missing")


@pytest.mark.parametrize("url", ["mysql://u@db/x", "redis://db/0", "sqlite:///x.db"])
def test_non_postgres_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="postgresql"):
        DatabaseSettings(DATABASE_URL=url)


def test_placeholder_and_short_secrets_are_refused() -> None:
    base = {"DATABASE_URL": "postgresql://u@db/x", "REDIS_URL": "redis://cache/0"}
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(**base)
    with pytest.raises(ValidationError, match="changethis"):
        Settings(**base, SECRET_KEY="changethis")
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(**base, SECRET_KEY="short")
    with pytest.raises(ValidationError, match="DATABASE_PASSWORD"):
        Settings(**base, SECRET_KEY=SECRET, DATABASE_PASSWORD="changethis")
    with pytest.warns(UserWarning, match="changethis"):
        Settings(**base, SECRET_KEY="changethis", ENVIRONMENT="local")


def test_redis_url_scheme_is_checked() -> None:
    with pytest.raises(ValidationError, match="REDIS_URL"):
        Settings(DATABASE_URL="postgresql://u@db/x", REDIS_URL="http://cache", SECRET_KEY=SECRET)
