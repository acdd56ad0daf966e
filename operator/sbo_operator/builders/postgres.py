"""PostgreSQL: a primary and hot-standby read replicas, as two StatefulSets of the PostgreSQL image
(``images.postgres``: the official ``postgres:<version>`` unless the operator is told otherwise).

* ``<name>-postgres-primary`` (1 pod): the init container ``bootstrap`` runs
  ``primary-bootstrap.sh`` (initdb on first start; roles and database from the Secret on every
  start), then ``start.sh`` runs the server.
* ``<name>-postgres-replica`` (readReplicas pods): the init container ``clone`` runs
  ``replica-bootstrap.sh`` (waits for the primary with pg_isready, pg_basebackup if PGDATA is
  empty), then ``start.sh`` runs a hot standby streaming from ``<name>-postgres-rw``.
* Services ``-rw`` (the primary) and ``-ro`` (the replicas; the primary while there are none, so
  DATABASE_READ_URL always works), Secret ``-app``, ConfigMap ``-config``, and PDBs.

The primary is not failed over: if it is lost, the replicas keep serving reads until it returns.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import Manifest
from sbo_operator.builders.images import OFFICIAL_DATA_SERVICE_IMAGES, DataServiceImages
from sbo_operator.builders.labels import (
    CONFIG_HASH_ANNOTATION,
    POSTGRES_ROLE_LABEL,
    Component,
    PostgresRole,
    common_labels,
    object_metadata,
    selector_labels,
)
from sbo_operator.builders.names import POSTGRES_PORT, child_names, service_host
from sbo_operator.builders.pods import (
    NO_SECRET_UIDS,
    annotate_secret_uids,
    config_hash,
    resources_dict,
    tmp_volume,
    tmp_volume_mount,
    topology_spread_constraints,
)
from sbo_operator.builders.postgres_config import REPLICATION_USER, postgres_config_files
from sbo_operator.builders.secrets import decode_secret_data, encode_secret_data, existing_or_derived_password
from sbo_operator.builders.security import (
    DATA_SERVICE_UID,
    pod_security_context,
    restricted_container_security_context,
)
from sbo_operator.builders.services import governing_service

__all__ = [
    "PGDATA",
    "build_postgres_config_map",
    "build_postgres_primary_headless_service",
    "build_postgres_primary_pdb",
    "build_postgres_primary_statefulset",
    "build_postgres_read_only_service",
    "build_postgres_read_write_service",
    "build_postgres_replica_headless_service",
    "build_postgres_replica_pdb",
    "build_postgres_replica_statefulset",
    "build_postgres_secret",
    "postgres_selector_labels",
]

CONFIG_DIR = "/etc/sbo-postgres"
DATA_MOUNT = "/var/lib/postgresql/data"
# A subdirectory: the volume's root may hold lost+found, and initdb wants an empty directory.
PGDATA = f"{DATA_MOUNT}/pgdata"
SOCKET_DIR = "/var/run/postgresql"


def postgres_selector_labels(backend: ScalableBackend, role: PostgresRole) -> dict[str, str]:
    """The labels selecting the primary's or the replicas' pods."""
    return dict(
        sorted({**selector_labels(backend, Component.POSTGRES), POSTGRES_ROLE_LABEL: role.value}.items())
    )


def _metadata(backend: ScalableBackend, name: str, role: PostgresRole | None = None) -> dict[str, Any]:
    extra = {POSTGRES_ROLE_LABEL: role.value} if role is not None else None
    return object_metadata(backend, name=name, component=Component.POSTGRES, extra_labels=extra)


def build_postgres_config_map(backend: ScalableBackend) -> Manifest | None:
    """``<name>-postgres-config``: postgresql.conf, pg_hba.conf and the scripts; None if disabled."""
    if not backend.spec.postgres.enabled:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(backend, child_names(backend).postgres_config),
        "data": postgres_config_files(backend.spec.postgres),
    }


def build_postgres_secret(
    backend: ScalableBackend, *, existing_data: Mapping[str, str] | None, random_bytes: bytes | None = None
) -> Manifest | None:
    """``<name>-postgres-app``: username, password, database, host, port, uri, replication-*.

    ``existing_data``: the current Secret's base64 ``data`` (None if it does not exist); existing
    passwords are kept forever. ``random_bytes``: at least 32, needed only while a password is
    missing. The primary's bootstrap re-applies the passwords on every start, so even a
    regenerated Secret (e.g. after the backend was deleted and its volumes retained) works.
    """
    postgres = backend.spec.postgres
    if not postgres.enabled:
        return None
    names = child_names(backend)
    existing = decode_secret_data(existing_data)
    password = existing_or_derived_password(
        existing, key="password", random_bytes=random_bytes, purpose="postgres-app"
    )
    replication_password = existing_or_derived_password(
        existing, key="replication-password", random_bytes=random_bytes, purpose="postgres-replication"
    )
    host = service_host(names.postgres_read_write, backend.metadata.namespace)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(backend, names.postgres_secret),
        "type": "Opaque",
        "data": encode_secret_data(
            {
                "database": postgres.database,
                "host": host,
                "password": password,
                "port": str(POSTGRES_PORT),
                "read-only-host": service_host(names.postgres_read_only, backend.metadata.namespace),
                "replication-password": replication_password,
                "replication-username": REPLICATION_USER,
                # The password is URL-safe base64, so it needs no escaping in the URI.
                "uri": f"postgresql://{postgres.user}:{password}@{host}:{POSTGRES_PORT}/{postgres.database}",
                "username": postgres.user,
            }
        ),
    }


def _service(backend: ScalableBackend, *, name: str, role: PostgresRole) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(backend, name),
        "spec": {
            "type": "ClusterIP",
            "selector": postgres_selector_labels(backend, role),
            "ports": [
                {"name": "postgres", "port": POSTGRES_PORT, "protocol": "TCP", "targetPort": "postgres"}
            ],
        },
    }


def build_postgres_read_write_service(backend: ScalableBackend) -> Manifest | None:
    """``<name>-postgres-rw``: the primary; None when PostgreSQL is disabled."""
    if not backend.spec.postgres.enabled:
        return None
    return _service(backend, name=child_names(backend).postgres_read_write, role=PostgresRole.PRIMARY)


def build_postgres_read_only_service(backend: ScalableBackend) -> Manifest | None:
    """``<name>-postgres-ro``: the replicas, or the primary while readReplicas is 0."""
    postgres = backend.spec.postgres
    if not postgres.enabled:
        return None
    role = PostgresRole.REPLICA if postgres.read_replicas > 0 else PostgresRole.PRIMARY
    return _service(backend, name=child_names(backend).postgres_read_only, role=role)


def _headless_service(backend: ScalableBackend, role: PostgresRole) -> Manifest | None:
    if not backend.spec.postgres.enabled:
        return None
    names = child_names(backend)
    name = (
        names.postgres_primary_headless if role is PostgresRole.PRIMARY else names.postgres_replica_headless
    )
    return governing_service(
        metadata=_metadata(backend, name, role),
        selector=postgres_selector_labels(backend, role),
        port_name="postgres",
        port=POSTGRES_PORT,
    )


def build_postgres_primary_headless_service(backend: ScalableBackend) -> Manifest | None:
    """``<name>-postgres-primary-headless``: governs the primary StatefulSet; None if disabled."""
    return _headless_service(backend, PostgresRole.PRIMARY)


def build_postgres_replica_headless_service(backend: ScalableBackend) -> Manifest | None:
    """``<name>-postgres-replica-headless``: governs the replicas' StatefulSet; None if disabled."""
    return _headless_service(backend, PostgresRole.REPLICA)


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _base_env() -> list[dict[str, Any]]:
    return [
        {"name": "PGDATA", "value": PGDATA},
        {"name": "SBO_PG_CONFIG_DIR", "value": CONFIG_DIR},
        {"name": "SBO_PG_PORT", "value": str(POSTGRES_PORT)},
        {"name": "SBO_PG_RUNTIME_DIR", "value": "/tmp"},  # noqa: S108 - the pod's private emptyDir
        {"name": "SBO_PG_SOCKET_DIR", "value": SOCKET_DIR},
    ]


