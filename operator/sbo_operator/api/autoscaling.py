"""The autoscaling part of the ScalableBackend API: spec, status and the autoscaler's stored state.

Field descriptions become the CRD schema and `kubectl explain`, so every field has one. The
conventions (camelCase, CEL rules mirrored by validators, no ``default: null`` in the CRD) are
those of ``sbo_operator.api.base``.

Optional fields are typed ``X | SkipJsonSchema[None]``, so the generated schema has no ``anyOf``
with ``null`` to begin with.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from sbo_operator.api.base import MAX_REPLICAS, ApiModel, cel_rules
from sbo_operator.api.formats import (
    ConfigMapKey,
    DnsSubdomain,
    MetricName,
    PrometheusUrl,
    PromQLQuery,
)

__all__ = [
    "AutoscalingHistory",
    "AutoscalingMode",
    "AutoscalingSpec",
    "AutoscalingStatus",
    "BasicAuthSecretRef",
    "ConfigMapKeyRef",
    "FallbackSpec",
    "MetricSpec",
    "MetricStatus",
    "PrometheusSpec",
    "ReplicaRecommendation",
    "ScaleDownRules",
    "ScaleEvent",
    "ScaleUpRules",
    "ScalingPolicy",
    "ScalingPolicyType",
    "SecretKeyRef",
    "SelectPolicy",
]


# ---- Prometheus connection ------------------------------------------------------------------------


class SecretKeyRef(ApiModel):
    """One key of a Secret in the ScalableBackend's namespace."""

    name: DnsSubdomain = Field(description="Name of the Secret.")
    key: ConfigMapKey = Field(description="Key inside the Secret.")


class ConfigMapKeyRef(ApiModel):
    """One key of a ConfigMap in the ScalableBackend's namespace."""

    name: DnsSubdomain = Field(description="Name of the ConfigMap.")
    key: ConfigMapKey = Field(description="Key inside the ConfigMap.")


class BasicAuthSecretRef(ApiModel):
    """A Secret holding an HTTP basic-auth username and password."""

    name: DnsSubdomain = Field(description="Name of the Secret.")
    username_key: ConfigMapKey = Field(default="username", description="Key holding the username.")
    password_key: ConfigMapKey = Field(default="password", description="Key holding the password.")


_POLL_RULE = "!has(self.pollSeconds) || self.pollSeconds >= 1"
_POLL_MESSAGE = "pollSeconds must be at least 1"
_ONE_AUTH_RULE = "!(has(self.bearerTokenSecretRef) && has(self.basicAuthSecretRef))"
_ONE_AUTH_MESSAGE = "set at most one of bearerTokenSecretRef and basicAuthSecretRef"
_ONE_CA_RULE = "!(has(self.caSecretRef) && has(self.caConfigMapRef))"
_ONE_CA_MESSAGE = "set at most one of caSecretRef and caConfigMapRef"


