"""OperatorSettings from SBO_* environment variables: defaults, parsing, validation."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from pydantic import ValidationError

from sbo_operator.api.v1alpha1 import PostgresVersion, RedisVersion
from sbo_operator.builders.images import OFFICIAL_DATA_SERVICE_IMAGES
from sbo_operator.builders.network_policies import OperatorPods
from sbo_operator.settings import LogFormat, OperatorSettings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SBO_* variable of the shell running the tests leaks in."""
    for name in list(os.environ):
        if name.upper().startswith("SBO_"):
            monkeypatch.delenv(name)


def test_defaults_watch_every_namespace() -> None:
    settings = OperatorSettings()
    assert settings.namespaces == []
    assert settings.clusterwide is True
    assert settings.field_manager == "scalable-backend-operator"
    assert (settings.workers, settings.api_threads, settings.resync_seconds) == (16, 32, 300)
    assert (settings.peering, settings.health_port, settings.metrics_port) == (False, 8080, 9090)
    assert settings.log_format is LogFormat.TEXT
    assert settings.data_service_images == OFFICIAL_DATA_SERVICE_IMAGES


@pytest.mark.parametrize(
    ("value", "namespaces"),
    [
        pytest.param("shop", ["shop"], id="one"),
        pytest.param("shop,billing", ["shop", "billing"], id="two"),
        pytest.param(" shop , billing ", ["shop", "billing"], id="spaces"),
        pytest.param("shop,,billing,", ["shop", "billing"], id="empty-items"),
        pytest.param("", [], id="empty"),
        pytest.param(" , ", [], id="only-separators"),
    ],
)
def test_namespaces_are_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch, value: str, namespaces: list[str]
) -> None:
    monkeypatch.setenv("SBO_NAMESPACES", value)
    settings = OperatorSettings()
    assert settings.namespaces == namespaces
    assert settings.clusterwide is (not namespaces)


def test_namespaces_are_not_read_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBO_NAMESPACES", "shop")  # pydantic-settings would try JSON without NoDecode
    assert OperatorSettings().namespaces == ["shop"]


def test_namespaces_can_be_passed_as_a_list() -> None:
    assert OperatorSettings(namespaces=["a", "b"]).namespaces == ["a", "b"]


def test_each_setting_is_read_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SBO_FIELD_MANAGER": "sbo-test",
        "SBO_RESYNC_SECONDS": "2.5",
        "SBO_WORKERS": "4",
        "SBO_API_THREADS": "8",
        "SBO_DEFAULT_PROMETHEUS_URL": "http://prom:9090",
        "SBO_PEERING": "true",
        "SBO_PEERING_NAME": "sbo-peering",
        "SBO_PEERING_PRIORITY": "100",
        "SBO_PEERING_LIFETIME_SECONDS": "20",
        "SBO_HEALTH_PORT": "0",
        "SBO_METRICS_PORT": "9100",
        "SBO_LOG_FORMAT": "json",
        "SBO_LOG_LEVEL": "DEBUG",
        "SBO_POSTGRES_IMAGE": "mirror.example/library/postgres:{version}",
        "SBO_REDIS_IMAGE": "sbo.local/redis:{version}",
    }.items():
        monkeypatch.setenv(name, value)
    dumped = OperatorSettings().model_dump()
    expected = {
        "field_manager": "sbo-test",
        "resync_seconds": 2.5,
        "workers": 4,
        "api_threads": 8,
        "default_prometheus_url": "http://prom:9090",
        "peering": True,
        "peering_name": "sbo-peering",
        "peering_priority": 100,
        "peering_lifetime_seconds": 20,
        "health_port": 0,
        "metrics_port": 9100,
        "log_format": LogFormat.JSON,
        "log_level": "DEBUG",
        "postgres_image": "mirror.example/library/postgres:{version}",
        "redis_image": "sbo.local/redis:{version}",
    }
    assert {name: dumped[name] for name in expected} == expected


def test_the_archived_wal_shown_moves_on_every_five_minutes_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert OperatorSettings().archive_status_interval == timedelta(minutes=5)
    monkeypatch.setenv("SBO_POSTGRES_ARCHIVE_STATUS_SECONDS", "0")
    assert OperatorSettings().archive_status_interval == timedelta(0), "0: every archived file"


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERS", "3")
    monkeypatch.setenv("NAMESPACES", "shop")
    settings = OperatorSettings()
    assert (settings.workers, settings.namespaces) == (16, [])


INVALID = [
    pytest.param("SBO_WORKERS", "0", "workers", id="workers-zero"),
    pytest.param("SBO_WORKERS", "257", "workers", id="workers-too-many"),
    pytest.param("SBO_WORKERS", "many", "workers", id="workers-not-a-number"),
    pytest.param("SBO_API_THREADS", "0", "api_threads", id="api-threads-zero"),
    pytest.param("SBO_RESYNC_SECONDS", "0", "resync_seconds", id="resync-zero"),
    pytest.param("SBO_HEALTH_PORT", "70000", "health_port", id="health-port-out-of-range"),
    pytest.param("SBO_METRICS_PORT", "-1", "metrics_port", id="metrics-port-negative"),
    pytest.param("SBO_LOG_FORMAT", "xml", "log_format", id="log-format-unknown"),
    pytest.param("SBO_PEERING", "perhaps", "peering", id="peering-not-a-bool"),
    pytest.param("SBO_POSTGRES_IMAGE", "postgres:15", "postgres_image", id="postgres-image-no-version"),
    pytest.param("SBO_POSTGRES_IMAGE", "Mirror.Example/Postgres:{version}", "postgres_image", id="uppercase"),
    pytest.param("SBO_REDIS_IMAGE", "redis:{version} ", "redis_image", id="redis-image-whitespace"),
    pytest.param(
        "SBO_POSTGRES_ARCHIVE_STATUS_SECONDS",
        "-1",
        "postgres_archive_status_seconds",
        id="archive-status-negative",
    ),
]


