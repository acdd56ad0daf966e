"""A ScalableBackend end to end: created, Ready, correct children, quiet, repaired, scaled, deleted."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from tests.e2e.conftest import (
    basic_backend,
    condition,
    get_backend,
    quiet_writes,
    stalled,
    wait_ready,
    writes_during,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def shop(cluster: LocalCluster, operator: OperatorProcess, namespace: str) -> dict[str, Any]:
    """examples/basic.yaml applied in a fresh restricted namespace, and Ready."""
    cluster.apply(basic_backend(namespace))
    return wait_ready(cluster, namespace)


def names_of(items: list[Any]) -> set[str]:
    return {item.metadata.name for item in items}


def test_basic_example_becomes_ready_with_kstatus_status(shop: dict[str, Any], namespace: str) -> None:
    status = shop["status"]
    assert status["observedGeneration"] == shop["metadata"]["generation"]
    for type in ("Ready", "ApiReady", "RedisReady", "PostgresReady", "WorkerReady"):
        assert condition(shop, type)["status"] == "True", type
    for type in ("Reconciling", "Stalled"):
        assert condition(shop, type)["status"] == "False", type
    assert all(c["reason"] and c["message"] for c in status["conditions"])
    assert status["api"] == {
        "replicas": 2,
        "readyReplicas": 2,
        "readySummary": "2/2",
        "selector": status["api"]["selector"],
    }
    assert "app.kubernetes.io/instance=shop" in status["api"]["selector"]
    assert status["postgres"] == {
        "primaryReady": True,
        "readyReplicas": 2,
        # The election: instance 0 is the primary; kwok pods run no PostgreSQL, so nothing is
        # probed (no timeline, no lag) and nothing fails over.
        "phase": "Stable",
        "currentPrimary": "shop-postgres-0",
        "instances": [
            {"name": "shop-postgres-0", "ready": True, "role": "primary"},
            {"name": "shop-postgres-1", "ready": True, "role": "replica"},
            {"name": "shop-postgres-2", "ready": True, "role": "replica"},
        ],
    }
    assert status["endpoints"] == {
        "api": f"http://shop-api.{namespace}.svc:80",
        "redis": f"shop-redis.{namespace}.svc:6379",
        "postgresReadWrite": f"shop-postgres-rw.{namespace}.svc:5432",
        "postgresReadOnly": f"shop-postgres-ro.{namespace}.svc:5432",
    }
    assert status["secrets"] == {
        "app": "shop-app-secrets",
        "postgres": "shop-postgres-app",
        "postgresOperator": "shop-postgres-operator",
        "redis": "shop-redis",
    }
    assert "password" not in json.dumps(status).lower(), "no secret material in status"


def test_every_child_exists_with_the_right_spec(
    shop: dict[str, Any],
    namespace: str,
    cluster: LocalCluster,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    uid = shop["metadata"]["uid"]
    deployments = apps.list_namespaced_deployment(namespace).items
    statefulsets = apps.list_namespaced_stateful_set(namespace).items
    assert names_of(deployments) == {"shop-api"}
    assert names_of(statefulsets) == {"shop-redis", "shop-postgres"}
    assert names_of(core.list_namespaced_service(namespace).items) == {
        "shop-api",
        "shop-redis",
        "shop-postgres-rw",
        "shop-postgres-ro",
        "shop-redis-headless",
        "shop-postgres-headless",
    }
    for statefulset in statefulsets:  # each governed by its headless Service: per-pod DNS names
        governing = core.read_namespaced_service(statefulset.spec.service_name, namespace)
        assert governing.spec.cluster_ip == "None"
        assert governing.spec.selector == statefulset.spec.selector.match_labels
    assert {"shop-postgres-app", "shop-postgres-operator", "shop-redis"} <= names_of(
        core.list_namespaced_secret(namespace).items
    )
    policy = client.PolicyV1Api(cluster.api)
    assert names_of(policy.list_namespaced_pod_disruption_budget(namespace).items) == {
        "shop-api",
        "shop-postgres",
    }
    networking = client.NetworkingV1Api(cluster.api)
    assert names_of(networking.list_namespaced_network_policy(namespace).items) == {
        "shop-postgres",
        "shop-redis",
    }

    api = apps.read_namespaced_deployment("shop-api", namespace)
    assert api.metadata.owner_references[0].uid == uid
    assert api.metadata.owner_references[0].controller is True
    assert api.metadata.labels["app.kubernetes.io/managed-by"] == "scalable-backend-operator"
    assert api.spec.strategy.rolling_update.max_unavailable == 0
    assert {c.topology_key for c in api.spec.template.spec.topology_spread_constraints} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    container = api.spec.template.spec.containers[0]
    assert container.readiness_probe.http_get.path == "/readyz"
    assert container.liveness_probe.http_get.path == "/healthz"
    env = {e.name: e for e in container.env}
    assert env["DATABASE_URL"].value == f"postgresql://app@shop-postgres-rw.{namespace}.svc:5432/app"
    assert env["DATABASE_READ_URL"].value == f"postgresql://app@shop-postgres-ro.{namespace}.svc:5432/app"
    assert env["REDIS_URL"].value == f"redis://shop-redis.{namespace}.svc:6379/0"
    # Passwords reach the pods only through secretKeyRef.
    assert env["DATABASE_PASSWORD"].value_from.secret_key_ref.name == "shop-postgres-app"
    assert env["REDIS_PASSWORD"].value_from.secret_key_ref.name == "shop-redis"
    assert env["SECRET_KEY"].value_from.secret_key_ref.name == "shop-app-secrets"
    assert (
        len(base64.b64decode(core.read_namespaced_secret("shop-app-secrets", namespace).data["secret-key"]))
        >= 32
    )
    service_account = core.read_namespaced_service_account(
        api.spec.template.spec.service_account_name, namespace
    )
    assert service_account.automount_service_account_token is False

    service = core.read_namespaced_service("shop-api", namespace)
    assert [(p.port, p.target_port) for p in service.spec.ports] in ([(80, 8000)], [(80, "http")])

    replicas = apps.read_namespaced_stateful_set("shop-postgres", namespace)
    assert replicas.spec.replicas == 3  # the primary and 2 read replicas
    retention = replicas.spec.persistent_volume_claim_retention_policy
    assert (retention.when_deleted, retention.when_scaled) == ("Retain", "Retain")

    secret = core.read_namespaced_secret("shop-postgres-app", namespace)
    password = base64.b64decode(secret.data["password"])
    assert len(password) >= 32
    assert set(secret.data) >= {
        "username",
        "password",
        "database",
        "host",
        "port",
        "uri",
        "replication-password",
    }

    # The namespace enforces "restricted": every pod the operator made was admitted and is Ready.
    pods = core.list_namespaced_pod(namespace).items
    running = [p for p in pods if p.status.phase == "Running"]
    assert len(running) == 2 + 1 + 1 + 2  # api, redis, postgres primary, 2 replicas
    assert all(p.spec.security_context.run_as_non_root for p in pods)


def test_steady_state_sends_no_writes(cluster: LocalCluster, solo: tuple[str, OperatorProcess]) -> None:
    namespace, operator = solo
    cluster.apply(basic_backend(namespace))
    wait_ready(cluster, namespace)
    # Let the last status updates of the rollout land, then watch: the
    # operator resyncs every 5 s, so the window holds several full reconciles.
    time.sleep(2)
    reconciles_before = operator.metric_samples("sbo_reconciles_total").get('{result="ok"}', 0)
    assert quiet_writes(operator, 12) == 0
    reconciles_after = operator.metric_samples("sbo_reconciles_total").get('{result="ok"}', 0)
    assert reconciles_after - reconciles_before >= 2, "the window really contained reconciles"


def test_drift_is_restored(
    shop: dict[str, Any],
    namespace: str,
    cluster: LocalCluster,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    core.delete_namespaced_service("shop-api", namespace)
    apps.patch_namespaced_deployment("shop-api", namespace, {"spec": {"replicas": 7}})
    core.patch_namespaced_config_map(
        "shop-redis-config", namespace, {"data": {"redis.conf": "maxmemory 1gb\n"}}
    )

    eventually(
        lambda: core.read_namespaced_service("shop-api", namespace), what="Service shop-api to be recreated"
    )
    eventually(
        lambda: apps.read_namespaced_deployment("shop-api", namespace).spec.replicas == 2,
        what="the api Deployment's replicas to be restored to 2",
    )
    eventually(
        lambda: (
            "maxmemory 1gb"
            not in core.read_namespaced_config_map("shop-redis-config", namespace).data["redis.conf"]
        ),
        what="the Redis config to be restored",
    )
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=DriftRestored", "-o", "name"
    ).stdout
    assert events.strip(), "a DriftRestored event tells the user what happened"
    wait_ready(cluster, namespace)


def test_kubectl_scale_uses_the_scale_subresource(
    shop: dict[str, Any], namespace: str, cluster: LocalCluster, apps: client.AppsV1Api
) -> None:
    cluster.kubectl("scale", "sb/shop", "-n", namespace, "--replicas=4")
    eventually(
        lambda: apps.read_namespaced_deployment("shop-api", namespace).spec.replicas == 4,
        what="the api Deployment to have 4 replicas",
    )
    backend = wait_ready(cluster, namespace)
    assert backend["status"]["api"]["readyReplicas"] == 4
    scale = json.loads(
        cluster.kubectl(
            "get", "--raw", f"/apis/sbo.dev/v1alpha1/namespaces/{namespace}/scalablebackends/shop/scale"
        ).stdout
    )
    assert scale["spec"]["replicas"] == 4
    assert scale["status"]["replicas"] == 4
    assert "app.kubernetes.io/instance=shop" in scale["status"]["selector"]


def test_spec_change_rolls_through_and_generation_is_observed(
    shop: dict[str, Any], namespace: str, cluster: LocalCluster, apps: client.AppsV1Api
) -> None:
    cluster.kubectl(
        "patch",
        "sb/shop",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"worker": {"replicas": 1, "command": ["python", "-m", "app.worker"]}}}),
    )
    backend = wait_ready(cluster, namespace)
    assert backend["metadata"]["generation"] == shop["metadata"]["generation"] + 1
    assert backend["status"]["observedGeneration"] == backend["metadata"]["generation"]
    assert backend["status"]["worker"] == {"replicas": 1, "readyReplicas": 1}
    assert apps.read_namespaced_deployment("shop-worker", namespace).spec.replicas == 1

    # Removing the worker deletes its Deployment.
    cluster.kubectl(
        "patch", "sb/shop", "-n", namespace, "--type=json", "-p", '[{"op":"remove","path":"/spec/worker"}]'
    )
    eventually(
        lambda: "shop-worker" not in names_of(apps.list_namespaced_deployment(namespace).items),
        what="the worker Deployment to be deleted",
    )
    assert condition(wait_ready(cluster, namespace), "WorkerReady")["reason"] == "Disabled"


@pytest.mark.parametrize("retain", [True, False], ids=["retainOnDelete=true", "retainOnDelete=false"])
def test_deletion_follows_retain_on_delete(
    retain: bool, cluster: LocalCluster, operator: OperatorProcess, namespace: str, core: client.CoreV1Api
) -> None:
    manifest = basic_backend(namespace)
    manifest["spec"]["postgres"]["retainOnDelete"] = retain
    cluster.apply(manifest)
    wait_ready(cluster, namespace)
    claims = names_of(core.list_namespaced_persistent_volume_claim(namespace).items)
    assert claims == {"data-shop-postgres-0", "data-shop-postgres-1", "data-shop-postgres-2"}

    cluster.kubectl("delete", "sb/shop", "-n", namespace, "--wait=true", "--timeout=60s")
    eventually(
        lambda: not client.AppsV1Api(cluster.api).list_namespaced_stateful_set(namespace).items,
        what="garbage collection of the StatefulSets",
    )
    eventually(
        lambda: not core.list_namespaced_service(namespace).items, what="garbage collection of the Services"
    )
    if retain:
        assert names_of(core.list_namespaced_persistent_volume_claim(namespace).items) == claims
    else:
        eventually(
            lambda: not core.list_namespaced_persistent_volume_claim(namespace).items,
            what="the PersistentVolumeClaims to be deleted",
        )


def test_service_owned_by_someone_else_stalls_with_a_reason(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster.kubectl("create", "service", "clusterip", "shop-api", "--tcp=8080:8080", "-n", namespace)
    cluster.apply(basic_backend(namespace))
    stall = eventually(lambda: stalled(cluster, namespace), what="the Stalled condition")
    assert stall["reason"] == "ChildOwnedElsewhere"
    assert "Service" in stall["message"]
    assert "shop-api" in stall["message"]
    backend = get_backend(cluster, namespace)
    assert condition(backend, "Ready")["status"] == "False"
    # The operator did not take the Service over.
    ports = json.loads(cluster.kubectl("get", "svc/shop-api", "-n", namespace, "-o", "json").stdout)["spec"][
        "ports"
    ]
    assert [p["port"] for p in ports] == [8080]

    # Once the user removes the stranger, the operator converges.
    cluster.kubectl("delete", "svc/shop-api", "-n", namespace)
    wait_ready(cluster, namespace)


def test_a_name_taken_by_someone_else_is_read_not_applied_again_until_it_is_free(
    cluster: LocalCluster, solo: tuple[str, OperatorProcess]
) -> None:
    """The stranger's deletion sends no event the operator watches, so each look (a resync every
    5 s here) checks the name with a read: another apply would be refused with a conflict, a write
    on every pass of an otherwise steady state."""
    namespace, operator = solo
    cluster.kubectl(
        "create", "configmap", "shop-redis-config", "--from-literal=redis.conf=# not the operator's",
        "-n", namespace,
    )  # fmt: skip
    cluster.apply(basic_backend(namespace))
    stall = eventually(lambda: stalled(cluster, namespace), what="the Stalled condition")
    assert stall["reason"] == "ChildOwnedElsewhere"
    assert f"ConfigMap {namespace}/shop-redis-config" in stall["message"]

    def nothing_written_across_two_resyncs() -> bool:
        written = writes_during(operator, 12)
        assert not written, f"written while stalled: {written}"
        return True

    # The rest converges as far as it can; then nothing is written.
    eventually(nothing_written_across_two_resyncs, timeout=90, what="no writes while stalled")
    data = json.loads(cluster.kubectl("get", "cm/shop-redis-config", "-n", namespace, "-o", "json").stdout)
    assert data["data"] == {"redis.conf": "# not the operator's"}, "the stranger's ConfigMap is untouched"

    cluster.kubectl("delete", "cm/shop-redis-config", "-n", namespace)
    wait_ready(cluster, namespace)


def test_storage_grows_in_place_keeping_every_volume(
    shop: dict[str, Any],
    namespace: str,
    cluster: LocalCluster,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
) -> None:
    claims_before = {
        c.metadata.name: c.metadata.uid for c in core.list_namespaced_persistent_volume_claim(namespace).items
    }
    assert len(claims_before) == 3
    cluster.kubectl(
        "patch",
        "sb/shop",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"postgres":{"storage":{"size":"2Gi"}}}}',
    )

    def claims_grown() -> bool:
        claims = core.list_namespaced_persistent_volume_claim(namespace).items
        return len(claims) == 3 and all(
            c.spec.resources.requests["storage"] == "2Gi"
            and (c.status.capacity or {}).get("storage") == "2Gi"
            for c in claims
        )

    eventually(claims_grown, timeout=90, what="every PostgreSQL claim to be 2Gi, requested and provisioned")

    def templates_grown() -> bool:
        return all(
            apps.read_namespaced_stateful_set(name, namespace)
            .spec.volume_claim_templates[0]
            .spec.resources.requests["storage"]
            == "2Gi"
            for name in ("shop-postgres",)
        )

    eventually(templates_grown, timeout=60, what="the StatefulSets to carry the 2Gi claim template")
    wait_ready(cluster, namespace)
    # The same volumes, grown: no claim was replaced, so no data was lost.
    claims_after = {
        c.metadata.name: c.metadata.uid for c in core.list_namespaced_persistent_volume_claim(namespace).items
    }
    assert claims_after == claims_before
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=StorageResized", "-o", "name"
    ).stdout
    assert events.strip()


def test_missing_referenced_secret_stalls_until_it_exists(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str
) -> None:
    manifest = basic_backend(namespace)
    manifest["spec"]["api"]["env"] = [
        {"name": "PAYMENT_TOKEN", "valueFrom": {"secretKeyRef": {"name": "payments", "key": "token"}}}
    ]
    cluster.apply(manifest)

    def stalled() -> dict[str, Any] | None:
        conditions = {
            c["type"]: c for c in get_backend(cluster, namespace).get("status", {}).get("conditions", [])
        }
        return conditions["Stalled"] if conditions.get("Stalled", {}).get("status") == "True" else None

    stall = eventually(stalled, timeout=60, what="Stalled=True")
    assert stall["reason"] == "SecretNotFound"
    assert "spec.api.env[0].valueFrom.secretKeyRef" in stall["message"]
    assert f"Secret {namespace}/payments not found" in stall["message"]

    cluster.kubectl("create", "secret", "generic", "payments", "--from-literal=token=s3cr3t", "-n", namespace)
    backend = wait_ready(cluster, namespace)
    assert condition(backend, "Stalled")["status"] == "False"
    warnings = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=SecretNotFound", "-o", "name"
    ).stdout.split()
    assert len(warnings) == 1, "one Warning when the problem appeared, not one per resync"
