"""The PostgreSQL component: the instances' StatefulSet, their Services (read-write, read-only,
headless), PodDisruptionBudget, ConfigMap, NetworkPolicy and generated credentials.

Which instance is the primary is the election's (``postgres_roles``), persisted in
status.postgres; this component only reads it. It keeps two promises while roles move:

* the StatefulSet keeps an instance that a lowered readReplicas would remove while it is the
  primary (or the target of a change): the election switches over first;
* a backend of the old shape (``<name>-postgres-primary`` and ``-replica``) keeps those
  StatefulSets until the primary is one of the new instances; then they go. Only the old
  primary's changes, once: its bootstrap gets the operator's login, so that the operator can
  probe it (and the instances cloned from it) and hand over.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from sbo_operator.api.conditions import ConditionState, ConditionStatus, ConditionType, Reason
from sbo_operator.api.v1alpha1 import MAX_READ_REPLICAS, PostgresStatus, ScalableBackend
from sbo_operator.api.v1alpha1.status import PostgresInstanceStatus, SynchronousStatus
from sbo_operator.builders import Manifest, network_policies, postgres
from sbo_operator.builders.labels import POSTGRES_ROLE_LABEL, PostgresRole
from sbo_operator.builders.labels import Component as ComponentLabel
from sbo_operator.builders.names import POSTGRES_PORT, ChildNames, child_names, service_host
from sbo_operator.components.backup import backup_status, recovery_condition, recovery_hold
from sbo_operator.components.base import (
    Component,
    GeneratedSecret,
    OperatorInputs,
    Plan,
    StatusFragment,
    disabled_condition,
    present,
)
from sbo_operator.credentials import secret_uids
from sbo_operator.postgres_probe import lag_bytes
from sbo_operator.postgres_roles import Phase, streaming_standbys, synchronous_count, synchronous_wait
from sbo_operator.progress import Progress, statefulset_progress
from sbo_operator.snapshot import Snapshot

__all__ = [
    "Postgres",
    "legacy_primary_with_operator_login",
    "legacy_statefulsets",
    "persisted_roles",
    "pod_ready",
    "primary_pod",
    "statefulset_replicas",
]


MAX_REPORTED_INSTANCES = 16  # status.postgres.instances' maxItems


def _secret_name(names: ChildNames) -> str:
    return names.postgres_secret


def _operator_secret_name(names: ChildNames) -> str:
    return names.postgres_operator_secret


def persisted_roles(snapshot: Snapshot) -> Mapping[str, Any]:
    """status.postgres as stored (camelCase): the election's persisted state, {} before any."""
    return ((snapshot.backend.get("status") or {}).get("postgres")) or {}


def pod_ready(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("status") or {}).get("ready", {}).get("status") == "True")


def primary_pod(snapshot: Snapshot) -> Mapping[str, Any] | None:
    """The live pod labelled primary (the one -rw selects), if any."""
    for pod in snapshot.pods.values():
        metadata = pod["metadata"]
        if (metadata.get("labels") or {}).get(
            POSTGRES_ROLE_LABEL
        ) == PostgresRole.PRIMARY and not metadata.get("deletionTimestamp"):
            return pod
    return None


def primary_ready(snapshot: Snapshot) -> bool:
    """Whether the pod -rw selects is ready."""
    primary = primary_pod(snapshot)
    return primary is not None and pod_ready(primary)


def legacy_statefulsets(backend: ScalableBackend, snapshot: Snapshot) -> list[str]:
    """The old shape's StatefulSets that still exist."""
    names = child_names(backend)
    return [
        name
        for name in (names.postgres_primary, names.postgres_replica)
        if snapshot.child("StatefulSet", name)
    ]


def legacy_primary_with_operator_login(backend: ScalableBackend, snapshot: Snapshot) -> Manifest | None:
    """The old shape's primary StatefulSet as it runs, its bootstrap given the operator's login
    (``SBO_OPERATOR_USER``/``_PASSWORD``); None without one, without its bootstrap container, or
    once it has the login."""
    names = child_names(backend)
    live = snapshot.child("StatefulSet", names.postgres_primary)
    if live is None:
        return None
    spec = copy.deepcopy(live["spec"])
    containers = ((spec.get("template") or {}).get("spec") or {}).get("initContainers") or []
    init = next((container for container in containers if container.get("name") == "bootstrap"), None)
    if init is None:
        return None
    login = {
        "SBO_OPERATOR_PASSWORD": "password",
        "SBO_OPERATOR_USER": "username",
    }
    if {variable["name"] for variable in init.get("env") or []} >= set(login):
        # Applied once; never again: the election scales this StatefulSet to 0 when it hands
        # over, and an apply from a snapshot the watch has not updated yet would undo that.
        return None
    env = [variable for variable in init.get("env") or [] if variable["name"] not in login]
    env += [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": names.postgres_operator_secret, "key": key}}}
        for name, key in login.items()
    ]
    init["env"] = sorted(env, key=lambda variable: str(variable["name"]))
    metadata = live["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "labels": dict(metadata.get("labels") or {}),
            **({"ownerReferences": metadata["ownerReferences"]} if metadata.get("ownerReferences") else {}),
        },
        "spec": spec,
    }


