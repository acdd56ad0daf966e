"""Settings, read from the environment the operator injects (12-factor).

The operator sets ``DATABASE_URL`` (primary), ``DATABASE_READ_URL`` (read replicas Service) and
``REDIS_URL`` without passwords, and passes the passwords separately from Secrets, either as
``DATABASE_PASSWORD`` / ``REDIS_PASSWORD`` or as mounted files named by
``DATABASE_PASSWORD_FILE`` / ``REDIS_PASSWORD_FILE``. A password already present in a URL wins.

Each process builds exactly one settings object: the migrations Job builds a
:class:`DatabaseSettings`; the API, its supervisor and the worker build a :class:`Settings`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

# Every API route is declared under this prefix (not added at include time), so a route's own
# path is its full template: that is what labels the HTTP metrics.
API_V1_PREFIX = "/api/v1"

PLACEHOLDER_SECRETS = frozenset({"changethis", "changeme", "secret", "password"})

_POSTGRES_DRIVERS = frozenset(
    {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2"}
)


def read_secret(value: SecretStr | None, file: Path | None, name: str) -> str | None:
    """The secret from the env var, else from the mounted file (trailing newline dropped)."""
    if value is not None:
        return value.get_secret_value()
    if file is None:
        return None
    try:
        return file.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"{name}_FILE={file} cannot be read: {exc.strerror}") from exc


def to_asyncpg_url(raw: str, password: str | None) -> URL:
    """``postgresql://user@host/db`` -> ``postgresql+asyncpg://user:password@host/db``.

    The password is added only when the URL has none.
    """
    url = make_url(raw)
    if url.drivername not in _POSTGRES_DRIVERS:
        raise ValueError(f"expected a postgresql:// URL, got scheme {url.drivername!r}")
    url = url.set(drivername="postgresql+asyncpg")
    if url.password is None and password is not None:
        url = url.set(password=password)
    return url


class DatabaseSettings(BaseSettings):
    """What the migrations Job needs: the primary's URL and password, and the pool sizing."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True, env_ignore_empty=True)

    DATABASE_URL: str
    DATABASE_READ_URL: str | None = None
    DATABASE_PASSWORD: SecretStr | None = None
    DATABASE_PASSWORD_FILE: Path | None = None

    # Pool sizing per process. With N workers per pod and P pods the primary sees up to
    # N * P * (DB_POOL_SIZE + DB_MAX_OVERFLOW) connections: keep that under max_connections.
    DB_POOL_SIZE: int = Field(default=10, ge=1, le=100)
    DB_MAX_OVERFLOW: int = Field(default=5, ge=0, le=100)
    DB_POOL_TIMEOUT_SECONDS: float = Field(default=5.0, gt=0)
    DB_POOL_RECYCLE_SECONDS: int = Field(default=1800, ge=1)
    DB_POOL_PRE_PING: bool = True
    DB_CONNECT_TIMEOUT_SECONDS: float = Field(default=3.0, gt=0)
    DB_STATEMENT_TIMEOUT_MS: int = Field(default=5000, ge=0)
    # The migrations Job starts as soon as the primary is Ready, but its Service may route to
    # it a moment later (endpoints, kube-proxy): the migrations wait this long for a connection.
    DB_WAIT_SECONDS: float = Field(default=60.0, ge=0, le=3600)

    @property
    def database_password(self) -> str | None:
        return read_secret(self.DATABASE_PASSWORD, self.DATABASE_PASSWORD_FILE, "DATABASE_PASSWORD")

    @property
    def database_url_async(self) -> URL:
        return to_asyncpg_url(self.DATABASE_URL, self.database_password)

    @property
    def database_read_url_async(self) -> URL | None:
        """The replicas' URL; they share the primary's roles, hence its password."""
        if self.DATABASE_READ_URL is None:
            return None
        return to_asyncpg_url(self.DATABASE_READ_URL, self.database_password)

    @model_validator(mode="after")
    def _check_database(self) -> Self:
        self.database_url_async  # noqa: B018 - raises on a bad URL or unreadable password file
        self.database_read_url_async  # noqa: B018
        return self


