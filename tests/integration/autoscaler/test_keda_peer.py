"""KEDA, the autoscaling benchmark's peer, really scales a kwok Deployment from a real Prometheus.

KEDA's operator and metrics server run as local processes (bench/keda.py), built at the pinned
version by ``hack/install-tools.sh keda`` (``make test`` builds it first); the HPA controller of the
local kube-controller-manager asks KEDA's external metric through the aggregation layer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from bench.keda import Keda
from bench.peers import Scaler, peer_deployment, scaled_object
from devkit.cluster import LocalCluster, eventually
from devkit.metric_target import MetricTarget
from devkit.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

QUERY = 'sum(sbo_test_value{series="rps"})'


@pytest.fixture
def keda(cluster: LocalCluster, tmp_path: Path) -> Iterator[Keda]:
    # KEDA's ports sit above the control plane's (SBO_PORT_BASE .. +6).
    with Keda.start(cluster, tmp_path, port_base=int(os.environ.get("SBO_PORT_BASE", "16440"))) as running:
        yield running


def test_keda_scales_a_kwok_deployment_from_prometheus(
    cluster: LocalCluster, namespace: str, apps: client.AppsV1Api, keda: Keda, tmp_path: Path
) -> None:
    with (
        MetricTarget.start() as target,
        PrometheusServer.start(
            tmp_path, scrape_targets={"target": [target.address]}, scrape_interval="1s"
        ) as prometheus,
    ):
        target.set(4.0, series="rps")
        prometheus.wait_for_value(QUERY, 4.0)
        scaler = Scaler("keda", "keda", 15, 300, polling_interval=5)
        cluster.apply(peer_deployment(scaler.deployment, namespace))
        cluster.apply(
            scaled_object(
                scaler, namespace, prometheus_url=prometheus.url, query=QUERY, threshold=10.0,
                min_replicas=1, max_replicas=20,
            )
        )  # fmt: skip
        target.set(50.0, series="rps")  # 50 at 10 per replica: 5 replicas

        def replicas() -> int | None:
            deployment = apps.read_namespaced_deployment(scaler.deployment, namespace)
            return deployment.spec.replicas if deployment.spec.replicas == 5 else None

        # KEDA creates its HPA; the HPA controller (15 s sync) reads KEDA's metric and scales.
        assert eventually(replicas, timeout=120, what="KEDA's HPA to scale the Deployment to 5") == 5
        assert all(keda.running().values())