def _replication_env(backend: ScalableBackend) -> list[dict[str, Any]]:
    names = child_names(backend)
    return [
        {"name": "SBO_PG_APPLICATION_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "SBO_PRIMARY_HOST",
            "value": service_host(names.postgres_read_write, backend.metadata.namespace),
        },
        {"name": "SBO_PRIMARY_PORT", "value": str(POSTGRES_PORT)},
        _secret_env("SBO_REPLICATION_PASSWORD", names.postgres_secret, "replication-password"),
        {"name": "SBO_REPLICATION_USER", "value": REPLICATION_USER},
    ]


def _container(
    backend: ScalableBackend,
    *,
    name: str,
    script: str,
    env: list[dict[str, Any]],
    server: bool,
    images: DataServiceImages,
) -> dict[str, Any]:
    postgres = backend.spec.postgres
    container: dict[str, Any] = {
        "name": name,
        "image": images.postgres_image(postgres.version),
        "imagePullPolicy": "IfNotPresent",
        # Our scripts replace the image's entrypoint, so the test can run exactly what pods run.
        "command": ["sh", f"{CONFIG_DIR}/{script}"],
        # A copy: the init and the main container must not share (and so alias) dicts.
        "env": copy.deepcopy(sorted(env, key=lambda variable: str(variable["name"]))),
        "resources": resources_dict(postgres.resources),
        "securityContext": restricted_container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": DATA_MOUNT},
            {"name": "run", "mountPath": SOCKET_DIR},
            tmp_volume_mount(),
        ],
    }
    if server:
        ready = ["pg_isready", "-q", "-h", SOCKET_DIR, "-p", str(POSTGRES_PORT)]
        container["ports"] = [{"containerPort": POSTGRES_PORT, "name": "postgres", "protocol": "TCP"}]
        container["readinessProbe"] = {
            "exec": {"command": list(ready)},
            "failureThreshold": 3,
            "periodSeconds": 5,
            "timeoutSeconds": 3,
        }
        container["livenessProbe"] = {
            "exec": {"command": list(ready)},
            "failureThreshold": 6,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
        }
        # Crash recovery can take a while; liveness waits for it (up to 10 minutes).
        container["startupProbe"] = {
            "exec": {"command": list(ready)},
            "failureThreshold": 120,
            "periodSeconds": 5,
            "timeoutSeconds": 3,
        }
        # The default SIGTERM is a "smart" shutdown that waits for every pooled client to leave;
        # a fast shutdown ends sessions and checkpoints cleanly within the grace period.
        container["lifecycle"] = {
            "preStop": {"exec": {"command": ["pg_ctl", "stop", "-D", PGDATA, "-m", "fast", "-w", "-t", "50"]}}
        }
    return container


