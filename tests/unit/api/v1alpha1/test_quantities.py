"""Quantities: the pattern admits only what the Kubernetes parser reads, with the same value."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.utils.quantity import parse_quantity as kubernetes_parse_quantity

from sbo_operator.api.v1alpha1 import QUANTITY_PATTERN, parse_quantity

pytestmark = pytest.mark.unit


# Short strings: astronomically large exponents overflow both parsers alike.
@given(st.from_regex(QUANTITY_PATTERN, fullmatch=True).filter(lambda text: len(text) <= 12))
def test_every_string_the_quantity_pattern_admits_is_a_kubernetes_quantity(text: str) -> None:
    assert parse_quantity(text) == kubernetes_parse_quantity(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [("128Mi", 134217728), ("1Gi", 1073741824), ("100m", "0.1"), ("1e3", 1000), ("2k", 2000), ("0.5", "0.5")],
)
def test_parse_quantity(text: str, value: int | str) -> None:
    assert parse_quantity(text) == Decimal(value)
