"""Security contexts that pass the Pod Security "restricted" profile.

Every pod runs as a numeric non-root uid, with the RuntimeDefault seccomp profile; every
container drops all capabilities, may not escalate privileges and has a read-only root
filesystem (writable paths are emptyDir or PersistentVolumeClaim mounts).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DATA_SERVICE_UID",
    "pod_security_context",
    "restricted_container_security_context",
]

# The official postgres and redis (Debian) images both create their user as uid/gid 999.
DATA_SERVICE_UID = 999


def pod_security_context(*, uid: int, fs_group: int | None = None) -> dict[str, Any]:
    """Pod-level securityContext: numeric non-root user, RuntimeDefault seccomp."""
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group is not None:
        # Volumes become writable by the group; OnRootMismatch skips the recursive chown on
        # every restart once the volume root is right (and keeps PGDATA's 0700 intact).
        context["fsGroup"] = fs_group
        context["fsGroupChangePolicy"] = "OnRootMismatch"
    return context


def restricted_container_security_context() -> dict[str, Any]:
    """Container-level securityContext for the restricted profile, read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
