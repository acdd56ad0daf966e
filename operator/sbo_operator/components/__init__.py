"""The registry of components. Adding one to the stack means adding it here, once.

``COMPONENTS`` is ordered: conditions appear in the status, and children are applied within
their wave, in this order. Everything that needs "every component" (the desired children, the
generated Secrets, the references, the autoscaler's targets, the status, the tests' factories)
iterates it; nothing keeps a list of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.components.api import Api
from sbo_operator.components.backup import Backup
from sbo_operator.components.base import AutoscalingTarget, Component, GeneratedSecret
from sbo_operator.components.migrations import Migrations
from sbo_operator.components.postgres import Postgres
from sbo_operator.components.redis import Redis
from sbo_operator.components.worker import Worker
from sbo_operator.references import Reference

__all__ = [
    "COMPONENTS",
    "autoscaling_targets",
    "generated_secrets",
    "required_references",
]

COMPONENTS: tuple[Component, ...] = (Api(), Worker(), Migrations(), Redis(), Postgres(), Backup())


def generated_secrets(backend: ScalableBackend) -> Iterator[GeneratedSecret]:
    """Every Secret the operator generates for the backend, in registry order."""
    for component in COMPONENTS:
        yield from component.secrets(backend)


def required_references(backend: ScalableBackend) -> Iterator[Reference]:
    """Every non-optional secretKeyRef and configMapKeyRef the backend's pods need."""
    for component in COMPONENTS:
        yield from component.references(backend)


def autoscaling_targets(backend: ScalableBackend) -> dict[str, AutoscalingTarget]:
    """What the autoscaler may scale, by component name (spec None: not autoscaled now)."""
    targets = {}
    for component in COMPONENTS:
        target = component.autoscaling(backend)
        if target is not None:
            targets[component.name] = target
    return targets
