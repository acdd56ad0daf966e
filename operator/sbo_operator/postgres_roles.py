"""Who is the PostgreSQL primary: the operator's election, as one pure function.

The instances are the pods of one StatefulSet, ``<name>-postgres`` (``<name>-postgres-0`` ..
``-N``), each on its own volume. The operator alone decides roles: it labels each pod
``sbo.dev/postgres-role=primary|replica``. The ``-rw`` Service selects the primary label, ``-ro``
the replica label, and each pod's bootstrap reads its own label (downward API) to start as the
primary or as a standby streaming from ``-rw``.

:func:`decide` takes what the operator observed (the pods, and each instance's SQL probe) and
what it decided before (``status.postgres``), and returns the next state with the actions, in
order. The caller persists ``Decision.state`` in the status BEFORE it executes any action, so an
operator restarted in the middle of a change resumes that same change and never promotes a
second instance.

The same pass keeps synchronous replication as the spec asks (:func:`synchronous_setting`): the
primary's ``synchronous_standby_names`` waits for ``standbys`` of them, or with ``required:
false`` only for as many as stream (none: asynchronous), and it is changed only when the value the
primary reports differs, so a steady state sends nothing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from sbo_operator.api.conditions import Reason
from sbo_operator.api.v1alpha1 import MAX_READ_REPLICAS, ScalableBackend, postgres_instance_name
from sbo_operator.api.v1alpha1.status import PostgresPhase, PostgresStatus
from sbo_operator.builders.labels import PostgresRole
from sbo_operator.builders.postgres import postgres_instance_names
from sbo_operator.builders.postgres_config import synchronous_standby_names

__all__ = [
    "Action",
    "Decision",
    "DeletePod",
    "Instance",
    "Phase",
    "Policy",
    "Promote",
    "RoleEvent",
    "RoleProblem",
    "RolesState",
    "ScaleLegacyPrimaryToZero",
    "SetRole",
    "SetSynchronousStandbyNames",
    "SwitchoverRequest",
    "decide",
    "streaming_standbys",
    "synchronous_count",
    "synchronous_setting",
    "synchronous_wait",
]


# The phases are part of the API (status.postgres.phase); the election uses them under this name.
Phase = PostgresPhase


@dataclasses.dataclass(frozen=True)
class Instance:
    """One instance as observed now. Probe fields are None when the probe could not reach it."""

    name: str  # the pod's name, e.g. "shop-postgres-1"; also a legacy "shop-postgres-primary-0"
    exists: bool  # a pod object exists (terminating or not)
    terminating: bool
    pod_uid: str | None
    ready: bool  # the pod's Ready condition
    unready_since: datetime | None  # since when not ready or missing; None while ready
    role_label: str | None  # its sbo.dev/postgres-role label now
    legacy: bool = False  # a pod of the old two-StatefulSet shape (see RolesState.current_primary)
    reachable: bool = False  # the SQL probe answered
    in_recovery: bool | None = None  # pg_is_in_recovery()
    timeline: int | None = None
    lsn: int | None = None  # what it holds: pg_current_wal_lsn() on a primary, receive LSN on a standby
    replay_lsn: int | None = None
    streaming: bool | None = None  # a standby's WAL receiver is streaming
    # Unreachable, but its server answered "shutting down": a fast shutdown is still sending the
    # last WAL to the standbys (they have all of it only once the server is gone).
    shutting_down: bool = False
    # Its pod is terminating and the operator saw its server stop (refused, unanswered or its
    # address gone): only then is a fenced primary silent. Any other error (a connection cut while
    # it shuts down) may come from a server that still acknowledges writes.
    stopped: bool = False
    # Earlier pods of this name deleted from the API with no grace (never seen terminating), whose
    # server the operator has not yet seen stopped: the kubelet may still be stopping it.
    vanished_pod_uids: tuple[str, ...] = ()
    # On a primary: its synchronous_standby_names now, and the application_names streaming from it.
    synchronous_standby_names: str | None = None
    streaming_standbys: tuple[str, ...] | None = None
    # A legacy primary's: its StatefulSet's spec.replicas as last seen (None: not known), so that
    # the scale to 0 is asked once, not at every pass until the pod is gone.
    statefulset_replicas: int | None = None


@dataclasses.dataclass(frozen=True)
class SwitchoverRequest:
    """spec.postgres.switchover: move the primary to ``to``; acted on once per ``id``."""

    to: str
    id: str


@dataclasses.dataclass(frozen=True)
class Policy:
    """What the spec and the operator's settings ask for."""

    instances: Sequence[str]  # the desired instances, in ordinal order
    failover_delay: timedelta  # spec.postgres.failoverDelay
    max_failover_lag_bytes: int | None  # spec.postgres.maxFailoverLag; None: no bound
    switchover: SwitchoverRequest | None  # spec.postgres.switchover
    last_primary_lsn: int | None = None  # the newest LSN the operator saw on the primary (memory)
    # spec.postgres.synchronous, and every instance name there can be (the ConfigMap's list).
    synchronous_standbys: int = 0
    synchronous_required: bool = True
    synchronous_names: Sequence[str] = ()

    @classmethod
    def for_backend(cls, backend: ScalableBackend, last_primary_lsn: int | None = None) -> Policy:
        """What ``backend``'s spec asks for: its 1 + readReplicas instances and the failover fields."""
        postgres = backend.spec.postgres
        request = postgres.switchover
        return cls(
            instances=tuple(
                postgres_instance_name(backend.metadata.name, ordinal)
                for ordinal in range(1 + postgres.read_replicas)
            ),
            failover_delay=postgres.failover_delay_duration,
            max_failover_lag_bytes=postgres.max_failover_lag_bytes,
            switchover=SwitchoverRequest(to=request.to, id=request.id) if request is not None else None,
            last_primary_lsn=last_primary_lsn,
            synchronous_standbys=postgres.synchronous.standbys,
            synchronous_required=postgres.synchronous.required,
            synchronous_names=tuple(postgres_instance_names(backend, 1 + MAX_READ_REPLICAS)),
        )


