"""The PostgreSQL builders: targeted properties."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sbo_operator.builders.network_policies import build_postgres_network_policy
from sbo_operator.builders.postgres import (
    build_postgres_config_map,
    build_postgres_headless_service,
    build_postgres_operator_secret,
    build_postgres_pdb,
    build_postgres_read_only_service,
    build_postgres_read_write_service,
    build_postgres_secret,
    build_postgres_statefulset,
    postgres_instance_names,
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
    assert build_postgres_statefulset(backend) is None
    assert build_postgres_operator_secret(backend, existing_data=None, random_bytes=RANDOM_BYTES) is None
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


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {variable["name"]: variable for variable in container["env"]}


def test_one_statefulset_runs_every_instance_without_a_role_in_selector_or_template() -> None:
    backend = backend_from({"postgres": {"readReplicas": 3, "version": "17"}})
    statefulset = present(build_postgres_statefulset(backend))
    spec = statefulset["spec"]
    assert (statefulset["metadata"]["name"], spec["replicas"]) == ("shop-postgres", 4)
    assert spec["serviceName"] == "shop-postgres-headless"
    assert spec["podManagementPolicy"] == "Parallel"
    assert "sbo.dev/postgres-role" not in spec["selector"]["matchLabels"]
    assert "sbo.dev/postgres-role" not in spec["template"]["metadata"]["labels"]
    assert "sbo.dev/postgres-role" not in statefulset["metadata"]["labels"]
    pod = spec["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"] == ["sh", "/etc/sbo-postgres/instance-bootstrap.sh"]
    assert pod["containers"][0]["command"] == ["sh", "/etc/sbo-postgres/start.sh"]
    assert pod["containers"][0]["image"] == "postgres:17"
    assert pod["securityContext"]["runAsUser"] == 999
    mounts = {mount["mountPath"] for mount in pod["containers"][0]["volumeMounts"]}
    assert {"/var/lib/postgresql/data", "/var/run/postgresql", "/tmp", "/etc/sbo-podinfo"} <= mounts
    assert postgres_instance_names(backend) == [f"shop-postgres-{ordinal}" for ordinal in range(4)]


def test_replicas_can_be_held_above_the_spec() -> None:
    backend = backend_from({"postgres": {"readReplicas": 1}})
    assert present(build_postgres_statefulset(backend, replicas=3))["spec"]["replicas"] == 3
    assert postgres_instance_names(backend, 3)[-1] == "shop-postgres-2"


def test_each_pod_reads_its_role_label_through_the_downward_api() -> None:
    pod = present(build_postgres_statefulset(backend_from({})))["spec"]["template"]["spec"]
    (podinfo,) = [volume for volume in pod["volumes"] if volume["name"] == "podinfo"]
    assert podinfo["downwardAPI"]["items"] == [
        {"path": "role", "fieldRef": {"fieldPath": "metadata.labels['sbo.dev/postgres-role']"}}
    ]
    for container in [*pod["initContainers"], *pod["containers"]]:
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "podinfo"]
        assert mount == {"name": "podinfo", "mountPath": "/etc/sbo-podinfo", "readOnly": True}
        assert env_of(container)["SBO_PG_ROLE_FILE"]["value"] == "/etc/sbo-podinfo/role"


def test_every_instance_gets_what_a_primary_and_a_standby_need() -> None:
    pod = present(build_postgres_statefulset(backend_from({})))["spec"]["template"]["spec"]
    init = env_of(pod["initContainers"][0])
    assert init["SBO_PRIMARY_HOST"]["value"] == "shop-postgres-rw.demo.svc"
    assert init["SBO_PRIMARY_PORT"]["value"] == "5432"
    assert init["SBO_PG_APPLICATION_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert init["SBO_REPLICATION_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "shop-postgres-app", "key": "replication-password"}
    }
    assert init["SBO_APP_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "shop-postgres-app", "key": "password"}
    }
    assert (init["SBO_APP_USER"]["value"], init["SBO_APP_DATABASE"]["value"]) == ("app", "app")
    assert init["SBO_OPERATOR_USER"]["valueFrom"] == {
        "secretKeyRef": {"name": "shop-postgres-operator", "key": "username"}
    }
    assert init["SBO_OPERATOR_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "shop-postgres-operator", "key": "password"}
    }
    assert init["PGDATA"]["value"] == "/var/lib/postgresql/data/pgdata"
    server = env_of(pod["containers"][0])
    assert server["SBO_PRIMARY_HOST"]["value"] == "shop-postgres-rw.demo.svc"
    assert "SBO_OPERATOR_PASSWORD" not in server  # only the bootstrap applies it
    assert "SBO_APP_PASSWORD" not in server


def test_operator_secret_is_generated_once_and_kept() -> None:
    backend = backend_from({})
    secret = present(build_postgres_operator_secret(backend, existing_data=None, random_bytes=RANDOM_BYTES))
    data = decode_secret_data(secret["data"])
    assert secret["metadata"]["name"] == "shop-postgres-operator"
    assert data["username"] == "sbo_operator"
    assert len(data["password"]) >= 43
    app = decode_secret_data(
        present(build_postgres_secret(backend, existing_data=None, random_bytes=RANDOM_BYTES))["data"]
    )
    assert data["password"] not in app.values()
    kept = present(build_postgres_operator_secret(backend, existing_data=secret["data"], random_bytes=None))
    assert kept["data"] == secret["data"]


def test_headless_service_and_pdb_cover_every_instance() -> None:
    backend = backend_from({})
    headless = present(build_postgres_headless_service(backend))
    pdb = present(build_postgres_pdb(backend))
    selector = present(build_postgres_statefulset(backend))["spec"]["selector"]["matchLabels"]
    assert headless["metadata"]["name"] == "shop-postgres-headless"
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == selector
    # The PDB also covers the old shape's pods while a backend moves from it (no shape label).
    assert selector.items() >= pdb["spec"]["selector"]["matchLabels"].items()
    assert "sbo.dev/postgres-shape" not in pdb["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1


LEGACY_SHAPE = Path(__file__).parents[2] / "node" / "legacy_shape"


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


@pytest.mark.parametrize("legacy", ["primary", "replica"])
def test_the_instances_and_the_old_shape_select_only_their_own_pods(legacy: str) -> None:
    """While a backend moves from the two StatefulSets, neither shape's StatefulSet selects the
    other's pods, whatever role label a pod carries; -rw, -ro and the NetworkPolicy reach both."""
    backend = backend_from({"postgres": {"readReplicas": 2}})
    instances = present(build_postgres_statefulset(backend))
    old = yaml.safe_load((LEGACY_SHAPE / f"StatefulSet-shop-postgres-{legacy}.yaml").read_text())
    old_pod = old["spec"]["template"]["metadata"]["labels"]
    for role in ("primary", "replica"):
        instance_pod = {**instances["spec"]["template"]["metadata"]["labels"], "sbo.dev/postgres-role": role}
        relabelled_old_pod = {**old_pod, "sbo.dev/postgres-role": role}
        assert not _matches(instances["spec"]["selector"]["matchLabels"], relabelled_old_pod)
        assert not _matches(
            old["spec"]["selector"]["matchLabels"], {**instance_pod, "sbo.dev/postgres-role": "x"}
        )
        assert _matches(instances["spec"]["selector"]["matchLabels"], instance_pod)
        service = present(
            (build_postgres_read_write_service if role == "primary" else build_postgres_read_only_service)(
                backend
            )
        )
        assert _matches(service["spec"]["selector"], instance_pod)
        assert _matches(service["spec"]["selector"], relabelled_old_pod)
    policy = present(build_postgres_network_policy(backend))
    assert _matches(policy["spec"]["podSelector"]["matchLabels"], old_pod)
    assert _matches(
        policy["spec"]["podSelector"]["matchLabels"], instances["spec"]["template"]["metadata"]["labels"]
    )