class PrometheusSpec(ApiModel):
    """Where the autoscaler reads its metrics, and how it authenticates."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            {"rule": _POLL_RULE, "message": _POLL_MESSAGE, "fieldPath": ".pollSeconds"},
            {"rule": _ONE_AUTH_RULE, "message": _ONE_AUTH_MESSAGE},
            {"rule": _ONE_CA_RULE, "message": _ONE_CA_MESSAGE},
        )
    )

    url: PrometheusUrl | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            "Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring.svc:9090. "
            "Absent: the operator-wide default."
        ),
    )
    poll_seconds: int = Field(default=15, ge=1, le=3600, description="Seconds between two metric polls.")
    timeout_seconds: int = Field(
        default=5, ge=1, le=300, description="Seconds one query may take before it counts as failed."
    )
    bearer_token_secret_ref: SecretKeyRef | SkipJsonSchema[None] = Field(
        default=None, description="Secret key holding a bearer token sent as `Authorization: Bearer`."
    )
    basic_auth_secret_ref: BasicAuthSecretRef | SkipJsonSchema[None] = Field(
        default=None, description="Secret holding an HTTP basic-auth username and password."
    )
    ca_secret_ref: SecretKeyRef | SkipJsonSchema[None] = Field(
        default=None, description="Secret key holding the PEM CA bundle that signs Prometheus's certificate."
    )
    ca_config_map_ref: ConfigMapKeyRef | SkipJsonSchema[None] = Field(
        default=None,
        description="ConfigMap key holding the PEM CA bundle that signs Prometheus's certificate.",
    )
    insecure_skip_verify: bool = Field(
        default=False, description="Skip TLS certificate verification. For tests only."
    )

    @model_validator(mode="after")
    def _check_cel_rules(self) -> PrometheusSpec:
        if self.bearer_token_secret_ref is not None and self.basic_auth_secret_ref is not None:
            raise ValueError(_ONE_AUTH_MESSAGE)
        if self.ca_secret_ref is not None and self.ca_config_map_ref is not None:
            raise ValueError(_ONE_CA_MESSAGE)
        return self


# ---- autoscaling ----------------------------------------------------------------------------------


class AutoscalingMode(StrEnum):
    """Whether the autoscaler acts on its decisions."""

    ACTIVE = "Active"
    DRY_RUN = "DryRun"


class ScalingPolicyType(StrEnum):
    """How a scaling policy's value is read, as in HPA's HPAScalingPolicyType."""

    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    """Which policy wins when several apply, as in HPA's ScalingPolicySelect."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


_METRIC_ONE_TARGET_RULE = "has(self.targetPerReplica) != has(self.target)"
_METRIC_ONE_TARGET_MESSAGE = "set exactly one of targetPerReplica and target"


class MetricSpec(ApiModel):
    """One PromQL query and the target it is scaled against."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules({"rule": _METRIC_ONE_TARGET_RULE, "message": _METRIC_ONE_TARGET_MESSAGE})
    )

    name: MetricName = Field(description="Short name of the metric, used in status, conditions and events.")
    query: PromQLQuery = Field(
        description="PromQL instant query returning one number (a scalar, or a vector of one series).",
    )
    target_per_replica: Annotated[float, Field(gt=0)] | SkipJsonSchema[None] = Field(
        default=None,
        description="Value each replica should carry: desired replicas = ceil(value / targetPerReplica).",
    )
    target: Annotated[float, Field(gt=0)] | SkipJsonSchema[None] = Field(
        default=None,
        description=(
            "Target for the value as a whole (e.g. a latency): "
            "desired replicas = ceil(current replicas * value / target)."
        ),
    )

    @model_validator(mode="after")
    def _check_cel_rules(self) -> MetricSpec:
        if (self.target_per_replica is None) == (self.target is None):
            raise ValueError(_METRIC_ONE_TARGET_MESSAGE)
        return self


class ScalingPolicy(ApiModel):
    """How far replicas may move within a period, as in HPA's HPAScalingPolicy."""

    type: ScalingPolicyType = Field(description="Pods: a number of replicas. Percent: a share of them.")
    value: int = Field(ge=1, description="The number of replicas (Pods) or the percentage (Percent).")
    period_seconds: int = Field(
        ge=1, le=1800, description="Window, in seconds, in which the change is counted. At most 1800."
    )


def _default_scale_up_policies() -> list[ScalingPolicy]:
    # HPA's default: double, or add 4 pods, every 15 s, whichever is more.
    return [
        ScalingPolicy(type=ScalingPolicyType.PERCENT, value=100, period_seconds=15),
        ScalingPolicy(type=ScalingPolicyType.PODS, value=4, period_seconds=15),
    ]


def _default_scale_down_policies() -> list[ScalingPolicy]:
    # HPA's default: remove up to all replicas above the minimum every 15 s.
    return [ScalingPolicy(type=ScalingPolicyType.PERCENT, value=100, period_seconds=15)]


