"""Types shared by the api, the worker and the data services: images, env, resources, selectors.

The invariant: each type admits at admission exactly what it admits in Python (patterns and CEL
rules are mirrored by validators with the same message).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator

from sbo_operator.api.base import ApiModel, cel_rules
from sbo_operator.api.v1alpha1.quantities import Quantity

__all__ = [
    "DNS_LABEL_PATTERN",
    "DNS_SUBDOMAIN_PATTERN",
    "ENV_NAME_PATTERN",
    "HTTP_PATH_PATTERN",
    "IMAGE_MESSAGE",
    "IMAGE_PATTERN",
    "SQL_IDENTIFIER_PATTERN",
    "CommandList",
    "ConfigMapKeySelector",
    "DnsSubdomain",
    "EnvList",
    "EnvVar",
    "EnvVarSource",
    "Image",
    "ImagePullPolicy",
    "ObjectFieldSelector",
    "ResourceFieldSelector",
    "ResourceRequirements",
    "SecretKeySelector",
]

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
IMAGE_PATTERN = r"^\S+$"
HTTP_PATH_PATTERN = r"^/\S*$"
# A PostgreSQL identifier that needs no quoting.
SQL_IDENTIFIER_PATTERN = r"^[a-z_][a-z0-9_]*$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


# ---- shared pieces ----------------------------------------------------------------------------------


class ImagePullPolicy(StrEnum):
    """When the kubelet pulls the image."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class ResourceRequirements(ApiModel):
    """Compute resources of one container, as in the Kubernetes ResourceRequirements."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=16,
        description="Minimum resources the scheduler reserves, e.g. {cpu: 100m, memory: 128Mi}.",
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=16,
        description="Maximum resources the container may use, e.g. {memory: 256Mi}.",
    )


class SecretKeySelector(ApiModel):
    """One key of a Secret in the ScalableBackend's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(min_length=1, max_length=253, description="Key inside the Secret.")
    optional: bool | None = Field(
        default=None, description="Start the container even if the Secret or key does not exist."
    )


class ConfigMapKeySelector(ApiModel):
    """One key of a ConfigMap in the ScalableBackend's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the ConfigMap.")
    key: str = Field(min_length=1, max_length=253, description="Key inside the ConfigMap.")
    optional: bool | None = Field(
        default=None, description="Start the container even if the ConfigMap or key does not exist."
    )


class ObjectFieldSelector(ApiModel):
    """A field of the pod, e.g. metadata.name or status.podIP."""

    field_path: str = Field(
        min_length=1, max_length=256, description="Path of the field, e.g. metadata.namespace."
    )
    api_version: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="Version of the schema the path is written in. Default: v1."
    )


class ResourceFieldSelector(ApiModel):
    """A resource limit or request of a container, e.g. limits.memory."""

    resource: str = Field(min_length=1, max_length=256, description="The resource, e.g. limits.cpu.")
    container_name: Annotated[str, Field(max_length=63)] | None = Field(
        default=None,
        description="Container whose resource is read. Default: the container the variable is in.",
    )
    divisor: Quantity | None = Field(
        default=None, description="Unit the value is expressed in, e.g. 1Mi. Default: 1."
    )


_ONE_SOURCE_RULE = (
    "(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0)"
    " + (has(self.fieldRef) ? 1 : 0) + (has(self.resourceFieldRef) ? 1 : 0) == 1"
)
_ONE_SOURCE_MESSAGE = (
    "valueFrom: set exactly one of secretKeyRef, configMapKeyRef, fieldRef and resourceFieldRef"
)


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from. Exactly one source."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules({"rule": _ONE_SOURCE_RULE, "message": _ONE_SOURCE_MESSAGE})
    )

    secret_key_ref: SecretKeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: ConfigMapKeySelector | None = Field(default=None, description="A key of a ConfigMap.")
    field_ref: ObjectFieldSelector | None = Field(default=None, description="A field of the pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(
        default=None, description="A resource limit or request of a container."
    )

    @model_validator(mode="after")
    def _check_cel_rules(self) -> EnvVarSource:
        sources = (self.secret_key_ref, self.config_map_key_ref, self.field_ref, self.resource_field_ref)
        if sum(source is not None for source in sources) != 1:
            raise ValueError(_ONE_SOURCE_MESSAGE)
        return self


_VALUE_OR_SOURCE_RULE = "!(has(self.value) && has(self.valueFrom))"
_VALUE_OR_SOURCE_MESSAGE = "env: set at most one of value and valueFrom"


class EnvVar(ApiModel):
    """An environment variable, as in the Kubernetes EnvVar."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules({"rule": _VALUE_OR_SOURCE_RULE, "message": _VALUE_OR_SOURCE_MESSAGE})
    )

    name: str = Field(
        min_length=1, max_length=256, pattern=ENV_NAME_PATTERN, description="Name of the variable."
    )
    value: Annotated[str, Field(max_length=32768)] | None = Field(
        default=None, description="Literal value. $(VAR) references to earlier variables are expanded."
    )
    value_from: EnvVarSource | None = Field(
        default=None, description="Read the value from a Secret, ConfigMap, pod field or resource."
    )

    @model_validator(mode="after")
    def _check_cel_rules(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(_VALUE_OR_SOURCE_MESSAGE)
        return self


def _unique_env_names(env: list[EnvVar]) -> list[EnvVar]:
    # Mirrors x-kubernetes-list-type: map, which makes the apiserver reject duplicate names.
    seen: set[str] = set()
    for variable in env:
        if variable.name in seen:
            raise ValueError(f"duplicate environment variable name {variable.name!r}")
        seen.add(variable.name)
    return env


EnvList = Annotated[
    list[EnvVar],
    AfterValidator(_unique_env_names),
    Field(
        max_length=128,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    ),
]

CommandList = Annotated[
    list[Annotated[str, Field(max_length=4096)]],
    Field(min_length=1, max_length=64),
]

# As for quantities, the rule's message is printed beside the bare regular expression.
_IMAGE_RULE = f"self.matches(r'{IMAGE_PATTERN}')"
IMAGE_MESSAGE = "image must not contain whitespace, e.g. registry.example.com/shop:1.0"


def _check_image(image: str) -> str:
    if not re.fullmatch(IMAGE_PATTERN, image):
        raise ValueError(IMAGE_MESSAGE)
    return image


Image = Annotated[
    str,
    Field(min_length=1, max_length=512),
    AfterValidator(_check_image),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 512,
            "pattern": IMAGE_PATTERN,
            "x-kubernetes-validations": [{"rule": _IMAGE_RULE, "message": IMAGE_MESSAGE}],
        }
    ),
]
DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
