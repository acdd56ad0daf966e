"""Several operator replicas with Kopf peering: exactly one works, and another takes over.

"Works" is counted where it matters: every write request the operator's own code sends
(`sbo_api_writes_total`, per process). Kopf's keep-alives to the KopfPeering object are
not in it: they are how the replicas agree, not work on backends. The standby replica
must send none, not even when a child is deleted by hand, and must restore that child
itself within the stated bound once the active one is SIGKILLed. A replica that starts
while another is active (a rolling upgrade) waits, and takes over at once when the
active one stops gracefully. The standby does not even poll Prometheus for autoscaling,
and scales once it has taken over.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.metric_target import MetricTarget
from devkit.operator_process import OperatorProcess
from devkit.prometheus import PrometheusServer
from tests.e2e.conftest import basic_backend, quiet_writes, wait_ready
from tests.e2e.test_autoscaling import autoscaled_backend, deployment_replicas, prometheus, target

__all__ = ["prometheus", "target"]  # the autoscaling tests' fixtures, used here too

pytestmark = pytest.mark.e2e

PEERING_NAME = "sbo-e2e-peering"
# Kopf's peer lifetime: a replica killed without a goodbye is presumed dead this long
# after its last keep-alive, and the standby takes over then (docs/operator.md).
LIFETIME_SECONDS = 10
# What the takeover may add to the lifetime: the standby's re-check of the peering, Kopf's
# LIST of the backends, and one reconcile that re-creates the deleted child.
TAKEOVER_SLACK_SECONDS = 10
# The child deleted by hand; a Service, so that nothing but the operator re-creates it.
CHILD_SERVICE = "shop-api"

PEERING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "kopfpeerings.kopf.dev"},
    "spec": {
        "group": "kopf.dev",
        "scope": "Namespaced",
        "names": {"kind": "KopfPeering", "plural": "kopfpeerings", "singular": "kopfpeering"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def peered_namespace(cluster: LocalCluster, crd: None) -> Iterator[str]:
    """A restricted namespace with its KopfPeering object, as the chart creates them."""
    cluster.apply(PEERING_CRD)
    eventually(
        lambda: cluster.kubectl("get", "kopfpeerings", "-A", check=False).returncode == 0,
        timeout=60,
        interval=0.2,
        what="the KopfPeering CRD to be served",
    )
    namespace = f"solo-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    cluster.apply(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": PEERING_NAME, "namespace": namespace},
        }
    )
    try:
        yield namespace
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")


@contextlib.contextmanager
def replicas(
    cluster: LocalCluster, namespace: str, tmp_path: Path, count: int
) -> Iterator[list[OperatorProcess]]:
    """`count` operator processes peering over one KopfPeering, stopped at the end whatever happened."""
    processes = [
        OperatorProcess(
            kubeconfig=Path(os.environ.get("SBO_TEST_OPERATOR_KUBECONFIG", cluster.kubeconfig)),
            log_path=tmp_path / f"operator-{number}.log",
            env={
                "SBO_NAMESPACES": namespace,
                "SBO_PEERING": "true",
                "SBO_PEERING_NAME": PEERING_NAME,
                "SBO_PEERING_LIFETIME_SECONDS": str(LIFETIME_SECONDS),
                "SBO_RESYNC_SECONDS": "5",
            },
        )
        for number in range(count)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


def service_exists(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    return any(s.metadata.name == name for s in core.list_namespaced_service(namespace).items)


def delete_child_and_wait_restored(
    cluster: LocalCluster, core: client.CoreV1Api, namespace: str, *, timeout: float
) -> float:
    """Delete the child Service by hand; seconds until an operator re-created it."""
    cluster.kubectl("delete", "service", CHILD_SERVICE, "-n", namespace, "--wait=true")
    deleted = time.monotonic()
    eventually(
        lambda: service_exists(core, namespace, CHILD_SERVICE),
        timeout=timeout,
        interval=0.2,
        what=f"Service {CHILD_SERVICE} to be re-created",
    )
    return time.monotonic() - deleted


def test_one_replica_works_and_another_takes_over_when_it_dies(
    cluster: LocalCluster, peered_namespace: str, tmp_path: Path, core: client.CoreV1Api
) -> None:
    namespace = peered_namespace
    with replicas(cluster, namespace, tmp_path, 3) as (first, second, upgrade):
        first.start()
        second.start()
        cluster.apply(basic_backend(namespace))
        wait_ready(cluster, namespace)

        # The longest-running replica is the active one; the other sent nothing.
        assert first.writes() > 0, "the first replica created the backend's children"
        assert second.writes() == 0, "the standby sent no write request"

        # A child deleted by hand: the active replica restores it, the standby does not try.
        delete_child_and_wait_restored(cluster, core, namespace, timeout=30)
        assert second.writes() == 0, "the standby did not restore the child"
        assert quiet_writes(second, 6) == 0, "nor did its periodic resync write anything"

        # SIGKILL: no goodbye in the peering; the standby takes over once the lifetime ran out.
        first.kill()
        bound = LIFETIME_SECONDS + TAKEOVER_SLACK_SECONDS
        took = delete_child_and_wait_restored(cluster, core, namespace, timeout=bound + 30)
        assert second.writes() > 0, "the standby restored the child"
        assert took <= bound, f"takeover took {took:.1f}s; the bound is {bound}s"

        # A rolling upgrade: the new replica waits while the old one works...
        upgrade.start()
        delete_child_and_wait_restored(cluster, core, namespace, timeout=30)
        assert upgrade.writes() == 0, "a newly started replica waits while another one is active"
        # ...and takes over at once when the old one stops gracefully (Kopf says goodbye).
        second.stop()
        took = delete_child_and_wait_restored(cluster, core, namespace, timeout=30)
        assert upgrade.writes() > 0, "the new replica restored the child"
        assert took <= TAKEOVER_SLACK_SECONDS, f"a graceful handover took {took:.1f}s"
        wait_ready(cluster, namespace, timeout=30)


def active(operator: OperatorProcess) -> bool:
    return operator.metric_samples("sbo_active").get("") == 1


def test_a_replica_that_worked_stops_writing_when_a_higher_priority_one_appears(
    cluster: LocalCluster, peered_namespace: str, tmp_path: Path, core: client.CoreV1Api
) -> None:
    """Kopf pauses only its own watch; the operator's informers, workers and resync must follow."""
    namespace = peered_namespace
    with replicas(cluster, namespace, tmp_path, 2) as (first, pinned):
        first.start()
        cluster.apply(basic_backend(namespace))
        wait_ready(cluster, namespace)

        pinned.extra_env["SBO_PEERING_PRIORITY"] = "0"  # above every start-time priority
        pinned.start()
        eventually(lambda: active(pinned), timeout=30, what="the replica with the higher priority to work")
        written = first.writes()
        delete_child_and_wait_restored(cluster, core, namespace, timeout=30)
        assert pinned.writes() > 0, "the replica with the higher priority restored the child"
        assert first.writes() == written, "the paused replica did not"
        assert quiet_writes(first, 6) == 0, "nor did its periodic resync write anything"
        assert not active(first)


