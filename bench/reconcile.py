"""`make bench-reconcile N=100|1000`: N ScalableBackends to Ready, against a plain-client floor.

Two phases, each on a freshly started control plane of the bench's own
(hack/cluster.sh with port base 18440 and state in .local/bench-reconcile):

* **operator**: `sbo-operator run` watches the cluster; the bench creates N
  ScalableBackends (examples/basic.yaml, spread over 10 restricted
  namespaces) and times until every one is Ready with observedGeneration ==
  generation. It then watches for `--steady-seconds` and counts writes.
* **floor**: no operator. A plain concurrent client, with the operator's
  connection budget, creates the same N ScalableBackends and applies the
  exact child objects the operator's own builders produce (the complete set
  a converged backend has), then waits until every Deployment, StatefulSet
  and Job among them is ready. That is the least work the cluster has to do
  for the same result.

One JSON line goes to stdout (and, unless --no-record, into the Reconcile
section of docs/benchmarks.md); progress goes to stderr. See that section
for how to read the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml

from bench._common import (
    REPO,
    WRITE_VERBS,
    BenchCluster,
    Labels,
    apiserver_requests,
    cpu_seconds,
    delta,
    machine,
    machine_cpu_seconds,
    record_in_section,
    resource_of,
    revision,
    samples,
    say,
    status_kib,
    total_by,
)
from sbo_operator.api.v1alpha1 import GROUP, PLURAL, VERSION, ScalableBackend
from sbo_operator.builders import api
from sbo_operator.builders.names import child_names
from sbo_operator.desired import Manifest, desired_state
from sbo_operator.drift import with_applied_hash
from sbo_operator.reconcile import SECRET_BUILDERS, SECRET_RANDOM_BYTES
from sbo_operator.runtime import CHILD_RESOURCES, MANAGED_BY, MANAGED_BY_LABEL
from sbo_operator.settings import OperatorSettings
from sbo_operator.snapshot import Snapshot
from sbo_operator.status import deployment_progress, job_state, statefulset_progress
from tests.support.operator_process import OperatorProcess

EXAMPLE = REPO / "examples" / "basic.yaml"
DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## Reconcile (make bench-reconcile)"
BACKENDS_PATH = f"/apis/{GROUP}/{VERSION}/{PLURAL}"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
TARGET_RATIO = 2.0
TARGET_RSS_MIB = 300
PROGRESS_EVERY = 10.0

Predicate = Callable[[Mapping[str, Any]], bool]


# ---- what is created -------------------------------------------------------------------------------


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


def converged_children(body: Manifest) -> tuple[list[Manifest], list[Manifest], list[Manifest]]:
    """(secrets, foundation, workloads) of a backend once it has converged, from the operator's builders.

    `desired_state` holds the read replicas and the migrations Job until the
    primary is ready, and the api Deployment until the Job has succeeded; the
    snapshot given here says all that has happened, so the lists are the
    complete final set. Not yet stamped with the applied-hash annotation,
    which covers the owner's uid: see `FloorBackend.stamped`.
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
    worker_replicas = backend.spec.worker.replicas if backend.spec.worker else None
    desired = desired_state(
        backend,
        Snapshot(backend=body, children=children),
        api_replicas=backend.spec.api.replicas,
        worker_replicas=worker_replicas,
    )
    if desired.waiting or desired.obsolete or desired.problems:
        raise RuntimeError(f"the converged snapshot is not converged: {desired}")
    secrets = [
        manifest
        for secret in desired.secrets_to_generate
        if (
            manifest := SECRET_BUILDERS[secret](
                backend, existing_data=None, random_bytes=os.urandom(SECRET_RANDOM_BYTES)
            )
        )
        is not None
    ]
    return secrets, desired.foundation, desired.workloads


UID_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


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
        return cls(manifest, *converged_children(body))

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


def pods_of(workloads: Sequence[Manifest]) -> int:
    pods = 0
    for manifest in workloads:
        if manifest["kind"] == "Job":
            pods += int(manifest["spec"].get("completions") or 1)
        else:
            pods += int(manifest["spec"].get("replicas", 1))
    return pods


