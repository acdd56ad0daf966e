"""Backups wired into the PostgreSQL instances: the archive settings, the scripts, and where the
object store's credentials and CA go (only the PostgreSQL containers, by reference)."""

from __future__ import annotations

from typing import Any

import pytest

from sbo_operator.builders.backup import BARMAN_SERVER_NAME
from sbo_operator.builders.backup_scripts import backup_script_files
from sbo_operator.builders.labels import CONFIG_HASH_ANNOTATION
from sbo_operator.builders.postgres import build_postgres_config_map, build_postgres_statefulset
from sbo_operator.components.backup import store_references
from sbo_operator.references import template_references
from tests.unit.factories import backend_from, load_example, restricted_violations

pytestmark = pytest.mark.unit

Manifest = dict[str, Any]

STORE = {
    "destination": "s3://backups/shop",
    "endpointURL": "https://minio.storage.svc:9000",
    "credentials": {"secretName": "shop-backup"},
}


def present(manifest: Manifest | None) -> Manifest:
    assert manifest is not None
    return manifest


def containers(statefulset: Manifest) -> dict[str, dict[str, Any]]:
    pod = statefulset["spec"]["template"]["spec"]
    return {c["name"]: c for c in [*pod.get("initContainers", []), *pod["containers"]]}


def env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container["env"]}


def conf_lines(backend_spec: dict[str, Any]) -> list[str]:
    config = present(build_postgres_config_map(backend_from(backend_spec)))
    return [line for line in config["data"]["postgresql.conf"].splitlines() if line.startswith("archive")]


def test_without_backups_nothing_is_archived_and_no_store_is_named() -> None:
    backend = backend_from({})
    config = present(build_postgres_config_map(backend))
    assert not set(backup_script_files()) & set(config["data"])
    assert "archive_" not in config["data"]["postgresql.conf"]
    statefulset = present(build_postgres_statefulset(backend))
    for container in containers(statefulset).values():
        assert not [name for name in env(container) if name.startswith(("AWS_", "SBO_BACKUP", "SBO_RESTORE"))]


def test_backups_archive_every_segment_with_the_scripts_within_the_archive_timeout() -> None:
    assert conf_lines({"postgres": {"backup": STORE}}) == [
        "archive_mode = on",
        "archive_command = 'sh /etc/sbo-postgres/wal-archive.sh %p'",
        "archive_timeout = '30s'",
    ]
    assert conf_lines({"postgres": {"backup": {**STORE, "archiveTimeout": "1m30s"}}})[-1] == (
        "archive_timeout = '90s'"
    )
    data = present(build_postgres_config_map(backend_from({"postgres": {"backup": STORE}})))["data"]
    assert {name: data[name] for name in backup_script_files()} == backup_script_files()


@pytest.mark.parametrize(("compression", "expected"), [(None, "none"), ("gzip", "gzip"), ("bzip2", "bzip2")])
def test_archiving_and_base_backups_compress_as_the_spec_says_and_not_at_all_by_default(
    compression: str | None, expected: str
) -> None:
    store = STORE if compression is None else {**STORE, "compression": compression}
    statefulset = present(build_postgres_statefulset(backend_from({"postgres": {"backup": store}})))
    for name, container in containers(statefulset).items():
        assert env(container)["SBO_BACKUP_COMPRESSION"]["value"] == expected, name


def test_a_restored_backend_without_backups_gets_the_scripts_but_archives_nothing() -> None:
    spec = {"postgres": {"bootstrap": {"recovery": {"source": STORE}}}}
    data = present(build_postgres_config_map(backend_from(spec)))["data"]
    assert {"restore.sh", "wal-restore.sh"} <= set(data)
    assert conf_lines(spec) == []


def test_turning_backups_on_rolls_the_instances() -> None:
    without = present(build_postgres_statefulset(backend_from({})))
    with_backups = present(build_postgres_statefulset(backend_from({"postgres": {"backup": STORE}})))
    annotation = CONFIG_HASH_ANNOTATION
    assert (
        without["spec"]["template"]["metadata"]["annotations"][annotation]
        != with_backups["spec"]["template"]["metadata"]["annotations"][annotation]
    )


