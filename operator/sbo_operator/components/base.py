"""What a component is: one module that knows everything about one part of the stack.

A component (the api, the worker, the migrations, Redis, PostgreSQL) composes the pure
builders into the children it wants *now*, names the Secrets it generates, the references its
pods need, what of it the autoscaler scales, and how it reports in the status. Everything here
is pure: a validated backend and a snapshot in, plain values out. The reconciler, the status
composer and the tests only iterate the registry (``components.COMPONENTS``).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import ClassVar, Protocol

from pydantic import BaseModel

from sbo_operator.api.autoscaling import AutoscalingSpec
from sbo_operator.api.conditions import ConditionState, ConditionStatus, ConditionType, Reason
from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import Manifest
from sbo_operator.builders.images import OFFICIAL_DATA_SERVICE_IMAGES, DataServiceImages
from sbo_operator.builders.labels import Component as ComponentLabel
from sbo_operator.builders.names import ChildNames
from sbo_operator.builders.network_policies import OperatorPods
from sbo_operator.progress import Progress
from sbo_operator.references import Reference
from sbo_operator.snapshot import Snapshot

__all__ = [
    "AutoscalingTarget",
    "Component",
    "GeneratedSecret",
    "OperatorInputs",
    "Plan",
    "Problem",
    "StatusFragment",
]


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something only a person can fix; it becomes the Stalled condition."""

    reason: Reason
    message: str


class SecretBuilder(Protocol):
    def __call__(
        self, backend: ScalableBackend, *, existing_data: Mapping[str, str] | None, random_bytes: bytes | None
    ) -> Manifest | None: ...


@dataclasses.dataclass(frozen=True)
class GeneratedSecret:
    """A Secret the operator generates once (from >= 32 random bytes) and never rotates."""

    id: str  # e.g. "app": its key in status.secrets
    name: Callable[[ChildNames], str]
    build: SecretBuilder


@dataclasses.dataclass(frozen=True)
class OperatorInputs:
    """What the operator's settings give every plan, the same for every backend."""

    images: DataServiceImages = OFFICIAL_DATA_SERVICE_IMAGES  # the data services' image templates
    operator_pods: OperatorPods | None = None  # its own pods, which PostgreSQL admits; None: outside


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one component wants to exist now."""

    manifests: Sequence[Manifest] = ()
    # Existing children left as they are: neither applied nor deleted (e.g. a Deployment
    # whose new image waits for migrations, old migrations Jobs until the new one succeeded).
    kept: frozenset[tuple[str, str]] = frozenset()
    waiting: str | None = None  # why its rollout is held back
    problems: Sequence[Problem] = ()


@dataclasses.dataclass(frozen=True)
class AutoscalingTarget:
    """A Deployment the autoscaler may scale: its spec (None: not autoscaled now) and replicas."""

    spec: AutoscalingSpec | None
    replicas: int


@dataclasses.dataclass(frozen=True)
class StatusFragment:
    """A component's part of the status: its condition and the status fields it owns.

    ``fields`` are top-level status fields by their Python name (e.g. ``api``), ``endpoints``
    and ``secrets`` keys of status.endpoints and status.secrets. None, not absent, for what a
    disabled component owns: a merge patch deletes only keys set to null.
    """

    condition: ConditionState
    fields: Mapping[str, BaseModel | None] = dataclasses.field(default_factory=dict)
    endpoints: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    secrets: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    # False: the condition informs but does not hold Ready back (e.g. ContinuousArchiving).
    gates_ready: bool = True


class Component(abc.ABC):
    """One part of the stack. Subclasses override what applies to them."""

    label: ClassVar[ComponentLabel]  # its app.kubernetes.io/component, and its name here

    @property
    def name(self) -> str:
        return self.label.value

    @abc.abstractmethod
    def plan(self, backend: ScalableBackend, snapshot: Snapshot, *, operator: OperatorInputs) -> Plan:
        """The children it wants now, given what exists and what the operator's settings give."""

    def secrets(self, backend: ScalableBackend) -> Sequence[GeneratedSecret]:
        """The Secrets it generates while enabled (created once when missing, kept when disabled)."""
        return ()

    def references(self, backend: ScalableBackend) -> Iterator[Reference]:
        """Objects it does not own that its pods need (secretKeyRef, configMapKeyRef)."""
        return iter(())

    def autoscaling(self, backend: ScalableBackend) -> AutoscalingTarget | None:
        """What the autoscaler may scale; None if it has no scalable Deployment."""
        return None

    def status(
        self, backend: ScalableBackend, snapshot: Snapshot, waiting: str | None
    ) -> StatusFragment | None:
        """Its condition and status fields; None if it reports nothing of its own."""
        return None


def ready_condition(type: ConditionType, progress: Progress) -> ConditionState:
    """A component's condition from its workload's progress."""
    status = ConditionStatus.TRUE if progress.ready else ConditionStatus.FALSE
    return ConditionState(type, status, progress.reason, progress.message)


def disabled_condition(type: ConditionType, field: str) -> ConditionState:
    """A disabled component is as it should be: True, with reason Disabled."""
    return ConditionState(
        type, ConditionStatus.TRUE, Reason.DISABLED, f"{field} is not enabled; nothing to run"
    )


def present(*manifests: Manifest | None) -> list[Manifest]:
    """The manifests the builders returned (they return None for what is disabled)."""
    return [manifest for manifest in manifests if manifest is not None]
