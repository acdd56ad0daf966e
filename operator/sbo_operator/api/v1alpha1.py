"""The ScalableBackend API (sbo.dev/v1alpha1): spec and status models.

These models are the single source of truth: the CRD schema (``sbo_operator.api.crd``), the CRD
reference docs and the operator's parsing all come from them. Every field has a description,
because it becomes ``kubectl explain`` text.

Conventions (shared with ``sbo_operator.api.autoscaling``):

* camelCase on the wire, snake_case in Python; unknown fields are rejected.
* Optional fields are typed ``X | None`` (so pydantic's error locations stay plain field paths);
  the CRD generator turns ``anyOf [X, null]`` into X, and ``default: null`` is dropped.
* Every CEL rule in ``x-kubernetes-validations`` is mirrored by a pydantic validator raising the
  same message, so Python-side parsing rejects what the apiserver rejects. Transition rules
  (``oldSelf``) are mirrored by :func:`check_spec_transition`.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from sbo_operator.api.autoscaling import AutoscalingSpec, AutoscalingStatus, PrometheusSpec
from sbo_operator.api.conditions import ConditionStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "IMAGE_MESSAGE",
    "KIND",
    "MAX_NAME_LENGTH",
    "MAX_READ_REPLICAS",
    "PLURAL",
    "QUANTITY_MESSAGE",
    "QUANTITY_PATTERN",
    "SHORT_NAME",
    "SINGULAR",
    "VERSION",
    "ApiSpec",
    "ApiStatus",
    "BackendAutoscalingStatus",
    "BackendMetadata",
    "Condition",
    "ConfigMapKeySelector",
    "Endpoints",
    "EnvVar",
    "EnvVarSource",
    "EvictionPolicy",
    "ImagePullPolicy",
    "IngressSpec",
    "MigrationsSpec",
    "ObjectFieldSelector",
    "PostgresSpec",
    "PostgresStatus",
    "PostgresVersion",
    "RedisSpec",
    "RedisStatus",
    "RedisVersion",
    "ResourceFieldSelector",
    "ResourceRequirements",
    "ScalableBackend",
    "ScalableBackendSpec",
    "ScalableBackendStatus",
    "SecretKeySelector",
    "SecretNames",
    "StorageSpec",
    "WorkerSpec",
    "WorkerStatus",
    "check_spec_transition",
    "parse_quantity",
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
# Each replica streams from the primary: the cap keeps max_wal_senders (10) ample and the
# primary's outbound WAL traffic bounded.
MAX_READ_REPLICAS = 5

# A Kubernetes resource.Quantity without a sign: "128Mi", "0.5", "100m", "1e3". Stricter than the
# pattern in the Kubernetes OpenAPI (no fractional exponents), matching what the parsers accept.
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?[0-9]+))?$"
)
# Services are named after the ScalableBackend, and Service names must be DNS-1035 labels.
NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
IMAGE_PATTERN = r"^\S+$"
HTTP_PATH_PATTERN = r"^/\S*$"
# A PostgreSQL identifier that needs no quoting.
SQL_IDENTIFIER_PATTERN = r"^[a-z_][a-z0-9_]*$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


def _drop_null_default(schema: dict[str, Any]) -> None:
    """Keep ``default: null`` out of the CRD schema; absent already means None."""
    schema.pop("default", None)


def _cel(*rules: dict[str, str]) -> dict[str, Any]:
    """The model-level ``json_schema_extra`` carrying CEL rules verbatim for the CRD generator."""
    return {"x-kubernetes-validations": list(rules)}


def _schema_default(value: Any) -> dict[str, Any]:
    """A field-level ``json_schema_extra`` giving the CRD an explicit ``default``.

    Pydantic leaves ``default_factory`` defaults out of the JSON schema; nested objects need
    ``default: {}`` in the CRD so that the apiserver also applies the defaults inside them.
    """
    return {"default": value}


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


class _ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


# ---- shared pieces ----------------------------------------------------------------------------------


class ImagePullPolicy(StrEnum):
    """When the kubelet pulls the image."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class ResourceRequirements(_ApiModel):
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


