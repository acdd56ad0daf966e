"""PostgreSQL: instances of one StatefulSet, any of which can be the primary, the others hot
standbys streaming from it (the image is ``images.postgres``: the official ``postgres:<version>``
unless the operator is told otherwise).

* ``<name>-postgres`` (1 + readReplicas pods ``<name>-postgres-<ordinal>``, governed by
  ``<name>-postgres-headless``): neither its selector nor its pod template carries a role. The
  operator alone labels each pod ``sbo.dev/postgres-role=primary|replica``; the init container
  ``bootstrap`` (``instance-bootstrap.sh``) waits for that label (a downward API file), then
  initialises or keeps the primary, or clones / rewinds a standby from ``-rw``; ``start.sh``
  runs the server in that role.
  Its selector, its pods and its governing Service carry ``sbo.dev/postgres-shape=instances``,
  which the pods of the old two-StatefulSet shape lack: while a backend moves from that shape
  (``components.postgres``), neither StatefulSet's selector matches the other's pods.
* Services ``-rw`` (the pod labelled primary) and ``-ro`` (the pods labelled replica; the primary
  while there are none, so DATABASE_READ_URL always works), Secrets ``-app`` and ``-operator``
  (the operator's SQL login), ConfigMap ``-config``, and one PDB. These, and the NetworkPolicy,
  select by component and role only, so they reach the old shape's pods during the move too.

Failing over is the operator's: it moves the label (see ``postgres_roles``). Synchronous
replication, when asked for, is rendered into postgresql.conf with every instance's name.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sbo_operator.api.v1alpha1 import MAX_READ_REPLICAS, ScalableBackend
from sbo_operator.builders import Manifest, backup
from sbo_operator.builders.images import OFFICIAL_DATA_SERVICE_IMAGES, DataServiceImages
from sbo_operator.builders.labels import (
    CONFIG_HASH_ANNOTATION,
    POSTGRES_ROLE_LABEL,
    POSTGRES_SHAPE_INSTANCES,
    POSTGRES_SHAPE_LABEL,
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
    "OPERATOR_USER",
    "PGDATA",
    "ROLE_FILE",
    "build_postgres_config_map",
    "build_postgres_headless_service",
    "build_postgres_operator_secret",
    "build_postgres_pdb",
    "build_postgres_read_only_service",
    "build_postgres_read_write_service",
    "build_postgres_secret",
    "build_postgres_statefulset",
    "postgres_instance_names",
    "postgres_instance_selector_labels",
    "postgres_selector_labels",
]

CONFIG_DIR = "/etc/sbo-postgres"
DATA_MOUNT = "/var/lib/postgresql/data"
# A subdirectory: the volume's root may hold lost+found, and initdb wants an empty directory.
PGDATA = f"{DATA_MOUNT}/pgdata"
SOCKET_DIR = "/var/run/postgresql"
# The pod's own role label, as a file (downward API): the scripts start as primary or standby.
PODINFO_DIR = "/etc/sbo-podinfo"
ROLE_FILE_NAME = "role"
ROLE_FILE = f"{PODINFO_DIR}/{ROLE_FILE_NAME}"
OPERATOR_USER = "sbo_operator"


def postgres_selector_labels(backend: ScalableBackend, role: PostgresRole) -> dict[str, str]:
    """The labels selecting the primary's or the replicas' pods."""
    return dict(
        sorted({**selector_labels(backend, Component.POSTGRES), POSTGRES_ROLE_LABEL: role.value}.items())
    )


def postgres_instance_selector_labels(backend: ScalableBackend) -> dict[str, str]:
    """The labels selecting the instances' pods, and no pod of the old two-StatefulSet shape."""
    return dict(
        sorted(
            {
                **selector_labels(backend, Component.POSTGRES),
                POSTGRES_SHAPE_LABEL: POSTGRES_SHAPE_INSTANCES,
            }.items()
        )
    )


