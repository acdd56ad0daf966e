"""What the bench creates: N copies of examples/basic.yaml over a few restricted namespaces."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from devkit.cluster import LocalCluster
from devkit.measure import say
from devkit.paths import EXAMPLES
from sbo_operator.builders import Manifest

EXAMPLE = EXAMPLES / "basic.yaml"
FIELD_MANAGER = "sbo-bench"


def namespaces_for(n: int, count: int) -> list[str]:
    return [f"bench-{index:02d}" for index in range(min(n, count))]


def backend_manifests(n: int, namespaces: Sequence[str], read_replicas: int | None) -> list[Manifest]:
    """examples/basic.yaml, N times, round-robin over the namespaces."""
    example: Manifest = yaml.safe_load(EXAMPLE.read_text())
    if read_replicas is not None:
        example["spec"]["postgres"]["readReplicas"] = read_replicas
    manifests = []
    for index in range(n):
        manifest = copy.deepcopy(example)
        manifest["metadata"] = {"name": f"shop-{index:04d}", "namespace": namespaces[index % len(namespaces)]}
        manifests.append(manifest)
    return manifests


def key_of(obj: Mapping[str, Any]) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def pods_of(workloads: Sequence[Manifest]) -> int:
    pods = 0
    for manifest in workloads:
        if manifest["kind"] == "Job":
            pods += int(manifest["spec"].get("completions") or 1)
        else:
            pods += int(manifest["spec"].get("replicas", 1))
    return pods


def prepare(cluster: LocalCluster, namespaces: Sequence[str], pods: int) -> None:
    """A fresh control plane with room for every pod, the CRD and the namespaces."""
    cluster.start_fresh()
    # Room for every pod, with CPU and memory requests that always fit.
    cluster.enlarge_nodes(pods=max(110, pods), cpu=max(8, pods), memory=f"{max(32, pods)}Gi")
    cluster.install_crd(field_manager=FIELD_MANAGER)
    cluster.create_restricted_namespaces(namespaces, field_manager=FIELD_MANAGER)


async def settle(seconds: float) -> None:
    """Let a just-started control plane finish its own start-up work (informer lists, CRD storage)."""
    say(f"letting the control plane settle for {seconds:.0f}s")
    await asyncio.sleep(seconds)
