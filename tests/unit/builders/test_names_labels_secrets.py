"""Names, labels, selectors, owner references and password handling."""

from __future__ import annotations

import base64

import pytest

from sbo_operator.api.v1alpha1 import MAX_NAME_LENGTH
from sbo_operator.builders.labels import Component, api_selector_string, common_labels, selector_labels
from sbo_operator.builders.names import child_names, service_host
from sbo_operator.builders.secrets import (
    decode_secret_data,
    derive_password,
    encode_secret_data,
    existing_or_derived_password,
)
from tests.unit.factories import RANDOM_BYTES, backend_from

pytestmark = pytest.mark.unit


def test_child_names_are_predictable() -> None:
    names = child_names(backend_from({}))
    assert (names.api, names.worker, names.service_account) == ("shop-api", "shop-worker", "shop-app")
    assert (names.redis, names.redis_config) == ("shop-redis", "shop-redis-config")
    assert (names.postgres_primary, names.postgres_replica) == (
        "shop-postgres-primary",
        "shop-postgres-replica",
    )
    assert (names.postgres_read_write, names.postgres_read_only) == ("shop-postgres-rw", "shop-postgres-ro")
    assert (names.postgres_secret, names.postgres_config) == ("shop-postgres-app", "shop-postgres-config")
    assert service_host(names.api, "demo") == "shop-api.demo.svc"


def test_the_longest_name_keeps_every_child_name_a_dns_label() -> None:
    names = child_names(backend_from({}, name="a" * MAX_NAME_LENGTH))
    for name in (names.postgres_replica, names.postgres_config, names.redis_config, names.postgres_secret):
        assert len(name) <= 63


def test_selector_is_a_subset_of_the_labels_and_excludes_mutable_ones() -> None:
    backend = backend_from({})
    selector = selector_labels(backend, Component.API)
    labels = common_labels(backend, Component.API)
    assert selector.items() <= labels.items()
    assert set(selector) == {
        "app.kubernetes.io/component",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/name",
    }
    assert api_selector_string(backend) == (
        "app.kubernetes.io/component=api,app.kubernetes.io/instance=shop,app.kubernetes.io/name=scalable-backend"
    )


def test_two_backends_in_one_namespace_select_disjoint_pods() -> None:
    assert selector_labels(backend_from({}, name="a"), Component.API) != selector_labels(
        backend_from({}, name="b"), Component.API
    )


def test_derived_passwords_are_long_url_safe_and_distinct_per_purpose() -> None:
    app = derive_password(RANDOM_BYTES, purpose="postgres-app")
    replication = derive_password(RANDOM_BYTES, purpose="postgres-replication")
    assert app != replication
    assert len(app) == 43
    assert set(app) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert derive_password(bytes(reversed(RANDOM_BYTES)), purpose="postgres-app") != app


def test_fewer_than_32_random_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        derive_password(b"x" * 31, purpose="redis")


def test_an_existing_password_is_kept_and_needs_no_random_bytes() -> None:
    existing = {"password": "kept"}
    assert existing_or_derived_password(existing, key="password", random_bytes=None, purpose="p") == "kept"
    with pytest.raises(ValueError, match="random_bytes"):
        existing_or_derived_password({}, key="password", random_bytes=None, purpose="p")


def test_secret_data_round_trips_and_skips_garbage() -> None:
    data = encode_secret_data({"b": "2", "a": "1"})
    assert list(data) == ["a", "b"]
    assert data["a"] == base64.b64encode(b"1").decode()
    assert decode_secret_data({**data, "bad": "%%%"}) == {"a": "1", "b": "2"}
    assert decode_secret_data(None) == {}