def _statefulset(
    backend: ScalableBackend,
    *,
    role: PostgresRole,
    replicas: int,
    init_container: dict[str, Any],
    env: list[dict[str, Any]],
    secret_uids: Mapping[str, str],
    images: DataServiceImages,
) -> Manifest:
    postgres = backend.spec.postgres
    names = child_names(backend)
    name = names.postgres_primary if role is PostgresRole.PRIMARY else names.postgres_replica
    pod_labels = {**common_labels(backend, Component.POSTGRES), POSTGRES_ROLE_LABEL: role.value}
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": postgres.storage.size}},
    }
    if postgres.storage.storage_class_name is not None:
        claim_spec["storageClassName"] = postgres.storage.storage_class_name
    retention = "Retain" if postgres.retain_on_delete else "Delete"
    manifest: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(backend, name, role),
        "spec": {
            "replicas": replicas,
            "serviceName": names.postgres_primary_headless
            if role is PostgresRole.PRIMARY
            else names.postgres_replica_headless,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": postgres_selector_labels(backend, role)},
            "updateStrategy": {"type": "RollingUpdate"},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": retention, "whenScaled": retention},
            "template": {
                "metadata": {
                    "labels": dict(sorted(pod_labels.items())),
                    "annotations": {CONFIG_HASH_ANNOTATION: config_hash(postgres_config_files(postgres))},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [
                        _container(
                            backend, name="postgres", script="start.sh", env=env, server=True, images=images
                        )
                    ],
                    "enableServiceLinks": False,
                    "initContainers": [init_container],
                    "securityContext": pod_security_context(uid=DATA_SERVICE_UID, fs_group=DATA_SERVICE_UID),
                    "terminationGracePeriodSeconds": 60,
                    "topologySpreadConstraints": topology_spread_constraints(
                        postgres_selector_labels(backend, role)
                    ),
                    "volumes": [
                        {
                            "name": "config",
                            "configMap": {"name": names.postgres_config, "defaultMode": 0o444},
                        },
                        {"name": "run", "emptyDir": {}},
                        tmp_volume(),
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": dict(sorted(pod_labels.items()))},
                    "spec": claim_spec,
                }
            ],
        },
    }
    annotate_secret_uids(manifest["spec"]["template"], secret_uids)
    return manifest