class SecretKeySelector(_ApiModel):
    """One key of a Secret in the ScalableBackend's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(min_length=1, max_length=253, description="Key inside the Secret.")
    optional: bool | None = Field(
        default=None,
        description="Start the container even if the Secret or key does not exist.",
        json_schema_extra=_drop_null_default,
    )


class ConfigMapKeySelector(_ApiModel):
    """One key of a ConfigMap in the ScalableBackend's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the ConfigMap.")
    key: str = Field(min_length=1, max_length=253, description="Key inside the ConfigMap.")
    optional: bool | None = Field(
        default=None,
        description="Start the container even if the ConfigMap or key does not exist.",
        json_schema_extra=_drop_null_default,
    )


class ObjectFieldSelector(_ApiModel):
    """A field of the pod, e.g. metadata.name or status.podIP."""

    field_path: str = Field(
        min_length=1, max_length=256, description="Path of the field, e.g. metadata.namespace."
    )
    api_version: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        description="Version of the schema the path is written in. Default: v1.",
        json_schema_extra=_drop_null_default,
    )


class ResourceFieldSelector(_ApiModel):
    """A resource limit or request of a container, e.g. limits.memory."""

    resource: str = Field(min_length=1, max_length=256, description="The resource, e.g. limits.cpu.")
    container_name: Annotated[str, Field(max_length=63)] | None = Field(
        default=None,
        description="Container whose resource is read. Default: the container the variable is in.",
        json_schema_extra=_drop_null_default,
    )
    divisor: Quantity | None = Field(
        default=None,
        description="Unit the value is expressed in, e.g. 1Mi. Default: 1.",
        json_schema_extra=_drop_null_default,
    )


_ONE_SOURCE_RULE = (
    "(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0)"
    " + (has(self.fieldRef) ? 1 : 0) + (has(self.resourceFieldRef) ? 1 : 0) == 1"
)
_ONE_SOURCE_MESSAGE = (
    "valueFrom: set exactly one of secretKeyRef, configMapKeyRef, fieldRef and resourceFieldRef"
)


class EnvVarSource(_ApiModel):
    """Where an environment variable's value comes from. Exactly one source."""

    model_config = ConfigDict(
        json_schema_extra=_cel({"rule": _ONE_SOURCE_RULE, "message": _ONE_SOURCE_MESSAGE})
    )

    secret_key_ref: SecretKeySelector | None = Field(
        default=None, description="A key of a Secret.", json_schema_extra=_drop_null_default
    )
    config_map_key_ref: ConfigMapKeySelector | None = Field(
        default=None, description="A key of a ConfigMap.", json_schema_extra=_drop_null_default
    )
    field_ref: ObjectFieldSelector | None = Field(
        default=None, description="A field of the pod.", json_schema_extra=_drop_null_default
    )
    resource_field_ref: ResourceFieldSelector | None = Field(
        default=None,
        description="A resource limit or request of a container.",
        json_schema_extra=_drop_null_default,
    )

    @model_validator(mode="after")
    def _check_cel_rules(self) -> EnvVarSource:
        sources = (self.secret_key_ref, self.config_map_key_ref, self.field_ref, self.resource_field_ref)
        if sum(source is not None for source in sources) != 1:
            raise ValueError(_ONE_SOURCE_MESSAGE)
        return self


_VALUE_OR_SOURCE_RULE = "!(has(self.value) && has(self.valueFrom))"
_VALUE_OR_SOURCE_MESSAGE = "env: set at most one of value and valueFrom"


