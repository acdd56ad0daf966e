"""The election in the reconcile path: observe, decide, and (after the status is written) act.

:meth:`PostgresRoles.decide` turns the snapshot's pods and the monitor's probes into the
election's observation and calls the pure ``postgres_roles.decide``. The reconciler then writes
the status, which carries ``Decision.state``, and only after that calls :meth:`execute`, so an
operator killed in between resumes the same change from the status and never starts a second
one. Each action is idempotent and guarded: labels and deletions carry the pod's uid as a
precondition (a pod recreated under the same name is never touched), promotion is a no-op on a
primary, and the next pass decides again from what the actions did.

Each write is sent once: a pass that runs before the watch brings back what the last one wrote
decides the same action again from the old object, and :class:`UnseenWrites` skips it while the
snapshot still shows the very version that write was sent against.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sbo_operator.api.v1alpha1 import PostgresStatus, ScalableBackend
from sbo_operator.builders.labels import POSTGRES_ROLE_LABEL
from sbo_operator.builders.names import child_names
from sbo_operator.builders.postgres import postgres_instance_names
from sbo_operator.components.postgres import pod_ready
from sbo_operator.events import post_event
from sbo_operator.kube import Kube, ObjectGone
from sbo_operator.postgres_monitor import PostgresMonitor, instances_of
from sbo_operator.postgres_roles import (
    Decision,
    DeletePod,
    Phase,
    Policy,
    Promote,
    RolesState,
    ScaleLegacyPrimaryToZero,
    SetRole,
    SetSynchronousStandbyNames,
    decide,
)
from sbo_operator.snapshot import Snapshot
from sbo_operator.workqueue import Key

__all__ = ["PostgresRoles", "UnseenWrites"]

log = logging.getLogger(__name__)


def persisted_state(status: dict[str, Any]) -> RolesState:
    """The election's state as the status holds it (a fresh start without one)."""
    raw = status.get("postgres")
    return RolesState.from_status(PostgresStatus.model_validate(raw) if raw else None)


def pod_version(pod: Mapping[str, Any] | None) -> str | None:
    """Which version of a pod the snapshot holds (None: not known)."""
    metadata = pod["metadata"] if pod is not None else {}
    version = metadata.get("resourceVersion")
    return f"{metadata['uid']}@{version}" if version is not None else None


def statefulset_version(statefulset: Mapping[str, Any] | None) -> str | None:
    """Which spec of a StatefulSet the snapshot holds: a scale changes its generation."""
    metadata = statefulset["metadata"] if statefulset is not None else {}
    generation = metadata.get("generation")
    return f"{metadata['uid']}@{generation}" if generation is not None else None


class UnseenWrites:
    """The writes sent per backend, each with the version of the object it was sent against.

    While the snapshot still shows that version, the watch has not brought the write back yet and
    the same write is not sent again; once it shows another, the next decision stands on its own.
    """

    def __init__(self) -> None:
        self._sent: dict[Key, dict[tuple[str, ...], str]] = {}

    def pending(self, key: Key, write: tuple[str, ...], version: str | None) -> bool:
        sent = self._sent.get(key, {})
        if version is not None and sent.get(write) == version:
            return True
        sent.pop(write, None)
        return False

    def sent(self, key: Key, write: tuple[str, ...], version: str | None) -> None:
        if version is not None:
            self._sent.setdefault(key, {})[write] = version

    def forget(self, key: Key) -> None:
        self._sent.pop(key, None)


