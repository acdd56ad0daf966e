"""The recovery check Job's script against a real MinIO and real barman-cloud: its verdict for a
reachable target, one before the first recoverability point, and an empty source."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from devkit.backup_rig import BackupRig
from sbo_operator.api.conditions import Reason
from sbo_operator.builders.backup import RECOVERY_CHECK_SCRIPT, RECOVERY_CHECK_SCRIPT_NAME
from sbo_operator.recovery_check import RecoveryVerdict, parse_verdict

pytestmark = pytest.mark.integration


def check(rig: BackupRig, **target: str) -> tuple[subprocess.CompletedProcess[str], RecoveryVerdict | None]:
    (rig.scripts_dir / RECOVERY_CHECK_SCRIPT_NAME).write_text(RECOVERY_CHECK_SCRIPT)
    termination = rig.scripts_dir / "termination-log"
    termination.unlink(missing_ok=True)
    done = subprocess.run(
        ["sh", str(rig.scripts_dir / RECOVERY_CHECK_SCRIPT_NAME)],
        env={
            **rig.base_env(),
            **rig.restore_env(),
            "SBO_PG_RUNTIME_DIR": str(rig.scripts_dir),
            "SBO_TERMINATION_LOG": str(termination),
            **target,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    verdict = parse_verdict(termination.read_text()) if termination.exists() else None
    return done, verdict


def test_the_verdicts_on_a_real_store(rig: BackupRig) -> None:
    done, verdict = check(rig)
    assert done.returncode == 0, done.stderr
    assert verdict is not None
    assert verdict.reason == Reason.RECOVERY_SOURCE_EMPTY, verdict

    primary = rig.start_primary()
    before = datetime.now(UTC) - timedelta(minutes=5)
    rig.base_backup(primary)
    done, verdict = check(rig)
    assert done.returncode == 0, done.stderr
    assert verdict is not None
    assert verdict.recoverable, verdict
    assert verdict.first_recoverability_point is not None
    first = datetime.fromisoformat(verdict.first_recoverability_point.replace("Z", "+00:00"))
    assert before < first <= datetime.now(UTC) + timedelta(seconds=1)

    _, early = check(rig, SBO_RESTORE_TARGET_TIME=before.isoformat())
    assert early is not None
    assert early.reason == Reason.RECOVERY_TARGET_UNREACHABLE
    assert early.first_recoverability_point == verdict.first_recoverability_point
    _, later = check(rig, SBO_RESTORE_TARGET_TIME=(first + timedelta(seconds=1)).isoformat())
    assert later is not None
    assert later.recoverable, later
