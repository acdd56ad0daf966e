"""The backup scripts and archive settings: their shape, their arguments and their refusals.

The scripts' arguments are checked against stand-ins for the barman-cloud commands that record
the argv they get (the real commands against a real store are tests/integration/backup/); the
backup choice of restore.sh is its own Python program, run here on listings written by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from sbo_operator.builders import backup_scripts
from sbo_operator.builders.backup_scripts import (
    BASE_BACKUP_SCRIPT,
    DEFAULT_ARCHIVE_TIMEOUT_SECONDS,
    RESTORE_EXIT_BAD_CONFIGURATION,
    RESTORE_EXIT_BEFORE_FIRST_RECOVERABILITY_POINT,
    RESTORE_EXIT_NO_BACKUP,
    RESTORE_EXIT_TARGET_NOT_ARCHIVED,
    RESTORE_SCRIPT,
    WAL_ARCHIVE_SCRIPT,
    WAL_RESTORE_SCRIPT,
    archive_settings,
    backup_script_files,
    render_archive_conf,
)
from tests.unit.shipping.support import tool

pytestmark = pytest.mark.unit

DESTINATION = {"SBO_BACKUP_DESTINATION": "s3://backups/shop", "SBO_BACKUP_SERVER_NAME": "pg"}
SECRET = "secret-value-that-must-not-leak"


# ---- postgresql.conf --------------------------------------------------------------------------------


def test_the_default_archive_timeout_keeps_the_data_loss_window_under_a_minute() -> None:
    assert DEFAULT_ARCHIVE_TIMEOUT_SECONDS <= 45  # plus one upload, well under 60 s
    assert dict(archive_settings()) == {
        "archive_mode": "on",
        "archive_command": "'sh /etc/sbo-backup/wal-archive.sh %p'",
        "archive_timeout": f"'{DEFAULT_ARCHIVE_TIMEOUT_SECONDS}s'",
    }


def test_archive_conf_lines_follow_the_arguments() -> None:
    assert render_archive_conf(archive_timeout_seconds=5, scripts_dir="/opt/backup") == (
        "archive_mode = on\narchive_command = 'sh /opt/backup/wal-archive.sh %p'\narchive_timeout = '5s'\n"
    )


@pytest.mark.parametrize(
    ("timeout", "scripts_dir"), [(0, "/etc/sbo-backup"), (30, "relative"), (30, "/etc/it's"), (30, "/a b")]
)
def test_archive_settings_refuse_what_would_break_the_conf_line(timeout: int, scripts_dir: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        archive_settings(archive_timeout_seconds=timeout, scripts_dir=scripts_dir)


# ---- the scripts' shape ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(name for name in backup_script_files() if name.endswith(".sh")))
def test_every_script_is_strict_posix_sh_and_shellcheck_clean(name: str, tmp_path: Path) -> None:
    text = backup_script_files()[name]
    assert text.startswith("#!/bin/sh\nset -eu\n")
    script = tmp_path / name
    script.write_text(text)
    subprocess.run(["sh", "-n", str(script)], check=True)
    result = subprocess.run(
        [str(tool("shellcheck")), "-s", "sh", str(script)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("name", sorted(backup_script_files()))
def test_no_script_touches_the_credentials(name: str) -> None:
    """barman-cloud's S3 client reads them from the environment: no script names them at all."""
    assert "AWS_" not in backup_script_files()[name]


def test_the_restore_exit_codes_are_distinct() -> None:
    codes = [value for key, value in vars(backup_scripts).items() if key.startswith("RESTORE_EXIT_")]
    assert len(codes) == len(set(codes)) == 5
    assert 0 not in codes


# ---- the scripts' arguments, against recording stand-ins -----------------------------------------


