"""Growing a StatefulSet's storage, which Kubernetes does not do by itself. Pure.

`volumeClaimTemplates` are immutable, so a bigger `storage.size` (the CRD
only lets it grow) is carried out the way operators of the field do it:
expand every existing claim, then replace the StatefulSet with an orphaning
delete, so its pods keep running and the new StatefulSet adopts them.
`serviceName` is immutable too: a StatefulSet made before its headless
governing Service existed is replaced the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sbo_operator.api.v1alpha1 import parse_quantity
from sbo_operator.builders import Manifest
from sbo_operator.drift import is_derivative


def claim_templates_changed(desired: Manifest, actual: Manifest | None) -> bool:
    """True when applying `desired` over `actual` would touch the immutable claim templates."""
    if actual is None:
        return False
    wanted = desired["spec"].get("volumeClaimTemplates", [])
    existing = actual.get("spec", {}).get("volumeClaimTemplates", [])
    return not is_derivative(wanted, existing)


def service_name_changed(desired: Manifest, actual: Manifest | None) -> bool:
    """True when `actual` is governed by another Service than `desired` names (immutable)."""
    if actual is None:
        return False
    return bool(actual.get("spec", {}).get("serviceName") != desired["spec"].get("serviceName"))


def claims_to_grow(statefulset: Manifest, claims: Iterable[Manifest]) -> list[tuple[str, str]]:
    """(claim name, new size) for every existing claim of the StatefulSet that is smaller.

    Claims are named `<template>-<statefulset>-<ordinal>`; retained claims of
    ordinals above the current replicas grow too, so a later scale-up finds
    them at the new size.
    """
    name = statefulset["metadata"]["name"]
    sizes = {
        template["metadata"]["name"]: template["spec"]["resources"]["requests"]["storage"]
        for template in statefulset["spec"].get("volumeClaimTemplates", [])
    }
    grow = []
    for claim in claims:
        claim_name = claim["metadata"]["name"]
        for template, size in sizes.items():
            if re.fullmatch(rf"{re.escape(template)}-{re.escape(name)}-\d+", claim_name):
                requested = claim.get("spec", {}).get("resources", {}).get("requests", {}).get("storage", "0")
                if parse_quantity(size) > parse_quantity(requested):
                    grow.append((claim_name, size))
    return sorted(grow)
