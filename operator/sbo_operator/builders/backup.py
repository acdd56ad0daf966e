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

import copy
from typing import Any

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.api.v1alpha1.backup import BackupSpec, ObjectStoreSpec, RecoverySpec
from sbo_operator.builders import Manifest
from sbo_operator.builders.backup_scripts import (
    CHOOSE_BACKUP_QUOTED,
    backup_script_files,
    render_archive_conf,
)
from sbo_operator.builders.images import DataServiceImages
from sbo_operator.builders.labels import Component, common_labels, object_metadata
from sbo_operator.builders.names import child_names
from sbo_operator.builders.pods import tmp_volume, tmp_volume_mount
from sbo_operator.builders.postgres_config import OPERATOR_USER
from sbo_operator.builders.security import (
    DATA_SERVICE_UID,
    pod_security_context,
    restricted_container_security_context,
)

__all__ = [
    "BACKUP_CA_DIR",
    "BARMAN_SERVER_NAME",
    "RESTORE_CA_DIR",
    "backup_config_files",
    "build_recovery_check_job",
    "object_store_env",
    "recovery_check_job_name",
    "restore_env",
    "wire_backup",
    "wire_recovery",
]

BARMAN_SERVER_NAME = "postgres"
BACKUP_CA_DIR = "/etc/sbo-backup-ca"
RESTORE_CA_DIR = "/etc/sbo-restore-ca"
_CA_FILE = "ca.crt"
# The operator's request for a base backup: an annotation on the primary's pod, and the file the
# downward API makes of it in the podinfo volume (kubelet rewrites it when the annotation changes).
BACKUP_REQUEST_ANNOTATION = "sbo.dev/backup-request"
BACKUP_REQUEST_FILE_NAME = "backup-request"
SIDECAR_SCRIPT_NAME = "backup-sidecar.sh"

