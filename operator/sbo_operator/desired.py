"""The desired children of one ScalableBackend, given what exists now. Pure.

Each component (``components.COMPONENTS``) says which of its children should exist *now*;
this module gathers them into the order they are applied in, and decides what goes:

* foundation children (config, Secrets, Services, policies) are applied before workloads,
  so that workloads find what they mount and connect to;
* Secrets are generated only when missing, and never applied again;
* managed children that are no longer wanted (a removed worker, ingress or Redis) are
  deleted, except those a component keeps. Secrets are kept, so that credentials are never lost;
* no workload whose pod template needs a missing Secret or ConfigMap is applied: its pods could
  not start (CreateContainerConfigError). It stays as it runs now (or is not created yet), and
  its component is held with the problem that names the reference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import Manifest
from sbo_operator.builders.images import OFFICIAL_DATA_SERVICE_IMAGES, DataServiceImages
from sbo_operator.builders.names import child_names
from sbo_operator.builders.network_policies import OperatorPods
from sbo_operator.components import COMPONENTS, generated_secrets
from sbo_operator.components.base import GeneratedSecret, OperatorInputs, Problem
from sbo_operator.references import template_references
from sbo_operator.snapshot import Snapshot

__all__ = ["FOUNDATION_KINDS", "DesiredState", "desired_state", "missing_secrets"]

# Applied first, so that workloads find their config, Secrets and Services.
FOUNDATION_KINDS = frozenset(
    {"ConfigMap", "Secret", "ServiceAccount", "Service", "NetworkPolicy", "PodDisruptionBudget", "Ingress"}
)


@dataclasses.dataclass(frozen=True)
class DesiredState:
    foundation: list[Manifest]
    workloads: list[Manifest]
    secrets_to_generate: list[GeneratedSecret]
    obsolete: list[tuple[str, str, str]]  # (apiVersion, kind, name) to delete
    waiting: dict[str, str]  # component -> why its rollout is held back
    problems: list[Problem]
    held: dict[str, Problem] = dataclasses.field(default_factory=dict)  # component -> missing reference


def desired_state(
    backend: ScalableBackend,
    snapshot: Snapshot,
    missing: Mapping[tuple[str, str], Problem] | None = None,
    *,
    images: DataServiceImages = OFFICIAL_DATA_SERVICE_IMAGES,
    operator_pods: OperatorPods | None = None,
) -> DesiredState:
    """``missing``: the Secrets and ConfigMaps, by (kind, name), that pods need but do not exist.

    ``images``: the PostgreSQL and Redis image templates; ``operator_pods``: the operator's own
    pods, None outside the cluster (both the operator's settings).
    """
    manifests: list[Manifest] = []
    kept: set[tuple[str, str]] = set()
    waiting: dict[str, str] = {}
    problems: list[Problem] = []
    held: dict[str, Problem] = {}
    missing = missing or {}
    operator = OperatorInputs(images=images, operator_pods=operator_pods)
    for component in COMPONENTS:
        plan = component.plan(backend, snapshot, operator=operator)
        for manifest in plan.manifests:
            key = (manifest["kind"], manifest["metadata"]["name"])
            blockers = sorted(template_references(manifest) & missing.keys())
            if blockers:
                kept.add(key)  # left as it runs now, or not created yet
                held.setdefault(component.name, missing[blockers[0]])
            else:
                manifests.append(manifest)
        kept |= plan.kept
        problems.extend(plan.problems)
        if plan.waiting is not None:
            waiting[component.name] = plan.waiting

    secrets_to_generate = missing_secrets(backend, snapshot)
    wanted = {(m["kind"], m["metadata"]["name"]) for m in manifests} | kept
    obsolete = [
        (child["apiVersion"], kind, name)
        for (kind, name), child in sorted(snapshot.children.items())
        if (kind, name) not in wanted and kind != "Secret" and not child["metadata"].get("deletionTimestamp")
    ]
    return DesiredState(
        foundation=[m for m in manifests if m["kind"] in FOUNDATION_KINDS],
        workloads=[m for m in manifests if m["kind"] not in FOUNDATION_KINDS],
        secrets_to_generate=secrets_to_generate,
        obsolete=obsolete,
        waiting=waiting,
        problems=problems,
        held=held,
    )


def missing_secrets(backend: ScalableBackend, snapshot: Snapshot) -> list[GeneratedSecret]:
    """The generated Secrets that do not exist (yet, or any more)."""
    names = child_names(backend)
    return [
        secret
        for secret in generated_secrets(backend)
        if snapshot.child("Secret", secret.name(names)) is None
    ]
