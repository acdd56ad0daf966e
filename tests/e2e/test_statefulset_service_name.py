"""A StatefulSet made before the headless governing Services converges to them, keeping its pods and volumes.

`serviceName` is immutable, so the operator replaces such a StatefulSet with an orphaning
delete, as for a change of its volume claims. The per-pod DNS names (`<pod>.<service>`) need a
node with cluster DNS; on kwok nodes this checks the shape the DNS name depends on.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from tests.e2e.conftest import basic_backend, wait_ready

pytestmark = pytest.mark.e2e

# serviceName as the golden files had it before the headless Services: the ClusterIP Services.
OLD_SERVICE_NAMES = {
    "shop-redis": "shop-redis",
    "shop-postgres": "shop-postgres-rw",
}
NEW_SERVICE_NAMES = {
    "shop-redis": "shop-redis-headless",
    "shop-postgres": "shop-postgres-headless",
}
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


def as_made_before(cluster: LocalCluster, namespace: str, name: str) -> None:
    """Swap a live StatefulSet for one as an earlier operator applied it: the old serviceName."""
    live: dict[str, Any] = json.loads(
        cluster.kubectl("get", f"statefulset/{name}", "-n", namespace, "-o", "json").stdout
    )
    cluster.kubectl("delete", f"statefulset/{name}", "-n", namespace, "--cascade=orphan", "--wait=true")
    for field in SERVER_FIELDS:
        live["metadata"].pop(field, None)
    live.pop("status", None)
    live["spec"]["serviceName"] = OLD_SERVICE_NAMES[name]
    cluster.kubectl("create", "-f", "-", input=json.dumps(live))


def test_statefulsets_with_the_old_service_name_converge_keeping_pods_and_volumes(
    cluster: LocalCluster,
    solo: tuple[str, OperatorProcess],
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    namespace, operator = solo
    cluster.apply(basic_backend(namespace))
    wait_ready(cluster, namespace)

    operator.stop()
    for name in OLD_SERVICE_NAMES:
        as_made_before(cluster, namespace, name)
    assert {
        s.metadata.name: s.spec.service_name for s in apps.list_namespaced_stateful_set(namespace).items
    } == OLD_SERVICE_NAMES
    pods_before = {p.metadata.name: p.metadata.uid for p in core.list_namespaced_pod(namespace).items}
    claims_before = {
        c.metadata.name: c.metadata.uid for c in core.list_namespaced_persistent_volume_claim(namespace).items
    }
    assert len(claims_before) == 3

    operator.start()

    def converged() -> bool:
        statefulsets = apps.list_namespaced_stateful_set(namespace).items
        return {s.metadata.name: s.spec.service_name for s in statefulsets} == NEW_SERVICE_NAMES

    eventually(converged, timeout=90, what="every StatefulSet to be governed by its headless Service")
    wait_ready(cluster, namespace)

    # The same pods and volumes: nothing was restarted or re-provisioned, no data lost.
    claims_after = {
        c.metadata.name: c.metadata.uid for c in core.list_namespaced_persistent_volume_claim(namespace).items
    }
    assert claims_after == claims_before
    pods_after = {p.metadata.name: p.metadata.uid for p in core.list_namespaced_pod(namespace).items}
    for name in OLD_SERVICE_NAMES:
        kept = {pod: uid for pod, uid in pods_before.items() if pod.startswith(f"{name}-")}
        assert kept, name
        assert {pod: pods_after.get(pod) for pod in kept} == kept, f"the pods of {name} kept running"
    for statefulset in apps.list_namespaced_stateful_set(namespace).items:
        service = core.read_namespaced_service(statefulset.spec.service_name, namespace)
        assert service.spec.cluster_ip == "None"
        assert service.spec.publish_not_ready_addresses is True
        assert service.spec.selector == statefulset.spec.selector.match_labels
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=StatefulSetReplaced", "-o", "name"
    ).stdout.split()
    assert len(events) == len(OLD_SERVICE_NAMES)