class EnvVar(_ApiModel):
    """An environment variable, as in the Kubernetes EnvVar."""

    model_config = ConfigDict(
        json_schema_extra=_cel({"rule": _VALUE_OR_SOURCE_RULE, "message": _VALUE_OR_SOURCE_MESSAGE})
    )

    name: str = Field(
        min_length=1, max_length=256, pattern=ENV_NAME_PATTERN, description="Name of the variable."
    )
    value: Annotated[str, Field(max_length=32768)] | None = Field(
        default=None,
        description="Literal value. $(VAR) references to earlier variables are expanded.",
        json_schema_extra=_drop_null_default,
    )
    value_from: EnvVarSource | None = Field(
        default=None,
        description="Read the value from a Secret, ConfigMap, pod field or resource.",
        json_schema_extra=_drop_null_default,
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


_SIZE_GROWS_RULE = "quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) >= 0"
_SIZE_GROWS_MESSAGE = "size may only grow"
_CLASS_IMMUTABLE_RULE = (
    "has(self.storageClassName) == has(oldSelf.storageClassName)"
    " && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)"
)
_CLASS_IMMUTABLE_MESSAGE = "storageClassName is immutable"


class StorageSpec(_ApiModel):
    """A PersistentVolumeClaim per pod. Its size may only grow; its class never changes."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            {"rule": _SIZE_GROWS_RULE, "message": _SIZE_GROWS_MESSAGE, "fieldPath": ".size"},
            {
                "rule": _CLASS_IMMUTABLE_RULE,
                "message": _CLASS_IMMUTABLE_MESSAGE,
                "fieldPath": ".storageClassName",
            },
        )
    )

    size: Quantity = Field(description="Requested size of each volume, e.g. 10Gi. May only grow.")
    storage_class_name: DnsSubdomain | None = Field(
        default=None,
        description="StorageClass of the volumes. Absent: the cluster's default class. Immutable.",
        json_schema_extra=_drop_null_default,
    )


# ---- api --------------------------------------------------------------------------------------------


class MigrationsSpec(_ApiModel):
    """A Job run to completion, once per api pod template, before that template rolls out."""

    command: CommandList = Field(
        description=(
            "Command of the migrations container, e.g. [alembic, upgrade, head]. "
            "Same image and env as the api."
        )
    )
    backoff_limit: int = Field(
        default=1, ge=0, le=10, description="Retries of a failed migrations pod before the Job fails."
    )
    active_deadline_seconds: int = Field(
        default=600, ge=1, le=86400, description="Seconds the migrations Job may run in total."
    )


class IngressSpec(_ApiModel):
    """An Ingress routing a host name to the api Service."""

    host: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Host name served, e.g. shop.example.com.",
    )
    class_name: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None,
        description="IngressClass to use, e.g. nginx. Absent: the cluster's default class.",
        json_schema_extra=_drop_null_default,
    )
    tls_secret_name: DnsSubdomain | None = Field(
        default=None,
        description="Secret with the TLS certificate for the host. Absent: plain HTTP.",
        json_schema_extra=_drop_null_default,
    )


def _default_api_resources() -> ResourceRequirements:
    return ResourceRequirements(requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "256Mi"})


def _default_worker_resources() -> ResourceRequirements:
    return ResourceRequirements(requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "256Mi"})


class ApiSpec(_ApiModel):
    """The HTTP API: a Deployment behind a Service, optionally an Ingress and a migrations Job."""

    image: Image | None = Field(
        default=None,
        description="Image of the api. Absent: spec.image.",
        json_schema_extra=_drop_null_default,
    )
    replicas: int = Field(
        default=2,
        ge=0,
        le=1000,
        description=(
            "Number of api pods. The scale subresource points here. "
            "When autoscaling is set, the autoscaler decides the replicas instead."
        ),
    )
    port: int = Field(default=8000, ge=1, le=65535, description="Port the api container listens on.")
    command: CommandList | None = Field(
        default=None,
        description="Command of the api container. Absent: the image's entrypoint.",
        json_schema_extra=_drop_null_default,
    )
    env: EnvList = Field(
        default_factory=list,
        description=(
            "Extra environment variables, after the injected DATABASE_*/REDIS_* ones. "
            "A name equal to an injected variable replaces it."
        ),
    )
    resources: ResourceRequirements = Field(
        default_factory=_default_api_resources,
        description="Compute resources of the api container.",
        json_schema_extra=_schema_default(
            {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
        ),
    )
    readiness_path: str = Field(
        default="/readyz",
        max_length=1024,
        pattern=HTTP_PATH_PATTERN,
        description="HTTP path of the readiness probe.",
    )
    liveness_path: str = Field(
        default="/healthz",
        max_length=1024,
        pattern=HTTP_PATH_PATTERN,
        description="HTTP path of the liveness probe.",
    )
    migrations: MigrationsSpec | None = Field(
        default=None,
        description="A Job that must succeed before a new api pod template rolls out. Absent: none.",
        json_schema_extra=_drop_null_default,
    )
    ingress: IngressSpec | None = Field(
        default=None,
        description="Expose the api through an Ingress. Absent: in-cluster only.",
        json_schema_extra=_drop_null_default,
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None,
        description="Scale the api from Prometheus metrics. Absent: replicas is fixed.",
        json_schema_extra=_drop_null_default,
    )


class WorkerSpec(_ApiModel):
    """Queue consumers: a Deployment running the same image with another command."""

    image: Image | None = Field(
        default=None,
        description="Image of the worker. Absent: spec.image.",
        json_schema_extra=_drop_null_default,
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Number of worker pods. When autoscaling is set, the autoscaler decides instead.",
    )
    command: CommandList = Field(
        description="Command of the worker container, e.g. [python, -m, app.worker]."
    )
    env: EnvList = Field(
        default_factory=list,
        description=(
            "Extra environment variables, after the injected DATABASE_*/REDIS_* ones. "
            "A name equal to an injected variable replaces it."
        ),
    )
    resources: ResourceRequirements = Field(
        default_factory=_default_worker_resources,
        description="Compute resources of the worker container.",
        json_schema_extra=_schema_default(
            {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
        ),
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None,
        description="Scale the worker from Prometheus metrics. Absent: replicas is fixed.",
        json_schema_extra=_drop_null_default,
    )


# ---- redis ------------------------------------------------------------------------------------------


class RedisVersion(StrEnum):
    """Supported Redis versions (the official `redis:<version>` image)."""

    V7_0 = "7.0"
    V7_2 = "7.2"
    V7_4 = "7.4"


class EvictionPolicy(StrEnum):
    """Redis maxmemory-policy: what Redis evicts when maxMemory is reached."""

    ALLKEYS_LRU = "allkeys-lru"
    ALLKEYS_LFU = "allkeys-lfu"
    ALLKEYS_RANDOM = "allkeys-random"
    VOLATILE_LRU = "volatile-lru"
    VOLATILE_LFU = "volatile-lfu"
    VOLATILE_RANDOM = "volatile-random"
    VOLATILE_TTL = "volatile-ttl"
    NOEVICTION = "noeviction"


class RedisSpec(_ApiModel):
    """A single Redis server with a generated password."""

    enabled: bool = Field(default=True, description="Run Redis. false: no Redis and no REDIS_* variables.")
    version: RedisVersion = Field(default=RedisVersion.V7_2, description="Redis version: 7.0, 7.2 or 7.4.")
    max_memory: Quantity = Field(
        default="256Mi",
        description="Redis maxmemory. Absent resources: the container gets 1.5 times this as memory.",
    )
    eviction_policy: EvictionPolicy = Field(
        default=EvictionPolicy.ALLKEYS_LRU, description="Redis maxmemory-policy."
    )
    persistence: StorageSpec | None = Field(
        default=None,
        description="Append-only file on a PersistentVolumeClaim. Absent: a pure cache, no volume claim.",
        json_schema_extra=_drop_null_default,
    )
    resources: ResourceRequirements | None = Field(
        default=None,
        description="Compute resources of the Redis container. Absent: derived from maxMemory.",
        json_schema_extra=_drop_null_default,
    )


# ---- postgres ---------------------------------------------------------------------------------------


class PostgresVersion(StrEnum):
    """Supported PostgreSQL major versions (the official `postgres:<version>` image)."""

    V15 = "15"
    V16 = "16"
    V17 = "17"


RESERVED_POSTGRES_USERS = ("postgres", "replicator")
RESERVED_POSTGRES_DATABASES = ("postgres", "template0", "template1")

# has() guards: the apiserver also checks the rules against the schema default `{}`, before the
# nested defaults are filled in.
_USER_RULE = "!has(self.user) || (!(self.user in ['postgres', 'replicator']) && !self.user.startsWith('pg_'))"
_USER_MESSAGE = "user must not be postgres, replicator or start with pg_"
_DATABASE_RULE = "!has(self.database) || !(self.database in ['postgres', 'template0', 'template1'])"
_DATABASE_MESSAGE = "database must not be postgres, template0 or template1"
_VERSION_IMMUTABLE_RULE = "!has(self.version) || !has(oldSelf.version) || self.version == oldSelf.version"
_VERSION_IMMUTABLE_MESSAGE = (
    "version is immutable: major upgrades need pg_upgrade, which the operator does not do"
)


def _default_postgres_storage() -> StorageSpec:
    return StorageSpec(size="10Gi")


def _default_postgres_resources() -> ResourceRequirements:
    return ResourceRequirements(requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "512Mi"})


class PostgresSpec(_ApiModel):
    """A PostgreSQL primary and streaming hot-standby read replicas."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            {"rule": _USER_RULE, "message": _USER_MESSAGE, "fieldPath": ".user"},
            {"rule": _DATABASE_RULE, "message": _DATABASE_MESSAGE, "fieldPath": ".database"},
            {"rule": _VERSION_IMMUTABLE_RULE, "message": _VERSION_IMMUTABLE_MESSAGE, "fieldPath": ".version"},
        )
    )

    enabled: bool = Field(
        default=True, description="Run PostgreSQL. false: no PostgreSQL and no DATABASE_* variables."
    )
    version: PostgresVersion = Field(
        default=PostgresVersion.V16, description="PostgreSQL major version: 15, 16 or 17. Immutable."
    )
    database: str = Field(
        default="app",
        min_length=1,
        max_length=63,
        pattern=SQL_IDENTIFIER_PATTERN,
        description="Name of the application database, owned by user.",
    )
    user: str = Field(
        default="app",
        min_length=1,
        max_length=63,
        pattern=SQL_IDENTIFIER_PATTERN,
        description="Name of the application's login role.",
    )
    read_replicas: int = Field(
        default=1,
        ge=0,
        le=MAX_READ_REPLICAS,
        description=f"Streaming hot-standby replicas behind the -ro Service, at most {MAX_READ_REPLICAS}.",
    )
    storage: StorageSpec = Field(
        default_factory=_default_postgres_storage,
        description="Volume of each PostgreSQL pod (primary and replicas).",
        json_schema_extra=_schema_default({"size": "10Gi"}),
    )
    retain_on_delete: bool = Field(
        default=True,
        description="Keep the PersistentVolumeClaims when the ScalableBackend is deleted or scaled down.",
    )
    resources: ResourceRequirements = Field(
        default_factory=_default_postgres_resources,
        description="Compute resources of each PostgreSQL container.",
        json_schema_extra=_schema_default(
            {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
        ),
    )

    @model_validator(mode="after")
    def _check_cel_rules(self) -> PostgresSpec:
        if self.user in RESERVED_POSTGRES_USERS or self.user.startswith("pg_"):
            raise ValueError(f"user: {_USER_MESSAGE}")
        if self.database in RESERVED_POSTGRES_DATABASES:
            raise ValueError(f"database: {_DATABASE_MESSAGE}")
        return self


# ---- spec -------------------------------------------------------------------------------------------


class ScalableBackendSpec(_ApiModel):
    """What the backend stack should look like."""

    image: Image = Field(description="Default image of the api, the worker and the migrations Job.")
    image_pull_policy: ImagePullPolicy = Field(
        default=ImagePullPolicy.IF_NOT_PRESENT, description="Pull policy of the api and worker images."
    )
    run_as_user: int = Field(
        default=10001,
        ge=1,
        le=2147483647,
        description=(
            "Numeric non-root uid (and gid) of the api, worker and migrations containers, "
            "whose root filesystem is read-only (/tmp is writable)."
        ),
    )
    api: ApiSpec = Field(
        default_factory=ApiSpec,
        description="The HTTP API Deployment, Service, Ingress and migrations.",
        json_schema_extra=_schema_default({}),
    )
    worker: WorkerSpec | None = Field(
        default=None,
        description="Queue consumers running the same image. Absent: no worker.",
        json_schema_extra=_drop_null_default,
    )
    redis: RedisSpec = Field(
        default_factory=RedisSpec,
        description="The Redis cache or queue.",
        json_schema_extra=_schema_default({}),
    )
    postgres: PostgresSpec = Field(
        default_factory=PostgresSpec,
        description="The PostgreSQL primary and read replicas.",
        json_schema_extra=_schema_default({}),
    )
    prometheus: PrometheusSpec | None = Field(
        default=None,
        description="Where the autoscaler reads metrics. Absent: the operator-wide default.",
        json_schema_extra=_drop_null_default,
    )


# ---- status -----------------------------------------------------------------------------------------


class Condition(_ApiModel):
    """One aspect of the observed state, in the standard metav1.Condition shape."""

    type: str = Field(
        min_length=1, max_length=316, description="Type of the condition, e.g. Ready or PostgresReady."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase reason for the last transition, for machines.",
    )
    message: str = Field(default="", max_length=32768, description="Details of the transition, for humans.")
    last_transition_time: datetime = Field(description="When the status last changed.")
    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="The .metadata.generation the condition was computed from.",
        json_schema_extra=_drop_null_default,
    )