class ScaleUpRules(ApiModel):
    """How fast replicas may grow; HPA `behavior.scaleUp` semantics and defaults."""

    stabilization_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="Scale up only to the lowest recommendation seen in this many past seconds.",
    )
    select_policy: SelectPolicy = Field(
        default=SelectPolicy.MAX,
        description="Max: the policy allowing the biggest change wins. Min: the smallest. Disabled: never.",
    )
    policies: list[ScalingPolicy] = Field(
        default_factory=_default_scale_up_policies,
        min_length=1,
        max_length=10,
        description="Rate limits. Default: 100% or 4 replicas per 15 s, whichever is more.",
    )


class ScaleDownRules(ApiModel):
    """How fast replicas may shrink; HPA `behavior.scaleDown` semantics and defaults."""

    stabilization_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="Scale down only to the highest recommendation seen in this many past seconds.",
    )
    select_policy: SelectPolicy = Field(
        default=SelectPolicy.MAX,
        description="Max: the policy allowing the biggest change wins. Min: the smallest. Disabled: never.",
    )
    policies: list[ScalingPolicy] = Field(
        default_factory=_default_scale_down_policies,
        min_length=1,
        max_length=10,
        description="Rate limits. Default: 100% per 15 s.",
    )


class FallbackSpec(ApiModel):
    """What to run while every metric fails."""

    after_failures: int = Field(
        default=3, ge=1, le=1000, description="Consecutive failed polls before the fallback applies."
    )
    replicas: int = Field(ge=0, le=MAX_REPLICAS, description="Replicas to run while metrics are unavailable.")


_MIN_MAX_RULE = "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas"
_MIN_MAX_MESSAGE = "minReplicas must not exceed maxReplicas"
_UNIQUE_NAMES_RULE = "self.metrics.all(m, self.metrics.exists_one(n, n.name == m.name))"
_UNIQUE_NAMES_MESSAGE = "metric names must be unique"
_FALLBACK_RANGE_RULE = (
    "!has(self.fallback) || "
    "(self.fallback.replicas >= (has(self.minReplicas) ? self.minReplicas : 1) "
    "&& self.fallback.replicas <= self.maxReplicas)"
)
_FALLBACK_RANGE_MESSAGE = "fallback.replicas must lie within [minReplicas, maxReplicas]"

MAX_METRICS = 16