def autoscaler_decisions(operator: OperatorProcess) -> float:
    return sum(operator.metric_samples("sbo_autoscaler_decisions_total").values())


def test_only_the_active_replica_autoscales_and_the_standby_takes_it_over(
    cluster: LocalCluster,
    peered_namespace: str,
    tmp_path: Path,
    prometheus: PrometheusServer,
    target: MetricTarget,
    apps: client.AppsV1Api,
) -> None:
    namespace = peered_namespace
    with replicas(cluster, namespace, tmp_path, 2) as (first, second):
        first.start()
        second.start()
        cluster.apply(autoscaled_backend(namespace, prometheus.url))
        wait_ready(cluster, namespace)

        target.set(35, series="rps")  # 35 / 10 per replica -> 4 replicas
        eventually(lambda: deployment_replicas(apps, namespace) == 4, timeout=30, what="scale-up to 4")
        assert autoscaler_decisions(first) > 0
        assert autoscaler_decisions(second) == 0, "the standby does not poll Prometheus"
        assert second.writes() == 0, "nor write anything"

        first.kill()
        target.set(55, series="rps")  # -> 6 replicas, once the standby has taken over
        bound = LIFETIME_SECONDS + TAKEOVER_SLACK_SECONDS
        eventually(
            lambda: deployment_replicas(apps, namespace) == 6,
            timeout=bound + 30,
            what="the standby to take autoscaling over (6)",
        )
        assert autoscaler_decisions(second) > 0
