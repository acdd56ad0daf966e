"""The data-service configuration the builders emit, proven against real servers on loopback.

The postgresql.conf, pg_hba.conf and scripts are read out of the built ConfigMap, the passwords
out of the built Secret, and run exactly as the pods run them (``sh <script>``), with paths,
ports and hosts pointed at temporary directories and 127.0.0.1 through the scripts' environment
variables. The machine's PostgreSQL (15 here; the config is kept valid for 15-17) and
redis-server (7.0 here) are used; if they are missing the tests fail rather than skip.

As root, PostgreSQL runs as the ``postgres`` user (it refuses to run as root), which is also the
OS user the superuser is named after, as uid 999 is in the official image.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devkit.process import Command, free_port, wait_until
from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders.postgres import build_postgres_config_map, build_postgres_secret
from sbo_operator.builders.redis import build_redis_config_map, build_redis_secret
from sbo_operator.builders.secrets import decode_secret_data

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
RANDOM_BYTES = os.urandom(32)


def backend(**spec: Any) -> ScalableBackend:
    return ScalableBackend.model_validate(
        {
            "apiVersion": "sbo.dev/v1alpha1",
            "kind": "ScalableBackend",
            "metadata": {"name": "shop", "namespace": "demo"},
            "spec": {"image": "sbo-sample-app:0.1.0", **spec},
        }
    )


def postgres_bindir() -> Path:
    if configured := os.environ.get("SBO_PG_BINDIR"):
        return Path(configured)
    versions = sorted(
        (path for path in Path("/usr/lib/postgresql").glob("*/bin") if path.parent.name.isdigit()),
        key=lambda path: int(path.parent.name),
    )
    if not versions:
        pytest.fail("no PostgreSQL binaries in /usr/lib/postgresql/*/bin (set SBO_PG_BINDIR)")
    return versions[-1]


@dataclass
class Sandbox:
    """A temporary directory owned by the user the servers run as, and the processes started."""

    root: Path
    user: str | None
    processes: list[Command] = field(default_factory=list)

    def directory(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(mode=0o700)
        self._own(path)
        return path

    def write(self, directory: Path, files: Mapping[str, str]) -> None:
        for name, text in files.items():
            (directory / name).write_text(text)
            self._own(directory / name)

    def _own(self, path: Path) -> None:
        if self.user is not None:
            shutil.chown(path, self.user, self.user)

    def _kwargs(self, env: Mapping[str, str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"env": dict(env), "cwd": self.root}
        if self.user is not None:
            kwargs.update(user=self.user, group=self.user)
        return kwargs

    def run(self, command: list[str], env: Mapping[str, str], *, timeout: float = 120) -> str:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, **self._kwargs(env)
        )
        assert done.returncode == 0, f"{command} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    def start(self, command: list[str], env: Mapping[str, str], log: Path) -> Command:
        """Start ``command`` as the pods run it; the caller waits for it to serve."""
        process = Command(
            command,
            log_path=log,
            ready=lambda: True,
            env=env,
            cwd=self.root,
            **({"user": self.user, "group": self.user} if self.user is not None else {}),
        )
        process.launch(timeout=10)
        self.processes.append(process)
        return process


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    # A short path under /tmp: unix socket paths are limited to ~107 bytes, and pytest's tmp_path
    # is not traversable by the postgres user when the tests run as root.
    root = Path(tempfile.mkdtemp(prefix="sbo-cfg-"))
    user = None
    if os.geteuid() == 0:
        user = os.environ.get("SBO_PG_USER", "postgres")
        pwd.getpwnam(user)  # fails the test if the user does not exist
        shutil.chown(root, user, user)
    box = Sandbox(root=root, user=user)
    try:
        yield box
    finally:
        for process in reversed(box.processes):
            process.stop(sig=signal.SIGQUIT)
        shutil.rmtree(root, ignore_errors=True)


def log_of(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else "<no log>"


# ---- PostgreSQL -------------------------------------------------------------------------------------


@contextlib.contextmanager
def syn_blackhole(port: int) -> Iterator[None]:
    """127.0.0.1:``port`` silently drops new connections' SYNs, as a lost route does.

    A listener with a backlog of 0 whose one queued connection is never accepted: Linux drops a
    SYN to a listener whose accept queue is full, so the client retransmits it unanswered.
    """
    with socket.socket() as listener, socket.socket() as filler:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, port))
        listener.listen(0)
        filler.connect((LOOPBACK, port))
        yield


@dataclass(frozen=True)
class PostgresNode:
    port: int
    env: dict[str, str]
    log: Path


def connect(port: int, *, user: str, password: str, dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=LOOPBACK,
        port=port,
        user=user,
        password=password,
        dbname=dbname,
        connect_timeout=5,
        autocommit=True,
    )


def accepts(port: int, **credentials: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with connect(port, **credentials):
                return True
        except psycopg.OperationalError:
            return False

    return check


def test_postgres_primary_and_streaming_replica_from_the_emitted_config(sandbox: Sandbox) -> None:
    sb = backend(
        postgres={"readReplicas": 1, "database": "shop", "user": "shop_app", "storage": {"size": "1Gi"}}
    )
    config_map = build_postgres_config_map(sb)
    secret = build_postgres_secret(sb, existing_data=None, random_bytes=RANDOM_BYTES)
    assert config_map is not None
    assert secret is not None
    credentials = decode_secret_data(secret["data"])

    config_dir = sandbox.directory("config")
    sandbox.write(config_dir, config_map["data"])
    base_env = {
        "PATH": f"{postgres_bindir()}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "LANG": "C",
        "SBO_PG_CONFIG_DIR": str(config_dir),
        "SBO_PG_LISTEN_ADDRESSES": LOOPBACK,
    }

    def node(name: str, extra: Mapping[str, str]) -> PostgresNode:
        port = free_port()
        env = {
            **base_env,
            "PGDATA": str(sandbox.directory(f"{name}-data") / "pgdata"),
            "SBO_PG_SOCKET_DIR": str(sandbox.directory(f"{name}-run")),
            "SBO_PG_RUNTIME_DIR": str(sandbox.directory(f"{name}-tmp")),
            "SBO_PG_PORT": str(port),
            **extra,
        }
        return PostgresNode(port=port, env=env, log=sandbox.root / f"{name}.log")

    replication = {
        "SBO_REPLICATION_USER": credentials["replication-username"],
        "SBO_REPLICATION_PASSWORD": credentials["replication-password"],
    }
    primary = node(
        "primary",
        {
            "SBO_APP_USER": credentials["username"],
            "SBO_APP_PASSWORD": credentials["password"],
            "SBO_APP_DATABASE": credentials["database"],
            **replication,
        },
    )
    app = {
        "user": credentials["username"],
        "password": credentials["password"],
        "dbname": credentials["database"],
    }

    # Primary: bootstrap (initdb + roles + database), then the server.
    sandbox.run(["sh", str(config_dir / "primary-bootstrap.sh")], primary.env)
    server = sandbox.start(["sh", str(config_dir / "start.sh")], primary.env, primary.log)
    wait_until(accepts(primary.port, **app), timeout=60, what=f"the primary\n{log_of(primary.log)}")

    with connect(primary.port, **app) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, item text)")
        conn.execute("INSERT INTO orders VALUES (1, 'written on the primary')")
        version = conn.execute("SHOW server_version_num").fetchone()
        assert version is not None
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)

    # Replica: waits for the primary, clones it with pg_basebackup, streams as a hot standby.
    replica = node(
        "replica",
        {
            "SBO_PRIMARY_HOST": LOOPBACK,
            "SBO_PRIMARY_PORT": str(primary.port),
            "SBO_PG_APPLICATION_NAME": "shop-postgres-replica-0",
            **replication,
        },
    )
    sandbox.run(["sh", str(config_dir / "replica-bootstrap.sh")], replica.env)
    assert (Path(replica.env["PGDATA"]) / "standby.signal").exists()
    sandbox.start(["sh", str(config_dir / "start.sh")], replica.env, replica.log)
    wait_until(accepts(replica.port, **app), timeout=60, what=f"the replica\n{log_of(replica.log)}")

    # A row written on the primary is read on the replica.
    def replicated(item: str) -> Callable[[], bool]:
        def check() -> bool:
            with connect(replica.port, **app) as conn:
                try:
                    rows = conn.execute("SELECT item FROM orders ORDER BY id").fetchall()
                except psycopg.errors.UndefinedTable:
                    return False
                return (item,) in rows

        return check

    wait_until(replicated("written on the primary"), timeout=30, what="the row on the replica")
    with connect(replica.port, **app) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        # The replica refuses writes.
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO orders VALUES (2, 'written on the replica')")

    # Streaming, under the pod's name, with the replication role from the Secret.
    with connect(primary.port, **app) as conn:
        conn.execute("INSERT INTO orders VALUES (3, 'streamed')")
    wait_until(replicated("streamed"), timeout=30, what="the streamed row")

    # A wrong password is refused, on both servers; so is the replication role on a database.
    for port in (primary.port, replica.port):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            connect(port, user=app["user"], password="wrong-" + app["password"], dbname=app["dbname"])
    with pytest.raises(psycopg.OperationalError):
        connect(
            primary.port,
            user=credentials["replication-username"],
            password=credentials["replication-password"],
            dbname=app["dbname"],
        )
    # There is no password login for the superuser over TCP.
    with pytest.raises(psycopg.OperationalError):
        connect(primary.port, user="postgres", password="", dbname="postgres")

    # The bootstrap is idempotent: a restarted primary keeps its data and roles.
    server.stop(sig=signal.SIGINT)
    sandbox.run(["sh", str(config_dir / "primary-bootstrap.sh")], primary.env)
    server = sandbox.start(["sh", str(config_dir / "start.sh")], primary.env, sandbox.root / "primary-2.log")
    wait_until(accepts(primary.port, **app), timeout=60, what="the restarted primary")
    with connect(primary.port, **app) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)
        conn.execute("INSERT INTO orders VALUES (4, 'after the restart')")
    wait_until(replicated("after the restart"), timeout=60, what="streaming to resume after the restart")

    # The primary's address drops the replica's SYNs, as happened on the real node while the
    # primary's pod was replaced. Each connection attempt of the walreceiver
    # fails within seconds (tcp_user_timeout; it ignores connect_timeout) and the next one starts:
    # without that, one attempt kept retrying its SYN for over two minutes.
    server.stop(sig=signal.SIGINT)
    logged_before = len(replica.log.read_text(errors="replace"))

    def timed_out_attempts() -> int:
        logged = replica.log.read_text(errors="replace")[logged_before:].splitlines()
        return sum(
            "could not connect to the primary server" in line and "timed out" in line for line in logged
        )

    with syn_blackhole(primary.port):
        wait_until(
            lambda: timed_out_attempts() >= 2,
            timeout=40,
            interval=1,
            what="two timed-out attempts to reach the primary",
            log=replica.log,
        )
    sandbox.start(["sh", str(config_dir / "start.sh")], primary.env, sandbox.root / "primary-3.log")
    wait_until(accepts(primary.port, **app), timeout=60, what="the primary, back")
    with connect(primary.port, **app) as conn:
        conn.execute("INSERT INTO orders VALUES (5, 'after the unanswered attempts')")
    wait_until(replicated("after the unanswered attempts"), timeout=30, what="streaming to resume")


def test_replica_bootstrap_refuses_a_dirty_data_directory(sandbox: Sandbox) -> None:
    config_map = build_postgres_config_map(backend())
    assert config_map is not None
    config_dir = sandbox.directory("config")
    sandbox.write(config_dir, config_map["data"])
    pgdata = sandbox.directory("data") / "pgdata"
    pgdata.mkdir()
    (pgdata / "stray").write_text("not a data directory")
    env = {
        "PATH": f"{postgres_bindir()}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PGDATA": str(pgdata),
        "SBO_PG_CONFIG_DIR": str(config_dir),
        "SBO_APP_USER": "app",
        "SBO_APP_PASSWORD": "x" * 32,
        "SBO_APP_DATABASE": "app",
        "SBO_REPLICATION_USER": "replicator",
        "SBO_REPLICATION_PASSWORD": "y" * 32,
    }
    done = subprocess.run(
        ["sh", str(config_dir / "primary-bootstrap.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "refusing to touch it" in done.stderr
    assert (pgdata / "stray").exists()


# ---- Redis ------------------------------------------------------------------------------------------


def redis_cli(port: int, *args: str, password: str | None = None) -> str:
    command = ["redis-cli", "-h", LOOPBACK, "-p", str(port)]
    if password is not None:
        command += ["--no-auth-warning", "-a", password]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=10, check=False)
    return (done.stdout + done.stderr).strip()


@pytest.mark.parametrize("persistent", [False, True], ids=["cache", "persistent"])
def test_redis_from_the_emitted_config(sandbox: Sandbox, persistent: bool) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")
    spec: dict[str, Any] = {"maxMemory": "64Mi", "evictionPolicy": "allkeys-lfu"}
    if persistent:
        spec["persistence"] = {"size": "1Gi"}
    sb = backend(redis=spec)
    config_map = build_redis_config_map(sb)
    secret = build_redis_secret(sb, existing_data=None, random_bytes=RANDOM_BYTES)
    assert config_map is not None
    assert secret is not None
    password = decode_secret_data(secret["data"])["password"]
    assert password not in str(config_map), "the password must not be in the ConfigMap"

    config_dir = sandbox.directory("redis-config")
    sandbox.write(config_dir, config_map["data"])
    data_dir = sandbox.directory("redis-data")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REDIS_PASSWORD": password,
        "SBO_REDIS_CONFIG": str(config_dir / "redis.conf"),
        "SBO_REDIS_RUNTIME_DIR": str(sandbox.directory("redis-run")),
        "SBO_REDIS_DATA_DIR": str(data_dir),
        "SBO_REDIS_PORT": str(port),
        "SBO_REDIS_BIND": LOOPBACK,
    }
    log = sandbox.root / "redis.log"
    server = sandbox.start(["sh", str(config_dir / "start-redis.sh")], env, log)

    def up() -> bool:
        assert server.running, f"redis-server exited:\n{log_of(log)}"
        return redis_cli(port, "ping", password=password) == "PONG"

    wait_until(up, timeout=30, what=f"redis\n{log_of(log)}")

    # AUTH is required, and a wrong password is refused.
    assert "NOAUTH" in redis_cli(port, "set", "k", "v")
    assert "WRONGPASS" in redis_cli(port, "ping", password="wrong")
    assert redis_cli(port, "set", "k", "v", password=password) == "OK"

    # maxmemory, the policy and the persistence mode are the emitted ones.
    assert redis_cli(port, "config", "get", "maxmemory", password=password).split() == [
        "maxmemory",
        str(64 * 2**20),
    ]
    assert redis_cli(port, "config", "get", "maxmemory-policy", password=password).split()[1] == "allkeys-lfu"
    expected_aof = "yes" if persistent else "no"
    assert redis_cli(port, "config", "get", "appendonly", password=password).split()[1] == expected_aof
    assert redis_cli(port, "config", "get", "dir", password=password).split()[1] == str(data_dir)
    if persistent:
        wait_until(lambda: any(data_dir.rglob("*.aof")), timeout=10, what="the append-only file")


# ---- a Secret generated again (deleted by hand) ------------------------------------------------------


def test_postgres_takes_a_regenerated_secret_at_restart_and_the_replica_streams_with_it(
    sandbox: Sandbox,
) -> None:
    """Bootstrap with Secret A; restart with the env of a regenerated Secret B, as the rolled pods do.

    B works for the app and the replication role, A is refused, the data is kept, and a replica
    (restarted, and a new clone) streams with B.
    """
    sb = backend(postgres={"readReplicas": 1, "database": "shop", "user": "shop_app"})
    config_map = build_postgres_config_map(sb)
    assert config_map is not None
    secret_a = build_postgres_secret(sb, existing_data=None, random_bytes=os.urandom(32))
    secret_b = build_postgres_secret(sb, existing_data=None, random_bytes=os.urandom(32))
    assert secret_a is not None
    assert secret_b is not None
    a, b = decode_secret_data(secret_a["data"]), decode_secret_data(secret_b["data"])
    assert a["password"] != b["password"]
    assert a["replication-password"] != b["replication-password"]
    config_dir = sandbox.directory("config")
    sandbox.write(config_dir, config_map["data"])
    path = f"{postgres_bindir()}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    primary_port = free_port()

    def env(name: str, port: int, credentials: Mapping[str, str], role: str) -> dict[str, str]:
        variables = {
            "PATH": path,
            "LANG": "C",
            "SBO_PG_CONFIG_DIR": str(config_dir),
            "SBO_PG_LISTEN_ADDRESSES": LOOPBACK,
            "PGDATA": str(sandbox.root / f"{name}-data" / "pgdata"),
            "SBO_PG_SOCKET_DIR": str(sandbox.root / f"{name}-run"),
            "SBO_PG_RUNTIME_DIR": str(sandbox.root / f"{name}-tmp"),
            "SBO_PG_PORT": str(port),
            "SBO_REPLICATION_USER": credentials["replication-username"],
            "SBO_REPLICATION_PASSWORD": credentials["replication-password"],
        }
        if role == "primary":
            variables |= {
                "SBO_APP_USER": credentials["username"],
                "SBO_APP_PASSWORD": credentials["password"],
                "SBO_APP_DATABASE": credentials["database"],
            }
        else:
            variables |= {"SBO_PRIMARY_HOST": LOOPBACK, "SBO_PRIMARY_PORT": str(primary_port)}
        return variables

    def app(credentials: Mapping[str, str]) -> dict[str, str]:
        return {"user": credentials["username"], "password": credentials["password"], "dbname": "shop"}

    def start(name: str, port: int, credentials: Mapping[str, str], role: str) -> Command:
        variables = env(name, port, credentials, role)
        script = "primary-bootstrap.sh" if role == "primary" else "replica-bootstrap.sh"
        sandbox.run(["sh", str(config_dir / script)], variables)
        log = sandbox.root / f"{name}-{credentials['password'][:4]}.log"
        server = sandbox.start(["sh", str(config_dir / "start.sh")], variables, log)
        wait_until(accepts(port, **app(credentials)), timeout=60, what=f"{name}\n{log_of(log)}")
        return server

    for name in ("primary", "replica", "clone"):
        for suffix in ("data", "run", "tmp"):
            sandbox.directory(f"{name}-{suffix}")

    # Secret A: primary and a streaming replica, with data.
    primary = start("primary", primary_port, a, "primary")
    replica_port = free_port()
    replica = start("replica", replica_port, a, "replica")
    with connect(primary_port, **app(a)) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, item text)")
        conn.execute("INSERT INTO orders VALUES (1, 'before the Secret was deleted')")

    def on(port: int, credentials: Mapping[str, str], count: int) -> Callable[[], bool]:
        def check() -> bool:
            try:
                with connect(port, **app(credentials)) as conn:
                    row = conn.execute("SELECT count(*) FROM orders").fetchone()
                    return row == (count,)
            except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
                return False

        return check

    wait_until(on(replica_port, a, 1), timeout=30, what="the row on the replica")

    # The Secret is regenerated: the pods roll (primary first, then the replica) with B's env.
    primary.stop(sig=signal.SIGQUIT)
    primary = start("primary", primary_port, b, "primary")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(primary_port, **app(a))
    with connect(primary_port, **app(b)) as conn:
        assert conn.execute("SELECT item FROM orders").fetchall() == [("before the Secret was deleted",)]
        conn.execute("INSERT INTO orders VALUES (2, 'after the restart with B')")
    # The replication role: B logs in (a physical replication connection), A does not.
    for credentials, works in ((b, True), (a, False)):
        attempt = subprocess.run(
            [
                "psql",
                "-X",
                "-h",
                LOOPBACK,
                "-p",
                str(primary_port),
                "-U",
                "replicator",
                "-d",
                "replication=true",
                "-c",
                "IDENTIFY_SYSTEM",
            ],
            env={"PATH": path, "PGPASSWORD": credentials["replication-password"]},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (attempt.returncode == 0) is works, attempt.stderr

    replica.stop(sig=signal.SIGQUIT)
    replica = start("replica", replica_port, b, "replica")
    wait_until(on(replica_port, b, 2), timeout=60, what="the replica streaming with B")
    # A new replica clones the primary with B (pg_basebackup as the replication role).
    clone_port = free_port()
    start("clone", clone_port, b, "replica")
    with connect(primary_port, **app(b)) as conn:
        conn.execute("INSERT INTO orders VALUES (3, 'streamed with B')")
    wait_until(on(clone_port, b, 3), timeout=60, what="the new clone streaming with B")
    wait_until(on(replica_port, b, 3), timeout=60, what="the replica streaming with B")


def test_redis_takes_a_regenerated_secret_at_restart_and_keeps_its_data(sandbox: Sandbox) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")
    sb = backend(redis={"persistence": {"size": "1Gi"}})
    config_map = build_redis_config_map(sb)
    assert config_map is not None
    passwords = []
    for _ in range(2):
        secret = build_redis_secret(sb, existing_data=None, random_bytes=os.urandom(32))
        assert secret is not None
        passwords.append(decode_secret_data(secret["data"])["password"])
    a, b = passwords
    config_dir = sandbox.directory("redis-config")
    sandbox.write(config_dir, config_map["data"])
    data_dir = sandbox.directory("redis-data")
    runtime_dir = sandbox.directory("redis-run")
    port = free_port()

    def start(password: str) -> Command:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "REDIS_PASSWORD": password,
            "SBO_REDIS_CONFIG": str(config_dir / "redis.conf"),
            "SBO_REDIS_RUNTIME_DIR": str(runtime_dir),
            "SBO_REDIS_DATA_DIR": str(data_dir),
            "SBO_REDIS_PORT": str(port),
            "SBO_REDIS_BIND": LOOPBACK,
        }
        log = sandbox.root / f"redis-{password[:4]}.log"
        server = sandbox.start(["sh", str(config_dir / "start-redis.sh")], env, log)
        wait_until(lambda: redis_cli(port, "ping", password=password) == "PONG", timeout=30, what=log_of(log))
        return server

    server = start(a)
    assert redis_cli(port, "set", "k", "kept", password=a) == "OK"
    wait_until(lambda: any(data_dir.rglob("*.aof")), timeout=10, what="the append-only file")
    server.stop(sig=signal.SIGTERM)

    start(b)
    assert redis_cli(port, "get", "k", password=b) == "kept"
    assert "WRONGPASS" in redis_cli(port, "ping", password=a)