class AutoscalingSpec(ApiModel):
    """Autoscaling of one Deployment from Prometheus queries, with HPA-style behaviour."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            {"rule": _MIN_MAX_RULE, "message": _MIN_MAX_MESSAGE, "fieldPath": ".minReplicas"},
            {"rule": _UNIQUE_NAMES_RULE, "message": _UNIQUE_NAMES_MESSAGE, "fieldPath": ".metrics"},
            {"rule": _FALLBACK_RANGE_RULE, "message": _FALLBACK_RANGE_MESSAGE, "fieldPath": ".fallback"},
        )
    )

    mode: AutoscalingMode = Field(
        default=AutoscalingMode.ACTIVE,
        description="Active: apply the decisions. DryRun: compute, report and emit events, never scale.",
    )
    min_replicas: int = Field(
        default=1, ge=1, le=MAX_REPLICAS, description="Fewest replicas the autoscaler keeps."
    )
    max_replicas: int = Field(
        ge=1,
        le=MAX_REPLICAS,
        description=(
            f"Most replicas the autoscaler runs. At most {MAX_REPLICAS}, the cap of the replicas "
            "it sets (spec.api.replicas, spec.worker.replicas)."
        ),
    )
    tolerance: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Relative deviation from a target ignored as noise (0.1 = 10%), as in HPA.",
    )
    metrics: list[MetricSpec] = Field(
        min_length=1,
        max_length=MAX_METRICS,
        description="Queries to scale on; the one asking for the most replicas wins.",
    )
    scale_up: ScaleUpRules = Field(
        default_factory=ScaleUpRules, description="Stabilization and rate limits when growing."
    )
    scale_down: ScaleDownRules = Field(
        default_factory=ScaleDownRules, description="Stabilization and rate limits when shrinking."
    )
    fallback: FallbackSpec | SkipJsonSchema[None] = Field(
        default=None,
        description="Replicas to run after repeated metric failures. Absent: hold the current replicas.",
    )

    @model_validator(mode="after")
    def _check_cel_rules(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(_MIN_MAX_MESSAGE)
        names = [metric.name for metric in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(_UNIQUE_NAMES_MESSAGE)
        if self.fallback is not None and not (
            self.min_replicas <= self.fallback.replicas <= self.max_replicas
        ):
            raise ValueError(_FALLBACK_RANGE_MESSAGE)
        return self


# ---- state and status -----------------------------------------------------------------------------


class ReplicaRecommendation(ApiModel):
    """One raw (unstabilized) recommendation, kept for the stabilization windows."""

    time: datetime = Field(description="When the recommendation was made.")
    replicas: int = Field(ge=0, description="Replicas the metrics asked for.")


class ScaleEvent(ApiModel):
    """One change of replicas made by the autoscaler, kept for the rate policies."""

    time: datetime = Field(description="When the change was decided.")
    from_replicas: int = Field(ge=0, description="Replicas before the change.")
    to_replicas: int = Field(ge=0, description="Replicas after the change.")


class AutoscalingHistory(ApiModel):
    """The autoscaler's small, JSON-serialisable memory between two polls.

    Kept in operator memory, never in the status: the status changes only when a decision does.
    """

    recommendations: list[ReplicaRecommendation] = Field(
        default_factory=list,
        max_length=256,
        description="Recent raw recommendations, for the stabilization windows.",
    )
    scale_events: list[ScaleEvent] = Field(
        default_factory=list,
        max_length=256,
        description="Recent replica changes, for the rate policies.",
    )
    consecutive_failures: int = Field(
        default=0, ge=0, description="Polls in a row in which at least one metric failed."
    )
    last_scale_time: datetime | SkipJsonSchema[None] = Field(
        default=None, description="When the autoscaler last changed the replicas."
    )


class MetricStatus(ApiModel):
    """What one metric said on the latest poll."""

    name: str = Field(description="The metric's name from the spec.")
    value: float | SkipJsonSchema[None] = Field(
        default=None, description="The value Prometheus returned. Absent when the query failed."
    )
    desired_replicas: int | SkipJsonSchema[None] = Field(
        default=None, description="Replicas this metric asks for. Absent when the query failed."
    )
    error_kind: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Kind of the failure, e.g. EmptyResult, QueryError, Timeout. Absent on success.",
    )
    last_error: str | SkipJsonSchema[None] = Field(
        default=None, description="The latest poll's error, in Prometheus's own words where it gave any."
    )


class AutoscalingStatus(ApiModel):
    """The autoscaler's report for one Deployment (`status.autoscaling.api` or `.worker`)."""

    mode: AutoscalingMode = Field(description="The mode the decision was made in.")
    current_replicas: int = Field(ge=0, description="Replicas when the decision was made.")
    desired_replicas: int = Field(
        ge=0, description="Replicas the autoscaler wants. In DryRun it is reported, never applied."
    )
    reason: str = Field(description="Why, in words, e.g. `rps=412.0 (target 50/replica) -> 9 replicas`.")
    last_poll_time: datetime = Field(description="When the metrics were last polled.")
    last_scale_time: datetime | SkipJsonSchema[None] = Field(
        default=None, description="When the autoscaler last changed the replicas."
    )
    consecutive_failures: int = Field(
        default=0, ge=0, description="Polls in a row in which at least one metric failed."
    )
    metrics: list[MetricStatus] = Field(
        default_factory=list, description="What each metric said on the latest poll."
    )
