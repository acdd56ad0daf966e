"""An operator killed with SIGKILL mid-reconcile converges after restart, with no duplicates."""

from __future__ import annotations

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from tests.e2e.conftest import basic_backend, wait_ready

pytestmark = pytest.mark.e2e


def test_sigkill_mid_reconcile_converges_without_duplicates(
    cluster: LocalCluster, solo: tuple[str, OperatorProcess], core: client.CoreV1Api, apps: client.AppsV1Api
) -> None:
    namespace, operator = solo
    cluster.apply(basic_backend(namespace))
    # Kill as soon as the first writes went out: the reconcile is half done.
    eventually(lambda: operator.writes() > 0, timeout=60, interval=0.02, what="the operator's first writes")
    operator.kill()

    secrets_before = {s.metadata.name: s.data for s in core.list_namespaced_secret(namespace).items}
    operator.start()
    backend = wait_ready(cluster, namespace)

    assert {d.metadata.name for d in apps.list_namespaced_deployment(namespace).items} == {"shop-api"}
    assert {s.metadata.name for s in apps.list_namespaced_stateful_set(namespace).items} == {
        "shop-redis",
        "shop-postgres",
    }
    jobs = client.BatchV1Api(cluster.api).list_namespaced_job(namespace).items
    assert len(jobs) == 1, "one migrations Job, not one per operator life"
    replica_sets = apps.list_namespaced_replica_set(namespace).items
    assert len(replica_sets) == 1, "the restart caused no needless rollout"

    # Secrets created before the crash were kept, not generated again.
    secrets_after = {s.metadata.name: s.data for s in core.list_namespaced_secret(namespace).items}
    for name, data in secrets_before.items():
        assert secrets_after[name] == data, f"Secret {name} was regenerated"
    assert {"shop-postgres-app", "shop-postgres-operator", "shop-redis"} <= set(secrets_after)
    assert backend["status"]["observedGeneration"] == backend["metadata"]["generation"]
