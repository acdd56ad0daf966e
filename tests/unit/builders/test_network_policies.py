"""NetworkPolicies: PostgreSQL and Redis accept only this backend's pods."""

from __future__ import annotations

from typing import Any

import pytest

from sbo_operator.builders.network_policies import build_postgres_network_policy, build_redis_network_policy
from tests.unit.factories import backend_from

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
