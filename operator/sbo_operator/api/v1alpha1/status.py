"""The ScalableBackend status: conditions and the observed state of each component.

The invariant: the status is written by the operator only; its shape is what kstatus reads
(observedGeneration, conditions in the metav1.Condition shape).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from sbo_operator.api.autoscaling import AutoscalingStatus
from sbo_operator.api.base import ApiModel
from sbo_operator.api.conditions import ConditionStatus

__all__ = [
    "UNOBSERVED_GENERATION",
    "ApiStatus",
    "BackendAutoscalingStatus",
    "BackupStatus",
    "BaseBackupStatus",
    "Condition",
    "Endpoints",
    "PostgresInstanceStatus",
    "PostgresPhase",
    "PostgresStatus",
    "RedisStatus",
    "ScalableBackendStatus",
    "SecretNames",
    "SynchronousStatus",
    "WorkerStatus",
]

# ---- status -----------------------------------------------------------------------------------------


class Condition(ApiModel):
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
        default=None, description="The .metadata.generation the condition was computed from."
    )


class ApiStatus(ApiModel):
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


class WorkerStatus(ApiModel):
    """Observed state of the worker Deployment."""

    replicas: int = Field(default=0, ge=0, description="Current worker pods.")
    ready_replicas: int = Field(default=0, ge=0, description="Ready worker pods.")


class PostgresPhase(StrEnum):
    """Where the operator's election of the primary stands."""

    BOOTSTRAP = "Bootstrap"  # no primary chosen yet
    STABLE = "Stable"
    FAILING_OVER = "FailingOver"
    SWITCHING_OVER = "SwitchingOver"


class PostgresInstanceStatus(ApiModel):
    """One PostgreSQL instance (a pod of the <name>-postgres StatefulSet) at the last probe."""

    name: str = Field(max_length=253, description="The instance's pod name, e.g. shop-postgres-1.")
    role: str | None = Field(
        default=None, max_length=63, description="Its sbo.dev/postgres-role label: primary or replica."
    )
    ready: bool = Field(default=False, description="Its pod is ready.")
    timeline: int | None = Field(default=None, ge=0, description="The timeline it is on.")
    lag_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Bytes of WAL it has not replayed yet: the primary's position minus its replay position.",
    )


class SynchronousStatus(ApiModel):
    """Synchronous replication as the primary applies it now (spec.postgres.synchronous)."""

    standbys: int = Field(default=0, ge=0, description="The standbys the spec asks a commit to wait for.")
    required: bool = Field(default=True, description="spec.postgres.synchronous.required.")
    streaming: int | None = Field(
        default=None, ge=0, description="Standbys streaming from the primary at the last probe."
    )
    waiting_for: int | None = Field(
        default=None,
        ge=0,
        description=(
            "The standbys a commit waits for now, as the primary reports it (0: asynchronous). Below "
            "standbys only with required: false, while fewer stream."
        ),
    )
    message: str = Field(default="", max_length=1024, description="The same in words.")


# WAL file names (24 hex digits, or a .history, .partial or .backup file) and barman backup ids.
_WAL_NAME_LENGTH = 64


class BaseBackupStatus(ApiModel):
    """One completed base backup, as barman-cloud recorded it."""

    name: str = Field(max_length=253, description="barman's backup id, e.g. 20260131T030000.")
    started_at: datetime | None = Field(default=None, description="When the backup began.")
    completed_at: datetime | None = Field(default=None, description="When the backup completed.")
    begin_lsn: str | None = Field(
        default=None, alias="beginLSN", max_length=17, description="WAL position the backup began at."
    )
    end_lsn: str | None = Field(
        default=None,
        alias="endLSN",
        max_length=17,
        description="WAL position at which the backup is consistent: the earliest a restore from it reaches.",
    )


class BackupStatus(ApiModel):
    """Where the backups stand: the last base backup, the recoverable range, the WAL archiver."""

    last_successful_backup: BaseBackupStatus | None = Field(
        default=None, description="The most recent base backup that completed."
    )
    first_recoverability_point: datetime | None = Field(
        default=None,
        description="The earliest time a restore can target: the end of the oldest base backup kept.",
    )
    last_archived_wal: str | None = Field(
        default=None,
        alias="lastArchivedWAL",
        max_length=_WAL_NAME_LENGTH,
        description="The last WAL file archived (pg_stat_archiver). While the ContinuousArchiving "
        "condition holds it moves on at most every SBO_POSTGRES_ARCHIVE_STATUS_SECONDS (300 s by "
        "default); the metric sbo_postgres_last_archived_timestamp_seconds is exact.",
    )
    last_archived_at: datetime | None = Field(default=None, description="When that file was archived.")
    last_failed_wal: str | None = Field(
        default=None,
        alias="lastFailedWAL",
        max_length=_WAL_NAME_LENGTH,
        description="The last WAL file whose archiving failed (pg_stat_archiver).",
    )
    last_failed_at: datetime | None = Field(default=None, description="When archiving it failed.")