@pytest.mark.parametrize(("variable", "value", "field"), INVALID)
def test_invalid_values_are_rejected_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        OperatorSettings()
    [error] = caught.value.errors()
    [named] = error["loc"]
    assert named in (field, variable), "the field, or better, the variable"
    assert error["input"] == value
    assert f"\n{named}\n" in str(caught.value)


def test_invalid_values_name_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBO_WORKERS", "0")
    with pytest.raises(ValidationError, match="SBO_WORKERS"):
        OperatorSettings()


def test_the_image_settings_become_the_images_the_reconciler_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBO_POSTGRES_IMAGE", "mirror.example/library/postgres:{version}")
    images = OperatorSettings().data_service_images
    assert images.postgres_image(PostgresVersion.V16) == "mirror.example/library/postgres:16"
    assert images.redis_image(RedisVersion.V7_4) == "redis:7.4", "each image is set on its own"


def test_a_bad_image_template_names_its_setting_and_what_to_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SBO_REDIS_IMAGE", "mirror.example/redis:latest")
    with pytest.raises(ValidationError) as caught:
        OperatorSettings()
    [error] = caught.value.errors()
    assert error["loc"] == ("SBO_REDIS_IMAGE",)
    assert "must contain {version}, which becomes the Redis version (7.0, 7.2, 7.4)" in error["msg"]
    assert "mirror.example/library/redis:{version}" in error["msg"]


def test_settings_are_frozen() -> None:
    settings = OperatorSettings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.workers = 2  # type: ignore[misc]


# ---- the operator's own pods (SBO_OPERATOR_NAMESPACE, SBO_OPERATOR_POD_LABELS) ---------------------

CHART_LABELS = "app.kubernetes.io/name=scalable-backend-operator,app.kubernetes.io/instance=sbo"


def test_outside_the_cluster_the_operator_has_no_pods_to_admit() -> None:
    assert OperatorSettings().operator_pods is None


@pytest.mark.parametrize(
    ("value", "labels"),
    [
        pytest.param(
            CHART_LABELS,
            {"app.kubernetes.io/name": "scalable-backend-operator", "app.kubernetes.io/instance": "sbo"},
            id="chart",
        ),
        pytest.param(
            " app = sbo , tier=ops ,", {"app": "sbo", "tier": "ops"}, id="spaces-and-trailing-comma"
        ),
        pytest.param("app=", {"app": ""}, id="empty-value"),
    ],
)
def test_the_operators_pods_are_its_namespace_and_key_value_labels(
    monkeypatch: pytest.MonkeyPatch, value: str, labels: dict[str, str]
) -> None:
    monkeypatch.setenv("SBO_OPERATOR_NAMESPACE", "sbo-system")
    monkeypatch.setenv("SBO_OPERATOR_POD_LABELS", value)
    assert OperatorSettings().operator_pods == OperatorPods(namespace="sbo-system", labels=labels)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        pytest.param("SBO_OPERATOR_POD_LABELS", "sbo", "key=value pairs", id="no-equals"),
        pytest.param("SBO_OPERATOR_POD_LABELS", '{"app": "sbo"}', "key=value pairs", id="json"),
        pytest.param("SBO_OPERATOR_POD_LABELS", "app=a,app=b", "each key once", id="key-twice"),
        pytest.param("SBO_OPERATOR_POD_LABELS", "my app=sbo", "my app=sbo: label keys", id="bad-key"),
        pytest.param("SBO_OPERATOR_POD_LABELS", "=sbo", "=sbo: label keys", id="no-key"),
        pytest.param("SBO_OPERATOR_POD_LABELS", "app=-sbo", "app=-sbo: label values", id="bad-value"),
        pytest.param("SBO_OPERATOR_NAMESPACE", "SBO_System", "namespace name", id="bad-namespace"),
    ],
)
def test_a_bad_operator_identity_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv("SBO_OPERATOR_NAMESPACE", "sbo-system")
    monkeypatch.setenv("SBO_OPERATOR_POD_LABELS", CHART_LABELS)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        OperatorSettings()
    [error] = caught.value.errors()
    assert error["loc"] == (variable,)
    assert message in error["msg"]


@pytest.mark.parametrize(
    "variables",
    [
        pytest.param({"SBO_OPERATOR_NAMESPACE": "sbo-system"}, id="namespace-only"),
        pytest.param({"SBO_OPERATOR_POD_LABELS": CHART_LABELS}, id="labels-only"),
        pytest.param({"SBO_OPERATOR_NAMESPACE": " ", "SBO_OPERATOR_POD_LABELS": CHART_LABELS}, id="blank"),
        pytest.param(
            {"SBO_OPERATOR_NAMESPACE": "sbo-system", "SBO_OPERATOR_POD_LABELS": ","}, id="no-labels"
        ),
    ],
)
def test_the_namespace_and_the_pod_labels_come_together(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    """Labels alone would admit pods of that name in the backend's namespace; refused at start-up."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="SBO_OPERATOR_NAMESPACE and SBO_OPERATOR_POD_LABELS"):
        OperatorSettings()