def _metadata(backend: ScalableBackend, name: str) -> dict[str, Any]:
    return object_metadata(backend, name=name, component=Component.POSTGRES)


def _config_files(backend: ScalableBackend) -> dict[str, str]:
    """The ConfigMap's files. synchronous_standby_names names every instance there can be, not
    only those of readReplicas now: scaling then changes no file, and so restarts no server."""
    postgres = backend.spec.postgres
    files = postgres_config_files(
        postgres,
        instance_names=postgres_instance_names(backend, 1 + MAX_READ_REPLICAS),
        synchronous_standbys=postgres.synchronous.standbys,
    )
    return backup.backup_config_files(backend, files, scripts_dir=CONFIG_DIR)


def build_postgres_config_map(backend: ScalableBackend) -> Manifest | None:
    """``<name>-postgres-config``: postgresql.conf, pg_hba.conf and the scripts; None if disabled."""
    if not backend.spec.postgres.enabled:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(backend, child_names(backend).postgres_config),
        "data": _config_files(backend),
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


def build_postgres_headless_service(backend: ScalableBackend) -> Manifest | None:
    """``<name>-postgres-headless``: governs the instances' StatefulSet (per-pod DNS names)."""
    if not backend.spec.postgres.enabled:
        return None
    return governing_service(
        metadata=_metadata(backend, child_names(backend).postgres_headless),
        selector=postgres_instance_selector_labels(backend),
        port_name="postgres",
        port=POSTGRES_PORT,
    )


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
    """What a standby needs: where the primary is, and how to log in for streaming."""
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


def _bootstrap_env(backend: ScalableBackend) -> list[dict[str, Any]]:
    """What the primary's bootstrap needs: the roles and database to (re)create, the operator's login."""
    postgres = backend.spec.postgres
    names = child_names(backend)
    return [
        {"name": "SBO_APP_DATABASE", "value": postgres.database},
        _secret_env("SBO_APP_PASSWORD", names.postgres_secret, "password"),
        {"name": "SBO_APP_USER", "value": postgres.user},
        _secret_env("SBO_OPERATOR_PASSWORD", names.postgres_operator_secret, "password"),
        _secret_env("SBO_OPERATOR_USER", names.postgres_operator_secret, "username"),
    ]


def _role_file_env() -> dict[str, Any]:
    return {"name": "SBO_PG_ROLE_FILE", "value": ROLE_FILE}


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
            {"name": "podinfo", "mountPath": PODINFO_DIR, "readOnly": True},
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
        # a fast shutdown ends sessions, sends the last WAL to the standbys and checkpoints
        # within the grace period.
        container["lifecycle"] = {
            "preStop": {"exec": {"command": ["pg_ctl", "stop", "-D", PGDATA, "-m", "fast", "-w", "-t", "50"]}}
        }
    return container


def postgres_instance_names(backend: ScalableBackend, replicas: int | None = None) -> list[str]:
    """The desired instances (pod names) in ordinal order: 1 + readReplicas, or ``replicas``."""
    count = 1 + backend.spec.postgres.read_replicas if replicas is None else replicas
    name = child_names(backend).postgres_instances
    return [f"{name}-{ordinal}" for ordinal in range(count)]


