"""The floor: the same N backends and their children, applied by a plain client with no operator.

The children are the operator's own builders' output for a converged backend, built before
the clock starts; only the owner's uid is filled in once the backend exists. What they are is
asked of the operator in ONE place, :func:`children_from_operator_builders`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

from bench.reconcile.client import BenchClient
from bench.reconcile.tracking import (
    Predicate,
    ReadyTracker,
    background,
    converge,
    deployment_ready,
    job_complete,
    statefulset_ready,
)
from bench.reconcile.workload import prepare, settle
from devkit.cluster import LocalCluster
from devkit.measure import CpuClock, apiserver_requests, by_verb, say, write_request_count
from devkit.promtext import delta
from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import Manifest, api
from sbo_operator.builders.labels import MANAGED_BY, MANAGED_BY_LABEL
from sbo_operator.builders.names import child_names
from sbo_operator.builders.secrets import MIN_RANDOM_BYTES
from sbo_operator.desired import desired_state
from sbo_operator.drift import with_applied_hash
from sbo_operator.settings import OperatorSettings
from sbo_operator.snapshot import Snapshot

UID_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"
# What the floor waits for: each workload kind, its API version, and when it counts as ready.
WORKLOADS: dict[str, tuple[str, Predicate]] = {
    "Deployment": ("apps/v1", deployment_ready),
    "StatefulSet": ("apps/v1", statefulset_ready),
    "Job": ("batch/v1", job_complete),
}


def children_from_operator_builders(body: Manifest) -> tuple[list[Manifest], list[Manifest], list[Manifest]]:
    """(secrets, foundation, workloads) of a backend once it has converged, from the operator's builders.

    The one place the bench asks the operator what a backend's children are: `desired_state`,
    which iterates the operator's component registry (`sbo_operator.components.COMPONENTS`),
    and the generated Secrets it names. So a component added to the registry is in the floor too.

    The components hold the read replicas and the migrations Job until the primary is ready,
    and the api Deployment until the Job has succeeded; the snapshot given here says all that
    has happened, so the lists are the complete final set. Not yet stamped with the
    applied-hash annotation, which covers the owner's uid: see `FloorBackend.stamped`.
    """
    backend = ScalableBackend.from_body(body)
    names = child_names(backend)
    children: dict[tuple[str, str], Manifest] = {}
    job_name = api.migrations_job_name(backend)
    if job_name is not None:
        children[("Job", job_name)] = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job_name},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]},
        }
    if backend.spec.postgres.enabled:
        children[("StatefulSet", names.postgres_primary)] = {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": names.postgres_primary, "generation": 1},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "readyReplicas": 1},
        }
    desired = desired_state(backend, Snapshot(backend=body, children=children))
    if desired.waiting or desired.obsolete or desired.problems:
        raise RuntimeError(f"the converged snapshot is not converged: {desired}")
    secrets = [
        manifest
        for secret in desired.secrets_to_generate
        if (manifest := secret.build(backend, existing_data=None, random_bytes=os.urandom(MIN_RANDOM_BYTES)))
        is not None
    ]
    return secrets, desired.foundation, desired.workloads


@dataclasses.dataclass(frozen=True)
class FloorBackend:
    """One backend's children, built before the floor's clock starts; only the owner's uid is missing."""

    manifest: Manifest
    secrets: list[Manifest]
    foundation: list[Manifest]
    workloads: list[Manifest]

    @classmethod
    def build(cls, manifest: Manifest) -> FloorBackend:
        body = copy.deepcopy(manifest)
        body["metadata"]["uid"] = UID_PLACEHOLDER
        return cls(manifest, *children_from_operator_builders(body))

    @property
    def kinds(self) -> set[tuple[str, str]]:
        return {(m["apiVersion"], m["kind"]) for m in (*self.secrets, *self.foundation, *self.workloads)}

    def stamped(self, uid: str) -> tuple[list[Manifest], list[Manifest], list[Manifest]]:
        """The children owned by the real uid; all but Secrets carry the applied hash, as the operator's."""
        for child in (*self.secrets, *self.foundation, *self.workloads):
            for reference in child["metadata"].get("ownerReferences") or ():
                if reference["uid"] == UID_PLACEHOLDER:
                    reference["uid"] = uid
        return (
            self.secrets,
            [with_applied_hash(m) for m in self.foundation],
            [with_applied_hash(m) for m in self.workloads],
        )


