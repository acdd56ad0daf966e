"""Children's names, derived from the backend's."""

from __future__ import annotations

import pytest

from sbo_operator.api.v1alpha1 import MAX_NAME_LENGTH
from sbo_operator.builders.names import child_names, service_host
from tests.unit.factories import backend_from

pytestmark = pytest.mark.unit


def test_child_names_are_predictable() -> None:
    names = child_names(backend_from({}))
    assert (names.api, names.worker, names.service_account) == ("shop-api", "shop-worker", "shop-app")
    assert (names.redis, names.redis_config) == ("shop-redis", "shop-redis-config")
    assert (names.postgres_instances, names.postgres_headless) == ("shop-postgres", "shop-postgres-headless")
    assert names.postgres_operator_secret == "shop-postgres-operator"
    assert (names.postgres_primary, names.postgres_replica) == (  # the old shape's
        "shop-postgres-primary",
        "shop-postgres-replica",
    )
    assert (names.postgres_read_write, names.postgres_read_only) == ("shop-postgres-rw", "shop-postgres-ro")
    assert (names.postgres_secret, names.postgres_config) == ("shop-postgres-app", "shop-postgres-config")
    assert service_host(names.api, "demo") == "shop-api.demo.svc"


def test_the_longest_name_keeps_every_child_name_a_dns_label() -> None:
    names = child_names(backend_from({}, name="a" * MAX_NAME_LENGTH))
    for name in (
        names.postgres_replica,
        names.postgres_config,
        names.redis_config,
        names.postgres_secret,
        names.postgres_operator_secret,
    ):
        assert len(name) <= 63