def test_the_store_credentials_reach_only_the_postgres_containers_by_reference() -> None:
    statefulset = present(build_postgres_statefulset(load_example("backups.yaml")))
    for name, container in containers(statefulset).items():
        variables = env(container)
        assert variables["AWS_ACCESS_KEY_ID"]["valueFrom"] == {
            "secretKeyRef": {"name": "shop-backup", "key": "AWS_ACCESS_KEY_ID"}
        }, name
        assert variables["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": "shop-backup", "key": "AWS_SECRET_ACCESS_KEY"}
        }, name
        assert "AWS_SESSION_TOKEN" not in variables
        assert variables["AWS_DEFAULT_REGION"]["value"] == "us-east-1"
        assert variables["AWS_CA_BUNDLE"]["value"] == "/etc/sbo-backup-ca/ca.crt"
        assert variables["SBO_BACKUP_DESTINATION"]["value"] == "s3://backups/shop"
        assert variables["SBO_BACKUP_SERVER_NAME"]["value"] == BARMAN_SERVER_NAME
        assert variables["SBO_BACKUP_ENDPOINT_URL"]["value"] == "https://minio.storage.svc:9000"
        assert variables["SBO_BACKUP_RETENTION_WINDOW"]["value"] == "30 DAYS"
        assert {"name": "backup-ca", "mountPath": "/etc/sbo-backup-ca", "readOnly": True} in container[
            "volumeMounts"
        ]
        assert [v["name"] for v in container["env"]] == sorted(v["name"] for v in container["env"])
        # Never a value on a command line.
        assert not [arg for arg in container.get("command", []) + container.get("args", []) if "AWS" in arg]
    pod = statefulset["spec"]["template"]["spec"]
    assert {
        "name": "backup-ca",
        "secret": {
            "secretName": "minio-ca",
            "defaultMode": 0o444,
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        },
    } in pod["volumes"]
    assert {("Secret", "shop-backup"), ("Secret", "minio-ca")} <= template_references(statefulset)
    assert restricted_violations(pod) == []


def test_a_session_token_is_passed_by_reference_too() -> None:
    credentials = {"secretName": "sts", "sessionTokenKey": "token"}
    backend = backend_from({"postgres": {"backup": {**STORE, "credentials": credentials}}})
    variables = env(containers(present(build_postgres_statefulset(backend)))["postgres"])
    assert variables["AWS_SESSION_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "sts", "key": "token"}}
    assert not {"AWS_CA_BUNDLE", "AWS_DEFAULT_REGION"} & set(variables)


def test_the_references_name_each_secret_key_and_its_field() -> None:
    backup = load_example("backups.yaml").spec.postgres.backup
    assert backup is not None
    assert [(r.field, r.name, r.key) for r in store_references("spec.postgres.backup", backup)] == [
        ("spec.postgres.backup.credentials.accessKeyIdKey", "shop-backup", "AWS_ACCESS_KEY_ID"),
        ("spec.postgres.backup.credentials.secretAccessKeyKey", "shop-backup", "AWS_SECRET_ACCESS_KEY"),
        ("spec.postgres.backup.ca.key", "minio-ca", "ca.crt"),
    ]


def test_each_instance_runs_a_restricted_backup_sidecar_that_reads_its_request_through_the_downward_api() -> (
    None
):
    statefulset = present(build_postgres_statefulset(load_example("backups.yaml")))
    pod = statefulset["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["postgres", "backup"]
    sidecar = containers(statefulset)["backup"]
    server = containers(statefulset)["postgres"]
    assert sidecar["image"] == server["image"]
    assert sidecar["command"] == ["sh", "/etc/sbo-postgres/backup-sidecar.sh"]
    assert sidecar["securityContext"] == server["securityContext"]
    assert not {"ports", "readinessProbe", "livenessProbe", "startupProbe", "lifecycle"} & set(sidecar)
    variables = env(sidecar)
    assert variables["SBO_BACKUP_REQUEST_FILE"]["value"] == "/etc/sbo-podinfo/backup-request"
    assert variables["SBO_PG_ROLE_FILE"]["value"] == "/etc/sbo-podinfo/role"
    assert variables["SBO_OPERATOR_USER"]["value"] == "sbo_operator"
    assert variables["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "shop-backup"
    assert not [name for name in variables if name.startswith(("SBO_REPLICATION_", "SBO_PRIMARY_"))], (
        "the sidecar never streams: no replication password"
    )
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    assert mounts["data"]["readOnly"] is True
    assert set(mounts) == {"config", "data", "podinfo", "run", "tmp", "backup-ca"}
    podinfo = next(v for v in pod["volumes"] if v["name"] == "podinfo")
    assert {
        "path": "backup-request",
        "fieldRef": {"fieldPath": "metadata.annotations['sbo.dev/backup-request']"},
    } in podinfo["downwardAPI"]["items"]
    data = present(build_postgres_config_map(load_example("backups.yaml")))["data"]
    assert "backup-sidecar.sh" in data
    assert restricted_violations(pod) == []


def test_a_backend_without_backups_has_no_sidecar_and_no_request_file() -> None:
    pod = present(build_postgres_statefulset(backend_from({})))["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["postgres"]
    podinfo = next(v for v in pod["volumes"] if v["name"] == "podinfo")
    assert [item["path"] for item in podinfo["downwardAPI"]["items"]] == ["role"]