async def apply_floor_backend(writer: BenchClient, prebuilt: FloorBackend) -> list[tuple[str, str]]:
    """Create one backend, then its Secrets and foundation, then its workloads; returns the workloads."""
    uid = await writer.create_backend(prebuilt.manifest)
    secrets, foundation, workloads = prebuilt.stamped(uid)
    await asyncio.gather(*(writer.create(s) for s in secrets), *(writer.apply(m) for m in foundation))
    await asyncio.gather(*(writer.apply(m) for m in workloads))
    namespace = prebuilt.manifest["metadata"]["namespace"]
    return [(m["kind"], f"{namespace}/{m['metadata']['name']}") for m in workloads]


async def floor_phase(
    cluster: LocalCluster, args: argparse.Namespace, manifests: Sequence[Manifest], namespaces: Sequence[str]
) -> dict[str, Any]:
    n = len(manifests)
    say(f"floor phase: a fresh control plane, no operator, {n} backends applied by a plain client")
    prepare(cluster, namespaces, pods=n * args.pods_per_backend)
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    # Built before the clock starts: the floor is the cluster's work, not the client's.
    prebuilt = [FloorBackend.build(m) for m in manifests]
    async with contextlib.AsyncExitStack() as stack:
        dynamic = await stack.enter_async_context(cluster.dynamic_client(connections=args.api_threads))
        watching = await stack.enter_async_context(cluster.dynamic_client())
        writer = BenchClient(dynamic, budget=args.api_threads, field_manager=OperatorSettings().field_manager)
        await writer.discover(set().union(*(b.kinds for b in prebuilt)))
        trackers = {
            kind: ReadyTracker(watching, api_version, kind, ready, label_selector=selector)
            for kind, (api_version, ready) in WORKLOADS.items()
        }
        await stack.enter_async_context(background(*(t.run() for t in trackers.values())))
        await asyncio.wait_for(asyncio.gather(*(t.synced.wait() for t in trackers.values())), timeout=60)
        await settle(args.settle_seconds)
        api_before = await apiserver_requests(dynamic)
        cpu = CpuClock({"bench": os.getpid(), **cluster.component_pids()})

        started = time.monotonic()
        deadline = started + args.timeout
        applied = await asyncio.gather(*(apply_floor_backend(writer, b) for b in prebuilt))
        applied_seconds = time.monotonic() - started
        expected = [workload for workloads in applied for workload in workloads]
        say(f"floor: applied every child of {n} backends in {applied_seconds:.1f}s; waiting for ready")

        def ready_count() -> int:
            return sum(key in trackers[kind].ready for kind, key in expected)

        def backends_ready() -> int:
            """Backends whose every workload is ready: the floor's counterpart of Ready."""
            return sum(all(key in trackers[kind].ready for kind, key in workloads) for workloads in applied)

        timeline: list[list[int]] = []

        async def report(elapsed: float) -> None:
            ready, backends = ready_count(), backends_ready()
            say(f"floor: {ready}/{len(expected)} workloads, {backends}/{n} backends ready, {elapsed:.0f}s")
            timeline.append([round(elapsed), ready, backends])

        converged = await converge(
            lambda: ready_count() == len(expected),
            report,
            started=started,
            deadline=deadline,
            what="every floor workload to be ready",
        )
        floor_seconds = time.monotonic() - started
        cpu_used = cpu.used()
        api_after = await apiserver_requests(dynamic)
        say(
            f"floor: {ready_count()}/{len(expected)} workloads ready in {floor_seconds:.1f}s"
            + ("" if converged else f" (timed out after {args.timeout:.0f}s)")
        )
    requests = delta(api_before, api_after)
    return {
        "converged": converged,
        "floor_seconds": round(floor_seconds, 1),
        "floor_apply_seconds": round(applied_seconds, 1),
        "floor_requests_by_verb": by_verb(requests),
        "floor_write_requests": write_request_count(requests),
        "floor_cpu_seconds": cpu_used,
        "floor_workloads": len(expected),
        "floor_workloads_ready": ready_count(),
        "floor_backends_ready": backends_ready(),
        "floor_timeline": {
            "columns": ["s", "workloads_ready", "backends_ready"],
            "every_30s": timeline[2::3],
        },
    }
