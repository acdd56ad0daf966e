"""The ScalableBackend status: conditions and the observed state of each component.

The invariant: the status is written by the operator only; its shape is what kstatus reads
(observedGeneration, conditions in the metav1.Condition shape).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from sbo_operator.api.autoscaling import AutoscalingStatus
from sbo_operator.api.base import ApiModel
from sbo_operator.api.conditions import ConditionStatus

__all__ = [
    "UNOBSERVED_GENERATION",
    "ApiStatus",
    "BackendAutoscalingStatus",
    "Condition",
    "Endpoints",
    "PostgresStatus",
    "RedisStatus",
    "ScalableBackendStatus",
    "SecretNames",
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


class PostgresStatus(ApiModel):
    """Observed state of PostgreSQL."""

    primary_ready: bool = Field(default=False, description="The primary accepts connections.")
    ready_replicas: int = Field(default=0, ge=0, description="Read replicas that are ready.")


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