class ApiStatus(_ApiModel):
    """Observed state of the api Deployment; backs the scale subresource."""

    replicas: int = Field(default=0, ge=0, description="Current api pods (the scale subresource's status).")
    ready_replicas: int = Field(default=0, ge=0, description="Ready api pods.")
    selector: str = Field(
        default="", description="Label selector of the api pods, for the scale subresource."
    )
    ready_summary: str = Field(
        default="", description="Ready out of desired api pods, e.g. 2/3, for kubectl get."
    )

    @classmethod
    def from_counts(cls, *, desired: int, replicas: int, ready_replicas: int, selector: str) -> ApiStatus:
        """The status for the given counts, with ready_summary filled in consistently."""
        return cls(
            replicas=replicas,
            ready_replicas=ready_replicas,
            selector=selector,
            ready_summary=f"{ready_replicas}/{desired}",
        )


class WorkerStatus(_ApiModel):
    """Observed state of the worker Deployment."""

    replicas: int = Field(default=0, ge=0, description="Current worker pods.")
    ready_replicas: int = Field(default=0, ge=0, description="Ready worker pods.")


class PostgresStatus(_ApiModel):
    """Observed state of PostgreSQL."""

    primary_ready: bool = Field(default=False, description="The primary accepts connections.")
    ready_replicas: int = Field(default=0, ge=0, description="Read replicas that are ready.")


