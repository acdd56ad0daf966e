"""A restored backend: the check Job's script and verdict, the StatefulSet held for it, the
restore init container, and the conditions a bad target gives (never a crash loop)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sbo_operator.api.conditions import Reason
from sbo_operator.builders.backup import (
    RECOVERY_CHECK_SCRIPT,
    RESTORE_INSTANCE_SCRIPT,
    build_recovery_check_job,
)
from sbo_operator.builders.images import OFFICIAL_DATA_SERVICE_IMAGES
from sbo_operator.builders.postgres import build_postgres_config_map, build_postgres_statefulset
from sbo_operator.components.backup import Backup
from sbo_operator.components.base import OperatorInputs
from sbo_operator.components.postgres import Postgres
from sbo_operator.recovery_check import RecoveryVerdict, job_outcome, parse_verdict
from sbo_operator.status import compute_status, status_patch
from tests.unit.factories import backend_from, restricted_violations, snapshot
from tests.unit.shipping.support import tool

pytestmark = pytest.mark.unit

SOURCE = {
    "destination": "s3://backups/shop",
    "endpointURL": "http://minio.storage.svc:9000",
    "credentials": {"secretName": "source-keys"},
    "ca": {"secretName": "minio-ca"},
}
RESTORED = {"postgres": {"readReplicas": 1, "bootstrap": {"recovery": {"source": SOURCE, "target": {}}}}}
NOW = datetime.now(UTC).replace(microsecond=0)


def body(spec: dict[str, Any]) -> dict[str, Any]:
    return backend_from(spec).model_dump(mode="json", by_alias=True, exclude_none=True) | {
        "metadata": {"name": "shop", "namespace": "demo", "uid": "uid", "generation": 1}
    }


# ---- the check script, against a stand-in barman-cloud-backup-list ---------------------------------


def listed(backup_id: str, ended: datetime) -> dict[str, str]:
    end_time = ended.strftime("%a %b %e %H:%M:%S %Y")
    return {"backup_id": backup_id, "end_time": end_time, "end_xlog": "0/5000100", "status": "DONE"}


def run_check(tmp_path: Path, backups: list[dict[str, str]] | None, **target: str) -> tuple[int, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    listing = tmp_path / "listing.json"
    if backups is not None:
        listing.write_text(json.dumps({"backups_list": backups}))
    stub = bin_dir / "barman-cloud-backup-list"
    stub.write_text(f'#!/bin/sh\ncat "{listing}"\n')
    stub.chmod(0o755)
    script = tmp_path / "recovery-check.sh"
    script.write_text(RECOVERY_CHECK_SCRIPT)
    termination = tmp_path / "termination-log"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SBO_RESTORE_SOURCE": "s3://backups/shop",
        "SBO_RESTORE_SERVER_NAME": "postgres",
        "SBO_PG_RUNTIME_DIR": str(tmp_path),
        "SBO_TERMINATION_LOG": str(termination),
        **target,
    }
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=False)
    lines = termination.read_text().splitlines() if termination.exists() else []
    return done.returncode, lines


def test_the_check_scripts_are_strict_posix_sh_and_shellcheck_clean(tmp_path: Path) -> None:
    for name, text in (("check", RECOVERY_CHECK_SCRIPT), ("restore", RESTORE_INSTANCE_SCRIPT)):
        assert text.startswith("#!/bin/sh\nset -eu\n")
        path = tmp_path / name
        path.write_text(text)
        done = subprocess.run(
            [str(tool("shellcheck")), "-s", "sh", str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout


def test_a_reachable_target_is_verdict_zero_with_the_first_recoverability_point(tmp_path: Path) -> None:
    old = NOW - timedelta(days=2)
    code, lines = run_check(tmp_path, [listed("old", old), listed("new", NOW - timedelta(days=1))])
    assert code == 0
    assert lines[0] == "0"
    assert lines[1] == (old + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "backup new" in lines[2]
    verdict = parse_verdict("\n".join(lines))
    assert verdict.recoverable


def test_a_time_before_the_first_backup_is_unreachable_naming_that_point(tmp_path: Path) -> None:
    old = NOW - timedelta(days=2)
    early = (old - timedelta(hours=1)).isoformat()
    code, lines = run_check(tmp_path, [listed("old", old)], SBO_RESTORE_TARGET_TIME=early)
    assert code == 0, "a verdict, not a failed Job"
    verdict = parse_verdict("\n".join(lines))
    assert verdict.reason == Reason.RECOVERY_TARGET_UNREACHABLE
    assert "before the first recoverability point" in verdict.message
    assert verdict.first_recoverability_point == (old + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_time_in_the_future_is_unreachable(tmp_path: Path) -> None:
    future = (NOW + timedelta(days=1)).isoformat()
    _, lines = run_check(tmp_path, [listed("old", NOW - timedelta(days=2))], SBO_RESTORE_TARGET_TIME=future)
    verdict = parse_verdict("\n".join(lines))
    assert verdict.reason == Reason.RECOVERY_TARGET_UNREACHABLE
    assert "in the future" in verdict.message


def test_a_source_without_backups_is_empty(tmp_path: Path) -> None:
    _, lines = run_check(tmp_path, [])
    verdict = parse_verdict("\n".join(lines))
    assert verdict.reason == Reason.RECOVERY_SOURCE_EMPTY
    assert verdict.first_recoverability_point is None


def test_a_store_that_cannot_be_listed_fails_the_job(tmp_path: Path) -> None:
    code, lines = run_check(tmp_path, None)
    assert code != 0
    assert lines == []


def test_job_outcomes() -> None:
    assert job_outcome(None) is None
    assert job_outcome({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "Complete"
    assert job_outcome({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == "Failed"
    assert job_outcome({"status": {"active": 1}}) is None


# ---- the builders ------------------------------------------------------------------------------------


def test_the_check_job_runs_once_restricted_with_the_source_only() -> None:
    job = build_recovery_check_job(
        backend_from(RESTORED), images=OFFICIAL_DATA_SERVICE_IMAGES, config_dir="/etc/sbo-postgres"
    )
    assert job is not None
    assert job["metadata"]["name"] == "shop-recovery-check"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert restricted_violations(pod) == []
    [container] = pod["containers"]
    assert container["image"] == "postgres:16"
    env = {v["name"]: v for v in container["env"]}
    assert env["SBO_RESTORE_SOURCE"]["value"] == "s3://backups/shop"
    assert env["SBO_RESTORE_SERVER_NAME"]["value"] == "postgres"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {
        "secretKeyRef": {"name": "source-keys", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert env["AWS_CA_BUNDLE"]["value"] == "/etc/sbo-restore-ca/ca.crt"
    assert (
        build_recovery_check_job(backend_from({}), images=OFFICIAL_DATA_SERVICE_IMAGES, config_dir="/x")
        is None
    )


def test_instance_pods_restore_before_the_bootstrap_without_the_apps_passwords() -> None:
    statefulset = build_postgres_statefulset(backend_from(RESTORED))
    assert statefulset is not None
    pod = statefulset["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["restore", "bootstrap"]
    restore = pod["initContainers"][0]
    assert restore["command"] == ["sh", "/etc/sbo-postgres/restore-instance.sh"]
    env = {v["name"]: v for v in restore["env"]}
    assert env["SBO_RESTORE_SOURCE"]["value"] == "s3://backups/shop"
    assert env["SBO_PG_ROLE_FILE"]["value"] == "/etc/sbo-podinfo/role"
    assert env["PGDATA"]["value"] == "/var/lib/postgresql/data/pgdata"
    assert not [n for n in env if n.startswith(("SBO_APP_", "SBO_OPERATOR_", "SBO_REPLICATION_"))]
    assert "restore-ca" in {m["name"] for m in restore["volumeMounts"]}
    assert restricted_violations(pod) == []
    data = build_postgres_config_map(backend_from(RESTORED))
    assert data is not None
    assert {"recovery-check.sh", "restore-instance.sh", "restore.sh", "wal-restore.sh"} <= set(data["data"])


# ---- held until the verdict --------------------------------------------------------------------------


def planned(
    spec: dict[str, Any], verdict: RecoveryVerdict | None, *children: dict[str, Any]
) -> dict[str, Any]:
    backend = backend_from(spec)
    current = dataclasses.replace(snapshot(body(spec), *children), recovery=verdict)
    postgres_plan = Postgres().plan(backend, current, operator=OperatorInputs())
    backup_plan = Backup().plan(backend, current, operator=OperatorInputs())
    status = status_patch(
        compute_status(
            backend,
            current,
            applied=(),
            waiting={},
            problems=list(backup_plan.problems),
            now="2026-01-31T12:00:00Z",
        )
    )
    return {
        "kinds": sorted(m["kind"] for m in [*postgres_plan.manifests, *backup_plan.manifests]),
        "problems": [(p.reason, p.message) for p in backup_plan.problems],
        "postgres_ready": next(c for c in status["conditions"] if c["type"] == "PostgresReady"),
    }


def test_the_instances_wait_for_the_check() -> None:
    result = planned(RESTORED, None)
    assert "StatefulSet" not in result["kinds"]
    assert "Job" in result["kinds"]
    assert result["problems"] == []
    assert (result["postgres_ready"]["status"], result["postgres_ready"]["reason"]) == ("False", "Recovering")
    assert "s3://backups/shop" in result["postgres_ready"]["message"]


def test_an_unreachable_target_holds_the_instances_with_the_first_point_and_the_fix() -> None:
    verdict = RecoveryVerdict(
        Reason.RECOVERY_TARGET_UNREACHABLE,
        "recovery target time 2026-01-01T00:00:00+00:00 is before the first recoverability point "
        "2026-01-29T03:01:01+00:00 of s3://backups/shop",
        "2026-01-29T03:01:01Z",
    )
    result = planned(RESTORED, verdict)
    assert "StatefulSet" not in result["kinds"]
    [(reason, message)] = result["problems"]
    assert reason == "RecoveryTargetUnreachable"
    assert "at or after the first recoverability point 2026-01-29T03:01:01Z" in message
    assert "bootstrap is immutable" in message
    ready = result["postgres_ready"]
    assert (ready["status"], ready["reason"]) == ("False", "RecoveryTargetUnreachable")
    assert "2026-01-29T03:01:01Z" in ready["message"]


def test_an_empty_source_says_to_take_a_backup_first() -> None:
    result = planned(
        RESTORED, RecoveryVerdict(Reason.RECOVERY_SOURCE_EMPTY, "no completed backup in s3://backups/shop")
    )
    [(reason, message)] = result["problems"]
    assert reason == "RecoverySourceEmpty"
    assert "take a base backup into s3://backups/shop first" in message


def test_a_reachable_target_creates_the_instances_and_the_check_goes() -> None:
    result = planned(RESTORED, RecoveryVerdict(None, "backup new is restored, then WAL replayed to latest"))
    assert "StatefulSet" in result["kinds"]
    assert "Job" not in result["kinds"]
    assert result["problems"] == []


def test_once_the_instances_exist_nothing_holds_them_again() -> None:
    statefulset = build_postgres_statefulset(backend_from(RESTORED))
    assert statefulset is not None
    result = planned(RESTORED, None, statefulset)
    assert "StatefulSet" in result["kinds"]
    assert "Job" not in result["kinds"]


# ---- restore-instance.sh, against a stand-in restore.sh ----------------------------------------------


def run_restore_instance(
    tmp_path: Path, *, role: str, restore_exit: int, has_data: bool = False, timeout: float = 10
) -> tuple[int | None, str, bool]:
    """(exit code or None if still running at ``timeout``, stderr, whether restore.sh ran)."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    ran = tmp_path / "restore-ran"
    (scripts / "restore.sh").write_text(f'#!/bin/sh\ntouch "{ran}"\nexit {restore_exit}\n')
    pgdata = tmp_path / "pgdata"
    if has_data:
        pgdata.mkdir()
        (pgdata / "PG_VERSION").write_text("15\n")
    role_file = tmp_path / "role"
    role_file.write_text(role)
    script = tmp_path / "restore-instance.sh"
    script.write_text(RESTORE_INSTANCE_SCRIPT)
    env = {
        "PATH": os.environ["PATH"],
        "PGDATA": str(pgdata),
        "SBO_PG_ROLE_FILE": str(role_file),
        "SBO_BACKUP_SCRIPTS_DIR": str(scripts),
    }
    process = subprocess.Popen(["sh", str(script)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = process.communicate(timeout=timeout)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        process.terminate()  # SIGTERM, as at the pod's deletion: it ends at once, with its sleep
        _, stderr = process.communicate(timeout=5)
        code = None
    return code, stderr, ran.exists()


def test_the_primary_with_an_empty_pgdata_restores(tmp_path: Path) -> None:
    code, stderr, ran = run_restore_instance(tmp_path, role="primary", restore_exit=0)
    assert (code, ran) == (0, True), stderr


@pytest.mark.parametrize(("role", "has_data"), [("replica", False), ("primary", True)])
def test_a_replica_or_a_data_directory_restores_nothing(tmp_path: Path, role: str, has_data: bool) -> None:
    code, stderr, ran = run_restore_instance(tmp_path, role=role, restore_exit=0, has_data=has_data)
    assert (code, ran) == (0, False), stderr


def test_an_unreachable_target_holds_instead_of_crash_looping(tmp_path: Path) -> None:
    code, stderr, ran = run_restore_instance(tmp_path, role="primary", restore_exit=4, timeout=3)
    assert ran
    assert code is None, "still waiting: the init container does not exit, so no restart loop"
    assert "cannot reach its target (exit 4" in stderr


def test_another_failure_exits_to_be_retried(tmp_path: Path) -> None:
    code, _, ran = run_restore_instance(tmp_path, role="primary", restore_exit=1)
    assert (code, ran) == (1, True)
