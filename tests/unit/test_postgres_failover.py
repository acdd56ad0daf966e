"""The election in the reconcile path: the status holds the decided state before any action runs,
the actions reach the API (labels and deletions with the pod's uid as precondition) and PostgreSQL
(promotion), a steady state writes nothing, and a failover goes Stable -> FailingOver -> Stable.

kmock plays the apiserver and records every request; the instances' SQL answers are scripted
(``Instances``), since a real failover is the node tier's (tests/node/test_postgres_failover.py).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import kmock
import psycopg
import pytest

from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.postgres_failover import PostgresRoles
from sbo_operator.postgres_monitor import (
    STOPPING_PROBE_SECONDS,
    VANISHED_PROBE_SECONDS,
    PostgresMonitor,
    instances_of,
)
from sbo_operator.postgres_probe import (
    REFUSED,
    SHUTTING_DOWN,
    TIMED_OUT,
    UNROUTABLE,
    Credentials,
    InstanceProbe,
    unreachable_reason,
)
from sbo_operator.postgres_roles import (
    Decision,
    DeletePod,
    Phase,
    Promote,
    RoleEvent,
    RolesState,
    ScaleLegacyPrimaryToZero,
    SetRole,
)
from sbo_operator.reconcile import Reconciler
from sbo_operator.settings import OperatorSettings
from sbo_operator.snapshot import Snapshot
from sbo_operator.workqueue import Key
from tests.unit.conftest import BACKEND_ECHO, kopf_events, writes
from tests.unit.factories import (
    Body,
    Manifest,
    edited,
    example_body,
    merge_patch,
    parse,
    postgres_pod,
    snapshot,
)
from tests.unit.test_reconcile import STATUS_PATH, applied_stack, reconciler_for

pytestmark = [pytest.mark.unit, pytest.mark.kmock(cls=kmock.KubernetesScaffold)]

KEY = Key("demo", "shop")
BACKENDS = kmock.resource("sbo.dev/v1alpha1/scalablebackends")
PODS = kmock.resource("v1/pods")
POD_PATH = "/api/v1/namespaces/demo/pods/"
OPERATOR_SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "shop-postgres-operator", "namespace": "demo"},
    "data": {
        "username": base64.b64encode(b"sbo_operator").decode(),
        "password": base64.b64encode(b"not-a-real-password").decode(),
    },
}
POD_ECHO = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}


class Instances:
    """What each instance answers (by pod IP), and the promotions and settings asked of it."""

    def __init__(self, answers: dict[str, InstanceProbe]) -> None:
        self.answers = answers
        self.promoted: list[str] = []
        self.set_to: list[tuple[str, str]] = []  # (host, synchronous_standby_names)

    async def probe(self, host: str, credentials: Credentials) -> InstanceProbe:
        assert credentials == Credentials("sbo_operator", "not-a-real-password")
        return self.answers.get(host, InstanceProbe(reachable=False))

    async def promote(self, host: str, credentials: Credentials) -> bool:
        self.promoted.append(host)
        self.answers[host] = InstanceProbe(
            reachable=True, in_recovery=False, timeline=2, lsn=200, replay_lsn=200, streaming=False
        )
        return True

    async def set_synchronous(self, host: str, credentials: Credentials, value: str) -> bool:
        """The primary's ALTER SYSTEM SET synchronous_standby_names and reload, applied at once."""
        self.set_to.append((host, value))
        self.answers[host] = dataclasses.replace(self.answers[host], synchronous_standby_names=value)
        return True


def ip(ordinal: int) -> str:
    return f"198.18.0.{10 + ordinal}"


PRIMARY = InstanceProbe(
    reachable=True, in_recovery=False, timeline=1, lsn=100, replay_lsn=100, streaming=False
)


def standby(lsn: int) -> InstanceProbe:
    return InstanceProbe(
        reachable=True, in_recovery=True, timeline=1, lsn=lsn, replay_lsn=lsn, streaming=True
    )


def pods(*roles: str | None, missing: frozenset[int] = frozenset()) -> list[Manifest]:
    return [
        postgres_pod(f"shop-postgres-{ordinal}", role=role, ip=ip(ordinal))
        for ordinal, role in enumerate(roles)
        if ordinal not in missing
    ]


class Cluster:
    def __init__(self, body: Body, children: list[Manifest], postgres_pods: list[Manifest]) -> None:
        self.body, self.children, self.pods = body, children, postgres_pods

    def snapshot(self, key: Key) -> Snapshot | None:
        return snapshot(self.body, *self.children, pods=self.pods) if key == KEY else None


def reconciler_with_roles(
    kube: Kube, metrics: OperatorMetrics, cluster: Cluster, instances: Instances
) -> Reconciler:
    reconciler = reconciler_for(kube, metrics, cluster)  # type: ignore[arg-type]
    monitor = PostgresMonitor(
        kube=kube,
        networks=OperatorSettings(postgres_probe_networks="198.18.0.0/16").postgres_probe_networks,
        interval_seconds=60,
        on_change=lambda key: None,
        probe=instances.probe,
        promote=instances.promote,
        set_synchronous=instances.set_synchronous,
    )
    reconciler.roles = PostgresRoles(kube=kube, monitor=monitor)
    return reconciler


