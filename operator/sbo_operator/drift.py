"""Deciding, without I/O, whether a child object needs to be applied.

Two checks, so that a steady state sends no writes and drift is still repaired:

* the desired manifest's hash is stored on the child in an annotation; a new
  hash means the spec changed (this also catches fields we stopped setting,
  which a comparison of desired against actual could not see);
* the desired manifest must be a *derivative* of the actual object: every
  field we set has our value, while fields the API server defaulted are
  ignored. This catches hand edits such as `kubectl edit` or `kubectl scale`.

The comparison is against what the server *stores*, and the server omits a
field that holds Go's zero value (`omitempty`): `{name: X, value: ""}` comes
back as `{name: X}`. An absent field therefore matches a desired zero value;
otherwise such a child would be re-applied on every pass, forever.
"""

from __future__ import annotations

import copy
import hashlib
import json
from enum import StrEnum
from typing import Any

APPLIED_HASH_ANNOTATION = "sbo.dev/applied-hash"

# Metadata that we set and therefore compare; the rest belongs to the server.
COMPARED_METADATA = ("labels", "annotations", "ownerReferences")


class ApplyReason(StrEnum):
    MISSING = "Missing"
    CHANGED = "Changed"
    DRIFTED = "Drifted"


def manifest_hash(manifest: dict[str, Any]) -> str:
    """A stable hash of what we would send, ignoring the hash annotation itself."""
    stripped = copy.deepcopy(manifest)
    metadata = stripped.get("metadata", {})
    annotations = metadata.get("annotations")
    if annotations is not None:
        annotations.pop(APPLIED_HASH_ANNOTATION, None)
        if not annotations:
            del metadata["annotations"]
    canonical = json.dumps(stripped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def with_applied_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of the manifest that carries its own hash in an annotation."""
    stamped = copy.deepcopy(manifest)
    annotations = stamped.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[APPLIED_HASH_ANNOTATION] = manifest_hash(manifest)
    return stamped


def apply_reason(desired: dict[str, Any], actual: dict[str, Any] | None) -> ApplyReason | None:
    """Why `desired` (stamped with its hash) must be applied over `actual`, or None."""
    if actual is None:
        return ApplyReason.MISSING
    actual_hash = actual.get("metadata", {}).get("annotations", {}).get(APPLIED_HASH_ANNOTATION)
    desired_hash = desired["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]
    if actual_hash != desired_hash:
        return ApplyReason.CHANGED
    if not is_derivative(_compared_part(desired), _compared_part(actual)):
        return ApplyReason.DRIFTED
    return None


def _compared_part(manifest: dict[str, Any]) -> dict[str, Any]:
    metadata = manifest.get("metadata", {})
    part = {key: value for key, value in manifest.items() if key not in ("metadata", "status")}
    part["metadata"] = {key: metadata[key] for key in COMPARED_METADATA if key in metadata}
    return part


def is_derivative(desired: Any, actual: Any) -> bool:
    """True when `actual` holds every value of `desired` (extra keys allowed).

    Lists must match element by element: a container or port added by hand is
    drift, while a field the server defaulted inside an element is not.
    """
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return False
        return all(
            is_derivative(value, actual[key]) if key in actual else is_omitted_when_stored(value)
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(desired) != len(actual):
            return False
        return all(is_derivative(d, a) for d, a in zip(desired, actual, strict=True))
    if isinstance(desired, bool) or isinstance(actual, bool):
        return desired is actual
    if isinstance(desired, int | float) and isinstance(actual, int | float):
        return float(desired) == float(actual)
    return bool(desired == actual)


def is_omitted_when_stored(value: Any) -> bool:
    """Whether the API server may drop a field with this value: Go's zero values under `omitempty`."""
    if value is None or value is False:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == 0
    return isinstance(value, str | list | dict) and len(value) == 0
