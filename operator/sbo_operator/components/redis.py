"""The Redis component: an optional StatefulSet with its ConfigMap, Service, NetworkPolicy and
generated password, for the app's cache and job queue.
"""

from __future__ import annotations

from collections.abc import Sequence

from sbo_operator.api.conditions import ConditionType
from sbo_operator.api.v1alpha1 import RedisStatus, ScalableBackend
from sbo_operator.builders import network_policies, redis
from sbo_operator.builders.labels import Component as ComponentLabel
from sbo_operator.builders.names import REDIS_PORT, ChildNames, child_names, service_host
from sbo_operator.components.base import (
    Component,
    GeneratedSecret,
    OperatorInputs,
    Plan,
    StatusFragment,
    disabled_condition,
    present,
    ready_condition,
)
from sbo_operator.credentials import secret_uids
from sbo_operator.progress import statefulset_progress
from sbo_operator.snapshot import Snapshot

__all__ = ["Redis"]


def _secret_name(names: ChildNames) -> str:
    return names.redis


class Redis(Component):
    label = ComponentLabel.REDIS

    def plan(self, backend: ScalableBackend, snapshot: Snapshot, *, operator: OperatorInputs) -> Plan:
        return Plan(
            manifests=present(
                redis.build_redis_config_map(backend),
                redis.build_redis_service(backend),
                redis.build_redis_headless_service(backend),
                network_policies.build_redis_network_policy(backend),
                redis.build_redis_statefulset(
                    backend, secret_uids=secret_uids(snapshot), images=operator.images
                ),
            )
        )

    def secrets(self, backend: ScalableBackend) -> Sequence[GeneratedSecret]:
        if not backend.spec.redis.enabled:
            return ()
        return (GeneratedSecret("redis", _secret_name, redis.build_redis_secret),)

    def status(self, backend: ScalableBackend, snapshot: Snapshot, waiting: str | None) -> StatusFragment:
        if not backend.spec.redis.enabled:
            return StatusFragment(
                disabled_condition(ConditionType.REDIS_READY, "spec.redis"),
                fields={"redis": None},
                endpoints={"redis": None},
                secrets={"redis": None},
            )
        names = child_names(backend)
        progress = statefulset_progress(snapshot.child("StatefulSet", names.redis), name=names.redis)
        return StatusFragment(
            ready_condition(ConditionType.REDIS_READY, progress),
            fields={"redis": RedisStatus(ready=progress.ready)},
            endpoints={"redis": f"{service_host(names.redis, backend.metadata.namespace)}:{REDIS_PORT}"},
            secrets={"redis": names.redis},
        )