class RedisStatus(_ApiModel):
    """Observed state of Redis."""

    ready: bool = Field(default=False, description="Redis accepts connections.")


class Endpoints(_ApiModel):
    """In-cluster addresses of the stack's services."""

    api: str | None = Field(
        default=None,
        description="URL of the api Service, e.g. http://shop-api.demo.svc:80.",
        json_schema_extra=_drop_null_default,
    )
    redis: str | None = Field(
        default=None,
        description="host:port of Redis, e.g. shop-redis.demo.svc:6379.",
        json_schema_extra=_drop_null_default,
    )
    postgres_read_write: str | None = Field(
        default=None,
        description="host:port of the PostgreSQL primary, e.g. shop-postgres-rw.demo.svc:5432.",
        json_schema_extra=_drop_null_default,
    )
    postgres_read_only: str | None = Field(
        default=None,
        description="host:port of the PostgreSQL read replicas, e.g. shop-postgres-ro.demo.svc:5432.",
        json_schema_extra=_drop_null_default,
    )


class SecretNames(_ApiModel):
    """Names of the generated Secrets."""

    app: str | None = Field(
        default=None,
        description="Secret with the application's secret-key (SECRET_KEY in the api and worker pods).",
        json_schema_extra=_drop_null_default,
    )
    postgres: str | None = Field(
        default=None,
        description="Secret with the PostgreSQL user, password, database, host, port and uri.",
        json_schema_extra=_drop_null_default,
    )
    redis: str | None = Field(
        default=None,
        description="Secret with the Redis password.",
        json_schema_extra=_drop_null_default,
    )


