"""Proof that the local control plane is a real one.

Each test exercises a component that a mock of the API would not have:
kwok's fake kubelets, PodSecurity admission, the garbage collector, the
StatefulSet controller with the harness's volume provisioner, and
ServiceAccount tokens.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually

pytestmark = pytest.mark.integration

RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def compliant_pod_spec() -> dict[str, Any]:
    return {
        "containers": [
            {
                "name": "app",
                "image": "sbo-sample-app:0.1.0",
                "securityContext": RESTRICTED_CONTAINER_SECURITY,
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8000}},
            }
        ]
    }


def test_three_ready_nodes_in_distinct_zones(core: client.CoreV1Api) -> None:
    nodes = core.list_node(label_selector="type=kwok").items
    assert len(nodes) == 3
    for node in nodes:
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True", node.metadata.name
        assert node.status.allocatable["cpu"] == "8"
    assert len({n.metadata.labels["topology.kubernetes.io/zone"] for n in nodes}) == 3


def test_compliant_deployment_gets_ready_pods(
    cluster: LocalCluster, namespace: str, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": compliant_pod_spec()},
            },
        }
    )

    def ready_replicas() -> bool:
        status = apps.read_namespaced_deployment_status("web", namespace).status
        return status.ready_replicas == 3

    eventually(ready_replicas, timeout=90, what="3 ready replicas of deployment web")
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert {p.status.phase for p in pods} == {"Running"}
    assert all(p.spec.node_name.startswith("kwok-node-") for p in pods)
    assert all(p.status.pod_ip for p in pods), "kwok assigns pod IPs"


def test_non_compliant_pod_is_rejected_by_admission(cluster: LocalCluster, namespace: str) -> None:
    unrestricted = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root", "namespace": namespace},
        # Allowed by the "baseline" profile; only "restricted" refuses it.
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
    }
    result = cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(unrestricted), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr
    assert "allowPrivilegeEscalation != false" in result.stderr
    assert "runAsNonRoot != true" in result.stderr


def test_deleting_owner_garbage_collects_configmap(namespace: str, core: client.CoreV1Api) -> None:
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="child",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                    )
                ],
            )
        ),
    )
    core.delete_namespaced_config_map("owner", namespace)

    def child_gone() -> bool:
        names = {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
        return "child" not in names

    eventually(child_gone, timeout=60, what="the garbage collector to delete the child ConfigMap")


def test_statefulset_claim_binds_and_pod_becomes_ready(
    cluster: LocalCluster, namespace: str, apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": compliant_pod_spec()},
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        }
    )

    def claim_bound() -> bool:
        claims = core.list_namespaced_persistent_volume_claim(namespace).items
        return [(c.metadata.name, c.status.phase) for c in claims] == [("data-db-0", "Bound")]

    eventually(claim_bound, timeout=90, what="claim data-db-0 to be Bound")
    claim = core.read_namespaced_persistent_volume_claim("data-db-0", namespace)
    assert claim.spec.storage_class_name == "standard", "the default StorageClass was applied"

    def pod_ready() -> bool:
        return apps.read_namespaced_stateful_set_status("db", namespace).status.ready_replicas == 1

    eventually(pod_ready, timeout=90, what="statefulset db to have a ready pod")

    # The class's reclaim policy is Delete: deleting the claim frees the volume.
    volume = claim.spec.volume_name
    apps.delete_namespaced_stateful_set("db", namespace)
    core.delete_namespaced_persistent_volume_claim("data-db-0", namespace)

    def volume_deleted() -> bool:
        return volume not in {pv.metadata.name for pv in core.list_persistent_volume().items}

    eventually(volume_deleted, timeout=90, what=f"volume {volume} to be deleted")


def test_service_account_tokens_are_real(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    token = cluster.kubectl("create", "token", "robot", "-n", namespace).stdout.strip()
    assert token.count(".") == 2, "a signed JWT"
    review = cluster.kubectl(
        "create",
        "-o",
        "jsonpath={.status.user.username}",
        "-f",
        "-",
        input=json.dumps(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        ),
    )
    assert review.stdout == f"system:serviceaccount:{namespace}:robot"
