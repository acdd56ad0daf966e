"""Measuring and recording: the operator's counters, Events, the steady state, the JSON line, the docs."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kubernetes.aio.dynamic import DynamicClient

from bench.reconcile.tracking import ReadyTracker
from devkit.measure import apiserver_requests, machine, say, writes_by_resource
from devkit.operator_process import OperatorProcess
from devkit.paths import REPO
from devkit.promtext import Labels, delta, samples
from devkit.records import record_json_result

SECTION = "## Reconcile (make bench-reconcile)"
TARGET_RATIO = 2.0
TARGET_RSS_MIB = 300
TARGET_SHARE_OF_LIMIT = 0.6  # of the chart's memory limit, after a restart
OPERATOR_COUNTERS = (
    "sbo_api_writes_total",
    "sbo_reconciles_total",
    "sbo_reconcile_duration_seconds_sum",
    "sbo_reconcile_duration_seconds_count",
    "sbo_reconcile_duration_seconds_bucket",
)


# ---- the operator's own figures ------------------------------------------------------------------


async def operator_counters(operator: OperatorProcess) -> dict[str, dict[Labels, float]]:
    text = await asyncio.to_thread(operator.scrape)
    return {name: samples(text, name) for name in OPERATOR_COUNTERS}


async def operator_health(operator: OperatorProcess) -> tuple[int | None, float]:
    """The queue depth Kopf's /healthz reports, and how long the answer took (event-loop lag)."""
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            response = await client.get(operator.health_url)
        depth = response.json().get("queue_depth")
    except (httpx.HTTPError, ValueError):
        depth = None
    return (int(depth) if isinstance(depth, int | float) else None), (time.monotonic() - started) * 1000


def counted(series: Mapping[Labels, float]) -> int:
    return round(sum(series.values()))


# ---- Events ----------------------------------------------------------------------------------------

Event = tuple[datetime, str, str]  # created, component, "reason kind"


async def list_events(dynamic: DynamicClient) -> list[Event]:
    """Every core/v1 Event in the cluster, paginated: when, who posted it, and what about."""
    resource = await dynamic.resources.get(api_version="v1", kind="Event")
    events: list[Event] = []
    token: str | None = None
    while True:
        response = await dynamic.get(resource, limit=2000, _continue=token, serialize=False)
        try:
            page = await response.json()
        finally:
            response.release()
        for item in page.get("items") or ():
            created = datetime.fromisoformat(item["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
            component = item.get("reportingComponent") or (item.get("source") or {}).get("component") or "?"
            kind = (item.get("involvedObject") or {}).get("kind", "?")
            events.append((created, component, f"{item.get('reason', '?')} {kind}"))
        token = page["metadata"].get("continue")
        if not token:
            return events


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


# ---- the steady state ---------------------------------------------------------------------------------


async def steady_window(
    dynamic: DynamicClient,
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
    api_after = await apiserver_requests(dynamic)
    operator_writes = delta(operator_before["sbo_api_writes_total"], operator_after["sbo_api_writes_total"])
    reconciles = delta(operator_before["sbo_reconciles_total"], operator_after["sbo_reconciles_total"])
    cluster_writes = writes_by_resource(delta(api_before, api_after))
    events = events_between(await list_events(dynamic), whole_second(steady_start), None, detail=True)
    say(f"steady state: operator writes {counted(operator_writes)}, cluster-wide writes {cluster_writes}")
    say(f"steady state: Events created meanwhile, by who posted them: {events}")
    return {
        "steady_state_writes": counted(operator_writes),
        "steady_state_operator_reconciles": counted(reconciles),
        "steady_state_apiserver_writes": cluster_writes,
        "steady_state_events": events,
        "steady_state_min_ready": lowest_ready,
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
    restart = operator.get("restart") or {}
    restart_rss = restart.get("peak_rss_mib")
    share = restart.get("peak_rss_of_chart_limit")
    restart_writes = restart.get("operator_writes") if restart.get("converged") else None
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
            "restart_peak_rss_mib<=300": None if restart_rss is None else restart_rss <= TARGET_RSS_MIB,
            "restart_peak_rss_of_chart_limit<0.6": None if share is None else share < TARGET_SHARE_OF_LIMIT,
            "restart_writes==0": None if restart_writes is None else restart_writes == 0,
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
    box = result["machine"]
    heading = f"N={result['n']}: `{command}`, {result['date']}, {box['cpus']} cores, {box['memory_gib']} GiB"
    record_json_result(
        path, result, section=SECTION, marker=f"bench-reconcile n={result['n']}", heading=heading
    )
    say(f"recorded in {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def command_line(argv: Sequence[str]) -> str:
    if list(argv[:1]) == ["--n"] and len(argv) == 2:
        return f"make bench-reconcile N={argv[1]}"
    return "python -m bench.reconcile " + " ".join(argv)
