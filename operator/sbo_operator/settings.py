"""The operator process's settings: one class, read from SBO_* environment variables."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sbo_operator.api.formats import DNS_LABEL_PATTERN, StringFormat
from sbo_operator.api.v1alpha1.network import LabelSelector
from sbo_operator.builders.images import (
    OFFICIAL_POSTGRES_IMAGE,
    OFFICIAL_REDIS_IMAGE,
    DataServiceImages,
    check_postgres_image_template,
    check_redis_image_template,
)
from sbo_operator.builders.network_policies import OperatorPods
from sbo_operator.snapshot import ARCHIVE_STATUS_INTERVAL

NamespaceName = Annotated[
    str,
    StringFormat(
        DNS_LABEL_PATTERN,
        "must be a namespace name: lowercase letters, digits and '-', starting and ending with a "
        "letter or digit, e.g. sbo-system",
        max_length=63,
    ),
]
POD_LABELS_EXAMPLE = "app.kubernetes.io/name=scalable-backend-operator,app.kubernetes.io/instance=sbo"


def _any_address() -> list[IPv4Network | IPv6Network]:
    return [IPv4Network("0.0.0.0/0"), IPv6Network("::/0")]


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class OperatorSettings(BaseSettings):
    """Everything the operator process can be told, e.g. `SBO_NAMESPACES=shop,billing`."""

    # The alias makes validation errors name the variable (SBO_WORKERS), not the field.
    model_config = SettingsConfigDict(
        env_prefix="SBO_",
        frozen=True,
        alias_generator=lambda name: f"SBO_{name.upper()}",
        validate_by_name=True,
        validate_by_alias=True,
    )

    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch, comma-separated. Empty means every namespace (cluster-wide).",
    )
    field_manager: str = Field(
        default="scalable-backend-operator",
        description="Server-side apply field manager for every child object.",
    )
    resync_seconds: float = Field(
        default=300, gt=0, description="Every object is reconciled at least this often, even with no events."
    )
    workers: int = Field(default=16, ge=1, le=256, description="Concurrent reconciles.")
    api_threads: int = Field(
        default=32, ge=1, le=256, description="Threads (and HTTP connections) for Kubernetes API calls."
    )
    list_page_size: int = Field(
        default=100,
        ge=1,
        le=5000,
        description="Child objects per page when the operator lists a kind (at start and after a watch "
        "expired); only one page of whole objects is in memory at a time.",
    )
    default_prometheus_url: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090",
        description="Prometheus used by autoscaling when a ScalableBackend sets no spec.prometheus.url.",
    )
    autoscaler_concurrency: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="Prometheus polls in flight at once, over all ScalableBackends.",
    )
    autoscaler_secret_cache_seconds: float = Field(
        default=60,
        ge=0,
        description="How long credentials read from Secrets for Prometheus are reused; a rotated token "
        "takes effect within this time.",
    )
    peering: bool = Field(
        default=False,
        description="Use Kopf peering so that only one of several operator replicas is active.",
    )
    peering_name: str = Field(
        default="scalable-backend-operator", description="Name of the KopfPeering object."
    )
    peering_priority: int | None = Field(
        default=None,
        description="This replica's Kopf peering priority; the live replica with the highest one "
        "works, the others wait. Unset: derived from the start time, so that the longest-running "
        "replica stays active (see docs/operator.md).",
    )
    peering_lifetime_seconds: int = Field(
        default=60,
        ge=5,
        le=3600,
        description="How long a replica's peering keep-alive counts: a replica that died without "
        "saying goodbye (SIGKILL, a lost node) is replaced within about this time.",
    )
    health_port: int = Field(default=8080, ge=0, le=65535, description="Port of /healthz (0 disables it).")
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="Port of /metrics (0 disables it).")
    log_format: LogFormat = Field(default=LogFormat.TEXT, description="Log format: text or json.")
    log_level: str = Field(default="INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    postgres_image: str = Field(
        default=OFFICIAL_POSTGRES_IMAGE,
        description="Image of PostgreSQL, a template in which {version} becomes spec.postgres.version "
        "(15, 16 or 17), e.g. mirror.example/library/postgres:{version}.",
    )
    redis_image: str = Field(
        default=OFFICIAL_REDIS_IMAGE,
        description="Image of Redis, a template in which {version} becomes spec.redis.version "
        "(7.0, 7.2 or 7.4), e.g. mirror.example/library/redis:{version}.",
    )

    postgres_probe_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="How often the operator asks each PostgreSQL instance for its role and WAL position "
        "(a read of PostgreSQL, never of the API). During a failover or switchover it asks every pass.",
    )
    postgres_archive_status_seconds: float = Field(
        default=ARCHIVE_STATUS_INTERVAL.total_seconds(),
        ge=0,
        description="How often at most status.postgres.backup.lastArchivedWAL/At follow the archiver while "
        "the ContinuousArchiving condition's status and reason hold: under a steady write load a WAL "
        "file is archived every archive_timeout, and each would be a status write. The metric "
        "sbo_postgres_last_archived_timestamp_seconds always has the exact time; 0: every file.",
    )
    postgres_probe_networks: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=_any_address,
        description="Comma-separated CIDRs of the pod addresses the operator may connect to for its "
        "PostgreSQL probes (default: any). An instance outside them is never probed: it is not "
        "failed over to, and not failed over from unless its pod is unready or gone.",
    )

    operator_namespace: NamespaceName | None = Field(
        default=None,
        description="The namespace the operator's pods run in (the chart sets it). With "
        "SBO_OPERATOR_POD_LABELS, every PostgreSQL NetworkPolicy admits those pods on 5432, for the "
        "operator's probes. Unset (an operator outside the cluster): no such rule.",
    )
    operator_pod_labels: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description=f"The labels of the operator's pods, comma-separated key=value pairs, e.g. "
        f"{POD_LABELS_EXAMPLE} (the chart sets its selector labels). Set with SBO_OPERATOR_NAMESPACE.",
    )

    @field_validator("operator_namespace", mode="before")
    @classmethod
    def _blank_namespace_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("operator_pod_labels", mode="before")
    @classmethod
    def _parse_pod_labels(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        labels: dict[str, str] = {}
        for item in (item.strip() for item in value.split(",")):
            if not item:
                continue
            key, equals, label = item.partition("=")
            if not equals or key.strip() in labels:
                raise ValueError(
                    f"must be comma-separated key=value pairs, each key once, e.g. {POD_LABELS_EXAMPLE}; "
                    f"not {item!r}"
                )
            labels[key.strip()] = label.strip()
        return labels

    @field_validator("operator_pod_labels")
    @classmethod
    def _check_pod_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            try:
                LabelSelector(match_labels={key: value})  # the rules the CRD applies to matchLabels
            except ValidationError as error:
                reason = error.errors()[0]["msg"].removeprefix("Value error, ").removeprefix("matchLabels: ")
                raise ValueError(f"{key}={value}: {reason}") from None
        return labels

    # Both or neither: one alone cannot name the operator's pods (and would silently add no rule).
    @model_validator(mode="after")
    def _operator_identity_is_whole(self) -> OperatorSettings:
        if bool(self.operator_namespace) != bool(self.operator_pod_labels):
            raise ValueError(
                "SBO_OPERATOR_NAMESPACE and SBO_OPERATOR_POD_LABELS are set together or not at all "
                f"(namespace {self.operator_namespace!r}, pod labels {self.operator_pod_labels!r})"
            )
        return self

    @field_validator("postgres_probe_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [ip_network(item.strip()) for item in value.split(",") if item.strip()]
        return value

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    # Checked at start-up for every supported version, so that no pod fails with InvalidImageName.
    @field_validator("postgres_image")
    @classmethod
    def _check_postgres_image(cls, template: str) -> str:
        return check_postgres_image_template(template)

    @field_validator("redis_image")
    @classmethod
    def _check_redis_image(cls, template: str) -> str:
        return check_redis_image_template(template)

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def archive_status_interval(self) -> timedelta:
        return timedelta(seconds=self.postgres_archive_status_seconds)

    @property
    def operator_pods(self) -> OperatorPods | None:
        """The operator's own pods, for PostgreSQL's NetworkPolicy; None outside the cluster."""
        if self.operator_namespace is None:
            return None
        return OperatorPods(namespace=self.operator_namespace, labels=self.operator_pod_labels)

    @property
    def data_service_images(self) -> DataServiceImages:
        return DataServiceImages(postgres=self.postgres_image, redis=self.redis_image)
