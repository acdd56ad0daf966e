"""The api: Deployment, Service, ServiceAccount, PodDisruptionBudget, Ingress and migrations Job.

Replicas are always an explicit argument: the reconciler passes ``spec.api.replicas``, or the
autoscaler's decision when ``spec.api.autoscaling`` is set. The image is an optional argument
so that the reconciler can keep the running image until the migrations Job for the new one has
succeeded (see :func:`migrations_job_name`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import Manifest
from sbo_operator.builders.app import app_container, app_deployment, app_image, app_pdb, app_pod_template
from sbo_operator.builders.labels import Component, object_metadata, selector_labels
from sbo_operator.builders.names import API_SERVICE_PORT, child_names
from sbo_operator.builders.pods import NO_SECRET_UIDS, annotate_secret_uids

__all__ = [
    "MIGRATIONS_HASH_LABEL",
    "build_api_deployment",
    "build_api_ingress",
    "build_api_pdb",
    "build_api_service",
    "build_app_service_account",
    "build_migrations_job",
    "migrations_job_name",
]

MIGRATIONS_HASH_LABEL = "sbo.dev/migrations-hash"
HTTP_PORT_NAME = "http"
# A deleted pod keeps accepting for this long before it gets SIGTERM: its removal from the
# Service's endpoints reaches every kube-proxy (and ingress) only a moment after the deletion, and
# until then new connections still arrive. Well inside the pod's terminationGracePeriodSeconds.
DRAIN_DELAY_SECONDS = 5


def build_app_service_account(backend: ScalableBackend) -> Manifest:
    """``<name>-app``: the identity of the api, worker and migrations pods, no token mounted."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": object_metadata(
            backend, name=child_names(backend).service_account, component=Component.API
        ),
        "automountServiceAccountToken": False,
    }


def _api_container(backend: ScalableBackend, image: str) -> dict[str, Any]:
    api = backend.spec.api
    container = app_container(backend, name="api", image=image, command=api.command, spec=api)
    container["ports"] = [{"containerPort": api.port, "name": HTTP_PORT_NAME, "protocol": "TCP"}]

    def http_probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
        return {
            "failureThreshold": failures,
            "httpGet": {"path": path, "port": HTTP_PORT_NAME},
            "periodSeconds": period,
            "timeoutSeconds": 2,
        }

    container["readinessProbe"] = http_probe(api.readiness_path, period=5, failures=3)
    container["livenessProbe"] = http_probe(api.liveness_path, period=10, failures=3)
    # Up to two minutes to boot before liveness may restart the container.
    container["startupProbe"] = http_probe(api.liveness_path, period=2, failures=60)
    # The sleep action needs nothing in the image (Kubernetes 1.30+).
    container["lifecycle"] = {"preStop": {"sleep": {"seconds": DRAIN_DELAY_SECONDS}}}
    return container


def build_api_deployment(
    backend: ScalableBackend,
    *,
    replicas: int,
    image: str | None = None,
    secret_uids: Mapping[str, str] = NO_SECRET_UIDS,
) -> Manifest:
    """``<name>-api``: rolls with maxUnavailable 0, spreads over nodes and zones.

    ``replicas``: spec.api.replicas, or the autoscaler's decision. ``image``: defaults to
    spec.api.image or spec.image; the reconciler passes the old image while migrations run.
    ``secret_uids``: the generated Secrets' uids (see :func:`annotate_secret_uids`).
    """
    container = _api_container(backend, app_image(backend, image or backend.spec.api.image))
    return app_deployment(backend, Component.API, container, replicas=replicas, secret_uids=secret_uids)


def build_api_service(backend: ScalableBackend) -> Manifest:
    """``<name>-api``: port 80 to the api container's port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_metadata(backend, name=child_names(backend).api, component=Component.API),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(backend, Component.API),
            "ports": [
                {
                    "name": HTTP_PORT_NAME,
                    "port": API_SERVICE_PORT,
                    "protocol": "TCP",
                    "targetPort": HTTP_PORT_NAME,
                }
            ],
        },
    }


def build_api_pdb(backend: ScalableBackend) -> Manifest:
    """``<name>-api``: voluntary disruptions take at most one api pod at a time."""
    return app_pdb(backend, Component.API)


def build_api_ingress(backend: ScalableBackend) -> Manifest | None:
    """``<name>-api``: the host to the api Service; None when spec.api.ingress is absent."""
    ingress = backend.spec.api.ingress
    if ingress is None:
        return None
    names = child_names(backend)
    spec: dict[str, Any] = {}
    if ingress.class_name is not None:
        spec["ingressClassName"] = ingress.class_name
    spec["rules"] = [
        {
            "host": ingress.host,
            "http": {
                "paths": [
                    {
                        "backend": {"service": {"name": names.api, "port": {"name": HTTP_PORT_NAME}}},
                        "path": "/",
                        "pathType": "Prefix",
                    }
                ]
            },
        }
    ]
    if ingress.tls_secret_name is not None:
        spec["tls"] = [{"hosts": [ingress.host], "secretName": ingress.tls_secret_name}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": object_metadata(backend, name=names.api, component=Component.API),
        "spec": spec,
    }


# ---- migrations -------------------------------------------------------------------------------------


def _migrations_pod_template(
    backend: ScalableBackend, image: str, secret_uids: Mapping[str, str]
) -> dict[str, Any] | None:
    migrations = backend.spec.api.migrations
    if migrations is None:
        return None
    container = app_container(
        backend, name="migrations", image=image, command=migrations.command, spec=backend.spec.api
    )
    template = app_pod_template(
        backend, component=Component.MIGRATIONS, containers=[container], restart_policy="Never", spread=False
    )
    return annotate_secret_uids(template, secret_uids)


def _template_hash(template: dict[str, Any]) -> str:
    encoded = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:10]


def migrations_job_name(
    backend: ScalableBackend, *, image: str | None = None, secret_uids: Mapping[str, str] = NO_SECRET_UIDS
) -> str | None:
    """``<name>-migrations-<hash>`` for the given (default: desired) image; None without migrations.

    The hash covers the whole pod template (image, command, env, resources), so a new image gets a
    new Job, and no change ever needs an update of an existing Job (its template is immutable).
    The reconciler rolls the api (and worker) to ``image`` only once this Job has succeeded. A
    regenerated Secret (new uid) also gets a new Job: its pods read the new credentials.
    """
    template = _migrations_pod_template(
        backend, app_image(backend, image or backend.spec.api.image), secret_uids
    )
    if template is None:
        return None
    return f"{child_names(backend).migrations_prefix}{_template_hash(template)}"


def build_migrations_job(
    backend: ScalableBackend, *, image: str | None = None, secret_uids: Mapping[str, str] = NO_SECRET_UIDS
) -> Manifest | None:
    """The migrations Job for ``image`` (default: the desired api image); None without migrations.

    No TTL: the reconciler reads the Job's success to decide the rollout, and deletes Jobs of
    other hashes (label ``sbo.dev/migrations-hash``) itself.
    """
    migrations = backend.spec.api.migrations
    template = _migrations_pod_template(
        backend, app_image(backend, image or backend.spec.api.image), secret_uids
    )
    if migrations is None or template is None:
        return None
    template_hash = _template_hash(template)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_metadata(
            backend,
            name=f"{child_names(backend).migrations_prefix}{template_hash}",
            component=Component.MIGRATIONS,
            extra_labels={MIGRATIONS_HASH_LABEL: template_hash},
        ),
        "spec": {
            "activeDeadlineSeconds": migrations.active_deadline_seconds,
            "backoffLimit": migrations.backoff_limit,
            "template": template,
        },
    }