# The backup sidecar: every instance runs one; only the primary's acts. It polls its downward API
# files and, for a request it has not handled, takes the base backup and records it in
# sbo.base_backups on the primary (database postgres, as the postgres OS user over the socket),
# where the operator's SQL probe reads it. Rows name their destination: a database restored from
# another backend's archive carries that backend's rows, which are not this backend's backups. A
# failed backup is logged and waits for the next request: the alert on the last backup's age says
# so. Values reach psql as variables, never as SQL.
BACKUP_SIDECAR_SCRIPT = r"""#!/bin/sh
set -eu
log() { printf 'backup-sidecar.sh: %s\n' "$*" >&2; }
: "${SBO_PG_ROLE_FILE:?}" "${SBO_BACKUP_REQUEST_FILE:?}" "${SBO_OPERATOR_USER:?}"
: "${SBO_BACKUP_DESTINATION:?}" "${SBO_BACKUP_SERVER_NAME:?}"
scripts_dir="${SBO_BACKUP_SCRIPTS_DIR:-/etc/sbo-backup}"
export PGHOST="${SBO_PG_SOCKET_DIR:-/var/run/postgresql}" PGPORT="${SBO_PG_PORT:-5432}"
export PGDATABASE=postgres
poll="${SBO_BACKUP_POLL_SECONDS:-5}"

read_file() { { tr -d '[:space:]' < "$1"; } 2>/dev/null || true; }
sql() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

ensure_record_table() {
  sql -v operator_user="$SBO_OPERATOR_USER" <<'SQL'
CREATE SCHEMA IF NOT EXISTS sbo;
CREATE TABLE IF NOT EXISTS sbo.base_backups (
  name text PRIMARY KEY,
  destination text NOT NULL,
  request text,
  started_at timestamptz,
  completed_at timestamptz,
  begin_lsn text,
  end_lsn text,
  first_recoverability_point timestamptz,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
GRANT USAGE ON SCHEMA sbo TO :"operator_user";
GRANT SELECT ON sbo.base_backups TO :"operator_user";
SQL
}

already_recorded() {
  [ "$(sql -v request="$1" -v destination="$SBO_BACKUP_DESTINATION" <<'SQL'
SELECT count(*) FROM sbo.base_backups WHERE request = :'request' AND destination = :'destination';
SQL
)" != 0 ]
}

# barman-cloud-backup-list's JSON on stdin -> the newest completed backup and the first
# recoverability point (the end of the oldest kept), tab-separated. barman lists UTC ctime to the
# second: an end is rounded up by a second, as restore.sh does, so a restore to it is reachable.
describe_backups() {
  python3 -c '
import datetime, json, sys
def parsed(text):
    moment = datetime.datetime.strptime(text, "%a %b %d %H:%M:%S %Y")
    return moment.replace(tzinfo=datetime.timezone.utc)
def when(text, extra=0):
    return (parsed(text) + datetime.timedelta(seconds=extra)).isoformat()
done = [b for b in json.load(sys.stdin)["backups_list"] if b.get("status") == "DONE"]
done.sort(key=lambda b: parsed(b["end_time"]))
newest, oldest = done[-1], done[0]
print("\t".join([newest["backup_id"], when(newest["begin_time"]), when(newest["end_time"], 1),
                 newest["begin_xlog"], newest["end_xlog"], when(oldest["end_time"], 1)]))
'
}

record_backup() {
  request="$1"
  set --
  if [ -n "${SBO_BACKUP_ENDPOINT_URL:-}" ]; then set -- --endpoint-url "$SBO_BACKUP_ENDPOINT_URL"; fi
  listing="$(barman-cloud-backup-list "$@" --format json "$SBO_BACKUP_DESTINATION" "$SBO_BACKUP_SERVER_NAME")"
  described="$(printf '%s' "$listing" | describe_backups)"
  tab="$(printf '\t')"
  IFS="$tab" read -r name started completed begin_lsn end_lsn first <<DESCRIBED
$described
DESCRIBED
  sql -v request="$request" -v name="$name" -v started="$started" -v completed="$completed" \
    -v begin_lsn="$begin_lsn" -v end_lsn="$end_lsn" -v first="$first" \
    -v destination="$SBO_BACKUP_DESTINATION" <<'SQL'
INSERT INTO sbo.base_backups
  (name, destination, request, started_at, completed_at, begin_lsn, end_lsn, first_recoverability_point)
VALUES (:'name', :'destination', :'request', :'started', :'completed', :'begin_lsn', :'end_lsn', :'first')
ON CONFLICT (name) DO UPDATE SET destination = EXCLUDED.destination, request = EXCLUDED.request;
UPDATE sbo.base_backups SET first_recoverability_point = :'first' WHERE destination = :'destination';
SQL
  log "recorded base backup $name for request $request (first recoverability point $first)"
}

handled=""
while :; do
  request="$(read_file "$SBO_BACKUP_REQUEST_FILE")"
  if [ -n "$request" ] && [ "$request" != "$handled" ] && [ "$(read_file "$SBO_PG_ROLE_FILE")" = primary ] &&
    pg_isready -q && [ "$(sql -c 'SELECT pg_is_in_recovery()' 2>/dev/null || true)" = f ]; then
    handled="$request"
    if ! ensure_record_table; then
      log "cannot create sbo.base_backups; request $request skipped"
    elif already_recorded "$request"; then
      log "request $request is recorded already; nothing to do"
    elif sh "$scripts_dir/base-backup.sh"; then
      log "base backup for request $request taken"
      record_backup "$request" || log "the base backup for request $request is taken but not recorded"
    else
      log "the base backup for request $request failed; waiting for the next request"
    fi
  fi
  sleep "$poll"
done
"""


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
    if _recovery(backend) is not None:
        wired[RECOVERY_CHECK_SCRIPT_NAME] = RECOVERY_CHECK_SCRIPT
        wired[RESTORE_INSTANCE_SCRIPT_NAME] = RESTORE_INSTANCE_SCRIPT
    if postgres.backup is not None:
        wired[SIDECAR_SCRIPT_NAME] = BACKUP_SIDECAR_SCRIPT
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
        {"name": "SBO_BACKUP_COMPRESSION", "value": backup.compression.value},
        *object_store_env(backup, ca_dir=BACKUP_CA_DIR),
    ]
    if backup.endpoint_url is not None:
        env.append({"name": "SBO_BACKUP_ENDPOINT_URL", "value": backup.endpoint_url})
    if backup.recovery_window is not None:
        window = backup.recovery_window.removeprefix("RECOVERY WINDOW OF ")
        env.append({"name": "SBO_BACKUP_RETENTION_WINDOW", "value": window})
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
    podinfo = next(v for v in pod_spec["volumes"] if v["name"] == "podinfo")
    podinfo["downwardAPI"]["items"].append(
        {
            "path": BACKUP_REQUEST_FILE_NAME,
            "fieldRef": {"fieldPath": f"metadata.annotations['{BACKUP_REQUEST_ANNOTATION}']"},
        }
    )
    pod_spec["containers"].append(_sidecar(pod_spec["containers"][0]))


# What the server needs to stream from a primary, which the sidecar never does.
_SERVER_ONLY_ENV = ("SBO_PRIMARY_", "SBO_REPLICATION_", "SBO_PG_APPLICATION_NAME")


