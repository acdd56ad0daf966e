"""A spec whose pods need a Secret that does not exist is held back, not rolled out, until it exists."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from tests.e2e.conftest import basic_backend, condition, get_backend, wait_ready

pytestmark = pytest.mark.e2e

PAYMENT_TOKEN = {"name": "PAYMENT_TOKEN", "valueFrom": {"secretKeyRef": {"name": "payments", "key": "token"}}}


def migrations_jobs(batch: client.BatchV1Api, namespace: str) -> set[str]:
    return {
        job.metadata.name
        for job in batch.list_namespaced_job(namespace).items
        if job.metadata.name.startswith("shop-migrations-")
    }


def test_a_rollout_needing_a_missing_secret_keeps_the_running_version_until_it_exists(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, apps: client.AppsV1Api
) -> None:
    batch = client.BatchV1Api(cluster.api)
    cluster.apply(basic_backend(namespace))
    wait_ready(cluster, namespace)
    before = apps.read_namespaced_deployment("shop-api", namespace)
    jobs_before = migrations_jobs(batch, namespace)
    assert len(jobs_before) == 1

    cluster.kubectl(
        "patch", "sb/shop", "-n", namespace, "--type=merge", "-p",
        json.dumps({"spec": {"api": {"env": [PAYMENT_TOKEN]}}}),
    )  # fmt: skip

    def held() -> dict[str, Any] | None:
        backend = get_backend(cluster, namespace)
        if backend.get("status", {}).get("observedGeneration") != backend["metadata"]["generation"]:
            return None
        api_ready = condition(backend, "ApiReady")
        return backend if api_ready["reason"] == "SecretNotFound" else None

    backend = eventually(held, timeout=60, what="ApiReady to say the rollout is held for the Secret")
    stalled = condition(backend, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "SecretNotFound")
    assert "spec.api.env[0].valueFrom.secretKeyRef" in stalled["message"]
    assert "spec.api.env[0].valueFrom.secretKeyRef" in condition(backend, "ApiReady")["message"]

    time.sleep(12)  # the operator resyncs every 5 s: several reconciles later, nothing was rolled out
    after = apps.read_namespaced_deployment("shop-api", namespace)
    assert after.metadata.generation == before.metadata.generation, "the api Deployment was not touched"
    assert not any(e.name == "PAYMENT_TOKEN" for e in after.spec.template.spec.containers[0].env or [])
    assert migrations_jobs(batch, namespace) == jobs_before, "no migrations Job with the unstartable template"
    assert after.status.ready_replicas == 2, "the running version keeps serving"

    cluster.kubectl("create", "secret", "generic", "payments", "--from-literal=token=s3cr3t", "-n", namespace)
    # Nothing the operator watches changes when the Secret appears: its retry finds it.
    backend = wait_ready(cluster, namespace, timeout=120)
    assert condition(backend, "Stalled")["status"] == "False"
    rolled = apps.read_namespaced_deployment("shop-api", namespace)
    assert any(e.name == "PAYMENT_TOKEN" for e in rolled.spec.template.spec.containers[0].env)
    assert len(migrations_jobs(batch, namespace) - jobs_before) <= 1
