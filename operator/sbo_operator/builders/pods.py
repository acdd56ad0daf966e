"""Pieces shared by every pod template: resources, topology spread, config hashes, Secret uids, /tmp."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from sbo_operator.api.v1alpha1 import ResourceRequirements
from sbo_operator.builders.labels import SECRET_UIDS_ANNOTATION

__all__ = [
    "NO_SECRET_UIDS",
    "TMP_VOLUME",
    "annotate_secret_uids",
    "config_hash",
    "resources_dict",
    "secrets_read",
    "tmp_volume",
    "tmp_volume_mount",
    "topology_spread_constraints",
]

TMP_VOLUME = "tmp"
# The default of the workload builders' ``secret_uids``: no Secret identities, no annotation.
NO_SECRET_UIDS: Mapping[str, str] = MappingProxyType({})


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


def secrets_read(pod_spec: Mapping[str, Any]) -> Iterator[str]:
    """The names of the Secrets a pod's containers read through ``secretKeyRef``."""
    for container in [*pod_spec.get("initContainers", ()), *pod_spec.get("containers", ())]:
        for variable in container.get("env", ()):
            reference = (variable.get("valueFrom") or {}).get("secretKeyRef")
            if reference is not None:
                yield reference["name"]


def annotate_secret_uids(template: dict[str, Any], secret_uids: Mapping[str, str]) -> dict[str, Any]:
    """The pod template, annotated with ``name=uid`` of each Secret in ``secret_uids`` its env reads.

    ``secret_uids``: the generated Secrets' uids from the snapshot. A Secret deleted by hand and
    created again has a new uid (and new passwords), so every pod reading it rolls and reads them.
    """
    read = sorted(set(secrets_read(template["spec"])) & set(secret_uids))
    if read:
        annotations = template["metadata"].setdefault("annotations", {})
        annotations[SECRET_UIDS_ANNOTATION] = ",".join(f"{name}={secret_uids[name]}" for name in read)
    return template


def tmp_volume() -> dict[str, Any]:
    """A writable /tmp for containers with a read-only root filesystem."""
    return {"name": TMP_VOLUME, "emptyDir": {}}


def tmp_volume_mount() -> dict[str, Any]:
    return {"name": TMP_VOLUME, "mountPath": "/tmp"}  # noqa: S108 - a private emptyDir, not the host's /tmp
