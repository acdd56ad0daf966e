"""What the api, worker and migrations pods share: the injected environment and the pod shape.

Injected variables (only for the data services that are enabled)::

    DATABASE_URL       postgresql://<user>@<name>-postgres-rw.<ns>.svc:5432/<db>   (no password)
    DATABASE_READ_URL  postgresql://<user>@<name>-postgres-ro.<ns>.svc:5432/<db>   (no password)
    DATABASE_PASSWORD  secretKeyRef <name>-postgres-app / password
    REDIS_URL          redis://<name>-redis.<ns>.svc:6379/0                         (no password)
    REDIS_PASSWORD     secretKeyRef <name>-redis / password
    SECRET_KEY         secretKeyRef <name>-app-secrets / secret-key   (always)

Passwords only ever travel through ``secretKeyRef``. The user's ``env`` comes after the
injected variables, so it may reference them as ``$(DATABASE_URL)``. On a name clash the
user's variable wins: the injected one is left out (duplicate names would make server-side
apply fail, since ``env`` is a list map keyed by name). That lets a user point an app at an
external database, at the cost of owning that variable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sbo_operator.api.v1alpha1 import ApiSpec, EnvVar, ScalableBackend, WorkerSpec
from sbo_operator.builders import Manifest
from sbo_operator.builders.labels import Component, common_labels, object_metadata, selector_labels
from sbo_operator.builders.names import POSTGRES_PORT, REDIS_PORT, child_names, service_host
from sbo_operator.builders.pods import (
    annotate_secret_uids,
    resources_dict,
    tmp_volume,
    tmp_volume_mount,
    topology_spread_constraints,
)
from sbo_operator.builders.secrets import decode_secret_data, encode_secret_data, existing_or_derived_password
from sbo_operator.builders.security import pod_security_context, restricted_container_security_context

__all__ = [
    "app_container",
    "app_deployment",
    "app_env",
    "app_image",
    "app_pdb",
    "app_pod_template",
    "build_app_secret",
    "injected_env",
]

INJECTED_ENV_NAMES = (
    "DATABASE_PASSWORD",
    "DATABASE_READ_URL",
    "DATABASE_URL",
    "REDIS_PASSWORD",
    "REDIS_URL",
    "SECRET_KEY",
)


def injected_env(backend: ScalableBackend) -> list[dict[str, Any]]:
    """The DATABASE_* and REDIS_* variables, sorted by name."""
    names = child_names(backend)
    namespace = backend.metadata.namespace
    env: list[dict[str, Any]] = []
    postgres = backend.spec.postgres
    if postgres.enabled:

        def database_url(service: str) -> str:
            host = service_host(service, namespace)
            return f"postgresql://{postgres.user}@{host}:{POSTGRES_PORT}/{postgres.database}"

        env += [
            {
                "name": "DATABASE_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": names.postgres_secret, "key": "password"}},
            },
            {"name": "DATABASE_READ_URL", "value": database_url(names.postgres_read_only)},
            {"name": "DATABASE_URL", "value": database_url(names.postgres_read_write)},
        ]
    if backend.spec.redis.enabled:
        env += [
            {
                "name": "REDIS_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": names.redis, "key": "password"}},
            },
            {"name": "REDIS_URL", "value": f"redis://{service_host(names.redis, namespace)}:{REDIS_PORT}/0"},
        ]
    # Apps sign sessions and tokens with it; every replica must share one value.
    env.append(
        {"name": "SECRET_KEY", "valueFrom": {"secretKeyRef": {"name": names.app_secret, "key": "secret-key"}}}
    )
    return env


def build_app_secret(
    backend: ScalableBackend, *, existing_data: Mapping[str, str] | None, random_bytes: bytes | None = None
) -> dict[str, Any]:
    """``<name>-app-secrets``: ``secret-key``, shared by the api and worker pods as SECRET_KEY.

    ``existing_data``: the current Secret's base64 ``data`` (None if absent); an existing key is
    kept forever. ``random_bytes``: at least 32, needed only while there is no key yet.
    """
    secret_key = existing_or_derived_password(
        decode_secret_data(existing_data),
        key="secret-key",
        random_bytes=random_bytes,
        purpose="app-secret-key",
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_metadata(backend, name=child_names(backend).app_secret, component=Component.API),
        "type": "Opaque",
        "data": encode_secret_data({"secret-key": secret_key}),
    }


def app_env(backend: ScalableBackend, user_env: Sequence[EnvVar]) -> list[dict[str, Any]]:
    """Injected variables, then the user's; a user variable replaces an injected one of that name."""
    user_names = {variable.name for variable in user_env}
    injected = [variable for variable in injected_env(backend) if variable["name"] not in user_names]
    return injected + [
        variable.model_dump(by_alias=True, exclude_none=True, mode="json") for variable in user_env
    ]


