"""spec.networkPolicies end to end: the app tier's policies appear, and go when the field goes."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from tests.e2e.conftest import basic_backend, wait_ready

pytestmark = pytest.mark.e2e

INGRESS_CONTROLLER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}


def policies(networking: client.NetworkingV1Api, namespace: str) -> dict[str, Any]:
    return {p.metadata.name: p for p in networking.list_namespaced_network_policy(namespace).items}


def test_network_policies_follow_the_spec(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str
) -> None:
    networking = client.NetworkingV1Api(cluster.api)
    cluster.apply(
        basic_backend(namespace, networkPolicies={"appIngressFrom": [INGRESS_CONTROLLER], "egress": True})
    )
    wait_ready(cluster, namespace)
    found = policies(networking, namespace)
    assert set(found) == {"shop-api", "shop-migrations", "shop-postgres", "shop-redis"}
    api = found["shop-api"]
    assert api.spec.policy_types == ["Ingress", "Egress"]
    assert api.spec.ingress[0].ports[0].port == 8000
    assert api.spec.ingress[0]._from[0].namespace_selector.match_labels == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    assert [rule.ports[0].port for rule in api.spec.egress] == [53, 5432, 6379]
    assert found["shop-redis"].spec.policy_types == ["Ingress", "Egress"]
    assert found["shop-redis"].spec.egress is None, "Redis connects to nothing"

    # Without the field, the app tier's policies go and the data services' are ingress-only again.
    cluster.kubectl("patch", "sb/shop", "-n", namespace, "--type=json",
                    "-p", '[{"op": "remove", "path": "/spec/networkPolicies"}]')  # fmt: skip
    eventually(
        lambda: set(policies(networking, namespace)) == {"shop-postgres", "shop-redis"},
        what="the app tier's policies to be deleted",
    )
    eventually(
        lambda: all(p.spec.policy_types == ["Ingress"] for p in policies(networking, namespace).values()),
        what="the data services' policies to be ingress-only again",
    )
