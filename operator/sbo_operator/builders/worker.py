"""The optional worker: a Deployment of queue consumers running the app image."""

from __future__ import annotations

from collections.abc import Mapping

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import Manifest
from sbo_operator.builders.app import app_container, app_deployment, app_image, app_pdb
from sbo_operator.builders.labels import Component
from sbo_operator.builders.pods import NO_SECRET_UIDS

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
    image = app_image(backend, image or worker.image)
    container = app_container(backend, name="worker", image=image, command=worker.command, spec=worker)
    return app_deployment(backend, Component.WORKER, container, replicas=replicas, secret_uids=secret_uids)


def build_worker_pdb(backend: ScalableBackend) -> Manifest | None:
    """``<name>-worker``: at most one worker pod disrupted at a time; None without a worker."""
    if backend.spec.worker is None:
        return None
    return app_pdb(backend, Component.WORKER)