@pytest.mark.parametrize(("retain", "policy"), [(True, "Retain"), (False, "Delete")])
def test_claim_retention_follows_retain_on_delete(retain: bool, policy: str) -> None:
    backend = backend_from({"postgres": {"retainOnDelete": retain}})
    assert present(build_postgres_statefulset(backend))["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": policy,
        "whenScaled": policy,
    }


def test_storage_class_and_size_reach_the_claims() -> None:
    backend = backend_from({"postgres": {"storage": {"size": "20Gi", "storageClassName": "standard"}}})
    (claim,) = present(build_postgres_statefulset(backend))["spec"]["volumeClaimTemplates"]
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


def test_synchronous_standbys_name_every_possible_instance_so_scaling_restarts_nothing() -> None:
    def conf_and_hash(spec: dict[str, Any]) -> tuple[str, str]:
        backend = backend_from({"postgres": spec})
        conf = present(build_postgres_config_map(backend))["data"]["postgresql.conf"]
        template = present(build_postgres_statefulset(backend))["spec"]["template"]["metadata"]
        return conf, template["annotations"]["sbo.dev/config-hash"]

    asynchronous, _ = conf_and_hash({"readReplicas": 2})
    assert "synchronous_standby_names" not in asynchronous
    two, two_hash = conf_and_hash({"readReplicas": 2, "synchronous": {"standbys": 1}})
    names = ", ".join(f'"shop-postgres-{ordinal}"' for ordinal in range(6))
    assert f"synchronous_standby_names = 'ANY 1 ({names})'\n" in two
    assert "synchronous_commit = on\n" in two
    three, three_hash = conf_and_hash({"readReplicas": 3, "synchronous": {"standbys": 1}})
    assert (three, three_hash) == (two, two_hash)
