"""Labels, selectors, annotations and the common object metadata of every child."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from sbo_operator.api.v1alpha1 import API_VERSION, KIND, ScalableBackend

__all__ = [
    "APP_NAME",
    "COMPONENT_LABEL",
    "CONFIG_HASH_ANNOTATION",
    "INSTANCE_LABEL",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "NAME_LABEL",
    "PART_OF_LABEL",
    "POSTGRES_ROLE_LABEL",
    "POSTGRES_SHAPE_INSTANCES",
    "POSTGRES_SHAPE_LABEL",
    "SECRET_UIDS_ANNOTATION",
    "Component",
    "PostgresRole",
    "api_selector_string",
    "common_labels",
    "label_selector_string",
    "object_metadata",
    "owner_reference",
    "selector_labels",
]

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
POSTGRES_ROLE_LABEL = "sbo.dev/postgres-role"
# On the instances' StatefulSet's selector and pods only: the pods of the old two-StatefulSet shape
# carry every other PostgreSQL label, and must not match the instances' selector while both run.
POSTGRES_SHAPE_LABEL = "sbo.dev/postgres-shape"
POSTGRES_SHAPE_INSTANCES = "instances"
# A hash of the ConfigMap a pod template reads, so that a config change rolls the pods.
CONFIG_HASH_ANNOTATION = "sbo.dev/config-hash"
# The uids of the generated Secrets a pod template reads, so that a Secret created again (with new
# credentials) rolls every pod that reads it. A uid says nothing about the values.
SECRET_UIDS_ANNOTATION = "sbo.dev/secret-uids"  # noqa: S105 - a name, not a password

APP_NAME = "scalable-backend"
MANAGED_BY = "scalable-backend-operator"


class Component(StrEnum):
    """The app.kubernetes.io/component of a child."""

    API = "api"
    WORKER = "worker"
    MIGRATIONS = "migrations"
    REDIS = "redis"
    POSTGRES = "postgres"
    BACKUP = "backup"  # the PostgreSQL backups' own children (the recovery check Job)


class PostgresRole(StrEnum):
    """Which PostgreSQL StatefulSet a pod belongs to (the sbo.dev/postgres-role label)."""

    PRIMARY = "primary"
    REPLICA = "replica"


def selector_labels(backend: ScalableBackend, component: Component) -> dict[str, str]:
    """The labels that select one component's pods. Immutable in Deployments and StatefulSets."""
    return {
        COMPONENT_LABEL: component.value,
        INSTANCE_LABEL: backend.metadata.name,
        NAME_LABEL: APP_NAME,
    }


def common_labels(backend: ScalableBackend, component: Component) -> dict[str, str]:
    """The app.kubernetes.io/* labels every child and pod carries."""
    return dict(
        sorted(
            {
                **selector_labels(backend, component),
                PART_OF_LABEL: backend.metadata.name,
                MANAGED_BY_LABEL: MANAGED_BY,
            }.items()
        )
    )


def label_selector_string(labels: Mapping[str, str]) -> str:
    """``k1=v1,k2=v2`` in key order, as in status.api.selector and the scale subresource."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def api_selector_string(backend: ScalableBackend) -> str:
    """The label selector of the api pods, for ``status.api.selector``."""
    return label_selector_string(selector_labels(backend, Component.API))


def owner_reference(backend: ScalableBackend) -> dict[str, Any] | None:
    """The controller ownerReference to the backend, or None before it has a uid."""
    if backend.metadata.uid is None:
        return None
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": backend.metadata.name,
        "uid": backend.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_metadata(
    backend: ScalableBackend,
    *,
    name: str,
    component: Component,
    extra_labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """metadata for a child: name, namespace, labels, annotations, ownerReferences."""
    labels = {**common_labels(backend, component), **(extra_labels or {})}
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": backend.metadata.namespace,
        "labels": dict(sorted(labels.items())),
    }
    if annotations:
        metadata["annotations"] = dict(sorted(annotations.items()))
    owner = owner_reference(backend)
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return metadata