def build_postgres_primary_statefulset(
    backend: ScalableBackend,
    *,
    secret_uids: Mapping[str, str] = NO_SECRET_UIDS,
    images: DataServiceImages = OFFICIAL_DATA_SERVICE_IMAGES,
) -> Manifest | None:
    """``<name>-postgres-primary``: one pod; None when PostgreSQL is disabled.

    ``secret_uids``: the generated Secrets' uids (see :func:`annotate_secret_uids`). Its bootstrap
    applies the Secret's passwords to the app and replication roles at every start, so a
    regenerated Secret rolls it onto them. ``images``: the PostgreSQL image template.
    """
    postgres = backend.spec.postgres
    if not postgres.enabled:
        return None
    names = child_names(backend)
    bootstrap_env = [
        *_base_env(),
        {"name": "SBO_APP_DATABASE", "value": postgres.database},
        _secret_env("SBO_APP_PASSWORD", names.postgres_secret, "password"),
        {"name": "SBO_APP_USER", "value": postgres.user},
        _secret_env("SBO_REPLICATION_PASSWORD", names.postgres_secret, "replication-password"),
        {"name": "SBO_REPLICATION_USER", "value": REPLICATION_USER},
    ]
    bootstrap = _container(
        backend,
        name="bootstrap",
        script="primary-bootstrap.sh",
        env=bootstrap_env,
        server=False,
        images=images,
    )
    return _statefulset(
        backend,
        role=PostgresRole.PRIMARY,
        replicas=1,
        init_container=bootstrap,
        env=_base_env(),
        secret_uids=secret_uids,
        images=images,
    )


def build_postgres_replica_statefulset(
    backend: ScalableBackend,
    *,
    secret_uids: Mapping[str, str] = NO_SECRET_UIDS,
    images: DataServiceImages = OFFICIAL_DATA_SERVICE_IMAGES,
) -> Manifest | None:
    """``<name>-postgres-replica``: readReplicas hot standbys; None when PostgreSQL is disabled.

    Built even with 0 replicas, so that scaling to 0 keeps (or deletes) the volumes per
    retainOnDelete. The reconciler may also hold it back until the primary is ready; the init
    container waits for the primary regardless. ``secret_uids``: as for the primary; a regenerated
    Secret rolls the replicas onto the new replication password (a standby retries until the
    primary has it). ``images``: as for the primary.
    """
    postgres = backend.spec.postgres
    if not postgres.enabled:
        return None
    env = [*_base_env(), *_replication_env(backend)]
    clone = _container(
        backend, name="clone", script="replica-bootstrap.sh", env=env, server=False, images=images
    )
    return _statefulset(
        backend,
        role=PostgresRole.REPLICA,
        replicas=postgres.read_replicas,
        init_container=clone,
        env=env,
        secret_uids=secret_uids,
        images=images,
    )


def build_postgres_primary_pdb(backend: ScalableBackend) -> Manifest | None:
    """``<name>-postgres-primary``: a drain waits rather than evict the only primary.

    There is no failover, so evicting the primary is downtime; a human deletes the pod to move it.
    An unhealthy primary may still be evicted.
    """
    if not backend.spec.postgres.enabled:
        return None
    return _pdb(backend, child_names(backend).postgres_primary, PostgresRole.PRIMARY, {"minAvailable": 1})


def build_postgres_replica_pdb(backend: ScalableBackend) -> Manifest | None:
    """``<name>-postgres-replica``: at most one replica disrupted at a time."""
    if not backend.spec.postgres.enabled:
        return None
    return _pdb(backend, child_names(backend).postgres_replica, PostgresRole.REPLICA, {"maxUnavailable": 1})


def _pdb(backend: ScalableBackend, name: str, role: PostgresRole, budget: dict[str, int]) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(backend, name, role),
        "spec": {
            **budget,
            "selector": {"matchLabels": postgres_selector_labels(backend, role)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