class BackendAutoscalingStatus(_ApiModel):
    """The autoscaler's reports, one per scaled Deployment."""

    api: AutoscalingStatus | None = Field(
        default=None, description="Autoscaling of the api.", json_schema_extra=_drop_null_default
    )
    worker: AutoscalingStatus | None = Field(
        default=None, description="Autoscaling of the worker.", json_schema_extra=_drop_null_default
    )


class ScalableBackendStatus(_ApiModel):
    """What the operator observed, written by the operator only."""

    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="The .metadata.generation the status was computed from.",
        json_schema_extra=_drop_null_default,
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=32,
        description="Ready, Reconciling, Stalled, ApiReady, WorkerReady, RedisReady and PostgresReady.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    api: ApiStatus | None = Field(
        default=None, description="The api Deployment.", json_schema_extra=_drop_null_default
    )
    worker: WorkerStatus | None = Field(
        default=None, description="The worker Deployment.", json_schema_extra=_drop_null_default
    )
    postgres: PostgresStatus | None = Field(
        default=None, description="PostgreSQL.", json_schema_extra=_drop_null_default
    )
    redis: RedisStatus | None = Field(
        default=None, description="Redis.", json_schema_extra=_drop_null_default
    )
    endpoints: Endpoints | None = Field(
        default=None,
        description="In-cluster addresses of the stack's services.",
        json_schema_extra=_drop_null_default,
    )
    secrets: SecretNames | None = Field(
        default=None, description="Names of the generated Secrets.", json_schema_extra=_drop_null_default
    )
    autoscaling: BackendAutoscalingStatus | None = Field(
        default=None,
        description="The autoscaler's reports for the api and the worker.",
        json_schema_extra=_drop_null_default,
    )