def build_postgres_statefulset(
    backend: ScalableBackend,
    *,
    replicas: int | None = None,
    secret_uids: Mapping[str, str] = NO_SECRET_UIDS,
    images: DataServiceImages = OFFICIAL_DATA_SERVICE_IMAGES,
) -> Manifest | None:
    """``<name>-postgres``: every instance, 1 + readReplicas pods; None when PostgreSQL is disabled.

    Neither its selector nor its pod template carries a role: the operator labels each pod
    ``sbo.dev/postgres-role`` itself, and a pod reads its own label through the downward API
    (``SBO_PG_ROLE_FILE``) to start as the primary or as a standby of ``-rw``. So every instance
    gets what either needs. ``replicas``: more than the spec asks, while the primary is an
    instance a scale-down would remove (it is switched over first). ``secret_uids``: the
    generated Secrets' uids (see :func:`annotate_secret_uids`): a regenerated Secret rolls the
    pods onto it. ``images``: the PostgreSQL image template.
    """
    postgres = backend.spec.postgres
    if not postgres.enabled:
        return None
    names = child_names(backend)
    server_env = [*_base_env(), *_replication_env(backend), _role_file_env()]
    bootstrap = _container(
        backend,
        name="bootstrap",
        script="instance-bootstrap.sh",
        env=[*server_env, *_bootstrap_env(backend)],
        server=False,
        images=images,
    )
    server = _container(
        backend, name="postgres", script="start.sh", env=server_env, server=True, images=images
    )
    selector = postgres_instance_selector_labels(backend)
    pod_labels = {**common_labels(backend, Component.POSTGRES), **selector}
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
        "metadata": _metadata(backend, names.postgres_instances),
        "spec": {
            "replicas": 1 + postgres.read_replicas if replicas is None else replicas,
            "serviceName": names.postgres_headless,
            # Every instance starts at once: each waits for its role, not for a lower ordinal.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": dict(sorted(selector.items()))},
            "updateStrategy": {"type": "RollingUpdate"},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": retention, "whenScaled": retention},
            "template": {
                "metadata": {
                    "labels": dict(sorted(pod_labels.items())),
                    "annotations": {CONFIG_HASH_ANNOTATION: config_hash(_config_files(backend))},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [server],
                    "enableServiceLinks": False,
                    "initContainers": [bootstrap],
                    "securityContext": pod_security_context(uid=DATA_SERVICE_UID, fs_group=DATA_SERVICE_UID),
                    "terminationGracePeriodSeconds": 60,
                    "topologySpreadConstraints": topology_spread_constraints(dict(sorted(selector.items()))),
                    "volumes": [
                        {
                            "name": "config",
                            "configMap": {"name": names.postgres_config, "defaultMode": 0o444},
                        },
                        {
                            # kubelet rewrites the file when the label changes; no label: an empty file.
                            "name": "podinfo",
                            "downwardAPI": {
                                "defaultMode": 0o444,
                                "items": [
                                    {
                                        "path": ROLE_FILE_NAME,
                                        "fieldRef": {
                                            "fieldPath": f"metadata.labels['{POSTGRES_ROLE_LABEL}']"
                                        },
                                    }
                                ],
                            },
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
    backup.wire_backup(backend, manifest["spec"]["template"]["spec"], scripts_dir=CONFIG_DIR)
    backup.wire_recovery(backend, manifest["spec"]["template"]["spec"], scripts_dir=CONFIG_DIR)
    annotate_secret_uids(manifest["spec"]["template"], secret_uids)
    return manifest


def build_postgres_pdb(backend: ScalableBackend) -> Manifest | None:
    """``<name>-postgres``: at most one instance disrupted at a time (the primary is failed over)."""
    if not backend.spec.postgres.enabled:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(backend, child_names(backend).postgres_instances),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": dict(sorted(selector_labels(backend, Component.POSTGRES).items()))},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_postgres_operator_secret(
    backend: ScalableBackend, *, existing_data: Mapping[str, str] | None, random_bytes: bytes | None = None
) -> Manifest | None:
    """``<name>-postgres-operator``: the operator's own SQL login (``sbo_operator``): it probes the
    instances and promotes one. Generated once; the primary's bootstrap applies it at every start."""
    if not backend.spec.postgres.enabled:
        return None
    existing = decode_secret_data(existing_data)
    password = existing_or_derived_password(
        existing, key="password", random_bytes=random_bytes, purpose="postgres-operator"
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(backend, child_names(backend).postgres_operator_secret),
        "type": "Opaque",
        "data": encode_secret_data({"password": password, "username": OPERATOR_USER}),
    }