class PostgresRoles:
    def __init__(self, *, kube: Kube, monitor: PostgresMonitor) -> None:
        self.kube = kube
        self.monitor = monitor
        self.unseen = UnseenWrites()

    def forget(self, key: Key) -> None:
        self.monitor.forget(key)
        self.unseen.forget(key)

    async def decide(
        self, key: Key, backend: ScalableBackend, status: dict[str, Any], snapshot: Snapshot
    ) -> Decision | None:
        """The election's decision for this pass, from the backend's current ``status``; None
        when PostgreSQL is disabled."""
        postgres = backend.spec.postgres
        if not postgres.enabled:
            self.monitor.forget(key)
            return None
        state = persisted_state(status)
        desired = postgres_instance_names(backend)
        self.monitor.track(key, backend, snapshot)
        if _needs_fresh_probes(state, snapshot):
            await self.monitor.refresh(key)
        now = datetime.now(UTC)
        instances = instances_of(
            backend,
            snapshot,
            desired,
            self.monitor.probes(key),
            lambda name, down: self.monitor.down_since(key, name, down, now),
            self.monitor.vanished_pod_uids(key),
        )
        policy = Policy.for_backend(backend, last_primary_lsn=self.monitor.last_primary_lsn(key))
        return decide(instances, state, policy, now)

    async def execute(
        self, key: Key, backend: ScalableBackend, body: dict[str, Any], snapshot: Snapshot, decision: Decision
    ) -> None:
        """The decision's events and actions, in order (its state is already in the status)."""
        namespace = backend.metadata.namespace
        for event in decision.events:
            post_event(body, event.type, event.reason, event.message)
        for action in decision.actions:
            if isinstance(action, SetRole):
                pod = snapshot.pods.get(action.instance)
                write = ("label", action.instance, action.role)
                if pod is None or self.unseen.pending(key, write, pod_version(pod)):
                    continue
                done = await self.kube.label_pod(
                    namespace, action.instance, pod["metadata"]["uid"], {POSTGRES_ROLE_LABEL: action.role}
                )
                if done:
                    self.unseen.sent(key, write, pod_version(pod))
                log.info(
                    "%s: labelled pod %s %s%s", key, action.instance, action.role, "" if done else " (gone)"
                )
            elif isinstance(action, DeletePod):
                pod = snapshot.pods.get(action.instance)
                write = ("delete", action.instance, action.uid)
                if self.unseen.pending(key, write, pod_version(pod)):
                    continue
                done = await self.kube.delete_pod(
                    namespace, action.instance, action.uid, grace_seconds=action.grace_seconds
                )
                self.unseen.sent(key, write, pod_version(pod))
                log.info(
                    "%s: fenced the old primary: deleted pod %s (grace %s)%s",
                    key,
                    action.instance,
                    "the pod's own" if action.grace_seconds is None else f"{action.grace_seconds}s",
                    "" if done else " (gone already)",
                )
            elif isinstance(action, ScaleLegacyPrimaryToZero):
                await self._scale_legacy_primary_to_zero(key, backend, snapshot)
            elif isinstance(action, Promote):
                # The probe shows it in recovery (just now, or at the monitor's last round):
                # once more, fresh, so that the next pass sees the promotion.
                promoted = await self.monitor.promote(key, action.instance)
                log.info("%s: promoted %s: %s", key, action.instance, "done" if promoted else "not yet")
                await self.monitor.refresh(key)
                if promoted:
                    # The next step (its label, which gives -rw its endpoint) at once, not at
                    # the next poll: writes wait for it.
                    self.monitor.on_change(key)
            elif isinstance(action, SetSynchronousStandbyNames):
                done = await self.monitor.set_synchronous_standby_names(key, action.instance, action.value)
                log.info(
                    "%s: synchronous_standby_names on %s = %r%s",
                    key,
                    action.instance,
                    action.value,
                    "" if done else " failed",
                )
                # Another pass: its status shows the value the primary reports now (this pass's
                # status was written before the change).
                await self.monitor.refresh(key)
                self.monitor.on_change(key)

    async def _scale_legacy_primary_to_zero(
        self, key: Key, backend: ScalableBackend, snapshot: Snapshot
    ) -> None:
        name = child_names(backend).postgres_primary
        version = statefulset_version(snapshot.child("StatefulSet", name))
        if self.unseen.pending(key, ("scale", name), version):
            return
        try:
            await self.kube.patch_spec(
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "metadata": {"name": name, "namespace": backend.metadata.namespace},
                },
                {"spec": {"replicas": 0}},
            )
        except ObjectGone:
            return
        self.unseen.sent(key, ("scale", name), version)
        log.info("%s: fenced the old shape's primary: StatefulSet %s scaled to 0", key, name)


def _needs_fresh_probes(state: RolesState, snapshot: Snapshot) -> bool:
    """During a change, before the first decision, and while the primary is not serving."""
    if state.phase is not Phase.STABLE or state.current_primary is None:
        return True
    pod = snapshot.pods.get(state.current_primary)
    if pod is None or pod["metadata"].get("deletionTimestamp"):
        return True
    return not pod_ready(pod)
