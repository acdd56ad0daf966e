"""Kubernetes resource quantities ("128Mi", "500m", "1e3"): the schema type and the parser.

The invariant: a string admitted by ``QUANTITY_PATTERN`` (the CRD's pattern and CEL rule) is one
:func:`parse_quantity` reads and one the Kubernetes parsers read, with the same value.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

__all__ = ["QUANTITY_MESSAGE", "QUANTITY_PATTERN", "Quantity", "parse_quantity"]


# A Kubernetes resource.Quantity without a sign: "128Mi", "0.5", "100m", "1e3". Stricter than the
# pattern in the Kubernetes OpenAPI (no fractional exponents), matching what the parsers accept.
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]+))?$"
)


_QUANTITY_SUFFIXES = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "n": Decimal(10) ** -9,
    "u": Decimal(10) ** -6,
    "m": Decimal(10) ** -3,
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
}


def parse_quantity(quantity: str) -> Decimal:
    """The value of a Kubernetes quantity matching QUANTITY_PATTERN, e.g. "128Mi" -> 134217728."""
    if not re.fullmatch(QUANTITY_PATTERN, quantity):
        raise ValueError(f"not a quantity: {quantity!r}")
    for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"):
        if quantity.endswith(suffix):
            return Decimal(quantity[: -len(suffix)]) * _QUANTITY_SUFFIXES[suffix]
    last = quantity[-1]
    if last in _QUANTITY_SUFFIXES:
        return Decimal(quantity[:-1]) * _QUANTITY_SUFFIXES[last]
    # Plain numbers and decimal exponents ("1e3"): Decimal reads both.
    return Decimal(quantity)


def _quantity_from_int(value: Any) -> Any:
    # x-kubernetes-int-or-string admits integers; normalise them so the model holds one type.
    # bool is an int subclass but not a quantity.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


# For a pattern the apiserver only prints the bare regular expression; this rule's message, printed
# beside it, says what to write. It also rejects negative integers, which the pattern (applied to
# strings only) lets through.
_QUANTITY_RULE = f"type(self) == string ? self.matches(r'{QUANTITY_PATTERN}') : self >= 0"
QUANTITY_MESSAGE = (
    "must be a quantity: a non-negative number and an optional unit, no space, e.g. 500m, 2, 256Mi "
    "or 1Gi (binary units Ki Mi Gi Ti Pi Ei, decimal units n u m k M G T P E)"
)


def _check_quantity(quantity: str) -> str:
    # Mirrors _QUANTITY_RULE; negative integers arrive here as strings and fail the pattern.
    if not re.fullmatch(QUANTITY_PATTERN, quantity):
        raise ValueError(QUANTITY_MESSAGE)
    return quantity


# A quantity in the CRD is int-or-string; strings must match the quantity pattern.
Quantity = Annotated[
    str,
    BeforeValidator(_quantity_from_int),
    Field(max_length=64),
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "maxLength": 64,
            "x-kubernetes-validations": [{"rule": _QUANTITY_RULE, "message": QUANTITY_MESSAGE}],
        }
    ),
]
