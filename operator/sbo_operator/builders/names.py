"""Predictable names of every child, derived from the ScalableBackend's name.

``metadata.name`` is capped at ``MAX_NAME_LENGTH`` (35) so that the longest derived label value,
a replica pod's controller-revision-hash ``<name>-postgres-replica-<10 chars>`` (of the old
shape, whose pods may still run), fits in 63.
"""

from __future__ import annotations

from dataclasses import dataclass

from sbo_operator.api.v1alpha1 import ScalableBackend

__all__ = ["ChildNames", "child_names", "service_host"]

API_SERVICE_PORT = 80
REDIS_PORT = 6379
POSTGRES_PORT = 5432


@dataclass(frozen=True)
class ChildNames:
    """The names of one ScalableBackend's children."""

    backend: str

    @property
    def api(self) -> str:
        """The api Deployment, Service, PodDisruptionBudget and Ingress."""
        return f"{self.backend}-api"

    @property
    def service_account(self) -> str:
        """The ServiceAccount of the api, worker and migrations pods."""
        return f"{self.backend}-app"

    @property
    def worker(self) -> str:
        """The worker Deployment and PodDisruptionBudget."""
        return f"{self.backend}-worker"

    @property
    def migrations_prefix(self) -> str:
        """Migrations Jobs are named ``<prefix><hash of the pod template>``."""
        return f"{self.backend}-migrations-"

    @property
    def migrations(self) -> str:
        """The migrations Jobs' NetworkPolicy (with spec.networkPolicies)."""
        return f"{self.backend}-migrations"

    @property
    def redis(self) -> str:
        """The Redis StatefulSet, Service, Secret and NetworkPolicy."""
        return f"{self.backend}-redis"

    @property
    def redis_headless(self) -> str:
        """The headless Service governing the Redis StatefulSet (per-pod DNS names)."""
        return f"{self.backend}-redis-headless"

    @property
    def redis_config(self) -> str:
        """The Redis ConfigMap (redis.conf and the start script)."""
        return f"{self.backend}-redis-config"

    @property
    def postgres(self) -> str:
        """The PostgreSQL NetworkPolicy."""
        return f"{self.backend}-postgres"

    @property
    def postgres_instances(self) -> str:
        """The PostgreSQL StatefulSet (pods ``<name>-postgres-<ordinal>``) and its PodDisruptionBudget."""
        return f"{self.backend}-postgres"

    @property
    def postgres_headless(self) -> str:
        """The headless Service governing the PostgreSQL StatefulSet (per-pod DNS names)."""
        return f"{self.backend}-postgres-headless"

    @property
    def postgres_primary(self) -> str:
        """The old shape's primary StatefulSet: kept until its data moved to the instances."""
        return f"{self.backend}-postgres-primary"

    @property
    def postgres_replica(self) -> str:
        """The old shape's read replicas' StatefulSet: deleted with the old primary's."""
        return f"{self.backend}-postgres-replica"

    @property
    def postgres_read_write(self) -> str:
        """The Service in front of the primary."""
        return f"{self.backend}-postgres-rw"

    @property
    def postgres_read_only(self) -> str:
        """The Service in front of the read replicas."""
        return f"{self.backend}-postgres-ro"

    @property
    def app_secret(self) -> str:
        """The Secret with the application's own secret key (e.g. for signing tokens)."""
        return f"{self.backend}-app-secrets"

    @property
    def postgres_secret(self) -> str:
        """The Secret with the application's (and the replication) credentials."""
        return f"{self.backend}-postgres-app"

    @property
    def postgres_operator_secret(self) -> str:
        """The Secret with the operator's own PostgreSQL login (probes, promotion)."""
        return f"{self.backend}-postgres-operator"

    @property
    def postgres_config(self) -> str:
        """The ConfigMap with postgresql.conf, pg_hba.conf and the bootstrap scripts."""
        return f"{self.backend}-postgres-config"


def child_names(backend: ScalableBackend) -> ChildNames:
    """The names of the backend's children."""
    return ChildNames(backend.metadata.name)


def service_host(service: str, namespace: str) -> str:
    """The in-cluster DNS name of a Service (the search path supplies the cluster domain)."""
    return f"{service}.{namespace}.svc"
