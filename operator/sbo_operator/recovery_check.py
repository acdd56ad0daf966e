"""The verdict of a restored backend's recovery check: can its target be reached from the source?

Before the instances' StatefulSet exists, the Backup component runs the Job
``<name>-recovery-check`` (``builders.backup``); its one container writes the verdict as its
termination message. This module reads it back (a read of the Job's pod, only while the
StatefulSet is held for it) and parses it; the components turn it into the StatefulSet going
ahead, or a condition naming the first recoverability point and the fix. Never a crash loop: a
bad target holds the StatefulSet, and the check itself runs once (backoffLimit 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sbo_operator.api.conditions import Reason
from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders.backup import RECOVERY_CHECK_CONTAINER, recovery_check_job_name
from sbo_operator.builders.backup_scripts import (
    RESTORE_EXIT_BAD_CONFIGURATION,
    RESTORE_EXIT_BEFORE_FIRST_RECOVERABILITY_POINT,
    RESTORE_EXIT_NO_BACKUP,
    RESTORE_EXIT_TARGET_NOT_ARCHIVED,
)
from sbo_operator.builders.names import child_names
from sbo_operator.kube import Kube
from sbo_operator.snapshot import Snapshot

__all__ = ["RecoveryVerdict", "job_outcome", "parse_verdict", "read_recovery_verdict"]

_REASONS = {
    RESTORE_EXIT_BEFORE_FIRST_RECOVERABILITY_POINT: Reason.RECOVERY_TARGET_UNREACHABLE,
    RESTORE_EXIT_TARGET_NOT_ARCHIVED: Reason.RECOVERY_TARGET_UNREACHABLE,
    RESTORE_EXIT_BAD_CONFIGURATION: Reason.RECOVERY_TARGET_UNREACHABLE,
    RESTORE_EXIT_NO_BACKUP: Reason.RECOVERY_SOURCE_EMPTY,
}


@dataclasses.dataclass(frozen=True)
class RecoveryVerdict:
    """``reason`` None: recoverable. Else why not, the first recoverability point, and the message."""

    reason: Reason | None
    message: str
    first_recoverability_point: str | None = None

    @property
    def recoverable(self) -> bool:
        return self.reason is None


def parse_verdict(termination_message: str) -> RecoveryVerdict:
    """The check container's three lines: exit code of the choice, first point, why."""
    lines = [*termination_message.splitlines(), "", "", ""]
    code, first, why = lines[0].strip(), lines[1].strip() or None, lines[2].strip()
    if code == "0":
        return RecoveryVerdict(None, why, first)
    reason = _REASONS.get(int(code)) if code.isdigit() else None
    if reason is None:
        return RecoveryVerdict(Reason.RECOVERY_CHECK_FAILED, termination_message.strip()[-500:], first)
    return RecoveryVerdict(reason, why, first)


def job_outcome(job: Mapping[str, Any] | None) -> str | None:
    """ "Complete" or "Failed" once the Job finished; None while it runs or does not exist."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or ():
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def _termination_message(pod: Mapping[str, Any]) -> str | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or ():
        if status.get("name") == RECOVERY_CHECK_CONTAINER:
            terminated = (status.get("state") or {}).get("terminated") or {}
            message = terminated.get("message")
            return str(message) if message is not None else ""
    return None


async def read_recovery_verdict(
    kube: Kube, backend: ScalableBackend, snapshot: Snapshot
) -> RecoveryVerdict | None:
    """The finished check's verdict while the StatefulSet waits for it; None otherwise (not
    restoring, already past it, or the check still running)."""
    postgres = backend.spec.postgres
    if not postgres.enabled or postgres.bootstrap is None or postgres.bootstrap.recovery is None:
        return None
    if snapshot.child("StatefulSet", child_names(backend).postgres_instances) is not None:
        return None
    name = recovery_check_job_name(backend)
    outcome = job_outcome(snapshot.child("Job", name))
    if outcome is None:
        return None
    page = await kube.list_page(
        "v1",
        "Pod",
        namespace=backend.metadata.namespace,
        label_selector=f"job-name={name}",
        limit=10,
        continue_token=None,
    )
    messages = [m for m in (_termination_message(pod) for pod in page.get("items") or ()) if m is not None]
    if outcome == "Failed" or not messages:
        why = messages[0].strip()[-500:] if messages else "its pod is gone"
        return RecoveryVerdict(
            Reason.RECOVERY_CHECK_FAILED,
            f"the recovery check Job {name} failed: {why}; fix the source (endpoint, credentials, CA), "
            f"then delete the Job to check again",
        )
    return parse_verdict(messages[0])
