"""NetworkPolicies: PostgreSQL and Redis accept only this backend's pods; the optional app-tier policies."""

from __future__ import annotations

from typing import Any

import pytest

from sbo_operator.builders.labels import Component
from sbo_operator.builders.network_policies import (
    DNS_PEER,
    OperatorPods,
    build_app_network_policy,
    build_postgres_network_policy,
    build_redis_network_policy,
)
from sbo_operator.components import COMPONENTS
from tests.unit.factories import assert_golden, backend_from, wanted_once_running

pytestmark = pytest.mark.unit

Manifest = dict[str, Any]


def present(manifest: Manifest | None) -> Manifest:
    assert manifest is not None
    return manifest


def peers_components(policy: Manifest) -> list[list[str]]:
    (rule,) = policy["spec"]["ingress"]
    return [peer["podSelector"]["matchExpressions"][0]["values"] for peer in rule["from"]]


def test_disabled_services_get_no_policy() -> None:
    backend = backend_from({"redis": {"enabled": False}, "postgres": {"enabled": False}})
    assert build_redis_network_policy(backend) is None
    assert build_postgres_network_policy(backend) is None


def test_postgres_accepts_only_this_backends_app_and_postgres_pods() -> None:
    policy = present(build_postgres_network_policy(backend_from({})))
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "postgres"
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert peers_components(policy) == [["api", "migrations", "worker"], ["postgres"]]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
    for peer in rule["from"]:
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "shop"
        assert "namespaceSelector" not in peer


def test_redis_accepts_only_api_and_worker_pods() -> None:
    policy = present(build_redis_network_policy(backend_from({})))
    assert peers_components(policy) == [["api", "worker"]]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 6379, "protocol": "TCP"}]


# ---- spec.networkPolicies ---------------------------------------------------------------------------

INGRESS_CONTROLLER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
PROMETHEUS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}
APP = (Component.API, Component.WORKER, Component.MIGRATIONS)
LOCKED_DOWN = {
    "worker": {"replicas": 1, "command": ["python", "-m", "app.worker"]},
    "api": {"migrations": {"command": ["alembic", "upgrade", "head"]}},
    "networkPolicies": {"appIngressFrom": [INGRESS_CONTROLLER, PROMETHEUS], "egress": True},
}


def policies(spec: dict[str, Any]) -> dict[str, Manifest]:
    """Every NetworkPolicy the components want, by name."""
    return {
        m["metadata"]["name"]: m
        for m in wanted_once_running(backend_from(spec))
        if m["kind"] == "NetworkPolicy"
    }


def test_without_network_policies_nothing_changes() -> None:
    backend = backend_from({"worker": LOCKED_DOWN["worker"], "api": LOCKED_DOWN["api"]})
    assert all(build_app_network_policy(backend, component) is None for component in APP)
    assert set(policies({})) == {"shop-postgres", "shop-redis"}
    assert "egress" not in present(build_postgres_network_policy(backend))["spec"]


def test_locked_down_manifests_match_the_golden_files() -> None:
    wanted = policies(LOCKED_DOWN)
    assert set(wanted) == {"shop-api", "shop-worker", "shop-migrations", "shop-postgres", "shop-redis"}
    for name, policy in wanted.items():
        assert_golden(f"network-policies/NetworkPolicy-{name}.yaml", policy)


def test_the_api_accepts_the_configured_peers_on_its_port_only() -> None:
    api = policies(LOCKED_DOWN)["shop-api"]
    assert api["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert api["spec"]["ingress"] == [
        {"from": [INGRESS_CONTROLLER, PROMETHEUS], "ports": [{"port": 8000, "protocol": "TCP"}]}
    ]
    worker = policies(LOCKED_DOWN)["shop-worker"]
    assert worker["spec"]["ingress"] == [{"from": [INGRESS_CONTROLLER, PROMETHEUS]}]
    # The migrations Job serves nothing: an Ingress policy without rules denies all.
    migrations = policies(LOCKED_DOWN)["shop-migrations"]
    assert "ingress" not in migrations["spec"]
    assert "Ingress" in migrations["spec"]["policyTypes"]


def test_an_empty_peer_list_denies_all_ingress_to_the_app() -> None:
    api = policies({"networkPolicies": {"appIngressFrom": []}})["shop-api"]
    assert api["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in api["spec"]


def egress_targets(policy: Manifest) -> list[tuple[str, list[int]]]:
    """Each egress rule as (what it reaches, its ports)."""
    targets = []
    for rule in policy["spec"]["egress"]:
        (peer,) = rule["to"]
        what = "dns" if peer == DNS_PEER else peer["podSelector"]["matchExpressions"][0]["values"][0]
        targets.append((what, sorted(port["port"] for port in rule["ports"])))
    return targets


def test_egress_is_exactly_what_each_component_needs() -> None:
    wanted = policies(LOCKED_DOWN)
    for name in ("shop-api", "shop-worker", "shop-migrations"):
        assert egress_targets(wanted[name]) == [("dns", [53, 53]), ("postgres", [5432]), ("redis", [6379])], (
            name
        )
    assert egress_targets(wanted["shop-postgres"]) == [("dns", [53, 53]), ("postgres", [5432])]
    # Redis connects to nothing: Egress without rules (an empty list the API would drop).
    assert "egress" not in wanted["shop-redis"]["spec"]
    for name in ("shop-postgres", "shop-redis"):
        assert wanted[name]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns = wanted["shop-api"]["spec"]["egress"][0]["ports"]
    assert dns == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]


def test_egress_follows_the_enabled_data_services() -> None:
    spec = {"networkPolicies": {"egress": True}, "redis": {"enabled": False}}
    wanted = policies(spec)
    assert egress_targets(wanted["shop-api"]) == [("dns", [53, 53]), ("postgres", [5432])]
    assert wanted["shop-api"]["spec"]["policyTypes"] == ["Egress"], (
        "ingress stays open without appIngressFrom"
    )
    assert "shop-redis" not in wanted


def test_every_component_owns_its_policy() -> None:
    backend = backend_from(LOCKED_DOWN)
    for component in COMPONENTS:
        if component.label in APP:
            policy = present(build_app_network_policy(backend, component.label))
            assert policy["metadata"]["labels"]["app.kubernetes.io/component"] == component.label.value
            selector = policy["spec"]["podSelector"]["matchLabels"]
            assert selector["app.kubernetes.io/component"] == component.label.value


# ---- the operator's own pods ---------------------------------------------------------------------

OPERATOR_PODS = OperatorPods(
    namespace="sbo-system",
    labels={"app.kubernetes.io/name": "scalable-backend-operator", "app.kubernetes.io/instance": "sbo"},
)


@pytest.mark.parametrize(
    "spec", [pytest.param({}, id="default"), pytest.param(LOCKED_DOWN, id="locked-down")]
)
def test_postgres_admits_the_operators_pods_on_5432_when_it_runs_in_the_cluster(spec: dict[str, Any]) -> None:
    """Its probes elect and promote; the rule names the operator's namespace and pods, nothing wider."""
    backend = backend_from(spec)
    without = present(build_postgres_network_policy(backend))
    policy = present(build_postgres_network_policy(backend, operator_pods=OPERATOR_PODS))
    own, operator = policy["spec"]["ingress"]
    assert own == without["spec"]["ingress"][0]
    assert operator == {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "sbo-system"}},
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/instance": "sbo",
                        "app.kubernetes.io/name": "scalable-backend-operator",
                    }
                },
            }
        ],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    }
    assert {**policy["spec"], "ingress": [own]} == without["spec"], "egress and the selector stay"
