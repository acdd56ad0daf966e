"""The operator's own Prometheus metrics, in a registry owned by the process."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclasses.dataclass(frozen=True)
class OperatorMetrics:
    registry: CollectorRegistry
    reconciles: Counter
    reconcile_errors: Counter
    reconcile_duration: Histogram
    api_writes: Counter
    queue_depth: Gauge
    list_pages: Counter
    autoscaler_decisions: Counter
    autoscaler_metric_value: Gauge
    autoscaler_consecutive_failed_polls: Gauge
    backend_condition: Gauge
    active: Gauge
    postgres_failing_over: Gauge
    postgres_primary_ready: Gauge
    postgres_replica_lag_bytes: Gauge
    archiving_failing: Gauge
    last_backup: Gauge
    backup_scheduled: Gauge
    last_archived: Gauge
    _condition_types: dict[tuple[str, str], set[str]] = dataclasses.field(default_factory=dict)
    _postgres_instances: dict[tuple[str, str], set[str]] = dataclasses.field(default_factory=dict)
    _postgres_backends: set[tuple[str, str]] = dataclasses.field(default_factory=set)

    @classmethod
    def create(cls) -> OperatorMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            reconciles=Counter(
                "sbo_reconciles", "Reconciles of ScalableBackends, by result.", ["result"], registry=registry
            ),
            reconcile_errors=Counter(
                "sbo_reconcile_errors", "Reconciles that failed, by reason.", ["reason"], registry=registry
            ),
            reconcile_duration=Histogram(
                "sbo_reconcile_duration_seconds",
                "Time one reconcile takes.",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                registry=registry,
            ),
            api_writes=Counter(
                "sbo_api_writes",
                "Write requests sent to the Kubernetes API.",
                ["verb", "kind"],
                registry=registry,
            ),
            queue_depth=Gauge("sbo_reconcile_queue_depth", "ScalableBackends waiting.", registry=registry),
            list_pages=Counter(
                "sbo_list_pages",
                "Pages of child objects listed by the operator's informers, by kind.",
                ["kind"],
                registry=registry,
            ),
            autoscaler_decisions=Counter(
                "sbo_autoscaler_decisions",
                "Autoscaler decisions, by component and direction.",
                ["component", "direction"],
                registry=registry,
            ),
            autoscaler_metric_value=Gauge(
                "sbo_autoscaler_metric_value",
                "The latest value of each autoscaling metric, as Prometheus returned it.",
                ["namespace", "name", "component", "metric"],
                registry=registry,
            ),
            autoscaler_consecutive_failed_polls=Gauge(
                "sbo_autoscaler_consecutive_failed_polls",
                "Polls in a row in which at least one autoscaling metric failed; 0 once one succeeds.",
                ["namespace", "name", "component"],
                registry=registry,
            ),
            backend_condition=Gauge(
                "sbo_backend_condition",
                "Conditions of each ScalableBackend: 1 for the status a condition has, 0 for the others.",
                ["namespace", "name", "type", "status"],
                registry=registry,
            ),
            active=Gauge(
                "sbo_active",
                "1 while this replica works (reconciles, autoscales); 0 while Kopf peering has paused "
                "it in favour of another replica, and before its first event.",
                registry=registry,
            ),
            postgres_failing_over=Gauge(
                "sbo_postgres_failing_over",
                "1 while the operator moves a backend's PostgreSQL primary (a failover or a switchover).",
                ["namespace", "name"],
                registry=registry,
            ),
            postgres_primary_ready=Gauge(
                "sbo_postgres_primary_ready",
                "1 while a backend's PostgreSQL has a ready pod labelled primary (the one -rw sends to).",
                ["namespace", "name"],
                registry=registry,
            ),
            postgres_replica_lag_bytes=Gauge(
                "sbo_postgres_replica_lag_bytes",
                "Bytes of WAL a standby has not replayed: the primary's position minus its replay "
                "position, at the operator's last probe.",
                ["namespace", "name", "instance"],
                registry=registry,
            ),
            archiving_failing=Gauge(
                "sbo_postgres_archiving_failing",
                "1 while the primary's last attempt to archive WAL to the object store failed, else 0; "
                "only for backends with spec.postgres.backup.",
                ["namespace", "name"],
                registry=registry,
            ),
            last_backup=Gauge(
                "sbo_postgres_last_backup_timestamp_seconds",
                "When the newest base backup completed (Unix time); 0 before the first.",
                ["namespace", "name"],
                registry=registry,
            ),
            backup_scheduled=Gauge(
                "sbo_postgres_backup_scheduled_timestamp_seconds",
                "The schedule's latest time at or before now (Unix time): a backup newer than it is due.",
                ["namespace", "name"],
                registry=registry,
            ),
            last_archived=Gauge(
                "sbo_postgres_last_archived_timestamp_seconds",
                "When the primary last archived a WAL file to the object store (pg_stat_archiver, at the "
                "operator's last probe; Unix time); 0 before the first. Exact, where status.postgres."
                "backup.lastArchivedAt moves on at most every SBO_POSTGRES_ARCHIVE_STATUS_SECONDS.",
                ["namespace", "name"],
                registry=registry,
            ),
        )

    def record_postgres(self, namespace: str, name: str, *, changing: bool, primary_ready: bool) -> None:
        self._postgres_backends.add((namespace, name))
        self.postgres_failing_over.labels(namespace, name).set(1.0 if changing else 0.0)
        self.postgres_primary_ready.labels(namespace, name).set(1.0 if primary_ready else 0.0)

    def record_replica_lag(self, namespace: str, name: str, lag_bytes: Mapping[str, int]) -> None:
        """The standbys' lag; instances no longer measured lose their series."""
        known = self._postgres_instances.setdefault((namespace, name), set())
        for instance in known - set(lag_bytes):
            self.postgres_replica_lag_bytes.remove(namespace, name, instance)
        for instance, lag in lag_bytes.items():
            self.postgres_replica_lag_bytes.labels(namespace, name, instance).set(float(lag))
        known.clear()
        known.update(lag_bytes)

    def record_backups(
        self,
        namespace: str,
        name: str,
        *,
        failing: bool,
        last_backup: float | None,
        scheduled: float,
        last_archived: float | None,
    ) -> None:
        """The backup gauges of one backend with backups on."""
        self.archiving_failing.labels(namespace, name).set(1.0 if failing else 0.0)
        self.last_backup.labels(namespace, name).set(last_backup or 0.0)
        self.backup_scheduled.labels(namespace, name).set(scheduled)
        self.last_archived.labels(namespace, name).set(last_archived or 0.0)

    def forget_backups(self, namespace: str, name: str) -> None:
        """No backup series for a backend without backups (or deleted): no alert fires for it."""
        for gauge in (self.archiving_failing, self.last_backup, self.backup_scheduled, self.last_archived):
            with contextlib.suppress(KeyError):  # never recorded
                gauge.remove(namespace, name)

    def record_conditions(self, namespace: str, name: str, conditions: Iterable[Mapping[str, Any]]) -> None:
        """Set sbo_backend_condition from a status's conditions (kube-state-metrics style)."""
        types = self._condition_types.setdefault((namespace, name), set())
        for condition in conditions:
            types.add(condition["type"])
            for status in CONDITION_STATUSES:
                value = 1.0 if condition.get("status") == status else 0.0
                self.backend_condition.labels(namespace, name, condition["type"], status).set(value)

    def forget_backend(self, namespace: str, name: str) -> None:
        """Drop a deleted backend's series, so that no alert fires for it."""
        self.forget_backups(namespace, name)
        for type in self._condition_types.pop((namespace, name), set()):
            for status in CONDITION_STATUSES:
                self.backend_condition.remove(namespace, name, type, status)
        for instance in self._postgres_instances.pop((namespace, name), set()):
            self.postgres_replica_lag_bytes.remove(namespace, name, instance)
        if (namespace, name) in self._postgres_backends:
            self._postgres_backends.discard((namespace, name))
            self.postgres_failing_over.remove(namespace, name)
            self.postgres_primary_ready.remove(namespace, name)


CONDITION_STATUSES = ("True", "False", "Unknown")