def _sidecar(server: dict[str, Any]) -> dict[str, Any]:
    """The ``backup`` container: the server container's image, security context, env and mounts
    (PGDATA read-only: barman-cloud-backup only reads it), without its port, probes or hooks."""
    config_dir = server["command"][1].rsplit("/", 1)[0]
    podinfo = next(m["mountPath"] for m in server["volumeMounts"] if m["name"] == "podinfo")
    mounts = copy.deepcopy(server["volumeMounts"])
    for mount in mounts:
        if mount["name"] == "data":
            mount["readOnly"] = True
    env = [
        *(v for v in copy.deepcopy(server["env"]) if not v["name"].startswith(_SERVER_ONLY_ENV)),
        {"name": "SBO_BACKUP_REQUEST_FILE", "value": f"{podinfo}/{BACKUP_REQUEST_FILE_NAME}"},
        {"name": "SBO_OPERATOR_USER", "value": OPERATOR_USER},
    ]
    return {
        "name": "backup",
        "image": server["image"],
        "imagePullPolicy": server["imagePullPolicy"],
        "command": ["sh", f"{config_dir}/{SIDECAR_SCRIPT_NAME}"],
        "env": _sorted_env(env),
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
        "securityContext": copy.deepcopy(server["securityContext"]),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }


# ---- recovery: the check before any instance exists, then instance 0's restore --------------------

RECOVERY_CHECK_SCRIPT_NAME = "recovery-check.sh"
RESTORE_INSTANCE_SCRIPT_NAME = "restore-instance.sh"
RECOVERY_CHECK_CONTAINER = "check"

_FIRST_RECOVERABILITY_POINT = """
import datetime, json, sys
done = [b for b in json.load(sys.stdin)["backups_list"] if b.get("status") == "DONE"]
ends = [datetime.datetime.strptime(b["end_time"], "%a %b %d %H:%M:%S %Y") for b in done]
first = min(ends) + datetime.timedelta(seconds=1) if ends else None
print(first.strftime("%Y-%m-%dT%H:%M:%SZ") if first else "")
"""

# The check Job's one container: restore.sh's own choice of a backup for the target, against the
# source's backup list, before anything is downloaded. Its verdict is its termination message:
# three lines, the exit code of that choice (0: recoverable; restore.sh's RESTORE_EXIT_* else), the
# first recoverability point, and why. Only a store it cannot list fails the Job (its log says why).
RECOVERY_CHECK_SCRIPT = f"""#!/bin/sh
set -eu
log() {{ printf 'recovery-check.sh: %s\\n' "$*" >&2; }}
: "${{SBO_RESTORE_SOURCE:?}}" "${{SBO_RESTORE_SERVER_NAME:?}}"
runtime_dir="${{SBO_PG_RUNTIME_DIR:-/tmp}}"
termination="${{SBO_TERMINATION_LOG:-/dev/termination-log}}"
set --
if [ -n "${{SBO_RESTORE_ENDPOINT_URL:-}}" ]; then set -- --endpoint-url "$SBO_RESTORE_ENDPOINT_URL"; fi
if ! listing="$(barman-cloud-backup-list "$@" --format json "$SBO_RESTORE_SOURCE" "$SBO_RESTORE_SERVER_NAME")"
then
  log "cannot list the backups in $SBO_RESTORE_SOURCE ($SBO_RESTORE_SERVER_NAME):" \\
    "check the endpoint, the credentials and the CA"
  exit 1
fi
code=0
printf '%s' "$listing" | python3 -c '{CHOOSE_BACKUP_QUOTED}' \\
  >"$runtime_dir/choice" 2>"$runtime_dir/why" || code=$?
first="$(printf '%s' "$listing" | python3 -c '{_FIRST_RECOVERABILITY_POINT}')"
if [ "$code" = 0 ]; then
  backup_id="$(sed -n 1p "$runtime_dir/choice")"
  reason="backup $backup_id is restored, then WAL replayed to $(sed -n 2p "$runtime_dir/choice")"
else
  reason="$(sed 's/^restore[.]sh: //' "$runtime_dir/why" | tail -n 1)"
fi
printf '%s\\n%s\\n%s\\n' "$code" "$first" "$reason" >"$termination"
log "verdict $code: $reason"
"""

