"""The vocabulary of status.conditions: every type, status and reason the operator writes.

As KEDA's ``condition_types.go``: one place lists them, so a reader (or a dashboard) finds
every value the operator can report, and a typo is an AttributeError, not a new condition.
The one in-memory shape of a condition is ``ConditionState``; the stored shape (with
lastTransitionTime) is the ``Condition`` model of the status.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum

__all__ = ["ConditionState", "ConditionStatus", "ConditionType", "Reason"]


class ConditionType(StrEnum):
    """The types of status.conditions."""

    # kstatus: the backend as a whole.
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    # One per component.
    API_READY = "ApiReady"
    WORKER_READY = "WorkerReady"
    REDIS_READY = "RedisReady"
    POSTGRES_READY = "PostgresReady"
    # WAL archiving to the object store (spec.postgres.backup).
    CONTINUOUS_ARCHIVING = "ContinuousArchiving"
    # The autoscaler's, for the api; the worker's carry the "Worker" prefix.
    AUTOSCALING_ACTIVE = "AutoscalingActive"
    SCALING_LIMITED = "ScalingLimited"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    WORKER_AUTOSCALING_ACTIVE = "WorkerAutoscalingActive"
    WORKER_SCALING_LIMITED = "WorkerScalingLimited"
    WORKER_METRICS_UNAVAILABLE = "WorkerMetricsUnavailable"

    def of_component(self, component: str) -> ConditionType:
        """An autoscaler condition of one component: the api's has no prefix, others' do."""
        if component == "api":
            return self
        return ConditionType(f"{component.capitalize()}{self.value}")


class ConditionStatus(StrEnum):
    """Status of a condition, as in metav1.Condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """The CamelCase reasons the operator itself gives.

    The autoscaler adds the kinds of its limits and metric errors
    (``ScalingLimit``, ``MetricErrorKind``), which are typed where they are decided.
    """

    # Ready / Reconciling / Stalled
    READY = "Ready"
    RECONCILED = "Reconciled"
    APPLYING = "Applying"
    NO_PROBLEMS = "NoProblems"
    # A component's workload
    CREATING = "Creating"
    PROGRESSING = "Progressing"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    ROLLING_OUT = "RollingOut"
    PODS_NOT_READY = "PodsNotReady"
    AVAILABLE = "Available"
    DISABLED = "Disabled"
    MIGRATIONS_PENDING = "MigrationsPending"
    # Problems: only a person can fix them, so they stall the backend.
    INVALID_SPEC = "InvalidSpec"
    MIGRATIONS_FAILED = "MigrationsFailed"
    CHILD_OWNED_ELSEWHERE = "ChildOwnedElsewhere"
    CHILD_REJECTED = "ChildRejected"
    QUOTA_EXCEEDED = "QuotaExceeded"
    SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 (a reason, not a password)
    CONFIG_MAP_NOT_FOUND = "ConfigMapNotFound"
    # PostgreSQL roles (postgres_roles.decide): a change running, or what blocks one.
    FAILING_OVER = "FailingOver"
    SWITCHING_OVER = "SwitchingOver"
    FAILOVER_CANDIDATE_LAGGING = "FailoverCandidateLagging"
    NO_FAILOVER_CANDIDATE = "NoFailoverCandidate"
    SWITCHOVER_REFUSED = "SwitchoverRefused"
    # ContinuousArchiving: True Archiving; False for the others, Unknown before the first archived WAL.
    ARCHIVING = "Archiving"
    ARCHIVING_PENDING = "ArchivingPending"
    ARCHIVING_FAILING = "ArchivingFailing"
    BACKUPS_DISABLED = "BackupsDisabled"
    CREDENTIALS_NOT_FOUND = "CredentialsNotFound"
    BARMAN_CLOUD_MISSING = "BarmanCloudMissing"  # the PostgreSQL image cannot run barman-cloud
    # Recovery (spec.postgres.bootstrap.recovery): what stops the restore, never a crash loop. A
    # target before the first recoverability point or after the archive ends is unreachable.
    RECOVERING = "Recovering"
    RECOVERY_TARGET_UNREACHABLE = "RecoveryTargetUnreachable"
    RECOVERY_SOURCE_EMPTY = "RecoverySourceEmpty"  # no completed base backup in the source
    RECOVERY_CHECK_FAILED = "RecoveryCheckFailed"  # the source could not be listed
    # The autoscaler
    DRY_RUN = "DryRun"
    FAILED_GET_METRICS = "FailedGetMetrics"
    FALLBACK_ACTIVE = "FallbackActive"
    REPLICAS_OUT_OF_RANGE = "ReplicasOutOfRange"
    VALID_METRIC_FOUND = "ValidMetricFound"
    METRICS_AVAILABLE = "MetricsAvailable"


@dataclasses.dataclass(frozen=True, slots=True)
class ConditionState:
    """A condition as computed, before its lastTransitionTime is settled against the stored one."""

    type: ConditionType
    status: ConditionStatus
    reason: str  # a Reason, or a kind the autoscaler typed (ScalingLimit, MetricErrorKind)
    message: str
