"""What the operator remembers of objects: small projections, not whole bodies.

The indices keep one projection per ScalableBackend and per child. Dropping
managedFields and Secret data keeps the operator's memory proportional to
what reconcile compares, and keeps secret values out of memory entirely.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sbo_operator.api.v1alpha1 import KIND
from sbo_operator.postgres_probe import InstanceProbe
from sbo_operator.postgres_roles import Decision
from sbo_operator.workqueue import Key

if TYPE_CHECKING:
    from sbo_operator.recovery_check import RecoveryVerdict

# The default of SBO_POSTGRES_ARCHIVE_STATUS_SECONDS (Snapshot.archive_status_interval).
ARCHIVE_STATUS_INTERVAL = timedelta(minutes=5)
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "generation",
    "labels",
    "annotations",
    "ownerReferences",
    "deletionTimestamp",
)


def compact(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object that reconcile and status need."""
    metadata = body.get("metadata", {})
    kept: dict[str, Any] = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {key: _plain(metadata[key]) for key in KEPT_METADATA if metadata.get(key) is not None},
    }
    if body.get("kind") == "Secret":
        # `kubectl apply` copies the whole object, values included, into this
        # annotation. Secrets are only ever created, so nothing needs it.
        annotations = kept["metadata"].get("annotations", {})
        annotations.pop(LAST_APPLIED_ANNOTATION, None)
        if not annotations:
            kept["metadata"].pop("annotations", None)
    for key, value in body.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if key in ("data", "stringData") and body.get("kind") == "Secret":
            kept["dataKeys"] = sorted(value or {})  # which keys exist, never their values
            continue
        kept[key] = _plain(value)
    return kept


def compact_backend(body: Mapping[str, Any]) -> dict[str, Any]:
    """A ScalableBackend's parts, with its resourceVersion: it tells whether a status the
    operator wrote has come back through the watch yet (children do without, to save memory)."""
    kept = compact(body)
    version = body.get("metadata", {}).get("resourceVersion")
    if version is not None:
        kept["metadata"]["resourceVersion"] = str(version)
    return kept


def _plain(value: Any) -> Any:
    """Kopf hands out read-only views; the indices keep plain, independent copies.

    Strings are interned: the children of all backends repeat the same keys and most values
    (field names, images, probes, label keys), and every watch event decodes fresh copies.
    Sharing one copy cuts the indices' memory by about 40% (make bench-reconcile).
    """
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, Mapping):
        return {sys.intern(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def owner_key(body: Mapping[str, Any]) -> Key | None:
    """The ScalableBackend a child belongs to, from its controller owner reference."""
    metadata = body.get("metadata", {})
    for ref in metadata.get("ownerReferences") or ():
        if ref.get("kind") == KIND and ref.get("controller"):
            return Key(metadata.get("namespace", ""), ref["name"])
    return None


def compact_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the PostgreSQL election needs of a pod: identity, labels, Ready, deletion, address."""
    metadata = body.get("metadata", {})
    status = body.get("status") or {}
    ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
    kept: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {key: _plain(metadata[key]) for key in POD_METADATA if metadata.get(key) is not None},
        "status": {},
    }
    if ready is not None:
        kept["status"]["ready"] = {
            "status": ready.get("status"),
            "lastTransitionTime": ready.get("lastTransitionTime"),
        }
    if status.get("podIP"):
        kept["status"]["podIP"] = status["podIP"]
    return kept


# annotations: the backup request the operator last left on the primary (backup_schedule).
# resourceVersion: whether a label or a deletion the operator sent has come back through the watch.
POD_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "labels",
    "annotations",
    "ownerReferences",
    "deletionTimestamp",
)


def pod_owner_key(body: Mapping[str, Any]) -> Key | None:
    """The ScalableBackend a PostgreSQL pod belongs to: its instance label (the StatefulSet owns it)."""
    metadata = body.get("metadata", {})
    instance = (metadata.get("labels") or {}).get("app.kubernetes.io/instance")
    return Key(metadata.get("namespace", ""), instance) if instance else None


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One ScalableBackend and its children, as last seen by the watches.

    ``pods``: its PostgreSQL pods by name (:func:`compact_pod`), which it does not own (their
    StatefulSets do) but labels. ``roles``: the PostgreSQL election's outcome for this pass
    (``postgres_roles.Decision``), and ``probes`` what each instance answered the operator
    (``postgres_probe``), both set by the reconciler before the status is computed.
    """

    backend: dict[str, Any]
    children: Mapping[tuple[str, str], dict[str, Any]]  # (kind, name) -> object
    pods: Mapping[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    roles: Decision | None = None
    probes: Mapping[str, InstanceProbe] = dataclasses.field(default_factory=dict)
    # A restored backend's recovery check, once finished (recovery_check.RecoveryVerdict).
    recovery: RecoveryVerdict | None = None
    # The operator's setting: how often at most the archived WAL the status shows moves on
    # (components.backup), set by the reconciler with the probes.
    archive_status_interval: timedelta = ARCHIVE_STATUS_INTERVAL

    def child(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.children.get((kind, name))

    def with_child(self, body: Mapping[str, Any]) -> Snapshot:
        """This snapshot plus a child the reconciler just created (before the watch brings it)."""
        key = (body["kind"], body["metadata"]["name"])
        return dataclasses.replace(self, children={**self.children, key: compact(body)})