# ---- the object -------------------------------------------------------------------------------------

NAME_MESSAGE = (
    f"metadata.name must be at most {MAX_NAME_LENGTH} characters, so that the children's names "
    "and labels (e.g. <name>-postgres-replica-<hash>) fit in 63"
)
NAME_FORMAT_MESSAGE = (
    "metadata.name must start with a letter and contain only lowercase letters, digits and '-', "
    "because the Services are named after it"
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


class ScalableBackend(_ApiModel):
    """A backend stack: api, optional worker, Redis and PostgreSQL, from one manifest."""

    api_version: Literal["sbo.dev/v1alpha1"] = Field(
        default="sbo.dev/v1alpha1", description="sbo.dev/v1alpha1."
    )
    kind: Literal["ScalableBackend"] = Field(default="ScalableBackend", description="ScalableBackend.")
    metadata: BackendMetadata = Field(description="Standard object metadata.")
    spec: ScalableBackendSpec = Field(description="What the backend stack should look like.")
    status: ScalableBackendStatus | None = Field(default=None, description="What the operator observed.")

    @classmethod
    def from_body(cls, body: Any) -> ScalableBackend:
        """Parse an object as the apiserver returns it (e.g. a Kopf body)."""
        return cls.model_validate(dict(body))


# ---- transition rules -------------------------------------------------------------------------------


def check_spec_transition(old: ScalableBackendSpec, new: ScalableBackendSpec) -> None:
    """Mirror of the CEL transition rules (those using ``oldSelf``).

    Raises ``ValueError`` naming the field, with the same message as the CRD's rule.
    """
    _check_storage_transition("spec.postgres.storage", old.postgres.storage, new.postgres.storage)
    if old.redis.persistence is not None and new.redis.persistence is not None:
        _check_storage_transition("spec.redis.persistence", old.redis.persistence, new.redis.persistence)
    if old.postgres.version != new.postgres.version:
        raise ValueError(f"spec.postgres.version: {_VERSION_IMMUTABLE_MESSAGE}")


def _check_storage_transition(path: str, old: StorageSpec, new: StorageSpec) -> None:
    if parse_quantity(new.size) < parse_quantity(old.size):
        raise ValueError(f"{path}.size: {_SIZE_GROWS_MESSAGE}")
    if new.storage_class_name != old.storage_class_name:
        raise ValueError(f"{path}.storageClassName: {_CLASS_IMMUTABLE_MESSAGE}")
