"""The PostgreSQL component: a primary StatefulSet and optional read replicas, their Services
(read-write, read-only), PodDisruptionBudgets, ConfigMap, NetworkPolicy and generated credentials.

Read replicas clone the primary, so they are created only once the primary is ready (and kept
once they exist).
"""

from __future__ import annotations

from collections.abc import Sequence

from sbo_operator.api.conditions import ConditionState, ConditionStatus, ConditionType, Reason
from sbo_operator.api.v1alpha1 import PostgresStatus, ScalableBackend
from sbo_operator.builders import network_policies, postgres
from sbo_operator.builders.images import DataServiceImages
from sbo_operator.builders.labels import Component as ComponentLabel
from sbo_operator.builders.names import POSTGRES_PORT, ChildNames, child_names, service_host
from sbo_operator.components.base import (
    Component,
    GeneratedSecret,
    Plan,
    StatusFragment,
    disabled_condition,
    present,
    ready_condition,
)
from sbo_operator.credentials import secret_uids
from sbo_operator.progress import statefulset_progress
from sbo_operator.snapshot import Snapshot

__all__ = ["Postgres"]

REPLICAS_WAIT = "read replicas start once the primary is ready"


def _secret_name(names: ChildNames) -> str:
    return names.postgres_secret


class Postgres(Component):
    label = ComponentLabel.POSTGRES

    def plan(self, backend: ScalableBackend, snapshot: Snapshot, *, images: DataServiceImages) -> Plan:
        uids = secret_uids(snapshot)
        manifests = present(
            postgres.build_postgres_config_map(backend),
            postgres.build_postgres_read_write_service(backend),
            postgres.build_postgres_read_only_service(backend),
            postgres.build_postgres_primary_headless_service(backend),
            postgres.build_postgres_replica_headless_service(backend),
            postgres.build_postgres_primary_pdb(backend),
            postgres.build_postgres_replica_pdb(backend),
            network_policies.build_postgres_network_policy(backend),
            postgres.build_postgres_primary_statefulset(backend, secret_uids=uids, images=images),
        )
        replicas = postgres.build_postgres_replica_statefulset(backend, secret_uids=uids, images=images)
        if replicas is None:
            return Plan(manifests=manifests)
        names = child_names(backend)
        primary = snapshot.child("StatefulSet", names.postgres_primary)
        if statefulset_progress(primary, name=names.postgres_primary).ready or snapshot.child(
            "StatefulSet", names.postgres_replica
        ):
            return Plan(manifests=[*manifests, replicas])
        return Plan(manifests=manifests, waiting=REPLICAS_WAIT)

    def secrets(self, backend: ScalableBackend) -> Sequence[GeneratedSecret]:
        if not backend.spec.postgres.enabled:
            return ()
        return (GeneratedSecret("postgres", _secret_name, postgres.build_postgres_secret),)

    def status(self, backend: ScalableBackend, snapshot: Snapshot, waiting: str | None) -> StatusFragment:
        spec = backend.spec.postgres
        if not spec.enabled:
            return StatusFragment(
                disabled_condition(ConditionType.POSTGRES_READY, "spec.postgres"),
                fields={"postgres": None},
                endpoints={"postgres_read_write": None, "postgres_read_only": None},
                secrets={"postgres": None},
            )
        names = child_names(backend)
        namespace = backend.metadata.namespace
        primary = statefulset_progress(
            snapshot.child("StatefulSet", names.postgres_primary), name=names.postgres_primary
        )
        replicas = statefulset_progress(
            snapshot.child("StatefulSet", names.postgres_replica), name=names.postgres_replica
        )
        if not primary.ready:
            condition = ready_condition(ConditionType.POSTGRES_READY, primary)
        elif spec.read_replicas and not replicas.ready:
            condition = ConditionState(
                ConditionType.POSTGRES_READY,
                ConditionStatus.FALSE,
                replicas.reason,
                waiting or replicas.message,
            )
        else:
            condition = ConditionState(
                ConditionType.POSTGRES_READY,
                ConditionStatus.TRUE,
                Reason.AVAILABLE,
                f"primary ready, {replicas.ready_replicas}/{spec.read_replicas} read replicas ready",
            )
        host = f"{service_host(names.postgres_read_write, namespace)}:{POSTGRES_PORT}"
        read_only_host = f"{service_host(names.postgres_read_only, namespace)}:{POSTGRES_PORT}"
        return StatusFragment(
            condition,
            fields={
                "postgres": PostgresStatus(
                    primary_ready=primary.ready, ready_replicas=replicas.ready_replicas
                )
            },
            endpoints={
                "postgres_read_write": host,
                "postgres_read_only": read_only_host,
            },
            secrets={"postgres": names.postgres_secret},
        )
