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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = [
    "Decision",
    "DeletePod",
    "Instance",
    "Phase",
    "Policy",
    "Promote",
    "RoleEvent",
    "RoleProblem",
    "RolesState",
    "SetRole",
    "SwitchoverRequest",
    "decide",
]


class Phase(StrEnum):
    BOOTSTRAP = "Bootstrap"  # no primary chosen yet
    STABLE = "Stable"
    FAILING_OVER = "FailingOver"
    SWITCHING_OVER = "SwitchingOver"


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

    reason: str  # e.g. "FailoverCandidateLagging", "NoFailoverCandidate", "SwitchoverRefused"
    message: str


Action = SetRole | DeletePod | Promote


@dataclasses.dataclass(frozen=True)
class Decision:
    state: RolesState
    actions: Sequence[Action] = ()
    events: Sequence[RoleEvent] = ()
    problem: RoleProblem | None = None
    requeue_seconds: float | None = None  # look again after this long (None: on the next event)


def decide(instances: Sequence[Instance], state: RolesState, policy: Policy, now: datetime) -> Decision:
    """The next roles state and the actions that lead to it. Pure."""
    raise NotImplementedError("fo-roles implements this")
