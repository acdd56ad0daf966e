"""Backups on real pods: MinIO as a pod, a backend archiving to it with a base backup every minute,
and a second backend restored from that archive reading back the rows the first one wrote.

The module starts its own control plane with the real node and runs the operator as a local process
on the images built here, as tests/node/test_backend_on_real_pods.py does (conftest.py's fixtures, its
namespace enforcing Pod Security "restricted"); MinIO's image is packed by `hack/install-tools.sh minio`.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from devkit.cluster import KubectlError, LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from devkit.paths import REPO
from devkit.real_pods import real_node_namespace
from tests.node.shop_backend import NAMESPACE, get_json, local_variant, node_images

pytestmark = pytest.mark.node

SOCKET_DIR = "/var/run/postgresql"


def _minio_version() -> str:
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        if line.startswith("MINIO_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("hack/versions.env has no MINIO_VERSION")


MINIO_IMAGE = f"sbo.local/minio:{_minio_version()}"
STORE_USER = "sbo-backups"
STORE_PASSWORD = "sbo-backups-password-for-the-node-test"
DESTINATION = "s3://backups/shop"
TIMEOUT = 600


def minio_objects() -> list[dict[str, Any]]:
    restricted = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    labels = {"app": "minio"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "minio", "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "minio",
                    "image": MINIO_IMAGE,
                    "imagePullPolicy": "Never",
                    "args": ["server", "/data", "--address", ":9000", "--certs-dir", "/certs"],
                    "env": [
                        {"name": "MINIO_ROOT_USER", "value": STORE_USER},
                        {"name": "MINIO_ROOT_PASSWORD", "value": STORE_PASSWORD},
                        {"name": "HOME", "value": "/tmp"},
                    ],
                    "ports": [{"containerPort": 9000, "name": "s3"}],
                    "readinessProbe": {
                        "httpGet": {"path": "/minio/health/ready", "port": 9000},
                        "periodSeconds": 2,
                    },
                    "securityContext": restricted,
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data"},
                        {"name": "certs", "mountPath": "/certs"},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                }
            ],
            "volumes": [{"name": name, "emptyDir": {}} for name in ("data", "certs", "tmp")],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "minio", "namespace": NAMESPACE},
        "spec": {"selector": labels, "ports": [{"name": "s3", "port": 9000, "targetPort": 9000}]},
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "store", "namespace": NAMESPACE},
        "stringData": {"AWS_ACCESS_KEY_ID": STORE_USER, "AWS_SECRET_ACCESS_KEY": STORE_PASSWORD},
    }
    return [pod, service, secret]


STORE = {
    "destination": DESTINATION,
    "endpointURL": f"http://minio.{NAMESPACE}.svc:9000",
    "credentials": {"secretName": "store"},
}


def backend(name: str, postgres: dict[str, Any]) -> dict[str, Any]:
    manifest = local_variant(NAMESPACE)
    manifest["metadata"]["name"] = name
    spec = manifest["spec"]
    spec.pop("worker", None)
    spec.pop("networkPolicies", None)
    spec["postgres"].update(postgres)
    return manifest


def status_of(cluster: LocalCluster, name: str) -> dict[str, Any]:
    body = get_json(cluster, "sb", name, namespace=NAMESPACE)
    status: dict[str, Any] = body.get("status") or {}
    return status


def condition(cluster: LocalCluster, name: str, type: str) -> dict[str, Any] | None:
    return next((c for c in status_of(cluster, name).get("conditions", []) if c["type"] == type), None)


def wait_ready(cluster: LocalCluster, name: str) -> None:
    waited = cluster.kubectl(
        "wait", "--for=condition=Ready", f"sb/{name}", "-n", NAMESPACE, f"--timeout={TIMEOUT}s", check=False
    )
    if waited.returncode != 0:
        pods = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False).stdout
        raise AssertionError(f"{name} not Ready\nstatus: {status_of(cluster, name)}\n{pods}")


def primary(cluster: LocalCluster, name: str) -> str:
    selector = f"app.kubernetes.io/instance={name},sbo.dev/postgres-role=primary"
    items = get_json(cluster, "pods", "-l", selector, namespace=NAMESPACE)["items"]
    [pod] = [p for p in items if "deletionTimestamp" not in p["metadata"]]
    return str(pod["metadata"]["name"])


def psql(cluster: LocalCluster, name: str, sql: str, database: str = "app") -> list[str]:
    command = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", SOCKET_DIR, "-d", database]
    args = ["exec", "-i", "-n", NAMESPACE, primary(cluster, name), "-c", "postgres", "--", *command]
    return cluster.kubectl(*args, input=sql, timeout=60).stdout.split()


def archived_past(cluster: LocalCluster, name: str, segment: str) -> bool:
    """The primary's archiver has archived ``segment`` or a later one (names sort by timeline, position)."""
    [last] = psql(cluster, name, "SELECT coalesce(last_archived_wal, '-') FROM pg_stat_archiver;", "postgres")
    return last != "-" and last >= segment


