"""Properties of the election, postgres_roles.decide(), over random observation sequences (hypothesis).

Each sequence carries the decided state from one pass to the next, as the operator does through
status.postgres, while the observations change at random: pods vanish, restart, lose their probe,
fall behind. Whatever happens, the actions never label two pods primary, never promote anything but
the change's target, never promote while the old primary's pod may still accept writes, and never
choose a lagging or unready target.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sbo_operator.postgres_roles import (
    Decision,
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

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NAMES = ("shop-postgres-0", "shop-postgres-1", "shop-postgres-2")
LEGACY = "shop-postgres-primary-0"
CHANGES = (Phase.FAILING_OVER, Phase.SWITCHING_OVER)


@st.composite
def instances(draw: st.DrawFn, name: str, now: datetime) -> Instance:
    exists = draw(st.booleans()) if draw(st.integers(0, 4)) == 0 else True
    ready = exists and draw(st.booleans())
    reachable = draw(st.booleans())
    return Instance(
        name=name,
        legacy=name == LEGACY,
        exists=exists,
        terminating=exists and draw(st.integers(0, 5)) == 0,
        pod_uid=f"uid-{name}-{draw(st.integers(0, 1))}" if exists else None,
        ready=ready,
        unready_since=None if ready else now - timedelta(seconds=draw(st.integers(0, 60))),
        role_label=draw(st.sampled_from([None, "primary", "replica"])) if exists else None,
        reachable=reachable,
        in_recovery=draw(st.booleans()) if reachable else None,
        timeline=draw(st.integers(1, 3)) if reachable else None,
        lsn=draw(st.integers(0, 100)) if reachable else None,
        streaming=draw(st.booleans()) if reachable else None,
    )


@st.composite
def observations(draw: st.DrawFn, now: datetime) -> list[Instance]:
    names = [*NAMES, LEGACY] if draw(st.integers(0, 3)) == 0 else list(NAMES)
    return [draw(instances(name, now)) for name in names]


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    switchover = None
    if draw(st.booleans()):
        switchover = SwitchoverRequest(
            to=draw(st.sampled_from([*NAMES, "shop-postgres-7"])), id=draw(st.sampled_from(["a", "b", "c"]))
        )
    return Policy(
        instances=NAMES[: draw(st.integers(1, 3))],
        failover_delay=timedelta(seconds=draw(st.sampled_from([0, 5, 30]))),
        max_failover_lag_bytes=draw(st.one_of(st.none(), st.integers(0, 50))),
        switchover=switchover,
        last_primary_lsn=draw(st.one_of(st.none(), st.integers(0, 100))),
    )


@st.composite
def states(draw: st.DrawFn) -> RolesState:
    """Any state the operator may have persisted, including one in the middle of a change."""
    phase = draw(st.sampled_from(Phase))
    names = st.sampled_from([*NAMES, LEGACY])
    in_change = phase in CHANGES
    return RolesState(
        phase=phase,
        current_primary=draw(names) if phase is not Phase.BOOTSTRAP else None,
        target_primary=draw(names) if in_change else None,
        fenced_pod_uid=draw(st.sampled_from([None, *(f"uid-{n}-0" for n in NAMES)])) if in_change else None,
        timeline=draw(st.one_of(st.none(), st.integers(1, 3))),
        switchover_id=draw(st.sampled_from([None, "a", "b"])),
        since=T0 - timedelta(seconds=draw(st.integers(0, 60))) if in_change else None,
    )


def primary_position(observed: list[Instance], current: str | None, policy: Policy) -> int | None:
    known = [policy.last_primary_lsn] + [
        i.lsn for i in observed if i.name == current and i.reachable and i.in_recovery is False
    ]
    values = [value for value in known if value is not None]
    return max(values) if values else None


def down_for(observed: list[Instance], name: str, now: datetime) -> timedelta | None:
    instance = next((i for i in observed if i.name == name), None)
    if instance is None:
        return timedelta.max
    if instance.exists and instance.ready and not instance.terminating:
        return None
    return now - instance.unready_since if instance.unready_since is not None else timedelta(0)


def old_primary_may_write(observed: list[Instance], state: RolesState) -> bool:
    for instance in observed:
        fenced = instance.pod_uid is not None and instance.pod_uid == state.fenced_pod_uid
        legacy_old = instance.legacy and instance.name == state.current_primary
        if instance.exists and (fenced or legacy_old) and (not instance.terminating or instance.reachable):
            return True
    return False


def check(observed: list[Instance], before: RolesState, policy: Policy, now: datetime) -> Decision:
    decision = decide(observed, before, policy, now)
    after = decision.state
    by_name = {instance.name: instance for instance in observed}

    # Deterministic: the same input, the same decision (a failed pass is simply decided again).
    assert decide(observed, before, policy, now) == decision

    # Never two pods labelled primary, at any point of the actions.
    labels = {i.name: i.role_label for i in observed if i.exists}
    for action in decision.actions:
        if isinstance(action, SetRole):
            assert action.instance in labels
            if action.role == "primary":
                assert after.phase is Phase.STABLE
                assert action.instance == after.current_primary
                assert all(label != "primary" for name, label in labels.items() if name != action.instance)
            labels[action.instance] = action.role
    assert sum(label == "primary" for label in labels.values()) <= 1
    if after.phase in CHANGES:
        assert "primary" not in labels.values()  # -rw has no endpoint during a change

    # Promote only the change's target, a standby, once the old primary can no longer write.
    promotions = [action for action in decision.actions if isinstance(action, Promote)]
    assert len(promotions) <= 1
    for promotion in promotions:
        assert after.phase in CHANGES
        assert promotion.instance == after.target_primary
        assert by_name[promotion.instance].in_recovery is True
        assert not old_primary_may_write(observed, after)

    # Fencing touches only the old primary's observed pod, during a change.
    for action in decision.actions:
        if isinstance(action, DeletePod | ScaleLegacyPrimaryToZero):
            assert after.phase in CHANGES
            assert action.instance == after.current_primary != after.target_primary
        if isinstance(action, DeletePod):
            assert by_name[action.instance].pod_uid == action.uid

    if after.phase is Phase.STABLE:
        assert after.target_primary is None
        assert after.fenced_pod_uid is None
    else:
        assert after.phase in CHANGES

    # A newly chosen target is a desired, ready, reachable standby within the lag bound.
    new_target = after.target_primary is not None and (
        after.target_primary != before.target_primary or before.phase not in CHANGES
    )
    if new_target:
        target = by_name[str(after.target_primary)]
        assert target.name in policy.instances
        assert target.exists
        assert target.ready
        assert not target.terminating
        assert target.reachable
        assert target.in_recovery is True
        assert target.name != after.current_primary
        position = primary_position(observed, after.current_primary, policy)
        if policy.max_failover_lag_bytes is not None and position is not None and target.lsn is not None:
            assert position - target.lsn <= policy.max_failover_lag_bytes
        # Within a change, the target is replaced only when it failed for longer than the delay.
        was_changing = before.phase in CHANGES and before.target_primary != before.current_primary
        if was_changing and after.phase is before.phase and before.target_primary in by_name:
            down = down_for(observed, before.target_primary, now)
            assert down is not None
            assert down >= policy.failover_delay
    return decision


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_single_pass_keeps_the_invariants(data: st.DataObject) -> None:
    check(data.draw(observations(T0)), data.draw(states()), data.draw(policies()), T0)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_observation_sequences_keep_the_invariants(data: st.DataObject) -> None:
    policy = data.draw(policies())
    state = data.draw(st.one_of(st.just(RolesState()), states()))
    now = T0
    for _ in range(data.draw(st.integers(1, 12))):
        now += timedelta(seconds=data.draw(st.integers(0, 20)))
        state = check(data.draw(observations(now)), state, policy, now).state


@st.composite
def healthy_clusters(draw: st.DrawFn) -> tuple[list[Instance], RolesState, Policy]:
    count = draw(st.integers(1, 3))
    current = NAMES[draw(st.integers(0, count - 1))]
    timeline = draw(st.integers(1, 5))
    observed = [
        Instance(
            name=name,
            exists=True,
            terminating=False,
            pod_uid=f"uid-{name}",
            ready=True,
            unready_since=None,
            role_label="primary" if name == current else "replica",
            reachable=draw(st.booleans()),
            in_recovery=name != current,
            timeline=timeline,
            lsn=draw(st.integers(0, 100)),
            streaming=draw(st.booleans()),
        )
        for name in NAMES[:count]
    ]
    state = RolesState(phase=Phase.STABLE, current_primary=current, timeline=timeline, switchover_id="done")
    policy = Policy(
        instances=NAMES[:count],
        failover_delay=timedelta(seconds=draw(st.sampled_from([0, 30]))),
        max_failover_lag_bytes=draw(st.one_of(st.none(), st.integers(0, 50))),
        switchover=draw(st.sampled_from([None, SwitchoverRequest(to=NAMES[0], id="done")])),
        last_primary_lsn=draw(st.one_of(st.none(), st.integers(0, 100))),
    )
    return observed, state, policy


@settings(max_examples=200)
@given(healthy_clusters())
def test_a_healthy_labelled_cluster_is_left_alone(cluster: tuple[list[Instance], RolesState, Policy]) -> None:
    # The steady state sends no write: no action, no event, the same state.
    observed, state, policy = cluster
    decision = decide(observed, state, policy, T0)
    assert decision == Decision(state=state)
