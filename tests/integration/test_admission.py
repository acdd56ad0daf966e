"""Bad ScalableBackends are rejected at admission by the real kube-apiserver, naming the field.

No operator runs here: these tests prove what the checked-in CRD alone enforces (OpenAPI schema,
CEL rules, transition rules with oldSelf, strict field validation) and what kubectl prints, so a
user learns which field is wrong and how to fix it before anything is reconciled.

Each case is (id, manifest change, fragments the error must contain): the field path and what is
wrong with it.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.backends import Mutation, kubectl_create, valid_manifest, with_field
from devkit.cluster import LocalCluster, eventually
from devkit.paths import REPO
from sbo_operator.api.base import MAX_REPLICAS
from sbo_operator.api.formats import (
    ARCHIVE_TIMEOUT_MESSAGE,
    CONFIG_MAP_KEY_MESSAGE,
    CONTAINER_NAME_MESSAGE,
    CRON_SCHEDULE_MESSAGE,
    DNS_SUBDOMAIN_MESSAGE,
    DURATION_MESSAGE,
    ENDPOINT_URL_MESSAGE,
    ENV_NAME_MESSAGE,
    FIELD_PATH_MESSAGE,
    HTTP_PATH_MESSAGE,
    INGRESS_HOST_MESSAGE,
    LSN_MESSAGE,
    METRIC_NAME_MESSAGE,
    PROMETHEUS_URL_MESSAGE,
    PROMQL_MESSAGE,
    REGION_MESSAGE,
    RETENTION_MESSAGE,
    S3_DESTINATION_MESSAGE,
    SQL_IDENTIFIER_MESSAGE,
    TIMESTAMP_MESSAGE,
)
from sbo_operator.api.v1alpha1 import (
    DIVISOR_MESSAGE,
    ENV_RESOURCE_MESSAGE,
    FAILOVER_LAG_MESSAGE,
    IMAGE_MESSAGE,
    MAX_NAME_LENGTH,
    MAX_READ_REPLICAS,
    QUANTITY_MESSAGE,
    RECOVERY_IMMUTABLE_MESSAGE,
    RECOVERY_SOURCE_IS_DESTINATION_MESSAGE,
    RECOVERY_TARGET_MESSAGE,
    REQUEST_ABOVE_LIMIT_MESSAGE,
    RESOURCE_NAME_MESSAGE,
    SWITCHOVER_ID_MESSAGE,
    SWITCHOVER_TO_MESSAGE,
    SYNCHRONOUS_STANDBYS_MESSAGE,
    PostgresSpec,
    ScalableBackend,
)
from sbo_operator.api.v1alpha1.network import LABEL_KEY_MESSAGE, LABEL_VALUE_MESSAGE, PEER_MESSAGE

pytestmark = pytest.mark.integration

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def autoscaling(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "metrics": [{"name": "rps", "query": "sum(rate(http_requests_total[1m]))", "targetPerReplica": 50}],
    }
    spec.update(changes)
    return spec


def worker(**changes: Any) -> dict[str, Any]:
    return {"command": ["python", "-m", "app.worker"], **changes}


def env_from(**source: Any) -> list[dict[str, Any]]:
    return [{"name": "FROM_SOURCE", "valueFrom": source}]


def store(destination: str = "s3://backups/shop", **fields: Any) -> dict[str, Any]:
    return {"destination": destination, "credentials": {"secretName": "shop-backup"}, **fields}


def recovery(destination: str = "s3://backups/old", **target: str) -> dict[str, Any]:
    return {"recovery": {"source": store(destination), "target": target}}


def backup_field(field: str, value: Any) -> Mutation:
    return with_field("spec.postgres.backup", store(**{field: value}))


def assert_rejected(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode != 0, f"accepted, expected a rejection: {result.stdout}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"
    return result.stderr


# ---- rejected on create -----------------------------------------------------------------------------

CREATE_CASES = [
    pytest.param(
        with_field("spec.api.autoscaling", autoscaling(minReplicas=5, maxReplicas=3)),
        ["spec.api.autoscaling.minReplicas", "minReplicas must not exceed maxReplicas"],
        id="api-autoscaling-min-above-max",
    ),
    pytest.param(
        with_field("spec.worker", worker(autoscaling=autoscaling(minReplicas=4, maxReplicas=2))),
        ["spec.worker.autoscaling.minReplicas", "minReplicas must not exceed maxReplicas"],
        id="worker-autoscaling-min-above-max",
    ),
    pytest.param(
        with_field("spec.api.replicas", -1),
        ["spec.api.replicas", "should be greater than or equal to 0"],
        id="negative-api-replicas",
    ),
    pytest.param(
        with_field("spec.worker", worker(replicas=-1)),
        ["spec.worker.replicas", "should be greater than or equal to 0"],
        id="negative-worker-replicas",
    ),
    pytest.param(
        with_field("spec.postgres.readReplicas", MAX_READ_REPLICAS + 1),
        ["spec.postgres.readReplicas", f"should be less than or equal to {MAX_READ_REPLICAS}"],
        id="read-replicas-above-cap",
    ),
    pytest.param(
        with_field("spec.redis.maxMemory", "12 potatoes"),
        ["spec.redis.maxMemory", QUANTITY_MESSAGE],
        id="malformed-redis-max-memory",
    ),
    pytest.param(
        with_field("spec.redis.maxMemory", -1),
        ["spec.redis.maxMemory", QUANTITY_MESSAGE],
        id="negative-integer-quantity",
    ),
    pytest.param(
        with_field("spec.postgres.storage", {"size": "ten gigs"}),
        ["spec.postgres.storage.size", QUANTITY_MESSAGE],
        id="malformed-postgres-storage-size",
    ),
    pytest.param(
        with_field("spec.api.resources", {"requests": {"memory": "256 MB"}}),
        ["spec.api.resources.requests[memory]", QUANTITY_MESSAGE],
        id="malformed-resource-request",
    ),
    pytest.param(
        with_field("spec.postgres.resources", {"limits": {"cpu": "2 cores"}}),
        ["spec.postgres.resources.limits[cpu]", QUANTITY_MESSAGE],
        id="malformed-resource-limit",
    ),
    pytest.param(
        with_field("spec.image", "sbo-sample-app 0.1.0"),
        ["spec.image", IMAGE_MESSAGE],
        id="image-with-space",
    ),
    pytest.param(
        with_field("spec.api.image", "sbo-sample-app:0.1.0\n"),
        ["spec.api.image", IMAGE_MESSAGE],
        id="api-image-with-newline",
    ),
    pytest.param(
        with_field("spec.worker", worker(image="sbo-sample-app:\t0.1.0")),
        ["spec.worker.image", IMAGE_MESSAGE],
        id="worker-image-with-tab",
    ),
    pytest.param(
        with_field("spec.postgres.version", "14"),
        ["spec.postgres.version", 'Unsupported value: "14"', 'supported values: "15", "16", "17"'],
        id="unsupported-postgres-version",
    ),
    pytest.param(
        with_field("metadata.name", "a" * (MAX_NAME_LENGTH + 1)),
        ["metadata.name", f"Too long: may not be more than {MAX_NAME_LENGTH}"],
        id="name-too-long-for-children",
    ),
    pytest.param(
        with_field("spec.prometheus", {"pollSeconds": 0}),
        ["spec.prometheus.pollSeconds", "pollSeconds must be at least 1"],
        id="poll-seconds-below-1",
    ),
    pytest.param(
        with_field(
            "spec.api.autoscaling",
            autoscaling(
                metrics=[
                    {"name": "rps", "query": "vector(1)", "targetPerReplica": 50},
                    {"name": "rps", "query": "vector(2)", "target": 0.2},
                ]
            ),
        ),
        ["spec.api.autoscaling.metrics", "metric names must be unique"],
        id="duplicate-metric-names",
    ),
    pytest.param(
        with_field("spec.api.autoscaling", autoscaling(metrics=[])),
        ["spec.api.autoscaling.metrics", "should have at least 1 items"],
        id="zero-metrics",
    ),
    pytest.param(
        with_field(
            "spec.api.autoscaling",
            autoscaling(metrics=[{"name": "rps", "query": "vector(1)", "targetPerReplica": 50, "target": 1}]),
        ),
        ["spec.api.autoscaling.metrics[0]", "set exactly one of targetPerReplica and target"],
        id="metric-with-both-targets",
    ),
    pytest.param(
        with_field("spec.worker", worker(autoscaling=autoscaling(metrics=[{"name": "depth", "query": "q"}]))),
        ["spec.worker.autoscaling.metrics[0]", "set exactly one of targetPerReplica and target"],
        id="metric-with-neither-target",
    ),
    pytest.param(
        with_field("spec.api.autoscaling", autoscaling(fallback={"replicas": 9})),
        ["spec.api.autoscaling.fallback", "fallback.replicas must lie within [minReplicas, maxReplicas]"],
        id="fallback-outside-min-max",
    ),
]

# Every formatted field (docs/operator.md, "Formats checked at admission"): a malformed value is
# refused here, naming the field and the fix, instead of failing when the operator builds a child
# from it or when the kubelet or Prometheus's client reads it.
FORMAT_CASES = [
    pytest.param(
        with_field("spec.prometheus", {"url": "prometheus.monitoring.svc:9090"}),
        ["spec.prometheus.url", PROMETHEUS_URL_MESSAGE],
        id="prometheus-url-without-scheme",
    ),
    pytest.param(
        with_field("spec.prometheus", {"url": "http://"}),
        ["spec.prometheus.url", PROMETHEUS_URL_MESSAGE],
        id="prometheus-url-without-host",
    ),
    pytest.param(
        with_field("spec.prometheus", {"url": "http://prometheus monitoring:9090"}),
        ["spec.prometheus.url", PROMETHEUS_URL_MESSAGE],
        id="prometheus-url-with-space",
    ),
    pytest.param(
        with_field("spec.image", "registry.example.com/Shop:1.0"),
        ["spec.image", IMAGE_MESSAGE],
        id="image-with-uppercase-repository",
    ),
    pytest.param(
        with_field("spec.api.image", "shop:1.0:2"),
        ["spec.api.image", IMAGE_MESSAGE],
        id="image-with-two-tags",
    ),
    pytest.param(
        with_field("spec.api.env", [{"name": "LOG LEVEL", "value": "debug"}]),
        ["spec.api.env[0].name", ENV_NAME_MESSAGE],
        id="env-name-with-space",
    ),
    pytest.param(
        with_field("spec.api.env", env_from(secretKeyRef={"name": "App_Secret", "key": "token"})),
        ["spec.api.env[0].valueFrom.secretKeyRef.name", DNS_SUBDOMAIN_MESSAGE],
        id="env-secret-name-malformed",
    ),
    pytest.param(
        with_field("spec.api.env", env_from(secretKeyRef={"name": "app", "key": "..token"})),
        ["spec.api.env[0].valueFrom.secretKeyRef.key", CONFIG_MAP_KEY_MESSAGE],
        id="env-secret-key-escaping-the-volume",
    ),
    pytest.param(
        with_field("spec.worker", worker(env=env_from(configMapKeyRef={"name": "settings", "key": "a/b"}))),
        ["spec.worker.env[0].valueFrom.configMapKeyRef.key", CONFIG_MAP_KEY_MESSAGE],
        id="env-config-map-key-with-slash",
    ),
    pytest.param(
        with_field("spec.api.env", env_from(fieldRef={"fieldPath": "metadata.nickname"})),
        ["spec.api.env[0].valueFrom.fieldRef.fieldPath", FIELD_PATH_MESSAGE],
        id="env-field-path-not-offered",
    ),
    pytest.param(
        with_field("spec.api.env", env_from(fieldRef={"fieldPath": "metadata.name", "apiVersion": "v2"})),
        ["spec.api.env[0].valueFrom.fieldRef.apiVersion", "the downward API has only v1"],
        id="env-field-api-version-not-v1",
    ),
    pytest.param(
        with_field("spec.api.env", env_from(resourceFieldRef={"resource": "limits.gpu"})),
        ["spec.api.env[0].valueFrom.resourceFieldRef.resource", ENV_RESOURCE_MESSAGE],
        id="env-resource-not-offered",
    ),
    pytest.param(
        with_field(
            "spec.api.env", env_from(resourceFieldRef={"resource": "limits.cpu", "containerName": "Api"})
        ),
        ["spec.api.env[0].valueFrom.resourceFieldRef.containerName", CONTAINER_NAME_MESSAGE],
        id="env-resource-container-name-malformed",
    ),
    pytest.param(
        with_field("spec.api.env", env_from(resourceFieldRef={"resource": "limits.cpu", "divisor": "1Mi"})),
        ["spec.api.env[0].valueFrom.resourceFieldRef.divisor", DIVISOR_MESSAGE],
        id="env-resource-divisor-not-a-cpu-unit",
    ),
    pytest.param(
        with_field("spec.api.resources", {"requests": {"mem": "128Mi"}}),
        ["spec.api.resources.requests", RESOURCE_NAME_MESSAGE],
        id="resource-name-unknown",
    ),
    pytest.param(
        with_field("spec.redis.resources", {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}),
        ["spec.redis.resources.requests", REQUEST_ABOVE_LIMIT_MESSAGE],
        id="resource-request-above-limit",
    ),
    pytest.param(
        with_field("spec.api.readinessPath", "readyz"),
        ["spec.api.readinessPath", HTTP_PATH_MESSAGE],
        id="probe-path-without-slash",
    ),
    pytest.param(
        with_field("spec.api.ingress", {"host": "10.0.0.1"}),
        ["spec.api.ingress.host", INGRESS_HOST_MESSAGE],
        id="ingress-host-is-an-ip",
    ),
    pytest.param(
        with_field("spec.api.ingress", {"host": "shop.example.com", "className": "Public Nginx"}),
        ["spec.api.ingress.className", DNS_SUBDOMAIN_MESSAGE],
        id="ingress-class-name-malformed",
    ),
    pytest.param(
        with_field("spec.api.ingress", {"host": "shop.example.com", "tlsSecretName": "Shop_TLS"}),
        ["spec.api.ingress.tlsSecretName", DNS_SUBDOMAIN_MESSAGE],
        id="ingress-tls-secret-name-malformed",
    ),
    pytest.param(
        with_field("spec.postgres.storage", {"size": "10Gi", "storageClassName": "Fast_SSD"}),
        ["spec.postgres.storage.storageClassName", DNS_SUBDOMAIN_MESSAGE],
        id="storage-class-name-malformed",
    ),
    pytest.param(
        with_field("spec.postgres.database", "My-DB"),
        ["spec.postgres.database", SQL_IDENTIFIER_MESSAGE],
        id="postgres-database-needing-quotes",
    ),
    pytest.param(
        with_field("spec.prometheus", {"bearerTokenSecretRef": {"name": "Prometheus Token", "key": "token"}}),
        ["spec.prometheus.bearerTokenSecretRef.name", DNS_SUBDOMAIN_MESSAGE],
        id="prometheus-token-secret-name-malformed",
    ),
    pytest.param(
        with_field("spec.prometheus", {"basicAuthSecretRef": {"name": "auth", "passwordKey": "pass word"}}),
        ["spec.prometheus.basicAuthSecretRef.passwordKey", CONFIG_MAP_KEY_MESSAGE],
        id="prometheus-basic-auth-key-malformed",
    ),
    pytest.param(
        with_field("spec.prometheus", {"caConfigMapRef": {"name": "ca", "key": "."}}),
        ["spec.prometheus.caConfigMapRef.key", CONFIG_MAP_KEY_MESSAGE],
        id="prometheus-ca-key-is-dot",
    ),
    pytest.param(
        with_field(
            "spec.api.autoscaling",
            autoscaling(metrics=[{"name": "1rps", "query": "vector(1)", "targetPerReplica": 50}]),
        ),
        ["spec.api.autoscaling.metrics[0].name", METRIC_NAME_MESSAGE],
        id="metric-name-starting-with-a-digit",
    ),
    pytest.param(
        with_field(
            "spec.api.autoscaling",
            autoscaling(metrics=[{"name": "rps", "query": "  ", "targetPerReplica": 50}]),
        ),
        ["spec.api.autoscaling.metrics[0].query", PROMQL_MESSAGE],
        id="metric-query-blank",
    ),
]

NETWORK_POLICY_CASES = [
    pytest.param(
        with_field("spec.networkPolicies", {"appIngressFrom": [{}]}),
        ["spec.networkPolicies.appIngressFrom[0]", PEER_MESSAGE],
        id="network-peer-without-selector",
    ),
    pytest.param(
        with_field(
            "spec.networkPolicies",
            {"appIngressFrom": [{"namespaceSelector": {"matchLabels": {"not a key": "x"}}}]},
        ),
        ["spec.networkPolicies.appIngressFrom[0].namespaceSelector.matchLabels", LABEL_KEY_MESSAGE],
        id="network-peer-label-key-malformed",
    ),
    pytest.param(
        with_field(
            "spec.networkPolicies",
            {"appIngressFrom": [{"podSelector": {"matchLabels": {"app": "-prometheus"}}}]},
        ),
        ["spec.networkPolicies.appIngressFrom[0].podSelector.matchLabels.app", LABEL_VALUE_MESSAGE],
        id="network-peer-label-value-malformed",
    ),
    pytest.param(
        with_field("spec.networkPolicies", {"egress": "yes"}),
        ["spec.networkPolicies.egress", "must be of type boolean"],
        id="network-egress-not-a-boolean",
    ),
]

# The autoscaler writes its decision into spec.api.replicas or spec.worker.replicas: bounds above
# their cap would make every scale patch fail, so they are refused up front.
REPLICA_CAP_CASES = [
    pytest.param(
        with_field(
            "spec.api.autoscaling", autoscaling(minReplicas=MAX_REPLICAS + 1, maxReplicas=MAX_REPLICAS + 5)
        ),
        ["spec.api.autoscaling.minReplicas", f"should be less than or equal to {MAX_REPLICAS}"],
        id="api-autoscaling-min-above-replica-cap",
    ),
    pytest.param(
        with_field("spec.api.autoscaling", autoscaling(maxReplicas=MAX_REPLICAS + 1)),
        ["spec.api.autoscaling.maxReplicas", f"should be less than or equal to {MAX_REPLICAS}"],
        id="api-autoscaling-max-above-replica-cap",
    ),
    pytest.param(
        with_field("spec.worker", worker(autoscaling=autoscaling(maxReplicas=MAX_REPLICAS + 1))),
        ["spec.worker.autoscaling.maxReplicas", f"should be less than or equal to {MAX_REPLICAS}"],
        id="worker-autoscaling-max-above-replica-cap",
    ),
    pytest.param(
        with_field(
            "spec.worker",
            worker(
                autoscaling=autoscaling(maxReplicas=MAX_REPLICAS + 1, fallback={"replicas": MAX_REPLICAS + 1})
            ),
        ),
        ["spec.worker.autoscaling.fallback.replicas", f"should be less than or equal to {MAX_REPLICAS}"],
        id="worker-fallback-above-replica-cap",
    ),
]

FAILOVER_CASES = [
    pytest.param(
        with_field("spec.postgres.failoverDelay", "30 seconds"),
        ["spec.postgres.failoverDelay", DURATION_MESSAGE],
        id="malformed-failover-delay",
    ),
    pytest.param(
        with_field("spec.postgres.failoverDelay", "30"),
        ["spec.postgres.failoverDelay", DURATION_MESSAGE],
        id="failover-delay-without-unit",
    ),
    pytest.param(
        with_field("spec.postgres.maxFailoverLag", "16 MB"),
        ["spec.postgres.maxFailoverLag", QUANTITY_MESSAGE],
        id="malformed-failover-lag",
    ),
    pytest.param(
        with_field("spec.postgres.maxFailoverLag", "1500m"),
        ["spec.postgres.maxFailoverLag", FAILOVER_LAG_MESSAGE],
        id="fractional-failover-lag",
    ),
    pytest.param(
        with_field("spec.postgres", {"readReplicas": 1, "synchronous": {"standbys": 2}}),
        ["spec.postgres.synchronous", SYNCHRONOUS_STANDBYS_MESSAGE],
        id="more-synchronous-standbys-than-replicas",
    ),
    pytest.param(
        with_field("spec.postgres.synchronous", {"standbys": 2}),
        ["spec.postgres.synchronous", SYNCHRONOUS_STANDBYS_MESSAGE],
        id="more-synchronous-standbys-than-default-replicas",
    ),
    pytest.param(
        with_field("spec.postgres", {"readReplicas": 1, "synchronous": {"standbys": 2, "required": False}}),
        ["spec.postgres.synchronous", SYNCHRONOUS_STANDBYS_MESSAGE],
        id="more-synchronous-standbys-than-replicas-even-when-not-required",
    ),
    pytest.param(
        with_field("spec.postgres.switchover", {"to": "cart-postgres-1", "id": "a"}),
        ["spec.postgres.switchover.to", SWITCHOVER_TO_MESSAGE],
        id="switchover-to-another-backend",
    ),
    pytest.param(
        with_field("spec.postgres.switchover", {"to": "shop-postgres-2", "id": "a"}),
        ["spec.postgres.switchover.to", SWITCHOVER_TO_MESSAGE],
        id="switchover-beyond-the-instance-count",
    ),
    pytest.param(
        with_field("spec.postgres.switchover", {"to": "shop-postgres-replica-0", "id": "a"}),
        ["spec.postgres.switchover.to", SWITCHOVER_TO_MESSAGE],
        id="switchover-to-a-pod-of-the-old-shape",
    ),
    pytest.param(
        with_field("spec.postgres.switchover", {"to": "shop-postgres-01", "id": "a"}),
        ["spec.postgres.switchover.to", SWITCHOVER_TO_MESSAGE],
        id="switchover-with-a-padded-ordinal",
    ),
    pytest.param(
        with_field("spec.postgres.switchover", {"to": "shop-postgres-1", "id": ""}),
        ["spec.postgres.switchover.id", SWITCHOVER_ID_MESSAGE],
        id="switchover-with-an-empty-id",
    ),
    pytest.param(
        with_field("spec.postgres.switchover", {"to": "shop-postgres-1", "id": " "}),
        ["spec.postgres.switchover.id", SWITCHOVER_ID_MESSAGE],
        id="switchover-with-a-blank-id",
    ),
    pytest.param(
        with_field("spec.postgres.switchover", {"to": "shop-postgres-1"}),
        ["spec.postgres.switchover.id", "Required value"],
        id="switchover-without-id",
    ),
]


# Backups and recovery (docs/backups.md): each format, with the field named and the fix.
MALFORMED_BACKUP_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    # field: (message, {case id: value})
    "destination": (
        S3_DESTINATION_MESSAGE,
        {
            "destination-without-scheme": "backups/shop",
            "destination-bucket-uppercase": "s3://Backups/shop",
            "destination-bucket-too-short": "s3://ab/shop",
            "destination-bucket-too-long": f"s3://{'b' * 64}/shop",
            "destination-bucket-is-an-ip": "s3://10.0.0.1/shop",
            "destination-bucket-with-adjacent-dots": "s3://back..ups/shop",
            "destination-with-trailing-slash": "s3://backups/shop/",
            "destination-with-dot-dot-segment": "s3://backups/../shop",
        },
    ),
    "endpointURL": (
        ENDPOINT_URL_MESSAGE,
        {
            "endpoint-without-scheme": "minio.storage.svc:9000",
            "endpoint-port-out-of-range": "https://minio:70000",
        },
    ),
    "region": (REGION_MESSAGE, {"region-with-spaces": "us east 1"}),
    "schedule": (
        CRON_SCHEDULE_MESSAGE,
        {
            "schedule-with-four-fields": "0 3 * *",
            "schedule-with-seconds": "0 0 3 * * *",
            "schedule-minute-out-of-range": "60 3 * * *",
            "schedule-day-of-month-zero": "0 3 0 * *",
            "schedule-day-of-week-seven": "0 3 * * 7",
            "schedule-step-zero": "*/0 * * * *",
            "schedule-descending-range": "0 22-2 * * *",
            # Ordered as text, not as numbers: only the CEL rule, not the pattern, refuses it.
            "schedule-range-descending-as-numbers": "10-9 * * * *",
            "schedule-with-names": "0 3 * * MON-FRI",
            "schedule-every-macro": "@every 24h",
        },
    ),
    "retention": (
        RETENTION_MESSAGE,
        {"retention-without-unit": "30", "retention-in-years": "1y", "retention-zero": "0d"},
    ),
    "archiveTimeout": (
        ARCHIVE_TIMEOUT_MESSAGE,
        {
            "archive-timeout-without-unit": "30",
            "archive-timeout-below-5s": "1s",
            "archive-timeout-above-1h": "1h1s",
            "archive-timeout-in-milliseconds": "1500ms",
        },
    ),
}
MALFORMED_TARGETS: dict[str, tuple[str, dict[str, str]]] = {
    "time": (
        TIMESTAMP_MESSAGE,
        {
            "target-time-not-rfc3339": "2026-01-31 14:05:00",
            "target-time-without-offset": "2026-01-31T14:05:00",
            "target-time-on-february-29-of-a-common-year": "2025-02-29T14:05:00Z",
            "target-time-on-june-31": "2026-06-31T14:05:00Z",
        },
    ),
    "lsn": (LSN_MESSAGE, {"target-lsn-without-slash": "3000060", "target-lsn-above-32-bits": "123456789/0"}),
}

BACKUP_CASES = [
    *(
        pytest.param(backup_field(field, value), [f"spec.postgres.backup.{field}", message], id=case)
        for field, (message, cases) in MALFORMED_BACKUP_FIELDS.items()
        for case, value in cases.items()
    ),
    *(
        pytest.param(
            with_field("spec.postgres.bootstrap", recovery(**{field: value})),
            [f"spec.postgres.bootstrap.recovery.target.{field}", message],
            id=case,
        )
        for field, (message, cases) in MALFORMED_TARGETS.items()
        for case, value in cases.items()
    ),
    pytest.param(
        with_field("spec.postgres.bootstrap", recovery("s3://backups/old shop")),
        ["spec.postgres.bootstrap.recovery.source.destination", S3_DESTINATION_MESSAGE],
        id="recovery-source-with-space",
    ),
    pytest.param(
        backup_field("credentials", {"secretName": "Shop Backup"}),
        ["spec.postgres.backup.credentials.secretName", DNS_SUBDOMAIN_MESSAGE],
        id="credentials-secret-name-malformed",
    ),
    pytest.param(
        backup_field("credentials", {"secretName": "s", "secretAccessKeyKey": "..secret"}),
        ["spec.postgres.backup.credentials.secretAccessKeyKey", CONFIG_MAP_KEY_MESSAGE],
        id="credentials-key-escaping-the-volume",
    ),
    pytest.param(
        backup_field("credentials", {"accessKeyIdKey": "id"}),
        ["spec.postgres.backup.credentials.secretName", "Required value"],
        id="credentials-without-secret-name",
    ),
    pytest.param(
        backup_field("ca", {"secretName": "minio-ca", "key": "ca/crt"}),
        ["spec.postgres.backup.ca.key", CONFIG_MAP_KEY_MESSAGE],
        id="ca-key-with-slash",
    ),
    pytest.param(
        with_field("spec.postgres.backup", {"credentials": {"secretName": "s"}}),
        ["spec.postgres.backup.destination", "Required value"],
        id="backup-without-destination",
    ),
    pytest.param(
        with_field("spec.postgres.bootstrap", recovery(time="2026-01-31T14:05:00Z", lsn="0/3000060")),
        ["spec.postgres.bootstrap.recovery.target", RECOVERY_TARGET_MESSAGE],
        id="target-time-and-lsn",
    ),
    pytest.param(
        with_field(
            "spec.postgres",
            {"backup": store("s3://backups/shop"), "bootstrap": recovery("s3://backups/shop")},
        ),
        ["spec.postgres.backup.destination", RECOVERY_SOURCE_IS_DESTINATION_MESSAGE],
        id="backup-into-the-recovery-source",
    ),
    pytest.param(
        with_field(
            "spec.postgres",
            {
                "backup": store("s3://backups/shop", writeToRecoverySource=False),
                "bootstrap": recovery("s3://backups/shop"),
            },
        ),
        ["spec.postgres.backup.destination", RECOVERY_SOURCE_IS_DESTINATION_MESSAGE],
        id="backup-into-the-recovery-source-flag-false",
    ),
    pytest.param(
        with_field("spec.postgres.bootstrap", {"recovery": {"source": store(schedule="@daily")}}),
        ['unknown field "spec.postgres.bootstrap.recovery.source.schedule"'],
        id="schedule-on-the-recovery-source",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    CREATE_CASES + FORMAT_CASES + REPLICA_CAP_CASES + NETWORK_POLICY_CASES + FAILOVER_CASES + BACKUP_CASES,
)
def test_bad_input_is_rejected_on_create_naming_the_field(
    cluster: LocalCluster, crd: None, namespace: str, mutate: Mutation, fragments: list[str]
) -> None:
    manifest = valid_manifest(namespace)
    mutate(manifest)
    assert_rejected(kubectl_create(cluster, manifest), *fragments)


# ---- unknown fields: strict field validation ----------------------------------------------------------

UNKNOWN_FIELD_COMMANDS = [
    pytest.param(("create", "-f", "-"), 'strict decoding error: unknown field "{path}"', id="create"),
    pytest.param(
        ("create", "--validate=strict", "-f", "-"),
        'strict decoding error: unknown field "{path}"',
        id="create-validate-strict",
    ),
    pytest.param(
        ("apply", "--validate=strict", "-f", "-"),
        'strict decoding error: unknown field "{path}"',
        id="client-side-apply-validate-strict",
    ),
    pytest.param(
        ("apply", "--server-side", "-f", "-"), ".{path}: field not declared in schema", id="server-side-apply"
    ),
]

UNKNOWN_FIELDS = [
    pytest.param("spec.replicas", 3, id="top-level"),
    pytest.param("spec.postgres.replicas", 3, id="nested"),
    pytest.param("spec.api.autoscaling", {**autoscaling(), "targetCPU": 80}, id="in-autoscaling"),
]


@pytest.mark.parametrize(("path", "value"), UNKNOWN_FIELDS)
@pytest.mark.parametrize(("command", "expected"), UNKNOWN_FIELD_COMMANDS)
def test_unknown_fields_are_rejected(
    cluster: LocalCluster,
    crd: None,
    namespace: str,
    command: tuple[str, ...],
    expected: str,
    path: str,
    value: Any,
) -> None:
    manifest = valid_manifest(namespace)
    with_field(path, value)(manifest)
    field_path = "spec.api.autoscaling.targetCPU" if path == "spec.api.autoscaling" else path
    result = cluster.kubectl(*command, input=yaml.safe_dump(manifest), check=False)
    assert_rejected(result, expected.format(path=field_path))


# ---- rejected on update: transition rules (oldSelf) ---------------------------------------------------

STATEFUL_SPEC: dict[str, Any] = {
    "image": "sbo-sample-app:0.1.0",
    "postgres": {"version": "16", "storage": {"size": "10Gi", "storageClassName": "standard"}},
    "redis": {"persistence": {"size": "1Gi"}},
}

UPDATE_CASES = [
    pytest.param(
        {"postgres": {"storage": {"size": "5Gi"}}},
        ["spec.postgres.storage.size", "size may only grow"],
        id="postgres-storage-shrinks",
    ),
    pytest.param(
        # Compared as quantities, not strings: 10000Mi < 10Gi = 10240Mi.
        {"postgres": {"storage": {"size": "10000Mi"}}},
        ["spec.postgres.storage.size", "size may only grow"],
        id="postgres-storage-shrinks-in-other-units",
    ),
    pytest.param(
        {"redis": {"persistence": {"size": "512Mi"}}},
        ["spec.redis.persistence.size", "size may only grow"],
        id="redis-persistence-shrinks",
    ),
    pytest.param(
        {"postgres": {"storage": {"storageClassName": "fast"}}},
        ["spec.postgres.storage.storageClassName", "storageClassName is immutable"],
        id="postgres-storage-class-changed",
    ),
    pytest.param(
        {"postgres": {"storage": {"storageClassName": None}}},
        ["spec.postgres.storage.storageClassName", "storageClassName is immutable"],
        id="postgres-storage-class-removed",
    ),
    pytest.param(
        {"redis": {"persistence": {"storageClassName": "fast"}}},
        ["spec.redis.persistence.storageClassName", "storageClassName is immutable"],
        id="redis-storage-class-added",
    ),
    pytest.param(
        {"postgres": {"storage": {"size": "lots"}}},
        ["spec.postgres.storage.size", QUANTITY_MESSAGE],
        id="postgres-storage-size-malformed",
    ),
    pytest.param(
        {"postgres": {"version": "17"}},
        ["spec.postgres.version", "version is immutable"],
        id="postgres-version-changed",
    ),
]


def create_stateful_backend(cluster: LocalCluster, namespace: str) -> None:
    manifest = valid_manifest(namespace)
    manifest["spec"] = copy.deepcopy(STATEFUL_SPEC)
    kubectl_create(cluster, manifest).check_returncode()


def patch(
    cluster: LocalCluster, namespace: str, spec_patch: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "patch",
        "-n",
        namespace,
        "sb",
        "shop",
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": spec_patch}),
        check=False,
    )


@pytest.mark.parametrize(("spec_patch", "fragments"), UPDATE_CASES)
def test_forbidden_change_is_rejected_on_update_naming_the_field(
    cluster: LocalCluster, crd: None, namespace: str, spec_patch: dict[str, Any], fragments: list[str]
) -> None:
    create_stateful_backend(cluster, namespace)
    assert_rejected(patch(cluster, namespace, spec_patch), *fragments)


def test_storage_may_grow_or_be_restated_in_other_units(
    cluster: LocalCluster, crd: None, namespace: str
) -> None:
    create_stateful_backend(cluster, namespace)
    for spec_patch in (
        {"postgres": {"storage": {"size": "10240Mi"}}},
        {"postgres": {"storage": {"size": "20Gi", "storageClassName": "standard"}}},
        {"redis": {"persistence": {"size": "2Gi"}}},
    ):
        result = patch(cluster, namespace, spec_patch)
        assert result.returncode == 0, result.stderr


def test_switchover_by_patch_and_scale_down_below_its_target(
    cluster: LocalCluster, crd: None, namespace: str
) -> None:
    create_stateful_backend(cluster, namespace)
    switchover = {"postgres": {"readReplicas": 2, "switchover": {"to": "shop-postgres-2", "id": "move-1"}}}
    assert patch(cluster, namespace, switchover).returncode == 0
    # Applied twice (GitOps re-sync): accepted, and the operator acts once per id.
    assert patch(cluster, namespace, switchover).returncode == 0
    # A switchover naming an instance that readReplicas would remove must be retargeted with it.
    assert_rejected(
        patch(cluster, namespace, {"postgres": {"readReplicas": 1}}),
        "spec.postgres.switchover.to",
        SWITCHOVER_TO_MESSAGE,
    )
    retargeted = {"postgres": {"readReplicas": 1, "switchover": {"to": "shop-postgres-0", "id": "move-2"}}}
    assert patch(cluster, namespace, retargeted).returncode == 0
    assert patch(cluster, namespace, {"postgres": {"readReplicas": 1, "switchover": None}}).returncode == 0


def test_recovery_is_fixed_at_creation(cluster: LocalCluster, crd: None, namespace: str) -> None:
    manifest = valid_manifest(namespace)
    with_field("spec.postgres.bootstrap", recovery(time="2026-01-31T14:05:00Z"))(manifest)
    kubectl_create(cluster, manifest).check_returncode()
    for spec_patch in (
        {"postgres": {"bootstrap": {"recovery": {"target": {"time": "2026-01-31T15:00:00Z"}}}}},
        {"postgres": {"bootstrap": {"recovery": {"target": {"time": None, "lsn": "0/3000060"}}}}},
        {"postgres": {"bootstrap": {"recovery": {"source": {"destination": "s3://backups/other"}}}}},
        {"postgres": {"bootstrap": {"recovery": None}}},
        {"postgres": {"bootstrap": None}},
    ):
        assert_rejected(
            patch(cluster, namespace, spec_patch), "spec.postgres.bootstrap", RECOVERY_IMMUTABLE_MESSAGE
        )
    # The rest of the spec stays editable, backups included (to another path than the source).
    accepted = {"postgres": {"readReplicas": 2, "backup": store("s3://backups/shop", schedule="@hourly")}}
    result = patch(cluster, namespace, accepted)
    assert result.returncode == 0, result.stderr
    assert_rejected(
        patch(cluster, namespace, {"postgres": {"backup": {"destination": "s3://backups/old"}}}),
        "spec.postgres.backup.destination",
        RECOVERY_SOURCE_IS_DESTINATION_MESSAGE,
    )


def test_recovery_cannot_be_added_after_creation(cluster: LocalCluster, crd: None, namespace: str) -> None:
    create_stateful_backend(cluster, namespace)
    for bootstrap in (recovery(), {}):
        assert_rejected(
            patch(cluster, namespace, {"postgres": {"bootstrap": bootstrap}}),
            "spec.postgres.bootstrap",
            RECOVERY_IMMUTABLE_MESSAGE,
        )
    # Backups may be turned on (and off) at any time.
    assert patch(cluster, namespace, {"postgres": {"backup": store()}}).returncode == 0
    assert patch(cluster, namespace, {"postgres": {"backup": None}}).returncode == 0


# ---- accepted --------------------------------------------------------------------------------------------

BOUNDARY_CASES = [
    pytest.param(with_field("metadata.name", "a" * MAX_NAME_LENGTH), id="name-at-cap"),
    pytest.param(with_field("spec.postgres.readReplicas", MAX_READ_REPLICAS), id="read-replicas-at-cap"),
    pytest.param(with_field("spec.api.replicas", 0), id="zero-api-replicas"),
    pytest.param(
        with_field("spec.api.autoscaling", autoscaling(minReplicas=3, maxReplicas=3)), id="min-equals-max"
    ),
    pytest.param(with_field("spec.redis.maxMemory", 268435456), id="integer-quantity"),
    pytest.param(with_field("spec.postgres.storage", {"size": "1e10"}), id="exponent-quantity"),
    pytest.param(with_field("spec.prometheus", {"pollSeconds": 1}), id="poll-seconds-1"),
    pytest.param(
        with_field(
            "spec.postgres",
            {
                "readReplicas": 2,
                "failoverDelay": "1m30s",
                "maxFailoverLag": 0,
                "synchronous": {"standbys": 2, "required": True},
                "switchover": {"to": "shop-postgres-2", "id": "2026-01-01 move to the last instance"},
            },
        ),
        id="failover-settings-at-their-bounds",
    ),
    pytest.param(
        with_field("spec.postgres", {"readReplicas": 0, "switchover": {"to": "shop-postgres-0", "id": "x"}}),
        id="switchover-to-the-only-instance",
    ),
    pytest.param(with_field("spec.postgres.maxFailoverLag", "1e3"), id="failover-lag-with-exponent"),
    pytest.param(
        with_field("spec.postgres", {"readReplicas": 1, "synchronous": {"standbys": 1, "required": False}}),
        id="synchronous-standbys-not-required",
    ),
    pytest.param(
        with_field(
            "spec.api.autoscaling",
            autoscaling(
                minReplicas=MAX_REPLICAS, maxReplicas=MAX_REPLICAS, fallback={"replicas": MAX_REPLICAS}
            ),
        ),
        id="autoscaling-at-replica-cap",
    ),
    pytest.param(
        with_field("spec.image", f"registry.example.com:5000/team/shop-api:1.0_rc.2@sha256:{'ab' * 32}"),
        id="image-with-port-tag-and-digest",
    ),
    pytest.param(with_field("spec.prometheus", {"url": "https://[fd00::1]:9090/prometheus"}), id="ipv6-url"),
    pytest.param(
        with_field(
            "spec.api.env",
            [
                {"name": "APP_LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {
                    "name": "MEMORY_MI",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
                },
                {
                    "name": "CPU_MILLI",
                    "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}},
                },
                {
                    "name": "config.file",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "app.yaml"}},
                },
            ],
        ),
        id="env-sources-the-downward-api-offers",
    ),
    pytest.param(
        with_field(
            "spec.api.resources",
            {"requests": {"cpu": 1, "example.com/gpu": 1}, "limits": {"cpu": "1000m", "example.com/gpu": 1}},
        ),
        id="extended-resource-and-request-equal-to-limit",
    ),
    pytest.param(
        with_field(
            "spec.networkPolicies",
            {
                "appIngressFrom": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
                    {
                        "namespaceSelector": {},
                        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus", "tier": ""}},
                    },
                ],
                "egress": True,
            },
        ),
        id="network-policies-with-peers-and-egress",
    ),
    pytest.param(
        with_field("spec.networkPolicies", {"appIngressFrom": []}), id="network-ingress-from-nobody"
    ),
    pytest.param(
        with_field(
            "spec.postgres.backup",
            store(
                f"s3://{'b' * 63}/team-a/shop_db.v2",
                endpointURL="https://[fd00::1]:65535/store",
                region="eu-central-1",
                credentials={
                    "secretName": "shop-backup",
                    "accessKeyIdKey": "access.key",
                    "secretAccessKeyKey": "secret_key",
                    "sessionTokenKey": "token",
                },
                ca={"secretName": "minio-ca", "key": "ca.pem"},
                schedule="0,30 0-23/2 1-31 1-12 0-6",
                retention="999d",
                archiveTimeout="1h",
            ),
        ),
        id="backup-at-its-bounds",
    ),
    pytest.param(backup_field("archiveTimeout", "5s"), id="archive-timeout-at-5s"),
    pytest.param(backup_field("archiveTimeout", "59m60s"), id="archive-timeout-at-1h-in-minutes-and-seconds"),
    pytest.param(backup_field("schedule", "@weekly"), id="schedule-macro"),
    pytest.param(backup_field("schedule", "9-10 5-5 * * *"), id="schedule-ranges-ascending-as-numbers"),
    pytest.param(with_field("spec.postgres.backup", store("s3://backups")), id="destination-bucket-only"),
    pytest.param(
        with_field("spec.postgres.bootstrap", recovery(time="2024-02-29T23:59:59.999999+14:00")),
        id="target-time-on-a-leap-day",
    ),
    pytest.param(
        with_field("spec.postgres.bootstrap", recovery(lsn="FFFFFFFF/ffffffff")), id="target-lsn-at-its-bound"
    ),
    pytest.param(with_field("spec.postgres.bootstrap", recovery()), id="target-latest"),
    pytest.param(with_field("spec.postgres.bootstrap", {}), id="bootstrap-empty"),
    pytest.param(
        with_field(
            "spec.postgres",
            {
                "backup": store("s3://backups/shop", writeToRecoverySource=True),
                "bootstrap": recovery("s3://backups/shop"),
            },
        ),
        id="backup-into-the-recovery-source-with-intent",
    ),
]


@pytest.mark.parametrize("mutate", BOUNDARY_CASES)
def test_input_at_the_boundary_is_accepted(
    cluster: LocalCluster, crd: None, namespace: str, mutate: Mutation
) -> None:
    manifest = valid_manifest(namespace)
    mutate(manifest)
    result = kubectl_create(cluster, manifest, "--dry-run=server")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_is_accepted_and_parses_after_defaulting(
    cluster: LocalCluster, crd: None, namespace: str, path: Path
) -> None:
    backends = [
        doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc["kind"] == "ScalableBackend"
    ]
    assert backends, f"{path} holds no ScalableBackend"
    for manifest in backends:
        manifest["metadata"]["namespace"] = namespace
        result = kubectl_create(cluster, manifest, "-o", "json")
        assert result.returncode == 0, result.stderr
        # What the apiserver stored, defaults filled in, is what the operator will parse.
        ScalableBackend.from_body(json.loads(result.stdout))


def test_kubectl_explain_prints_field_descriptions(cluster: LocalCluster, crd: None) -> None:
    def explained() -> str:
        result = cluster.kubectl("explain", "sb.spec.postgres", check=False)
        return result.stdout if result.returncode == 0 else ""

    # kubectl wraps descriptions at 80 columns; compare with whitespace collapsed.
    text = " ".join(eventually(explained, timeout=30, what="kubectl explain sb.spec.postgres").split())
    assert "The PostgreSQL primary and read replicas." in text
    for name, field in PostgresSpec.model_fields.items():
        alias = field.alias or name
        assert field.description, name
        assert f"{alias} <" in text, f"{alias} missing from kubectl explain"
        assert field.description in text, f"description of {alias} missing from kubectl explain"
