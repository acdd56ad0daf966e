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
        shutting_down=not reachable and draw(st.booleans()),
        vanished_pod_uids=(f"uid-{name}-9",) if draw(st.integers(0, 4)) == 0 else (),
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
        fenced_pod_uid=(
            draw(st.sampled_from([None, *(f"uid-{n}-{i}" for n in NAMES for i in (0, 9))]))
            if in_change
            else None
        ),
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
    """The old primary may still accept writes or still be sending its last WAL."""
    if any(
        state.fenced_pod_uid in instance.vanished_pod_uids
        or (instance.name == state.current_primary and instance.vanished_pod_uids)
        for instance in observed
    ):
        return True
    for instance in observed:
        fenced = instance.pod_uid is not None and instance.pod_uid == state.fenced_pod_uid
        legacy_old = instance.legacy and instance.name == state.current_primary
        silent = instance.terminating and not instance.reachable and not instance.shutting_down
        if instance.exists and (fenced or legacy_old) and not silent:
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

    # Fencing, during a change, touches only the old primary or the pod the change fences (a
    # failed target), never the target.
    for action in decision.actions:
        if isinstance(action, DeletePod | ScaleLegacyPrimaryToZero):
            assert after.phase in CHANGES
            assert action.instance != after.target_primary
        if isinstance(action, ScaleLegacyPrimaryToZero):
            assert action.instance == after.current_primary
        if isinstance(action, DeletePod):
            assert by_name[action.instance].pod_uid == action.uid
            assert action.instance == after.current_primary or action.uid == after.fenced_pod_uid

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
            old_uid = by_name[str(before.target_primary)].pod_uid
            fenced = old_uid is not None and old_uid == before.fenced_pod_uid
            assert fenced or (down is not None and down >= policy.failover_delay)
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


# ---- a simulated cluster ------------------------------------------------------------------------------