# The init container ``restore``, before ``bootstrap``, in every instance of a backend restored
# from a store: once the operator has made this instance the primary and PGDATA is empty, restore.sh
# builds PGDATA; then the bootstrap sets this backend's roles and passwords as on every start. A
# replica clones the primary as usual. A target the archive cannot reach is held here (the pod
# stays in its init phase, never a crash loop) with the reason in the log.
RESTORE_INSTANCE_SCRIPT = r"""#!/bin/sh
set -eu
log() { printf 'restore-instance.sh: %s\n' "$*" >&2; }
: "${PGDATA:?}" "${SBO_PG_ROLE_FILE:?}" "${SBO_BACKUP_SCRIPTS_DIR:?}"
# As PID 1, sh ignores SIGTERM unless trapped: the pod's deletion ends the wait at once.
sleeper=""
trap 'if [ -n "$sleeper" ]; then kill "$sleeper" 2>/dev/null || true; fi; exit 143' TERM
waited=0
while :; do
  role="$({ tr -d '[:space:]' < "$SBO_PG_ROLE_FILE"; } 2>/dev/null || true)"
  case "$role" in primary | replica) break ;; esac
  if [ $((waited % 10)) -eq 0 ]; then log "waiting for the operator to assign a role"; fi
  sleep 1
  waited=$((waited + 1))
done
if [ "$role" != primary ]; then
  log "a replica clones the primary: nothing to restore here"
  exit 0
fi
if [ -s "$PGDATA/PG_VERSION" ]; then
  log "$PGDATA holds a data directory: nothing to restore"
  exit 0
fi
status=0
sh "$SBO_BACKUP_SCRIPTS_DIR/restore.sh" || status=$?
case "$status" in
  0) log "restored; the bootstrap sets this backend's roles next" ;;
  2 | 3 | 4 | 5)
    log "the restore cannot reach its target (exit $status, why above):" \
      "recreate the backend with another target"
    while :; do
      sleep 3600 &
      sleeper=$!
      wait "$sleeper" || true
    done ;;
  *) exit "$status" ;;
esac
"""


def recovery_check_job_name(backend: ScalableBackend) -> str:
    return f"{backend.metadata.name}-recovery-check"


def build_recovery_check_job(
    backend: ScalableBackend, *, images: DataServiceImages, config_dir: str
) -> Manifest | None:
    """``<name>-recovery-check``: can the recovery target be reached from the source? None unless
    the backend restores. Run once, before the instances' StatefulSet exists (backoffLimit 0)."""
    postgres = backend.spec.postgres
    recovery = _recovery(backend)
    if recovery is None or not postgres.enabled:
        return None
    mounts = [{"name": "config", "mountPath": config_dir, "readOnly": True}, tmp_volume_mount()]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": child_names(backend).postgres_config, "defaultMode": 0o444}},
        tmp_volume(),
    ]
    ca = _ca_volume("restore-ca", recovery.source)
    if ca is not None:
        volumes.append(ca)
        mounts.append({"name": "restore-ca", "mountPath": RESTORE_CA_DIR, "readOnly": True})
    env = [
        *restore_env(recovery, scripts_dir=config_dir),
        {"name": "SBO_PG_RUNTIME_DIR", "value": "/tmp"},  # noqa: S108 - the pod's private emptyDir
    ]
    container = {
        "name": RECOVERY_CHECK_CONTAINER,
        "image": images.postgres_image(postgres.version),
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", f"{config_dir}/{RECOVERY_CHECK_SCRIPT_NAME}"],
        "env": _sorted_env(env),
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
        "securityContext": restricted_container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_metadata(
            backend, name=recovery_check_job_name(backend), component=Component.BACKUP
        ),
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": common_labels(backend, Component.BACKUP)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [container],
                    "enableServiceLinks": False,
                    "restartPolicy": "Never",
                    "securityContext": pod_security_context(uid=DATA_SERVICE_UID, fs_group=DATA_SERVICE_UID),
                    "volumes": volumes,
                },
            },
        },
    }


def wire_recovery(backend: ScalableBackend, pod_spec: dict[str, Any], *, scripts_dir: str) -> None:
    """Put the ``restore`` init container before ``bootstrap`` (in place; nothing unless restoring).

    It has the bootstrap's image, context, mounts and environment (PGDATA, the role file), minus
    the application's and the operator's passwords, plus the source's environment and CA."""
    recovery = _recovery(backend)
    if recovery is None:
        return
    bootstrap = pod_spec["initContainers"][0]
    mounts = copy.deepcopy(bootstrap["volumeMounts"])
    ca = _ca_volume("restore-ca", recovery.source)
    if ca is not None:
        pod_spec["volumes"].append(ca)
        mounts.append({"name": "restore-ca", "mountPath": RESTORE_CA_DIR, "readOnly": True})
    kept = [
        variable
        for variable in copy.deepcopy(bootstrap["env"])
        if not variable["name"].startswith(_NOT_FOR_RESTORE_ENV)
    ]
    restore = {
        **copy.deepcopy(bootstrap),
        "name": "restore",
        "command": ["sh", f"{scripts_dir}/{RESTORE_INSTANCE_SCRIPT_NAME}"],
        "env": _sorted_env([*kept, *restore_env(recovery, scripts_dir=scripts_dir)]),
        "volumeMounts": mounts,
    }
    pod_spec["initContainers"].insert(0, restore)


# Credentials restore.sh does not need: the roles are the bootstrap's, the archive the server's.
_NOT_FOR_RESTORE_ENV = (
    "SBO_APP_",
    "SBO_OPERATOR_",
    "SBO_REPLICATION_",
    "SBO_PRIMARY_",
    "AWS_",
    "SBO_BACKUP_",
)
