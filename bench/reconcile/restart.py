"""The restart path: SIGKILL the converged operator, start a new one over the N existing backends.

A new operator lists every ScalableBackend and every child kind at once and reconciles every
backend, so its memory peak is not the creating process's. The phase measures that peak
(`VmHWM`), the RSS once it has settled, and what it writes: with nothing changed, nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Set
from typing import Any

from kubernetes.aio.dynamic import DynamicClient

from bench.reconcile.recording import counted, operator_counters, operator_health, steady_window
from bench.reconcile.tracking import ReadyTracker, converge
from devkit.measure import apiserver_requests, say, status_kib, writes_by_resource
from devkit.operator_process import OperatorProcess
from devkit.promtext import delta, histogram_quantiles, total_by

# The chart's memory limit for the operator (charts/scalable-backend-operator/values.yaml).
CHART_MEMORY_LIMIT_MIB = 512


async def restart_phase(
    operator: OperatorProcess,
    dynamic: DynamicClient,
    tracker: ReadyTracker,
    keys: Set[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Kill, restart, wait until the new process has reconciled every backend once, then watch."""
    n = len(keys)
    api_before = await apiserver_requests(dynamic)
    say(f"restart: SIGKILL the operator (pid {operator.pid}) and start a new one over {n} backends")
    operator.kill()
    started = time.monotonic()
    # From the main thread, as the first start: the operator dies with the thread that started it.
    operator.start()
    pid = operator.pid
    healthy_seconds = time.monotonic() - started
    lowest_ready = len(tracker.ready & keys)
    timeline: list[list[int | None]] = []
    reconciled = 0
    depth: int | None = None

    async def progress() -> bool:
        nonlocal reconciled, depth, lowest_ready
        counters = await operator_counters(operator)
        reconciled = counted(counters["sbo_reconciles_total"])
        depth, _ = await operator_health(operator)
        lowest_ready = min(lowest_ready, len(tracker.ready & keys))
        return reconciled >= n and depth == 0

    async def report(elapsed: float) -> None:
        rss_mib = (status_kib(pid, "VmRSS") or 0) / 1024
        say(f"restart: {reconciled} reconciles after {elapsed:.0f}s; queue {depth}, RSS {rss_mib:.0f} MiB")
        timeline.append([round(elapsed), reconciled, depth, round(rss_mib)])

    done = False

    async def poll() -> None:
        nonlocal done
        while not done:
            done = await progress()
            await asyncio.sleep(0.5)

    poller = asyncio.create_task(poll())
    try:
        converged = await converge(
            lambda: done,
            report,
            started=started,
            deadline=started + args.timeout,
            what="the restarted operator to reconcile every backend",
        )
    finally:
        poller.cancel()
    seconds = time.monotonic() - started
    processed_peak_kib = status_kib(pid, "VmHWM") or 0
    counters = await operator_counters(operator)
    api_processed = await apiserver_requests(dynamic)
    writes = counters["sbo_api_writes_total"]
    say(
        f"restart: {reconciled} reconciles in {seconds:.1f}s, peak RSS {processed_peak_kib / 1024:.0f} MiB, "
        f"operator writes {counted(writes)}"
    )
    result: dict[str, Any] = {
        "converged": converged,
        "seconds_to_reconciled": round(seconds, 1),
        "seconds_to_healthy": round(healthy_seconds, 1),
        "reconciles": reconciled,
        "reconcile_seconds": histogram_quantiles(
            {}, counters["sbo_reconcile_duration_seconds_bucket"], (0.5, 0.9, 0.99)
        ),
        "operator_writes": counted(writes),
        "operator_writes_by_kind": total_by(writes, lambda labels: f"{labels['verb']} {labels['kind']}"),
        "apiserver_writes": writes_by_resource(delta(api_before, api_processed)),
        "min_ready": lowest_ready,
        "timeline": {"columns": ["s", "reconciles", "queue_depth", "rss_mib"], "every_10s": timeline},
    }
    if converged and args.steady_seconds > 0:
        steady = await steady_window(
            dynamic, operator, tracker, set(keys), seconds=args.steady_seconds, api_before=api_processed
        )
        result.update({key.replace("steady_state_", "steady_"): value for key, value in steady.items()})
    peak_kib = status_kib(pid, "VmHWM") or 0
    result["peak_rss_mib"] = round(peak_kib / 1024, 1)
    result["peak_rss_of_chart_limit"] = round(peak_kib / 1024 / CHART_MEMORY_LIMIT_MIB, 3)
    result["steady_rss_mib"] = round((status_kib(pid, "VmRSS") or 0) / 1024, 1)
    return result
