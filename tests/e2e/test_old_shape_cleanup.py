"""The old PostgreSQL shape's StatefulSets (``<name>-postgres-primary`` and ``-replica``) go once
the primary is one of the new instances: one DELETE each, however many passes run before the
watch reports them gone (docs/operator.md). The write counter is the operator's own
``sbo_api_writes_total``, as the steady-state test reads it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from tests.e2e.conftest import basic_backend, get_backend, wait_ready

pytestmark = pytest.mark.e2e

OLD_SHAPE = ("shop-postgres-primary", "shop-postgres-replica")


def old_statefulset(namespace: str, name: str, owner: dict[str, Any]) -> dict[str, Any]:
    """One of the old operator's StatefulSets, scaled to 0, owned by the backend as it left them."""
    labels = {
        "app.kubernetes.io/managed-by": "scalable-backend-operator",
        "app.kubernetes.io/instance": "shop",
        "app.kubernetes.io/component": "postgres",
        "app.kubernetes.io/name": "scalable-backend",
    }
    selector = {"app.kubernetes.io/instance": "shop", "old-shape": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": 0,
            "serviceName": f"{name}-headless",
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {"containers": [{"name": "postgres", "image": "postgres:15"}]},
            },
        },
    }


def test_the_old_shapes_statefulsets_are_deleted_once_each(
    cluster: LocalCluster, solo: tuple[str, OperatorProcess], apps: client.AppsV1Api
) -> None:
    namespace, operator = solo
    cluster.apply(basic_backend(namespace))
    wait_ready(cluster, namespace)
    backend = get_backend(cluster, namespace)
    assert backend["status"]["postgres"]["currentPrimary"] == "shop-postgres-0", "the new shape's primary"
    before = operator.metric_samples("sbo_api_writes_total").get('{kind="StatefulSet",verb="delete"}', 0)

    for name in OLD_SHAPE:
        cluster.apply(old_statefulset(namespace, name, backend))

    def gone() -> bool:
        names = {item.metadata.name for item in apps.list_namespaced_stateful_set(namespace).items}
        return not names & set(OLD_SHAPE)

    eventually(gone, timeout=60, what="the old shape's StatefulSets deleted")
    time.sleep(6)  # a resync (every 5 s) and the passes the deletions' events bring
    after = operator.metric_samples("sbo_api_writes_total").get('{kind="StatefulSet",verb="delete"}', 0)
    assert after - before == len(OLD_SHAPE), "one DELETE per old StatefulSet"
