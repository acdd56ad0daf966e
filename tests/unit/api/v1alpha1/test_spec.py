"""The ScalableBackend spec: defaults, and every bad input rejected with a message naming the field."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from sbo_operator.api.v1alpha1 import (
    MAX_NAME_LENGTH,
    MAX_READ_REPLICAS,
    ScalableBackend,
    ScalableBackendSpec,
    check_spec_transition,
    postgres_instance_name,
)

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"


def manifest(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "sbo.dev/v1alpha1",
        "kind": "ScalableBackend",
        "metadata": {"name": "shop", "namespace": "demo"},
        "spec": {"image": "registry.example.com/sbo-sample-app:0.1.0"},
    }
    body["spec"].update(spec)
    return body


def rejection(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as error:
        ScalableBackend.model_validate(body)
    return str(error.value)


def test_minimal_manifest_gets_the_documented_defaults() -> None:
    backend = ScalableBackend.model_validate(manifest())
    spec = backend.spec
    assert spec.image_pull_policy == "IfNotPresent"
    assert (spec.api.replicas, spec.api.port) == (2, 8000)
    assert (spec.api.readiness_path, spec.api.liveness_path) == ("/readyz", "/healthz")
    assert spec.api.resources.requests == {"cpu": "100m", "memory": "128Mi"}
    assert spec.worker is None
    assert (spec.redis.enabled, spec.redis.version, spec.redis.max_memory) == (True, "7.2", "256Mi")
    assert spec.redis.persistence is None
    assert (spec.postgres.enabled, spec.postgres.version) == (True, "16")
    assert (spec.postgres.database, spec.postgres.user) == ("app", "app")
    assert (spec.postgres.storage.size, spec.postgres.retain_on_delete) == ("10Gi", True)


def test_the_issue_example_parses() -> None:
    backend = ScalableBackend.model_validate(
        manifest(
            imagePullPolicy="IfNotPresent",
            api={
                "replicas": 2,
                "port": 8000,
                "command": ["uvicorn", "app.main:app"],
                "env": [{"name": "LOG_LEVEL", "value": "info"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "readinessPath": "/readyz",
                "livenessPath": "/healthz",
                "migrations": {"command": ["alembic", "upgrade", "head"]},
                "ingress": {"host": "shop.example.com", "className": "nginx", "tlsSecretName": "shop-tls"},
            },
            worker={"replicas": 1, "command": ["python", "-m", "app.worker"], "resources": {}},
            redis={
                "enabled": True,
                "version": "7.2",
                "maxMemory": "256Mi",
                "evictionPolicy": "allkeys-lru",
                "persistence": {"size": "1Gi"},
            },
            postgres={
                "enabled": True,
                "version": "16",
                "database": "app",
                "readReplicas": 2,
                "storage": {"size": "10Gi", "storageClassName": "standard"},
                "retainOnDelete": True,
            },
        )
    )
    assert backend.spec.postgres.storage.storage_class_name == "standard"
    assert backend.spec.api.ingress is not None
    assert backend.spec.api.ingress.tls_secret_name == "shop-tls"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_examples_parse(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        ScalableBackend.model_validate(document)


def test_round_trip_through_camel_case() -> None:
    backend = ScalableBackend.model_validate(manifest(postgres={"readReplicas": 3}))
    dumped = backend.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["spec"]["postgres"]["readReplicas"] == 3
    assert ScalableBackend.model_validate(dumped) == backend


def test_integer_quantities_are_normalised_to_strings() -> None:
    backend = ScalableBackend.model_validate(manifest(redis={"maxMemory": 1048576}))
    assert backend.spec.redis.max_memory == "1048576"


def test_apiserver_metadata_is_ignored() -> None:
    body = manifest()
    body["metadata"].update(uid="u-1", generation=3, managedFields=[{}], resourceVersion="7")
    backend = ScalableBackend.from_body(body)
    assert (backend.metadata.uid, backend.metadata.generation) == ("u-1", 3)


# ---- bad input: (mutation of the manifest, text the message must contain) ---------------------------


def _set(path: str, value: Any) -> Any:
    def mutate(body: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = body
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    return mutate


BAD_INPUTS = {
    "negative api replicas": (_set("spec.api.replicas", -1), "spec.api.replicas"),
    "negative worker replicas": (
        _set("spec.worker", {"replicas": -1, "command": ["w"]}),
        "spec.worker.replicas",
    ),
    "too many read replicas": (
        _set("spec.postgres.readReplicas", MAX_READ_REPLICAS + 1),
        "spec.postgres.readReplicas",
    ),
    "negative read replicas": (_set("spec.postgres.readReplicas", -1), "spec.postgres.readReplicas"),
    "malformed quantity": (_set("spec.redis.maxMemory", "256 MB"), "spec.redis.maxMemory"),
    "malformed storage size": (
        _set("spec.postgres.storage", {"size": "ten gigs"}),
        "spec.postgres.storage.size",
    ),
    "malformed resource quantity": (
        _set("spec.api.resources", {"limits": {"memory": "1.5.3Gi"}}),
        "spec.api.resources.limits.memory",
    ),
    "image with whitespace": (_set("spec.image", "sbo-sample-app 0.1.0"), "spec.image"),
    "api image with whitespace": (_set("spec.api.image", "app:1\n"), "spec.api.image"),
    "unsupported postgres version": (_set("spec.postgres.version", "14"), "spec.postgres.version"),
    "postgres version as a number": (_set("spec.postgres.version", 16), "spec.postgres.version"),
    "unsupported redis version": (_set("spec.redis.version", "6.2"), "spec.redis.version"),
    "name too long": (_set("metadata.name", "a" * (MAX_NAME_LENGTH + 1)), "metadata.name"),
    "name with a dot": (_set("metadata.name", "shop.v2"), "metadata.name"),
    "name starting with a digit": (_set("metadata.name", "1shop"), "metadata.name"),
    "unknown spec field": (_set("spec.replicas", 3), "spec.replicas"),
    "unknown nested field": (_set("spec.postgres.readReplica", 1), "spec.postgres.readReplica"),
    "value and valueFrom": (
        _set(
            "spec.api.env",
            [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        ),
        "spec.api.env.0",
    ),
    "two env sources": (
        _set(
            "spec.api.env",
            [
                {
                    "name": "A",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": "metadata.name"},
                        "secretKeyRef": {"name": "s", "key": "k"},
                    },
                }
            ],
        ),
        "spec.api.env.0.valueFrom",
    ),
    "duplicate env names": (
        _set("spec.api.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.api.env",
    ),
    "reserved postgres user": (_set("spec.postgres.user", "postgres"), "user must not be postgres"),
    "pg_ postgres user": (_set("spec.postgres.user", "pg_app"), "spec.postgres"),
    "reserved database": (_set("spec.postgres.database", "template1"), "database must not be"),
    "database needing quotes": (_set("spec.postgres.database", "My-DB"), "spec.postgres.database"),
    "worker without command": (_set("spec.worker", {"replicas": 1}), "spec.worker.command"),
    "ingress host with scheme": (
        _set("spec.api.ingress", {"host": "https://shop.example.com"}),
        "spec.api.ingress.host",
    ),
    "probe path without slash": (_set("spec.api.readinessPath", "readyz"), "spec.api.readinessPath"),
    "prometheus url without scheme": (
        _set("spec.prometheus", {"url": "prometheus:9090"}),
        "spec.prometheus.url",
    ),
    "request above limit": (
        _set("spec.api.resources", {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}),
        "requests.memory: a request must not exceed the limit",
    ),
    "unknown resource name": (
        _set("spec.api.resources", {"requests": {"mem": "1Gi"}}),
        "requests: resource names must be",
    ),
    "cpu divisor in bytes": (
        _set(
            "spec.api.env",
            [
                {
                    "name": "CPU",
                    "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1Mi"}},
                }
            ],
        ),
        "divisor must be 1m or 1 for cpu",
    ),
    "autoscaling max above the replica cap": (
        _set(
            "spec.worker",
            {
                "command": ["w"],
                "autoscaling": {"maxReplicas": 1001, "metrics": [{"name": "q", "query": "q", "target": 1}]},
            },
        ),
        "spec.worker.autoscaling.maxReplicas",
    ),
    "malformed failover delay": (_set("spec.postgres.failoverDelay", "30 seconds"), "must be a duration"),
    "failover delay without unit": (_set("spec.postgres.failoverDelay", "30"), "spec.postgres.failoverDelay"),
    "negative failover delay": (_set("spec.postgres.failoverDelay", "-5s"), "spec.postgres.failoverDelay"),
    "malformed failover lag": (_set("spec.postgres.maxFailoverLag", "16 MB"), "spec.postgres.maxFailoverLag"),
    "fractional failover lag": (
        _set("spec.postgres.maxFailoverLag", "1500m"),
        "maxFailoverLag must be a whole number of bytes",
    ),
    "more synchronous standbys than replicas": (
        _set("spec.postgres", {"readReplicas": 1, "synchronous": {"standbys": 2}}),
        "synchronous.standbys must not exceed readReplicas",
    ),
    "switchover to another backend's instance": (
        _set("spec.postgres.switchover", {"to": "cart-postgres-1", "id": "a"}),
        "switchover.to must name an instance of this backend",
    ),
    "switchover beyond the instance count": (
        _set("spec.postgres.switchover", {"to": "shop-postgres-2", "id": "a"}),
        "switchover.to must name an instance of this backend",
    ),
    "switchover to a legacy pod": (
        _set("spec.postgres.switchover", {"to": "shop-postgres-replica-0", "id": "a"}),
        "switchover.to must name an instance of this backend",
    ),
    "switchover with a padded ordinal": (
        _set("spec.postgres.switchover", {"to": "shop-postgres-01", "id": "a"}),
        "switchover.to must name an instance of this backend",
    ),
    "switchover with an empty id": (
        _set("spec.postgres.switchover", {"to": "shop-postgres-1", "id": ""}),
        "spec.postgres.switchover.id",
    ),
    "switchover with a blank id": (
        _set("spec.postgres.switchover", {"to": "shop-postgres-1", "id": "  "}),
        "switchover.id must not be empty",
    ),
    "switchover without id": (_set("spec.postgres.switchover", {"to": "shop-postgres-1"}), "switchover.id"),
    "autoscaling min above max": (
        _set(
            "spec.api.autoscaling",
            {"minReplicas": 5, "maxReplicas": 2, "metrics": [{"name": "rps", "query": "q", "target": 1}]},
        ),
        "spec.api.autoscaling",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_naming_the_field(case: str) -> None:
    mutate, expected = BAD_INPUTS[case]
    body = copy.deepcopy(manifest())
    mutate(body)
    assert expected in rejection(body)


# ---- failover, switchover and synchronous replication -------------------------------------------------


def test_failover_settings_default_to_asynchronous_immediate_failover() -> None:
    postgres = ScalableBackend.model_validate(manifest()).spec.postgres
    assert (postgres.failover_delay, postgres.failover_delay_duration) == ("0s", timedelta(0))
    assert (postgres.max_failover_lag, postgres.max_failover_lag_bytes) == ("16Mi", 16 * 2**20)
    assert (postgres.synchronous.standbys, postgres.synchronous.required) == (0, True)
    assert postgres.switchover is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("30s", 30), ("1m30s", 90), ("1.5h", 5400), ("250ms", 0.25), ("2m0s", 120)],
)
def test_failover_delay_reads_go_durations(text: str, seconds: float) -> None:
    postgres = ScalableBackend.model_validate(manifest(postgres={"failoverDelay": text})).spec.postgres
    assert postgres.failover_delay_duration == timedelta(seconds=seconds)


@pytest.mark.parametrize(("lag", "expected"), [(0, 0), ("1Gi", 2**30), (1048576, 2**20), ("1e3", 1000)])
def test_max_failover_lag_is_a_whole_number_of_bytes(lag: Any, expected: int) -> None:
    postgres = ScalableBackend.model_validate(manifest(postgres={"maxFailoverLag": lag})).spec.postgres
    assert postgres.max_failover_lag_bytes == expected


def test_synchronous_standbys_may_equal_read_replicas() -> None:
    body = manifest(postgres={"readReplicas": 2, "synchronous": {"standbys": 2, "required": True}})
    synchronous = ScalableBackend.model_validate(body).spec.postgres.synchronous
    assert (synchronous.standbys, synchronous.required) == (2, True)


def test_synchronous_standbys_may_be_not_required() -> None:
    body = manifest(postgres={"readReplicas": 2, "synchronous": {"standbys": 1, "required": False}})
    synchronous = ScalableBackend.model_validate(body).spec.postgres.synchronous
    assert (synchronous.standbys, synchronous.required) == (1, False)


def test_synchronous_standbys_above_read_replicas_are_refused_even_when_not_required() -> None:
    body = manifest(postgres={"readReplicas": 1, "synchronous": {"standbys": 2, "required": False}})
    with pytest.raises(ValidationError, match="must not exceed readReplicas"):
        ScalableBackend.model_validate(body)


@pytest.mark.parametrize("ordinal", [0, 1, 2])
def test_switchover_to_any_instance_of_this_backend_parses(ordinal: int) -> None:
    request = {"to": postgres_instance_name("shop", ordinal), "id": "2026-01-01 move"}
    postgres = ScalableBackend.model_validate(
        manifest(postgres={"readReplicas": 2, "switchover": request})
    ).spec.postgres
    assert postgres.switchover is not None
    assert (postgres.switchover.to, postgres.switchover.id) == (f"shop-postgres-{ordinal}", "2026-01-01 move")


# ---- transition rules (oldSelf), mirrored in Python ---------------------------------------------------


def spec(**changes: Any) -> ScalableBackendSpec:
    return ScalableBackend.model_validate(manifest(**changes)).spec


def test_storage_may_grow_or_stay_in_other_units() -> None:
    old = spec(postgres={"storage": {"size": "10Gi"}})
    check_spec_transition(old, spec(postgres={"storage": {"size": "10240Mi"}}))
    check_spec_transition(old, spec(postgres={"storage": {"size": "11Gi"}}))


def test_shrinking_storage_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"spec\.postgres\.storage\.size: size may only grow"):
        check_spec_transition(
            spec(postgres={"storage": {"size": "10Gi"}}), spec(postgres={"storage": {"size": "9Gi"}})
        )


def test_shrinking_redis_persistence_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"spec\.redis\.persistence\.size"):
        check_spec_transition(
            spec(redis={"persistence": {"size": "2Gi"}}), spec(redis={"persistence": {"size": "1Gi"}})
        )


@pytest.mark.parametrize(
    ("old_class", "new_class"), [(None, "fast"), ("standard", "fast"), ("standard", None)]
)
def test_changing_the_storage_class_is_rejected(old_class: str | None, new_class: str | None) -> None:
    def storage(storage_class: str | None) -> dict[str, Any]:
        return {"size": "10Gi"} | ({"storageClassName": storage_class} if storage_class else {})

    with pytest.raises(
        ValueError, match=r"spec\.postgres\.storage\.storageClassName: storageClassName is immutable"
    ):
        check_spec_transition(
            spec(postgres={"storage": storage(old_class)}), spec(postgres={"storage": storage(new_class)})
        )


def test_changing_the_postgres_version_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"spec\.postgres\.version: version is immutable"):
        check_spec_transition(spec(postgres={"version": "16"}), spec(postgres={"version": "17"}))


def test_divisors_the_downward_api_accepts_parse() -> None:
    env = [
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1000m"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
    ]
    backend = ScalableBackend.model_validate(manifest(api={"env": env}))
    assert [variable.name for variable in backend.spec.api.env] == ["CPU", "MEM"]
