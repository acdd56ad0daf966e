"""The headless Service that governs a StatefulSet. Pure.

A StatefulSet's ``serviceName`` gives each pod a stable DNS name, ``<pod>.<service>``, only if
that Service is headless (``clusterIP: None``). It publishes not-ready pods too, so that a
replica can find a primary that is still starting, and an operator can address one instance
(failover, per-instance lag checks, pg_rewind) whatever its readiness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sbo_operator.builders import Manifest

__all__ = ["governing_service"]


def governing_service(
    *, metadata: dict[str, Any], selector: Mapping[str, str], port_name: str, port: int
) -> Manifest:
    """A headless Service selecting exactly a StatefulSet's pods (pass its ``selector.matchLabels``)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": dict(selector),
            "ports": [{"name": port_name, "port": port, "protocol": "TCP", "targetPort": port_name}],
        },
    }