# Run in the source primary's postgres container (its barman-cloud brings boto3, its environment the
# store's): every WAL file in the store, with its size and when it was stored.
LIST_ARCHIVED_WAL = """
import os, boto3
bucket, _, path = os.environ["SBO_BACKUP_DESTINATION"].removeprefix("s3://").partition("/")
prefix = path.strip("/") + "/" + os.environ["SBO_BACKUP_SERVER_NAME"] + "/wals/"
s3 = boto3.client("s3", endpoint_url=os.environ.get("SBO_BACKUP_ENDPOINT_URL") or None)
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for found in page.get("Contents", []):
        print(found["LastModified"].isoformat(), found["Size"], found["Key"].removeprefix(prefix))
"""


def restore_evidence(cluster: LocalCluster, restored: str, source: str) -> str:
    """What a restore that came back short leaves for the reader before the node goes: restore.sh's
    lines (the WAL segment recovery replayed through, the timeline it promoted onto), the source
    primary's archiver, and the WAL files in the store, with when each was stored."""
    restore = cluster.kubectl(
        "logs", "-n", NAMESPACE, primary(cluster, restored), "-c", "restore", check=False
    )
    archiver = psql(cluster, source, "SELECT * FROM pg_stat_archiver;", "postgres")
    listing = [
        "exec",
        "-i",
        "-n",
        NAMESPACE,
        primary(cluster, source),
        "-c",
        "postgres",
        "--",
        "python3",
        "-",
    ]
    store = cluster.kubectl(*listing, input=LIST_ARCHIVED_WAL, check=False, timeout=60)
    return (
        f"--- restore of {restored}:\n{restore.stdout}{restore.stderr}"
        f"--- pg_stat_archiver of {source}: {archiver}\n"
        f"--- WAL in the store:\n{store.stdout}{store.stderr}"
    )


def test_a_backend_backed_up_on_schedule_is_restored_into_a_second_one(
    real_cluster: LocalCluster, operator: OperatorProcess
) -> None:
    assert MINIO_IMAGE in node_images(real_cluster), "run `hack/install-tools.sh minio`"
    real_cluster.apply(real_node_namespace(NAMESPACE))
    for manifest in minio_objects():
        real_cluster.apply(manifest)
    real_cluster.kubectl("wait", "--for=condition=Ready", "pod/minio", "-n", NAMESPACE, "--timeout=120s")

    backup = {**STORE, "schedule": "* * * * *", "archiveTimeout": "5s"}
    real_cluster.apply(backend("shop", {"backup": backup}))
    wait_ready(real_cluster, "shop")

    def backed_up() -> dict[str, Any] | None:
        found = status_of(real_cluster, "shop").get("postgres", {}).get("backup") or {}
        return found if found.get("lastSuccessfulBackup") else None

    status = eventually(backed_up, timeout=300, what="a scheduled base backup in status.postgres.backup")
    assert status["firstRecoverabilityPoint"]
    archiving = eventually(
        lambda: (c := condition(real_cluster, "shop", "ContinuousArchiving")) and c["status"] == "True" and c,
        timeout=120,
        what="ContinuousArchiving True",
    )
    assert archiving["reason"] == "Archiving"

    psql(real_cluster, "shop", "CREATE TABLE kept (id int PRIMARY KEY, note text);"
         "INSERT INTO kept SELECT g, 'row ' || g FROM generate_series(1, 100) g;")  # fmt: skip
    [segment] = psql(real_cluster, "shop", "SELECT pg_walfile_name(pg_switch_wal());", database="postgres")

    eventually(
        lambda: archived_past(real_cluster, "shop", segment), timeout=120, what=f"WAL {segment} archived"
    )

    restored_from = {"recovery": {"source": STORE, "target": {}}}
    real_cluster.apply(backend("copy", {"bootstrap": restored_from}))
    started = time.monotonic()
    wait_ready(real_cluster, "copy")
    rows = psql(real_cluster, "copy", "SELECT count(*), sum(id) FROM kept;")
    assert rows == ["100|5050"], rows
    print(f"backups figures: restore to Ready {time.monotonic() - started:.1f}s")
    jobs = [j["metadata"]["name"] for j in get_json(real_cluster, "jobs", namespace=NAMESPACE)["items"]]
    assert "copy-recovery-check" not in jobs, "the recovery check is gone once the instances exist"


