"""ScalableBackend manifests for tests that talk to the apiserver without an operator."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import yaml

from devkit.cluster import LocalCluster, eventually

Mutation = Callable[[dict[str, Any]], None]


def valid_manifest(namespace: str, name: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "sbo.dev/v1alpha1",
        "kind": "ScalableBackend",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": "sbo-sample-app:0.1.0"},
    }


def with_field(path: str, value: Any) -> Mutation:
    """Set a dotted path (creating parents) in the manifest."""

    def mutate(manifest: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = manifest
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    return mutate


def kubectl_create(
    cluster: LocalCluster, manifest: dict[str, Any], *flags: str
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("create", *flags, "-f", "-", input=yaml.safe_dump(manifest), check=False)


def install_checked_in_crd(cluster: LocalCluster) -> None:
    """The checked-in CRD, installed (idempotently) and served. Left installed for other tests."""
    cluster.install_crd()

    # An already-established CRD that was just updated is served with its new schema only a moment
    # later; wait until a manifest only the current schema rejects (a Prometheus URL without a
    # scheme) is.
    def current_schema_served() -> bool:
        probe = valid_manifest("default", "schema-probe")
        with_field("spec.prometheus", {"url": "prometheus:9090"})(probe)
        return kubectl_create(cluster, probe, "--dry-run=server").returncode != 0

    eventually(current_schema_served, timeout=30, what="the checked-in CRD schema to be served")
