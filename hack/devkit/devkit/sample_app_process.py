"""The real sample app on loopback, with its real servers, and a paced load to drive it.

Used by the autoscaling e2e test, ``make demo`` and ``make bench-autoscale``::

    with SampleAppStack.start(workdir) as stack:       # Postgres, Redis, migrations, the app
        ids = seed_tasks(stack.app.url, count=20)
        with PacedLoad(stack.app.url, task_paths(ids), max_seconds=120) as load:
            load.set_rate(90)                          # requests per second, open loop
            ...
            load.set_rate(0)
        load.stats                                     # requests, errors, dropped

The app runs as in its image: ``python -m app.serve`` (uvicorn, ``WEB_CONCURRENCY`` workers,
multiprocess metrics), with the environment the operator injects (URLs without passwords,
passwords apart), after ``alembic upgrade head``. Every process is started in its own process
group and dies with the process that started it. A missing server binary raises
:class:`ServerError` (tests fail, never skip).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from httpx import URL

from devkit.paths import SAMPLE_APP
from devkit.postgres import PostgresServer, start_replica_of
from devkit.process import LOOPBACK, ManagedProcess, ServerError, answers_ok, free_port
from devkit.redis import RedisServer

__all__ = [
    "LoadStats",
    "PacedLoad",
    "SampleAppProcess",
    "SampleAppStack",
    "ServerError",
    "run_migrations",
    "seed_tasks",
    "task_paths",
]

DATABASE = "app"
SECRET_KEY = "sample-app-secret-key-for-local-runs-0123456789"
USER_PASSWORD = "sample-app-user-password"
# The rate limiter keys on the client address; every request here comes from 127.0.0.1.
UNLIMITED = "100000000"
# The real node's Service range (hack/real-node.sh): the host reaches ClusterIPs through kube-proxy.
SERVICE_RANGE = ipaddress.ip_network("198.19.0.0/16")

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def run_migrations(primary: PostgresServer, database: str = DATABASE) -> None:
    """``alembic upgrade head`` from the app's directory, as the migrations Job runs it."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": primary.url(database, password=False),
        "DATABASE_PASSWORD": primary.password,
    }
    alembic = Path(sys.executable).parent / "alembic"
    done = subprocess.run(
        [str(alembic), "upgrade", "head"],
        cwd=SAMPLE_APP,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise ServerError(f"alembic upgrade head failed:\n{done.stdout}{done.stderr}")


class SampleAppProcess(ManagedProcess):
    """``python -m app.serve`` on a free port on 127.0.0.1, with the environment the operator injects.

    Ready once ``/readyz`` answers 200; stopping sends SIGTERM to the uvicorn supervisor and its
    workers (one process group).
    """

    def __init__(self, *, port: int, log_path: Path, env: Mapping[str, str]) -> None:
        super().__init__(name=f"the sample app on port {port}", log_path=log_path)
        self.port = port
        self.env = dict(env)

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        primary: PostgresServer,
        redis: RedisServer,
        replica: PostgresServer | None = None,
        database: str = DATABASE,
        workers: int = 2,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        timeout: float = 60.0,
    ) -> SampleAppProcess:
        """Start the app against already-migrated servers; returns once ``/readyz`` answers 200.

        ``env`` overrides settings (e.g. ``CACHE_ENABLED``); ``name`` names the log file.
        """
        port = free_port()
        multiproc = Path(tempfile.mkdtemp(prefix="prom-multiproc-", dir=workdir))
        full_env = {
            "PATH": os.environ.get("PATH", ""),
            "DATABASE_URL": primary.url(database, password=False),
            "DATABASE_PASSWORD": primary.password,
            "REDIS_URL": redis.url_for(password=False),
            "SECRET_KEY": SECRET_KEY,
            "HOST": LOOPBACK,
            "PORT": str(port),
            "WEB_CONCURRENCY": str(workers),
            "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
            "RATE_LIMIT_REQUESTS": UNLIMITED,
            "LOG_LEVEL": "warning",
            **({"DATABASE_READ_URL": replica.url(database, password=False)} if replica else {}),
            **({"REDIS_PASSWORD": redis.password} if redis.password else {}),
            **(env or {}),
        }
        app = cls(port=port, log_path=workdir / f"sample-app-{name or port}.log", env=full_env)
        app.launch(timeout)
        return app

    def command(self) -> list[str]:
        return [sys.executable, "-m", "app.serve"]

    def environment(self) -> dict[str, str]:
        return self.env

    def working_dir(self) -> Path:
        return SAMPLE_APP

    def is_ready(self) -> bool:
        return answers_ok(f"{self.url}/readyz", timeout=2)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, for a Prometheus scrape config."""
        return f"{LOOPBACK}:{self.port}"


@dataclass
class SampleAppStack:
    """A PostgreSQL primary (and optionally a streaming replica), Redis, and the app on top."""

    workdir: Path
    primary: PostgresServer
    redis: RedisServer
    app: SampleAppProcess
    replica: PostgresServer | None = None
    _own_workdir: bool = False

    @classmethod
    def start(
        cls,
        workdir: Path | None = None,
        *,
        with_replica: bool = False,
        workers: int = 2,
        env: Mapping[str, str] | None = None,
        progress: Progress = _quiet,
    ) -> SampleAppStack:
        """Start everything; on any failure, stop whatever was already started."""
        own = workdir is None
        base = Path(tempfile.mkdtemp(prefix="sbo-sample-app-")) if workdir is None else workdir
        started: list[ManagedProcess] = []
        try:
            progress("starting PostgreSQL on 127.0.0.1")
            primary = PostgresServer.start(base)
            started.append(primary)
            replica = None
            if with_replica:
                progress("starting a streaming replica")
                replica = start_replica_of(primary, base)
                started.append(replica)
            progress("starting Redis")
            redis = RedisServer.start(base, password=f"redis-{secrets.token_hex(8)}")
            started.append(redis)
            progress("migrating the database (alembic upgrade head)")
            primary.create_database(DATABASE)
            run_migrations(primary)
            progress(f"starting the sample app (python -m app.serve, {workers} workers)")
            app = SampleAppProcess.start(
                base, primary=primary, redis=redis, replica=replica, workers=workers, env=env
            )
        except BaseException:
            for server in reversed(started):
                server.destroy()
            if own:
                shutil.rmtree(base, ignore_errors=True)
            raise
        return cls(workdir=base, primary=primary, redis=redis, app=app, replica=replica, _own_workdir=own)

    def destroy(self) -> None:
        """Stop the app, then the servers (replica before primary); remove a temporary workdir."""
        for server in (self.app, self.redis, self.replica, self.primary):
            if server is not None:
                server.destroy()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SampleAppStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()


def seed_tasks(base_url: str, count: int = 20, *, local_address: str | None = None) -> list[int]:
    """Sign up a user and create ``count`` tasks through the API (``count`` + 2 requests, the
    signup and the login first); returns their ids.

    ``local_address``: the address to connect from (the real node's bridge, for a ClusterIP).
    """
    email = f"load-{secrets.token_hex(4)}@example.com"
    transport = httpx.HTTPTransport(local_address=local_address)
    with httpx.Client(base_url=base_url, timeout=10, trust_env=False, transport=transport) as client:
        client.post(
            "/api/v1/users/signup", json={"email": email, "password": USER_PASSWORD}
        ).raise_for_status()
        token = client.post("/api/v1/login/access-token", data={"username": email, "password": USER_PASSWORD})
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        ids: list[int] = []
        for number in range(count):
            created = client.post(
                "/api/v1/tasks", json={"title": f"task {number}", "description": "seeded"}, headers=headers
            )
            created.raise_for_status()
            ids.append(int(created.json()["id"]))
    return ids


def task_paths(ids: Sequence[int]) -> list[str]:
    """A read mix: each task by id (cache-aside over Redis), then a page of the list (Postgres)."""
    return [*(f"/api/v1/tasks/{task_id}" for task_id in ids), "/api/v1/tasks?limit=10"]


@dataclass
class LoadStats:
    """What a :class:`PacedLoad` did so far."""

    requests: int = 0  # answered, whatever the status
    errors: int = 0  # non-2xx answers and transport errors
    dropped: int = 0  # not sent: too many requests were already in flight
    per_status: dict[str, int] = field(default_factory=dict)


def _is_local_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address in SERVICE_RANGE


class PacedLoad:
    """An open-loop HTTP load at a settable rate, in a background thread (asyncio + httpx).

    Requests start on a fixed schedule (``1 / rate`` apart) whatever the latency, as real users
    arrive. Bounded: it stops by itself after ``max_seconds``, and never has more than
    ``max_in_flight`` requests open (extra ones are counted as dropped, not queued). It goes to
    loopback or to a ClusterIP of the real node's Service range only.

    ``keep_alive=False`` opens a connection per request, as many independent users would: behind
    a Service, kube-proxy picks a pod per connection, so kept-alive connections would pin the
    load to the pods that were there first. ``local_address``: the address to connect from (the
    real node's bridge, so that the pods' answers come back over it).
    """

    def __init__(
        self,
        base_url: str,
        paths: Sequence[str],
        *,
        max_seconds: float,
        max_in_flight: int = 64,
        timeout: float = 5.0,
        keep_alive: bool = True,
        local_address: str | None = None,
    ) -> None:
        if not _is_local_address(URL(base_url).host):
            raise ValueError(f"load goes to loopback or the Service range {SERVICE_RANGE}, not {base_url}")
        if not paths:
            raise ValueError("no paths to request")
        self.base_url = base_url
        self.paths = list(paths)
        self.max_seconds = max_seconds
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.keep_alive = keep_alive
        self.local_address = local_address
        self._rate = 0.0
        self._stats = LoadStats()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name="paced-load", daemon=True)

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, requests_per_second: float) -> None:
        self._rate = max(0.0, float(requests_per_second))

    @property
    def stats(self) -> LoadStats:
        with self._lock:
            return LoadStats(
                requests=self._stats.requests,
                errors=self._stats.errors,
                dropped=self._stats.dropped,
                per_status=dict(self._stats.per_status),
            )

    def start(self) -> PacedLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout + 10)

    def __enter__(self) -> PacedLoad:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_seconds
        paths = itertools.cycle(self.paths)
        in_flight: set[asyncio.Task[None]] = set()
        limits = httpx.Limits(
            max_connections=self.max_in_flight,
            max_keepalive_connections=self.max_in_flight if self.keep_alive else 0,
        )
        transport = httpx.AsyncHTTPTransport(limits=limits, local_address=self.local_address)
        # trust_env=False: no proxy from the environment; the load stays on this machine.
        client = httpx.AsyncClient(
            base_url=self.base_url, transport=transport, timeout=self.timeout, trust_env=False
        )
        async with client:
            next_at = loop.time()
            while not self._stopping.is_set() and loop.time() < deadline:
                rate = self._rate
                now = loop.time()
                if rate <= 0:
                    next_at = now
                    await asyncio.sleep(0.02)
                    continue
                if next_at > now:
                    await asyncio.sleep(min(next_at - now, 0.05))
                    continue
                if now - next_at > 1.0:
                    next_at = now  # fell behind by more than a second: do not burst to catch up
                if len(in_flight) >= self.max_in_flight:
                    with self._lock:
                        self._stats.dropped += 1
                else:
                    task = asyncio.create_task(self._one(client, next(paths)))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                next_at += 1.0 / rate
            if in_flight:
                await asyncio.wait(in_flight, timeout=self.timeout + 1)

    async def _one(self, client: httpx.AsyncClient, path: str) -> None:
        try:
            response = await client.get(path)
        except httpx.HTTPError as error:
            key, failed = type(error).__name__, True
        else:
            key, failed = str(response.status_code), response.is_error
        with self._lock:
            self._stats.requests += 1
            self._stats.errors += int(failed)
            self._stats.per_status[key] = self._stats.per_status.get(key, 0) + 1