def _ordinal(instance: str | None, prefix: str) -> int | None:
    if not instance or not instance.startswith(prefix):
        return None
    tail = instance.removeprefix(prefix)
    return int(tail) if tail.isdigit() else None


def statefulset_replicas(backend: ScalableBackend, snapshot: Snapshot) -> int:
    """1 + readReplicas, or more while the primary (or a change's target) is beyond that."""
    wanted = 1 + backend.spec.postgres.read_replicas
    prefix = f"{child_names(backend).postgres_instances}-"
    roles = persisted_roles(snapshot)
    for instance in (roles.get("currentPrimary"), roles.get("targetPrimary")):
        ordinal = _ordinal(instance, prefix)
        if ordinal is not None:
            wanted = max(wanted, ordinal + 1)
    return wanted


def _migrated(roles: Mapping[str, Any], names: ChildNames) -> bool:
    """Whether the primary is one of the new instances, with no change running."""
    current = roles.get("currentPrimary")
    return (
        roles.get("phase") == Phase.STABLE
        and isinstance(current, str)
        and _ordinal(current, f"{names.postgres_instances}-") is not None
    )


class Postgres(Component):
    label = ComponentLabel.POSTGRES

    def plan(self, backend: ScalableBackend, snapshot: Snapshot, *, operator: OperatorInputs) -> Plan:
        uids = secret_uids(snapshot)
        names = child_names(backend)
        manifests = present(
            postgres.build_postgres_config_map(backend),
            postgres.build_postgres_read_write_service(backend),
            postgres.build_postgres_read_only_service(backend),
            postgres.build_postgres_headless_service(backend),
            postgres.build_postgres_pdb(backend),
            network_policies.build_postgres_network_policy(backend, operator_pods=operator.operator_pods),
            postgres.build_postgres_statefulset(
                backend,
                replicas=statefulset_replicas(backend, snapshot),
                secret_uids=uids,
                images=operator.images,
            ),
        )
        kept: frozenset[tuple[str, str]] = frozenset()
        if backend.spec.postgres.enabled and not _migrated(persisted_roles(snapshot), names):
            # The old primary holds the data until an instance has it and is promoted. It runs
            # as it is, but for the operator's login: its bootstrap creates that role once it
            # has the Secret, so the operator can probe it and the instances cloned from it.
            legacy = legacy_statefulsets(backend, snapshot)
            primary = legacy_primary_with_operator_login(backend, snapshot)
            if primary is not None:
                manifests.append(primary)
            kept = frozenset(
                ("StatefulSet", name) for name in legacy if primary is None or name != names.postgres_primary
            )
        # A restored backend's instances wait for the verdict of its recovery check.
        held = recovery_hold(backend, snapshot)
        if held is not None:
            manifests = [m for m in manifests if m["kind"] != "StatefulSet"]
        return Plan(manifests=manifests, kept=kept, waiting=held)

    def secrets(self, backend: ScalableBackend) -> Sequence[GeneratedSecret]:
        if not backend.spec.postgres.enabled:
            return ()
        return (
            GeneratedSecret("postgres", _secret_name, postgres.build_postgres_secret),
            GeneratedSecret(
                "postgres_operator", _operator_secret_name, postgres.build_postgres_operator_secret
            ),
        )

    def status(self, backend: ScalableBackend, snapshot: Snapshot, waiting: str | None) -> StatusFragment:
        spec = backend.spec.postgres
        if not spec.enabled:
            return StatusFragment(
                disabled_condition(ConditionType.POSTGRES_READY, "spec.postgres"),
                fields={"postgres": None},
                endpoints={"postgres_read_write": None, "postgres_read_only": None},
                secrets={"postgres": None, "postgres_operator": None},
            )
        names = child_names(backend)
        namespace = backend.metadata.namespace
        instances = statefulset_progress(
            snapshot.child("StatefulSet", names.postgres_instances), name=names.postgres_instances
        )
        primary = primary_pod(snapshot)
        ready = primary_ready(snapshot)
        ready_replicas = sum(
            1
            for pod in snapshot.pods.values()
            if (pod["metadata"].get("labels") or {}).get(POSTGRES_ROLE_LABEL) == PostgresRole.REPLICA
            and not pod["metadata"].get("deletionTimestamp")
            and pod_ready(pod)
        )
        condition = recovery_condition(backend, snapshot) or _condition(
            snapshot, primary, ready, ready_replicas, spec.read_replicas, instances
        )
        host = f"{service_host(names.postgres_read_write, namespace)}:{POSTGRES_PORT}"
        read_only_host = f"{service_host(names.postgres_read_only, namespace)}:{POSTGRES_PORT}"
        fields = PostgresStatus(
            primary_ready=ready, ready_replicas=ready_replicas, instances=_instances(snapshot)
        )
        if backend.spec.postgres.backup is not None or persisted_roles(snapshot).get("backup"):
            # None once backups are off: the merge patch deletes it.
            fields = fields.model_copy(update={"backup": backup_status(backend, snapshot)})
        if spec.synchronous.standbys or persisted_roles(snapshot).get("synchronous"):
            # None once synchronous replication is off: the merge patch deletes it.
            fields = fields.model_copy(update={"synchronous": _synchronous(backend, snapshot, primary)})
        if snapshot.roles is not None:
            fields = snapshot.roles.state.into_status(fields)
        return StatusFragment(
            condition,
            fields={"postgres": fields},
            endpoints={"postgres_read_write": host, "postgres_read_only": read_only_host},
            secrets={"postgres": names.postgres_secret, "postgres_operator": names.postgres_operator_secret},
        )


