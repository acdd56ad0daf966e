"""NetworkPolicies: PostgreSQL and Redis accept connections only from this backend's app pods.

PostgreSQL also accepts its own pods (replicas clone from and stream from the primary), and, given
``OperatorPods`` (the operator runs as pods, e.g. from the chart), the operator's pods: it probes
every instance on 5432 to elect and promote. Kubelet probes are exec or local and are not affected.

With ``spec.networkPolicies`` (absent by default, so nothing changes without it):

* ``appIngressFrom``: the api (on its port) and the worker accept only those peers; the
  migrations Job accepts nothing;
* ``egress: true``: every pod reaches only what it needs: the api, worker and migrations their
  data services, PostgreSQL its own pods (replicas stream from the primary), Redis nothing, and
  all of them DNS (kube-dns in kube-system, 53 UDP and TCP).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
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

APP_COMPONENTS = (Component.API, Component.MIGRATIONS, Component.WORKER)

__all__ = [
    "DNS_PEER",
    "OperatorPods",
    "build_app_network_policy",
    "build_postgres_network_policy",
    "build_redis_network_policy",
]

# CoreDNS keeps kube-dns's label; kubernetes.io/metadata.name is set on every namespace.
DNS_PEER: dict[str, Any] = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
DNS_PORTS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]


@dataclasses.dataclass(frozen=True)
class OperatorPods:
    """The operator's own pods, as a NetworkPolicy peer: its namespace and its pods' labels.

    From the operator's settings (the chart sets them); None when it runs outside the cluster.
    """

    namespace: str
    labels: Mapping[str, str]

    def peer(self) -> dict[str, Any]:
        return {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
            "podSelector": {"matchLabels": dict(sorted(self.labels.items()))},
        }


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
    policy = _base_policy(backend, name=name, component=component)
    policy["spec"]["policyTypes"] = ["Ingress"]
    policy["spec"]["ingress"] = [{"from": peers, "ports": [{"port": port, "protocol": "TCP"}]}]
    egress = _egress_rules(backend, component)
    if egress is not None:
        policy["spec"]["policyTypes"].append("Egress")
        if egress:  # no rules: deny all; the API drops an empty list, which would look like drift
            policy["spec"]["egress"] = egress
    return policy


def _base_policy(backend: ScalableBackend, *, name: str, component: Component) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_metadata(backend, name=name, component=component),
        "spec": {"podSelector": {"matchLabels": selector_labels(backend, component)}},
    }


def _egress_rules(backend: ScalableBackend, component: Component) -> list[dict[str, Any]] | None:
    """What ``component``'s pods may reach with ``egress: true``; None: egress not restricted."""
    spec = backend.spec.network_policies
    if spec is None or not spec.egress:
        return None
    if component is Component.REDIS:
        return []  # Redis connects to nothing
    rules: list[dict[str, Any]] = [{"to": [copy.deepcopy(DNS_PEER)], "ports": copy.deepcopy(DNS_PORTS)}]
    if backend.spec.postgres.enabled and component in (*APP_COMPONENTS, Component.POSTGRES):
        rules.append(
            {
                "to": [_pods_of(backend, [Component.POSTGRES])],
                "ports": [{"port": POSTGRES_PORT, "protocol": "TCP"}],
            }
        )
    if backend.spec.redis.enabled and component in APP_COMPONENTS:
        rules.append(
            {"to": [_pods_of(backend, [Component.REDIS])], "ports": [{"port": REDIS_PORT, "protocol": "TCP"}]}
        )
    return rules


def build_app_network_policy(backend: ScalableBackend, component: Component) -> Manifest | None:
    """``<name>-api``, ``<name>-worker`` or ``<name>-migrations``: that app component's policy.

    None without ``spec.networkPolicies``, or when that component is not deployed. Ingress is
    restricted only with ``appIngressFrom``, egress only with ``egress: true``.
    """
    spec = backend.spec.network_policies
    names = child_names(backend)
    name = {
        Component.API: names.api,
        Component.WORKER: names.worker if backend.spec.worker is not None else None,
        Component.MIGRATIONS: names.migrations if backend.spec.api.migrations is not None else None,
    }[component]
    if spec is None or name is None:
        return None
    policy = _base_policy(backend, name=name, component=component)
    types: list[str] = []
    if spec.app_ingress_from is not None:
        types.append("Ingress")
        peers = [
            peer.model_dump(by_alias=True, exclude_none=True, mode="json") for peer in spec.app_ingress_from
        ]
        if component is Component.API and peers:
            policy["spec"]["ingress"] = [
                {"from": peers, "ports": [{"port": backend.spec.api.port, "protocol": "TCP"}]}
            ]
        elif component is Component.WORKER and peers:
            policy["spec"]["ingress"] = [{"from": peers}]
    egress = _egress_rules(backend, component)
    if egress is not None:
        types.append("Egress")
        policy["spec"]["egress"] = egress
    if not types:
        return None
    policy["spec"]["policyTypes"] = types
    return policy


def build_postgres_network_policy(
    backend: ScalableBackend, *, operator_pods: OperatorPods | None = None
) -> Manifest | None:
    """``<name>-postgres``: from api, worker and migrations pods, and from PostgreSQL's own pods.

    With ``operator_pods``, a second rule admits the operator's pods on 5432, for its probes.
    """
    if not backend.spec.postgres.enabled:
        return None
    peers = [
        _pods_of(backend, APP_COMPONENTS),
        _pods_of(backend, [Component.POSTGRES]),
    ]
    policy = _policy(
        backend,
        name=child_names(backend).postgres,
        component=Component.POSTGRES,
        port=POSTGRES_PORT,
        peers=peers,
    )
    if operator_pods is not None:
        policy["spec"]["ingress"].append(
            {"from": [operator_pods.peer()], "ports": [{"port": POSTGRES_PORT, "protocol": "TCP"}]}
        )
    return policy


def build_redis_network_policy(backend: ScalableBackend) -> Manifest | None:
    """``<name>-redis``: from api and worker pods only."""
    if not backend.spec.redis.enabled:
        return None
    peers = [_pods_of(backend, [Component.API, Component.WORKER])]
    return _policy(
        backend, name=child_names(backend).redis, component=Component.REDIS, port=REDIS_PORT, peers=peers
    )
