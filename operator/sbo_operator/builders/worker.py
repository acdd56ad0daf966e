"""The optional worker: a Deployment of queue consumers running the app image."""

from __future__ import annotations

from collections.abc import Mapping

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import Manifest
from sbo_operator.builders.app import app_container, app_env, app_image, app_pod_template
from sbo_operator.builders.labels import Component, object_metadata, selector_labels
from sbo_operator.builders.names import child_names
from sbo_operator.builders.pods import NO_SECRET_UIDS, annotate_secret_uids

__all__ = ["build_worker_deployment", "build_worker_pdb"]


def build_worker_deployment(
    backend: ScalableBackend,
    *,
    replicas: int,
    image: str | None = None,
    secret_uids: Mapping[str, str] = NO_SECRET_UIDS,
) -> Manifest | None:
    """``<name>-worker``; None when spec.worker is absent.

    ``replicas``: spec.worker.replicas, or the autoscaler's decision. ``image``: defaults to
    spec.worker.image or spec.image; the reconciler passes the old image while migrations run.
    ``secret_uids``: the generated Secrets' uids (see :func:`annotate_secret_uids`).
    """
    worker = backend.spec.worker
    if worker is None:
        return None
    if replicas < 0:
        raise ValueError(f"replicas must not be negative, got {replicas}")
    container = app_container(
        backend,
        name="worker",
        image=app_image(backend, image or worker.image),
        command=worker.command,
        env=app_env(backend, worker.env),
        resources=worker.resources,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_metadata(backend, name=child_names(backend).worker, component=Component.WORKER),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(backend, Component.WORKER)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": annotate_secret_uids(
                app_pod_template(backend, component=Component.WORKER, containers=[container]), secret_uids
            ),
        },
    }


def build_worker_pdb(backend: ScalableBackend) -> Manifest | None:
    """``<name>-worker``: at most one worker pod disrupted at a time; None without a worker."""
    if backend.spec.worker is None:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_metadata(backend, name=child_names(backend).worker, component=Component.WORKER),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(backend, Component.WORKER)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
