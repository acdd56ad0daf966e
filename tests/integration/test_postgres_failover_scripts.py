"""Failover with the emitted instance scripts, proven against real servers on loopback.

Three instances (or two), each started exactly as a pod of the failover shape starts: its role
in a file (the downward API's ``role``), ``instance-bootstrap.sh`` then ``start.sh``, with paths
and ports in temporary directories. A small TCP forwarder stands for the ``-rw`` Service: the
standbys stream through it and the writer writes through it, and the test re-points it as the
operator's labels would. The test also does what the operator will do, over TCP as
``sbo_operator`` (so its grants are proven): probe, pick the most advanced standby, pg_promote(),
set the role files. The old primary then restarts with role replica and must come back as a
standby, rewound or, where that is impossible, cloned afresh with its data kept aside.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devkit.process import Command, free_port, wait_until
from sbo_operator.builders.postgres import build_postgres_secret
from sbo_operator.builders.postgres_config import OPERATOR_USER, postgres_config_files
from sbo_operator.builders.secrets import decode_secret_data
from tests.integration.test_data_services_config import (
    LOOPBACK,
    RANDOM_BYTES,
    Sandbox,
    backend,
    connect,
    log_of,
    postgres_bindir,
    sandbox,  # noqa: F401 - the fixture, shared
)

pytestmark = pytest.mark.integration

WAITING_FOR_A_ROLE = "waiting for the operator to assign a role"


# ---- the -rw Service ---------------------------------------------------------------------------------


class Forwarder:
    """A loopback TCP forwarder: the ``-rw`` Service, pointed at one server's port or at none.

    Pointed at none, it closes every new connection at once (a Service without endpoints), and
    established ones go on (conntrack keeps them) unless ``cut``: re-pointing it at a new primary
    cuts them, as the old endpoint's pod going away does.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._target: int | None = None
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def point_at(self, port: int | None, *, cut: bool = True) -> None:
        with self._lock:
            self._target = port
            if not cut:
                return
            established, self._open = self._open, []
        for sock in established:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        self.point_at(None)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                target = self._target
            if target is None:
                client.close()
                continue
            try:
                upstream = socket.create_connection((LOOPBACK, target), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._target != target:
                    client.close()
                    upstream.close()
                    continue
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


# ---- instances -----------------------------------------------------------------------------------------


@dataclass
class Instance:
    """One pod of the failover shape: its volume, its role file, its init container and server."""

    name: str
    port: int
    env: dict[str, str]
    box: Sandbox
    config_dir: Path
    server: Command | None = None
    server_log: Path | None = None
    runs: int = 0

    @property
    def pgdata(self) -> Path:
        return Path(self.env["PGDATA"])

    @property
    def role_file(self) -> Path:
        return Path(self.env["SBO_PG_ROLE_FILE"])

    def set_role(self, role: str) -> None:
        if "SBO_PG_ROLE_FILE" in self.env:  # a pod of the old shape has no role file
            self.role_file.write_text(role)

    def _log(self, what: str) -> Path:
        self.runs += 1
        return self.box.root / f"{self.name}-{what}-{self.runs}.log"

    def launch_bootstrap(self) -> tuple[Command, Path]:
        """instance-bootstrap.sh in the background, as the init container runs it."""
        log = self._log("bootstrap")
        return self.box.start(["sh", str(self.config_dir / "instance-bootstrap.sh")], self.env, log), log

    def bootstrap(self) -> str:
        """instance-bootstrap.sh to completion; its output."""
        return self.box.run(["sh", str(self.config_dir / "instance-bootstrap.sh")], self.env)

    def start(self) -> None:
        log = self.server_log = self._log("server")
        self.server = self.box.start(["sh", str(self.config_dir / "start.sh")], self.env, log)
        wait_until(self.answers, timeout=60, what=f"{self.name} to serve\n{log_of(log)}")

    def answers(self) -> bool:
        try:
            with self.operator():
                return True
        except psycopg.OperationalError:
            return False

    def operator(self) -> psycopg.Connection[Any]:
        """A connection as the operator's login, to the instance itself (its pod IP)."""
        return connect(
            self.port, user=OPERATOR_USER, password=self.env["SBO_OPERATOR_PASSWORD"], dbname="postgres"
        )

    def app(self) -> psycopg.Connection[Any]:
        return connect(
            self.port,
            user=self.env["SBO_APP_USER"],
            password=self.env["SBO_APP_PASSWORD"],
            dbname=self.env["SBO_APP_DATABASE"],
        )


@dataclass(frozen=True)
class Probe:
    in_recovery: bool
    lsn: int  # what it holds: the current LSN on a primary, the received LSN on a standby
    timeline: int


def probe(instance: Instance) -> Probe:
    """What the operator's instance probe reads, as sbo_operator."""
    with instance.operator() as conn:
        row = conn.execute(
            """
            SELECT pg_is_in_recovery(),
                   (CASE WHEN pg_is_in_recovery()
                         THEN greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
                         ELSE pg_current_wal_lsn() END - '0/0')::bigint,
                   CASE WHEN pg_is_in_recovery()
                        THEN (SELECT received_tli FROM pg_stat_wal_receiver)
                        ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
                   END
            """
        ).fetchone()
    assert row is not None
    return Probe(in_recovery=row[0], lsn=row[1], timeline=row[2] or 0)


def shutdown_checkpoint(instance: Instance) -> int:
    """The LSN of the checkpoint a clean shutdown of the stopped ``instance`` wrote last."""
    controldata = subprocess.run(
        [str(postgres_bindir() / "pg_controldata"), str(instance.pgdata)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Database cluster state:               shut down" in controldata
    line = next(line for line in controldata.splitlines() if line.startswith("Latest checkpoint location"))
    high, low = line.split()[-1].split("/")
    return (int(high, 16) << 32) + int(low, 16)


def streaming_standbys(primary: Instance) -> set[str]:
    with primary.operator() as conn:
        rows = conn.execute("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
        return {name for (name,) in rows.fetchall()}


@dataclass
class Cluster:
    instances: list[Instance]
    rw: Forwarder
    primary: Instance

    def others(self, instance: Instance) -> list[Instance]:
        return [other for other in self.instances if other is not instance]


@pytest.fixture
def forwarder() -> Iterator[Forwarder]:
    rw = Forwarder()
    try:
        yield rw
    finally:
        rw.close()


def make_instances(
    box: Sandbox, rw: Forwarder, names: list[str], *, synchronous_standbys: int = 0
) -> list[Instance]:
    """The pods' volumes, role files and env (each has what either role needs), not started."""
    sb = backend(
        postgres={
            "readReplicas": len(names) - 1,
            "database": "shop",
            "user": "shop_app",
            "storage": {"size": "1Gi"},
        }
    )
    files = postgres_config_files(
        sb.spec.postgres, instance_names=names, synchronous_standbys=synchronous_standbys
    )
    secret = build_postgres_secret(sb, existing_data=None, random_bytes=RANDOM_BYTES)
    assert secret is not None
    credentials = decode_secret_data(secret["data"])
    config_dir = box.directory("config")
    box.write(config_dir, files)
    operator_password = secrets.token_urlsafe(32)

    instances = []
    for name in names:
        podinfo = box.directory(f"{name}-podinfo")
        box.write(podinfo, {"role": ""})  # no label yet: the downward API's file is empty
        env = {
            "PATH": f"{postgres_bindir()}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C",
            "SBO_PG_CONFIG_DIR": str(config_dir),
            "SBO_PG_LISTEN_ADDRESSES": LOOPBACK,
            "PGDATA": str(box.directory(f"{name}-data") / "pgdata"),
            "SBO_PG_SOCKET_DIR": str(box.directory(f"{name}-run")),
            "SBO_PG_RUNTIME_DIR": str(box.directory(f"{name}-tmp")),
            "SBO_PG_PORT": str(free_port()),
            "SBO_PG_ROLE_FILE": str(podinfo / "role"),
            "SBO_PG_APPLICATION_NAME": name,
            "SBO_APP_USER": credentials["username"],
            "SBO_APP_PASSWORD": credentials["password"],
            "SBO_APP_DATABASE": credentials["database"],
            "SBO_REPLICATION_USER": credentials["replication-username"],
            "SBO_REPLICATION_PASSWORD": credentials["replication-password"],
            "SBO_OPERATOR_USER": OPERATOR_USER,
            "SBO_OPERATOR_PASSWORD": operator_password,
            "SBO_PRIMARY_HOST": LOOPBACK,
            "SBO_PRIMARY_PORT": str(rw.port),
        }
        instances.append(
            Instance(name=name, port=int(env["SBO_PG_PORT"]), env=env, box=box, config_dir=config_dir)
        )
    return instances


def start_cluster(box: Sandbox, rw: Forwarder, *, size: int = 3, synchronous_standbys: int = 0) -> Cluster:
    """``size`` instances started as a Parallel StatefulSet starts them, before any label is set.

    Every init container waits for a role, saying so; then the operator's bootstrap: instance 0
    primary (and the -rw endpoint once it serves), the others replica: they clone and stream.
    """
    names = [f"shop-postgres-{ordinal}" for ordinal in range(size)]
    instances = make_instances(box, rw, names, synchronous_standbys=synchronous_standbys)

    # Every init container waits for its label, and says so.
    bootstraps = [instance.launch_bootstrap() for instance in instances]
    for _, log in bootstraps:
        wait_until(lambda log=log: WAITING_FOR_A_ROLE in log_of(log), timeout=10, what=f"the wait in {log}")
    time.sleep(1.5)
    assert all(process.running for process, _ in bootstraps), "a bootstrap went on without a role"

    primary, *replicas = instances
    for instance in instances:
        instance.set_role("primary" if instance is primary else "replica")
    (process, log), *replica_bootstraps = bootstraps
    assert process.wait_exit(120) == 0, log_of(log)
    primary.start()
    rw.point_at(primary.port)
    for replica, (process, log) in zip(replicas, replica_bootstraps, strict=True):
        assert process.wait_exit(120) == 0, log_of(log)
        assert "cloning the primary" in log_of(log)
        replica.start()
    wait_until(
        lambda: streaming_standbys(primary) == {replica.name for replica in replicas},
        timeout=30,
        what="every standby streaming",
    )
    with primary.app() as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY)")
    return Cluster(instances=instances, rw=rw, primary=primary)


# ---- the writer ------------------------------------------------------------------------------------------


@dataclass
class Writer:
    """Inserts ids one by one through -rw and logs every acknowledged commit, with its time."""

    port: int
    credentials: dict[str, str]
    acknowledged: list[tuple[int, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Writer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_until(lambda: len(self.acknowledged) >= 50, timeout=30, what="the writer's first commits")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _run(self) -> None:
        next_id, conn = 0, None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(
                        host=LOOPBACK, port=self.port, connect_timeout=2, autocommit=True, **self.credentials
                    )
                next_id += 1
                conn.execute("INSERT INTO orders (id) VALUES (%s)", (next_id,))
                self.acknowledged.append((next_id, time.monotonic()))
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()

    def wait_for_writes_after(self, moment: float) -> None:
        wait_until(lambda: self.acknowledged[-1][1] > moment, timeout=60, what="writes on the new primary")

    def first_after(self, moment: float) -> float:
        return next(at for _, at in self.acknowledged if at > moment)

    def ids(self) -> set[int]:
        return {row_id for row_id, _ in self.acknowledged}


def writer_for(cluster: Cluster) -> Writer:
    env = cluster.primary.env
    credentials = {
        "user": env["SBO_APP_USER"],
        "password": env["SBO_APP_PASSWORD"],
        "dbname": env["SBO_APP_DATABASE"],
    }
    return Writer(port=cluster.rw.port, credentials=credentials)


def stored_ids(instance: Instance) -> set[int]:
    with instance.app() as conn:
        return {row_id for (row_id,) in conn.execute("SELECT id FROM orders").fetchall()}


# ---- what the operator does ------------------------------------------------------------------------------


def promote_most_advanced(cluster: Cluster, old: Instance) -> Instance:
    """The operator's failover after ``old`` is fenced (-rw has no endpoint while it promotes)."""
    standbys = cluster.others(old)
    probes = {standby.name: probe(standby) for standby in standbys}
    assert all(observed.in_recovery for observed in probes.values())
    target = max(standbys, key=lambda standby: (probes[standby.name].lsn, -standbys.index(standby)))
    promote(cluster, target)
    return target


def promote(cluster: Cluster, target: Instance) -> None:
    """pg_promote() as sbo_operator, then the labels, then -rw's endpoint: the new primary."""
    with target.operator() as conn:
        assert conn.execute("SELECT pg_promote()").fetchone() == (True,)
    for instance in cluster.instances:
        instance.set_role("primary" if instance is target else "replica")
    cluster.rw.point_at(target.port)
    cluster.primary = target


def assert_a_streaming_standby_of(standby: Instance, primary: Instance) -> None:
    timeline = probe(primary).timeline
    wait_until(
        lambda: standby.name in streaming_standbys(primary) and probe(standby).timeline == timeline,
        timeout=60,
        what=f"{standby.name} streaming from {primary.name} on timeline {timeline}",
        log=standby.server_log,
    )
    assert probe(standby).in_recovery
    with standby.app() as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("INSERT INTO orders (id) VALUES (-1)")


def caught_up(standby: Instance, primary: Instance) -> None:
    with primary.operator() as conn:
        row = conn.execute("SELECT (pg_current_wal_lsn() - '0/0')::bigint").fetchone()
    assert row is not None
    wait_until(
        lambda: probe(standby).lsn >= row[0], timeout=30, what=f"{standby.name} to reach {primary.name}"
    )


def assert_the_operator_may_do_its_part_and_no_more(primary: Instance) -> None:
    """sbo_operator: set synchronous_standby_names and reload; not other settings, not app data."""
    with primary.operator() as conn:
        conn.execute("""ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 ("shop-postgres-9")'""")
        assert conn.execute("SELECT pg_reload_conf()").fetchone() == (True,)
        wait_until(
            lambda: (
                conn.execute("SHOW synchronous_standby_names").fetchone() == ('ANY 1 ("shop-postgres-9")',)
            ),
            timeout=10,
            what="the reloaded setting",
        )
        conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        conn.execute("SELECT pg_reload_conf()")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER SYSTEM SET work_mem = '1GB'")
    with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf rejects"):
        connect(
            primary.port,
            user=OPERATOR_USER,
            password=primary.env["SBO_OPERATOR_PASSWORD"],
            dbname=primary.env["SBO_APP_DATABASE"],
        )


# ---- the scenarios ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("synchronous_standbys", [0, 1], ids=["asynchronous", "synchronous"])
def test_failover_after_a_sigkill_and_the_old_primary_rejoins_rewound(
    sandbox: Sandbox,  # noqa: F811
    forwarder: Forwarder,
    synchronous_standbys: int,
) -> None:
    cluster = start_cluster(sandbox, forwarder, synchronous_standbys=synchronous_standbys)
    old = cluster.primary
    with old.operator() as conn:
        standby_names = conn.execute("SHOW synchronous_standby_names").fetchone()
    expected = 'ANY 1 ("shop-postgres-0", "shop-postgres-1", "shop-postgres-2")'
    assert standby_names == ((expected if synchronous_standbys else ""),)

    with writer_for(cluster) as writer:
        time.sleep(1)
        assert old.server is not None
        killed_at = time.monotonic()
        old.server.kill()  # SIGKILL to the pod's processes, as a deletion with grace 0
        # Fenced: no process of the old primary exists, and the connections to it are cut (an
        # answer it sent before it died is relayed no more): a later acknowledgement is the new one's.
        cluster.rw.point_at(None)
        fenced_at = time.monotonic()
        new = promote_most_advanced(cluster, old)
        promoted_at = time.monotonic()
        writer.wait_for_writes_after(promoted_at)
    print(
        f"\n[{synchronous_standbys} synchronous] SIGKILL -> fenced: {fenced_at - killed_at:.3f} s; "
        f"-> promoted: {promoted_at - killed_at:.3f} s; -> first acknowledged write on {new.name}: "
        f"{writer.first_after(fenced_at) - killed_at:.3f} s"
    )

    # Every acknowledged commit is on the promoted server when a commit waits for a standby.
    lost = writer.ids() - stored_ids(new)
    print(
        f"[{synchronous_standbys} synchronous] acknowledged commits lost: {len(lost)} of {len(writer.ids())}"
    )
    if synchronous_standbys:
        assert not lost

    # The other standby follows the new timeline through -rw.
    (other,) = [instance for instance in cluster.others(old) if instance is not new]
    assert_a_streaming_standby_of(other, new)

    # The old primary restarts with role replica: rewound, never writable, streaming.
    output = old.bootstrap()
    assert "rewinding it to the primary's timeline" in output
    assert "rewound; starting as a hot standby" in output, output
    assert not old.pgdata.with_name("pgdata.diverged").exists()
    old.start()
    assert_a_streaming_standby_of(old, new)
    caught_up(old, new)
    assert stored_ids(old) == stored_ids(new), "the rewound tail must be gone"


def test_switchover_after_a_fast_shutdown_loses_nothing_and_needs_no_rewind(
    sandbox: Sandbox,  # noqa: F811
    forwarder: Forwarder,
) -> None:
    cluster = start_cluster(sandbox, forwarder)
    old = cluster.primary
    target = cluster.instances[1]
    assert_the_operator_may_do_its_part_and_no_more(old)
    with writer_for(cluster) as writer:
        time.sleep(1)
        # SetRole(old, replica): -rw loses its endpoint; then the pod's preStop: a fast shutdown,
        # which sends the last WAL (the shutdown checkpoint) to the standbys before it exits.
        assert old.server is not None
        started_at = time.monotonic()
        cluster.rw.point_at(None, cut=False)
        os.kill(old.server.pid, signal.SIGINT)
        assert old.server.wait_exit(60) == 0
        cluster.rw.point_at(None)
        stopped_at = time.monotonic()
        old.server.stop()
        last_lsn = shutdown_checkpoint(old)
        wait_until(
            lambda: probe(target).lsn > last_lsn, timeout=5, what="the shutdown checkpoint on the target"
        )
        promote(cluster, target)
        promoted_at = time.monotonic()
        writer.wait_for_writes_after(promoted_at)
    print(
        f"\n[switchover] fast shutdown: {stopped_at - started_at:.3f} s; -> promoted: "
        f"{promoted_at - started_at:.3f} s; -> first acknowledged write: "
        f"{writer.first_after(stopped_at) - started_at:.3f} s"
    )
    assert not writer.ids() - stored_ids(target), "an acknowledged commit was lost in a switchover"

    assert_a_streaming_standby_of(cluster.instances[2], target)
    output = old.bootstrap()
    assert "no rewind required" in output, output
    assert "rewound; starting as a hot standby" in output
    old.start()
    assert_a_streaming_standby_of(old, target)
    caught_up(old, target)
    assert stored_ids(old) == stored_ids(target)


def test_a_former_primary_that_cannot_be_rewound_is_kept_aside_and_cloned_afresh(
    sandbox: Sandbox,  # noqa: F811
    forwarder: Forwarder,
) -> None:
    cluster = start_cluster(sandbox, forwarder, size=2)
    old, standby = cluster.instances
    with old.app() as conn:
        conn.execute("INSERT INTO orders SELECT generate_series(1, 1000)")
    caught_up(standby, old)
    assert old.server is not None
    old.server.kill()
    new = promote_most_advanced(cluster, old)
    assert new is standby
    with new.app() as conn:
        conn.execute("INSERT INTO orders VALUES (1001)")

    # The WAL pg_rewind needs from the former primary is gone (as a lost or damaged segment).
    removed = [segment for segment in (old.pgdata / "pg_wal").iterdir() if segment.is_file()]
    assert removed
    for segment in removed:
        segment.unlink()

    output = old.bootstrap()
    assert "pg_rewind failed; moving" in output, output
    assert "cloning the primary" in output
    diverged = old.pgdata.with_name("pgdata.diverged")
    assert (diverged / "PG_VERSION").exists(), "the diverged data directory is kept for a human"
    assert not (diverged / "standby.signal").exists()
    assert (old.pgdata / "standby.signal").exists()
    old.start()
    assert_a_streaming_standby_of(old, new)
    caught_up(old, new)
    assert stored_ids(old) == set(range(1, 1002))


def test_migration_new_instances_clone_the_legacy_primary_and_take_over_by_switchover(
    sandbox: Sandbox,  # noqa: F811
    forwarder: Forwarder,
) -> None:
    """The old shape's primary (primary-bootstrap.sh, start.sh without a role file) with the
    operator's env: the operator's login reaches the new instances with the clone, and a
    switchover moves the primary to one of them."""
    legacy, new = make_instances(sandbox, forwarder, ["shop-postgres-primary-0", "shop-postgres-0"])
    del legacy.env["SBO_PG_ROLE_FILE"]  # the old StatefulSet's pod has no podinfo volume
    sandbox.run(["sh", str(legacy.config_dir / "primary-bootstrap.sh")], legacy.env)
    legacy.start()
    forwarder.point_at(legacy.port)
    with legacy.app() as conn:
        conn.execute("CREATE TABLE orders (id bigint PRIMARY KEY)")
        conn.execute("INSERT INTO orders SELECT generate_series(1, 10)")

    new.set_role("replica")
    assert "cloning the primary" in new.bootstrap()
    new.start()
    assert_a_streaming_standby_of(new, legacy)
    assert probe(new).in_recovery  # as sbo_operator: its role came with the clone

    # The switchover: the legacy primary stops (fast), the new instance is promoted.
    assert legacy.server is not None
    forwarder.point_at(None, cut=False)
    os.kill(legacy.server.pid, signal.SIGINT)
    assert legacy.server.wait_exit(60) == 0
    legacy.server.stop()
    cluster = Cluster(instances=[legacy, new], rw=forwarder, primary=legacy)
    promote(cluster, new)
    with new.app() as conn:
        conn.execute("INSERT INTO orders VALUES (11)")
    assert stored_ids(new) == set(range(1, 12))