def _instances(snapshot: Snapshot) -> list[PostgresInstanceStatus]:
    """Every instance's pod with its role, readiness, and timeline and lag at the last probe."""
    probes = snapshot.probes
    lags = lag_bytes(probes)
    instances = []
    for name, pod in sorted(snapshot.pods.items()):
        probe = probes.get(name)
        instances.append(
            PostgresInstanceStatus(
                name=name,
                role=(pod["metadata"].get("labels") or {}).get(POSTGRES_ROLE_LABEL),
                ready=pod_ready(pod),
                timeline=probe.timeline if probe is not None else None,
                lag_bytes=lags.get(name),
            )
        )
    return instances[:MAX_REPORTED_INSTANCES]


def _synchronous(
    backend: ScalableBackend, snapshot: Snapshot, primary: Mapping[str, Any] | None
) -> SynchronousStatus | None:
    """What the primary's commits wait for now, from its last probe (postgres_roles keeps it)."""
    wanted = backend.spec.postgres.synchronous
    if not wanted.standbys:
        return None
    name = primary["metadata"]["name"] if primary is not None else None
    probe = snapshot.probes.get(name) if name is not None else None
    if name is None or probe is None or not probe.reachable or probe.in_recovery is not False:
        return SynchronousStatus(
            standbys=wanted.standbys, required=wanted.required, message="the primary has not been probed yet"
        )
    names = postgres.postgres_instance_names(backend, 1 + MAX_READ_REPLICAS)
    streaming = streaming_standbys(name, probe.streaming_standbys, names) or 0
    waiting_for = synchronous_count(probe.synchronous_standby_names)
    message = f"waiting for {waiting_for} of {wanted.standbys} synchronous standbys: {streaming} streaming"
    if wanted.required and streaming < wanted.standbys:
        message += "; commits wait until enough stream again (required: true)"
    elif not wanted.required and waiting_for is not None and waiting_for < wanted.standbys:
        message += "; lowered while fewer stream (required: false)"
    target = synchronous_wait(wanted.standbys, wanted.required, streaming)
    if waiting_for != target:
        message += f"; changing to {target}"
    return SynchronousStatus(
        standbys=wanted.standbys,
        required=wanted.required,
        streaming=streaming,
        waiting_for=waiting_for,
        message=message,
    )


def _condition(
    snapshot: Snapshot,
    primary: Mapping[str, Any] | None,
    primary_ready: bool,
    ready_replicas: int,
    read_replicas: int,
    instances: Progress,
) -> ConditionState:
    decision = snapshot.roles
    if decision is not None and decision.state.phase in (Phase.FAILING_OVER, Phase.SWITCHING_OVER):
        state = decision.state
        return ConditionState(
            ConditionType.POSTGRES_READY,
            ConditionStatus.FALSE,
            state.phase.value,
            f"{state.phase.value}: {state.current_primary} -> {state.target_primary}",
        )
    if decision is not None and decision.problem is not None:
        return ConditionState(
            ConditionType.POSTGRES_READY,
            ConditionStatus.FALSE,
            decision.problem.reason,
            decision.problem.message,
        )
    if primary is None:
        if not instances.ready:
            return ConditionState(
                ConditionType.POSTGRES_READY, ConditionStatus.FALSE, instances.reason, instances.message
            )
        return ConditionState(
            ConditionType.POSTGRES_READY,
            ConditionStatus.FALSE,
            Reason.PODS_NOT_READY,
            "no PostgreSQL instance is labelled primary yet",
        )
    name = primary["metadata"]["name"]
    if not primary_ready:
        return ConditionState(
            ConditionType.POSTGRES_READY,
            ConditionStatus.FALSE,
            Reason.PODS_NOT_READY,
            f"primary {name} is not ready",
        )
    if read_replicas and ready_replicas < read_replicas:
        return ConditionState(
            ConditionType.POSTGRES_READY,
            ConditionStatus.FALSE,
            Reason.PODS_NOT_READY if instances.ready else instances.reason,
            f"primary ready, {ready_replicas}/{read_replicas} read replicas ready",
        )
    return ConditionState(
        ConditionType.POSTGRES_READY,
        ConditionStatus.TRUE,
        Reason.AVAILABLE,
        f"primary ready, {ready_replicas}/{read_replicas} read replicas ready",
    )
