"""Generated credentials and the pods that read them. Pure.

A generated Secret is created once and never rotated; but a Secret deleted by hand is created
again, with new passwords. Its new uid is then in every pod template that reads it
(``builders.pods.annotate_secret_uids``), so those pods roll: PostgreSQL's primary re-applies
the passwords to its roles at start, Redis takes requirepass from its env, and every client
reads the new values. Nothing here ever sees a value: the snapshot keeps only a Secret's keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sbo_operator.builders.pods import secrets_read
from sbo_operator.snapshot import Snapshot

__all__ = ["regenerated_message", "secret_readers", "secret_uids"]

# A Job is not rolled: a new migrations Job (its name follows its pod template) replaces it.
ROLLED_KINDS = ("Deployment", "StatefulSet")


def secret_uids(snapshot: Snapshot) -> dict[str, str]:
    """The uid of each Secret the backend owns (only the generated ones), by name."""
    return {
        name: child["metadata"]["uid"]
        for (kind, name), child in sorted(snapshot.children.items())
        if kind == "Secret" and child["metadata"].get("uid")
    }


def secret_readers(snapshot: Snapshot, secret: str) -> list[str]:
    """``Kind name`` of each Deployment and StatefulSet whose pods read ``secret`` through their env."""
    return [
        f"{kind} {name}"
        for (kind, name), child in sorted(snapshot.children.items())
        if kind in ROLLED_KINDS and secret in set(secrets_read(_pod_spec(child)))
    ]


def regenerated_message(secret: str, readers: Sequence[str]) -> str:
    """The Warning event for a Secret created again while pods read the old one (no values)."""
    return (
        f"Secret {secret} was missing and was generated again with new credentials; rolling "
        f"{', '.join(readers)} so that the servers and every pod use them"
    )


def _pod_spec(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    template: Mapping[str, Any] = (workload.get("spec") or {}).get("template") or {}
    return template.get("spec") or {}
