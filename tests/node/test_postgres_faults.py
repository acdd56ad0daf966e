"""PostgreSQL faults on real pods: what the issue's failover promises, each fault for real.

The module runs the shared backend (tests/node/shop_backend.py; conftest.py's fixtures: its own
control plane with the real node, the operator as a local process, examples/basic.yaml on the
local images, two read replicas, one synchronous standby required), with ``failoverDelay: 0s``.
While a fault happens, a writer inserts numbered rows through -rw and a sampler asks -rw every
100 ms which server answered and whether it was writable (devkit.failover_probe, the same code
as ``make bench-failover``). Each test asserts what a user relies on: no acknowledged write lost
(synchronous), -rw never reaching a second writable server, the backend converging to one
primary with every other instance streaming from it.

The faults: the primary's postmaster SIGKILLed; the operator SIGKILLed while it fails over; a
replica's volume lost; a switchover under write load, then the same request applied again. The
last test stops the control plane and proves the host is as it was.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any, cast

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.failover_probe import CREATE_PROBE_TABLE, Probe, ProbeRecord
from devkit.operator_process import OperatorProcess
from devkit.real_pods import postgres_host_processes
from tests.node import test_backend_on_real_pods as real_pods
from tests.node.shop_backend import (
    NAME,
    NAMESPACE,
    Backend,
    Figures,
    get_json,
    wait_ready,
)
from tests.node.test_backend_on_real_pods import (
    api_pods,
    postgres_roles,
    psql,
    wait_ready_at_current_generation,
)

pytestmark = pytest.mark.node


STREAMING = "SELECT application_name, state FROM pg_stat_replication ORDER BY 1"


@pytest.fixture(scope="module")
def fast_failover(real_cluster: LocalCluster, backend: Backend) -> None:
    """failoverDelay 0s (the default): a primary unready or gone is failed over at once."""
    real_cluster.kubectl(
        "patch", f"sb/{NAME}", "-n", NAMESPACE, "--type=merge",
        "-p", '{"spec":{"postgres":{"failoverDelay":"0s"}}}',
    )  # fmt: skip
    wait_ready_at_current_generation(real_cluster)
    primary, _ = postgres_roles(real_cluster)
    psql(real_cluster, primary, CREATE_PROBE_TABLE)


def postgres_status(cluster: LocalCluster) -> dict[str, Any]:
    status: dict[str, Any] = get_json(cluster, f"sb/{NAME}", namespace=NAMESPACE)["status"]["postgres"]
    return status


def events(cluster: LocalCluster, reason: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = get_json(
        cluster, "events", "--field-selector", f"reason={reason}", namespace=NAMESPACE
    )["items"]
    return found


def occurrences(found: list[dict[str, Any]]) -> int:
    """Events counted as they happened: an aggregated Event counts each repetition."""
    return sum(int(event.get("count") or 1) for event in found)


def probed(cluster: LocalCluster, run: str, fault: Any, *, seconds: float = 35) -> tuple[ProbeRecord, float]:
    """The writer and sampler for ``seconds``, ``fault()`` called after 8 s of steady writes."""
    writer_pod = api_pods(cluster)[0]["metadata"]["name"]
    probe = Probe(cluster, NAMESPACE, writer_pod, run=run, seconds=seconds).start()
    time.sleep(8)
    at = time.time()
    fault()
    return probe.join(), at


def assert_nothing_acknowledged_lost(
    cluster: LocalCluster, primary: str, run: str, record: ProbeRecord
) -> None:
    stored = psql(cluster, primary, "SELECT id FROM failover_probe WHERE run = :'run'", run=run)
    lost = record.lost(int(row[0]) for row in stored)
    assert record.acked, "the writer had writes acknowledged"
    assert not lost, f"{len(lost)} of {len(record.acked)} acknowledged writes lost: {lost[:20]}"


def converged(cluster: LocalCluster, timeout: float = 180) -> tuple[str, list[str]]:
    """Stable, one primary labelled, every other instance streaming from it, the backend Ready."""

    def stable() -> dict[str, Any] | None:
        status = postgres_status(cluster)
        return status if status.get("phase") == "Stable" else None

    eventually(stable, timeout=timeout, interval=1, what="status.postgres.phase Stable")
    primary, replicas = postgres_roles(cluster)
    assert postgres_status(cluster)["currentPrimary"] == primary
    eventually(
        lambda: psql(cluster, primary, STREAMING) == [[name, "streaming"] for name in replicas],
        timeout=timeout,
        interval=2,
        what=f"{replicas} to stream from {primary}",
    )
    for replica in replicas:
        assert psql(cluster, replica, "SELECT pg_is_in_recovery()") == [["t"]], replica
    wait_ready(cluster, timeout=int(timeout))
    return primary, replicas


def postmaster_host_pid(pod_uid: str) -> int:
    """The host pid of the postmaster in the pod: the ``postgres`` process in the pod's cgroup
    whose parent is not a postgres process. (``kill -9 1`` inside the container does nothing:
    the kernel protects a pid namespace's init from signals sent from inside it.)"""
    candidates = postgres_host_processes(pod_uid)
    postmasters = [pid for pid, parent in candidates.items() if parent not in candidates]
    assert len(postmasters) == 1, f"one postmaster in pod {pod_uid}: {candidates}"
    return postmasters[0]


def test_the_primarys_postgres_sigkilled_recovers_without_losing_an_acknowledged_write(
    real_cluster: LocalCluster, fast_failover: None, figures: Figures
) -> None:
    old, _ = postgres_roles(real_cluster)
    pod = get_json(real_cluster, "pod", old, namespace=NAMESPACE)
    postmaster = postmaster_host_pid(pod["metadata"]["uid"])

    record, _ = probed(real_cluster, "sigkill", lambda: os.kill(postmaster, signal.SIGKILL))

    primary, _ = converged(real_cluster)
    assert_nothing_acknowledged_lost(real_cluster, primary, "sigkill", record)
    assert not record.two_primaries_observed(), record.writable_servers_in_order()
    last_ack = max(at for _, at in record.acked)
    assert last_ack > time.time() - 60, "writes were acknowledged again before the writer stopped"
    figures.values["sigkill_recovered_by"] = "restart in place" if primary == old else "failover"
    figures.values["sigkill_acknowledged_writes"] = len(record.acked)


def test_the_operator_killed_while_failing_over_resumes_with_exactly_one_promotion(
    real_cluster: LocalCluster, fast_failover: None, operator: OperatorProcess, figures: Figures
) -> None:
    old, _ = postgres_roles(real_cluster)
    timeline = postgres_status(real_cluster)["timeline"]
    failovers = occurrences(events(real_cluster, "Failover"))
    objects = client.CustomObjectsApi(real_cluster.api)

    real_cluster.kubectl("delete", "pod", old, "-n", NAMESPACE, "--grace-period=1", "--wait=false")
    deadline = time.monotonic() + 60
    while True:
        sb = cast(
            dict[str, Any],
            objects.get_namespaced_custom_object("sbo.dev", "v1alpha1", NAMESPACE, "scalablebackends", NAME),
        )
        if sb.get("status", {}).get("postgres", {}).get("phase") == "FailingOver":
            break
        assert time.monotonic() < deadline, "status.postgres.phase never became FailingOver"
        time.sleep(0.02)
    operator.kill()
    killed_during = sb["status"]["postgres"]
    operator.start()

    new, replicas = converged(real_cluster)
    status = postgres_status(real_cluster)
    assert new != old
    assert new == killed_during["targetPrimary"], "the new operator kept the target the old one chose"
    assert status["timeline"] == timeline + 1, "one promotion: the timeline moved by one"
    eventually(
        lambda: (
            {i["name"]: i.get("timeline") for i in postgres_status(real_cluster)["instances"]}
            == dict.fromkeys([new, *replicas], timeline + 1)
        ),
        timeout=60,
        interval=1,
        what=f"every instance on timeline {timeline + 1}",
    )
    found = events(real_cluster, "Failover")
    assert occurrences(found) == failovers + 1, [event["message"] for event in found]
    assert any(f"{old} -> {new}" in event["message"] for event in found)
    assert old in replicas, "the old primary rejoined as a replica"
    figures.values["operator_killed_during"] = killed_during


def test_a_replica_whose_volume_is_lost_is_rebuilt_from_the_primary(
    real_cluster: LocalCluster, fast_failover: None
) -> None:
    primary, replicas = postgres_roles(real_cluster)
    victim = replicas[-1]
    claim = f"data-{victim}"
    old_claim = get_json(real_cluster, "pvc", claim, namespace=NAMESPACE)["metadata"]["uid"]
    old_pod = get_json(real_cluster, "pod", victim, namespace=NAMESPACE)["metadata"]["uid"]
    psql(real_cluster, primary, "INSERT INTO failover_probe (run, id) VALUES ('volume', 1)")

    real_cluster.kubectl("delete", "pvc", claim, "-n", NAMESPACE, "--wait=false")
    real_cluster.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--wait=false")

    def rebuilt() -> bool:
        found = real_cluster.kubectl("get", "pvc", claim, "-n", NAMESPACE, "-o", "json", check=False)
        pod = real_cluster.kubectl("get", "pod", victim, "-n", NAMESPACE, "-o", "json", check=False)
        if found.returncode != 0 or pod.returncode != 0:
            return False
        new_claim, new_pod = json.loads(found.stdout), json.loads(pod.stdout)
        if new_pod["metadata"]["uid"] != old_pod and new_claim["metadata"]["uid"] == old_claim:
            # A pod the StatefulSet made before the old claim was gone waits on it: start again.
            real_cluster.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--wait=false", check=False)
            return False
        return new_claim["metadata"]["uid"] != old_claim and real_pods.is_ready(new_pod)

    eventually(rebuilt, timeout=240, interval=2, what=f"{victim} back Ready on a new volume")
    assert postgres_roles(real_cluster) == (primary, replicas), "the roles did not change"
    eventually(
        lambda: psql(real_cluster, primary, STREAMING) == [[name, "streaming"] for name in replicas],
        timeout=120,
        interval=2,
        what=f"{victim} to stream from {primary} again",
    )
    # Cloned: the row written before the loss, and one written after, are on the new volume.
    psql(real_cluster, primary, "INSERT INTO failover_probe (run, id) VALUES ('volume', 2)")
    eventually(
        lambda: (
            psql(real_cluster, victim, "SELECT id FROM failover_probe WHERE run = 'volume' ORDER BY 1")
            == [["1"], ["2"]]
        ),
        timeout=30,
        interval=1,
        what=f"{victim} to replay both rows",
    )
    bootstrap = real_cluster.kubectl("logs", "-n", NAMESPACE, victim, "-c", "bootstrap", check=False).stdout
    assert "cloning the primary" in bootstrap, bootstrap[-2000:]


def test_a_switchover_under_write_load_loses_nothing_and_applying_it_again_does_nothing(
    real_cluster: LocalCluster, fast_failover: None, figures: Figures
) -> None:
    old, replicas = postgres_roles(real_cluster)
    target = replicas[0]
    old_ip = get_json(real_cluster, "pod", old, namespace=NAMESPACE)["status"]["podIP"]
    switchovers = occurrences(events(real_cluster, "Switchover"))
    request = json.dumps({"spec": {"postgres": {"switchover": {"to": target, "id": f"faults-{target}"}}}})

    def switch() -> None:
        real_cluster.kubectl("patch", f"sb/{NAME}", "-n", NAMESPACE, "--type=merge", "-p", request)

    record, fault = probed(real_cluster, "switchover", switch)

    new, others = converged(real_cluster)
    assert new == target
    assert old in others, "the old primary streams from the new one"
    assert_nothing_acknowledged_lost(real_cluster, new, "switchover", record)
    new_ip = get_json(real_cluster, "pod", new, namespace=NAMESPACE)["status"]["podIP"]
    # -rw reached the old primary, then the new one, never the old one again.
    assert record.writable_servers_in_order() == [old_ip, new_ip]
    figures.values["switchover_write_outage_seconds"] = record.write_outage_seconds(fault)
    assert occurrences(events(real_cluster, "Switchover")) == switchovers + 1

    # The same request again (GitOps re-applies its manifest; kubectl re-runs its patch): nothing
    # happens, over several of the operator's resync periods (10 s here).
    status = postgres_status(real_cluster)
    pods_before = {pod["metadata"]["name"]: pod["metadata"]["uid"] for pod in real_pods.pods(real_cluster)}
    switch()
    time.sleep(25)
    after = postgres_status(real_cluster)
    assert (after["currentPrimary"], after["timeline"], after["phase"]) == (
        status["currentPrimary"],
        status["timeline"],
        "Stable",
    )
    assert after["switchoverId"] == f"faults-{target}"
    assert postgres_roles(real_cluster) == (new, others)
    assert {
        pod["metadata"]["name"]: pod["metadata"]["uid"] for pod in real_pods.pods(real_cluster)
    } == pods_before
    assert occurrences(events(real_cluster, "Switchover")) == switchovers + 1


def test_down_leaves_the_host_as_it_found_it(
    real_cluster: LocalCluster, backend: Backend, host_before: dict[str, Any], figures: Figures
) -> None:
    real_pods.test_down_leaves_the_host_as_it_found_it(real_cluster, backend, host_before, figures)