class Settings(DatabaseSettings):
    """Everything the API process, its supervisor and the worker read."""

    ENVIRONMENT: Literal["local", "staging", "production"] = "production"
    PROJECT_NAME: str = "sbo-sample-app"
    LOG_LEVEL: Literal["debug", "info", "warning", "error"] = "info"

    # Serving (python -m app.serve)
    HOST: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    PORT: int = Field(default=8000, ge=1, le=65535)
    WEB_CONCURRENCY: int = Field(default=2, ge=1, le=64)
    GRACEFUL_SHUTDOWN_SECONDS: int = Field(default=20, ge=0)
    ACCESS_LOG: bool = False
    PROMETHEUS_MULTIPROC_DIR: Path | None = None

    # Redis
    REDIS_URL: str
    REDIS_PASSWORD: SecretStr | None = None
    REDIS_PASSWORD_FILE: Path | None = None
    REDIS_MAX_CONNECTIONS: int = Field(default=64, ge=1)
    REDIS_SOCKET_TIMEOUT_SECONDS: float = Field(default=0.5, gt=0)
    # Circuit breaker: after this many consecutive failures Redis is bypassed for a while.
    REDIS_BREAKER_FAILURES: int = Field(default=3, ge=1)
    REDIS_BREAKER_RESET_SECONDS: float = Field(default=5.0, gt=0)

    # Auth
    SECRET_KEY: SecretStr | None = None
    SECRET_KEY_FILE: Path | None = None
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=30, ge=1)

    # Cache-aside
    CACHE_ENABLED: bool = True
    CACHE_TTL_SECONDS: int = Field(default=120, ge=1)
    CACHE_FILL_LOCK_SECONDS: float = Field(default=5.0, gt=0)
    CACHE_FILL_WAIT_SECONDS: float = Field(default=2.0, ge=0)

    # Read-your-writes: how long a write's consistency token (and its per-key fence) lives.
    READ_YOUR_WRITES_SECONDS: int = Field(default=60, ge=1)

    # Load shedding, per process (each uvicorn worker). At most CONCURRENCY_LIMIT requests at work;
    # past it up to CONCURRENCY_QUEUE_SIZE wait (FIFO) for a slot, each for at most
    # CONCURRENCY_QUEUE_TIMEOUT_SECONDS; the rest, and those that wait too long, are answered
    # 503 + Retry-After. Probes and /metrics are never shed.
    # CONCURRENCY_LIMIT unset: the pool's size (DB_POOL_SIZE + DB_MAX_OVERFLOW), the work the
    # process can do at once; 0: no limit. CONCURRENCY_QUEUE_SIZE unset: the limit.
    CONCURRENCY_LIMIT: int | None = Field(default=None, ge=0, le=10_000)
    CONCURRENCY_QUEUE_SIZE: int | None = Field(default=None, ge=0, le=10_000)
    CONCURRENCY_QUEUE_TIMEOUT_SECONDS: float = Field(default=0.5, gt=0, le=60)
    CONCURRENCY_LIMIT_RETRY_AFTER_SECONDS: int = Field(default=1, ge=1, le=3600)

    # Rate limiting (fixed window per client address)
    RATE_LIMIT_ENABLED: bool = True
    RATE_LIMIT_REQUESTS: int = Field(default=600, ge=1)
    RATE_LIMIT_WINDOW_SECONDS: int = Field(default=60, ge=1)

    # Task queue (Redis Stream + consumer group)
    TASK_STREAM: str = "sbo:tasks"
    TASK_GROUP: str = "task-workers"
    TASK_STREAM_MAXLEN: int = Field(default=100_000, ge=1000)
    WORKER_CONSUMER_NAME: str | None = None
    WORKER_BATCH_SIZE: int = Field(default=16, ge=1)
    WORKER_BLOCK_MS: int = Field(default=1000, ge=10)
    WORKER_CLAIM_IDLE_MS: int = Field(default=30_000, ge=1)
    WORKER_CLAIM_INTERVAL_SECONDS: float = Field(default=5.0, gt=0)
    WORKER_SWEEP_INTERVAL_SECONDS: float = Field(default=10.0, gt=0)
    WORKER_SWEEP_AFTER_SECONDS: int = Field(default=300, ge=1)
    WORKER_METRICS_PORT: int | None = Field(default=None, ge=1, le=65535)

    @property
    def redis_password(self) -> str | None:
        """The password in REDIS_URL if any, else REDIS_PASSWORD(_FILE)."""
        if urlsplit(self.REDIS_URL).password:
            return None  # redis-py takes it from the URL
        return read_secret(self.REDIS_PASSWORD, self.REDIS_PASSWORD_FILE, "REDIS_PASSWORD")

    @property
    def concurrency_limit(self) -> int:
        """Requests at work at once per process: CONCURRENCY_LIMIT, else the pool's size; 0: none."""
        if self.CONCURRENCY_LIMIT is not None:
            return self.CONCURRENCY_LIMIT
        return self.DB_POOL_SIZE + self.DB_MAX_OVERFLOW

    @property
    def concurrency_queue_size(self) -> int:
        """Requests that may wait for a slot per process: CONCURRENCY_QUEUE_SIZE, else the limit."""
        if self.CONCURRENCY_QUEUE_SIZE is not None:
            return self.CONCURRENCY_QUEUE_SIZE
        return self.concurrency_limit

    @property
    def secret_key(self) -> str:
        secret = read_secret(self.SECRET_KEY, self.SECRET_KEY_FILE, "SECRET_KEY")
        if secret is None:
            raise ValueError("SECRET_KEY (or SECRET_KEY_FILE) must be set: it signs the access tokens")
        return secret

    def _check_default_secret(self, name: str, value: str | None) -> None:
        if value is not None and value.lower() in PLACEHOLDER_SECRETS:
            message = f'The value of {name} is "{value}", for security, please change it.'
            if self.ENVIRONMENT == "local":
                warnings.warn(message, stacklevel=1)
            else:
                raise ValueError(message)

    @model_validator(mode="after")
    def _enforce_non_default_secrets(self) -> Self:
        secret = self.secret_key
        self._check_default_secret("SECRET_KEY", secret)
        if self.ENVIRONMENT != "local" and len(secret) < 32:
            raise ValueError("SECRET_KEY must be at least 32 characters outside ENVIRONMENT=local")
        self._check_default_secret("DATABASE_PASSWORD", self.database_password)
        self._check_default_secret("REDIS_PASSWORD", self.redis_password)
        if urlsplit(self.REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("REDIS_URL must be a redis://, rediss:// or unix:// URL")
        return self