@dataclasses.dataclass(frozen=True)
class RolesState:
    """What the operator decided, persisted in status.postgres (camelCase there)."""

    phase: Phase = Phase.BOOTSTRAP
    current_primary: str | None = None
    target_primary: str | None = None  # during a change
    fenced_pod_uid: str | None = None  # the old primary's pod this change deleted; wait until it is gone
    timeline: int | None = None
    switchover_id: str | None = None  # the last switchover request handled (done or refused)
    since: datetime | None = None  # when the current change started

    @classmethod
    def from_status(cls, status: PostgresStatus | None) -> RolesState:
        """The state persisted in status.postgres; a status without a phase is a fresh start."""
        if status is None or status.phase is None:
            return cls(switchover_id=status.switchover_id if status is not None else None)
        return cls(
            phase=status.phase,
            current_primary=status.current_primary,
            target_primary=status.target_primary,
            fenced_pod_uid=status.fenced_pod_uid,
            timeline=status.timeline,
            switchover_id=status.switchover_id,
            since=status.since,
        )

    def into_status(self, status: PostgresStatus) -> PostgresStatus:
        """``status`` with this state's fields in it (the others kept)."""
        return status.model_copy(update=dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class SetRole:
    """Label the instance's pod sbo.dev/postgres-role=<role> ("primary" or "replica")."""

    instance: str
    role: str


@dataclasses.dataclass(frozen=True)
class DeletePod:
    """Delete exactly this pod (by uid precondition): fencing; the StatefulSet recreates it."""

    instance: str
    uid: str
    grace_seconds: int | None  # None: the pod's own terminationGracePeriodSeconds


@dataclasses.dataclass(frozen=True)
class ScaleLegacyPrimaryToZero:
    """Scale the old shape's primary StatefulSet (the legacy instance's, ``<name>-postgres-primary``)
    to 0 replicas: fencing a legacy primary, which its StatefulSet would otherwise recreate with the
    primary label of its template."""

    instance: str


@dataclasses.dataclass(frozen=True)
class Promote:
    """SELECT pg_promote() on the instance (as the operator's role)."""

    instance: str


@dataclasses.dataclass(frozen=True)
class RoleEvent:
    """An Event on the ScalableBackend: reason Failover, Switchover, SwitchoverRefused, ..."""

    type: str  # "Normal" or "Warning"
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class RoleProblem:
    """Something blocking a role change that a person must look at (a condition, reason + fix)."""

    reason: str  # a Reason: FailoverCandidateLagging, NoFailoverCandidate or SwitchoverRefused
    message: str


@dataclasses.dataclass(frozen=True)
class SetSynchronousStandbyNames:
    """On the primary: ALTER SYSTEM SET synchronous_standby_names = <value>, then reload."""

    instance: str
    value: str


Action = SetRole | DeletePod | ScaleLegacyPrimaryToZero | Promote | SetSynchronousStandbyNames


@dataclasses.dataclass(frozen=True)
class Decision:
    state: RolesState
    actions: Sequence[Action] = ()
    events: Sequence[RoleEvent] = ()
    problem: RoleProblem | None = None
    requeue_seconds: float | None = None  # look again after this long (None: on the next event)

    def __post_init__(self) -> None:
        # Tuples, so that two equal decisions compare equal however they were built.
        object.__setattr__(self, "actions", tuple(self.actions))
        object.__setattr__(self, "events", tuple(self.events))


# A failover's fencing delete. Not 0: the apiserver removes a pod deleted with grace 0 at once,
# before the kubelet has stopped its containers, so "the fenced pod is gone" would prove nothing
# while the old primary may still accept writes. With a grace period the pod object stays until the
# kubelet reports its containers stopped (SIGKILL after this second), and only then is it gone.
FAILOVER_GRACE_SECONDS = 1
# How often to look again while a change runs (promotion) and while something blocks one.
CHANGE_POLL_SECONDS = 1.0
# While the old primary shuts down: writes wait from its last commit until the promotion, and no
# event says when its server has stopped (the kubelet reports it only later), so look often.
FENCE_POLL_SECONDS = 0.25
BLOCKED_POLL_SECONDS = 5.0
_LEGACY_PRIMARY_SUFFIX = "-postgres-primary-0"


def decide(instances: Sequence[Instance], state: RolesState, policy: Policy, now: datetime) -> Decision:
    """The next roles state and the actions that lead to it. Pure.

    Deciding again on the same observations gives the same decision, so a caller that failed half
    way through the actions simply decides again.
    """
    election = _Election(instances, policy, now)
    if state.phase is Phase.BOOTSTRAP or state.current_primary is None:
        if not policy.instances and not election.existing:
            return Decision(state=state)  # PostgreSQL disabled: nothing to elect
        state = election.bootstrap(state)
    if state.phase in (Phase.FAILING_OVER, Phase.SWITCHING_OVER):
        decision = election.continue_change(state)
    else:
        decision = election.stable(state)
    setting = synchronous_setting(instances, decision.state, policy)
    if setting is None:
        return decision
    # First: a promoted primary gets its value before its label sends -rw's writes to it.
    return dataclasses.replace(decision, actions=(setting, *decision.actions))


def streaming_standbys(primary: str, streaming: Sequence[str] | None, names: Sequence[str]) -> int | None:
    """How many of ``names``, other than ``primary``, are among ``streaming`` (the application_names
    streaming from it); None when the primary was not probed."""
    if streaming is None:
        return None
    return len((set(streaming) & set(names)) - {primary})


def synchronous_count(value: str | None) -> int | None:
    """The standbys a synchronous_standby_names value waits for (0: empty); None if not ours."""
    if value is None:
        return None
    if not value.strip():
        return 0
    match = re.fullmatch(r"ANY (\d+) \(.*\)", value.strip())
    return int(match.group(1)) if match else None


def synchronous_wait(standbys: int, required: bool, streaming: int) -> int:
    """How many standbys a commit should wait for: ``standbys`` when required (writes wait for
    the missing ones), else no more than are streaming (0: asynchronous)."""
    return standbys if required else min(standbys, streaming)


def synchronous_setting(
    instances: Sequence[Instance], state: RolesState, policy: Policy
) -> SetSynchronousStandbyNames | None:
    """The change the primary's synchronous_standby_names needs, if any.

    Only while roles are stable and the primary answered as a primary (a promoted standby whose
    postgresql.auto.conf holds a value copied from an older primary is corrected on the first
    pass that sees it writable). Every value names all the instances, as the ConfigMap does, so
    with ``required`` the wanted value is the ConfigMap's and a fresh primary needs nothing.
    """
    if state.phase is not Phase.STABLE or state.current_primary is None or not policy.synchronous_names:
        return None
    primary = next((i for i in instances if i.name == state.current_primary), None)
    if (
        primary is None
        or primary.legacy
        or not primary.reachable
        or primary.in_recovery is not False
        or primary.synchronous_standby_names is None
    ):
        return None
    streaming = streaming_standbys(primary.name, primary.streaming_standbys, policy.synchronous_names)
    if streaming is None:
        return None
    wait_for = synchronous_wait(policy.synchronous_standbys, policy.synchronous_required, streaming)
    wanted = synchronous_standby_names(policy.synchronous_names, wait_for)
    if primary.synchronous_standby_names == wanted:
        return None
    return SetSynchronousStandbyNames(instance=primary.name, value=wanted)


@dataclasses.dataclass(frozen=True)
class _Candidate:
    instance: Instance
    lag_bytes: int | None  # behind the last primary position known; None: not measurable


class _Election:
    """One pass of :func:`decide` over one observation."""

    def __init__(self, instances: Sequence[Instance], policy: Policy, now: datetime) -> None:
        self.by_name = {instance.name: instance for instance in instances}
        self.existing = [instance for instance in instances if instance.exists]
        self.policy = policy
        self.now = now
        self.desired = list(policy.instances)

    # ---- observations ----

    def down_for(self, name: str | None) -> timedelta | None:
        """How long the instance has been missing, terminating or unready; None while serving."""
        instance = self.by_name.get(name) if name is not None else None
        if instance is not None and instance.exists and instance.ready and not instance.terminating:
            return None
        since = instance.unready_since if instance is not None else None
        # An unknown start counts from now: with failoverDelay 0 that is already too long.
        return self.now - since if since is not None else timedelta(0)

    def down_too_long(self, name: str | None) -> bool:
        down = self.down_for(name)
        return down is not None and down >= self.policy.failover_delay

    def primary_position(self, current: str | None) -> int | None:
        """The newest WAL position known of the primary: its probe now, or the operator's memory."""
        positions = [self.policy.last_primary_lsn]
        instance = self.by_name.get(current) if current is not None else None
        if instance is not None and instance.reachable and instance.in_recovery is False:
            positions.append(instance.lsn)
        known = [position for position in positions if position is not None]
        return max(known) if known else None

    def ordinal(self, name: str) -> int:
        return self.desired.index(name) if name in self.desired else len(self.desired)

    def lag(self, instance: Instance, current: str | None) -> int | None:
        position = self.primary_position(current)
        if position is None or instance.lsn is None:
            return None
        return max(0, position - instance.lsn)

    def lag_allowed(self, lag: int | None) -> bool:
        bound = self.policy.max_failover_lag_bytes
        return bound is None or lag is None or lag <= bound

    def standbys(
        self, exclude: str | None, *, streaming: bool = False, fenced_uid: str | None = None
    ) -> list[Instance]:
        """Desired instances that could be promoted: reachable, ready, in recovery; best first."""
        found = [
            instance
            for name in self.desired
            if name != exclude
            and (instance := self.by_name.get(name)) is not None
            and instance.exists
            and not instance.terminating
            and instance.ready
            and instance.reachable
            and instance.in_recovery is True
            and not instance.legacy
            and (instance.pod_uid != fenced_uid or fenced_uid is None)
            and (instance.streaming is True or not streaming)
        ]
        # Most WAL first; equal positions: the lowest ordinal.
        return sorted(found, key=lambda instance: (-(instance.lsn or 0), self.ordinal(instance.name)))

    def best_candidate(
        self, current: str | None, *, streaming: bool = False, fenced_uid: str | None = None
    ) -> _Candidate | None:
        standbys = self.standbys(current, streaming=streaming, fenced_uid=fenced_uid)
        if not standbys:
            return None
        return _Candidate(standbys[0], self.lag(standbys[0], current))

    def fenced_pod_present(self, state: RolesState) -> bool:
        """The old primary may still accept writes, or still be sending its last WAL: the pod
        this change fenced (or, for a legacy primary, any pod its StatefulSet runs) exists and is
        not a terminating one whose server was seen stopped, or a pod of the old primary (or the
        fenced one) was deleted with no grace and its server was not seen stopped yet. Unreachable
        is not enough: a server that answers "shutting down", or cuts a connection as it shuts
        down, may still send WAL, and promoting the target before its walsenders have sent
        everything would lose that tail."""
        old = self.by_name.get(state.current_primary) if state.current_primary is not None else None
        if old is not None and old.vanished_pod_uids:
            return True  # its server may still run, whatever pod has its name now
        if any(state.fenced_pod_uid in instance.vanished_pod_uids for instance in self.by_name.values()):
            return True
        for instance in self.existing:
            fenced = instance.pod_uid is not None and instance.pod_uid == state.fenced_pod_uid
            legacy_old = _is_legacy_primary(instance) and instance.name == state.current_primary
            silent = instance.terminating and instance.stopped
            if (fenced or legacy_old) and not silent:
                return True
        return False

    # ---- labels ----

    def label_actions(self, primary: str | None) -> list[Action]:
        """Every existing pod labelled replica but ``primary``'s, demotions first: never two
        pods labelled primary, even half way through the actions."""
        demotions: list[Action] = [
            SetRole(instance.name, PostgresRole.REPLICA)
            for instance in self.existing
            if instance.name != primary and instance.role_label != PostgresRole.REPLICA
        ]
        primary_instance = self.by_name.get(primary) if primary is not None else None
        if (
            primary_instance is not None
            and primary_instance.exists
            and primary_instance.role_label != PostgresRole.PRIMARY
        ):
            demotions.append(SetRole(primary_instance.name, PostgresRole.PRIMARY))
        return demotions

    def fence_actions(self, state: RolesState) -> list[Action]:
        """Stop what may still accept writes: the pod ``state`` fences, and a legacy old primary's
        StatefulSet and pod. A failover kills within a second; a switchover lets the old primary
        shut down fast, which sends its last WAL to the standbys first.

        The legacy primary's pod is deleted, not left to its StatefulSet's scale-down: that
        StatefulSet selects ``sbo.dev/postgres-role=primary``, so once labelled replica the pod is
        released (orphaned) by it and a scale to 0 never removes it. The scale comes first, so
        that the StatefulSet does not create it again; once it shows 0 replicas, it is not asked again."""
        failover = state.phase is Phase.FAILING_OVER
        actions: list[Action] = []
        old = self.by_name.get(state.current_primary) if state.current_primary is not None else None
        if old is not None and _is_legacy_primary(old) and old.statefulset_replicas != 0:
            actions.append(ScaleLegacyPrimaryToZero(old.name))
        for instance in self.existing:
            if instance.terminating or instance.pod_uid is None:
                continue
            if _is_legacy_primary(instance) and instance.name == state.current_primary:
                fenced = True  # whatever its uid: its StatefulSet may have made it again
            else:
                fenced = instance.pod_uid == state.fenced_pod_uid
            if fenced:
                grace = FAILOVER_GRACE_SECONDS if failover else None
                actions.append(DeletePod(instance.name, instance.pod_uid, grace))
        return actions

    # ---- phases ----

    def bootstrap(self, state: RolesState) -> RolesState:
        """Adopt the primary there is (a legacy one, a running one, a labelled one), else the first."""
        legacy = [instance for instance in self.existing if _is_legacy_primary(instance)]
        running = sorted(
            (i for i in self.existing if i.reachable and i.in_recovery is False),
            key=lambda i: (-(i.timeline or 0), -(i.lsn or 0), self.ordinal(i.name)),
        )
        labelled = sorted(
            (i for i in self.existing if i.role_label == PostgresRole.PRIMARY and not i.terminating),
            key=lambda i: self.ordinal(i.name),
        )
        chosen = next(iter(legacy + running + labelled), None)
        name = chosen.name if chosen is not None else self.desired[0] if self.desired else None
        serving = chosen if chosen is not None and chosen.reachable and chosen.in_recovery is False else None
        return dataclasses.replace(
            state,
            phase=Phase.STABLE,
            current_primary=name,
            target_primary=None,
            fenced_pod_uid=None,
            timeline=serving.timeline if serving is not None else None,
            since=None,
        )

    def stable(self, state: RolesState) -> Decision:
        current = state.current_primary
        instance = self.by_name.get(current) if current is not None else None
        if (
            instance is not None
            and instance.reachable
            and instance.in_recovery is False
            and instance.timeline is not None
            and instance.timeline != state.timeline
        ):
            state = dataclasses.replace(state, timeline=instance.timeline)
        labels = self.label_actions(current)
        down = self.down_for(current)
        if down is not None:
            return self.on_primary_down(state, down, labels)
        if instance is not None and instance.legacy:
            return self.migrate(state, labels)
        if current not in self.desired:
            return self.scale_down(state, labels)
        return self.switchover(state, labels)

    def on_primary_down(self, state: RolesState, down: timedelta, labels: list[Action]) -> Decision:
        """The primary is missing or unready: after failover_delay, promote the best standby."""
        current = state.current_primary
        remaining = self.policy.failover_delay - down
        if remaining > timedelta(0):
            return Decision(state, labels, requeue_seconds=remaining.total_seconds())
        candidate = self.best_candidate(current)
        if candidate is None:
            if state.timeline is None or len(self.desired) < 2:
                # Still bootstrapping (it never served), or no standby can exist: it restarts in place.
                return Decision(state, labels, requeue_seconds=BLOCKED_POLL_SECONDS)
            problem = RoleProblem(
                Reason.NO_FAILOVER_CANDIDATE,
                f"the primary {current} is down for {_seconds(down)} and no standby is ready and "
                "reachable to take over; the operator promotes one as soon as one is, or "
                f"{current} comes back",
            )
            return Decision(state, labels, problem=problem, requeue_seconds=BLOCKED_POLL_SECONDS)
        if not self.lag_allowed(candidate.lag_bytes):
            problem = RoleProblem(
                Reason.FAILOVER_CANDIDATE_LAGGING,
                f"the primary {current} is down for {_seconds(down)}; the best standby "
                f"{candidate.instance.name} is {candidate.lag_bytes} bytes behind the last position "
                f"seen on it, more than spec.postgres.maxFailoverLag ({self.policy.max_failover_lag_bytes}"
                " bytes), so it is not promoted: bring the primary back, or raise maxFailoverLag above "
                "the lag to accept losing those writes",
            )
            return Decision(state, labels, problem=problem, requeue_seconds=BLOCKED_POLL_SECONDS)
        return self.start_change(state, candidate.instance.name, failover=True, why="is down")

    def start_change(
        self, state: RolesState, target: str, *, failover: bool, why: str, switchover_id: str | None = None
    ) -> Decision:
        old = state.current_primary
        old_instance = self.by_name.get(old) if old is not None else None
        fenced = None
        if old_instance is not None and old_instance.exists:
            fenced = old_instance.pod_uid
        elif old_instance is not None and old_instance.vanished_pod_uids:
            fenced = old_instance.vanished_pod_uids[-1]  # deleted with no grace: it may still run
        state = dataclasses.replace(
            state,
            phase=Phase.FAILING_OVER if failover else Phase.SWITCHING_OVER,
            target_primary=target,
            fenced_pod_uid=fenced,
            since=self.now,
            switchover_id=switchover_id if switchover_id is not None else state.switchover_id,
        )
        reason = Reason.FAILING_OVER if failover else Reason.SWITCHING_OVER
        event = RoleEvent(
            "Warning" if failover else "Normal", reason, f"{old} -> {target}: the primary {why}"
        )
        # The first step at once: fence the old primary, or promote the target if its pod is gone.
        first = self.continue_change(state)
        return dataclasses.replace(first, events=(event, *first.events))

    def continue_change(self, state: RolesState) -> Decision:
        """Fence the old primary, promote the target, then label it: one step per pass.

        The target stays labelled replica until promoted, so -rw has no endpoint meanwhile."""
        failover = state.phase is Phase.FAILING_OVER
        events: list[RoleEvent] = []
        problem: RoleProblem | None = None
        request = self.policy.switchover
        if request is not None and request.id != state.switchover_id:
            problem = RoleProblem(
                Reason.SWITCHOVER_REFUSED,
                f"switchover {request.id!r} to {request.to} refused: the change {state.current_primary} "
                f"-> {state.target_primary} is running; apply a new id once it is done",
            )
            events.append(RoleEvent("Warning", problem.reason, problem.message))
            state = dataclasses.replace(state, switchover_id=request.id)
        target = self.by_name.get(state.target_primary) if state.target_primary is not None else None
        if (
            target is None
            or target.name == state.current_primary
            or (target.pod_uid is not None and target.pod_uid == state.fenced_pod_uid)
            or self.down_too_long(target.name)
        ):
            # The target itself failed (or the state names none that can be): choose again, same rules.
            candidate = self.best_candidate(state.current_primary, fenced_uid=state.fenced_pod_uid)
            if candidate is None or not self.lag_allowed(candidate.lag_bytes):
                problem = RoleProblem(
                    Reason.NO_FAILOVER_CANDIDATE,
                    f"the change {state.current_primary} -> {state.target_primary} lost its target and "
                    "no other standby is ready, reachable and close enough to take over; waiting",
                )
                return Decision(
                    state, self.label_actions(None), events, problem, requeue_seconds=BLOCKED_POLL_SECONDS
                )
            failed = target
            target = candidate.instance
            state = dataclasses.replace(state, target_primary=target.name)
            if (
                failed is not None
                and failed.name != state.current_primary
                and failed.exists
                and not self.fenced_pod_present(state)
            ):
                # The old primary is fenced, so a Promote may have reached the failed target: fence
                # it as well before promoting another, or two servers could accept writes.
                state = dataclasses.replace(state, fenced_pod_uid=failed.pod_uid)
            events.append(
                RoleEvent(
                    "Warning",
                    Reason.FAILING_OVER if failover else Reason.SWITCHING_OVER,
                    f"{state.current_primary} -> {candidate.instance.name}: the first target failed",
                )
            )
        actions = self.label_actions(None)
        if self.fenced_pod_present(state):
            actions += self.fence_actions(state)
            return Decision(state, actions, events, problem, requeue_seconds=FENCE_POLL_SECONDS)
        if not target.reachable or target.in_recovery is not False:
            if target.reachable and target.in_recovery is True:
                actions.append(Promote(target.name))
            return Decision(state, actions, events, problem, requeue_seconds=CHANGE_POLL_SECONDS)
        # Promoted: it becomes the primary, and -rw selects it.
        old = state.current_primary
        took = f", in {_seconds(self.now - state.since)}" if state.since is not None else ""
        events.append(
            RoleEvent(
                "Normal",
                "Failover" if failover else "Switchover",
                f"{old} -> {target.name} on timeline {target.timeline}{took}",
            )
        )
        state = dataclasses.replace(
            state,
            phase=Phase.STABLE,
            current_primary=target.name,
            target_primary=None,
            fenced_pod_uid=None,
            timeline=target.timeline,
            since=None,
        )
        return Decision(state, self.label_actions(target.name), events, problem)

    def switchover(self, state: RolesState, labels: list[Action]) -> Decision:
        request = self.policy.switchover
        if request is None or request.id == state.switchover_id:
            return Decision(state, labels)
        if request.to == state.current_primary:
            return Decision(dataclasses.replace(state, switchover_id=request.id), labels)
        refusal = self.switchover_refusal(request, state.current_primary)
        if refusal is not None:
            problem = RoleProblem(
                Reason.SWITCHOVER_REFUSED, f"switchover {request.id!r} to {request.to} refused: {refusal}"
            )
            return Decision(
                dataclasses.replace(state, switchover_id=request.id),
                labels,
                [RoleEvent("Warning", problem.reason, problem.message)],
                problem,
            )
        return self.start_change(
            state,
            request.to,
            failover=False,
            why=f"moves on request (switchover {request.id!r})",
            switchover_id=request.id,
        )

    def switchover_refusal(self, request: SwitchoverRequest, current: str | None) -> str | None:
        """Why the requested instance cannot take over now, with the fix; None when it can."""
        instance = self.by_name.get(request.to)
        if request.to not in self.desired or instance is None or not instance.exists:
            return (
                f"{request.to} is not an instance of this backend (they are {', '.join(self.desired)}); "
                "set switchover.to to one of them and a new id"
            )
        if not instance.ready or instance.terminating:
            return f"{request.to} is not ready; apply a new id once it is"
        if not instance.reachable or instance.in_recovery is not True or instance.streaming is not True:
            return f"{request.to} is not streaming from the primary; apply a new id once it is"
        lag = self.lag(instance, current)
        if not self.lag_allowed(lag):
            return (
                f"{request.to} is {lag} bytes behind the primary, more than spec.postgres.maxFailoverLag "
                f"({self.policy.max_failover_lag_bytes} bytes); apply a new id once it has caught up"
            )
        return None

    def scale_down(self, state: RolesState, labels: list[Action]) -> Decision:
        """The primary's instance is no longer desired: hand over to the best standby first."""
        candidate = self.best_candidate(state.current_primary, streaming=True)
        if candidate is None or not self.lag_allowed(candidate.lag_bytes):
            problem = RoleProblem(
                Reason.NO_FAILOVER_CANDIDATE,
                f"readReplicas was lowered below the primary {state.current_primary}'s ordinal; it hands "
                "over to a standby as soon as one is ready, streaming and caught up",
            )
            return Decision(state, labels, problem=problem, requeue_seconds=BLOCKED_POLL_SECONDS)
        return self.start_change(
            state, candidate.instance.name, failover=False, why="leaves: readReplicas was lowered (ScaleDown)"
        )

    def migrate(self, state: RolesState, labels: list[Action]) -> Decision:
        """From the old two-StatefulSet shape: hand over to a new instance once one has every byte."""
        position = self.primary_position(state.current_primary)
        caught_up = [
            standby
            for standby in self.standbys(state.current_primary, streaming=True)
            if position is not None and standby.lsn is not None and standby.lsn >= position
        ]
        if not caught_up:
            return Decision(state, labels, requeue_seconds=BLOCKED_POLL_SECONDS)
        return self.start_change(
            state,
            caught_up[0].name,
            failover=False,
            why="moves from the old StatefulSet to the new one (Migration)",
        )


def _is_legacy_primary(instance: Instance) -> bool:
    return instance.legacy and instance.name.endswith(_LEGACY_PRIMARY_SUFFIX)


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():.0f}s"
