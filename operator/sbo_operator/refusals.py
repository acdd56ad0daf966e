"""What the API server's refusal of a child write means, and who can fix it. Pure.

A refused write (a ResourceQuota, RBAC, an admission webhook or policy, an invalid object)
will be refused again until a person acts, so it is a Problem, reported as Stalled, never an
exception: the rest of the backend converges, the status is written, and the reconcile is
retried after a growing delay. The message names the object, the API server's reason and the fix.
"""

from __future__ import annotations

import re

from sbo_operator.api.conditions import Reason
from sbo_operator.components.base import Problem

__all__ = ["refusal_problem"]

_QUOTA = re.compile(r"exceeded quota: ([^,\s]+)")
_RBAC = re.compile(r'User "[^"]*" cannot ')
_ADMISSION = ("admission webhook", "ValidatingAdmissionPolicy", "denied request", "denied the request")


def refusal_problem(*, verb: str, kind: str, name: str, namespace: str, code: int, message: str) -> Problem:
    """The Problem for the API server refusing to `verb` (create, apply, delete, patch) a child."""
    what = f"the API server refused to {verb} {kind} {name} (HTTP {code}): {message}"
    if quota := _QUOTA.search(message):
        return Problem(
            Reason.QUOTA_EXCEEDED,
            f"{what}; raise or remove ResourceQuota {namespace}/{quota.group(1)}, or free up what it counts",
        )
    if code == 403 and _RBAC.search(message):
        fix = (
            f"grant the operator's ServiceAccount `{verb}` on {kind} in {namespace} "
            "(the Helm chart's RBAC rules do)"
        )
    elif any(marker in message for marker in _ADMISSION):
        fix = f"change the admission webhook or policy named above, or exempt namespace {namespace} from it"
    elif code == 422:
        fix = "fix the spec field the message names; if it names none, report it as an operator bug"
    else:
        fix = "fix what the message names; the operator retries with a growing delay"
    return Problem(Reason.CHILD_REJECTED, f"{what}; {fix}")
