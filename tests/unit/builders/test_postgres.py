"""The PostgreSQL builders: targeted properties."""

from __future__ import annotations

from typing import Any

import pytest

from sbo_operator.builders.postgres import (
    build_postgres_config_map,
    build_postgres_primary_pdb,
    build_postgres_primary_statefulset,
    build_postgres_read_only_service,
    build_postgres_read_write_service,
    build_postgres_replica_statefulset,
    build_postgres_secret,
)
from sbo_operator.builders.secrets import decode_secret_data, encode_secret_data
from tests.unit.factories import RANDOM_BYTES, backend_from

pytestmark = pytest.mark.unit

Manifest = dict[str, Any]


def present(manifest: Manifest | None) -> Manifest:
    assert manifest is not None
    return manifest


def test_disabled_postgres_builds_nothing() -> None:
    backend = backend_from({"redis": {"enabled": False}, "postgres": {"enabled": False}})
    assert build_postgres_primary_statefulset(backend) is None
    assert build_postgres_secret(backend, existing_data=None, random_bytes=RANDOM_BYTES) is None


def test_postgres_secret_holds_the_connection_details() -> None:
    secret = present(build_postgres_secret(backend_from({}), existing_data=None, random_bytes=RANDOM_BYTES))
    data = decode_secret_data(secret["data"])
    assert data["username"] == "app"
    assert data["database"] == "app"
    assert data["host"] == "shop-postgres-rw.demo.svc"
    assert data["port"] == "5432"
    assert data["uri"] == f"postgresql://app:{data['password']}@shop-postgres-rw.demo.svc:5432/app"
    assert data["replication-username"] == "replicator"
    assert len(data["password"]) >= 43
    assert data["replication-password"] != data["password"]


def test_postgres_secret_keeps_existing_passwords_and_fills_in_missing_ones() -> None:
    existing = encode_secret_data({"password": "old-app-password"})
    secret = present(
        build_postgres_secret(backend_from({}), existing_data=existing, random_bytes=RANDOM_BYTES)
    )
    data = decode_secret_data(secret["data"])
    assert data["password"] == "old-app-password"
    assert "old-app-password" in data["uri"]
    assert data["replication-password"]


def test_primary_and_replica_statefulsets() -> None:
    backend = backend_from({"postgres": {"readReplicas": 3, "version": "17"}})
    primary = present(build_postgres_primary_statefulset(backend))
    replica = present(build_postgres_replica_statefulset(backend))
    assert (primary["metadata"]["name"], primary["spec"]["replicas"]) == ("shop-postgres-primary", 1)
    assert (replica["metadata"]["name"], replica["spec"]["replicas"]) == ("shop-postgres-replica", 3)
    for statefulset, script in ((primary, "primary-bootstrap.sh"), (replica, "replica-bootstrap.sh")):
        pod = statefulset["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]
        assert init["command"] == ["sh", f"/etc/sbo-postgres/{script}"]
        assert pod["containers"][0]["command"] == ["sh", "/etc/sbo-postgres/start.sh"]
        assert pod["containers"][0]["image"] == "postgres:17"
        assert pod["securityContext"]["runAsUser"] == 999
        mounts = {mount["mountPath"] for mount in pod["containers"][0]["volumeMounts"]}
        assert {"/var/lib/postgresql/data", "/var/run/postgresql", "/tmp"} <= mounts
    assert primary["spec"]["selector"] != replica["spec"]["selector"]


def test_replica_env_points_at_the_primary_with_the_replication_secret() -> None:
    replica = present(build_postgres_replica_statefulset(backend_from({})))
    init = replica["spec"]["template"]["spec"]["initContainers"][0]
    env = {variable["name"]: variable for variable in init["env"]}
    assert env["SBO_PRIMARY_HOST"]["value"] == "shop-postgres-rw.demo.svc"
    assert env["SBO_REPLICATION_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "shop-postgres-app", "key": "replication-password"}
    }
    assert env["PGDATA"]["value"] == "/var/lib/postgresql/data/pgdata"


@pytest.mark.parametrize(("retain", "policy"), [(True, "Retain"), (False, "Delete")])
def test_claim_retention_follows_retain_on_delete(retain: bool, policy: str) -> None:
    backend = backend_from({"postgres": {"retainOnDelete": retain}})
    for statefulset in (
        build_postgres_primary_statefulset(backend),
        build_postgres_replica_statefulset(backend),
    ):
        assert present(statefulset)["spec"]["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": policy,
            "whenScaled": policy,
        }


def test_storage_class_and_size_reach_the_claims() -> None:
    backend = backend_from({"postgres": {"storage": {"size": "20Gi", "storageClassName": "standard"}}})
    (claim,) = present(build_postgres_primary_statefulset(backend))["spec"]["volumeClaimTemplates"]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "20Gi"}},
        "storageClassName": "standard",
    }


def test_read_only_service_falls_back_to_the_primary_without_replicas() -> None:
    with_replicas = present(build_postgres_read_only_service(backend_from({"postgres": {"readReplicas": 2}})))
    without = present(build_postgres_read_only_service(backend_from({"postgres": {"readReplicas": 0}})))
    read_write = present(build_postgres_read_write_service(backend_from({})))
    assert with_replicas["spec"]["selector"]["sbo.dev/postgres-role"] == "replica"
    assert without["spec"]["selector"] == read_write["spec"]["selector"]
    assert read_write["spec"]["selector"]["sbo.dev/postgres-role"] == "primary"


def test_postgres_config_is_sized_from_memory_and_storage() -> None:
    backend = backend_from(
        {"postgres": {"storage": {"size": "1Gi"}, "resources": {"limits": {"memory": "1Gi"}}}}
    )
    conf = present(build_postgres_config_map(backend))["data"]["postgresql.conf"]
    assert "shared_buffers = 256MB\n" in conf
    assert "max_wal_size = 128MB\n" in conf
    assert "wal_keep_size = 64MB\n" in conf
    assert "password_encryption = 'scram-sha-256'\n" in conf


def test_pg_hba_uses_scram_and_keeps_replication_to_the_replication_role() -> None:
    hba = present(build_postgres_config_map(backend_from({})))["data"]["pg_hba.conf"]
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert ["host", "replication", "replicator", "0.0.0.0/0", "scram-sha-256"] in rules
    assert all(rule[-1] in {"scram-sha-256", "peer", "reject"} for rule in rules)
    assert not any(rule[-1] in {"trust", "md5", "password"} for rule in rules)


def test_primary_pdb_keeps_the_only_primary() -> None:
    assert present(build_postgres_primary_pdb(backend_from({})))["spec"]["minAvailable"] == 1


def test_a_replica_gives_up_on_an_unanswered_connection_to_the_primary_within_seconds() -> None:
    # On the real node, a replica's attempt whose SYN went unanswered while the primary's pod was
    # replaced retried that SYN for TCP's whole retry time. The walreceiver ignores connect_timeout (it
    # connects asynchronously); tcp_user_timeout bounds each attempt. The behaviour itself:
    # tests/integration/test_data_services_config.py, against a primary that drops SYNs.
    from sbo_operator.builders.postgres_config import START_SCRIPT

    conninfo = next(line for line in START_SCRIPT.splitlines() if "passfile=$passfile" in line)
    options = conninfo.strip().strip('"').split()
    assert "tcp_user_timeout=5000" in options
    assert not any(option.startswith("connect_timeout=") for option in options)
