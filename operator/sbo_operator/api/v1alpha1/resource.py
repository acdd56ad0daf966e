"""The ScalableBackend object: its group, version and names, its metadata and the whole resource.

The invariant: a name admitted here (``NAME_PATTERN``, ``MAX_NAME_LENGTH``) leaves room for every
child's name and labels.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from sbo_operator.api.base import ApiModel, schema_default
from sbo_operator.api.v1alpha1.spec import (
    SWITCHOVER_TO_MESSAGE,
    ScalableBackendSpec,
    check_switchover_target,
)
from sbo_operator.api.v1alpha1.status import UNOBSERVED_GENERATION, ScalableBackendStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "MAX_NAME_LENGTH",
    "NAME_FORMAT_MESSAGE",
    "NAME_MESSAGE",
    "NAME_PATTERN",
    "PLURAL",
    "SHORT_NAME",
    "SINGULAR",
    "SWITCHOVER_TO_RULE",
    "VERSION",
    "BackendMetadata",
    "ScalableBackend",
]

GROUP = "sbo.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ScalableBackend"
PLURAL = "scalablebackends"
SINGULAR = "scalablebackend"
SHORT_NAME = "sb"

# The longest child-derived label value is the StatefulSet pods' controller-revision-hash,
# "<name>-postgres-replica-<hash>", where the hash is at most 10 characters (a uint32 in decimal,
# safe-encoded). Label values are capped at 63, so 63 - len("-postgres-replica-") - 10 = 35.
# The pod name "<name>-postgres-replica-<ordinal>" (also a label, statefulset.kubernetes.io/pod-name)
# and "<name>-migrations-<10 hex>" (the Job's job-name label) are shorter.
MAX_NAME_LENGTH = 63 - len("-postgres-replica-") - 10
# Services are named after the ScalableBackend, and Service names must be DNS-1035 labels.
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


# ---- the object -------------------------------------------------------------------------------------

NAME_MESSAGE = (
    f"metadata.name must be at most {MAX_NAME_LENGTH} characters, so that the children's names "
    "and labels (e.g. <name>-postgres-replica-<hash>) fit in 63"
)
NAME_FORMAT_MESSAGE = (
    "metadata.name must start with a letter and contain only lowercase letters, digits and '-', "
    "because the Services are named after it"
)

# spec.postgres.switchover.to names a pod of this backend, so the rule sits at the root, where
# metadata.name is in reach: "<name>-postgres-<ordinal>", the ordinal within 0..readReplicas.
_SWITCHOVER_TO = "self.spec.postgres.switchover.to"
_ORDINAL = f"{_SWITCHOVER_TO}.substring(size(self.metadata.name) + {len('-postgres-')})"
SWITCHOVER_TO_RULE = (
    "!has(self.spec.postgres) || !has(self.spec.postgres.switchover)"
    f" || ({_SWITCHOVER_TO}.startsWith(self.metadata.name + '-postgres-')"
    f" && {_ORDINAL}.matches('^(0|[1-9][0-9]?)$')"
    f" && int({_ORDINAL})"
    " <= (has(self.spec.postgres.readReplicas) ? self.spec.postgres.readReplicas : 1))"
)


class BackendMetadata(BaseModel):
    """The part of metadata the builders use. Everything else the apiserver adds is ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    name: str = Field(description="Name of the ScalableBackend; its children are named after it.")
    namespace: str = Field(description="Namespace of the ScalableBackend and all its children.")
    uid: str | None = Field(
        default=None, description="UID, for the children's ownerReferences. Absent before creation."
    )
    generation: int | None = Field(default=None, description="Generation of the spec.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        # Mirrors the root CEL rule and the metadata.name schema.
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(NAME_MESSAGE)
        if not re.fullmatch(NAME_PATTERN, name):
            raise ValueError(NAME_FORMAT_MESSAGE)
        return name


class ScalableBackend(ApiModel):
    """A backend stack: api, optional worker, Redis and PostgreSQL, from one manifest."""

    api_version: Literal["sbo.dev/v1alpha1"] = Field(
        default="sbo.dev/v1alpha1", description="sbo.dev/v1alpha1."
    )
    kind: Literal["ScalableBackend"] = Field(default="ScalableBackend", description="ScalableBackend.")
    metadata: BackendMetadata = Field(description="Standard object metadata.")
    spec: ScalableBackendSpec = Field(description="What the backend stack should look like.")
    status: ScalableBackendStatus | None = Field(
        default=None,
        description="What the operator observed.",
        json_schema_extra=schema_default({"observedGeneration": UNOBSERVED_GENERATION}),
    )

    @model_validator(mode="after")
    def _check_root_rules(self) -> ScalableBackend:
        # Mirrors SWITCHOVER_TO_RULE.
        try:
            check_switchover_target(self.metadata.name, self.spec.postgres)
        except ValueError:
            raise ValueError(SWITCHOVER_TO_MESSAGE) from None
        return self

    @classmethod
    def from_body(cls, body: Any) -> ScalableBackend:
        """Parse an object as the apiserver returns it (e.g. a Kopf body)."""
        return cls.model_validate(dict(body))
