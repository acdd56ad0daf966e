"""Autoscaling end to end: a real Prometheus scrapes a metric the test controls.

The operator polls every second here, so each scenario takes seconds; the
same code runs with the default 15 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.metric_target import MetricTarget
from devkit.operator_process import OperatorProcess
from devkit.prometheus import BearerTokenProxy, PrometheusServer
from tests.e2e.conftest import condition, get_backend, wait_ready

pytestmark = pytest.mark.e2e

QUERY = 'sum(sbo_test_value{series="rps"})'
SCALE_DOWN_WINDOW = 6


@pytest.fixture
def target() -> Iterator[MetricTarget]:
    with MetricTarget.start() as started:
        started.set(0, series="rps")
        yield started


@pytest.fixture
def prometheus(target: MetricTarget, tmp_path: Any) -> Iterator[PrometheusServer]:
    server = PrometheusServer.start(tmp_path, scrape_targets={"app": [target.address]}, scrape_interval="1s")
    server.wait_for_target("app")
    yield server
    server.destroy()


def autoscaled_backend(namespace: str, prometheus_url: str, **autoscaling: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "mode": "Active",
        "minReplicas": 1,
        "maxReplicas": 6,
        "metrics": [{"name": "rps", "query": QUERY, "targetPerReplica": 10}],
        "scaleUp": {"stabilizationSeconds": 0},
        "scaleDown": {"stabilizationSeconds": SCALE_DOWN_WINDOW},
        **autoscaling,
    }
    return {
        "apiVersion": "sbo.dev/v1alpha1",
        "kind": "ScalableBackend",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {
            "image": "sbo-sample-app:0.1.0",
            "prometheus": {"url": prometheus_url, "pollSeconds": 1, "timeoutSeconds": 1},
            "api": {"replicas": 2, "autoscaling": spec},
            "redis": {"enabled": False},
            "postgres": {"enabled": False},
        },
    }


def deployment_replicas(apps: client.AppsV1Api, namespace: str) -> int:
    return int(apps.read_namespaced_deployment("shop-api", namespace).spec.replicas)


def test_scales_up_at_once_and_down_only_after_the_window(
    cluster: LocalCluster,
    solo: tuple[str, OperatorProcess],
    prometheus: PrometheusServer,
    target: MetricTarget,
    apps: client.AppsV1Api,
) -> None:
    namespace, _ = solo
    cluster.apply(autoscaled_backend(namespace, prometheus.url))
    wait_ready(cluster, namespace)

    target.set(45, series="rps")  # 45 / 10 per replica -> 5 replicas
    eventually(lambda: deployment_replicas(apps, namespace) == 5, timeout=30, what="scale-up to 5")
    backend = wait_ready(cluster, namespace)
    report = backend["status"]["autoscaling"]["api"]
    assert report["desiredReplicas"] == 5
    assert report["metrics"][0]["value"] == 45
    assert "rps=45" in report["reason"]
    assert condition(backend, "AutoscalingActive")["status"] == "True"
    assert backend["spec"]["api"]["replicas"] == 5, "the autoscaler owns spec.api.replicas"
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
    assert "-> 5 replicas" in events

    target.set(5, series="rps")
    prometheus.wait_for_value(QUERY, 5)
    dropped_at = time.monotonic()
    eventually(lambda: deployment_replicas(apps, namespace) == 1, timeout=60, what="scale-down to 1")
    assert time.monotonic() - dropped_at >= SCALE_DOWN_WINDOW - 1, "no scale-down inside the window"


def test_prometheus_down_holds_replicas_and_says_why_then_recovers(
    cluster: LocalCluster,
    solo: tuple[str, OperatorProcess],
    prometheus: PrometheusServer,
    target: MetricTarget,
    apps: client.AppsV1Api,
) -> None:
    namespace, _ = solo
    target.set(30, series="rps")
    cluster.apply(autoscaled_backend(namespace, prometheus.url))
    eventually(lambda: deployment_replicas(apps, namespace) == 3, timeout=30, what="scale to 3")

    prometheus.kill()
    target.set(0, series="rps")

    def metrics_unavailable() -> dict[str, Any] | None:
        found = condition(get_backend(cluster, namespace), "MetricsUnavailable")
        return found if found["status"] == "True" else None

    unavailable = eventually(metrics_unavailable, timeout=30, what="MetricsUnavailable=True")
    assert unavailable["reason"] == "ConnectionError"
    assert "cannot reach" in unavailable["message"]
    time.sleep(3)
    assert deployment_replicas(apps, namespace) == 3, "held while metrics are unavailable"
    assert condition(get_backend(cluster, namespace), "AutoscalingActive")["reason"] == "FailedGetMetrics"

    prometheus.restart()
    target.set(52, series="rps")
    eventually(lambda: deployment_replicas(apps, namespace) == 6, timeout=60, what="scaling to resume (6)")
    eventually(
        lambda: condition(get_backend(cluster, namespace), "MetricsUnavailable")["status"] == "False",
        what="MetricsUnavailable to clear",
    )


def test_fallback_after_consecutive_failures(
    cluster: LocalCluster,
    solo: tuple[str, OperatorProcess],
    prometheus: PrometheusServer,
    target: MetricTarget,
    apps: client.AppsV1Api,
) -> None:
    namespace, _ = solo
    target.set(10, series="rps")
    cluster.apply(autoscaled_backend(namespace, prometheus.url, fallback={"afterFailures": 2, "replicas": 4}))
    eventually(lambda: deployment_replicas(apps, namespace) == 1, timeout=30, what="scale to 1")
    prometheus.kill()
    eventually(
        lambda: deployment_replicas(apps, namespace) == 4, timeout=30, what="the fallback of 4 replicas"
    )
    assert condition(get_backend(cluster, namespace), "AutoscalingActive")["reason"] == "FallbackActive"


def test_dry_run_reports_but_never_changes_replicas(
    cluster: LocalCluster,
    solo: tuple[str, OperatorProcess],
    prometheus: PrometheusServer,
    target: MetricTarget,
    apps: client.AppsV1Api,
) -> None:
    namespace, _ = solo
    cluster.apply(autoscaled_backend(namespace, prometheus.url, mode="DryRun"))
    wait_ready(cluster, namespace)
    target.set(45, series="rps")

    def reported_five() -> bool:
        report = get_backend(cluster, namespace).get("status", {}).get("autoscaling", {}).get("api", {})
        return bool(report.get("desiredReplicas") == 5)

    eventually(reported_five, timeout=30, what="the dry run to report 5 replicas")
    time.sleep(3)
    backend = get_backend(cluster, namespace)
    assert backend["spec"]["api"]["replicas"] == 2
    assert deployment_replicas(apps, namespace) == 2
    active = condition(backend, "AutoscalingActive")
    assert (active["status"], active["reason"]) == ("False", "DryRun")
    assert "would run 5" in active["message"]


def test_stable_metric_means_no_writes_although_polled_every_second(
    cluster: LocalCluster,
    solo: tuple[str, OperatorProcess],
    prometheus: PrometheusServer,
    target: MetricTarget,
    apps: client.AppsV1Api,
) -> None:
    namespace, operator = solo
    target.set(30, series="rps")
    cluster.apply(autoscaled_backend(namespace, prometheus.url))
    eventually(lambda: deployment_replicas(apps, namespace) == 3, timeout=30, what="scale to 3")
    wait_ready(cluster, namespace)
    time.sleep(2)
    # Small wobbles that change no recommendation are not news either.
    before = operator.writes()
    for value in (29, 31, 30, 28.5, 30):
        target.set(value, series="rps")
        time.sleep(2)
    assert operator.writes() - before == 0
    polls = operator.metric_samples("sbo_autoscaler_decisions_total")
    assert sum(polls.values()) >= 8, "the window really contained polls"
    assert operator.metric_samples("sbo_autoscaler_metric_value")  # live values are on /metrics instead


def test_bearer_token_comes_from_a_secret_and_a_missing_one_is_named(
    cluster: LocalCluster,
    solo: tuple[str, OperatorProcess],
    prometheus: PrometheusServer,
    target: MetricTarget,
    apps: client.AppsV1Api,
) -> None:
    namespace, _ = solo
    target.set(30, series="rps")
    with BearerTokenProxy(prometheus.url, token="let-me-in") as proxy:
        manifest = autoscaled_backend(namespace, proxy.url)
        manifest["spec"]["prometheus"]["bearerTokenSecretRef"] = {"name": "prom-token", "key": "token"}
        cluster.apply(manifest)

        def unavailable() -> dict[str, Any] | None:
            found = condition(get_backend(cluster, namespace), "MetricsUnavailable")
            return found if found["status"] == "True" else None

        missing = eventually(unavailable, timeout=30, what="MetricsUnavailable for the missing Secret")
        assert missing["reason"] == "NotQueried"
        assert "spec.prometheus.bearerTokenSecretRef" in missing["message"]
        assert f"Secret {namespace}/prom-token not found" in missing["message"]
        assert deployment_replicas(apps, namespace) == 2, "held"

        cluster.kubectl(
            "create", "secret", "generic", "prom-token", "--from-literal=token=let-me-in", "-n", namespace
        )
        eventually(
            lambda: deployment_replicas(apps, namespace) == 3, timeout=90, what="scaling with the token"
        )
        backend = get_backend(cluster, namespace)
        assert "let-me-in" not in str(backend["status"]), "the token never reaches the status"

        # A wrong token is Prometheus's (here the proxy's) 401, reported as such.
        # Changed in place: a delete and a create would leave a moment with no Secret at all,
        # which a poll may catch and rightly report as NotQueried.
        cluster.kubectl(
            "patch",
            "secret",
            "prom-token",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"stringData":{"token":"wrong"}}',
        )
        # Secrets are cached briefly (SBO_AUTOSCALER_SECRET_CACHE_SECONDS, 2 s in these tests).
        wrong = eventually(unavailable, timeout=60, what="MetricsUnavailable for the wrong token")
        assert wrong["reason"] == "Unauthorized"
        target.set(60, series="rps")
        time.sleep(4)
        assert deployment_replicas(apps, namespace) == 3, "held while unauthorized"


def test_long_prometheus_outage_writes_only_its_transitions(
    cluster: LocalCluster,
    solo: tuple[str, OperatorProcess],
    prometheus: PrometheusServer,
    target: MetricTarget,
    apps: client.AppsV1Api,
) -> None:
    """Issue 15, item 11: the failed-poll count made every poll of an outage a status write.

    Failed before: a status write per poll while Prometheus was down.
    """
    namespace, operator = solo
    target.set(10, series="rps")
    fallback_after = 16  # polls, one a second: the holding window is long enough on a busy machine
    cluster.apply(
        autoscaled_backend(
            namespace, prometheus.url, fallback={"afterFailures": fallback_after, "replicas": 4}
        )
    )
    eventually(lambda: deployment_replicas(apps, namespace) == 1, timeout=30, what="scale to 1")
    wait_ready(cluster, namespace)
    time.sleep(2)

    def status_writes() -> float:
        return operator.metric_samples("sbo_api_writes_total").get(
            '{kind="ScalableBackend",verb="patch_status"}', 0
        )

    def polls() -> float:
        return sum(operator.metric_samples("sbo_autoscaler_decisions_total").values())

    prometheus.kill()
    killed_at = time.monotonic()

    def metrics_unavailable() -> bool:
        return bool(condition(get_backend(cluster, namespace), "MetricsUnavailable")["status"] == "True")

    eventually(metrics_unavailable, timeout=30, interval=0.2, what="MetricsUnavailable=True")
    time.sleep(1)
    # Holding: the failure's beginning was written; the polls until the fallback write nothing.
    writes, polled = operator.writes(), polls()
    time.sleep(max(0.0, killed_at + fallback_after - 4 - time.monotonic()))
    assert polls() - polled >= 4, "the window really contained failed polls"
    assert operator.writes() - writes == 0, "no write while holding through an outage"
    assert condition(get_backend(cluster, namespace), "AutoscalingActive")["reason"] == "FailedGetMetrics"

    # The fallback is a transition: written (and applied) once.
    before_fallback = status_writes()
    eventually(
        lambda: deployment_replicas(apps, namespace) == 4, timeout=30, what="the fallback of 4 replicas"
    )
    backend = wait_ready(cluster, namespace)
    assert condition(backend, "AutoscalingActive")["reason"] == "FallbackActive"
    assert status_writes() - before_fallback >= 1

    # Still down, many polls later: nothing is written at all.
    time.sleep(2)
    writes, polled = operator.writes(), polls()
    time.sleep(20)
    assert polls() - polled >= 12, "the window really contained failed polls"
    assert operator.writes() - writes == 0, "0 writes per backend per minute during a long outage"
    failed = operator.metric_samples("sbo_autoscaler_consecutive_failed_polls")
    assert max(failed.values()) >= fallback_after + 12, f"the running count is on /metrics: {failed}"