def app_image(backend: ScalableBackend, override: str | None) -> str:
    """The component's image: an explicit override, else spec.image."""
    return override if override is not None else backend.spec.image


def app_container(
    backend: ScalableBackend,
    *,
    name: str,
    image: str,
    command: Sequence[str] | None,
    spec: ApiSpec | WorkerSpec,
) -> dict[str, Any]:
    """An app container with the env and resources of ``spec`` (spec.api for the api and the
    migrations, spec.worker for the worker): read-only root, writable /tmp, restricted security
    context."""
    env = app_env(backend, spec.env)
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": backend.spec.image_pull_policy.value,
    }
    if command is not None:
        container["command"] = list(command)
    if env:
        container["env"] = env
    container["resources"] = resources_dict(spec.resources)
    container["securityContext"] = restricted_container_security_context()
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    container["volumeMounts"] = [tmp_volume_mount()]
    return container


def app_pod_template(
    backend: ScalableBackend,
    *,
    component: Component,
    containers: list[dict[str, Any]],
    restart_policy: str | None = None,
    spread: bool = True,
) -> dict[str, Any]:
    """A pod template for the app image, running as spec.runAsUser, no service account token."""
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "containers": containers,
        # Service links would add <SERVICE>_PORT=tcp://... variables that can clash with app settings.
        "enableServiceLinks": False,
        "securityContext": pod_security_context(uid=backend.spec.run_as_user),
        "serviceAccountName": child_names(backend).service_account,
        "terminationGracePeriodSeconds": 30,
        "volumes": [tmp_volume()],
    }
    if restart_policy is not None:
        spec["restartPolicy"] = restart_policy
    if spread:
        spec["topologySpreadConstraints"] = topology_spread_constraints(
            selector_labels(backend, component), match_label_keys=["pod-template-hash"]
        )
    return {"metadata": {"labels": common_labels(backend, component)}, "spec": spec}


AppComponent = Literal[Component.API, Component.WORKER]


def _app_workload_metadata(backend: ScalableBackend, component: AppComponent) -> dict[str, Any]:
    """Metadata of ``<name>-api`` or ``<name>-worker`` (the Deployment and its PodDisruptionBudget)."""
    names = child_names(backend)
    name = names.api if component is Component.API else names.worker
    return object_metadata(backend, name=name, component=component)


def app_deployment(
    backend: ScalableBackend,
    component: AppComponent,
    container: dict[str, Any],
    *,
    replicas: int,
    secret_uids: Mapping[str, str],
) -> Manifest:
    """``<name>-api`` or ``<name>-worker``: rolls with maxUnavailable 0, spreads over nodes and zones."""
    if replicas < 0:
        raise ValueError(f"replicas must not be negative, got {replicas}")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _app_workload_metadata(backend, component),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(backend, component)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": annotate_secret_uids(
                app_pod_template(backend, component=component, containers=[container]), secret_uids
            ),
        },
    }


def app_pdb(backend: ScalableBackend, component: AppComponent) -> Manifest:
    """``<name>-api`` or ``<name>-worker``: voluntary disruptions take one pod at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _app_workload_metadata(backend, component),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(backend, component)},
            # A crash-looping pod must not block a node drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
