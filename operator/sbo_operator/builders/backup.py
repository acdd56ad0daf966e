"""Backups wired into the PostgreSQL instances: archiving, the backup sidecar, and recovery.

What spec.postgres.backup and spec.postgres.bootstrap.recovery add to the instances' ConfigMap
and pod template (``builders.postgres`` calls these hooks). The invariant: a backend with neither
gets byte-for-byte what it got before; the object store's credentials and CA reach only the
PostgreSQL containers, through secretKeyRef env and a Secret volume (never a command line, the
ConfigMap or the status); every instance is wired the same, since any of them may be the primary.

barman-cloud keeps a backend's archive under ``<destination>/<server name>``. The server name is
one fixed name (``BARMAN_SERVER_NAME``): the destination alone identifies the backend, so a new
backend restoring from that destination finds the archive without knowing who wrote it.
"""

from __future__ import annotations

from typing import Any

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.api.v1alpha1.backup import BackupSpec, ObjectStoreSpec, RecoverySpec
from sbo_operator.builders.backup_scripts import backup_script_files, render_archive_conf

__all__ = [
    "BACKUP_CA_DIR",
    "BARMAN_SERVER_NAME",
    "RESTORE_CA_DIR",
    "backup_config_files",
    "object_store_env",
    "restore_env",
    "wire_backup",
]

BARMAN_SERVER_NAME = "postgres"
BACKUP_CA_DIR = "/etc/sbo-backup-ca"
RESTORE_CA_DIR = "/etc/sbo-restore-ca"
_CA_FILE = "ca.crt"


def backup_config_files(
    backend: ScalableBackend, files: dict[str, str], *, scripts_dir: str
) -> dict[str, str]:
    """The ConfigMap's files plus the backup scripts and, with backups on, the archive settings.

    ``files`` unchanged (the same object) when the backend neither backs up nor restores.
    """
    postgres = backend.spec.postgres
    if postgres.backup is None and _recovery(backend) is None:
        return files
    wired = {**files, **backup_script_files()}
    if postgres.backup is not None:
        wired["postgresql.conf"] = files["postgresql.conf"] + render_archive_conf(
            archive_timeout_seconds=postgres.backup.archive_timeout_seconds, scripts_dir=scripts_dir
        )
    return dict(sorted(wired.items()))


def _recovery(backend: ScalableBackend) -> RecoverySpec | None:
    bootstrap = backend.spec.postgres.bootstrap
    return None if bootstrap is None else bootstrap.recovery


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def object_store_env(store: ObjectStoreSpec, *, ca_dir: str) -> list[dict[str, Any]]:
    """What barman-cloud's S3 client (boto3) reads from the environment to reach ``store``."""
    credentials = store.credentials
    env = [
        _secret_env("AWS_ACCESS_KEY_ID", credentials.secret_name, credentials.access_key_id_key),
        _secret_env("AWS_SECRET_ACCESS_KEY", credentials.secret_name, credentials.secret_access_key_key),
    ]
    if credentials.session_token_key is not None:
        env.append(_secret_env("AWS_SESSION_TOKEN", credentials.secret_name, credentials.session_token_key))
    if store.region is not None:
        env.append({"name": "AWS_DEFAULT_REGION", "value": store.region})
    if store.ca is not None:
        env.append({"name": "AWS_CA_BUNDLE", "value": f"{ca_dir}/{_CA_FILE}"})
    return env


def archive_env(backup: BackupSpec, *, scripts_dir: str) -> list[dict[str, Any]]:
    """wal-archive.sh's and base-backup.sh's environment."""
    env = [
        {"name": "SBO_BACKUP_DESTINATION", "value": backup.destination},
        {"name": "SBO_BACKUP_SCRIPTS_DIR", "value": scripts_dir},
        {"name": "SBO_BACKUP_SERVER_NAME", "value": BARMAN_SERVER_NAME},
        *object_store_env(backup, ca_dir=BACKUP_CA_DIR),
    ]
    if backup.endpoint_url is not None:
        env.append({"name": "SBO_BACKUP_ENDPOINT_URL", "value": backup.endpoint_url})
    if backup.recovery_window is not None:
        env.append({"name": "SBO_BACKUP_RETENTION_POLICY", "value": backup.recovery_window})
    return env


def restore_env(recovery: RecoverySpec, *, scripts_dir: str) -> list[dict[str, Any]]:
    """restore.sh's and wal-restore.sh's environment: the source and the target."""
    source = recovery.source
    env = [
        {"name": "SBO_BACKUP_SCRIPTS_DIR", "value": scripts_dir},
        {"name": "SBO_RESTORE_SERVER_NAME", "value": BARMAN_SERVER_NAME},
        {"name": "SBO_RESTORE_SOURCE", "value": source.destination},
        *object_store_env(source, ca_dir=RESTORE_CA_DIR),
    ]
    if source.endpoint_url is not None:
        env.append({"name": "SBO_RESTORE_ENDPOINT_URL", "value": source.endpoint_url})
    if recovery.target.time is not None:
        env.append({"name": "SBO_RESTORE_TARGET_TIME", "value": recovery.target.time})
    if recovery.target.lsn is not None:
        env.append({"name": "SBO_RESTORE_TARGET_LSN", "value": recovery.target.lsn})
    return env


def _ca_volume(name: str, store: ObjectStoreSpec) -> dict[str, Any] | None:
    if store.ca is None:
        return None
    return {
        "name": name,
        "secret": {
            "secretName": store.ca.secret_name,
            "defaultMode": 0o444,
            "items": [{"key": store.ca.key, "path": _CA_FILE}],
        },
    }


def _sorted_env(env: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(env, key=lambda variable: str(variable["name"]))


def wire_backup(backend: ScalableBackend, pod_spec: dict[str, Any], *, scripts_dir: str) -> None:
    """Give a freshly built instance pod spec what archiving needs (in place; nothing without backups).

    The server container archives; the bootstrap container runs the same server privately (its
    WAL may complete a segment), so both get the store's environment and CA.
    """
    backup = backend.spec.postgres.backup
    if backup is None:
        return
    env = archive_env(backup, scripts_dir=scripts_dir)
    containers = [*pod_spec.get("initContainers", []), *pod_spec["containers"]]
    for container in containers:
        if container["name"] not in ("bootstrap", "postgres"):
            continue
        container["env"] = _sorted_env([*container["env"], *env])
        if backup.ca is not None:
            mount = {"name": "backup-ca", "mountPath": BACKUP_CA_DIR, "readOnly": True}
            container["volumeMounts"].append(mount)
    volume = _ca_volume("backup-ca", backup)
    if volume is not None:
        pod_spec["volumes"].append(volume)
