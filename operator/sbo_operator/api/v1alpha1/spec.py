"""The ScalableBackend spec: the api, the worker, Redis, PostgreSQL, its backups and their storage.

The invariant: every CEL rule here, including the transition rules (``oldSelf``, mirrored by
:func:`check_spec_transition`), is mirrored by a validator raising the same message.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from sbo_operator.api.autoscaling import AutoscalingSpec, PrometheusSpec
from sbo_operator.api.base import MAX_REPLICAS, ApiModel, cel_rules, schema_default
from sbo_operator.api.formats import (
    DNS_LABEL_PATTERN,
    DnsSubdomain,
    Duration,
    HttpPath,
    Image,
    IngressHost,
    SqlIdentifier,
    StringFormat,
    parse_duration,
)
from sbo_operator.api.v1alpha1.backup import (
    RECOVERY_IMMUTABLE_MESSAGE,
    RECOVERY_SOURCE_IS_DESTINATION_MESSAGE,
    BackupSpec,
    BootstrapSpec,
    recovery_source_is_destination,
)
from sbo_operator.api.v1alpha1.common import (
    CommandList,
    EnvList,
    ImagePullPolicy,
    ResourceRequirements,
)
from sbo_operator.api.v1alpha1.network import NetworkPoliciesSpec
from sbo_operator.api.v1alpha1.quantities import Quantity, parse_quantity

__all__ = [
    "FAILOVER_LAG_MESSAGE",
    "MAX_READ_REPLICAS",
    "RESERVED_POSTGRES_DATABASES",
    "RESERVED_POSTGRES_USERS",
    "SWITCHOVER_ID_MESSAGE",
    "SWITCHOVER_TO_MESSAGE",
    "SYNCHRONOUS_STANDBYS_MESSAGE",
    "ApiSpec",
    "EvictionPolicy",
    "IngressSpec",
    "MigrationsSpec",
    "PostgresSpec",
    "PostgresVersion",
    "RedisSpec",
    "RedisVersion",
    "ScalableBackendSpec",
    "StorageSpec",
    "SwitchoverSpec",
    "SynchronousSpec",
    "WorkerSpec",
    "check_spec_transition",
    "check_switchover_target",
    "postgres_instance_name",
]

# Each replica streams from the primary: the cap keeps max_wal_senders (10) ample and the
# primary's outbound WAL traffic bounded.
MAX_READ_REPLICAS = 5


_SIZE_GROWS_RULE = "quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) >= 0"
_SIZE_GROWS_MESSAGE = "size may only grow"
_CLASS_IMMUTABLE_RULE = (
    "has(self.storageClassName) == has(oldSelf.storageClassName)"
    " && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)"
)
_CLASS_IMMUTABLE_MESSAGE = "storageClassName is immutable"


class StorageSpec(ApiModel):
    """A PersistentVolumeClaim per pod. Its size may only grow; its class never changes."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
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
    )


# ---- api --------------------------------------------------------------------------------------------


class MigrationsSpec(ApiModel):
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


class IngressSpec(ApiModel):
    """An Ingress routing a host name to the api Service."""

    host: IngressHost = Field(description="Host name served, e.g. shop.example.com.")
    class_name: DnsSubdomain | None = Field(
        default=None, description="IngressClass to use, e.g. nginx. Absent: the cluster's default class."
    )
    tls_secret_name: DnsSubdomain | None = Field(
        default=None, description="Secret with the TLS certificate for the host. Absent: plain HTTP."
    )


def _resources_field(container: str, default: dict[str, dict[str, str]]) -> Any:
    """The ``resources`` field of ``container``: parsed with ``default`` when absent, and the CRD
    carries the same default, so that the apiserver fills it in too."""
    return Field(
        default_factory=lambda: ResourceRequirements.model_validate(default),
        description=f"Compute resources of {container}.",
        json_schema_extra=schema_default(default),
    )


def _extra_env_field() -> Any:
    """The ``env`` field of an app container (the api's or the worker's)."""
    return Field(
        default_factory=list,
        description=(
            "Extra environment variables, after the injected DATABASE_*/REDIS_* ones. "
            "A name equal to an injected variable replaces it."
        ),
    )


