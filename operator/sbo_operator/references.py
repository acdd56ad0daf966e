"""References from a ScalableBackend to objects it does not own (Secrets, ConfigMaps).

A missing one cannot fail at admission (it may be created later), and
Kubernetes would only say so on the pods (CreateContainerConfigError). So
each component lists its references (``Component.references``), and the
reconciler checks them and reports each as a Problem naming the field and
the fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Literal

from sbo_operator.api.v1alpha1 import EnvVar


@dataclasses.dataclass(frozen=True)
class Reference:
    field: str  # e.g. spec.api.env[2].valueFrom.secretKeyRef
    kind: Literal["Secret", "ConfigMap"]
    name: str
    key: str


def env_references(component: str, env: Sequence[EnvVar]) -> Iterator[Reference]:
    """Every non-optional secretKeyRef and configMapKeyRef in one component's spec.<component>.env."""
    for index, variable in enumerate(env):
        source = variable.value_from
        if source is None:
            continue
        field = f"spec.{component}.env[{index}].valueFrom"
        if (secret := source.secret_key_ref) is not None and not secret.optional:
            yield Reference(f"{field}.secretKeyRef", "Secret", secret.name, secret.key)
        if (config_map := source.config_map_key_ref) is not None and not config_map.optional:
            yield Reference(f"{field}.configMapKeyRef", "ConfigMap", config_map.name, config_map.key)


def reference_problem(reference: Reference, namespace: str, data_keys: set[str] | None) -> str | None:
    """What is wrong with one reference, given the keys the object has (None: it does not exist)."""
    where = f"{reference.field}: {reference.kind} {namespace}/{reference.name}"
    if data_keys is None:
        return f"{where} not found; create it, or set optional: true on the reference"
    if reference.key not in data_keys:
        return f"{where} has no key {reference.key!r}; it has {', '.join(sorted(data_keys)) or 'no keys'}"
    return None
