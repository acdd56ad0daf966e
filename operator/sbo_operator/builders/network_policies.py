"""NetworkPolicies: PostgreSQL and Redis accept connections only from this backend's app pods.

PostgreSQL also accepts its own pods (replicas clone from and stream from the primary). Kubelet
probes are exec or local and are not affected. Egress is not restricted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import Manifest
from sbo_operator.builders.labels import (
    APP_NAME,
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    NAME_LABEL,
    Component,
    object_metadata,
    selector_labels,
)
from sbo_operator.builders.names import POSTGRES_PORT, REDIS_PORT, child_names

__all__ = ["build_postgres_network_policy", "build_redis_network_policy"]


def _pods_of(backend: ScalableBackend, components: Sequence[Component]) -> dict[str, Any]:
    """A peer selecting this backend's pods of the given components (same namespace)."""
    return {
        "podSelector": {
            "matchExpressions": [
                {"key": COMPONENT_LABEL, "operator": "In", "values": sorted(c.value for c in components)}
            ],
            "matchLabels": {INSTANCE_LABEL: backend.metadata.name, NAME_LABEL: APP_NAME},
        }
    }


def _policy(
    backend: ScalableBackend, *, name: str, component: Component, port: int, peers: list[dict[str, Any]]
) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_metadata(backend, name=name, component=component),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(backend, component)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"port": port, "protocol": "TCP"}]}],
        },
    }


def build_postgres_network_policy(backend: ScalableBackend) -> Manifest | None:
    """``<name>-postgres``: from api, worker and migrations pods, and from PostgreSQL's own pods."""
    if not backend.spec.postgres.enabled:
        return None
    peers = [
        _pods_of(backend, [Component.API, Component.MIGRATIONS, Component.WORKER]),
        _pods_of(backend, [Component.POSTGRES]),
    ]
    return _policy(
        backend,
        name=child_names(backend).postgres,
        component=Component.POSTGRES,
        port=POSTGRES_PORT,
        peers=peers,
    )


def build_redis_network_policy(backend: ScalableBackend) -> Manifest | None:
    """``<name>-redis``: from api and worker pods only."""
    if not backend.spec.redis.enabled:
        return None
    peers = [_pods_of(backend, [Component.API, Component.WORKER])]
    return _policy(
        backend, name=child_names(backend).redis, component=Component.REDIS, port=REDIS_PORT, peers=peers
    )