class ApiSpec(ApiModel):
    """The HTTP API: a Deployment behind a Service, optionally an Ingress and a migrations Job."""

    image: Image | None = Field(default=None, description="Image of the api. Absent: spec.image.")
    replicas: int = Field(
        default=2,
        ge=0,
        le=MAX_REPLICAS,
        description=(
            "Number of api pods. The scale subresource points here. "
            "When autoscaling is set, the autoscaler decides the replicas instead."
        ),
    )
    port: int = Field(default=8000, ge=1, le=65535, description="Port the api container listens on.")
    command: CommandList | None = Field(
        default=None, description="Command of the api container. Absent: the image's entrypoint."
    )
    env: EnvList = _extra_env_field()
    resources: ResourceRequirements = _resources_field(
        "the api container", {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    )
    readiness_path: HttpPath = Field(default="/readyz", description="HTTP path of the readiness probe.")
    liveness_path: HttpPath = Field(default="/healthz", description="HTTP path of the liveness probe.")
    migrations: MigrationsSpec | None = Field(
        default=None,
        description="A Job that must succeed before a new api pod template rolls out. Absent: none.",
    )
    ingress: IngressSpec | None = Field(
        default=None, description="Expose the api through an Ingress. Absent: in-cluster only."
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="Scale the api from Prometheus metrics. Absent: replicas is fixed."
    )


class WorkerSpec(ApiModel):
    """Queue consumers: a Deployment running the same image with another command."""

    image: Image | None = Field(default=None, description="Image of the worker. Absent: spec.image.")
    replicas: int = Field(
        default=1,
        ge=0,
        le=MAX_REPLICAS,
        description="Number of worker pods. When autoscaling is set, the autoscaler decides instead.",
    )
    command: CommandList = Field(
        description="Command of the worker container, e.g. [python, -m, app.worker]."
    )
    env: EnvList = _extra_env_field()
    resources: ResourceRequirements = _resources_field(
        "the worker container",
        {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="Scale the worker from Prometheus metrics. Absent: replicas is fixed."
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


class RedisSpec(ApiModel):
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
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Compute resources of the Redis container. Absent: derived from maxMemory."
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


# Recovery is read once, at creation: adding, changing or removing it later would promise a restore
# that never happens (or hide the one that did).
_BOOTSTRAP_IMMUTABLE_RULE = (
    "has(self.bootstrap) == has(oldSelf.bootstrap)"
    " && (!has(self.bootstrap) || self.bootstrap == oldSelf.bootstrap)"
)
_RECOVERY_SOURCE_RULE = (
    "!has(self.backup) || !has(self.bootstrap) || !has(self.bootstrap.recovery)"
    " || self.backup.destination != self.bootstrap.recovery.source.destination"
    " || (has(self.backup.writeToRecoverySource) && self.backup.writeToRecoverySource)"
)

_SYNCHRONOUS_RULE = (
    "!has(self.synchronous) || !has(self.synchronous.standbys)"
    " || self.synchronous.standbys <= (has(self.readReplicas) ? self.readReplicas : 1)"
)
SYNCHRONOUS_STANDBYS_MESSAGE = (
    "synchronous.standbys must not exceed readReplicas (a commit cannot wait for standbys that do not "
    "exist): lower synchronous.standbys or raise readReplicas"
)
# The lag is compared with WAL positions, which count bytes: a fraction of a byte means nothing.
_FAILOVER_LAG_RULE = (
    "!has(self.maxFailoverLag) || !isQuantity(string(self.maxFailoverLag))"
    " || quantity(string(self.maxFailoverLag)).isInteger()"
)
FAILOVER_LAG_MESSAGE = "maxFailoverLag must be a whole number of bytes, e.g. 16Mi, 1Gi or 0"


class SynchronousSpec(ApiModel):
    """Synchronous replication: a commit returns once standbys hold it, not only the primary."""

    standbys: int = Field(
        default=0,
        ge=0,
        le=MAX_READ_REPLICAS,
        description=(
            "How many standbys must confirm each commit before it returns (any of them). 0: asynchronous "
            "replication, where a failover may lose the last commits. At most readReplicas."
        ),
    )
    required: bool = Field(
        default=True,
        description=(
            "true: while fewer standbys are connected, writes wait (no acknowledged commit is ever lost). "
            "false: while fewer are streaming, the operator lowers the number a commit waits for to those "
            "streaming (none: asynchronous), and raises it again when they return (availability first)."
        ),
    )


SWITCHOVER_ID_MESSAGE = (
    "switchover.id must not be empty: any string, a new one for each switchover, e.g. 2026-01-01-move"
)
SWITCHOVER_TO_MESSAGE = (
    "spec.postgres.switchover.to must name an instance of this backend: <metadata.name>-postgres-<ordinal>, "
    "the ordinal from 0 to readReplicas, e.g. shop-postgres-1"
)
_INSTANCE_NAME_MESSAGE = "switchover.to must be a pod name, e.g. shop-postgres-1"


class SwitchoverSpec(ApiModel):
    """A request to move the primary to another instance, acted on once per id."""

    to: Annotated[str, StringFormat(DNS_LABEL_PATTERN, _INSTANCE_NAME_MESSAGE, max_length=63)] = Field(
        description=(
            "The instance to promote: a pod name <metadata.name>-postgres-<ordinal>, e.g. shop-postgres-1. "
            "It must be a ready standby, streaming and within maxFailoverLag."
        )
    )
    id: Annotated[str, StringFormat(r"\S", SWITCHOVER_ID_MESSAGE, max_length=253)] = Field(
        description=(
            "Identifies this request: the operator acts once per id (done or refused, see the events), so "
            "applying the same manifest again does nothing. Use a new id for a new switchover."
        )
    )


def postgres_instance_name(backend_name: str, ordinal: int) -> str:
    """The pod (and instance) name of one PostgreSQL instance."""
    return f"{backend_name}-postgres-{ordinal}"


def check_switchover_target(backend_name: str, postgres: PostgresSpec) -> None:
    """Mirror of the root CEL rule on spec.postgres.switchover.to (it needs metadata.name)."""
    if postgres.switchover is None:
        return
    instances = {
        postgres_instance_name(backend_name, ordinal) for ordinal in range(postgres.read_replicas + 1)
    }
    if postgres.switchover.to not in instances:
        raise ValueError(SWITCHOVER_TO_MESSAGE)


def _default_postgres_storage() -> StorageSpec:
    return StorageSpec(size="10Gi")


class PostgresSpec(ApiModel):
    """A PostgreSQL primary and streaming hot-standby read replicas."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            {"rule": _USER_RULE, "message": _USER_MESSAGE, "fieldPath": ".user"},
            {"rule": _DATABASE_RULE, "message": _DATABASE_MESSAGE, "fieldPath": ".database"},
            {"rule": _VERSION_IMMUTABLE_RULE, "message": _VERSION_IMMUTABLE_MESSAGE, "fieldPath": ".version"},
            {"rule": _SYNCHRONOUS_RULE, "message": SYNCHRONOUS_STANDBYS_MESSAGE, "fieldPath": ".synchronous"},
            {"rule": _FAILOVER_LAG_RULE, "message": FAILOVER_LAG_MESSAGE, "fieldPath": ".maxFailoverLag"},
            {
                "rule": _RECOVERY_SOURCE_RULE,
                "message": RECOVERY_SOURCE_IS_DESTINATION_MESSAGE,
                "fieldPath": ".backup.destination",
            },
            {
                "rule": _BOOTSTRAP_IMMUTABLE_RULE,
                "message": RECOVERY_IMMUTABLE_MESSAGE,
                "fieldPath": ".bootstrap",
            },
        )
    )

    enabled: bool = Field(
        default=True, description="Run PostgreSQL. false: no PostgreSQL and no DATABASE_* variables."
    )
    version: PostgresVersion = Field(
        default=PostgresVersion.V16, description="PostgreSQL major version: 15, 16 or 17. Immutable."
    )
    database: SqlIdentifier = Field(
        default="app", description="Name of the application database, owned by user."
    )
    user: SqlIdentifier = Field(default="app", description="Name of the application's login role.")
    read_replicas: int = Field(
        default=1,
        ge=0,
        le=MAX_READ_REPLICAS,
        description=f"Streaming hot-standby replicas behind the -ro Service, at most {MAX_READ_REPLICAS}.",
    )
    storage: StorageSpec = Field(
        default_factory=_default_postgres_storage,
        description="Volume of each PostgreSQL pod (primary and replicas).",
        json_schema_extra=schema_default({"size": "10Gi"}),
    )
    retain_on_delete: bool = Field(
        default=True,
        description="Keep the PersistentVolumeClaims when the ScalableBackend is deleted or scaled down.",
    )
    resources: ResourceRequirements = _resources_field(
        "each PostgreSQL container",
        {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    )

    failover_delay: Duration = Field(
        default="0s",
        description=(
            "How long the primary may be unready or gone before a standby is promoted, e.g. 30s. "
            "0s: at once. Raise it to let a primary restart in place instead."
        ),
    )
    max_failover_lag: Quantity = Field(
        default="16Mi",
        description=(
            "Bytes of WAL a standby may lack, behind the last primary position the operator saw, and "
            "still be promoted without a person (condition FailoverCandidateLagging otherwise)."
        ),
    )
    synchronous: SynchronousSpec = Field(
        default_factory=SynchronousSpec,
        description="Synchronous replication. Default: asynchronous.",
        json_schema_extra=schema_default({}),
    )
    switchover: SwitchoverSpec | None = Field(
        default=None,
        description="Move the primary to another instance, once per id. Absent: the operator decides.",
    )
    backup: BackupSpec | None = Field(
        default=None,
        description=(
            "Archive WAL continuously and take scheduled base backups to an S3-compatible object store "
            "(barman-cloud, which the PostgreSQL image must carry). Absent: no backups."
        ),
    )
    bootstrap: BootstrapSpec | None = Field(
        default=None,
        description=(
            "How the database is created: from a backup (recovery) or empty. Read once, when the backend "
            "is created; immutable. Absent: an empty database."
        ),
    )

    @property
    def failover_delay_duration(self) -> timedelta:
        return parse_duration(self.failover_delay)

    @property
    def max_failover_lag_bytes(self) -> int:
        return int(parse_quantity(self.max_failover_lag))

    @model_validator(mode="after")
    def _check_cel_rules(self) -> PostgresSpec:
        if self.user in RESERVED_POSTGRES_USERS or self.user.startswith("pg_"):
            raise ValueError(f"user: {_USER_MESSAGE}")
        if self.database in RESERVED_POSTGRES_DATABASES:
            raise ValueError(f"database: {_DATABASE_MESSAGE}")
        if self.synchronous.standbys > self.read_replicas:
            raise ValueError(f"synchronous: {SYNCHRONOUS_STANDBYS_MESSAGE}")
        if parse_quantity(self.max_failover_lag) != int(parse_quantity(self.max_failover_lag)):
            raise ValueError(f"maxFailoverLag: {FAILOVER_LAG_MESSAGE}")
        if recovery_source_is_destination(self.backup, self.bootstrap):
            raise ValueError(f"backup.destination: {RECOVERY_SOURCE_IS_DESTINATION_MESSAGE}")
        return self


# ---- spec -------------------------------------------------------------------------------------------


class ScalableBackendSpec(ApiModel):
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
        json_schema_extra=schema_default({}),
    )
    worker: WorkerSpec | None = Field(
        default=None, description="Queue consumers running the same image. Absent: no worker."
    )
    redis: RedisSpec = Field(
        default_factory=RedisSpec,
        description="The Redis cache or queue.",
        json_schema_extra=schema_default({}),
    )
    postgres: PostgresSpec = Field(
        default_factory=PostgresSpec,
        description="The PostgreSQL primary and read replicas.",
        json_schema_extra=schema_default({}),
    )
    prometheus: PrometheusSpec | None = Field(
        default=None, description="Where the autoscaler reads metrics. Absent: the operator-wide default."
    )
    network_policies: NetworkPoliciesSpec | None = Field(
        default=None,
        description=(
            "NetworkPolicies for the app tier and egress limits. Absent: only PostgreSQL and Redis "
            "have (ingress) policies."
        ),
    )


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
    if old.postgres.bootstrap != new.postgres.bootstrap:
        raise ValueError(f"spec.postgres.bootstrap: {RECOVERY_IMMUTABLE_MESSAGE}")


def _check_storage_transition(path: str, old: StorageSpec, new: StorageSpec) -> None:
    if parse_quantity(new.size) < parse_quantity(old.size):
        raise ValueError(f"{path}.size: {_SIZE_GROWS_MESSAGE}")
    if new.storage_class_name != old.storage_class_name:
        raise ValueError(f"{path}.storageClassName: {_CLASS_IMMUTABLE_MESSAGE}")
