"""The bench's two phases and its command line: see the package docstring (`bench.reconcile`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.reconcile.client import BenchClient
from bench.reconcile.floor import FloorBackend, floor_phase
from bench.reconcile.recording import (
    command_line,
    counted,
    events_between,
    list_events,
    operator_counters,
    operator_health,
    record,
    steady_window,
    summarise,
    whole_second,
)
from bench.reconcile.restart import restart_phase
from bench.reconcile.tracking import ReadyTracker, backend_ready, background, converge
from bench.reconcile.workload import (
    FIELD_MANAGER,
    backend_manifests,
    key_of,
    namespaces_for,
    pods_of,
    prepare,
    settle,
)
from devkit.cluster import LocalCluster
from devkit.measure import (
    CpuClock,
    apiserver_requests,
    by_verb,
    cpu_seconds,
    revision,
    say,
    status_kib,
    write_request_count,
)
from devkit.operator_process import OperatorProcess
from devkit.paths import REPO
from devkit.promtext import delta, histogram_quantiles, total_by
from devkit.records import BENCHMARKS_DOC
from sbo_operator.api.v1alpha1 import GROUP, VERSION
from sbo_operator.builders import Manifest
from sbo_operator.settings import OperatorSettings

DOCS = BENCHMARKS_DOC
PORT_BASE = 18440


async def operator_phase(
    cluster: LocalCluster, args: argparse.Namespace, manifests: Sequence[Manifest], namespaces: Sequence[str]
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
    # From the main thread (not a worker thread): the operator dies with the thread that started it.
    operator.start()
    pid = operator.pid
    say(f"operator running (pid {pid}, log {log_path.relative_to(REPO)})")
    try:
        async with contextlib.AsyncExitStack() as stack:
            dynamic = await stack.enter_async_context(cluster.dynamic_client(connections=args.api_threads))
            watching = await stack.enter_async_context(cluster.dynamic_client())
            writer = BenchClient(dynamic, budget=args.api_threads, field_manager=FIELD_MANAGER)
            await writer.discover(set())
            tracker = ReadyTracker(watching, f"{GROUP}/{VERSION}", "ScalableBackend", backend_ready)
            await stack.enter_async_context(background(tracker.run()))
            await asyncio.wait_for(tracker.synced.wait(), timeout=60)
            keys = {key_of(m) for m in manifests}
            await settle(args.settle_seconds)
            api_before = await apiserver_requests(dynamic)
            operator_before = await operator_counters(operator)
            cpu = CpuClock({"operator": pid, "bench": os.getpid(), **cluster.component_pids()})

            started, started_wall = time.monotonic(), datetime.now(UTC)
            deadline = started + args.timeout
            await asyncio.gather(*(writer.create_backend(m) for m in manifests))
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

            converged = await converge(
                lambda: keys <= tracker.ready,
                report,
                started=started,
                deadline=deadline,
                what="every ScalableBackend to be Ready",
            )
            seconds_to_ready, ready_wall = time.monotonic() - started, datetime.now(UTC)
            ready_count = len(tracker.ready & keys)
            cpu_used = cpu.used()
            api_after = await apiserver_requests(dynamic)
            operator_after = await operator_counters(operator)
            say(
                f"operator: {ready_count}/{n} Ready in {seconds_to_ready:.1f}s"
                + ("" if converged else f" (timed out after {args.timeout:.0f}s)")
            )

            steady: dict[str, Any] = {}
            if converged and args.steady_seconds > 0:
                steady = await steady_window(
                    dynamic, operator, tracker, keys, seconds=args.steady_seconds, api_before=api_after
                )
            peak_rss_kib = status_kib(pid, "VmHWM") or 0
            # Kopf posts the operator's Events itself, so sbo_api_writes_total does not count them.
            events = events_between(
                await list_events(dynamic), whole_second(started_wall), ready_wall, detail=False
            )
            restart: dict[str, Any] | None = None
            if converged and args.restart:
                restart = await restart_phase(operator, dynamic, tracker, keys, args)
    finally:
        operator.stop()

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
        **({"restart": restart} if restart is not None else {}),
    }


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
        "--no-restart",
        dest="restart",
        action="store_false",
        help="skip the restart path (SIGKILL the converged operator, start a new one, measure it)",
    )
    parser.add_argument(
        "--only", choices=("operator", "floor"), default=None, help="run one phase (for investigating)"
    )
    parser.add_argument("--port-base", type=int, default=PORT_BASE, help="the bench control plane's ports")
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
    cluster = LocalCluster(local_dir=args.local_dir.resolve(), port_base=args.port_base)
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
                cluster.stop()
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