def serve(apiserver: kmock.KubernetesScaffold) -> None:
    apiserver[kmock.method.PATCH, BACKENDS] << BACKEND_ECHO
    apiserver[kmock.method.PATCH, PODS] << POD_ECHO
    apiserver[kmock.method.DELETE, PODS] << POD_ECHO
    apiserver[kmock.method.GET, kmock.resource("v1/secrets")] << OPERATOR_SECRET


def status_writes(apiserver: kmock.KubernetesScaffold) -> list[dict[str, Any]]:
    return [
        json.loads(r.text)["status"]
        for r in apiserver
        if r.method.value == "PATCH" and r.url.path == STATUS_PATH
    ]


def pod_writes(apiserver: kmock.KubernetesScaffold) -> list[tuple[str, str, Any]]:
    return [
        (r.method.value, r.url.path.removeprefix(POD_PATH), json.loads(r.text) if r.text else None)
        for r in apiserver
        if r.url.path.startswith(POD_PATH)
    ]


def postgres_condition(status: dict[str, Any]) -> tuple[str, str, str]:
    condition = next(c for c in status["conditions"] if c["type"] == "PostgresReady")
    return condition["status"], condition["reason"], condition["message"]


async def test_a_new_backend_gets_its_state_written_before_its_pods_are_labelled(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    serve(apiserver)
    body = example_body()
    cluster = Cluster(body, applied_stack(body), pods(None, None, None))
    instances = Instances({})  # nothing answers yet: the instances wait for their roles
    reconciler = reconciler_with_roles(kube, metrics, cluster, instances)

    with kopf_events():
        await reconciler.reconcile(KEY)

    methods = [(method, path.rsplit("/", 1)[-1]) for method, path in writes(apiserver)]
    assert methods == [
        ("PATCH", "status"),
        ("PATCH", "shop-postgres-1"),
        ("PATCH", "shop-postgres-2"),
        ("PATCH", "shop-postgres-0"),
    ], "the state first, then the replicas' labels, then the primary's"
    [status] = status_writes(apiserver)
    assert status["postgres"]["phase"] == "Stable"
    assert status["postgres"]["currentPrimary"] == "shop-postgres-0"
    labels = {name: patch["metadata"] for _, name, patch in pod_writes(apiserver)}
    assert labels["shop-postgres-0"] == {
        "uid": "uid-shop-postgres-0",
        "labels": {"sbo.dev/postgres-role": "primary"},
    }
    assert labels["shop-postgres-1"]["labels"] == {"sbo.dev/postgres-role": "replica"}


async def test_no_action_runs_when_the_state_could_not_be_written(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    apiserver[kmock.method.PATCH, BACKENDS] << kmock.KubernetesError(
        status=500, reason="InternalError", message="etcd"
    )
    apiserver[kmock.method.PATCH, PODS] << POD_ECHO
    apiserver[kmock.method.DELETE, PODS] << POD_ECHO
    apiserver[kmock.method.GET, kmock.resource("v1/secrets")] << OPERATOR_SECRET
    body = {
        **example_body(),
        "status": {"postgres": {"phase": "Stable", "currentPrimary": "shop-postgres-0"}},
    }
    # The primary is not ready: a failover is decided (fence it, promote another), but its state
    # cannot be recorded, so nothing is done.
    unready = postgres_pod("shop-postgres-0", role="primary", ready=False, ip=ip(0))
    cluster = Cluster(body, applied_stack(body), [unready, *pods("primary", "replica", "replica")[1:]])
    instances = Instances({ip(1): standby(100), ip(2): standby(90)})
    reconciler = reconciler_with_roles(kube, metrics, cluster, instances)
    decision = await reconciler.roles.decide(KEY, parse(body), body["status"], cluster.snapshot(KEY))  # type: ignore[union-attr,arg-type]
    assert decision is not None
    assert decision.actions, "there would be something to do"
    with kopf_events(), pytest.raises(Exception, match="Internal"):
        await reconciler.reconcile(KEY)
    assert pod_writes(apiserver) == []
    assert instances.promoted == []


async def test_a_labelled_serving_backend_writes_nothing(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    serve(apiserver)
    body = example_body()
    cluster = Cluster(body, applied_stack(body), pods("primary", "replica", "replica"))
    instances = Instances({ip(0): PRIMARY, ip(1): standby(100), ip(2): standby(100)})
    reconciler = reconciler_with_roles(kube, metrics, cluster, instances)
    with kopf_events():
        await reconciler.reconcile(KEY)
        [status] = status_writes(apiserver)
        cluster.body = {**body, "status": merge_patch({}, status)}
        await reconciler.roles.monitor.refresh(KEY)  # type: ignore[union-attr]
        for _ in range(3):
            await reconciler.reconcile(KEY)
    assert [path for _, path in writes(apiserver)] == [STATUS_PATH]
    assert instances.promoted == []


async def test_a_lost_primary_is_failed_over_to_the_most_advanced_standby(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    serve(apiserver)
    body = example_body()
    stable = {"phase": "Stable", "currentPrimary": "shop-postgres-0", "timeline": 1}
    body = {**body, "status": {"postgres": stable}}
    # shop-postgres-0's pod is gone (deleted with grace 0); -2 holds more WAL than -1.
    cluster = Cluster(
        body, applied_stack(body), pods("primary", "replica", "replica", missing=frozenset({0}))
    )
    instances = Instances({ip(1): standby(90), ip(2): standby(100)})
    reconciler = reconciler_with_roles(kube, metrics, cluster, instances)

    with kopf_events() as events:
        requeue = await reconciler.reconcile(KEY)
        assert requeue is not None
        assert requeue <= 1.0, "a change looks again within a second"
        [failing_over] = status_writes(apiserver)
        assert failing_over["postgres"]["phase"] == "FailingOver"
        shop = {"namespace": "demo", "name": "shop"}
        assert metrics.registry.get_sample_value("sbo_postgres_failing_over", shop) == 1
        assert metrics.registry.get_sample_value("sbo_postgres_primary_ready", shop) == 0
        assert failing_over["postgres"]["targetPrimary"] == "shop-postgres-2"
        assert postgres_condition(failing_over)[:2] == ("False", "FailingOver")
        assert "shop-postgres-0 -> shop-postgres-2" in postgres_condition(failing_over)[2]
        # The old pod is gone, so nothing is left to fence: the pass that records the change
        # (its status written first) promotes the target at once.
        assert instances.promoted == [ip(2)]
        cluster.body = {**body, "status": merge_patch(body["status"], failing_over)}

        # The probe after the promotion shows it writable: it is labelled primary, and Stable.
        cluster.body = {**body, "status": merge_patch(cluster.body["status"], status_writes(apiserver)[-1])}
        await reconciler.reconcile(KEY)
        final = merge_patch(cluster.body["status"], status_writes(apiserver)[-1])["postgres"]
        assert (final["phase"], final["currentPrimary"], final["timeline"]) == (
            "Stable",
            "shop-postgres-2",
            2,
        )
        assert "targetPrimary" not in final
        reasons = []
        while not events.empty():
            reasons.append(events.get_nowait().reason)
    labels = [
        (name, patch["metadata"]["labels"])
        for method, name, patch in pod_writes(apiserver)
        if method == "PATCH"
    ]
    assert labels[-1] == ("shop-postgres-2", {"sbo.dev/postgres-role": "primary"})
    assert ("shop-postgres-2", {"sbo.dev/postgres-role": "primary"}) not in labels[:-1], (
        "labelled only once promoted"
    )
    assert instances.promoted == [ip(2)], "promoted once"
    assert "FailingOver" in reasons
    assert "Failover" in reasons


async def test_a_primary_deleted_with_no_grace_is_promoted_over_only_once_its_server_stopped(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    """``kubectl delete pod --grace-period=0 --force``: the pod leaves the API at once, while the
    kubelet is still stopping its server, which may still commit (and, synchronous, have a standby
    acknowledge) writes the target would never receive. The operator keeps asking its address."""
    serve(apiserver)
    body = example_body()
    stable = {"phase": "Stable", "currentPrimary": "shop-postgres-0", "timeline": 1}
    body = {**body, "status": {"postgres": stable}}
    cluster = Cluster(body, applied_stack(body), pods("primary", "replica", "replica"))
    instances = Instances({ip(0): PRIMARY, ip(1): standby(100), ip(2): standby(90)})
    reconciler = reconciler_with_roles(kube, metrics, cluster, instances)
    with kopf_events():
        await reconciler.reconcile(KEY)  # stable: the monitor knows the primary's pod
        cluster.pods = pods(None, "replica", "replica", missing=frozenset({0}))
        requeue = await reconciler.reconcile(KEY)
        assert status_writes(apiserver)[-1]["postgres"]["phase"] == "FailingOver"
        assert instances.promoted == [], "its server still answers"
        assert requeue is not None
        assert requeue <= 0.25
        cluster.body = {**body, "status": merge_patch(body["status"], status_writes(apiserver)[-1])}
        instances.answers[ip(0)] = InstanceProbe(reachable=False, error=SHUTTING_DOWN)
        await reconciler.reconcile(KEY)
        assert instances.promoted == [], "its fast shutdown may still be sending WAL"
        instances.answers[ip(0)] = InstanceProbe(reachable=False, error=REFUSED)
        await reconciler.reconcile(KEY)
        assert instances.promoted == [ip(1)]


async def test_actions_carry_the_pods_uid_and_a_failover_deletes_with_grace_zero(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    serve(apiserver)
    body = example_body()
    cluster_pods = pods("primary", "replica", "replica")
    roles = PostgresRoles(
        kube=kube,
        monitor=PostgresMonitor(kube=kube, networks=[], interval_seconds=60, on_change=lambda key: None),
    )
    decision = Decision(
        state=RolesState(
            phase=Phase.FAILING_OVER, current_primary="shop-postgres-0", target_primary="shop-postgres-1"
        ),
        actions=(
            SetRole("shop-postgres-0", "replica"),
            DeletePod("shop-postgres-0", "uid-shop-postgres-0", 0),
            SetRole("shop-postgres-9", "replica"),  # no such pod: skipped
        ),
        events=(RoleEvent("Warning", "FailingOver", "shop-postgres-0 -> shop-postgres-1"),),
    )
    with kopf_events() as events:
        await roles.execute(KEY, parse(body), body, snapshot(body, pods=cluster_pods), decision)
        assert events.get_nowait().reason == "FailingOver"
    assert pod_writes(apiserver) == [
        (
            "PATCH",
            "shop-postgres-0",
            {"metadata": {"uid": "uid-shop-postgres-0", "labels": {"sbo.dev/postgres-role": "replica"}}},
        ),
        (
            "DELETE",
            "shop-postgres-0",
            {"preconditions": {"uid": "uid-shop-postgres-0"}, "gracePeriodSeconds": 0},
        ),
    ]


async def test_a_promotion_without_an_address_is_not_attempted(kube: Kube) -> None:
    instances = Instances({})
    monitor = PostgresMonitor(
        kube=kube, networks=[], interval_seconds=60, on_change=lambda key: None, promote=instances.promote
    )
    roles = PostgresRoles(kube=kube, monitor=monitor)
    body = example_body()
    decision = Decision(state=RolesState(phase=Phase.FAILING_OVER), actions=(Promote("shop-postgres-1"),))
    with kopf_events():
        await roles.execute(KEY, parse(body), body, snapshot(body, pods=pods("replica", "replica")), decision)
    assert instances.promoted == []


def test_pods_outside_the_probe_networks_are_never_tracked() -> None:
    body = example_body()
    monitor = PostgresMonitor(
        kube=None,  # type: ignore[arg-type]
        networks=OperatorSettings(postgres_probe_networks="198.18.0.0/16").postgres_probe_networks,
        interval_seconds=60,
        on_change=lambda key: None,
    )
    kwok_pod = postgres_pod("shop-postgres-1", role="replica", ip="10.244.0.7")
    no_ip = postgres_pod("shop-postgres-2", role="replica", ip=None)
    monitor.track(KEY, parse(body), snapshot(body, pods=[*pods("primary"), kwok_pod, no_ip]))
    assert monitor._tracked[KEY].addresses == {"shop-postgres-0": ip(0)}


def test_the_election_sees_every_desired_instance_and_every_pod() -> None:
    body = example_body()
    legacy = postgres_pod("shop-postgres-primary-0", role="primary")
    unready = postgres_pod("shop-postgres-1", role="replica", ready=False)
    scaled_down = legacy_statefulset("shop-postgres-primary", replicas=0, generation=2)
    current = snapshot(body, scaled_down, pods=[legacy, unready])
    probes = {"shop-postgres-1": standby(5)}
    down: dict[str, bool] = {}

    def down_since(name: str, is_down: bool) -> None:
        down[name] = is_down

    instances = {
        i.name: i
        for i in instances_of(
            parse(body), current, ["shop-postgres-0", "shop-postgres-1"], probes, down_since
        )
    }
    assert set(instances) == {"shop-postgres-0", "shop-postgres-1", "shop-postgres-primary-0"}
    assert instances["shop-postgres-primary-0"].legacy
    assert instances["shop-postgres-primary-0"].statefulset_replicas == 0, "its StatefulSet's, as seen"
    assert instances["shop-postgres-1"].statefulset_replicas is None
    assert not instances["shop-postgres-0"].exists
    assert instances["shop-postgres-1"].unready_since is not None, "from its Ready condition"
    assert (instances["shop-postgres-1"].lsn, instances["shop-postgres-1"].in_recovery) == (5, True)
    assert down == {"shop-postgres-0": True, "shop-postgres-1": True, "shop-postgres-primary-0": False}


async def test_the_monitor_reports_each_instances_lag_and_forgets_a_deleted_backend(
    kube: Kube, metrics: OperatorMetrics, apiserver: kmock.KubernetesScaffold
) -> None:
    serve(apiserver)
    instances = Instances({ip(0): PRIMARY, ip(1): standby(60), ip(2): InstanceProbe(reachable=False)})
    changed: list[Key] = []
    monitor = PostgresMonitor(
        kube=kube,
        networks=OperatorSettings(postgres_probe_networks="198.18.0.0/16").postgres_probe_networks,
        interval_seconds=60,
        on_change=changed.append,
        metrics=metrics,
        probe=instances.probe,
    )
    body = example_body()
    monitor.track(KEY, parse(body), snapshot(body, pods=pods("primary", "replica", "replica")))
    await monitor.refresh(KEY)

    def lag(instance: str) -> float | None:
        labels = {"namespace": "demo", "name": "shop", "instance": instance}
        return metrics.registry.get_sample_value("sbo_postgres_replica_lag_bytes", labels)

    assert (lag("shop-postgres-0"), lag("shop-postgres-1"), lag("shop-postgres-2")) == (0, 40, None)
    assert monitor.last_primary_lsn(KEY) == 100
    # A new LSN alone is no reason for a pass; a standby that stops streaming is.
    instances.answers[ip(1)] = standby(100)
    assert not await monitor._probe_backend(KEY, monitor._tracked[KEY])
    instances.answers[ip(1)] = dataclasses.replace(standby(100), streaming=False)
    assert await monitor._probe_backend(KEY, monitor._tracked[KEY])
    monitor.forget(KEY)
    assert lag("shop-postgres-0") is None


def probing(
    kube: Kube,
    probe: Callable[[str, Credentials], Awaitable[InstanceProbe]],
    *,
    on_change: Callable[[Key], None] = lambda key: None,
    **hooks: Any,
) -> PostgresMonitor:
    """A monitor of the pods in 198.18.0.0/16 that asks ``probe`` (``hooks``: promote, ...)."""
    networks = OperatorSettings(postgres_probe_networks="198.18.0.0/16").postgres_probe_networks
    return PostgresMonitor(
        kube=kube, networks=networks, interval_seconds=60, on_change=on_change, probe=probe, **hooks
    )


def terminating_old_primary() -> Manifest:
    return postgres_pod("shop-postgres-0", role="replica", ip=ip(0), terminating=True)


async def test_a_successful_promotion_wakes_the_backend_for_its_label_at_once(
    kube: Kube, apiserver: kmock.KubernetesScaffold
) -> None:
    serve(apiserver)
    instances = Instances({ip(1): standby(100)})
    woken: list[Key] = []
    monitor = probing(kube, instances.probe, on_change=woken.append, promote=instances.promote)
    roles = PostgresRoles(kube=kube, monitor=monitor)
    body = example_body()
    current = snapshot(body, pods=pods(None, "replica"))
    monitor.track(KEY, parse(body), current)
    decision = Decision(state=RolesState(phase=Phase.FAILING_OVER), actions=(Promote("shop-postgres-1"),))
    with kopf_events():
        await roles.execute(KEY, parse(body), body, current, decision)
    assert instances.promoted == [ip(1)]
    assert woken == [KEY], "the next pass (the label) runs now, not at the next poll"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param(
            psycopg.OperationalError(
                'connection failed: connection to server at "198.18.0.10", port 5432 failed: '
                "FATAL:  the database system is shutting down"
            ),
            SHUTTING_DOWN,
            id="shutting-down",
        ),
        pytest.param(
            psycopg.OperationalError(
                'connection failed: connection to server at "198.18.0.10", port 5432 failed: '
                "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?"
            ),
            REFUSED,
            id="refused",
        ),
        pytest.param(ConnectionRefusedError(111, "Connection refused"), REFUSED, id="refused-oserror"),
        pytest.param(
            psycopg.OperationalError("connection failed: FATAL:  password authentication failed"),
            "OperationalError",
            id="other",
        ),
        pytest.param(
            psycopg.OperationalError(
                'connection failed: connection to server at "198.18.0.10", port 5432 failed: No route to host'
            ),
            UNROUTABLE,
            id="sandbox-gone",
        ),
        pytest.param(
            psycopg.OperationalError(
                "consuming input failed: server closed the connection unexpectedly\n\tThis probably means "
                "the server terminated abnormally"
            ),
            "OperationalError",
            id="cut-while-shutting-down",
        ),
        pytest.param(TimeoutError(), TIMED_OUT, id="timeout"),
        pytest.param(
            psycopg.errors.ConnectionTimeout("connection timeout expired"), TIMED_OUT, id="connect-timeout"
        ),
    ],
)
def test_why_an_instance_did_not_answer(error: BaseException, reason: str) -> None:
    assert unreachable_reason(error) == reason
    assert InstanceProbe(reachable=False, error=reason).shutting_down is (reason == SHUTTING_DOWN)


async def test_a_terminating_server_once_stopped_is_not_probed_again(
    kube: Kube, apiserver: kmock.KubernetesScaffold
) -> None:
    """The fenced primary shuts down, then stops; its pod's address may then answer nothing at all
    (its sandbox gone): a probe would hold the pass for the connect timeout (2 s, seen on the real
    node after each promotion). Once seen shutting down, a probe of it is bounded; once stopped,
    it is not probed again. A new pod under the same name is probed as any other."""
    serve(apiserver)
    asked: list[str] = []
    answers: dict[str, InstanceProbe | None] = {
        ip(0): InstanceProbe(reachable=False, error=SHUTTING_DOWN),
        ip(1): standby(100),
    }

    async def probe(host: str, credentials: Credentials) -> InstanceProbe:
        asked.append(host)
        answer = answers[host]
        if answer is None:
            await asyncio.sleep(60)  # an address nobody answers at: the connect timeout
            raise AssertionError("a probe of a stopping server is bounded")
        return answer

    monitor = probing(kube, probe)
    body = example_body()
    old = terminating_old_primary()
    terminating = snapshot(body, pods=[old, postgres_pod("shop-postgres-1", role="replica", ip=ip(1))])
    monitor.track(KEY, parse(body), terminating)
    await monitor.refresh(KEY)
    assert monitor.probes(KEY)["shop-postgres-0"].shutting_down

    answers[ip(0)] = None  # stopped, and its sandbox gone
    loop = asyncio.get_running_loop()
    started = loop.time()
    await monitor.refresh(KEY)
    assert loop.time() - started < STOPPING_PROBE_SECONDS + 0.5
    stopped = monitor.probes(KEY)["shop-postgres-0"]
    assert not stopped.reachable
    assert not stopped.shutting_down

    asked.clear()
    await monitor.refresh(KEY)
    assert asked == [ip(1)], "a stopped server in a terminating pod is not asked again"
    [silent] = [
        i
        for i in instances_of(parse(body), terminating, [], monitor.probes(KEY), lambda *_: None)
        if i.name == "shop-postgres-0"
    ]
    assert (silent.terminating, silent.reachable, silent.shutting_down) == (True, False, False)

    # The StatefulSet's new pod under the same name (another uid) is probed again.
    recreated = postgres_pod("shop-postgres-0", role=None, ip=ip(0))
    recreated["metadata"]["uid"] = "uid-shop-postgres-0-again"
    answers[ip(0)] = standby(100)
    monitor.track(
        KEY,
        parse(body),
        snapshot(body, pods=[recreated, postgres_pod("shop-postgres-1", role="replica", ip=ip(1))]),
    )
    asked.clear()
    await monitor.refresh(KEY)
    assert sorted(asked) == [ip(0), ip(1)]
    assert monitor.probes(KEY)["shop-postgres-0"].reachable


@pytest.mark.parametrize("error", [REFUSED, TIMED_OUT, UNROUTABLE])
async def test_a_terminating_server_that_refuses_or_never_answers_is_stopped_at_once(
    kube: Kube, apiserver: kmock.KubernetesScaffold, error: str
) -> None:
    serve(apiserver)
    asked: list[str] = []

    async def probe(host: str, credentials: Credentials) -> InstanceProbe:
        asked.append(host)
        return InstanceProbe(reachable=False, error=error)

    monitor = probing(kube, probe)
    body = example_body()
    old = terminating_old_primary()
    terminating = snapshot(body, pods=[old])
    monitor.track(KEY, parse(body), terminating)
    await monitor.refresh(KEY)
    [seen] = instances_of(parse(body), terminating, [], monitor.probes(KEY), lambda *_: None)
    assert seen.stopped, "the election may promote over it from this very pass"
    await monitor.refresh(KEY)
    assert asked == [ip(0)]


async def test_a_terminating_server_that_cuts_the_connection_is_not_stopped(
    kube: Kube, apiserver: kmock.KubernetesScaffold
) -> None:
    # What a server says while a fast shutdown ends the sessions: it still runs, and may still
    # send WAL, so the fence holds until it refuses (or stops answering).
    serve(apiserver)
    answer = InstanceProbe(reachable=False, error="OperationalError")

    async def probe(host: str, credentials: Credentials) -> InstanceProbe:
        return answer

    monitor = probing(kube, probe)
    body = example_body()
    terminating = snapshot(body, pods=[terminating_old_primary()])
    monitor.track(KEY, parse(body), terminating)
    await monitor.refresh(KEY)
    [seen] = instances_of(parse(body), terminating, [], monitor.probes(KEY), lambda *_: None)
    assert (seen.terminating, seen.reachable, seen.stopped) == (True, False, False)
    answer = InstanceProbe(reachable=False, error=REFUSED)
    await monitor.refresh(KEY)
    [seen] = instances_of(parse(body), terminating, [], monitor.probes(KEY), lambda *_: None)
    assert seen.stopped


async def test_the_monitor_follows_a_pod_deleted_with_no_grace_until_its_server_stopped(
    kube: Kube, apiserver: kmock.KubernetesScaffold
) -> None:
    serve(apiserver)
    answers = {ip(0): PRIMARY, ip(1): standby(100)}
    hangs: set[str] = set()

    async def probe(host: str, credentials: Credentials) -> InstanceProbe:
        if host in hangs:
            await asyncio.sleep(60)  # the address of a sandbox that is gone: no answer
        return answers[host]

    monitor = probing(kube, probe)
    body = example_body()
    both = pods("primary", "replica")
    monitor.track(KEY, parse(body), snapshot(body, pods=both))
    assert monitor.vanished_pod_uids(KEY) == {}
    monitor.track(KEY, parse(body), snapshot(body, pods=both[1:]))  # deleted with no grace
    await monitor.refresh(KEY)
    assert monitor.vanished_pod_uids(KEY) == {"shop-postgres-0": ("uid-shop-postgres-0",)}, "it answers"
    hangs.add(ip(0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await monitor.refresh(KEY)
    assert loop.time() - started < VANISHED_PROBE_SECONDS + 0.5
    assert monitor.vanished_pod_uids(KEY) == {}, "no answer within the bound: stopped"

    # Seen terminating first (a forced delete may show that for a moment): followed the same way.
    hangs.clear()
    again = terminating_old_primary()
    again["metadata"]["uid"] = "uid-shop-postgres-0-again"
    monitor.track(KEY, parse(body), snapshot(body, pods=[again, *both[1:]]))
    monitor.track(KEY, parse(body), snapshot(body, pods=both[1:]))
    assert monitor.vanished_pod_uids(KEY) == {"shop-postgres-0": ("uid-shop-postgres-0-again",)}
    answers[ip(0)] = InstanceProbe(reachable=False, error=REFUSED)
    await monitor.refresh(KEY)
    assert monitor.vanished_pod_uids(KEY) == {}
    # A pod whose address another pod holds now is gone for good.
    monitor.track(KEY, parse(body), snapshot(body, pods=both))
    reused = postgres_pod("shop-postgres-2", role=None, ip=ip(0))
    monitor.track(KEY, parse(body), snapshot(body, pods=[both[1], reused]))
    assert monitor.vanished_pod_uids(KEY) == {}


async def test_a_terminating_server_that_refuses_the_operators_login_is_asked_again(
    kube: Kube, apiserver: kmock.KubernetesScaffold
) -> None:
    """Another error (a password refused, too many clients) comes from a running server."""
    serve(apiserver)
    asked: list[str] = []

    async def probe(host: str, credentials: Credentials) -> InstanceProbe:
        asked.append(host)
        return InstanceProbe(reachable=False, error="OperationalError")

    monitor = probing(kube, probe)
    body = example_body()
    monitor.track(KEY, parse(body), snapshot(body, pods=[terminating_old_primary()]))
    await monitor.refresh(KEY)
    await monitor.refresh(KEY)
    assert asked == [ip(0), ip(0)]


# ---- synchronous replication, required: false ------------------------------------------------------


ANY_1 = (
    'ANY 1 ("shop-postgres-0", "shop-postgres-1", "shop-postgres-2", "shop-postgres-3", '
    '"shop-postgres-4", "shop-postgres-5")'
)


def synchronous_primary(setting: str, *streaming: str) -> InstanceProbe:
    return dataclasses.replace(PRIMARY, synchronous_standby_names=setting, streaming_standbys=streaming)


@pytest.mark.parametrize("required", [False, True])
async def test_the_standbys_a_commit_waits_for_follow_those_streaming_only_when_not_required(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics, required: bool
) -> None:
    serve(apiserver)
    body = edited(
        example_body(),
        lambda spec: spec["postgres"].update(synchronous={"standbys": 1, "required": required}),
    )
    body = {
        **body,
        "status": {"postgres": {"phase": "Stable", "currentPrimary": "shop-postgres-0", "timeline": 1}},
    }
    cluster = Cluster(body, applied_stack(body), pods("primary", "replica", "replica"))
    streaming = {ip(1): standby(100), ip(2): standby(100)}
    instances = Instances(
        {ip(0): synchronous_primary(ANY_1, "shop-postgres-1", "shop-postgres-2"), **streaming}
    )
    reconciler = reconciler_with_roles(kube, metrics, cluster, instances)
    enqueued: list[Key] = []
    monitor = reconciler.roles.monitor  # type: ignore[union-attr]
    monitor.on_change = enqueued.append

    async def reconcile() -> dict[str, Any]:
        before = len(status_writes(apiserver))
        await reconciler.reconcile(KEY)
        if len(status_writes(apiserver)) > before:
            cluster.body = {
                **body,
                "status": merge_patch(cluster.body["status"], status_writes(apiserver)[-1]),
            }
        synchronous: dict[str, Any] = cluster.body["status"]["postgres"]["synchronous"]
        return synchronous

    with kopf_events():
        unprobed = await reconcile()  # the first pass starts tracking; the monitor's round probes
        assert unprobed == {
            "standbys": 1,
            "required": required,
            "message": "the primary has not been probed yet",
        }
        await monitor.refresh(KEY)
        first = await reconcile()
        assert (first["streaming"], first["waitingFor"]) == (2, 1)
        assert first["message"] == "waiting for 1 of 1 synchronous standbys: 2 streaming"
        writes_before = len(writes(apiserver))
        for _ in range(2):
            await reconcile()
        assert instances.set_to == [], "steady: nothing sent to PostgreSQL"
        assert len(writes(apiserver)) == writes_before, "steady: nothing sent to the API"

        # Both standbys stop streaming: the monitor sees the primary's list change and enqueues.
        instances.answers = {ip(0): synchronous_primary(ANY_1)}
        assert await monitor._probe_backend(KEY, monitor._tracked[KEY])
        down = await reconcile()
        if required:
            assert instances.set_to == [], "required: commits keep waiting"
            assert (down["streaming"], down["waitingFor"]) == (0, 1)
            assert "commits wait until enough stream again (required: true)" in down["message"]
        else:
            assert instances.set_to == [(ip(0), "")], "asynchronous while none streams"
            assert enqueued == [KEY], "another pass reports the value applied"
            lowered = await reconcile()
            assert (lowered["streaming"], lowered["waitingFor"]) == (0, 0)
            assert "lowered while fewer stream (required: false)" in lowered["message"]

        # One is back: with required false the primary waits for it again.
        instances.answers = {
            ip(0): dataclasses.replace(instances.answers[ip(0)], streaming_standbys=("shop-postgres-2",)),
            ip(2): standby(100),
        }
        await monitor.refresh(KEY)
        back = await reconcile()
        if not required:
            assert instances.set_to == [(ip(0), ""), (ip(0), ANY_1)]
            back = await reconcile()
        assert (back["streaming"], back["waitingFor"]) == (1, 1)
        writes_before, set_before = len(writes(apiserver)), len(instances.set_to)
        await reconcile()
        assert (len(writes(apiserver)), len(instances.set_to)) == (writes_before, set_before)


# ---- each write once, though the watch lags behind it --------------------------------------------

STATEFULSETS = kmock.resource("apps/v1/statefulsets")
STATEFULSET_PATH = "/apis/apps/v1/namespaces/demo/statefulsets/"
LEGACY_PRIMARY = "shop-postgres-primary-0"


def versioned(pod: Manifest, version: str) -> Manifest:
    """The pod as the watch brought it at ``version`` (its resourceVersion)."""
    return {**pod, "metadata": {**pod["metadata"], "resourceVersion": version}}


def legacy_statefulset(name: str, *, replicas: int, generation: int) -> Manifest:
    """One of the old shape's StatefulSets, owned by the backend."""
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": name,
            "namespace": "demo",
            "uid": f"uid-{name}",
            "generation": generation,
            "ownerReferences": [
                {
                    "apiVersion": "sbo.dev/v1alpha1",
                    "kind": "ScalableBackend",
                    "name": "shop",
                    "uid": "x",
                    "controller": True,
                }
            ],
        },
        "spec": {"replicas": replicas},
    }


def statefulset_writes(apiserver: kmock.KubernetesScaffold) -> list[tuple[str, str]]:
    return [
        (r.method.value, r.url.path.removeprefix(STATEFULSET_PATH))
        for r in apiserver
        if r.url.path.startswith(STATEFULSET_PATH) and r.method.value != "GET"
    ]


async def test_the_fencing_of_a_legacy_primary_is_sent_once_while_the_watch_lags(
    apiserver: kmock.KubernetesScaffold, kube: Kube
) -> None:
    """Passes come every FENCE_POLL_SECONDS while the old primary shuts down: the label, the scale
    to 0 and the deletion are each sent once, not again from a snapshot that does not show them yet."""
    serve(apiserver)
    apiserver[kmock.method.PATCH, STATEFULSETS] << {"apiVersion": "apps/v1", "kind": "StatefulSet"}
    body = example_body()
    roles = PostgresRoles(kube=kube, monitor=probing(kube, Instances({}).probe))
    old = versioned(postgres_pod(LEGACY_PRIMARY, role="primary", ip=ip(9)), "5")
    statefulset = legacy_statefulset("shop-postgres-primary", replicas=1, generation=1)
    stale = snapshot(body, statefulset, pods=[old])
    decision = Decision(
        state=RolesState(phase=Phase.SWITCHING_OVER),
        actions=(
            SetRole(LEGACY_PRIMARY, "replica"),
            ScaleLegacyPrimaryToZero(LEGACY_PRIMARY),
            DeletePod(LEGACY_PRIMARY, f"uid-{LEGACY_PRIMARY}", None),
        ),
    )
    with kopf_events():
        for _ in range(3):
            await roles.execute(KEY, parse(body), body, stale, decision)
    assert [(method, name) for method, name, _ in pod_writes(apiserver)] == [
        ("PATCH", LEGACY_PRIMARY),
        ("DELETE", LEGACY_PRIMARY),
    ]
    assert statefulset_writes(apiserver) == [("PATCH", "shop-postgres-primary")]

    # The watch brings newer versions that still differ (someone scaled it up, relabelled the
    # pod): the decision stands on its own again, and the writes are sent again.
    newer = snapshot(
        body,
        legacy_statefulset("shop-postgres-primary", replicas=1, generation=3),
        pods=[versioned(old, "8")],
    )
    with kopf_events():
        await roles.execute(KEY, parse(body), body, newer, decision)
    assert len(pod_writes(apiserver)) == 4
    assert len(statefulset_writes(apiserver)) == 2


async def test_a_pod_is_labelled_once_although_the_next_pass_still_sees_it_unlabelled(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    serve(apiserver)
    body = example_body()
    unlabelled = [versioned(pod, "5") for pod in pods(None, None, None)]
    cluster = Cluster(body, applied_stack(body), unlabelled)
    reconciler = reconciler_with_roles(kube, metrics, cluster, Instances({}))
    with kopf_events():
        await reconciler.reconcile(KEY)
        # The status comes back through the watch before the pods' new labels do.
        cluster.body = {**body, "status": merge_patch({}, status_writes(apiserver)[-1])}
        await reconciler.reconcile(KEY)
    labelled = [name for method, name, _ in pod_writes(apiserver) if method == "PATCH"]
    assert sorted(labelled) == ["shop-postgres-0", "shop-postgres-1", "shop-postgres-2"], "each once"

    # A label changed by hand after ours came back is set again.
    cluster.pods = [
        versioned(postgres_pod("shop-postgres-0", role="replica", ip=ip(0)), "9"),
        *pods(None, "replica", "replica")[1:],
    ]
    with kopf_events():
        await reconciler.reconcile(KEY)
    assert [name for method, name, _ in pod_writes(apiserver) if method == "PATCH"][3:] == ["shop-postgres-0"]


async def test_the_old_shapes_statefulsets_are_deleted_once_while_the_watch_still_shows_them(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    """Once the primary is one of the new instances the old StatefulSets go: one DELETE each,
    not one per pass until the watch reports them gone."""
    serve(apiserver)
    apiserver[kmock.method.DELETE, STATEFULSETS] << {"kind": "Status", "status": "Success"}
    body = example_body()
    migrated = {"phase": "Stable", "currentPrimary": "shop-postgres-0", "timeline": 2}
    body = {**body, "status": {"postgres": migrated}}
    old_shape = [
        legacy_statefulset("shop-postgres-primary", replicas=0, generation=2),
        legacy_statefulset("shop-postgres-replica", replicas=2, generation=1),
    ]
    cluster = Cluster(body, [*applied_stack(body), *old_shape], pods("primary", "replica", "replica"))
    reconciler = reconciler_with_roles(
        kube, metrics, cluster, Instances({ip(0): PRIMARY, ip(1): standby(100), ip(2): standby(100)})
    )
    with kopf_events():
        for _ in range(3):
            await reconciler.reconcile(KEY)
    assert statefulset_writes(apiserver) == [
        ("DELETE", "shop-postgres-primary"),
        ("DELETE", "shop-postgres-replica"),
    ]
    assert (
        metrics.registry.get_sample_value("sbo_api_writes_total", {"verb": "delete", "kind": "StatefulSet"})
        == 2
    )
