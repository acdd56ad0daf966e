"""What every ScalableBackend API model shares: the wire conventions and the schema helpers.

The invariant: one base model for the whole API (``v1alpha1`` and ``autoscaling``), so every
object on the wire is camelCase, frozen in Python and rejects unknown fields the same way.

* Optional fields are typed ``X | None`` and default to None; the CRD generator
  (``sbo_operator.api.crd``) drops every ``default: null``, because absent already means None.
* CEL rules sit in ``x-kubernetes-validations`` on the model (:func:`cel_rules`) and are mirrored
  by a pydantic validator raising the same message, so Python-side parsing rejects what the
  apiserver rejects.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["MAX_REPLICAS", "ApiModel", "cel_rules", "schema_default"]

# The most pods one Deployment of the stack runs. spec.api.replicas, spec.worker.replicas and
# every autoscaling bound share it, so the autoscaler never decides a count the spec cannot hold
# (its scale patch would be refused forever).
MAX_REPLICAS = 1000


def cel_rules(*rules: dict[str, str]) -> dict[str, Any]:
    """The model-level ``json_schema_extra`` carrying CEL rules verbatim for the CRD generator."""
    return {"x-kubernetes-validations": list(rules)}


def schema_default(value: Any) -> dict[str, Any]:
    """A field-level ``json_schema_extra`` giving the CRD an explicit ``default``.

    Pydantic leaves ``default_factory`` defaults out of the JSON schema; nested objects need
    ``default: {}`` in the CRD so that the apiserver also applies the defaults inside them.
    """
    return {"default": value}


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )
