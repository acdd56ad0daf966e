"""Generated passwords and Secret data."""

from __future__ import annotations

import base64

import pytest

from sbo_operator.builders.secrets import (
    decode_secret_data,
    derive_password,
    encode_secret_data,
    existing_or_derived_password,
)
from tests.unit.factories import RANDOM_BYTES

pytestmark = pytest.mark.unit


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
