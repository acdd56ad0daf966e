"""`reconcile()`: one idempotent, level-triggered pass over one ScalableBackend.

1. Read the backend and its children from the watches' snapshot (no GETs).
2. Parse the spec. An invalid one is reported as Stalled, not retried.
3. Read the Secrets and ConfigMaps the pods reference but the operator does not own (GETs:
   they are not watched). A workload that needs a missing one is held back.
4. Compute the desired children (pure) and apply only those that differ.
5. Compute the status (pure) and write it only when it changed.

So a steady state sends no write request at all. A stalled backend is looked at again after a
delay that doubles up to a minute: what unblocks it (a Secret created, a quota raised) sends
no event the operator watches. A child's name that someone else's object holds is checked at
each look with a read, not applied again: a stalled backend is a steady state too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.aio.client.exceptions import ApiException
from pydantic import ValidationError

from sbo_operator.api.conditions import Reason
from sbo_operator.api.v1alpha1 import API_VERSION, KIND, ScalableBackend, ScalableBackendStatus
from sbo_operator.autoscaler.scheduler import AutoscalerScheduler
from sbo_operator.backup_schedule import record_backup_metrics, request_scheduled_backup
from sbo_operator.builders import Manifest
from sbo_operator.builders.images import DataServiceImages
from sbo_operator.builders.network_policies import OperatorPods
from sbo_operator.builders.secrets import MIN_RANDOM_BYTES
from sbo_operator.components import required_references
from sbo_operator.components.base import Problem
from sbo_operator.components.postgres import primary_ready
from sbo_operator.credentials import regenerated_message, secret_readers
from sbo_operator.desired import DesiredState, desired_state, missing_secrets
from sbo_operator.drift import ApplyReason, apply_reason, with_applied_hash
from sbo_operator.events import post_event
from sbo_operator.kube import ApplyConflict, ApplyRejected, Kube, ObjectGone
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.postgres_failover import PostgresRoles
from sbo_operator.postgres_roles import Phase
from sbo_operator.recovery_check import read_recovery_verdict
from sbo_operator.references import reference_problem
from sbo_operator.refusals import refusal_problem
from sbo_operator.snapshot import ARCHIVE_STATUS_INTERVAL, Snapshot
from sbo_operator.status import (
    compute_status,
    invalid_spec_problem,
    invalid_spec_status,
    is_stored,
    status_patch,
    without_none,
)
from sbo_operator.storage import claim_templates_changed, claims_to_grow, service_name_changed
from sbo_operator.workqueue import Key

log = logging.getLogger(__name__)

STALLED_RETRY_SECONDS = 2.0  # the first look again at a stalled backend; doubles each time
STALLED_RETRY_MAX_SECONDS = 60.0


class Reconciler:
    """Reconciles one backend at a time, given what it reads from and writes to.

    ``snapshots`` returns a backend and its children as the watches last saw
    them (None once it is gone); ``kube`` does every write; ``images`` are the
    data services' image templates; ``operator_pods`` the operator's own pods (None outside
    the cluster), which PostgreSQL's NetworkPolicy admits.
    """

    def __init__(
        self,
        *,
        kube: Kube,
        metrics: OperatorMetrics,
        autoscaler: AutoscalerScheduler,
        snapshots: Callable[[Key], Snapshot | None],
        images: DataServiceImages,
        operator_pods: OperatorPods | None = None,
        roles: PostgresRoles | None = None,
        archive_status_interval: timedelta = ARCHIVE_STATUS_INTERVAL,
    ) -> None:
        self.kube = kube
        self.archive_status_interval = archive_status_interval
        self.roles = roles  # the PostgreSQL election; None: no roles are ever changed
        self.images = images
        self.operator_pods = operator_pods
        self.metrics = metrics
        self.autoscaler = autoscaler
        self.snapshots = snapshots
        # The last status written per backend, with the resourceVersion of the body it was
        # computed from: until the watch brings a newer body (our own write, at the latest),
        # that body's status is stale, and writing the same status twice is a write.
        self._written_status: dict[Key, tuple[str | None, dict[str, Any]]] = {}
        # Backends (by uid) the API said are gone, although the watch of a
        # deleted namespace never reported their deletion.
        self._gone: dict[Key, str] = {}
        self._reported_problems: dict[Key, set[tuple[Reason, str]]] = {}
        self._stalled_passes: dict[Key, int] = {}
        # Children (kind, name) whose name another owner holds, per backend. Until it is free, a
        # read checks it: an apply would be refused with a conflict on every pass, and a backend
        # stalled on it would never stop writing.
        self._names_taken: dict[Key, set[tuple[str, str]]] = {}
        # The uids of children deleted, per backend, until the watch reports them gone: a pass
        # before that sees them still there and would delete them again.
        self._deleted: dict[Key, set[str]] = {}

    def forget(self, key: Key) -> None:
        self._written_status.pop(key, None)
        self._gone.pop(key, None)
        self._reported_problems.pop(key, None)
        self._stalled_passes.pop(key, None)
        self._names_taken.pop(key, None)
        self._deleted.pop(key, None)
        if self.roles is not None:
            self.roles.forget(key)
        self.metrics.forget_backend(key.namespace, key.name)

    async def reconcile(self, key: Key) -> float | None:
        snapshot = self.snapshots(key)
        if snapshot is None or snapshot.backend["metadata"].get("deletionTimestamp"):
            return None  # deleted: garbage collection removes the children
        uid = snapshot.backend["metadata"].get("uid", "")
        if self._gone.get(key) == uid:
            return None
        metrics = self.metrics
        started = time.monotonic()
        try:
            stalled, requeue = await self._reconcile(key, snapshot)
        except ObjectGone:
            log.info("%s is gone (its namespace was deleted); not reconciling it again", key)
            self._written_status.pop(key, None)
            self._gone[key] = uid
            return None
        except Exception as error:
            metrics.reconciles.labels(result="error").inc()
            metrics.reconcile_errors.labels(reason=error_reason(error)).inc()
            raise
        finally:
            metrics.reconcile_duration.observe(time.monotonic() - started)
        metrics.reconciles.labels(result="ok").inc()
        # Else child events and the periodic resync bring it back.
        delays = [delay for delay in (self._retry_delay(key, stalled), requeue) if delay is not None]
        return min(delays) if delays else None

    def _retry_delay(self, key: Key, stalled: bool) -> float | None:
        """None once nothing stalls; else 2, 4, 8... seconds, up to a minute."""
        if not stalled:
            self._stalled_passes.pop(key, None)
            return None
        passes = self._stalled_passes.get(key, 0) + 1
        self._stalled_passes[key] = passes
        delay: float = STALLED_RETRY_SECONDS * 2.0 ** min(passes - 1, 10)
        return min(delay, STALLED_RETRY_MAX_SECONDS)

    async def _reconcile(self, key: Key, snapshot: Snapshot) -> tuple[bool, float | None]:
        """One pass: True when a problem stalls the backend, and when to look again regardless."""
        body = snapshot.backend
        try:
            # Status is the operator's own output, never an input.
            backend = ScalableBackend.from_body({k: v for k, v in body.items() if k != "status"})
        except ValidationError as error:
            await self._report_invalid_spec(key, body, error)
            return False, None  # only a new generation can fix it, and that is an event

        # With autoscaling, the autoscaler writes spec.<component>.replicas
        # itself; here replicas always come from the spec.
        self.autoscaler.track(key, backend, body)
        missing = await self._missing_references(backend)
        # A restored backend's StatefulSet waits for the verdict of its recovery check.
        verdict = await read_recovery_verdict(self.kube, backend, snapshot)
        snapshot = dataclasses.replace(
            snapshot, recovery=verdict, archive_status_interval=self.archive_status_interval
        )
        snapshot, created, refused = await self._create_missing_secrets(backend, body, snapshot)
        # No workload is applied that needs an object that is missing or that the API refused.
        desired = desired_state(
            backend, snapshot, {**missing, **refused}, images=self.images, operator_pods=self.operator_pods
        )
        applied, problems = await self._converge(key, backend, body, snapshot, desired, created)
        problems = [*desired.problems, *missing.values(), *refused.values(), *problems]
        self._post_problem_events(key, body, problems)
        # The election decides from the status as last written (the watch may lag behind it).
        roles = None
        if self.roles is not None:
            roles = await self.roles.decide(key, backend, self._current_status(key, body), snapshot)
            snapshot = dataclasses.replace(
                snapshot, roles=roles, probes=self.roles.monitor.probes(key) if roles else {}
            )

        await self._write_status(
            key,
            body,
            lambda previous: compute_status(
                backend,
                snapshot,
                applied=applied,
                waiting=desired.waiting,
                problems=problems,
                held=desired.held,
                autoscaling=self.autoscaler.reports(key),
                previous=previous,
                now=_now(),
            ),
        )
        # The next scheduled base backup brings the backend back by itself.
        now = datetime.now(UTC)
        backup_due = await request_scheduled_backup(self.kube, backend, snapshot, now)
        record_backup_metrics(self.metrics, backend, snapshot, now)
        if roles is None or self.roles is None:
            return bool(problems), backup_due
        self.metrics.record_postgres(
            key.namespace,
            key.name,
            changing=roles.state.phase in (Phase.FAILING_OVER, Phase.SWITCHING_OVER),
            primary_ready=primary_ready(snapshot),
        )
        # Only now that the status holds the decided state: a restart resumes this very change.
        await self.roles.execute(key, backend, body, snapshot, roles)
        requeues = [delay for delay in (roles.requeue_seconds, backup_due) if delay is not None]
        return bool(problems), min(requeues) if requeues else None

    def _current_status(self, key: Key, body: dict[str, Any]) -> dict[str, Any]:
        """The backend's status: what this operator last wrote, until the watch brings it back."""
        written = self._written_status.get(key)
        if written is not None and written[0] == body["metadata"].get("resourceVersion"):
            return written[1]
        status: dict[str, Any] = body.get("status") or {}
        return status

    async def _create_missing_secrets(
        self, backend: ScalableBackend, body: dict[str, Any], snapshot: Snapshot
    ) -> tuple[Snapshot, list[str], dict[tuple[str, str], Problem]]:
        """Create the missing generated Secrets first: the pod templates carry their uids.

        Generated once, here, and only created: an existing Secret is never replaced. Returns the
        snapshot with them (the watch brings them later), what was created, and what the API
        refused. A Secret created while pods read its predecessor (deleted by hand) rolls those
        pods; a Warning says so.
        """
        created: list[str] = []
        refused: dict[tuple[str, str], Problem] = {}
        for secret in missing_secrets(backend, snapshot):
            manifest = secret.build(
                backend, existing_data=None, random_bytes=secrets.token_bytes(MIN_RANDOM_BYTES)
            )
            if manifest is None:
                continue
            name = manifest["metadata"]["name"]
            try:
                stored = await self.kube.create(manifest)
            except ApplyRejected as error:
                refused[("Secret", name)] = self._refusal(backend, "create", "Secret", name, error)
                continue
            if stored is None:  # it exists: the watch has not brought it yet
                stored = await self.kube.get("v1", "Secret", backend.metadata.namespace, name)
                if stored is None:
                    continue
            else:
                created.append(f"created Secret {name}")
                if readers := secret_readers(snapshot, name):
                    post_event(body, "Warning", "SecretRegenerated", regenerated_message(name, readers))
            snapshot = snapshot.with_child(stored)
        return snapshot, created, refused

    async def _converge(
        self,
        key: Key,
        backend: ScalableBackend,
        body: dict[str, Any],
        snapshot: Snapshot,
        desired: DesiredState,
        created: list[str],
    ) -> tuple[list[str], list[Problem]]:
        """Write what differs; return what was written (after ``created``) and what blocks progress."""
        kube = self.kube
        applied: list[str] = list(created)
        problems: list[Problem] = []

        drifted: list[str] = []
        for wave in (desired.foundation, desired.workloads):
            results = await asyncio.gather(
                *(self._apply_if_needed(key, backend, snapshot, manifest) for manifest in wave)
            )
            for manifest, (reason, problem) in zip(wave, results, strict=True):
                what = f"{manifest['kind']} {manifest['metadata']['name']}"
                if problem is not None:
                    problems.append(problem)
                elif reason is ApplyReason.MISSING:
                    applied.append(f"created {what}")
                elif reason is ApplyReason.CHANGED:
                    applied.append(f"updated {what}")
                elif reason is ApplyReason.DRIFTED:
                    applied.append(f"restored {what}")
                    drifted.append(what)

        present = {child["metadata"].get("uid") for child in snapshot.children.values()}
        deleted = self._deleted.setdefault(key, set())
        deleted &= present
        for api_version, kind, name in desired.obsolete:
            uid = (snapshot.child(kind, name) or {}).get("metadata", {}).get("uid")
            if uid is not None and uid in deleted:
                continue  # deleted by an earlier pass; the watch has not said so yet
            try:
                await kube.delete(api_version, kind, backend.metadata.namespace, name)
            except ApplyRejected as error:
                problems.append(self._refusal(backend, "delete", kind, name, error))
                continue
            if uid is not None:
                deleted.add(uid)
            applied.append(f"deleted {kind} {name}")
        if not deleted:
            del self._deleted[key]

        if applied:
            log.info("%s/%s: %s", backend.metadata.namespace, backend.metadata.name, "; ".join(applied))
            post_event(body, "Normal", "Applied", "; ".join(applied))
        if drifted:
            post_event(
                body, "Warning", "DriftRestored", f"changed outside the operator: {', '.join(drifted)}"
            )
        return applied, problems

    async def _apply_if_needed(
        self, key: Key, backend: ScalableBackend, snapshot: Snapshot, manifest: Manifest
    ) -> tuple[ApplyReason | None, Problem | None]:
        stamped = with_applied_hash(manifest)
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        reason = apply_reason(stamped, snapshot.child(kind, name))
        if reason is None:
            return None, None
        kube = self.kube
        names_taken = self._names_taken.get(key, set())
        if reason is ApplyReason.MISSING and (kind, name) in names_taken:
            existing = await kube.get(manifest["apiVersion"], kind, backend.metadata.namespace, name)
            if existing is not None and not _owned_by(existing, backend):
                return None, _name_taken_problem(backend, kind, name)
            names_taken.discard((kind, name))  # freed, or ours: applied as any missing child
        actual = snapshot.child(kind, name)
        if kind == "StatefulSet" and actual is not None:
            grow = claim_templates_changed(manifest, actual)
            if grow or service_name_changed(manifest, actual):
                # The old one goes with an orphaning delete; its DELETED event brings the
                # next pass, which creates the new one (an apply now would meet the old one).
                if actual["metadata"].get("deletionTimestamp"):
                    return ApplyReason.CHANGED, None  # on its way out already
                problem = await self._replace_statefulset(backend, manifest, grow_claims=grow)
                return (None, problem) if problem else (ApplyReason.CHANGED, None)
        try:
            # A child we have not seen is applied without force: if someone
            # else manages that name, the API answers with a conflict.
            await kube.apply(stamped, force=reason is not ApplyReason.MISSING)
        except ApplyConflict:
            existing = await kube.get(manifest["apiVersion"], kind, backend.metadata.namespace, name)
            if existing is not None and _owned_by(existing, backend):
                await kube.apply(stamped, force=True)  # ours; the watch had not caught up
                return reason, None
            self._names_taken.setdefault(key, set()).add((kind, name))
            return None, _name_taken_problem(backend, kind, name)
        except ApplyRejected as error:
            return None, self._refusal(backend, "apply", kind, name, error)
        return reason, None

    def _refusal(
        self, backend: ScalableBackend, verb: str, kind: str, name: str, error: ApplyRejected
    ) -> Problem:
        """A refused write: one warning line (no traceback: it is no bug), and the Problem to report."""
        namespace = backend.metadata.namespace
        problem = refusal_problem(
            verb=verb, kind=kind, name=name, namespace=namespace, code=error.code, message=str(error)
        )
        log.warning("%s/%s: %s: %s", namespace, backend.metadata.name, problem.reason, problem.message)
        return problem

    async def _missing_references(self, backend: ScalableBackend) -> dict[tuple[str, str], Problem]:
        """Secrets and ConfigMaps the pods need but that are missing (or lack a key), by (kind, name).

        Reads only, and not from a watch: the operator does not watch objects it does not own.
        """
        missing: dict[tuple[str, str], Problem] = {}
        namespace = backend.metadata.namespace
        for reference in required_references(backend):
            found = await self.kube.get("v1", reference.kind, namespace, reference.name)
            keys = (
                None if found is None else set(found.get("data") or {}) | set(found.get("binaryData") or {})
            )
            if message := reference_problem(reference, namespace, keys):
                reason = (
                    Reason.SECRET_NOT_FOUND if reference.kind == "Secret" else Reason.CONFIG_MAP_NOT_FOUND
                )
                missing.setdefault((reference.kind, reference.name), Problem(reason, message))
        return missing

    def _post_problem_events(self, key: Key, body: dict[str, Any], problems: list[Problem]) -> None:
        """A Warning event when a problem appears, not again on every resync."""
        current = {(p.reason, p.message) for p in problems}
        for reason, message in sorted(current - self._reported_problems.get(key, set())):
            post_event(body, "Warning", reason, message)
        self._reported_problems[key] = current

    async def _replace_statefulset(
        self, backend: ScalableBackend, statefulset: Manifest, *, grow_claims: bool
    ) -> Problem | None:
        """Grow the claims if asked, then delete the StatefulSet, orphaning its pods (and so keeping
        their claims): the new one adopts them. A refusal stops it."""
        kube = self.kube
        namespace, name = backend.metadata.namespace, statefulset["metadata"]["name"]
        claims = await kube.list("v1", "PersistentVolumeClaim", namespace) if grow_claims else []
        for claim, size in claims_to_grow(statefulset, claims):
            log.info(
                "%s/%s: growing PersistentVolumeClaim %s to %s", namespace, backend.metadata.name, claim, size
            )
            try:
                await kube.patch_spec(
                    {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "metadata": {"name": claim, "namespace": namespace},
                    },
                    {"spec": {"resources": {"requests": {"storage": size}}}},
                )
            except ApplyRejected as error:
                return self._refusal(backend, "patch", "PersistentVolumeClaim", claim, error)
        # Orphan: the pods keep running and the new StatefulSet adopts them.
        try:
            await kube.delete("apps/v1", "StatefulSet", namespace, name, orphan=True)
        except ApplyRejected as error:
            return self._refusal(backend, "delete", "StatefulSet", name, error)
        if grow_claims:
            reason, what = "StorageResized", "its volume claims"
        else:
            reason, what = "StatefulSetReplaced", f"its serviceName to {statefulset['spec']['serviceName']}"
        post_event(
            _event_target(backend),
            "Normal",
            reason,
            f"StatefulSet {name} replaced to change {what}; its pods kept running",
        )
        return None

    async def _report_invalid_spec(self, key: Key, body: dict[str, Any], error: ValidationError) -> None:
        """A spec the schema let through but the operator cannot use: Stalled, never a crash loop."""
        problem = invalid_spec_problem(error)
        generation = body["metadata"].get("generation")
        await self._write_status(
            key,
            body,
            lambda previous: invalid_spec_status(
                problem, generation=generation, previous=previous, now=_now()
            ),
        )

    async def _write_status(
        self,
        key: Key,
        body: dict[str, Any],
        compute: Callable[[list[dict[str, Any]]], ScalableBackendStatus],
    ) -> None:
        """Write the status only if it differs from what is stored (or what we last wrote)."""
        meta = body["metadata"]
        version = meta.get("resourceVersion")
        written = self._written_status.get(key)
        current = written[1] if written and written[0] == version else body.get("status") or {}
        patch = status_patch(compute(current.get("conditions") or []))
        self.metrics.record_conditions(key.namespace, key.name, patch["conditions"])
        if is_stored(patch, current):
            return
        log.info(
            "%s/%s: status changed; Ready=%s (%s)",
            meta["namespace"],
            meta["name"],
            _condition_status(patch, "Ready"),
            _condition_summary(patch, "Ready"),
        )
        await self.kube.patch_status(API_VERSION, KIND, meta["namespace"], meta["name"], patch)
        stored = {name: value for name, value in current.items() if name not in patch}
        self._written_status[key] = (version, stored | without_none(patch))