# ---- readiness -------------------------------------------------------------------------------------


def backend_ready(obj: Mapping[str, Any]) -> bool:
    """`kubectl wait --for=condition=Ready`, and the status is about the current generation."""
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())


def deployment_ready(obj: Mapping[str, Any]) -> bool:
    return deployment_progress(dict(obj), name=obj["metadata"]["name"]).ready


def statefulset_ready(obj: Mapping[str, Any]) -> bool:
    return statefulset_progress(dict(obj), name=obj["metadata"]["name"]).ready


def job_complete(obj: Mapping[str, Any]) -> bool:
    return job_state(dict(obj)) == "Complete"


class ReadyTracker:
    """Which objects of one resource are ready, kept current by a LIST and then a WATCH.

    This is how `kubectl wait` follows objects, and it costs the API server one
    long request instead of a LIST of every object each second.
    """

    def __init__(
        self, client: aiohttp.ClientSession, path: str, ready: Predicate, *, label_selector: str | None = None
    ) -> None:
        self.client = client
        self.path = path
        self.is_ready = ready
        self.label_selector = label_selector
        self.ready: set[str] = set()
        self.present: set[str] = set()
        self.synced = asyncio.Event()

    def _params(self) -> dict[str, str]:
        return {"labelSelector": self.label_selector} if self.label_selector else {}

    def _see(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        key = key_of(obj)
        if deleted:
            self.present.discard(key)
            self.ready.discard(key)
            return
        self.present.add(key)
        if self.is_ready(obj):
            self.ready.add(key)
        else:
            self.ready.discard(key)

    async def _list(self) -> str:
        async with self.client.get(self.path, params=self._params()) as response:
            response.raise_for_status()
            listed = await response.json()
        self.ready.clear()
        self.present.clear()
        for item in listed.get("items") or ():
            self._see(item)
        self.synced.set()
        version: str = listed["metadata"]["resourceVersion"]
        return version

    async def _watch(self, version: str) -> str | None:
        """Follow events from `version`; returns where to resume, or None to list again."""
        params = {
            **self._params(),
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "60",
        }
        async with self.client.get(self.path, params=params) as response:
            if response.status != 200:
                await response.read()
                return None
            pending = b""
            # Events are newline-delimited JSON; split by hand, as one event may exceed
            # aiohttp's line-length limit.
            async for chunk in response.content.iter_any():
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":  # typically 410 Gone: the version is too old
                        return None
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._see(obj, deleted=event["type"] == "DELETED")
        return version

    async def run(self) -> None:
        """Forever; the phase cancels it."""
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._list()
                version = await self._watch(version)
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                say(f"watch of {self.path}: {error!r}; listing again")
                version = None
                await asyncio.sleep(1)


@contextlib.asynccontextmanager
async def background(*coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run coroutines as tasks for the duration of the block; cancel them on the way out."""
    tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def wait_until(
    done: Callable[[], bool],
    report: Callable[[float], Awaitable[None]],
    *,
    started: float,
    deadline: float,
    poll: float = 0.1,
) -> bool:
    """Poll a cheap in-memory check; report progress every 10 s. False on timeout."""
    next_report = time.monotonic() + PROGRESS_EVERY
    while not done():
        now = time.monotonic()
        if now >= deadline:
            return False
        if now >= next_report:
            await report(now - started)
            next_report += PROGRESS_EVERY
        await asyncio.sleep(poll)
    return True


# ---- requests --------------------------------------------------------------------------------------


def resource_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    plural = (
        PLURAL if kind == "ScalableBackend" else next(r.plural for r in CHILD_RESOURCES if r.kind == kind)
    )
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


async def send(
    client: aiohttp.ClientSession,
    budget: asyncio.Semaphore,
    method: str,
    path: str,
    *,
    body: Manifest,
    params: Mapping[str, str] | None = None,
    content_type: str = "application/json",
    attempts: int = 5,
) -> Manifest:
    """One request within the concurrency budget; throttling and 5xx are retried with backoff."""
    content = json.dumps(body).encode()
    headers = {"Content-Type": content_type}
    problem = ""
    for attempt in range(attempts):
        async with budget:
            try:
                async with client.request(
                    method, path, params=params, data=content, headers=headers
                ) as response:
                    text = await response.text()
            except (aiohttp.ClientError, TimeoutError) as error:
                problem = repr(error)
            else:
                if response.status < 300:
                    answer: Manifest = json.loads(text)
                    return answer
                problem = f"{response.status} {text[:300]}"
                if response.status not in RETRIED_STATUSES:
                    break
        await asyncio.sleep(0.5 * 2**attempt)
    raise RuntimeError(f"{method} {path}: {problem}")


async def create_backend(
    client: aiohttp.ClientSession, budget: asyncio.Semaphore, manifest: Manifest
) -> Manifest:
    path = resource_path(f"{GROUP}/{VERSION}", "ScalableBackend", manifest["metadata"]["namespace"])
    return await send(client, budget, "POST", path, body=manifest)


# ---- measurements ----------------------------------------------------------------------------------


class CpuClock:
    """CPU seconds used by each process of interest between two readings.

    Also what the rest of the machine used meanwhile ("others"): on a shared
    development machine, other work competes for the same cores, and the
    figures are only comparable when that is small.
    """

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.start = self._read()
        self.machine_start = machine_cpu_seconds()

    def _read(self) -> dict[str, float]:
        readings = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return {name: value for name, value in readings.items() if value is not None}

    def used(self) -> dict[str, float]:
        now = self._read()
        used = {name: round(now[name] - self.start[name], 1) for name in now if name in self.start}
        busy, idle = (
            after - before for after, before in zip(machine_cpu_seconds(), self.machine_start, strict=True)
        )
        used["others"] = round(max(0.0, busy - sum(used.values())), 1)
        used["idle"] = round(idle, 1)
        return used


def operator_metrics_text(operator: OperatorProcess) -> str:
    response = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=10, trust_env=False)
    response.raise_for_status()
    return response.text


async def operator_counters(operator: OperatorProcess) -> dict[str, dict[Labels, float]]:
    text = await asyncio.to_thread(operator_metrics_text, operator)
    return {
        name: samples(text, name)
        for name in (
            "sbo_api_writes_total",
            "sbo_reconciles_total",
            "sbo_reconcile_duration_seconds_sum",
            "sbo_reconcile_duration_seconds_count",
            "sbo_reconcile_duration_seconds_bucket",
        )
    }


async def operator_health(operator: OperatorProcess) -> tuple[int | None, float]:
    """The queue depth Kopf's /healthz reports, and how long the answer took (event-loop lag)."""
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            response = await client.get(f"http://127.0.0.1:{operator.health_port}/healthz")
        depth = response.json().get("queue_depth")
    except (httpx.HTTPError, ValueError):
        depth = None
    return (int(depth) if isinstance(depth, int | float) else None), (time.monotonic() - started) * 1000


def histogram_quantiles(
    before: Mapping[Labels, float], after: Mapping[Labels, float], quantiles: Sequence[float]
) -> dict[str, float | None]:
    """Quantiles of a Prometheus histogram's increase, interpolated within buckets like histogram_quantile."""
    increase = sorted(
        (float(dict(labels)["le"]), value - before.get(labels, 0.0)) for labels, value in after.items()
    )
    total = increase[-1][1] if increase else 0.0
    found: dict[str, float | None] = {}
    for quantile in quantiles:
        name = f"p{round(quantile * 100)}"
        if total <= 0:
            found[name] = None
            continue
        rank = quantile * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in increase:
            if count >= rank:
                if bound == float("inf"):
                    found[name] = lower_bound  # beyond the last finite bucket: report its bound
                else:
                    share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
                    found[name] = round(lower_bound + (bound - lower_bound) * share, 3)
                break
            lower_bound, lower_count = bound, count
    return found


def counted(series: Mapping[Labels, float]) -> int:
    return round(sum(series.values()))


def by_verb(series: Mapping[Labels, float]) -> dict[str, int]:
    return total_by(series, lambda labels: labels.get("verb"))


def writes_by_resource(series: Mapping[Labels, float]) -> dict[str, int]:
    return total_by(
        series,
        lambda labels: (
            f"{labels['verb']} {resource_of(labels)}" if labels.get("verb") in WRITE_VERBS else None
        ),
    )


def write_request_count(series: Mapping[Labels, float]) -> int:
    return sum(writes_by_resource(series).values())


def prepare(cluster: BenchCluster, namespaces: Sequence[str], pods: int) -> None:
    cluster.fresh()
    # Room for every pod, with CPU and memory requests that always fit.
    cluster.enlarge_nodes(pods=max(110, pods), cpu=max(8, pods), memory=f"{max(32, pods)}Gi")
    cluster.install_crd()
    cluster.create_restricted_namespaces(namespaces)


async def settle(seconds: float) -> None:
    """Let a just-started control plane finish its own start-up work (informer lists, CRD storage)."""
    say(f"letting the control plane settle for {seconds:.0f}s")
    await asyncio.sleep(seconds)


# ---- phase 1: the operator -------------------------------------------------------------------------


async def operator_phase(
    cluster: BenchCluster, args: argparse.Namespace, manifests: Sequence[Manifest], namespaces: Sequence[str]
) -> dict[str, Any]:
    n = len(manifests)
    say(f"operator phase: a fresh control plane for {n} ScalableBackends in {len(namespaces)} namespaces")
    prepare(cluster, namespaces, pods=n * args.pods_per_backend)
    log_path = cluster.local_dir / "logs" / "operator.log"
    log_path.unlink(missing_ok=True)
    operator = OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        log_path=log_path,
        env={
            "SBO_WORKERS": str(args.workers),
            "SBO_API_THREADS": str(args.api_threads),
            "SBO_RESYNC_SECONDS": str(args.resync_seconds),
            "SBO_NAMESPACES": "",
            "SBO_LOG_LEVEL": "INFO",
        },
    )
    await asyncio.to_thread(operator.start)
    assert operator.process is not None
    pid = operator.process.pid
    say(f"operator running (pid {pid}, log {log_path.relative_to(REPO)})")
    try:
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(cluster.client(connections=args.api_threads))
            watch_client = await stack.enter_async_context(cluster.client(connections=None, read_timeout=120))
            tracker = ReadyTracker(watch_client, BACKENDS_PATH, backend_ready)
            await stack.enter_async_context(background(tracker.run()))
            await asyncio.wait_for(tracker.synced.wait(), timeout=60)
            keys = {key_of(m) for m in manifests}
            budget = asyncio.Semaphore(args.api_threads)
            await settle(args.settle_seconds)
            api_before = await apiserver_requests(client)
            operator_before = await operator_counters(operator)
            cpu = CpuClock({"operator": pid, "bench": os.getpid(), **cluster.component_pids()})

            started, started_wall = time.monotonic(), datetime.now(UTC)
            deadline = started + args.timeout
            await asyncio.gather(*(create_backend(client, budget, m) for m in manifests))
            created_seconds = time.monotonic() - started
            say(f"created {n} ScalableBackends in {created_seconds:.1f}s; waiting for Ready")

            timeline: list[list[int | None]] = []
            last_cpu = (cpu_seconds(pid) or 0.0, time.monotonic())

            async def report(elapsed: float) -> None:
                nonlocal last_cpu
                ready = len(tracker.ready & keys)
                rss_mib = (status_kib(pid, "VmRSS") or 0) / 1024
                cpu_now = (cpu_seconds(pid) or 0.0, time.monotonic())
                cpu_percent = 100 * (cpu_now[0] - last_cpu[0]) / max(cpu_now[1] - last_cpu[1], 1e-3)
                last_cpu = cpu_now
                depth, health_ms = await operator_health(operator)
                say(
                    f"operator: {ready}/{n} Ready after {elapsed:.0f}s; queue {depth}, "
                    f"/healthz {health_ms:.0f} ms, CPU {cpu_percent:.0f}%, RSS {rss_mib:.0f} MiB"
                )
                timeline.append(
                    [round(elapsed), ready, depth, round(health_ms), round(cpu_percent), round(rss_mib)]
                )

            converged = await wait_until(
                lambda: keys <= tracker.ready, report, started=started, deadline=deadline
            )
            seconds_to_ready, ready_wall = time.monotonic() - started, datetime.now(UTC)
            ready_count = len(tracker.ready & keys)
            cpu_used = cpu.used()
            api_after = await apiserver_requests(client)
            operator_after = await operator_counters(operator)
            say(
                f"operator: {ready_count}/{n} Ready in {seconds_to_ready:.1f}s"
                + ("" if converged else f" (timed out after {args.timeout:.0f}s)")
            )

            steady: dict[str, Any] = {}
            if converged and args.steady_seconds > 0:
                steady = await steady_window(
                    client, operator, tracker, keys, seconds=args.steady_seconds, api_before=api_after
                )
            peak_rss_kib = status_kib(pid, "VmHWM") or 0
            # Kopf posts the operator's Events itself, so sbo_api_writes_total does not count them.
            events = events_between(
                await list_events(client), whole_second(started_wall), ready_wall, detail=False
            )
    finally:
        await asyncio.to_thread(operator.stop)

    requests = delta(api_before, api_after)
    writes = delta(operator_before["sbo_api_writes_total"], operator_after["sbo_api_writes_total"])
    reconciles = counted(
        delta(operator_before["sbo_reconciles_total"], operator_after["sbo_reconciles_total"])
    )
    reconcile_seconds = sum(
        delta(
            operator_before["sbo_reconcile_duration_seconds_sum"],
            operator_after["sbo_reconcile_duration_seconds_sum"],
        ).values()
    )
    return {
        "converged": converged,
        "seconds_to_ready": round(seconds_to_ready, 1),
        "create_seconds": round(created_seconds, 1),
        "operator_reconcile_seconds": histogram_quantiles(
            operator_before["sbo_reconcile_duration_seconds_bucket"],
            operator_after["sbo_reconcile_duration_seconds_bucket"],
            (0.5, 0.9, 0.99),
        ),
        "timeline": {
            "columns": ["s", "ready", "queue_depth", "healthz_ms", "operator_cpu_percent", "rss_mib"],
            "every_30s": timeline[2::3],
        },
        "backends_ready": ready_count,
        "events_by_component": events,
        "requests_by_verb": by_verb(requests),
        "write_requests": write_request_count(requests),
        "operator_writes": total_by(writes, lambda labels: f"{labels['verb']} {labels['kind']}"),
        "operator_write_requests": counted(writes),
        "operator_reconciles": reconciles,
        "operator_reconcile_seconds_mean": round(reconcile_seconds / reconciles, 3) if reconciles else None,
        "operator_peak_rss_mib": round(peak_rss_kib / 1024, 1),
        "cpu_seconds": cpu_used,
        **steady,
    }


Event = tuple[datetime, str, str]  # created, component, "reason kind"


async def list_events(client: aiohttp.ClientSession) -> list[Event]:
    """Every core/v1 Event in the cluster, paginated: when, who posted it, and what about."""
    events: list[Event] = []
    params = {"limit": "2000"}
    while True:
        async with client.get("/api/v1/events", params=params) as response:
            response.raise_for_status()
            page = await response.json()
        for item in page.get("items") or ():
            created = datetime.fromisoformat(item["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
            component = item.get("reportingComponent") or (item.get("source") or {}).get("component") or "?"
            kind = (item.get("involvedObject") or {}).get("kind", "?")
            events.append((created, component, f"{item.get('reason', '?')} {kind}"))
        token = page["metadata"].get("continue")
        if not token:
            return events
        params = {"limit": "2000", "continue": token}


def events_between(
    events: Sequence[Event], start: datetime, end: datetime | None, *, detail: bool
) -> dict[str, int]:
    """Events created in [start, end), by component (and, with detail, by reason and kind)."""
    counts: Counter[str] = Counter()
    for created, component, what in events:
        if created >= start and (end is None or created < end):
            counts[f"{component}: {what}" if detail else component] += 1
    return dict(counts.most_common())


def whole_second(moment: datetime) -> datetime:
    """Timestamps in the API have whole seconds; count an event of the same second as inside."""
    return moment.replace(microsecond=0)


async def steady_window(
    client: aiohttp.ClientSession,
    operator: OperatorProcess,
    tracker: ReadyTracker,
    keys: set[str],
    *,
    seconds: float,
    api_before: Mapping[Labels, float],
) -> dict[str, Any]:
    """After convergence: what the operator (and, separately, everyone else) writes while nothing changes."""
    say(f"steady state: watching writes for {seconds:.0f}s")
    steady_start = datetime.now(UTC)
    operator_before = await operator_counters(operator)
    end = time.monotonic() + seconds
    lowest_ready = len(keys)
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(1.0, left))
        lowest_ready = min(lowest_ready, len(tracker.ready & keys))
    operator_after = await operator_counters(operator)
    api_after = await apiserver_requests(client)
    operator_writes = delta(operator_before["sbo_api_writes_total"], operator_after["sbo_api_writes_total"])
    reconciles = delta(operator_before["sbo_reconciles_total"], operator_after["sbo_reconciles_total"])
    cluster_writes = writes_by_resource(delta(api_before, api_after))
    events = events_between(await list_events(client), whole_second(steady_start), None, detail=True)
    say(f"steady state: operator writes {counted(operator_writes)}, cluster-wide writes {cluster_writes}")
    say(f"steady state: Events created meanwhile, by who posted them: {events}")
    return {
        "steady_state_writes": counted(operator_writes),
        "steady_state_operator_reconciles": counted(reconciles),
        "steady_state_apiserver_writes": cluster_writes,
        "steady_state_events": events,
        "steady_state_min_ready": lowest_ready,
    }


# ---- phase 2: the floor ----------------------------------------------------------------------------


async def floor_backend(
    client: aiohttp.ClientSession, budget: asyncio.Semaphore, prebuilt: FloorBackend, field_manager: str
) -> list[tuple[str, str]]:
    """Create one backend, then its Secrets and foundation, then its workloads; returns the workloads."""
    body = await create_backend(client, budget, prebuilt.manifest)
    secrets, foundation, workloads = prebuilt.stamped(body["metadata"]["uid"])
    namespace = prebuilt.manifest["metadata"]["namespace"]
    params = {"fieldManager": field_manager}

    def apply(child: Manifest) -> Awaitable[Manifest]:
        path = resource_path(child["apiVersion"], child["kind"], namespace, child["metadata"]["name"])
        return send(client, budget, "PATCH", path, body=child, params=params, content_type=APPLY_CONTENT_TYPE)

    def create(child: Manifest) -> Awaitable[Manifest]:
        path = resource_path(child["apiVersion"], child["kind"], namespace)
        return send(client, budget, "POST", path, body=child, params=params)

    await asyncio.gather(*(create(s) for s in secrets), *(apply(m) for m in foundation))
    await asyncio.gather(*(apply(m) for m in workloads))
    return [(m["kind"], f"{namespace}/{m['metadata']['name']}") for m in workloads]


async def floor_phase(
    cluster: BenchCluster, args: argparse.Namespace, manifests: Sequence[Manifest], namespaces: Sequence[str]
) -> dict[str, Any]:
    n = len(manifests)
    say(f"floor phase: a fresh control plane, no operator, {n} backends applied by a plain client")
    prepare(cluster, namespaces, pods=n * args.pods_per_backend)
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    field_manager = OperatorSettings().field_manager
    # Built before the clock starts: the floor is the cluster's work, not the client's.
    prebuilt = [FloorBackend.build(m) for m in manifests]
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(cluster.client(connections=args.api_threads))
        watch_client = await stack.enter_async_context(cluster.client(connections=None, read_timeout=120))
        trackers = {
            "Deployment": ReadyTracker(
                watch_client, "/apis/apps/v1/deployments", deployment_ready, label_selector=selector
            ),
            "StatefulSet": ReadyTracker(
                watch_client, "/apis/apps/v1/statefulsets", statefulset_ready, label_selector=selector
            ),
            "Job": ReadyTracker(watch_client, "/apis/batch/v1/jobs", job_complete, label_selector=selector),
        }
        await stack.enter_async_context(background(*(t.run() for t in trackers.values())))
        await asyncio.wait_for(asyncio.gather(*(t.synced.wait() for t in trackers.values())), timeout=60)
        budget = asyncio.Semaphore(args.api_threads)
        await settle(args.settle_seconds)
        api_before = await apiserver_requests(client)
        cpu = CpuClock({"bench": os.getpid(), **cluster.component_pids()})

        started = time.monotonic()
        deadline = started + args.timeout
        applied = await asyncio.gather(*(floor_backend(client, budget, b, field_manager) for b in prebuilt))
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

        converged = await wait_until(
            lambda: ready_count() == len(expected), report, started=started, deadline=deadline
        )
        floor_seconds = time.monotonic() - started
        cpu_used = cpu.used()
        api_after = await apiserver_requests(client)
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


# ---- the JSON line and the docs ---------------------------------------------------------------------


def summarise(
    args: argparse.Namespace,
    operator: Mapping[str, Any] | None,
    floor: Mapping[str, Any] | None,
    children_per_backend: int,
    namespaces: Sequence[str],
) -> dict[str, Any]:
    operator = operator or {}
    seconds = operator["seconds_to_ready"] if operator.get("converged") else None
    floor_seconds = floor["floor_seconds"] if floor and floor["converged"] else None
    ratio = round(seconds / floor_seconds, 2) if seconds and floor_seconds else None
    steady_writes = operator.get("steady_state_writes")
    rss = operator.get("operator_peak_rss_mib")
    result: dict[str, Any] = {
        "n": args.n,
        "seconds_to_ready": seconds,
        "floor_seconds": floor_seconds,
        "ratio_to_floor": ratio,
        "steady_state_writes": steady_writes,
        "operator_peak_rss_mib": rss,
        "requests_by_verb": operator.get("requests_by_verb"),
        "requests_scope": "cluster-wide: apiserver_request_total from the first create until all Ready",
        # null: not measured (a phase did not converge, so there is no ratio or steady state)
        "targets_met": {
            "ratio_to_floor<=2": None if ratio is None else ratio <= TARGET_RATIO,
            "steady_state_writes==0": None if steady_writes is None else steady_writes == 0,
            "operator_peak_rss_mib<=300": None if rss is None else rss <= TARGET_RSS_MIB,
        },
        **{
            k: v
            for k, v in operator.items()
            if k not in ("converged", "seconds_to_ready", "requests_by_verb")
        },
        "steady_seconds": args.steady_seconds,
    }
    if operator and not operator["converged"]:
        result["timed_out_after"] = args.timeout
    if floor is not None:
        result.update({k: v for k, v in floor.items() if k not in ("converged", "floor_seconds")})
        if not floor["converged"]:
            result["floor_timed_out_after"] = args.timeout
    result.update(
        {
            "spec": f"examples/basic.yaml, readReplicas={args.read_replicas_used}",
            "children_per_backend": children_per_backend,
            "pods_per_backend": args.pods_per_backend,
            "namespaces": len(namespaces),
            "settings": {
                "SBO_WORKERS": args.workers,
                "SBO_API_THREADS": args.api_threads,
                "SBO_RESYNC_SECONDS": args.resync_seconds,
            },
            "operator_revision": args.operator_revision,
            "machine": machine(),
            "date": datetime.now(UTC).date().isoformat(),
        }
    )
    return result


def record(path: Path, result: Mapping[str, Any], command: str) -> None:
    """Put the JSON line into the Reconcile section of the docs, replacing the previous one for this N."""
    begin, end = (
        f"<!-- bench-reconcile n={result['n']} begin -->",
        f"<!-- bench-reconcile n={result['n']} end -->",
    )
    box = result["machine"]
    entry = (
        f"{begin}\nN={result['n']}: `{command}`, {result['date']}, "
        f"{box['cpus']} cores, {box['memory_gib']} GiB:\n\n```json\n{json.dumps(result)}\n```\n{end}"
    )
    record_in_section(path, section=SECTION, begin=begin, end=end, entry=entry)
    say(f"recorded in {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = OperatorSettings()
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="ScalableBackends to create (default 100)")
    parser.add_argument("--namespaces", type=int, default=10, help="spread over this many namespaces")
    parser.add_argument("--read-replicas", type=int, default=None, help="override the example's readReplicas")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds each phase may take to converge (default: 900, or 2.5 s per backend above 360)",
    )
    parser.add_argument(
        "--settle-seconds", type=float, default=20, help="idle time after start-up, before the clock starts"
    )
    parser.add_argument("--steady-seconds", type=float, default=60, help="observation after all Ready")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="SBO_WORKERS of the operator")
    parser.add_argument(
        "--api-threads",
        type=int,
        default=defaults.api_threads,
        help="SBO_API_THREADS of the operator; also the floor client's concurrency",
    )
    parser.add_argument("--resync-seconds", type=float, default=defaults.resync_seconds)
    parser.add_argument(
        "--only", choices=("operator", "floor"), default=None, help="run one phase (for investigating)"
    )
    parser.add_argument("--port-base", type=int, default=18440, help="the bench control plane's ports")
    parser.add_argument("--local-dir", type=Path, default=REPO / ".local" / "bench-reconcile")
    parser.add_argument("--keep-cluster", action="store_true", help="leave the last control plane up")
    parser.add_argument("--no-record", action="store_true", help=f"do not write {DOCS.relative_to(REPO)}")
    parser.add_argument("--docs", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    if args.n < 1 or args.namespaces < 1:
        parser.error("--n and --namespaces must be at least 1")
    if args.timeout is None:
        # N=100 converges in about 100 s on 2 cores; N=1000 needs far more than 900 s.
        args.timeout = max(900.0, 2.5 * args.n)
    return args


def command_line(argv: Sequence[str]) -> str:
    if list(argv[:1]) == ["--n"] and len(argv) == 2:
        return f"make bench-reconcile N={argv[1]}"
    return "python -m bench.reconcile " + " ".join(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    namespaces = namespaces_for(args.n, args.namespaces)
    manifests = backend_manifests(args.n, namespaces, args.read_replicas)
    # The children as the floor will apply them (and as the operator converges to).
    sample = FloorBackend.build(manifests[0])
    args.pods_per_backend = pods_of(sample.workloads)
    args.read_replicas_used = sample.manifest["spec"]["postgres"].get("readReplicas")
    children = len(sample.secrets) + len(sample.foundation) + len(sample.workloads)
    say(f"{args.n} backends: {children} children and {args.pods_per_backend} pods each")

    args.operator_revision = revision("operator/")
    cluster = BenchCluster(local_dir=args.local_dir.resolve(), port_base=args.port_base)
    try:
        operator = None
        if args.only in (None, "operator"):
            operator = await operator_phase(cluster, args, manifests, namespaces)
        floor = None
        if args.only in (None, "floor"):
            floor = await floor_phase(cluster, args, manifests, namespaces)
    finally:
        if not args.keep_cluster:
            with contextlib.suppress(Exception):
                cluster.down()
    return summarise(args, operator, floor, children, namespaces)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    result = asyncio.run(run(args))
    line = json.dumps(result)
    print(line, flush=True)
    if not args.no_record:
        record(args.docs, result, command_line(argv))


if __name__ == "__main__":
    main()
