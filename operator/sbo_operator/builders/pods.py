"""Pieces shared by every pod template: resources, topology spread, config hashes, /tmp."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sbo_operator.api.v1alpha1 import ResourceRequirements

__all__ = [
    "TMP_VOLUME",
    "config_hash",
    "resources_dict",
    "tmp_volume",
    "tmp_volume_mount",
    "topology_spread_constraints",
]

TMP_VOLUME = "tmp"


def resources_dict(resources: ResourceRequirements) -> dict[str, Any]:
    """A container's ``resources``, empty maps left out, keys sorted."""
    result: dict[str, Any] = {}
    if resources.limits:
        result["limits"] = dict(sorted(resources.limits.items()))
    if resources.requests:
        result["requests"] = dict(sorted(resources.requests.items()))
    return result


def topology_spread_constraints(
    labels: Mapping[str, str], *, match_label_keys: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Spread pods over nodes and zones, preferring but never blocking scheduling.

    ``match_label_keys=["pod-template-hash"]`` makes a Deployment's rollout spread the new
    ReplicaSet's pods on their own instead of counting the old ones.
    """
    constraints = []
    for topology_key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone"):
        constraint: dict[str, Any] = {
            "labelSelector": {"matchLabels": dict(sorted(labels.items()))},
            "maxSkew": 1,
            "topologyKey": topology_key,
            "whenUnsatisfiable": "ScheduleAnyway",
        }
        if match_label_keys:
            constraint["matchLabelKeys"] = list(match_label_keys)
        constraints.append(constraint)
    return constraints


def config_hash(data: Mapping[str, str]) -> str:
    """A short, stable hash of ConfigMap data, for a pod template annotation that rolls pods."""
    encoded = json.dumps(dict(data), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def tmp_volume() -> dict[str, Any]:
    """A writable /tmp for containers with a read-only root filesystem."""
    return {"name": TMP_VOLUME, "emptyDir": {}}


def tmp_volume_mount() -> dict[str, Any]:
    return {"name": TMP_VOLUME, "mountPath": "/tmp"}  # noqa: S108 - a private emptyDir, not the host's /tmp