class PostgresStatus(ApiModel):
    """Observed state of PostgreSQL, and the operator's record of who is primary."""

    primary_ready: bool = Field(default=False, description="The primary accepts connections.")
    ready_replicas: int = Field(default=0, ge=0, description="Read replicas that are ready.")
    phase: PostgresPhase | None = Field(
        default=None, description="Bootstrap, Stable, FailingOver or SwitchingOver."
    )
    current_primary: str | None = Field(
        default=None, max_length=253, description="The instance the -rw Service sends writes to."
    )
    target_primary: str | None = Field(
        default=None, max_length=253, description="During a failover or switchover: the instance promoted."
    )
    timeline: int | None = Field(default=None, ge=0, description="The primary's timeline.")
    fenced_pod_uid: str | None = Field(
        default=None,
        max_length=128,
        description="During a change: the uid of the old primary's pod, which must be gone before promotion.",
    )
    switchover_id: str | None = Field(
        default=None,
        max_length=253,
        description="The id of the last spec.postgres.switchover handled, done or refused.",
    )
    since: datetime | None = Field(default=None, description="When the running failover or switchover began.")
    instances: list[PostgresInstanceStatus] = Field(
        default_factory=list,
        max_length=16,
        description="Every instance: its role, readiness, timeline and replication lag.",
    )
    backup: BackupStatus | None = Field(
        default=None, description="Backups and WAL archiving, when spec.postgres.backup is set."
    )
    synchronous: SynchronousStatus | None = Field(
        default=None, description="Synchronous replication, when spec.postgres.synchronous.standbys > 0."
    )


class RedisStatus(ApiModel):
    """Observed state of Redis."""

    ready: bool = Field(default=False, description="Redis accepts connections.")


class Endpoints(ApiModel):
    """In-cluster addresses of the stack's services."""

    api: str | None = Field(
        default=None, description="URL of the api Service, e.g. http://shop-api.demo.svc:80."
    )
    redis: str | None = Field(default=None, description="host:port of Redis, e.g. shop-redis.demo.svc:6379.")
    postgres_read_write: str | None = Field(
        default=None, description="host:port of the PostgreSQL primary, e.g. shop-postgres-rw.demo.svc:5432."
    )
    postgres_read_only: str | None = Field(
        default=None,
        description="host:port of the PostgreSQL read replicas, e.g. shop-postgres-ro.demo.svc:5432.",
    )


class SecretNames(ApiModel):
    """Names of the generated Secrets."""

    app: str | None = Field(
        default=None,
        description="Secret with the application's secret-key (SECRET_KEY in the api and worker pods).",
    )
    postgres: str | None = Field(
        default=None, description="Secret with the PostgreSQL user, password, database, host, port and uri."
    )
    postgres_operator: str | None = Field(
        default=None,
        description="Secret with the operator's own PostgreSQL login (to probe instances and promote one).",
    )
    redis: str | None = Field(default=None, description="Secret with the Redis password.")


class BackendAutoscalingStatus(ApiModel):
    """The autoscaler's reports, one per scaled Deployment."""

    api: AutoscalingStatus | None = Field(default=None, description="Autoscaling of the api.")
    worker: AutoscalingStatus | None = Field(default=None, description="Autoscaling of the worker.")


# The apiserver defaults a new object's status to {observedGeneration: -1} (as Flux's CRDs do):
# a generation the operator never observed, so kstatus-based tools (Flux, kpt, `kubectl wait`)
# read a backend the operator has not looked at yet as InProgress, not Current.
UNOBSERVED_GENERATION = -1


class ScalableBackendStatus(ApiModel):
    """What the operator observed, written by the operator only."""

    observed_generation: Annotated[int, Field(ge=UNOBSERVED_GENERATION)] | None = Field(
        default=None,
        description=(
            "The .metadata.generation the status was computed from; -1 until the operator has "
            "looked at the object."
        ),
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=32,
        description="Ready, Reconciling, Stalled, ApiReady, WorkerReady, RedisReady and PostgresReady.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    api: ApiStatus | None = Field(default=None, description="The api Deployment.")
    worker: WorkerStatus | None = Field(default=None, description="The worker Deployment.")
    postgres: PostgresStatus | None = Field(default=None, description="PostgreSQL.")
    redis: RedisStatus | None = Field(default=None, description="Redis.")
    endpoints: Endpoints | None = Field(
        default=None, description="In-cluster addresses of the stack's services."
    )
    secrets: SecretNames | None = Field(default=None, description="Names of the generated Secrets.")
    autoscaling: BackendAutoscalingStatus | None = Field(
        default=None, description="The autoscaler's reports for the api and the worker."
    )
