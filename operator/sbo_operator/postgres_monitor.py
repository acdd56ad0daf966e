"""The operator's eyes on PostgreSQL: the instances as the election (``postgres_roles``) needs them.

Per backend it keeps what the pods and the SQL probes showed (``postgres_probe``), and a little
memory the API does not hold: since when an instance has been down, and the newest WAL position
seen on the primary (the lag bound of a failover is measured against it).

A task probes every tracked instance every ``postgres_probe_seconds``, off the reconcile path,
and enqueues a backend only when something that matters to the election changed (reachable, in
recovery, timeline, streaming; on the primary its synchronous_standby_names and which standbys
stream from it, which synchronous.required false follows), never for WAL positions alone: an
idle or busy backend costs no reconcile and no API write. During a change, and whenever its
primary is down, the reconciler asks for fresh probes itself (:meth:`PostgresMonitor.refresh`).

A terminating pod's server never starts again (the kubelet restarts no container of a pod being
deleted). So once it answered "shutting down", a probe of it is bounded to
``STOPPING_PROBE_SECONDS``, and once it is seen stopped (refused, or unanswered: within the connect
timeout, or within that bound after shutting down) it is not probed again: the address of a pod
whose sandbox is gone answers nothing, and a probe of it would hold each pass of a failover for
the whole connect timeout. (The election already counts such a probe as silence.)

A pod deleted with no grace (``--grace-period=0 --force``) leaves the API at once, while the
kubelet is still stopping its server (the informer may show it terminating for a moment first).
The monitor keeps the address of any pod that left the API before its server was seen stopped,
and asks it, bounded by ``VANISHED_PROBE_SECONDS``, until its
server has stopped, at most ``VANISHED_SECONDS`` or until another pod holds that address: until
then the election sees it in ``Instance.vanished_pod_uids`` and does not promote over it.

Only addresses within ``postgres_probe_networks`` are ever connected to.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders.labels import POSTGRES_ROLE_LABEL
from sbo_operator.builders.names import child_names
from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.postgres_probe import (
    REFUSED,
    STOPPED,
    TIMED_OUT,
    UNREACHABLE,
    UNROUTABLE,
    Credentials,
    InstanceProbe,
    lag_bytes,
    probe_instance,
    promote_instance,
    set_synchronous_standby_names,
)
from sbo_operator.postgres_roles import Instance
from sbo_operator.snapshot import Snapshot
from sbo_operator.workqueue import Key

__all__ = ["PostgresMonitor", "instances_of"]

log = logging.getLogger(__name__)

Probe = Callable[[str, Credentials], Awaitable[InstanceProbe]]
Promote = Callable[[str, Credentials], Awaitable[bool]]
SetSynchronous = Callable[[str, Credentials, str], Awaitable[bool]]

# A server shutting down answers a new connection at once ("shutting down") until it has stopped.
STOPPING_PROBE_SECONDS = 0.5
# A pod deleted with no grace: a running server answers a connection within milliseconds; an
# address whose sandbox is gone answers nothing.
VANISHED_PROBE_SECONDS = 1.0
VANISHED_SECONDS = 60.0
SEEN_STOPPED = InstanceProbe(reachable=False, error=STOPPED)


@dataclasses.dataclass(frozen=True)
class _Pod:
    name: str
    address: str
    terminating: bool
    since: float = 0.0  # (monotonic) when it left the API, for a vanished one


@dataclasses.dataclass
class _Tracked:
    """One backend: where its instances are, and what they last answered."""

    namespace: str
    secret: str  # the operator's login
    addresses: dict[str, str]  # instance -> pod IP (only those the operator may connect to)
    terminating: dict[str, str] = dataclasses.field(default_factory=dict)  # instance -> pod uid
    seen: dict[str, _Pod] = dataclasses.field(default_factory=dict)  # uid -> pod, at the last look
    vanished: dict[str, _Pod] = dataclasses.field(default_factory=dict)  # deleted with no grace
    # Terminating or vanished pods (by uid) whose server was seen shutting down, and seen stopped.
    stopping: set[str] = dataclasses.field(default_factory=set)
    stopped: set[str] = dataclasses.field(default_factory=set)
    probes: dict[str, InstanceProbe] = dataclasses.field(default_factory=dict)
    down_since: dict[str, datetime] = dataclasses.field(default_factory=dict)
    last_primary_lsn: int | None = None
    credentials: Credentials | None = None


class PostgresMonitor:
    def __init__(
        self,
        *,
        kube: Kube,
        networks: list[IPv4Network | IPv6Network],
        interval_seconds: float,
        on_change: Callable[[Key], None],
        metrics: OperatorMetrics | None = None,
        probe: Probe = probe_instance,
        promote: Promote = promote_instance,
        set_synchronous: SetSynchronous = set_synchronous_standby_names,
    ) -> None:
        self.kube = kube
        self.networks = networks
        self.interval_seconds = interval_seconds
        self.on_change = on_change
        self.metrics = metrics
        self._probe = probe
        self._promote = promote
        self._set_synchronous = set_synchronous
        self._tracked: dict[Key, _Tracked] = {}

    def forget(self, key: Key) -> None:
        self._tracked.pop(key, None)
        if self.metrics is not None:
            self.metrics.record_replica_lag(key.namespace, key.name, {})

    def probes(self, key: Key) -> Mapping[str, InstanceProbe]:
        tracked = self._tracked.get(key)
        return dict(tracked.probes) if tracked else {}

    def last_primary_lsn(self, key: Key) -> int | None:
        tracked = self._tracked.get(key)
        return tracked.last_primary_lsn if tracked else None

    def _allowed(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ip_address(address)
        except ValueError:
            return False
        return any(ip.version == network.version and ip in network for network in self.networks)

    def track(self, key: Key, backend: ScalableBackend, snapshot: Snapshot) -> None:
        """Remember where the backend's instances are (from its pods), for the probes."""
        # Terminating pods too: a fenced primary counts as gone only once it stops answering.
        addresses = {
            name: pod["status"]["podIP"]
            for name, pod in snapshot.pods.items()
            if self._allowed(pod["status"].get("podIP"))
        }
        tracked = self._tracked.get(key)
        if tracked is None:
            tracked = self._tracked[key] = _Tracked(
                namespace=backend.metadata.namespace,
                secret=child_names(backend).postgres_operator_secret,
                addresses=addresses,
            )
        tracked.addresses = addresses
        tracked.terminating = {
            name: pod["metadata"]["uid"]
            for name, pod in snapshot.pods.items()
            if name in addresses and pod["metadata"].get("deletionTimestamp")
        }
        self._follow_vanished(tracked, snapshot)
        ending = set(tracked.terminating.values()) | set(tracked.vanished)
        tracked.stopping &= ending
        tracked.stopped &= ending
        tracked.probes = {name: probe for name, probe in tracked.probes.items() if name in addresses}

    def _follow_vanished(self, tracked: _Tracked, snapshot: Snapshot) -> None:
        """Pods gone from the API before their server was seen stopped (see the module)."""
        now = time.monotonic()
        seen = {
            pod["metadata"]["uid"]: _Pod(
                name, pod["status"]["podIP"], bool(pod["metadata"].get("deletionTimestamp"))
            )
            for name, pod in snapshot.pods.items()
            if self._allowed(pod["status"].get("podIP"))
        }
        for uid, pod in tracked.seen.items():
            if uid not in seen and uid not in tracked.stopped:
                tracked.vanished.setdefault(uid, dataclasses.replace(pod, since=now))
        tracked.seen = seen
        in_use = {pod.address for pod in seen.values()}
        tracked.vanished = {
            uid: pod
            for uid, pod in tracked.vanished.items()
            if pod.address not in in_use and now - pod.since < VANISHED_SECONDS and uid not in tracked.stopped
        }

    def vanished_pod_uids(self, key: Key) -> dict[str, tuple[str, ...]]:
        """Per instance, its pods deleted with no grace whose server was not seen stopped yet."""
        tracked = self._tracked.get(key)
        found: dict[str, tuple[str, ...]] = {}
        if tracked is None:
            return found
        for uid, pod in sorted(tracked.vanished.items(), key=lambda item: item[1].since):
            found[pod.name] = (*found.get(pod.name, ()), uid)
        return found

    def down_since(self, key: Key, name: str, down: bool, now: datetime) -> datetime | None:
        """Since when the instance has been down (first seen so by this operator); None while up."""
        tracked = self._tracked.get(key)
        if tracked is None:
            return now if down else None
        if not down:
            tracked.down_since.pop(name, None)
            return None
        return tracked.down_since.setdefault(name, now)

    async def refresh(self, key: Key) -> None:
        """Probe every tracked instance of the backend now."""
        tracked = self._tracked.get(key)
        if tracked is not None:
            await self._probe_backend(key, tracked)

    async def promote(self, key: Key, name: str) -> bool:
        reached = await self._reach(key, name, "promote")
        return reached is not None and await self._promote(*reached)

    async def set_synchronous_standby_names(self, key: Key, name: str, value: str) -> bool:
        reached = await self._reach(key, name, "set synchronous_standby_names on")
        return reached is not None and await self._set_synchronous(*reached, value)

    async def _reach(self, key: Key, name: str, what: str) -> tuple[str, Credentials] | None:
        """The instance's address and the operator's login, for an action on it."""
        tracked = self._tracked.get(key)
        if tracked is None or name not in tracked.addresses:
            log.warning("%s: cannot %s %s: its address is unknown", key, what, name)
            return None
        credentials = await self._credentials(tracked)
        if credentials is None:
            return None
        return tracked.addresses[name], credentials

    async def _credentials(self, tracked: _Tracked) -> Credentials | None:
        if tracked.credentials is None:
            secret = await self.kube.get("v1", "Secret", tracked.namespace, tracked.secret)
            data = (secret or {}).get("data") or {}
            if "username" not in data or "password" not in data:
                return None
            tracked.credentials = Credentials(
                user=base64.b64decode(data["username"]).decode(),
                password=base64.b64decode(data["password"]).decode(),
            )
        return tracked.credentials

    async def _probe_backend(self, key: Key, tracked: _Tracked) -> bool:
        """Probe its instances; True if something that matters to the election changed."""
        if not tracked.addresses and not tracked.vanished:
            return False
        credentials = await self._credentials(tracked)
        names = sorted(tracked.addresses)
        vanished = sorted(tracked.vanished.items())  # a copy: another round may end one meanwhile
        changed = False
        if credentials is None:
            results = [UNREACHABLE for _ in names]
        else:
            answers = await asyncio.gather(
                *(self._probe_one(tracked, name, tracked.addresses[name], credentials) for name in names),
                *(self._probe_vanished(tracked, uid, pod, credentials) for uid, pod in vanished),
            )
            results = list(answers[: len(names)])
            ending = [
                (tracked.terminating.get(name), name, result)
                for name, result in zip(names, results, strict=True)
            ]
            ending += [
                (uid, f"{pod.name} (deleted)", result)
                for (uid, pod), result in zip(vanished, answers[len(names) :], strict=True)
            ]
            self._remember_stopping(key, tracked, ending)
            # Only a server seen stopped counts as gone: a terminating pod's other errors (a
            # connection cut by the shutdown, say) leave it able to acknowledge writes.
            results = [
                SEEN_STOPPED if tracked.terminating.get(name) in tracked.stopped else result
                for name, result in zip(names, results, strict=True)
            ]
            for uid, _ in vanished:
                if uid in tracked.stopped and tracked.vanished.pop(uid, None) is not None:
                    changed = True
        for name, result in zip(names, results, strict=True):
            before = tracked.probes.get(name)
            changed |= before is None or before.significant() != result.significant()
            tracked.probes[name] = result
            if result.reachable and result.in_recovery is False and result.lsn is not None:
                tracked.last_primary_lsn = max(tracked.last_primary_lsn or 0, result.lsn)
            if not result.reachable and result.error == "OperationalError":
                tracked.credentials = None  # perhaps a regenerated Secret: read it again next time
        if self.metrics is not None:
            self.metrics.record_replica_lag(key.namespace, key.name, lag_bytes(tracked.probes))
        return changed

    async def _probe_one(
        self, tracked: _Tracked, name: str, address: str, credentials: Credentials
    ) -> InstanceProbe:
        uid = tracked.terminating.get(name)
        if uid in tracked.stopped:
            return SEEN_STOPPED
        bound = STOPPING_PROBE_SECONDS if uid in tracked.stopping else None
        return await self._bounded_probe(address, credentials, bound)

    async def _probe_vanished(
        self, tracked: _Tracked, uid: str, pod: _Pod, credentials: Credentials
    ) -> InstanceProbe:
        bound = STOPPING_PROBE_SECONDS if uid in tracked.stopping else VANISHED_PROBE_SECONDS
        return await self._bounded_probe(pod.address, credentials, bound)

    async def _bounded_probe(
        self, address: str, credentials: Credentials, bound: float | None
    ) -> InstanceProbe:
        if bound is None:
            return await self._probe(address, credentials)
        try:
            async with asyncio.timeout(bound):
                return await self._probe(address, credentials)
        except TimeoutError:
            return InstanceProbe(reachable=False, error=TIMED_OUT)

    @staticmethod
    def _remember_stopping(
        key: Key, tracked: _Tracked, ending: list[tuple[str | None, str, InstanceProbe]]
    ) -> None:
        """Which terminating or vanished pods' servers shut down, and which have stopped (see
        the module); ``ending``: (pod uid or None, what to call it, its probe)."""
        for uid, name, result in ending:
            if uid is None or result.reachable or uid in tracked.stopped:
                continue
            if result.shutting_down:
                if uid not in tracked.stopping:
                    log.info("%s: the server of pod %s is shutting down", key, name)
                tracked.stopping.add(uid)
            elif result.error in (REFUSED, TIMED_OUT, UNROUTABLE) or uid in tracked.stopping:
                log.info("%s: the server of pod %s has stopped (%s)", key, name, result.error)
                tracked.stopped.add(uid)

    async def run(self) -> None:
        """Forever: probe every tracked backend; enqueue those whose instances changed."""
        while True:
            await asyncio.sleep(self.interval_seconds)
            for key, tracked in list(self._tracked.items()):
                try:
                    if await self._probe_backend(key, tracked):
                        self.on_change(key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s: probing its PostgreSQL instances failed", key)


def _ready(pod: Mapping[str, Any]) -> tuple[bool, datetime | None]:
    ready = (pod.get("status") or {}).get("ready") or {}
    since = ready.get("lastTransitionTime")
    when = datetime.fromisoformat(since.replace("Z", "+00:00")) if isinstance(since, str) else None
    return ready.get("status") == "True", when


def instances_of(
    backend: ScalableBackend,
    snapshot: Snapshot,
    desired: list[str],
    probes: Mapping[str, InstanceProbe],
    down_since: Callable[[str, bool], datetime | None],
    vanished: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Instance]:
    """The election's view: every pod of the backend's PostgreSQL (legacy ones too) and every
    desired instance, with its last probe. ``down_since(name, down)`` and ``vanished`` (pods
    deleted with no grace whose server may still run, by instance): the monitor's memory."""
    vanished = vanished or {}
    names = child_names(backend)
    legacy_prefixes = (f"{names.postgres_primary}-", f"{names.postgres_replica}-")
    legacy_primary = snapshot.child("StatefulSet", names.postgres_primary)
    legacy_replicas = (legacy_primary.get("spec") or {}).get("replicas") if legacy_primary else None
    instances = []
    for name in sorted(set(snapshot.pods) | set(desired)):
        pod = snapshot.pods.get(name)
        probe = probes.get(name, UNREACHABLE)
        if pod is None:
            instances.append(
                Instance(
                    name=name,
                    exists=False,
                    terminating=False,
                    pod_uid=None,
                    ready=False,
                    unready_since=down_since(name, True),
                    role_label=None,
                    legacy=name.startswith(legacy_prefixes),
                    vanished_pod_uids=vanished.get(name, ()),
                )
            )
            continue
        metadata = pod["metadata"]
        ready, transition = _ready(pod)
        terminating = bool(metadata.get("deletionTimestamp"))
        down = terminating or not ready
        remembered = down_since(name, down)
        unready_since = None
        if down:
            unready_since = transition if transition is not None and not terminating else remembered
        instances.append(
            Instance(
                name=name,
                exists=True,
                terminating=terminating,
                pod_uid=metadata.get("uid"),
                ready=ready,
                unready_since=unready_since,
                role_label=(metadata.get("labels") or {}).get(POSTGRES_ROLE_LABEL),
                legacy=name.startswith(legacy_prefixes),
                reachable=probe.reachable,
                in_recovery=probe.in_recovery,
                timeline=probe.timeline,
                lsn=probe.lsn,
                replay_lsn=probe.replay_lsn,
                streaming=probe.streaming,
                shutting_down=probe.shutting_down,
                stopped=terminating and probe.stopped,
                vanished_pod_uids=vanished.get(name, ()),
                synchronous_standby_names=probe.synchronous_standby_names,
                streaming_standbys=probe.streaming_standbys,
                statefulset_replicas=legacy_replicas
                if name.startswith(f"{names.postgres_primary}-")
                else None,
            )
        )
    return instances
