"""The Redis builders: targeted properties."""

from __future__ import annotations

from typing import Any

import pytest

from sbo_operator.builders.redis import (
    build_redis_config_map,
    build_redis_secret,
    build_redis_statefulset,
    render_redis_conf,
)
from tests.unit.factories import RANDOM_BYTES, backend_from

pytestmark = pytest.mark.unit

Manifest = dict[str, Any]


def present(manifest: Manifest | None) -> Manifest:
    assert manifest is not None
    return manifest


def test_disabled_redis_builds_nothing() -> None:
    backend = backend_from({"redis": {"enabled": False}, "postgres": {"enabled": False}})
    assert build_redis_statefulset(backend) is None
    assert build_redis_secret(backend, existing_data=None, random_bytes=RANDOM_BYTES) is None


def test_redis_conf_has_maxmemory_in_bytes_and_the_policy() -> None:
    conf = render_redis_conf(
        backend_from({"redis": {"maxMemory": "256Mi", "evictionPolicy": "volatile-ttl"}})
    )
    assert "maxmemory 268435456\n" in conf
    assert "maxmemory-policy volatile-ttl\n" in conf
    assert "appendonly no\n" in conf
    assert "requirepass" not in conf


def test_redis_is_a_pure_cache_without_persistence() -> None:
    statefulset = present(build_redis_statefulset(backend_from({})))
    assert "volumeClaimTemplates" not in statefulset["spec"]
    volumes = {volume["name"]: volume for volume in statefulset["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_redis_persistence_adds_a_claim_and_the_append_only_file() -> None:
    backend = backend_from({"redis": {"persistence": {"size": "2Gi", "storageClassName": "fast"}}})
    statefulset = present(build_redis_statefulset(backend))
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"] == {"requests": {"storage": "2Gi"}}
    assert claim["spec"]["storageClassName"] == "fast"
    assert "data" not in {volume["name"] for volume in statefulset["spec"]["template"]["spec"]["volumes"]}
    assert "appendonly yes\n" in present(build_redis_config_map(backend))["data"]["redis.conf"]


def test_redis_runs_the_official_image_as_uid_999_with_the_password_from_the_secret() -> None:
    pod = present(build_redis_statefulset(backend_from({"redis": {"version": "7.4"}})))["spec"]["template"][
        "spec"
    ]
    assert pod["securityContext"]["runAsUser"] == 999
    (redis,) = pod["containers"]
    assert redis["image"] == "redis:7.4"
    env = {variable["name"]: variable for variable in redis["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "shop-redis", "key": "password"}}


def test_redis_memory_defaults_to_one_and_a_half_max_memory() -> None:
    redis = present(build_redis_statefulset(backend_from({"redis": {"maxMemory": "256Mi"}})))
    resources = redis["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"memory": "384Mi"}


def test_a_config_change_rolls_the_redis_pod() -> None:
    def hash_of(policy: str) -> str:
        backend = backend_from({"redis": {"evictionPolicy": policy}})
        annotations = present(build_redis_statefulset(backend))["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["sbo.dev/config-hash"])

    assert hash_of("allkeys-lru") != hash_of("noeviction")


def test_secrets_keep_existing_passwords() -> None:
    backend = backend_from({})
    first = present(build_redis_secret(backend, existing_data=None, random_bytes=RANDOM_BYTES))
    again = present(build_redis_secret(backend, existing_data=first["data"], random_bytes=bytes(32)))
    assert again == first
    kept = present(build_redis_secret(backend, existing_data=first["data"]))
    assert kept == first
    with pytest.raises(ValueError, match="random_bytes"):
        build_redis_secret(backend, existing_data=None)
