"""Table-driven tests of the election, postgres_roles.decide(): one test per rule of the contract."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sbo_operator.api.v1alpha1 import MAX_READ_REPLICAS, ScalableBackend
from sbo_operator.postgres_roles import (
    FAILOVER_GRACE_SECONDS,
    FENCE_POLL_SECONDS,
    DeletePod,
    Instance,
    Phase,
    Policy,
    Promote,
    RolesState,
    ScaleLegacyPrimaryToZero,
    SetRole,
    SwitchoverRequest,
    decide,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
P0, P1, P2 = "shop-postgres-0", "shop-postgres-1", "shop-postgres-2"
LEGACY = "shop-postgres-primary-0"
MiB = 2**20


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def pod(name: str, **fields: Any) -> Instance:
    """A ready, reachable standby labelled replica, streaming at LSN 1000 on timeline 1."""
    base: dict[str, Any] = {
        "name": name,
        "exists": True,
        "terminating": False,
        "pod_uid": f"uid-{name}",
        "ready": True,
        "unready_since": None,
        "role_label": "replica",
        "reachable": True,
        "in_recovery": True,
        "timeline": 1,
        "lsn": 1000,
        "replay_lsn": 1000,
        "streaming": True,
    }
    base.update(fields)
    return Instance(**base)


def primary(name: str = P0, **fields: Any) -> Instance:
    return pod(name, **{"role_label": "primary", "in_recovery": False, "streaming": None, **fields})


def down(name: str, seconds: float, **fields: Any) -> Instance:
    """A pod not ready since ``seconds`` ago, its probe unanswered."""
    unready = {"ready": False, "unready_since": ago(seconds), "reachable": False}
    unready.update({"in_recovery": None, "lsn": None, "timeline": None, "streaming": None})
    return pod(name, **{**unready, **fields})


def gone(name: str, seconds: float) -> Instance:
    return down(name, seconds, exists=False, pod_uid=None, role_label=None)


def policy(**fields: Any) -> Policy:
    base: dict[str, Any] = {
        "instances": (P0, P1, P2),
        "failover_delay": timedelta(0),
        "max_failover_lag_bytes": 16 * MiB,
        "switchover": None,
        "last_primary_lsn": 1000,
    }
    base.update(fields)
    return Policy(**base)


STABLE = RolesState(phase=Phase.STABLE, current_primary=P0, timeline=1, switchover_id="old")


def failing_over(target: str = P1, **fields: Any) -> RolesState:
    change: dict[str, Any] = {"phase": Phase.FAILING_OVER, "fenced_pod_uid": f"uid-{P0}", "since": ago(5)}
    return dataclasses.replace(STABLE, target_primary=target, **{**change, **fields})


# ---- the policy, from the spec -----------------------------------------------------------------------


def test_the_policy_of_a_backend() -> None:
    backend = ScalableBackend.model_validate(
        {
            "metadata": {"name": "shop", "namespace": "demo"},
            "spec": {
                "image": "app:1",
                "postgres": {
                    "readReplicas": 2,
                    "failoverDelay": "1m30s",
                    "maxFailoverLag": "1Mi",
                    "switchover": {"to": P2, "id": "move-1"},
                    "synchronous": {"standbys": 1, "required": False},
                },
            },
        }
    )
    assert Policy.for_backend(backend, last_primary_lsn=7) == Policy(
        instances=(P0, P1, P2),
        failover_delay=timedelta(seconds=90),
        max_failover_lag_bytes=MiB,
        switchover=SwitchoverRequest(to=P2, id="move-1"),
        last_primary_lsn=7,
        synchronous_standbys=1,
        synchronous_required=False,
        # Every instance there can be, as the ConfigMap's synchronous_standby_names names them.
        synchronous_names=tuple(f"shop-postgres-{ordinal}" for ordinal in range(1 + MAX_READ_REPLICAS)),
    )


# ---- bootstrap --------------------------------------------------------------------------------------


def test_bootstrap_labels_the_first_instance_primary_and_the_others_replica() -> None:
    fresh = [down(name, 3, role_label=None) for name in (P0, P1, P2)]
    decision = decide(fresh, RolesState(), policy(), NOW)
    assert decision.state == RolesState(phase=Phase.STABLE, current_primary=P0)
    assert list(decision.actions) == [SetRole(P1, "replica"), SetRole(P2, "replica"), SetRole(P0, "primary")]
    assert decision.problem is None


def test_bootstrap_before_any_pod_exists_elects_the_first_instance() -> None:
    decision = decide([gone(P0, 1), gone(P1, 1)], RolesState(), policy(instances=(P0, P1)), NOW)
    assert decision.state.current_primary == P0
    assert list(decision.actions) == []


def test_bootstrap_adopts_the_instance_running_as_primary() -> None:
    # Status lost (restored backup of the object): the probe tells who is primary.
    observed = [pod(P0, role_label=None), primary(P1, role_label=None, timeline=3), pod(P2)]
    decision = decide(observed, RolesState(), policy(), NOW)
    assert decision.state.current_primary == P1
    assert decision.state.timeline == 3
    assert list(decision.actions) == [SetRole(P0, "replica"), SetRole(P1, "primary")]


def test_bootstrap_adopts_the_pod_labelled_primary() -> None:
    observed = [down(P0, 1), down(P1, 1, role_label="primary"), down(P2, 1)]
    decision = decide(observed, RolesState(), policy(), NOW)
    assert decision.state.current_primary == P1
    assert list(decision.actions) == []


def test_bootstrap_adopts_an_existing_legacy_primary() -> None:
    observed = [primary(LEGACY, legacy=True), down(P0, 1, role_label=None), down(P1, 1, role_label=None)]
    decision = decide(observed, RolesState(), policy(instances=(P0, P1)), NOW)
    assert decision.state.current_primary == LEGACY
    assert list(decision.actions) == [SetRole(P0, "replica"), SetRole(P1, "replica")]


def test_postgres_disabled_decides_nothing() -> None:
    assert decide([], RolesState(), policy(instances=()), NOW).state == RolesState()


# ---- stable -----------------------------------------------------------------------------------------


def test_stable_with_the_right_labels_does_nothing() -> None:
    decision = decide([primary(), pod(P1), pod(P2)], STABLE, policy(), NOW)
    assert decision.state == STABLE
    assert list(decision.actions) == []
    assert list(decision.events) == []
    assert decision.problem is None
    assert decision.requeue_seconds is None


def test_stable_labels_a_recreated_pod_replica() -> None:
    decision = decide([primary(), pod(P1, role_label=None), pod(P2)], STABLE, policy(), NOW)
    assert list(decision.actions) == [SetRole(P1, "replica")]


def test_stable_labels_the_primary_restarting_in_place_before_its_delay() -> None:
    # Its pod was recreated without the label: it waits for it to start as primary.
    restarting = down(P0, 2, role_label=None)
    decision = decide(
        [restarting, pod(P1), pod(P2)], STABLE, policy(failover_delay=timedelta(seconds=30)), NOW
    )
    assert decision.state == STABLE
    assert list(decision.actions) == [SetRole(P0, "primary")]
    assert decision.requeue_seconds == pytest.approx(28)


def test_stable_demotes_a_second_primary_label_before_labelling_the_current() -> None:
    observed = [primary(P0, role_label=None), pod(P1, role_label="primary"), pod(P2)]
    decision = decide(observed, STABLE, policy(), NOW)
    assert list(decision.actions) == [SetRole(P1, "replica"), SetRole(P0, "primary")]


def test_stable_records_a_new_timeline_of_the_primary() -> None:
    decision = decide([primary(timeline=2), pod(P1), pod(P2)], STABLE, policy(), NOW)
    assert decision.state == dataclasses.replace(STABLE, timeline=2)


# ---- failover ---------------------------------------------------------------------------------------


def test_no_failover_before_the_delay() -> None:
    observed = [down(P0, 10, role_label="primary"), pod(P1), pod(P2)]
    decision = decide(observed, STABLE, policy(failover_delay=timedelta(seconds=30)), NOW)
    assert decision.state == STABLE
    assert list(decision.actions) == []
    assert decision.requeue_seconds == pytest.approx(20)


@pytest.mark.parametrize("seconds_down", [30, 31, 300])
def test_failover_once_the_delay_has_passed(seconds_down: float) -> None:
    observed = [down(P0, seconds_down, role_label="primary"), pod(P1), pod(P2)]
    decision = decide(observed, STABLE, policy(failover_delay=timedelta(seconds=30)), NOW)
    assert decision.state == dataclasses.replace(
        STABLE, phase=Phase.FAILING_OVER, target_primary=P1, fenced_pod_uid=f"uid-{P0}", since=NOW
    )
    assert list(decision.actions) == [
        SetRole(P0, "replica"),
        DeletePod(P0, f"uid-{P0}", FAILOVER_GRACE_SECONDS),
    ]
    assert [(event.type, event.reason) for event in decision.events] == [("Warning", "FailingOver")]
    assert f"{P0} -> {P1}" in decision.events[0].message


def test_default_delay_fails_over_as_soon_as_the_primary_is_unready() -> None:
    decision = decide([down(P0, 0, role_label="primary"), pod(P1)], STABLE, policy(instances=(P0, P1)), NOW)
    assert decision.state.phase is Phase.FAILING_OVER


def test_failover_of_a_primary_whose_pod_is_gone_deletes_nothing_and_promotes_at_once() -> None:
    # Nothing to fence: the pass that starts the change takes its next step too.
    decision = decide([gone(P0, 1), pod(P1), pod(P2)], STABLE, policy(), NOW)
    assert decision.state.target_primary == P1
    assert decision.state.fenced_pod_uid is None
    assert list(decision.actions) == [Promote(P1)]
    assert [event.reason for event in decision.events] == ["FailingOver"]


@pytest.mark.parametrize(
    ("standbys", "expected"),
    [
        pytest.param([pod(P1, lsn=900), pod(P2, lsn=1000)], P2, id="most-wal-wins"),
        pytest.param([pod(P1, lsn=1000), pod(P2, lsn=1000)], P1, id="tie-lowest-ordinal"),
        pytest.param([pod(P2, lsn=1000), pod(P1, lsn=1000)], P1, id="tie-lowest-ordinal-any-order"),
        pytest.param([down(P1, 60, role_label="replica"), pod(P2, lsn=10)], P2, id="unready-skipped"),
        pytest.param([pod(P1, lsn=2000, reachable=False), pod(P2, lsn=10)], P2, id="unreachable-skipped"),
        pytest.param(
            [pod(P1, lsn=2000, in_recovery=False), pod(P2, lsn=10)], P2, id="not-in-recovery-skipped"
        ),
        pytest.param([pod(P1, lsn=2000, terminating=True), pod(P2, lsn=10)], P2, id="terminating-skipped"),
    ],
)
def test_the_candidate_is_the_ready_standby_with_the_most_wal(
    standbys: list[Instance], expected: str
) -> None:
    decision = decide([gone(P0, 1), *standbys], STABLE, policy(max_failover_lag_bytes=None), NOW)
    assert decision.state.target_primary == expected


def test_an_undesired_instance_is_never_a_candidate() -> None:
    # shop-postgres-2 is being scaled away (readReplicas lowered).
    observed = [gone(P0, 1), pod(P1, lsn=10), pod(P2, lsn=2000)]
    decision = decide(observed, STABLE, policy(instances=(P0, P1), max_failover_lag_bytes=None), NOW)
    assert decision.state.target_primary == P1


def test_a_candidate_lagging_beyond_the_bound_is_not_promoted() -> None:
    observed = [gone(P0, 1), pod(P1, lsn=1000), pod(P2, lsn=900)]
    decision = decide(observed, STABLE, policy(last_primary_lsn=1000 + 17 * MiB), NOW)
    assert decision.state == STABLE
    assert list(decision.actions) == []
    assert decision.problem is not None
    assert decision.problem.reason == "FailoverCandidateLagging"
    assert P1 in decision.problem.message
    assert str(17 * MiB) in decision.problem.message
    assert "maxFailoverLag" in decision.problem.message
    assert decision.requeue_seconds is not None


def test_a_candidate_within_the_bound_is_promoted() -> None:
    observed = [gone(P0, 1), pod(P1, lsn=1000)]
    decision = decide(observed, STABLE, policy(instances=(P0, P1), last_primary_lsn=1000 + 16 * MiB), NOW)
    assert decision.state.target_primary == P1


def test_an_unknown_primary_position_does_not_block_the_failover() -> None:
    # The operator restarted and has not seen the primary since: no lag can be measured.
    decision = decide(
        [gone(P0, 1), pod(P1, lsn=1)], STABLE, policy(instances=(P0, P1), last_primary_lsn=None), NOW
    )
    assert decision.state.target_primary == P1


def test_no_candidate_is_a_problem() -> None:
    observed = [down(P0, 60, role_label="primary"), down(P1, 60), pod(P2, reachable=False)]
    decision = decide(observed, STABLE, policy(), NOW)
    assert decision.state == STABLE
    assert decision.problem is not None
    assert decision.problem.reason == "NoFailoverCandidate"
    assert decision.requeue_seconds is not None


def test_a_single_instance_restarts_in_place_without_a_problem() -> None:
    decision = decide([down(P0, 60, role_label="primary")], STABLE, policy(instances=(P0,)), NOW)
    assert decision.state == STABLE
    assert decision.problem is None
    assert decision.requeue_seconds is not None


def test_a_primary_that_never_served_is_bootstrapping_not_failed() -> None:
    observed = [down(P0, 60, role_label="primary"), down(P1, 60), down(P2, 60)]
    decision = decide(observed, dataclasses.replace(STABLE, timeline=None), policy(), NOW)
    assert decision.problem is None
    assert decision.state.phase is Phase.STABLE


# ---- during a change --------------------------------------------------------------------------------


def test_waits_while_the_fenced_pod_is_not_terminating_and_deletes_it_again() -> None:
    # The operator stopped after writing the state, before deleting the pod.
    observed = [primary(P0), pod(P1), pod(P2)]
    decision = decide(observed, failing_over(), policy(), NOW)
    assert decision.state == failing_over()
    assert list(decision.actions) == [
        SetRole(P0, "replica"),
        DeletePod(P0, f"uid-{P0}", FAILOVER_GRACE_SECONDS),
    ]
    assert not any(isinstance(action, Promote) for action in decision.actions)


def test_waits_while_the_fenced_pod_still_answers() -> None:
    observed = [primary(P0, terminating=True, role_label="replica"), pod(P1), pod(P2)]
    decision = decide(observed, failing_over(), policy(), NOW)
    assert list(decision.actions) == []
    # No event says when its server stops: the fence is looked at again soon.
    assert decision.requeue_seconds == FENCE_POLL_SECONDS


@pytest.mark.parametrize("phase", [Phase.FAILING_OVER, Phase.SWITCHING_OVER])
def test_waits_while_the_fenced_server_is_shutting_down(phase: Phase) -> None:
    # It refuses connections ("the database system is shutting down") but its walsenders may
    # still be sending the last WAL: the target must not be promoted before it has all of it.
    shutting_down = down(P0, 1, terminating=True, role_label="replica", shutting_down=True)
    decision = decide([shutting_down, pod(P1), pod(P2)], failing_over(phase=phase), policy(), NOW)
    assert list(decision.actions) == []
    assert decision.requeue_seconds == FENCE_POLL_SECONDS
    gone_now = decide([gone(P0, 1), pod(P1), pod(P2)], failing_over(phase=phase), policy(), NOW)
    assert list(gone_now.actions) == [Promote(P1)]


@pytest.mark.parametrize("phase", [Phase.FAILING_OVER, Phase.SWITCHING_OVER])
def test_waits_while_the_fenced_server_is_unreachable_but_not_seen_stopped(phase: Phase) -> None:
    # A connection cut while the server shuts down ("terminating connection due to administrator
    # command", "server closed the connection unexpectedly") is not a stopped server: the real
    # node promoted on such a probe while the old primary ran for 3 s more.
    cut = down(P0, 1, terminating=True, role_label="replica")
    decision = decide([cut, pod(P1), pod(P2)], failing_over(phase=phase), policy(), NOW)
    assert not any(isinstance(action, Promote) for action in decision.actions)
    assert decision.requeue_seconds == FENCE_POLL_SECONDS
    stopped = dataclasses.replace(cut, stopped=True)
    assert (
        Promote(P1) in decide([stopped, pod(P1), pod(P2)], failing_over(phase=phase), policy(), NOW).actions
    )


@pytest.mark.parametrize(
    "old",
    [
        pytest.param(down(P0, 1, terminating=True, stopped=True), id="terminating-stopped"),
        pytest.param(gone(P0, 1), id="gone"),
        pytest.param(down(P0, 1, pod_uid="uid-recreated", role_label=None), id="recreated"),
    ],
)
def test_promotes_the_target_once_the_fenced_pod_is_gone(old: Instance) -> None:
    decision = decide([old, pod(P1), pod(P2, lsn=5000)], failing_over(), policy(), NOW)
    assert decision.state == failing_over()
    assert Promote(P1) in decision.actions
    assert not any(isinstance(action, SetRole) and action.role == "primary" for action in decision.actions)


def test_a_primary_deleted_with_no_grace_is_fenced_until_its_server_has_stopped() -> None:
    """Its pod vanished from the API at once, but the kubelet is still stopping its server: a
    promotion now could take writes (and, synchronous, commits a standby acknowledged) the target
    never receives. The change waits for the monitor to see that server stopped."""
    vanished = gone(P0, 0.2)
    vanished = dataclasses.replace(vanished, vanished_pod_uids=(f"uid-{P0}",))
    decision = decide([vanished, pod(P1), pod(P2)], STABLE, policy(), NOW)
    assert decision.state == failing_over(since=NOW)
    assert list(decision.actions) == []
    assert decision.requeue_seconds == FENCE_POLL_SECONDS
    recreated = down(P0, 0.5, pod_uid="uid-recreated", role_label=None, vanished_pod_uids=(f"uid-{P0}",))
    assert list(decide([recreated, pod(P1), pod(P2)], decision.state, policy(), NOW).actions) == [
        SetRole(P0, "replica")
    ]
    stopped = [dataclasses.replace(recreated, vanished_pod_uids=()), pod(P1), pod(P2)]
    assert Promote(P1) in decide(stopped, decision.state, policy(), NOW).actions


def test_a_recreated_old_primary_is_fenced_and_its_vanished_server_waited_for() -> None:
    # The StatefulSet made the pod again before the operator looked: that pod is fenced (it could
    # start as a primary), and the server of the one deleted with no grace is waited for too.
    recreated = down(P0, 0.5, pod_uid="uid-recreated", role_label=None, vanished_pod_uids=(f"uid-{P0}",))
    decision = decide([recreated, pod(P1), pod(P2)], STABLE, policy(), NOW)
    assert decision.state == failing_over(fenced_pod_uid="uid-recreated", since=NOW)
    assert list(decision.actions) == [
        SetRole(P0, "replica"),
        DeletePod(P0, "uid-recreated", FAILOVER_GRACE_SECONDS),
    ]
    recreated_gone = gone(P0, 1)
    waiting = dataclasses.replace(recreated_gone, vanished_pod_uids=(f"uid-{P0}",))
    assert list(decide([waiting, pod(P1), pod(P2)], decision.state, policy(), NOW).actions) == []
    assert list(decide([recreated_gone, pod(P1), pod(P2)], decision.state, policy(), NOW).actions) == [
        Promote(P1)
    ]


def test_promoted_target_is_labelled_primary_and_the_change_ends() -> None:
    observed = [gone(P0, 3), primary(P1, role_label="replica", timeline=2), pod(P2, role_label=None)]
    decision = decide(observed, failing_over(), policy(), NOW)
    assert decision.state == dataclasses.replace(STABLE, current_primary=P1, timeline=2)
    assert list(decision.actions) == [SetRole(P2, "replica"), SetRole(P1, "primary")]
    assert [(event.type, event.reason) for event in decision.events] == [("Normal", "Failover")]
    assert f"{P0} -> {P1} on timeline 2" in decision.events[0].message


def test_a_restarted_operator_resumes_the_same_target() -> None:
    # Meanwhile shop-postgres-2 received more WAL; the change still promotes shop-postgres-1.
    observed = [gone(P0, 30), pod(P1, lsn=1000), pod(P2, lsn=9000)]
    decision = decide(observed, failing_over(), policy(), NOW)
    assert decision.state.target_primary == P1
    assert list(decision.actions) == [Promote(P1)]


def test_a_target_unready_within_the_delay_is_kept() -> None:
    observed = [gone(P0, 30), down(P1, 5), pod(P2)]
    decision = decide(observed, failing_over(), policy(failover_delay=timedelta(seconds=10)), NOW)
    assert decision.state.target_primary == P1
    assert list(decision.actions) == []


def test_a_target_failing_before_the_old_primary_is_fenced_is_simply_replaced() -> None:
    # No Promote can have been sent yet: the old primary's pod is still there.
    observed = [primary(P0, terminating=True, role_label="replica"), down(P1, 15), pod(P2)]
    decision = decide(observed, failing_over(), policy(failover_delay=timedelta(seconds=10)), NOW)
    assert decision.state == failing_over(P2)
    assert list(decision.actions) == []


def test_a_target_failing_after_the_fence_is_fenced_before_another_is_promoted() -> None:
    # It may have been promoted already: two servers must never accept writes.
    observed = [gone(P0, 30), down(P1, 15, in_recovery=False), pod(P2)]
    decision = decide(observed, failing_over(), policy(failover_delay=timedelta(seconds=10)), NOW)
    assert decision.state == failing_over(P2, fenced_pod_uid=f"uid-{P1}")
    assert list(decision.actions) == [DeletePod(P1, f"uid-{P1}", FAILOVER_GRACE_SECONDS)]
    assert "the first target failed" in decision.events[0].message
    then = [gone(P0, 31), gone(P1, 1), pod(P2)]
    assert list(decide(then, decision.state, policy(), NOW).actions) == [Promote(P2)]


def test_a_target_gone_after_the_fence_is_replaced_and_the_next_promoted() -> None:
    observed = [gone(P0, 30), gone(P1, 15), pod(P2)]
    decision = decide(observed, failing_over(), policy(failover_delay=timedelta(seconds=10)), NOW)
    assert decision.state == failing_over(P2)
    assert list(decision.actions) == [Promote(P2)]


def test_a_failed_target_without_replacement_is_a_problem() -> None:
    decision = decide([gone(P0, 30), gone(P1, 30), down(P2, 30)], failing_over(), policy(), NOW)
    assert decision.state == failing_over()
    assert decision.problem is not None
    assert decision.problem.reason == "NoFailoverCandidate"


# ---- switchover -------------------------------------------------------------------------------------


def test_switchover_is_accepted() -> None:
    request = SwitchoverRequest(to=P2, id="move-1")
    decision = decide([primary(), pod(P1), pod(P2)], STABLE, policy(switchover=request), NOW)
    assert decision.state == dataclasses.replace(
        STABLE,
        phase=Phase.SWITCHING_OVER,
        target_primary=P2,
        fenced_pod_uid=f"uid-{P0}",
        switchover_id="move-1",
        since=NOW,
    )
    # A fast shutdown (the pod's grace period) sends the last WAL to the standbys.
    assert list(decision.actions) == [SetRole(P0, "replica"), DeletePod(P0, f"uid-{P0}", None)]
    assert decision.requeue_seconds == FENCE_POLL_SECONDS
    assert [(event.type, event.reason) for event in decision.events] == [("Normal", "SwitchingOver")]


def test_switchover_ends_with_a_switchover_event() -> None:
    state = dataclasses.replace(failing_over(P2), phase=Phase.SWITCHING_OVER, switchover_id="move-1")
    observed = [gone(P0, 1), pod(P1), primary(P2, role_label="replica", timeline=2)]
    decision = decide(observed, state, policy(switchover=SwitchoverRequest(to=P2, id="move-1")), NOW)
    assert decision.state == dataclasses.replace(
        STABLE, current_primary=P2, timeline=2, switchover_id="move-1"
    )
    assert [(event.type, event.reason) for event in decision.events] == [("Normal", "Switchover")]


@pytest.mark.parametrize(
    ("to", "standby", "why"),
    [
        pytest.param("shop-postgres-9", pod(P2), "not an instance", id="unknown"),
        pytest.param(P2, pod(P2), "not an instance", id="beyond-the-instance-count"),
        pytest.param(P1, down(P1, 1), "not ready", id="not-ready"),
        pytest.param(P1, pod(P1, streaming=False), "not streaming", id="not-streaming"),
        pytest.param(P1, pod(P1, reachable=False), "not streaming", id="unreachable"),
        pytest.param(P1, pod(P1, lsn=1000 - 17 * MiB), "maxFailoverLag", id="lagging"),
    ],
)
def test_switchover_is_refused(to: str, standby: Instance, why: str) -> None:
    observed = (
        [primary(lsn=1000), standby, pod(P2)] if standby.name == P1 else [primary(lsn=1000), pod(P1), standby]
    )
    # Two instances: shop-postgres-2 is beyond the instance count (readReplicas 1).
    desired = (P0, P1) if standby.name == P2 else (P0, P1, P2)
    request = SwitchoverRequest(to=to, id="move-1")
    decision = decide(observed, STABLE, policy(instances=desired, switchover=request), NOW)
    assert decision.state == dataclasses.replace(STABLE, switchover_id="move-1")
    assert not any(isinstance(action, DeletePod) for action in decision.actions)
    assert [(event.type, event.reason) for event in decision.events] == [("Warning", "SwitchoverRefused")]
    assert decision.problem is not None
    assert decision.problem.reason == "SwitchoverRefused"
    assert why in decision.problem.message
    assert "move-1" in decision.problem.message


def test_a_refused_switchover_is_reported_once() -> None:
    request = SwitchoverRequest(to=P1, id="move-1")
    observed = [primary(), down(P1, 1), pod(P2)]
    first = decide(observed, STABLE, policy(switchover=request), NOW)
    second = decide(observed, first.state, policy(switchover=request), NOW)
    assert second.problem is None
    assert list(second.events) == []


def test_switchover_applied_twice_acts_once() -> None:
    request = SwitchoverRequest(to=P2, id="move-1")
    done = dataclasses.replace(STABLE, current_primary=P2, timeline=2, switchover_id="move-1")
    observed = [pod(P0), pod(P1), primary(P2, timeline=2)]
    decision = decide(observed, done, policy(switchover=request), NOW)
    assert decision.state == done
    assert list(decision.actions) == []
    assert list(decision.events) == []


def test_switchover_to_the_current_primary_is_recorded_and_does_nothing() -> None:
    request = SwitchoverRequest(to=P0, id="move-1")
    decision = decide([primary(), pod(P1), pod(P2)], STABLE, policy(switchover=request), NOW)
    assert decision.state == dataclasses.replace(STABLE, switchover_id="move-1")
    assert list(decision.actions) == []
    assert decision.problem is None


def test_a_second_switchover_while_one_runs_is_refused_and_the_first_continues() -> None:
    running = dataclasses.replace(failing_over(P2), phase=Phase.SWITCHING_OVER, switchover_id="move-1")
    request = SwitchoverRequest(to=P1, id="move-2")
    decision = decide([gone(P0, 1), pod(P1), pod(P2)], running, policy(switchover=request), NOW)
    assert decision.state == dataclasses.replace(running, switchover_id="move-2")
    assert list(decision.actions) == [Promote(P2)]
    assert decision.problem is not None
    assert decision.problem.reason == "SwitchoverRefused"
    assert "is running" in decision.problem.message


def test_a_switchover_during_a_failover_is_refused() -> None:
    request = SwitchoverRequest(to=P2, id="move-1")
    decision = decide([gone(P0, 1), pod(P1), pod(P2)], failing_over(), policy(switchover=request), NOW)
    assert decision.state.target_primary == P1
    assert decision.state.switchover_id == "move-1"
    assert decision.problem is not None
    assert decision.problem.reason == "SwitchoverRefused"


# ---- scale-down -------------------------------------------------------------------------------------


def test_scale_down_hands_the_primary_over_first() -> None:
    state = dataclasses.replace(STABLE, current_primary=P2)
    observed = [pod(P0, lsn=900), pod(P1, lsn=1000), primary(P2)]
    decision = decide(observed, state, policy(instances=(P0, P1)), NOW)
    assert decision.state.phase is Phase.SWITCHING_OVER
    assert decision.state.target_primary == P1
    assert list(decision.actions) == [SetRole(P2, "replica"), DeletePod(P2, f"uid-{P2}", None)]
    assert "ScaleDown" in decision.events[0].message


def test_scale_down_waits_for_a_streaming_standby() -> None:
    state = dataclasses.replace(STABLE, current_primary=P1)
    decision = decide([pod(P0, streaming=False), primary(P1)], state, policy(instances=(P0,)), NOW)
    assert decision.state == state
    assert list(decision.actions) == []
    assert decision.problem is not None
    assert decision.requeue_seconds is not None


# ---- migration from the two StatefulSets ------------------------------------------------------------

MIGRATING = RolesState(phase=Phase.STABLE, current_primary=LEGACY, timeline=1)


def test_migration_waits_until_a_new_instance_has_every_byte() -> None:
    observed = [primary(LEGACY, legacy=True, lsn=5000), pod(P0, lsn=4000), pod(P1, lsn=5000, streaming=False)]
    decision = decide(observed, MIGRATING, policy(instances=(P0, P1), last_primary_lsn=5000), NOW)
    assert decision.state == MIGRATING
    assert list(decision.actions) == []
    assert decision.requeue_seconds is not None


def test_migration_switches_over_by_scaling_the_legacy_primary_to_zero_and_deleting_its_pod() -> None:
    observed = [primary(LEGACY, legacy=True, lsn=5000), pod(P0, lsn=5000), pod(P1, lsn=4000)]
    decision = decide(observed, MIGRATING, policy(instances=(P0, P1), last_primary_lsn=4000), NOW)
    assert decision.state.phase is Phase.SWITCHING_OVER
    assert decision.state.target_primary == P0
    assert decision.state.fenced_pod_uid == f"uid-{LEGACY}"
    # Labelled replica, the pod leaves its StatefulSet's selector (role=primary): the scale to 0
    # alone would never remove it. Deleted with its own grace: a fast shutdown sends the last WAL.
    assert list(decision.actions) == [
        SetRole(LEGACY, "replica"),
        ScaleLegacyPrimaryToZero(LEGACY),
        DeletePod(LEGACY, f"uid-{LEGACY}", None),
    ]


@pytest.mark.parametrize(("replicas", "scaled"), [(None, True), (1, True), (0, False)])
def test_the_legacy_primarys_statefulset_is_scaled_to_zero_only_until_it_shows_zero(
    replicas: int | None, scaled: bool
) -> None:
    # The old primary's pod shuts down (a fast shutdown sends its last WAL): passes repeat every
    # FENCE_POLL_SECONDS, and a StatefulSet already at 0 replicas needs no patch at each of them.
    state = dataclasses.replace(
        MIGRATING, phase=Phase.SWITCHING_OVER, target_primary=P0, fenced_pod_uid=f"uid-{LEGACY}", since=ago(3)
    )
    shutting_down = primary(
        LEGACY, legacy=True, role_label="replica", shutting_down=True, statefulset_replicas=replicas
    )
    decision = decide([shutting_down, pod(P0), pod(P1)], state, policy(instances=(P0, P1)), NOW)
    assert (ScaleLegacyPrimaryToZero(LEGACY) in decision.actions) is scaled
    assert DeletePod(LEGACY, f"uid-{LEGACY}", None) in decision.actions, "the pod is fenced all the same"
    assert decision.requeue_seconds == FENCE_POLL_SECONDS


def test_migration_waits_for_the_legacy_primary_even_recreated_then_promotes() -> None:
    state = dataclasses.replace(
        MIGRATING, phase=Phase.SWITCHING_OVER, target_primary=P0, fenced_pod_uid=f"uid-{LEGACY}", since=ago(3)
    )
    recreated = primary(LEGACY, legacy=True, pod_uid="uid-again")
    waiting = decide([recreated, pod(P0), pod(P1)], state, policy(instances=(P0, P1)), NOW)
    assert list(waiting.actions) == [
        SetRole(LEGACY, "replica"),
        ScaleLegacyPrimaryToZero(LEGACY),
        DeletePod(LEGACY, "uid-again", None),
    ]
    terminating = primary(LEGACY, legacy=True, pod_uid="uid-again", terminating=True)
    still = decide([terminating, pod(P0), pod(P1)], state, policy(instances=(P0, P1)), NOW)
    assert Promote(P0) not in still.actions, "never while the old primary still answers"
    promoting = decide([pod(P0), pod(P1)], state, policy(instances=(P0, P1)), NOW)
    assert list(promoting.actions) == [Promote(P0)]
    done = decide(
        [primary(P0, role_label="replica", timeline=2), pod(P1)], state, policy(instances=(P0, P1)), NOW
    )
    assert done.state == RolesState(phase=Phase.STABLE, current_primary=P0, timeline=2)
    assert list(done.actions) == [SetRole(P0, "primary")]


def test_a_legacy_primary_that_fails_is_fenced_at_once() -> None:
    observed = [down(LEGACY, 60, legacy=True, role_label="primary"), pod(P0), pod(P1)]
    decision = decide(observed, MIGRATING, policy(instances=(P0, P1)), NOW)
    assert decision.state.phase is Phase.FAILING_OVER
    assert list(decision.actions) == [
        SetRole(LEGACY, "replica"),
        ScaleLegacyPrimaryToZero(LEGACY),
        DeletePod(LEGACY, f"uid-{LEGACY}", FAILOVER_GRACE_SECONDS),
    ]
