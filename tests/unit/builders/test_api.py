"""The api builders: Deployment, Service, PodDisruptionBudget, Ingress, ServiceAccount, migrations Job."""

from __future__ import annotations

import pytest

from sbo_operator.builders.api import (
    build_api_deployment,
    build_api_ingress,
    build_api_pdb,
    build_api_service,
    build_app_service_account,
    build_migrations_job,
    migrations_job_name,
)
from tests.unit.factories import backend_from, container, env_of, load_example

pytestmark = pytest.mark.unit


# The sample app's GRACEFUL_SHUTDOWN_SECONDS default: how long uvicorn drains after SIGTERM.
SAMPLE_APP_GRACEFUL_SHUTDOWN_SECONDS = 20
MIGRATIONS = {"api": {"migrations": {"command": ["alembic", "upgrade", "head"]}}}


def test_replicas_come_from_the_argument_not_the_spec() -> None:
    backend = backend_from({"api": {"replicas": 2}})
    assert build_api_deployment(backend, replicas=7)["spec"]["replicas"] == 7
    with pytest.raises(ValueError, match="negative"):
        build_api_deployment(backend, replicas=-1)


def test_rolling_update_never_drops_below_the_desired_replicas() -> None:
    strategy = build_api_deployment(backend_from({}), replicas=2)["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_topology_spread_over_hosts_and_zones_schedule_anyway() -> None:
    spec = build_api_deployment(backend_from({}), replicas=2)["spec"]["template"]["spec"]
    constraints = spec["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    ]
    assert {c["whenUnsatisfiable"] for c in constraints} == {"ScheduleAnyway"}


def test_probes_use_the_configured_paths_on_the_named_port() -> None:
    backend = backend_from({"api": {"port": 9000, "readinessPath": "/ready", "livenessPath": "/live"}})
    api = container(build_api_deployment(backend, replicas=1))
    assert api["ports"] == [{"containerPort": 9000, "name": "http", "protocol": "TCP"}]
    assert api["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/live", "port": "http"}


def test_a_deleted_pod_keeps_serving_until_it_has_left_the_service() -> None:
    deployment = build_api_deployment(backend_from({}), replicas=1)
    api = container(deployment)
    delay = api["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert delay > 0
    # The delay and the app's own drain (uvicorn's graceful shutdown) fit in the grace period.
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert delay + SAMPLE_APP_GRACEFUL_SHUTDOWN_SECONDS < grace


def test_image_defaults_to_spec_and_can_be_held_back_by_the_reconciler() -> None:
    backend = backend_from({"api": {"image": "app:2"}})
    assert container(build_api_deployment(backend, replicas=1))["image"] == "app:2"
    assert container(build_api_deployment(backend, replicas=1, image="app:1"))["image"] == "app:1"
    assert container(build_api_deployment(backend_from({}), replicas=1))["image"] == "sbo-sample-app:0.1.0"


def test_injected_env_carries_no_password_inline() -> None:
    env = env_of(build_api_deployment(backend_from({}), replicas=1))
    assert env["DATABASE_URL"]["value"] == "postgresql://app@shop-postgres-rw.demo.svc:5432/app"
    assert env["DATABASE_READ_URL"]["value"] == "postgresql://app@shop-postgres-ro.demo.svc:5432/app"
    assert env["REDIS_URL"]["value"] == "redis://shop-redis.demo.svc:6379/0"
    assert env["DATABASE_PASSWORD"] == {
        "name": "DATABASE_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "shop-postgres-app", "key": "password"}},
    }
    assert env["REDIS_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "shop-redis", "key": "password"}}
    for variable in env.values():
        if "PASSWORD" in variable["name"]:
            assert "value" not in variable


def test_disabled_data_services_inject_only_the_app_secret_key() -> None:
    backend = backend_from({"redis": {"enabled": False}, "postgres": {"enabled": False}})
    assert container(build_api_deployment(backend, replicas=1))["env"] == [
        {
            "name": "SECRET_KEY",
            "valueFrom": {"secretKeyRef": {"name": "shop-app-secrets", "key": "secret-key"}},
        }
    ]


def test_user_env_follows_the_injected_env_and_wins_on_a_clash() -> None:
    backend = backend_from(
        {
            "api": {
                "env": [
                    {"name": "LOG_LEVEL", "value": "debug"},
                    {"name": "DATABASE_URL", "value": "postgresql://me@elsewhere/db"},
                ]
            }
        }
    )
    names = [variable["name"] for variable in container(build_api_deployment(backend, replicas=1))["env"]]
    assert names == [
        "DATABASE_PASSWORD",
        "DATABASE_READ_URL",
        "REDIS_PASSWORD",
        "REDIS_URL",
        "SECRET_KEY",
        "LOG_LEVEL",
        "DATABASE_URL",
    ]
    assert (
        env_of(build_api_deployment(backend, replicas=1))["DATABASE_URL"]["value"]
        == "postgresql://me@elsewhere/db"
    )


def test_pods_mount_a_writable_tmp_and_use_the_app_service_account() -> None:
    pod = build_api_deployment(backend_from({"runAsUser": 4242}), replicas=1)["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert container({"spec": {"template": {"spec": pod}}})["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"}
    ]
    assert pod["serviceAccountName"] == "shop-app"
    assert pod["securityContext"]["runAsUser"] == 4242


def test_service_account_does_not_automount_a_token() -> None:
    assert build_app_service_account(backend_from({}))["automountServiceAccountToken"] is False


def test_service_maps_port_80_to_the_container_port() -> None:
    service = build_api_service(backend_from({}))
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]
    assert (
        service["spec"]["selector"]
        == build_api_deployment(backend_from({}), replicas=1)["spec"]["selector"]["matchLabels"]
    )


def test_pdb_allows_one_disruption() -> None:
    assert build_api_pdb(backend_from({}))["spec"]["maxUnavailable"] == 1


def test_ingress_only_when_configured() -> None:
    assert build_api_ingress(backend_from({})) is None
    ingress = build_api_ingress(backend_from({"api": {"ingress": {"host": "shop.example.com"}}}))
    assert ingress is not None
    assert "tls" not in ingress["spec"]
    assert "ingressClassName" not in ingress["spec"]
    full = build_api_ingress(load_example("full.yaml"))
    assert full is not None
    assert full["spec"]["ingressClassName"] == "nginx"
    assert full["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]


def test_no_migrations_no_job() -> None:
    assert build_migrations_job(backend_from({})) is None
    assert migrations_job_name(backend_from({})) is None


def test_job_name_has_a_hash_that_changes_with_the_image() -> None:
    backend = backend_from(MIGRATIONS)
    job = build_migrations_job(backend)
    assert job is not None
    name = job["metadata"]["name"]
    assert name == migrations_job_name(backend)
    assert name.startswith("shop-migrations-")
    assert len(name.removeprefix("shop-migrations-")) == 10
    assert job["metadata"]["labels"]["sbo.dev/migrations-hash"] == name.removeprefix("shop-migrations-")
    other = backend_from({**MIGRATIONS, "image": "sbo-sample-app:0.2.0"})
    assert migrations_job_name(other) != name
    assert migrations_job_name(other, image="sbo-sample-app:0.1.0") == name
    assert migrations_job_name(backend) == migrations_job_name(backend_from(MIGRATIONS)), "stable"


def test_job_runs_the_migrations_command_with_the_api_env_once() -> None:
    job = build_migrations_job(backend_from(MIGRATIONS))
    assert job is not None
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == ["alembic", "upgrade", "head"]
    assert "DATABASE_URL" in {variable["name"] for variable in pod["containers"][0]["env"]}
    assert job["spec"]["backoffLimit"] == 1
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert "ttlSecondsAfterFinished" not in job["spec"]
