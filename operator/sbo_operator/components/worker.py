"""The worker component: an optional Deployment (and its PodDisruptionBudget) running the app's
background jobs. Autoscalable; rolls to a new image together with the api, after migrations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from sbo_operator.api.conditions import ConditionType
from sbo_operator.api.v1alpha1 import ScalableBackend, WorkerStatus
from sbo_operator.builders import network_policies, worker
from sbo_operator.builders.labels import Component as ComponentLabel
from sbo_operator.builders.names import child_names
from sbo_operator.components.base import (
    AutoscalingTarget,
    Component,
    OperatorInputs,
    Plan,
    StatusFragment,
    disabled_condition,
    present,
    ready_condition,
)
from sbo_operator.components.migrations import app_deployment, rollout
from sbo_operator.credentials import secret_uids
from sbo_operator.progress import deployment_progress
from sbo_operator.references import Reference, env_references
from sbo_operator.snapshot import Snapshot

__all__ = ["Worker"]


class Worker(Component):
    label = ComponentLabel.WORKER

    def plan(self, backend: ScalableBackend, snapshot: Snapshot, *, operator: OperatorInputs) -> Plan:
        foundation = present(
            worker.build_worker_pdb(backend),
            network_policies.build_app_network_policy(backend, ComponentLabel.WORKER),
        )
        spec = backend.spec.worker
        if spec is None:
            return Plan(manifests=foundation)
        deployment = app_deployment(
            snapshot,
            rollout(backend, snapshot),
            child_names(backend).worker,
            lambda image: worker.build_worker_deployment(
                backend, replicas=spec.replicas, image=image, secret_uids=secret_uids(snapshot)
            ),
        )
        return dataclasses.replace(deployment, manifests=[*foundation, *deployment.manifests])

    def references(self, backend: ScalableBackend) -> Iterator[Reference]:
        if backend.spec.worker is None:
            return iter(())
        return env_references("worker", backend.spec.worker.env)

    def autoscaling(self, backend: ScalableBackend) -> AutoscalingTarget:
        spec = backend.spec.worker
        return AutoscalingTarget(spec.autoscaling if spec else None, spec.replicas if spec else 0)

    def status(self, backend: ScalableBackend, snapshot: Snapshot, waiting: str | None) -> StatusFragment:
        if backend.spec.worker is None:
            return StatusFragment(
                disabled_condition(ConditionType.WORKER_READY, "spec.worker"), {"worker": None}
            )
        name = child_names(backend).worker
        deployment = snapshot.child("Deployment", name)
        progress = deployment_progress(deployment, name=name)
        return StatusFragment(
            ready_condition(ConditionType.WORKER_READY, progress),
            fields={
                "worker": WorkerStatus(
                    replicas=int(((deployment or {}).get("status") or {}).get("replicas", 0)),
                    ready_replicas=progress.ready_replicas,
                )
            },
        )
