"""The PostgreSQL config files and scripts: the settings, the rules, and the scripts' decisions.

The scripts' decisions are run here against stand-in binaries that only record how they were
called (no server); tests/integration/test_postgres_failover_scripts.py runs them against real
servers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sbo_operator.builders.postgres_config import (
    INSTANCE_BOOTSTRAP_SCRIPT,
    PG_HBA_CONF,
    PRIMARY_BOOTSTRAP_SCRIPT,
    REPLICA_BOOTSTRAP_SCRIPT,
    START_SCRIPT,
    postgres_config_files,
    render_postgresql_conf,
    synchronous_standby_names,
)
from tests.unit.factories import backend_from

pytestmark = pytest.mark.unit

NAMES = ("shop-postgres-0", "shop-postgres-1", "shop-postgres-2")
SPEC = backend_from({"postgres": {"readReplicas": 2}}).spec.postgres


# ---- synchronous replication ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("standbys", "expected"),
    [
        (0, ""),
        (1, 'ANY 1 ("shop-postgres-0", "shop-postgres-1", "shop-postgres-2")'),
        (2, 'ANY 2 ("shop-postgres-0", "shop-postgres-1", "shop-postgres-2")'),
    ],
)
def test_synchronous_standby_names_is_a_quorum_of_every_instance(standbys: int, expected: str) -> None:
    assert synchronous_standby_names(NAMES, standbys) == expected


def test_synchronous_standbys_must_leave_room_for_the_primary() -> None:
    with pytest.raises(ValueError, match="3 synchronous standbys"):
        synchronous_standby_names(NAMES, 3)


def settings_of(conf: str) -> dict[str, str]:
    pairs = (line.split(" = ", 1) for line in conf.splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def test_postgresql_conf_is_asynchronous_by_default() -> None:
    settings = settings_of(render_postgresql_conf(SPEC, instance_names=NAMES))
    assert "synchronous_standby_names" not in settings
    assert "synchronous_commit" not in settings


def test_postgresql_conf_renders_synchronous_standbys() -> None:
    settings = settings_of(render_postgresql_conf(SPEC, instance_names=NAMES, synchronous_standbys=1))
    assert settings["synchronous_standby_names"] == (
        """'ANY 1 ("shop-postgres-0", "shop-postgres-1", "shop-postgres-2")'"""
    )
    assert settings["synchronous_commit"] == "on"


def test_postgresql_conf_is_ready_for_rewind_and_new_timelines() -> None:
    settings = settings_of(render_postgresql_conf(SPEC))
    assert settings["wal_log_hints"] == "on"
    assert settings["recovery_target_timeline"] == "'latest'"
    assert settings["wal_retrieve_retry_interval"] == "'1s'"


def test_config_files_hold_both_shapes_scripts() -> None:
    files = postgres_config_files(SPEC, instance_names=NAMES, synchronous_standbys=2)
    assert set(files) == {
        "instance-bootstrap.sh",
        "pg_hba.conf",
        "postgresql.conf",
        "primary-bootstrap.sh",
        "replica-bootstrap.sh",
        "start.sh",
    }
    assert "ANY 2 (" in files["postgresql.conf"]
    assert files["instance-bootstrap.sh"] == INSTANCE_BOOTSTRAP_SCRIPT


# ---- pg_hba.conf --------------------------------------------------------------------------------------


def first_match(database: str, user: str) -> str:
    """The method of the first `host` rule matching an IPv4 connection, as PostgreSQL picks it."""
    for line in PG_HBA_CONF.splitlines():
        rule = line.split()
        if not rule or rule[0] != "host" or rule[3] != "0.0.0.0/0":
            continue
        if rule[1] in {database, "all"} and rule[2] in {user, "all"}:
            return rule[4]
    return "no rule"


@pytest.mark.parametrize(
    ("database", "user", "method"),
    [
        ("postgres", "sbo_operator", "scram-sha-256"),  # the operator's probe and pg_promote()
        ("shop", "sbo_operator", "reject"),
        ("postgres", "replicator", "scram-sha-256"),  # pg_rewind's source connection
        ("shop", "replicator", "reject"),
        ("replication", "replicator", "scram-sha-256"),
        ("postgres", "postgres", "reject"),
        ("shop", "shop_app", "scram-sha-256"),
    ],
)
def test_pg_hba_lets_each_role_into_its_database_only(database: str, user: str, method: str) -> None:
    assert first_match(database, user) == method


# ---- the scripts' decisions, with stand-in binaries ---------------------------------------------------

# Each stand-in records its name and arguments; pg_basebackup makes a data directory, pg_rewind
# succeeds unless FAKE_REWIND_FAILS is set, postgres (exec'd by start.sh) only records.
FAKE_BINARIES = {
    "pg_isready": "exit 0",
    "psql": "cat > /dev/null; exit 0",
    "pg_rewind": '[ -z "${FAKE_REWIND_FAILS:-}" ] || { echo "pg_rewind: fatal" >&2; exit 1; }',
    "pg_basebackup": 'while [ "$1" != -D ]; do shift; done; mkdir -p "$2"; echo 15 > "$2/PG_VERSION"',
    "postgres": ":",
}


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    for name, body in FAKE_BINARIES.items():
        path = directory / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "$FAKE_CALLS"\n{body}\n')
        path.chmod(0o755)
    return directory


def run(
    script: str, tmp_path: Path, bin_dir: Path, role: str | None, *, timeout: float = 5, **extra: str
) -> tuple[int, str, str]:
    """Run ``script`` with PGDATA in ``tmp_path``; its exit code, stderr and the recorded calls."""
    (tmp_path / "script.sh").write_text(script)
    calls = tmp_path / "calls"
    calls.write_text("")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PGDATA": str(tmp_path / "data" / "pgdata"),
        "SBO_PG_CONFIG_DIR": str(tmp_path),
        "SBO_PG_SOCKET_DIR": str(tmp_path),
        "SBO_PG_RUNTIME_DIR": str(tmp_path),
        "SBO_PRIMARY_HOST": "shop-postgres-rw",
        "SBO_PRIMARY_PORT": "5432",
        "SBO_REPLICATION_USER": "replicator",
        "SBO_REPLICATION_PASSWORD": "r" * 32,
        "SBO_OPERATOR_USER": "sbo_operator",
        "SBO_OPERATOR_PASSWORD": "o" * 32,
        "SBO_PG_APPLICATION_NAME": "shop-postgres-1",
        "FAKE_CALLS": str(calls),
        **extra,
    }
    if role is not None:
        (tmp_path / "role").write_text(role)
        env["SBO_PG_ROLE_FILE"] = str(tmp_path / "role")
    done = subprocess.run(
        ["sh", str(tmp_path / "script.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stderr, calls.read_text()


def data_directory(tmp_path: Path, *, standby: bool) -> Path:
    pgdata = tmp_path / "data" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("15\n")
    if standby:
        (pgdata / "standby.signal").touch()
    return pgdata


@pytest.mark.parametrize(
    "script", [PRIMARY_BOOTSTRAP_SCRIPT, REPLICA_BOOTSTRAP_SCRIPT, INSTANCE_BOOTSTRAP_SCRIPT, START_SCRIPT]
)
def test_every_script_is_valid_posix_sh(script: str, tmp_path: Path) -> None:
    (tmp_path / "script.sh").write_text(script)
    done = subprocess.run(
        ["sh", "-n", str(tmp_path / "script.sh")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_start_without_a_role_file_keeps_todays_behaviour(tmp_path: Path, bin_dir: Path) -> None:
    data_directory(tmp_path, standby=True)
    code, _, calls = run(START_SCRIPT, tmp_path, bin_dir, role=None)
    assert code == 0
    (postgres,) = calls.splitlines()
    assert "primary_conninfo=host=shop-postgres-rw port=5432" in postgres
    assert "application_name=shop-postgres-1" in postgres


def test_start_refuses_to_run_without_a_role(tmp_path: Path, bin_dir: Path) -> None:
    data_directory(tmp_path, standby=False)
    code, stderr, calls = run(START_SCRIPT, tmp_path, bin_dir, role="")
    assert code == 1
    assert "no role assigned" in stderr
    assert calls == ""


def test_start_as_primary_drops_standby_signal(tmp_path: Path, bin_dir: Path) -> None:
    pgdata = data_directory(tmp_path, standby=True)
    code, _, calls = run(START_SCRIPT, tmp_path, bin_dir, role="primary\n")
    assert code == 0
    assert not (pgdata / "standby.signal").exists()
    (postgres,) = calls.splitlines()
    assert "primary_conninfo" not in postgres


def test_start_as_replica_never_starts_a_former_primary_unrewound(tmp_path: Path, bin_dir: Path) -> None:
    pgdata = data_directory(tmp_path, standby=False)
    code, _, calls = run(START_SCRIPT, tmp_path, bin_dir, role="replica")
    assert code == 0
    assert [call.split()[0] for call in calls.splitlines()] == ["pg_isready", "psql", "pg_rewind", "postgres"]
    assert (pgdata / "standby.signal").exists()
    assert "primary_conninfo=" in calls.splitlines()[-1]


def test_bootstrap_as_replica_resumes_a_standby(tmp_path: Path, bin_dir: Path) -> None:
    data_directory(tmp_path, standby=True)
    code, stderr, calls = run(INSTANCE_BOOTSTRAP_SCRIPT, tmp_path, bin_dir, role="replica")
    assert code == 0
    assert "streaming resumes" in stderr
    assert [call.split()[0] for call in calls.splitlines()] == ["pg_isready"]


def test_bootstrap_as_replica_clones_into_an_empty_volume(tmp_path: Path, bin_dir: Path) -> None:
    code, _, calls = run(INSTANCE_BOOTSTRAP_SCRIPT, tmp_path, bin_dir, role="replica")
    assert code == 0
    assert [call.split()[0] for call in calls.splitlines()] == ["pg_isready", "pg_basebackup"]
    assert (tmp_path / "data" / "pgdata" / "standby.signal").exists()


def test_bootstrap_rewinds_a_former_primary_from_the_rw_service(tmp_path: Path, bin_dir: Path) -> None:
    pgdata = data_directory(tmp_path, standby=False)
    code, _, calls = run(INSTANCE_BOOTSTRAP_SCRIPT, tmp_path, bin_dir, role="replica")
    assert code == 0
    checkpoint, rewind = calls.splitlines()[1:]
    assert checkpoint.endswith("-c CHECKPOINT")  # a promoted primary's timeline reaches pg_control
    assert f"--target-pgdata={pgdata}" in rewind
    assert "--source-server=host=shop-postgres-rw port=5432 user=replicator dbname=postgres" in rewind
    assert (pgdata / "standby.signal").exists()
    assert not pgdata.with_name("pgdata.diverged").exists()


def test_an_unrewindable_former_primary_is_kept_aside_and_cloned(tmp_path: Path, bin_dir: Path) -> None:
    pgdata = data_directory(tmp_path, standby=False)
    (pgdata / "tail").write_text("the unreplicated tail")
    older = pgdata.with_name("pgdata.diverged")
    older.mkdir()
    (older / "older").touch()
    code, stderr, calls = run(
        INSTANCE_BOOTSTRAP_SCRIPT, tmp_path, bin_dir, role="replica", FAKE_REWIND_FAILS="1"
    )
    assert code == 0, stderr
    assert "pg_rewind failed" in stderr
    assert [call.split()[0] for call in calls.splitlines()][-1] == "pg_basebackup"
    assert (older / "tail").read_text() == "the unreplicated tail"
    assert not (older / "older").exists(), "an older diverged directory is replaced"
    assert (pgdata / "standby.signal").exists()


def test_bootstrap_waits_while_the_role_is_not_one_it_knows(tmp_path: Path, bin_dir: Path) -> None:
    with pytest.raises(subprocess.TimeoutExpired) as waited:
        run(INSTANCE_BOOTSTRAP_SCRIPT, tmp_path, bin_dir, role="leader", timeout=1.5)
    assert "waiting for the operator to assign a role" in str(waited.value.stderr)
