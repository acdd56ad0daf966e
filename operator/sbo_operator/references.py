"""References from a ScalableBackend to objects it does not own (Secrets, ConfigMaps).

A missing one cannot fail at admission (it may be created later), and
Kubernetes would only say so on the pods (CreateContainerConfigError). So
each component lists its references (``Component.references``), and the
reconciler checks them and reports each as a Problem naming the field and
the fix. ``template_references`` reads them back from a built pod template, so
that no template naming a missing object is ever applied (``desired.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

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


def template_references(manifest: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap a workload's pods need in order to start.

    What a container cannot start without: non-optional ``env`` and ``envFrom`` sources and
    ``secret``/``configMap`` volumes (also inside ``projected`` ones). Empty for a non-workload.
    """
    pod = manifest.get("spec", {}).get("template", {}).get("spec")
    if not pod:
        return set()
    found: set[tuple[str, str]] = set()

    def need(kind: str, source: Mapping[str, Any] | None, name_field: str = "name") -> None:
        if source and not source.get("optional") and source.get(name_field):
            found.add((kind, source[name_field]))

    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        for variable in container.get("env", []):
            value_from = variable.get("valueFrom") or {}
            need("Secret", value_from.get("secretKeyRef"))
            need("ConfigMap", value_from.get("configMapKeyRef"))
        for source in container.get("envFrom", []):
            need("Secret", source.get("secretRef"))
            need("ConfigMap", source.get("configMapRef"))
    for volume in pod.get("volumes", []):
        need("Secret", volume.get("secret"), "secretName")
        need("ConfigMap", volume.get("configMap"))
        for projected in (volume.get("projected") or {}).get("sources", []):
            need("Secret", projected.get("secret"))
            need("ConfigMap", projected.get("configMap"))
    return found
