"""The api component: the app's HTTP Deployment, its Service, PodDisruptionBudget, Ingress,
the app's ServiceAccount and its generated secret key. Autoscalable; backs the scale subresource.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from sbo_operator.api.conditions import ConditionState, ConditionStatus, ConditionType, Reason
from sbo_operator.api.v1alpha1 import ApiStatus, ScalableBackend
from sbo_operator.builders import api, app, network_policies
from sbo_operator.builders.labels import Component as ComponentLabel
from sbo_operator.builders.labels import api_selector_string
from sbo_operator.builders.names import API_SERVICE_PORT, ChildNames, child_names, service_host
from sbo_operator.components.base import (
    AutoscalingTarget,
    Component,
    GeneratedSecret,
    OperatorInputs,
    Plan,
    StatusFragment,
    present,
    ready_condition,
)
from sbo_operator.components.migrations import app_deployment, rollout
from sbo_operator.credentials import secret_uids
from sbo_operator.progress import deployment_progress
from sbo_operator.references import Reference, env_references
from sbo_operator.snapshot import Snapshot

__all__ = ["Api"]


def _app_secret_name(names: ChildNames) -> str:
    return names.app_secret


class Api(Component):
    label = ComponentLabel.API

    def plan(self, backend: ScalableBackend, snapshot: Snapshot, *, operator: OperatorInputs) -> Plan:
        names = child_names(backend)
        gate = rollout(backend, snapshot)
        deployment = app_deployment(
            snapshot,
            gate,
            names.api,
            lambda image: api.build_api_deployment(
                backend, replicas=backend.spec.api.replicas, image=image, secret_uids=secret_uids(snapshot)
            ),
        )
        foundation = present(
            api.build_app_service_account(backend),
            api.build_api_service(backend),
            api.build_api_pdb(backend),
            api.build_api_ingress(backend),
            network_policies.build_app_network_policy(backend, ComponentLabel.API),
        )
        return dataclasses.replace(
            deployment, manifests=[*foundation, *deployment.manifests], waiting=gate.waiting
        )

    def secrets(self, backend: ScalableBackend) -> Sequence[GeneratedSecret]:
        return (GeneratedSecret("app", _app_secret_name, app.build_app_secret),)

    def references(self, backend: ScalableBackend) -> Iterator[Reference]:
        return env_references("api", backend.spec.api.env)

    def autoscaling(self, backend: ScalableBackend) -> AutoscalingTarget:
        return AutoscalingTarget(backend.spec.api.autoscaling, backend.spec.api.replicas)

    def status(self, backend: ScalableBackend, snapshot: Snapshot, waiting: str | None) -> StatusFragment:
        names = child_names(backend)
        deployment = snapshot.child("Deployment", names.api)
        progress = deployment_progress(deployment, name=names.api)
        condition = ready_condition(ConditionType.API_READY, progress)
        if waiting is not None and progress.ready:
            condition = ConditionState(
                ConditionType.API_READY, ConditionStatus.FALSE, Reason.MIGRATIONS_PENDING, waiting
            )
        return StatusFragment(
            condition,
            fields={
                "api": ApiStatus.from_counts(
                    desired=backend.spec.api.replicas,
                    replicas=int(((deployment or {}).get("status") or {}).get("replicas", 0)),
                    ready_replicas=progress.ready_replicas,
                    selector=api_selector_string(backend),
                )
            },
            endpoints={
                "api": f"http://{service_host(names.api, backend.metadata.namespace)}:{API_SERVICE_PORT}"
            },
            secrets={"app": names.app_secret},
        )
