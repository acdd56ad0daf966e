"""Prometheus metrics.

The names ``http_requests_total`` and ``http_request_duration_seconds`` are a contract with the
operator's autoscaler. Labels stay low-cardinality: ``route`` is the route template
(``/api/v1/tasks/{task_id}``), never the raw path.

With several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` must be set (``python -m app.serve``
prepares it); each worker then writes its samples there and ``/metrics`` aggregates them all.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def prepare_multiprocess_dir(path: Path) -> None:
    """Create an empty directory for prometheus_client's per-process files.

    Every process started with PROMETHEUS_MULTIPROC_DIR (the image sets it for every command)
    writes its metrics there from the first metric it creates, so the directory must exist first.
    """
    if path.exists():
        for child in path.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)


class Metrics:
    """The metrics of one process, registered in their own registry (no global state)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "http_requests", "HTTP requests handled.", ["method", "route", "status"], registry=r
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "Time to handle an HTTP request.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests_in_progress = Gauge(
            "http_requests_in_progress",
            "HTTP requests being handled.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.cache_requests = Counter(
            "cache_requests",
            "Cache lookups by result: hit, miss, or bypass (Redis unavailable).",
            ["resource", "result"],
            registry=r,
        )
        self.db_pool_in_use = Gauge(
            "db_pool_connections_in_use",
            "Database connections checked out of the pool.",
            ["pool"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.db_pool_max = Gauge(
            "db_pool_connections_max",
            "Most connections the pool may open (pool size plus overflow).",
            ["pool"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.db_unavailable = Counter(
            "db_unavailable_responses", "Requests answered 503 because the database was down.", registry=r
        )
        self.db_replica_fallbacks = Counter(
            "db_replica_fallbacks",
            "Reads sent to the primary: the replica was behind the client's last write, or down.",
            ["reason"],
            registry=r,
        )
        self.redis_circuit_open = Gauge(
            "redis_circuit_open",
            "1 while the Redis circuit breaker is open (Redis is bypassed).",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.rate_limited = Counter("rate_limited_requests", "Requests refused with 429.", registry=r)
        self.load_shed_requests = Counter(
            "load_shed_requests",
            "Requests refused with 503: the process was at its concurrency limit and its queue was full, "
            "or they waited in the queue past its timeout.",
            registry=r,
        )
        self.tasks_enqueued = Counter(
            "tasks_enqueued", "Tasks put on the stream, by result.", ["result"], registry=r
        )
        self.worker_tasks = Counter(
            "worker_tasks",
            "Stream entries handled by the worker: processed, duplicate (already done), missing, failed.",
            ["outcome"],
            registry=r,
        )


@dataclass(frozen=True)
class QueueDepth:
    waiting: int
    pending: int


class _QueueDepthCollector(Collector):
    def __init__(self, depth: QueueDepth) -> None:
        self._depth = depth

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "task_queue_depth",
            "Entries on the task stream: waiting (not yet delivered) or pending (delivered, not acked).",
            labels=["state"],
        )
        family.add_metric(["waiting"], self._depth.waiting)
        family.add_metric(["pending"], self._depth.pending)
        yield family


def render_metrics(metrics: Metrics, queue_depth: QueueDepth | None) -> bytes:
    """The exposition text: every worker's samples (multiprocess mode) plus the queue depth."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = metrics.registry
    body = generate_latest(registry)
    if queue_depth is not None:
        extra = CollectorRegistry()
        extra.register(_QueueDepthCollector(queue_depth))
        body += generate_latest(extra)
    return body


def mark_this_process_dead() -> None:
    """Drop this worker's live gauges from the multiprocess directory (on shutdown)."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class PrometheusMiddleware:
    """Pure ASGI middleware that counts and times every HTTP request by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_progress = self.metrics.http_requests_in_progress
        in_progress.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            in_progress.dec()
            # The router stores the matched route in the scope; unmatched paths share one label.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in HTTP_METHODS else "OTHER"
            self.metrics.http_request_duration.labels(method, route).observe(time.perf_counter() - start)
            self.metrics.http_requests.labels(method, route, str(status)).inc()
