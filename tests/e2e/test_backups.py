"""Backups through the real operator on the local control plane: the store's Secret held back and
named until it exists, every instance wired, and the primary's pod asked for a base backup at each
tick of the schedule, and not written in between."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from tests.e2e.conftest import basic_backend, condition, stalled, wait_ready, writes_during

pytestmark = pytest.mark.e2e

BACKUP = {
    "destination": "s3://backups/shop",
    "endpointURL": "http://minio.storage.svc:9000",
    "credentials": {"secretName": "shop-backup"},
    "schedule": "* * * * *",
}


def primary_request(core: client.CoreV1Api, namespace: str) -> str | None:
    for pod in core.list_namespaced_pod(namespace, label_selector="sbo.dev/postgres-role=primary").items:
        if pod.metadata.deletion_timestamp is None:
            return (pod.metadata.annotations or {}).get("sbo.dev/backup-request")
    return None


def test_backups_wait_for_the_store_secret_then_the_primary_is_asked_at_each_tick(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, apps: client.AppsV1Api
) -> None:
    core = client.CoreV1Api(cluster.api)
    spec = basic_backend(namespace)["spec"]
    cluster.apply(basic_backend(namespace, postgres={**spec.get("postgres", {}), "backup": BACKUP}))

    held = eventually(lambda: stalled(cluster, namespace), timeout=60, what="Stalled for the missing Secret")
    assert held["reason"] == "SecretNotFound"
    assert "spec.postgres.backup.credentials.accessKeyIdKey" in held["message"]
    assert f"Secret {namespace}/shop-backup not found" in held["message"]

    cluster.kubectl(
        "create", "secret", "generic", "shop-backup", "-n", namespace,
        "--from-literal=AWS_ACCESS_KEY_ID=minio-user",
        "--from-literal=AWS_SECRET_ACCESS_KEY=minio-password-1",
    )  # fmt: skip
    backend = wait_ready(cluster, namespace, timeout=180)
    archiving = condition(backend, "ContinuousArchiving")
    assert (archiving["status"], archiving["reason"]) == ("Unknown", "ArchivingPending"), (
        "kwok's pods run no PostgreSQL: nothing archived, and Ready does not wait for it"
    )

    statefulset = apps.read_namespaced_stateful_set("shop-postgres", namespace)
    pod = statefulset.spec.template.spec
    assert [c.name for c in pod.containers] == ["postgres", "backup"]
    for container in pod.containers:
        keys = {e.name: e.value_from for e in container.env if e.name.startswith("AWS_")}
        assert keys["AWS_SECRET_ACCESS_KEY"].secret_key_ref.name == "shop-backup"
        assert all(e.value is None for e in container.env if e.name.startswith("AWS_")), "by reference only"

    first: Any = eventually(lambda: primary_request(core, namespace), timeout=60, what="the first request")
    assert first.endswith(":00Z")
    # The next minute's tick arrives by the operator's own requeue, with no event to wake it.
    second = eventually(
        lambda: (r := primary_request(core, namespace)) != first and r,
        timeout=90,
        what="the next tick's request",
    )
    assert second > first
    # Between ticks the annotation is not written again.
    seconds_to_next_tick = 60 - time.gmtime().tm_sec
    if seconds_to_next_tick > 15:
        written = writes_during(operator, 10)
        assert not written, f"no write between ticks, but: {written}"
