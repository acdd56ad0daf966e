"""Generated Secrets deleted by hand: created again, announced, and every pod that reads them rolled."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
import yaml
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from sbo_operator.builders.labels import SECRET_UIDS_ANNOTATION
from tests.e2e.conftest import basic_backend, quiet_writes, wait_ready

pytestmark = pytest.mark.e2e

SECRETS = ("shop-postgres-app", "shop-redis")
# Who reads which generated Secret (the migrations Job is checked by name: a new one runs).
READERS = {
    "shop-postgres-app": {
        "Deployment/shop-api",
        "Deployment/shop-worker",
        "StatefulSet/shop-postgres",
    },
    "shop-redis": {"Deployment/shop-api", "Deployment/shop-worker", "StatefulSet/shop-redis"},
}


def pod_template_uids(apps: client.AppsV1Api, namespace: str) -> dict[str, str]:
    """Each workload's sbo.dev/secret-uids annotation."""
    workloads = [
        *(("Deployment", d) for d in apps.list_namespaced_deployment(namespace).items),
        *(("StatefulSet", s) for s in apps.list_namespaced_stateful_set(namespace).items),
    ]
    return {
        f"{kind}/{item.metadata.name}": (item.spec.template.metadata.annotations or {}).get(
            SECRET_UIDS_ANNOTATION, ""
        )
        for kind, item in workloads
    }


def job_names(cluster: LocalCluster, namespace: str) -> set[str]:
    out = cluster.kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout
    return set(out.split())


def test_deleted_secrets_are_regenerated_and_every_pod_that_reads_them_rolls(
    cluster: LocalCluster,
    solo: tuple[str, OperatorProcess],
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    namespace, operator = solo
    cluster.apply(basic_backend(namespace, worker={"replicas": 1, "command": ["python", "-m", "app.worker"]}))
    wait_ready(cluster, namespace)
    before = pod_template_uids(apps, namespace)
    old_uids = {name: core.read_namespaced_secret(name, namespace).metadata.uid for name in SECRETS}
    for name in SECRETS:
        assert f"{name}={old_uids[name]}" in before[next(iter(READERS[name]))]
    old_jobs = job_names(cluster, namespace)

    for name in SECRETS:
        core.delete_namespaced_secret(name, namespace)

    def regenerated() -> dict[str, Any]:
        secrets = {name: core.read_namespaced_secret(name, namespace) for name in SECRETS}
        return secrets if all(s.metadata.uid != old_uids[n] for n, s in secrets.items()) else {}

    secrets = eventually(regenerated, what="the Secrets to be created again")
    eventually(
        lambda: all(
            f"{name}={secrets[name].metadata.uid}" in pod_template_uids(apps, namespace)[reader]
            for name in SECRETS
            for reader in READERS[name]
        ),
        what="every pod template that reads them to carry their new uids",
    )
    after = pod_template_uids(apps, namespace)
    assert {w for w in before if before[w] != after[w]} == set().union(*READERS.values())

    # A Warning names each Secret and what rolls, never a value.
    events = yaml.safe_load(
        cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "reason=SecretRegenerated", "-o", "yaml"
        ).stdout
    )["items"]
    messages = " ".join(event["message"] for event in events)
    assert {event["type"] for event in events} == {"Warning"}
    for name in SECRETS:
        assert f"Secret {name} was missing" in messages
        for key in ("password", "replication-password", "uri"):
            if key in secrets[name].data:
                assert base64.b64decode(secrets[name].data[key]).decode() not in messages
    assert "StatefulSet shop-postgres" in messages

    # Migrations run again with the new credentials, once the primary runs them; then all is Ready.
    eventually(lambda: job_names(cluster, namespace) - old_jobs, timeout=120, what="a new migrations Job")
    eventually(
        lambda: not job_names(cluster, namespace) & old_jobs,
        timeout=180,
        what="the old migrations Job to go once the new one succeeded",
    )
    wait_ready(cluster, namespace)
    time.sleep(2)
    assert quiet_writes(operator, 12) == 0
