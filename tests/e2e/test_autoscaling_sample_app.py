"""Autoscaling end to end with the real sample app, under real HTTP load.

The sample app runs on loopback (``python -m app.serve`` against a real PostgreSQL and Redis),
a real Prometheus scrapes its ``/metrics`` every second, and the operator scales ``shop-api``
from the request rate. The Deployment's pods are kwok's: the one app process on loopback
stands in for all of them, which is what the query measures (the total request rate).

The windows are short for test speed: ``rate(...[5s])`` holds about five samples at a 1 s
scrape interval (``rate`` needs two), the operator polls every second, and scale-down is
stabilized over 10 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from devkit.prometheus import PrometheusServer
from devkit.sample_app_process import PacedLoad, SampleAppStack, ServerError, seed_tasks, task_paths
from tests.e2e.conftest import get_backend, wait_ready

pytestmark = pytest.mark.e2e

QUERY = 'sum(rate(http_requests_total{route=~"/api/.*"}[5s]))'
TARGET_PER_REPLICA = 10
LOAD_RPS = 45  # 45 / 10 per replica -> ceil(4.5) = 5; any reading in 40..50 still asks for 5
EXPECTED_REPLICAS = 5
SCALE_DOWN_WINDOW = 10


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[SampleAppStack]:
    try:
        started = SampleAppStack.start(tmp_path)
    except ServerError as error:
        pytest.fail(f"cannot start the sample app and its servers: {error}", pytrace=False)
    yield started
    started.destroy()


@pytest.fixture
def prometheus(stack: SampleAppStack, tmp_path: Path) -> Iterator[PrometheusServer]:
    server = PrometheusServer.start(
        tmp_path, scrape_targets={"app": [stack.app.address]}, scrape_interval="1s"
    )
    server.wait_for_target("app")
    yield server
    server.destroy()


def autoscaled_backend(namespace: str, prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "sbo.dev/v1alpha1",
        "kind": "ScalableBackend",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {
            "image": "sbo-sample-app:0.1.0",
            "prometheus": {"url": prometheus_url, "pollSeconds": 1, "timeoutSeconds": 1},
            "api": {
                "replicas": 1,
                "autoscaling": {
                    "mode": "Active",
                    "minReplicas": 1,
                    "maxReplicas": 8,
                    "metrics": [{"name": "rps", "query": QUERY, "targetPerReplica": TARGET_PER_REPLICA}],
                    "scaleUp": {"stabilizationSeconds": 0},
                    "scaleDown": {"stabilizationSeconds": SCALE_DOWN_WINDOW},
                },
            },
            "redis": {"enabled": False},
            "postgres": {"enabled": False},
        },
    }


def deployment_replicas(apps: client.AppsV1Api, namespace: str) -> int:
    replicas = apps.read_namespaced_deployment("shop-api", namespace).spec.replicas
    assert replicas is not None
    return int(replicas)


def test_real_load_scales_the_api_up_and_down_only_after_the_window(
    cluster: LocalCluster,
    solo: tuple[str, OperatorProcess],
    stack: SampleAppStack,
    prometheus: PrometheusServer,
    apps: client.AppsV1Api,
) -> None:
    namespace, operator = solo
    ids = seed_tasks(stack.app.url, count=10)
    cluster.apply(autoscaled_backend(namespace, prometheus.url))
    wait_ready(cluster, namespace)
    assert deployment_replicas(apps, namespace) == 1, "idle: the minimum"

    with PacedLoad(stack.app.url, task_paths(ids), max_seconds=100) as load:
        load.set_rate(LOAD_RPS)
        eventually(
            lambda: deployment_replicas(apps, namespace) == EXPECTED_REPLICAS,
            timeout=45,
            interval=0.25,
            what=f"scale-up to {EXPECTED_REPLICAS} under {LOAD_RPS} req/s",
        )
        # Under steady load the replicas hold: the noise of a real rate stays within the
        # tolerance, and a dip is absorbed by the scale-down window.
        held = []
        for _ in range(12):
            held.append(deployment_replicas(apps, namespace))
            time.sleep(0.5)
        assert min(held) == EXPECTED_REPLICAS, f"replicas moved under steady load: {held}"
        served_under_load = load.stats

        load.set_rate(0)
        stopped_at = time.monotonic()
        first_drop: float | None = None
        deadline = stopped_at + SCALE_DOWN_WINDOW + 30
        while time.monotonic() < deadline:
            replicas = deployment_replicas(apps, namespace)
            if first_drop is None and replicas < EXPECTED_REPLICAS:
                first_drop = time.monotonic() - stopped_at
            if replicas == 1:
                break
            time.sleep(0.25)
        assert replicas == 1, f"not scaled down to the minimum: {replicas} replicas"

    assert first_drop is not None
    # The last high recommendation is at least as late as one poll before the load stopped.
    assert first_drop >= SCALE_DOWN_WINDOW - 1, f"scaled down {first_drop:.1f}s after the load stopped"

    assert served_under_load.requests >= LOAD_RPS * 5, served_under_load
    assert load.stats.errors == 0, f"the app answered errors: {load.stats.per_status}"

    backend = get_backend(cluster, namespace)
    assert backend["spec"]["api"]["replicas"] == 1
    report = backend["status"]["autoscaling"]["api"]
    assert report["metrics"][0]["name"] == "rps"
    events = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "reason=Scaled",
        "-o",
        "jsonpath={.items[*].message}",
    ).stdout
    assert f"-> {EXPECTED_REPLICAS} replicas" in events, events
    assert "scale-down stabilized" in events, "the window shows in the reasons"
    decisions = operator.metric_samples("sbo_autoscaler_decisions_total")
    assert decisions.get('{component="api",direction="up"}', 0) >= 1, decisions
    assert decisions.get('{component="api",direction="down"}', 0) >= 1, decisions