class SimulatedPods:
    """The pods of one StatefulSet, as the decisions' actions and random faults leave them.

    A pod runs as its label says from its start: labelled primary it is writable, labelled replica
    it streams, unlabelled it waits. A pod deleted with a grace period terminates, still running
    (and writable, if it was) for a step or two, answering its probe at random; then it is gone. A
    gone pod comes back (new uid, no label) one step later. Promote makes a standby writable on the
    next timeline.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.uids = dict.fromkeys(names, 0)
        self.exists = dict.fromkeys(names, True)
        self.terminating = dict.fromkeys(names, 0)  # steps left before a deleted pod is gone
        self.ghosts = dict.fromkeys(names, 0)  # steps a writable postgres outlives its removed pod
        self.label: dict[str, str | None] = dict.fromkeys(names)
        self.writable = dict.fromkeys(names, False)
        self.running = dict.fromkeys(names, False)
        self.stalled = dict.fromkeys(names, False)  # running but failing its readiness probe
        self.lsn = dict.fromkeys(names, 0)
        self.timeline = dict.fromkeys(names, 1)
        self.unready_since: dict[str, datetime | None] = dict.fromkeys(names, T0)
        self.primary_lsn_seen: int | None = None

    def uid(self, name: str) -> str:
        return f"{name}-{self.uids[name]}"

    def ready(self, name: str) -> bool:
        return (
            self.exists[name] and self.running[name] and not self.stalled[name] and not self.terminating[name]
        )

    def pods_writable(self) -> list[str]:
        return [
            name for name in self.names if self.exists[name] and self.running[name] and self.writable[name]
        ]

    def writers(self) -> list[str]:
        """Every postgres accepting writes, including one whose pod the apiserver already removed."""
        return self.pods_writable() + [
            f"{name} (its pod removed)" for name in self.names if self.ghosts[name]
        ]

    def observe(self, now: datetime, unreachable: set[str]) -> list[Instance]:
        observed = []
        for name in self.names:
            reachable = self.exists[name] and self.running[name] and name not in unreachable
            observed.append(
                Instance(
                    name=name,
                    exists=self.exists[name],
                    terminating=self.exists[name] and self.terminating[name] > 0,
                    pod_uid=self.uid(name) if self.exists[name] else None,
                    ready=self.ready(name),
                    unready_since=None if self.ready(name) else self.unready_since[name] or now,
                    role_label=self.label[name] if self.exists[name] else None,
                    reachable=reachable,
                    in_recovery=not self.writable[name] if reachable else None,
                    timeline=self.timeline[name] if reachable else None,
                    lsn=self.lsn[name] if reachable else None,
                    streaming=(not self.writable[name]) if reachable else None,
                )
            )
            if reachable and self.writable[name]:
                self.primary_lsn_seen = max(self.primary_lsn_seen or 0, self.lsn[name])
        return observed

    def apply(self, action: object, now: datetime) -> None:
        if isinstance(action, SetRole):
            self.label[action.instance] = action.role
            if not self.running[action.instance]:  # a waiting pod starts in its role
                self.start(action.instance)
        elif isinstance(action, DeletePod) and action.uid == self.uid(action.instance):
            if action.grace_seconds == 0:  # the apiserver drops the pod, its containers still run
                self.ghosts[action.instance] = 2 if self.writable[action.instance] else 0
                self.kill(action.instance, now)
            elif not self.terminating[action.instance]:
                self.terminating[action.instance] = 2
        elif isinstance(action, Promote) and self.running[action.instance]:
            self.writable[action.instance] = True
            self.timeline[action.instance] = max(self.timeline.values()) + 1

    def start(self, name: str) -> None:
        if self.label[name] is None:
            return
        self.running[name] = True
        self.writable[name] = self.label[name] == "primary"
        writers = [other for other in self.pods_writable() if other != name]
        if not self.writable[name] and writers:
            self.lsn[name] = min(self.lsn[writers[0]], self.lsn[name] + 5)  # rewound or cloned

    def kill(self, name: str, now: datetime) -> None:
        self.exists[name] = False
        self.running[name] = False
        self.writable[name] = False
        self.terminating[name] = 0
        self.unready_since[name] = now

    def step(self, data: st.DataObject, now: datetime, *, faults: bool) -> None:
        for name in self.names:
            self.ghosts[name] = max(0, self.ghosts[name] - 1)
            if self.terminating[name]:
                self.terminating[name] -= 1
                if not self.terminating[name]:  # the kubelet stopped it: the pod is gone
                    self.kill(name, now)
            elif not self.exists[name]:  # the StatefulSet recreates it
                self.exists[name] = True
                self.uids[name] += 1
                self.label[name] = None
                self.running[name] = False
                self.writable[name] = False
        if faults:
            victim = data.draw(st.sampled_from([None, *self.names]))
            fault = data.draw(st.sampled_from(["kill", "stall", "recover"]))
            if victim is not None and fault == "kill":
                self.kill(victim, now)
            elif victim is not None:
                self.stalled[victim] = fault == "stall"
                if fault == "stall" and self.unready_since[victim] is None:
                    self.unready_since[victim] = now
        else:
            self.stalled = dict.fromkeys(self.names, False)
        for writer in self.pods_writable():
            self.lsn[writer] += data.draw(st.integers(0, 30))
            for name in self.names:
                if self.running[name] and not self.writable[name]:
                    self.lsn[name] = max(self.lsn[name], self.lsn[writer] - data.draw(st.integers(0, 20)))
        for name in self.names:
            if self.ready(name):
                self.unready_since[name] = None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_simulated_cluster_never_has_two_writers_and_settles_on_one_primary(data: st.DataObject) -> None:
    count = data.draw(st.integers(1, 3))
    pods = SimulatedPods(NAMES[:count])
    delay = timedelta(seconds=data.draw(st.sampled_from([0, 10])))
    bound = data.draw(st.sampled_from([None, 0, 25]))
    state = RolesState()
    now = T0

    def one_pass(*, faults: bool) -> None:
        nonlocal state, now
        now += timedelta(seconds=data.draw(st.integers(1, 15)) if faults else 20)
        pods.step(data, now, faults=faults)
        # A terminating primary still running answers its probe: a partition hiding it is the one
        # case the rule "terminating and unreachable" accepts (the node is presumed lost).
        unreachable = set(data.draw(st.sets(st.sampled_from(pods.names)))) if faults else set()
        unreachable -= {name for name in pods.names if pods.terminating[name] and pods.writable[name]}
        policy = Policy(pods.names, delay, bound, None, pods.primary_lsn_seen)
        decision = check(pods.observe(now, unreachable), state, policy, now)
        for action in decision.actions:
            pods.apply(action, now)
            # -rw never reaches two writable servers, and no two servers accept writes at once.
            assert len(pods.writers()) <= 1, (action, pods.writers())
        state = decision.state

    for _ in range(data.draw(st.integers(1, 15))):
        one_pass(faults=True)
    # Then no more faults: the election settles on one primary, labelled, writable, recorded.
    for _ in range(8):
        one_pass(faults=False)
    assert state.phase is Phase.STABLE
    primary = state.current_primary
    assert primary is not None
    assert [name for name in pods.names if pods.label[name] == "primary"] == [primary]
    assert pods.writers() == [primary]