def error_reason(error: Exception) -> str:
    """The reason label of sbo_reconcile_errors_total, from a small, fixed set of values.

    An API refusal: ``Api`` and the Status reason the API server gave (``ApiConflict``,
    ``ApiTooManyRequests``, ``ApiInternalError``...), or its HTTP code; anything else: the
    exception's class (``TimeoutError``, ``ClientConnectorError``...).
    """
    if isinstance(error, ApiException):
        try:
            reason = json.loads(error.body or "")["reason"]
        except (TypeError, ValueError, KeyError):
            reason = None
        return f"Api{reason}" if isinstance(reason, str) and reason.isalnum() else f"Api{error.status}"
    return type(error).__name__


def _event_target(backend: ScalableBackend) -> dict[str, Any]:
    meta = backend.metadata
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
    }


def _condition_status(status: Mapping[str, Any], type: str) -> str:
    return next((c["status"] for c in status["conditions"] if c["type"] == type), "Unknown")


def _condition_summary(status: Mapping[str, Any], type: str) -> str:
    """The condition's reason and message: the log says why, as the status does (never a secret)."""
    found = next((c for c in status["conditions"] if c["type"] == type), None)
    return f"{found.get('reason')}: {found.get('message')}" if found else "no condition"


def _name_taken_problem(backend: ScalableBackend, kind: str, name: str) -> Problem:
    return Problem(
        Reason.CHILD_OWNED_ELSEWHERE,
        f"{kind} {backend.metadata.namespace}/{name} already exists and is not managed by this "
        "ScalableBackend; delete or rename it, or rename the ScalableBackend",
    )


def _owned_by(obj: Mapping[str, Any], backend: ScalableBackend) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == backend.metadata.uid and ref.get("controller") for ref in refs)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
