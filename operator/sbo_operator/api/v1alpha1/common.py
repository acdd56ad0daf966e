"""Types shared by the api, the worker and the data services: env, resources, selectors.

The invariant: each type admits at admission exactly what it admits in Python (patterns and CEL
rules are mirrored by validators with the same message).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from sbo_operator.api.base import ApiModel, cel_rules
from sbo_operator.api.formats import (
    ConfigMapKey,
    ContainerName,
    DnsSubdomain,
    EnvName,
    FieldPath,
    FieldPathVersion,
    StringFormat,
)
from sbo_operator.api.v1alpha1.quantities import Quantity, parse_quantity

__all__ = [
    "DIVISOR_MESSAGE",
    "ENV_RESOURCE_MESSAGE",
    "REQUEST_ABOVE_LIMIT_MESSAGE",
    "RESOURCE_NAME_MESSAGE",
    "CommandList",
    "ConfigMapKeySelector",
    "EnvList",
    "EnvVar",
    "EnvVarSource",
    "ImagePullPolicy",
    "ObjectFieldSelector",
    "ResourceFieldSelector",
    "ResourceRequirements",
    "SecretKeySelector",
]

# ---- shared pieces ----------------------------------------------------------------------------------


class ImagePullPolicy(StrEnum):
    """When the kubelet pulls the image."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


# What a container may request (the apiserver refuses a pod asking for anything else): the
# built-in resources, huge pages, and extended resources, which are domain-qualified (vendor/name).
_RESOURCE_NAME_PATTERN = (
    r"^(cpu|memory|ephemeral-storage|hugepages-[-a-zA-Z0-9]+"
    r"|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[a-zA-Z0-9]([-._a-zA-Z0-9]*[a-zA-Z0-9])?)$"
)
RESOURCE_NAME_MESSAGE = (
    "resource names must be cpu, memory, ephemeral-storage, hugepages-<size> "
    "or a domain-qualified extended resource, e.g. example.com/gpu"
)


def _resource_names_rule(field: str) -> str:
    return f"!has(self.{field}) || self.{field}.all(name, name.matches(r'{_RESOURCE_NAME_PATTERN}'))"


# isQuantity guards: a malformed quantity is reported by its own rule, not as a CEL error here.
_REQUEST_WITHIN_LIMIT_RULE = (
    "!has(self.requests) || !has(self.limits) || self.requests.all(name, !(name in self.limits)"
    " || !isQuantity(string(self.requests[name])) || !isQuantity(string(self.limits[name]))"
    " || quantity(string(self.requests[name])).compareTo(quantity(string(self.limits[name]))) <= 0)"
)
REQUEST_ABOVE_LIMIT_MESSAGE = (
    "a request must not exceed the limit of the same resource; raise the limit or lower the request"
)


class ResourceRequirements(ApiModel):
    """Compute resources of one container, as in the Kubernetes ResourceRequirements."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            {
                "rule": _resource_names_rule("requests"),
                "message": RESOURCE_NAME_MESSAGE,
                "fieldPath": ".requests",
            },
            {
                "rule": _resource_names_rule("limits"),
                "message": RESOURCE_NAME_MESSAGE,
                "fieldPath": ".limits",
            },
            {
                "rule": _REQUEST_WITHIN_LIMIT_RULE,
                "message": REQUEST_ABOVE_LIMIT_MESSAGE,
                "fieldPath": ".requests",
            },
        )
    )

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

    @model_validator(mode="after")
    def _check_cel_rules(self) -> ResourceRequirements:
        for field, resources in (("requests", self.requests), ("limits", self.limits)):
            if not all(re.fullmatch(_RESOURCE_NAME_PATTERN, name) for name in resources):
                raise ValueError(f"{field}: {RESOURCE_NAME_MESSAGE}")
        for name, request in self.requests.items():
            if name in self.limits and parse_quantity(request) > parse_quantity(self.limits[name]):
                raise ValueError(f"requests.{name}: {REQUEST_ABOVE_LIMIT_MESSAGE}")
        return self


class SecretKeySelector(ApiModel):
    """One key of a Secret in the ScalableBackend's namespace."""

    name: DnsSubdomain = Field(description="Name of the Secret.")
    key: ConfigMapKey = Field(description="Key inside the Secret.")
    optional: bool | None = Field(
        default=None, description="Start the container even if the Secret or key does not exist."
    )


class ConfigMapKeySelector(ApiModel):
    """One key of a ConfigMap in the ScalableBackend's namespace."""

    name: DnsSubdomain = Field(description="Name of the ConfigMap.")
    key: ConfigMapKey = Field(description="Key inside the ConfigMap.")
    optional: bool | None = Field(
        default=None, description="Start the container even if the ConfigMap or key does not exist."
    )


class ObjectFieldSelector(ApiModel):
    """A field of the pod, e.g. metadata.name or status.podIP."""

    field_path: FieldPath = Field(description="Path of the field, e.g. metadata.namespace.")
    api_version: FieldPathVersion | None = Field(
        default=None, description="Version of the schema the path is written in. Default: v1."
    )


# The resources the downward API exposes, and the divisors it accepts for each (the apiserver
# refuses the pod otherwise).
_ENV_RESOURCE_PATTERN = r"^(limits|requests)\.(cpu|memory|ephemeral-storage|hugepages-[-a-zA-Z0-9]+)$"
ENV_RESOURCE_MESSAGE = (
    "resource must be limits.<name> or requests.<name>, the name cpu, memory, ephemeral-storage or "
    "hugepages-<size>, e.g. limits.memory"
)
_CPU_DIVISORS = ("1m", "1")
_BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")


def _cel_quantity_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"quantity('{value}')" for value in values) + "]"


_DIVISOR_RULE = (
    "!has(self.divisor) || !isQuantity(string(self.divisor)) || "
    f"(self.resource.endsWith('.cpu') ? {_cel_quantity_list(_CPU_DIVISORS)}"
    f" : {_cel_quantity_list(_BYTE_DIVISORS)})"
    ".exists(unit, unit.compareTo(quantity(string(self.divisor))) == 0)"
)
DIVISOR_MESSAGE = (
    "divisor must be 1m or 1 for cpu, and 1 or a power of 1k or 1Ki (1k, 1M, ..., 1Ki, 1Mi, ...) "
    "for memory, ephemeral-storage and hugepages"
)


class ResourceFieldSelector(ApiModel):
    """A resource limit or request of a container, e.g. limits.memory."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            {"rule": _DIVISOR_RULE, "message": DIVISOR_MESSAGE, "fieldPath": ".divisor"}
        )
    )

    resource: Annotated[str, StringFormat(_ENV_RESOURCE_PATTERN, ENV_RESOURCE_MESSAGE, max_length=256)] = (
        Field(
            description=(
                "The resource: limits or requests, then cpu, memory, ephemeral-storage or "
                "hugepages-<size>, e.g. limits.cpu."
            ),
        )
    )
    container_name: ContainerName | None = Field(
        default=None,
        description="Container whose resource is read. Default: the container the variable is in.",
    )
    divisor: Quantity | None = Field(
        default=None, description="Unit the value is expressed in, e.g. 1Mi. Default: 1."
    )

    @model_validator(mode="after")
    def _check_cel_rules(self) -> ResourceFieldSelector:
        units = _CPU_DIVISORS if self.resource.endswith(".cpu") else _BYTE_DIVISORS
        if self.divisor is not None and parse_quantity(self.divisor) not in map(parse_quantity, units):
            raise ValueError(DIVISOR_MESSAGE)
        return self


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

    name: EnvName = Field(description="Name of the variable.")
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