def stand_in_bin(tmp_path: Path, exit_codes: dict[str, int] | None = None) -> Path:
    """barman-cloud commands that append their argv (one per line, then ---) to calls.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command in ("wal-archive", "wal-restore", "backup", "backup-delete"):
        code = (exit_codes or {}).get(command, 0)
        stub = bin_dir / f"barman-cloud-{command}"
        stub.write_text(
            f'#!/bin/sh\n{{ echo "barman-cloud-{command}"; printf "%s\\n" "$@"; echo ---; }}'
            f' >> "{tmp_path}/calls.log"\nexit {code}\n'
        )
        stub.chmod(0o755)
    return bin_dir


def run_script(
    tmp_path: Path, script: str, env: dict[str, str], *args: str, exit_codes: dict[str, int] | None = None
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.sh"
    path.write_text(script)
    bin_dir = stand_in_bin(tmp_path, exit_codes)
    full_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "AWS_SECRET_ACCESS_KEY": SECRET, **env}
    return subprocess.run(["sh", str(path), *args], env=full_env, capture_output=True, text=True, check=False)


def calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "calls.log"
    text = log.read_text() if log.exists() else ""
    return [block.strip("\n").split("\n") for block in text.split("---\n") if block.strip()]


def test_wal_archive_passes_endpoint_compression_destination_and_the_wal_path(tmp_path: Path) -> None:
    env = {**DESTINATION, "SBO_BACKUP_ENDPOINT_URL": "https://minio.storage.svc:9000"}
    done = run_script(tmp_path, WAL_ARCHIVE_SCRIPT, env, "pg_wal/000000010000000000000003")
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path) == [
        [
            "barman-cloud-wal-archive",
            "--endpoint-url",
            "https://minio.storage.svc:9000",
            "--gzip",
            "s3://backups/shop",
            "pg",
            "pg_wal/000000010000000000000003",
        ]
    ]
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("compression", "option"), [("bzip2", ["--bzip2"]), ("snappy", ["--snappy"]), ("none", [])]
)
def test_wal_archive_compression_choices(tmp_path: Path, compression: str, option: list[str]) -> None:
    env = {**DESTINATION, "SBO_BACKUP_COMPRESSION": compression}
    assert run_script(tmp_path, WAL_ARCHIVE_SCRIPT, env, "p").returncode == 0
    assert calls(tmp_path) == [["barman-cloud-wal-archive", *option, "s3://backups/shop", "pg", "p"]]


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({**DESTINATION, "SBO_BACKUP_COMPRESSION": "zstd"}, ["p"], "gzip, bzip2, snappy or none"),
        ({"SBO_BACKUP_SERVER_NAME": "pg"}, ["p"], "SBO_BACKUP_DESTINATION must be set"),
        (DESTINATION, [], "usage: wal-archive.sh WAL_PATH"),
    ],
)
def test_wal_archive_refuses_a_bad_environment_before_calling_barman(
    tmp_path: Path, env: dict[str, str], args: list[str], message: str
) -> None:
    done = run_script(tmp_path, WAL_ARCHIVE_SCRIPT, env, *args)
    assert done.returncode != 0
    assert message in done.stderr
    assert calls(tmp_path) == []


@pytest.mark.parametrize(("barman_exit", "script_exit"), [(0, 0), (1, 1), (2, 255), (4, 255)])
def test_wal_restore_turns_store_failures_into_an_aborted_recovery(
    tmp_path: Path, barman_exit: int, script_exit: int
) -> None:
    """1 (no such file) ends the archive; anything else must abort recovery, not promote early."""
    env = {"SBO_RESTORE_SOURCE": "s3://backups/shop", "SBO_RESTORE_SERVER_NAME": "pg"}
    done = run_script(
        tmp_path, WAL_RESTORE_SCRIPT, env, "000000010000000000000004", "pg_wal/RECOVERYXLOG",
        exit_codes={"wal-restore": barman_exit},
    )  # fmt: skip
    assert done.returncode == script_exit
    assert calls(tmp_path) == [
        [
            "barman-cloud-wal-restore",
            "s3://backups/shop",
            "pg",
            "000000010000000000000004",
            "pg_wal/RECOVERYXLOG",
        ]
    ]


# ---- restore.sh's fetcher settings (the fetcher itself: test_restore_fetcher.py) -----------------------


def run_restore(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """restore.sh with stand-ins for barman-cloud-backup-list (one backup, B1) and
    barman-cloud-restore (records its argv, then fails with 7), and no restore-fetch.py in its
    scripts directory: the fetcher is gone at once, as when it dies."""
    listing = {"backups_list": [listed("B1", datetime.now(UTC) - timedelta(hours=1), "0/3000100")]}
    bin_dir = stand_in_bin(tmp_path)
    lister = bin_dir / "barman-cloud-backup-list"
    lister.write_text(f"#!/bin/sh\necho '{json.dumps(listing)}'\n")
    restorer = bin_dir / "barman-cloud-restore"
    record = f'{{ echo barman-cloud-restore; printf "%s\\n" "$@"; echo ---; }} >> "{tmp_path}/calls.log"'
    restorer.write_text(f"#!/bin/sh\n{record}\nexit 7\n")
    for stub in (lister, restorer):
        stub.chmod(0o755)
    script = tmp_path / "restore.sh"
    script.write_text(RESTORE_SCRIPT)
    full_env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PGDATA": str(tmp_path / "data"),
        "SBO_BACKUP_SCRIPTS_DIR": str(tmp_path / "scripts"),
        "SBO_RESTORE_SOURCE": "s3://backups/shop",
        "SBO_RESTORE_SERVER_NAME": "pg",
        **env,
    }
    return subprocess.run(["sh", str(script)], env=full_env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("ahead", ["four", "0", "-1"])
def test_restore_refuses_a_malformed_prefetch_count_before_downloading(tmp_path: Path, ahead: str) -> None:
    done = run_restore(tmp_path, SBO_WAL_PREFETCH=ahead)
    assert done.returncode == RESTORE_EXIT_BAD_CONFIGURATION
    assert "SBO_WAL_PREFETCH must be a whole number" in done.stderr
    assert not (tmp_path / "data.new").exists()
    assert calls(tmp_path) == []  # nothing downloaded


def test_without_its_fetcher_restore_lists_and_downloads_with_the_barman_cloud_commands(
    tmp_path: Path,
) -> None:
    done = run_restore(tmp_path)
    assert done.returncode == 7, done.stderr
    assert "restoring backup B1 of s3://backups/shop (pg), target latest" in done.stderr
    assert "the fetcher is gone: barman-cloud-restore" in done.stderr
    assert calls(tmp_path) == [
        ["barman-cloud-restore", "s3://backups/shop", "pg", "B1", f"{tmp_path}/data.new"]
    ]


def test_base_backup_then_the_retention_policy(tmp_path: Path) -> None:
    env = {
        **DESTINATION,
        "SBO_BACKUP_ENDPOINT_URL": "http://127.0.0.1:9000",
        "SBO_BACKUP_RETENTION_DAYS": "7",
    }
    done = run_script(tmp_path, BASE_BACKUP_SCRIPT, env)
    assert done.returncode == 0, done.stderr
    endpoint = ["--endpoint-url", "http://127.0.0.1:9000"]
    assert calls(tmp_path) == [
        ["barman-cloud-backup", *endpoint, "--gzip", "--immediate-checkpoint", "s3://backups/shop", "pg"],
        [
            "barman-cloud-backup-delete",
            *endpoint,
            "--retention-policy",
            "RECOVERY WINDOW OF 7 DAYS",
            "s3://backups/shop",
            "pg",
        ],
    ]


def test_base_backup_without_retention_keeps_everything(tmp_path: Path) -> None:
    assert run_script(tmp_path, BASE_BACKUP_SCRIPT, DESTINATION).returncode == 0
    assert [call[0] for call in calls(tmp_path)] == ["barman-cloud-backup"]


@pytest.mark.parametrize("days", ["0", "7d", "-1", "1 DAYS; x"])
def test_base_backup_refuses_a_malformed_retention_before_backing_up(tmp_path: Path, days: str) -> None:
    done = run_script(tmp_path, BASE_BACKUP_SCRIPT, {**DESTINATION, "SBO_BACKUP_RETENTION_DAYS": days})
    assert done.returncode == 2
    assert "SBO_BACKUP_RETENTION_DAYS" in done.stderr
    assert calls(tmp_path) == []


def test_a_failed_backup_skips_the_retention(tmp_path: Path) -> None:
    env = {**DESTINATION, "SBO_BACKUP_RETENTION_DAYS": "7"}
    done = run_script(tmp_path, BASE_BACKUP_SCRIPT, env, exit_codes={"backup": 4})
    assert done.returncode == 4
    assert [call[0] for call in calls(tmp_path)] == ["barman-cloud-backup"]


# ---- restore.sh's choice of backup and its refusals ------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)


def listed(backup_id: str, ended: datetime, end_lsn: str, status: str = "DONE") -> dict[str, str]:
    """One entry as barman-cloud-backup-list --format json writes it (times as ctime, to the second)."""
    return {"backup_id": backup_id, "end_time": ended.strftime("%a %b %e %H:%M:%S %Y"), "end_xlog": end_lsn,
            "status": status}  # fmt: skip


LISTING = [
    listed("old", NOW - timedelta(days=2), "0/5000100"),
    listed("failed", NOW - timedelta(days=1, hours=1), "0/6000100", status="FAILED"),
    listed("new", NOW - timedelta(days=1), "0/A000100"),
]


def choose(backups: list[dict[str, str]], **target: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "SBO_RESTORE_SOURCE": "s3://backups/shop", **target}
    program = backup_scripts._CHOOSE_BACKUP
    python = shutil.which("python3") or "python3"
    return subprocess.run(
        [python, "-c", program], input=json.dumps({"backups_list": backups}), env=env,
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("target", "backup", "recovery_target"),
    [
        ({}, "new", "latest"),
        ({"SBO_RESTORE_TARGET_TIME": (NOW - timedelta(hours=36)).isoformat()}, "old", None),
        ({"SBO_RESTORE_TARGET_TIME": (NOW - timedelta(hours=1)).isoformat()}, "new", None),
        ({"SBO_RESTORE_TARGET_LSN": "0/7000000"}, "old", "0/7000000"),
        ({"SBO_RESTORE_TARGET_LSN": "0/b000000"}, "new", "0/B000000"),
    ],
)
def test_restore_picks_the_newest_completed_backup_that_ends_by_the_target(
    target: dict[str, str], backup: str, recovery_target: str | None
) -> None:
    done = choose(LISTING, **target)
    assert done.returncode == 0, done.stderr
    chosen, written = done.stdout.splitlines()
    assert chosen == backup
    if recovery_target is not None:
        assert written == recovery_target


def test_restore_writes_the_target_time_in_utc() -> None:
    target = (NOW - timedelta(hours=1)).astimezone(timezone(timedelta(hours=2)))
    done = choose(LISTING, SBO_RESTORE_TARGET_TIME=target.replace(microsecond=5).isoformat())
    assert done.stdout.splitlines()[1] == (NOW - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S.000005+00")


@pytest.mark.parametrize(
    ("backups", "target", "code", "reason"),
    [
        (LISTING, {"SBO_RESTORE_TARGET_TIME": (NOW - timedelta(days=3)).isoformat()},
         RESTORE_EXIT_BEFORE_FIRST_RECOVERABILITY_POINT, "is before the first recoverability point"),
        (LISTING, {"SBO_RESTORE_TARGET_LSN": "0/4000000"},
         RESTORE_EXIT_BEFORE_FIRST_RECOVERABILITY_POINT, "before the first recoverability point 0/5000100"),
        (LISTING, {"SBO_RESTORE_TARGET_TIME": (NOW + timedelta(days=1)).isoformat()},
         RESTORE_EXIT_TARGET_NOT_ARCHIVED, "is in the future"),
        (LISTING, {"SBO_RESTORE_TARGET_TIME": "yesterday"},
         RESTORE_EXIT_BAD_CONFIGURATION, "not an ISO 8601 time"),
        (LISTING, {"SBO_RESTORE_TARGET_LSN": "0/ABC'; x"}, RESTORE_EXIT_BAD_CONFIGURATION, "not an LSN"),
        (LISTING, {"SBO_RESTORE_TARGET_LSN": "0/1", "SBO_RESTORE_TARGET_TIME": NOW.isoformat()},
         RESTORE_EXIT_BAD_CONFIGURATION, "not both"),
        ([], {}, RESTORE_EXIT_NO_BACKUP, "no completed backup in s3://backups/shop"),
        ([LISTING[1]], {}, RESTORE_EXIT_NO_BACKUP, "no completed backup"),
    ],
)  # fmt: skip
def test_restore_refuses_an_unreachable_target_with_one_line_and_its_own_code(
    backups: list[dict[str, str]], target: dict[str, str], code: int, reason: str
) -> None:
    done = choose(backups, **target)
    assert done.returncode == code
    (line,) = done.stderr.splitlines()
    assert line.startswith("restore.sh: ")
    assert reason in line
    assert done.stdout == ""


@pytest.mark.parametrize("window", ["4 WEEKS", "6 MONTHS", "30 DAYS"])
def test_base_backup_applies_a_recovery_window_in_weeks_or_months(tmp_path: Path, window: str) -> None:
    done = run_script(tmp_path, BASE_BACKUP_SCRIPT, {**DESTINATION, "SBO_BACKUP_RETENTION_WINDOW": window})
    assert done.returncode == 0, done.stderr
    assert calls(tmp_path)[-1][:3] == [
        "barman-cloud-backup-delete",
        "--retention-policy",
        f"RECOVERY WINDOW OF {window}",
    ]


@pytest.mark.parametrize(
    "window", ["0 DAYS", "4 YEARS", "4  WEEKS", "4 WEEKS; x", "WEEKS", "04 DAYS", "-1 DAYS"]
)
def test_base_backup_refuses_a_malformed_recovery_window_before_backing_up(
    tmp_path: Path, window: str
) -> None:
    done = run_script(tmp_path, BASE_BACKUP_SCRIPT, {**DESTINATION, "SBO_BACKUP_RETENTION_WINDOW": window})
    assert done.returncode == 2
    assert "SBO_BACKUP_RETENTION_WINDOW" in done.stderr
    assert calls(tmp_path) == []


def test_base_backup_refuses_both_retention_variables(tmp_path: Path) -> None:
    env = {**DESTINATION, "SBO_BACKUP_RETENTION_WINDOW": "4 WEEKS", "SBO_BACKUP_RETENTION_DAYS": "7"}
    assert run_script(tmp_path, BASE_BACKUP_SCRIPT, env).returncode == 2
    assert calls(tmp_path) == []