def test_after_a_failover_the_new_primary_archives_and_a_restore_misses_nothing(
    real_cluster: LocalCluster, operator: OperatorProcess
) -> None:
    """Runs after the test above, on its backend "shop" (three instances)."""
    # The local variant waits 30 s for a lost primary, and a deleted pod comes back sooner (it
    # restarts in place, no failover): promote at once, as the failover tests do.
    real_cluster.kubectl(
        "patch",
        "sb/shop",
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        '{"spec":{"postgres":{"failoverDelay":"0s"}}}',
    )
    eventually(
        lambda: (
            (body := get_json(real_cluster, "sb", "shop", namespace=NAMESPACE))["metadata"]["generation"]
            == (body.get("status") or {}).get("observedGeneration")
        ),
        timeout=60,
        what="the operator to see failoverDelay 0s",
    )
    wait_ready(real_cluster, "shop")
    old = primary(real_cluster, "shop")
    psql(real_cluster, "shop", "INSERT INTO kept SELECT g, 'before' FROM generate_series(101, 200) g;")
    [before] = psql(real_cluster, "shop", "SELECT pg_walfile_name(pg_switch_wal());", database="postgres")
    eventually(
        lambda: archived_past(real_cluster, "shop", before), timeout=120, what=f"WAL {before} archived"
    )

    real_cluster.kubectl("delete", "pod", "-n", NAMESPACE, old, "--grace-period=0", "--force")

    def failed_over() -> str | None:
        try:
            new = primary(real_cluster, "shop")
            ready = psql(real_cluster, "shop", "SELECT NOT pg_is_in_recovery();", database="postgres")
        except (AssertionError, ValueError, KubectlError):
            return None
        return new if new != old and ready == ["t"] else None

    new = eventually(failed_over, timeout=180, what="a new primary")
    psql(real_cluster, "shop", "INSERT INTO kept SELECT g, 'after' FROM generate_series(201, 300) g;")
    [after] = psql(real_cluster, "shop", "SELECT pg_walfile_name(pg_switch_wal());", database="postgres")
    assert after[:8] != before[:8], f"the new primary {new} writes a new timeline"
    eventually(lambda: archived_past(real_cluster, "shop", after), timeout=120, what=f"WAL {after} archived")
    archiving = eventually(
        lambda: (c := condition(real_cluster, "shop", "ContinuousArchiving")) and c["status"] == "True" and c,
        timeout=120,
        what="ContinuousArchiving True after the failover",
    )
    assert archiving["reason"] == "Archiving"

    # The proof of no gap: a restore to the latest WAL replays both timelines through every segment.
    real_cluster.apply(
        backend("after-failover", {"bootstrap": {"recovery": {"source": STORE, "target": {}}}})
    )
    wait_ready(real_cluster, "after-failover")
    rows = psql(real_cluster, "after-failover", "SELECT count(*), min(id), max(id) FROM kept;")
    assert rows == ["300|1|300"], f"{rows}\n{restore_evidence(real_cluster, 'after-failover', 'shop')}"
