"""One scheduler polls Prometheus for every autoscaled Deployment of the operator.

Not one task per object: a heap of due times, woken when the next poll is
due, with a bound on concurrent polls and one HTTP client per (url, auth), so
1,000 ScalableBackends cost one sleeping task and a handful of connections.

A decision changes replicas by writing `spec.<component>.replicas` on the
ScalableBackend, as HPA writes its target's scale; the ordinary reconcile
then applies the Deployment. So there is one path that writes replicas.

Status is reported only when the state changes (a recommendation, replicas,
the kind of an error, a condition), so an autoscaled backend in steady state
sends no writes, and neither does one whose Prometheus is down: the failure
beginning, the fallback starting and the failure ending are written once each.
Running values (metric values, failed polls in a row) are on /metrics.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from kubernetes.aio.client.exceptions import ApiException

from sbo_operator.api.autoscaling import (
    AutoscalingHistory,
    AutoscalingMode,
    AutoscalingSpec,
    PrometheusSpec,
    ReplicaRecommendation,
)
from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.autoscaler.conditions import autoscaling_conditions
from sbo_operator.autoscaler.decide import Decision, decide
from sbo_operator.autoscaler.prometheus import (
    InvalidPrometheusAuth,
    PrometheusAuth,
    build_prometheus_client,
    fetch_metric_outcomes,
)
from sbo_operator.autoscaler.samples import MetricError, MetricErrorKind, MetricOutcome
from sbo_operator.components import autoscaling_targets
from sbo_operator.events import post_event
from sbo_operator.kube import Kube, ObjectGone
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.settings import OperatorSettings
from sbo_operator.workqueue import Key

log = logging.getLogger(__name__)

Component = str  # the name of an autoscalable component (components.autoscaling_targets)


@dataclasses.dataclass
class Target:
    """One autoscaled Deployment: what to poll, and what the last polls said."""

    key: Key
    component: Component
    spec: AutoscalingSpec
    prometheus: PrometheusSpec
    current_replicas: int
    body: dict[str, Any]
    history: AutoscalingHistory
    next_poll: float = 0.0
    generation: int = 0  # bumps when the target is replaced, invalidating old heap entries
    reported: Decision | None = None
    last: Decision | None = None


class AutoscalerScheduler:
    def __init__(
        self,
        *,
        kube: Kube,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        on_report: Callable[[Key], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._settings = settings
        self._metrics = metrics
        self._on_report = on_report
        self._clock = clock
        self._targets: dict[tuple[Key, Component], Target] = {}
        self._heap: list[tuple[float, int, tuple[Key, Component], int]] = []
        self._sequence = itertools.count()
        self._wake = asyncio.Event()
        self._polls = asyncio.Semaphore(settings.autoscaler_concurrency)
        self._clients: dict[tuple[str, PrometheusAuth], httpx.AsyncClient] = {}
        self._secrets: dict[tuple[str, str], tuple[float, dict[str, str] | None]] = {}
        self._running: set[asyncio.Task[None]] = set()

    # ---- what the reconciler tells and asks ----------------------------------------------------

    def track(self, key: Key, backend: ScalableBackend, body: dict[str, Any]) -> None:
        """Follow the autoscaling spec of a backend; called on every reconcile."""
        prometheus = backend.spec.prometheus or PrometheusSpec()
        for component, wanted in autoscaling_targets(backend).items():
            spec, replicas = wanted.spec, wanted.replicas
            existing = self._targets.get((key, component))
            if spec is None:
                if existing:
                    del self._targets[(key, component)]
                    self._forget_series(key, component)
                    self._on_report(key)
                continue
            if existing and existing.spec == spec and existing.prometheus == prometheus:
                existing.current_replicas = replicas
                existing.body = body
                continue
            # New, or the spec changed: poll now. The history starts with the
            # current replicas as a recommendation, so a fresh start (or an
            # operator restart) never scales down before a full window.
            now = datetime.now(UTC)
            target = Target(
                key=key,
                component=component,
                spec=spec,
                prometheus=prometheus,
                current_replicas=replicas,
                body=body,
                history=existing.history
                if existing
                else AutoscalingHistory(recommendations=[ReplicaRecommendation(time=now, replicas=replicas)]),
                generation=(existing.generation + 1) if existing else 0,
                reported=existing.reported if existing else None,
            )
            self._targets[(key, component)] = target
            self._schedule(target, at=self._clock())

    def forget(self, key: Key) -> None:
        for target_key in [target_key for target_key in self._targets if target_key[0] == key]:
            del self._targets[target_key]
            self._forget_series(key, target_key[1])

    def _forget_series(self, key: Key, component: Component) -> None:
        with contextlib.suppress(KeyError):
            self._metrics.autoscaler_consecutive_failed_polls.remove(key.namespace, key.name, component)

    def reports(self, key: Key) -> dict[Component, Decision]:
        """The latest material decision per autoscaled component, for the status."""
        return {
            component: target.reported
            for (target_key, component), target in self._targets.items()
            if target_key == key and target.reported
        }

    # ---- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                _, _, target_key, generation = heapq.heappop(self._heap)
                target = self._targets.get(target_key)
                if target is None or target.generation != generation:
                    continue  # forgotten or replaced since it was scheduled
                self._schedule(target, at=now + target.prometheus.poll_seconds)
                task = asyncio.create_task(
                    self._poll(target), name=f"autoscale-{target_key[0]}-{target_key[1]}"
                )
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            timeout = max(0.0, self._heap[0][0] - self._clock()) if self._heap else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def pause(self) -> None:
        """Stop polling and forget every target: another replica autoscales now.

        The loop (run()) is cancelled by its owner. On resuming, the reconciles track the
        targets afresh, with the replicas the other replica left, and a fresh history, as
        after a restart: no scale-down before a full stabilization window.
        """
        for task in list(self._running):
            task.cancel()
        for key, component in list(self._targets):
            self._forget_series(key, component)
        self._targets.clear()
        self._heap.clear()

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        for client in self._clients.values():
            await client.aclose()

    def _schedule(self, target: Target, *, at: float) -> None:
        target.next_poll = at
        heapq.heappush(
            self._heap, (at, next(self._sequence), (target.key, target.component), target.generation)
        )
        self._wake.set()

    # ---- one poll ------------------------------------------------------------------------------

    async def _poll(self, target: Target) -> None:
        async with self._polls:
            try:
                samples = await self._fetch(target)
                await self._decide(target, samples)
            except ObjectGone:
                self.forget(target.key)
            except Exception:
                log.exception(
                    "autoscaling %s %s failed; next poll as scheduled", target.key, target.component
                )

    async def _fetch(self, target: Target) -> dict[str, MetricOutcome]:
        try:
            auth = await self._auth(target.key.namespace, target.prometheus)
            client = self._client(target.prometheus.url or self._settings.default_prometheus_url, auth)
        except (LookupError, InvalidPrometheusAuth) as error:
            not_queried = MetricError(MetricErrorKind.NOT_QUERIED, str(error))
            return {metric.name: not_queried for metric in target.spec.metrics}
        return await fetch_metric_outcomes(
            client, target.spec.metrics, timeout_seconds=target.prometheus.timeout_seconds
        )

    async def _decide(self, target: Target, samples: dict[str, MetricOutcome]) -> None:
        decision = decide(
            spec=target.spec,
            current_replicas=target.current_replicas,
            samples=samples,
            history=target.history,
            now=datetime.now(UTC),
        )
        key, component = target.key, target.component
        for metric in decision.metrics:
            if metric.value is not None:
                self._metrics.autoscaler_metric_value.labels(
                    key.namespace, key.name, component, metric.name
                ).set(metric.value)
        direction = (
            "up"
            if decision.desired_replicas > decision.current_replicas
            else "down"
            if decision.desired_replicas < decision.current_replicas
            else "hold"
        )
        self._metrics.autoscaler_decisions.labels(component=component, direction=direction).inc()
        self._metrics.autoscaler_consecutive_failed_polls.labels(key.namespace, key.name, component).set(
            decision.consecutive_failures
        )

        if decision.mode is AutoscalingMode.ACTIVE and decision.changes_replicas:
            await self._kube.patch_spec(
                target.body, {"spec": {component: {"replicas": decision.desired_replicas}}}
            )
            target.current_replicas = decision.desired_replicas
            post_event(target.body, "Normal", "Scaled", f"{component}: {decision.reason}")
        elif (
            decision.mode is AutoscalingMode.DRY_RUN
            and target.last is not None
            and target.last.desired_replicas != decision.desired_replicas
        ):
            post_event(
                target.body,
                "Normal",
                "DryRunRecommendation",
                f"{component} would scale to {decision.desired_replicas} (dry run): {decision.reason}",
            )
        target.history = decision.history
        target.last = decision
        if target.reported is None or _material(target.reported) != _material(decision):
            target.reported = decision
            self._on_report(key)

    # ---- credentials and clients ---------------------------------------------------------------

    def _client(self, url: str, auth: PrometheusAuth) -> httpx.AsyncClient:
        client = self._clients.get((url, auth))
        if client is None:
            client = self._clients[(url, auth)] = build_prometheus_client(url, auth)
        return client

    async def _auth(self, namespace: str, prometheus: PrometheusSpec) -> PrometheusAuth:
        bearer = basic = ca = None
        if ref := prometheus.bearer_token_secret_ref:
            bearer = await self._secret_value(
                namespace, ref.name, ref.key, "spec.prometheus.bearerTokenSecretRef"
            )
        if basic_ref := prometheus.basic_auth_secret_ref:
            where = "spec.prometheus.basicAuthSecretRef"
            basic = (
                await self._secret_value(namespace, basic_ref.name, basic_ref.username_key, where),
                await self._secret_value(namespace, basic_ref.name, basic_ref.password_key, where),
            )
        if ca_ref := prometheus.ca_secret_ref:
            ca = await self._secret_value(namespace, ca_ref.name, ca_ref.key, "spec.prometheus.caSecretRef")
        if cm_ref := prometheus.ca_config_map_ref:
            config_map = await self._kube.get("v1", "ConfigMap", namespace, cm_ref.name)
            ca = (config_map or {}).get("data", {}).get(cm_ref.key)
            if ca is None:
                where = "spec.prometheus.caConfigMapRef"
                raise LookupError(f"{where}: ConfigMap {namespace}/{cm_ref.name} has no key {cm_ref.key!r}")
        return PrometheusAuth(
            bearer_token=bearer, basic=basic, ca_pem=ca, insecure_skip_verify=prometheus.insecure_skip_verify
        )

    async def _secret_value(self, namespace: str, name: str, key: str, where: str) -> str:
        """One key of a user's Secret, cached briefly; never logged."""
        cached = self._secrets.get((namespace, name))
        if cached is None or self._clock() - cached[0] > self._settings.autoscaler_secret_cache_seconds:
            try:
                secret = await self._kube.get("v1", "Secret", namespace, name)
            except ApiException as error:
                raise LookupError(
                    f"{where}: cannot read Secret {namespace}/{name}: {error.reason}"
                ) from error
            data = None if secret is None else (secret.get("data") or {})
            cached = self._secrets[(namespace, name)] = (self._clock(), data)
        data = cached[1]
        if data is None:
            raise LookupError(f"{where}: Secret {namespace}/{name} not found; create it or fix the reference")
        if key not in data:
            raise LookupError(f"{where}: Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode().strip()


def _material(decision: Decision) -> tuple[Any, ...]:
    """What, when it changes, is worth a status write: the state, never a running count.

    The count of failed polls is not here: with it, every poll during a Prometheus
    outage was a status write (67 per second at 1,000 backends polled every 15 s).
    """
    return (
        decision.mode,
        decision.current_replicas,
        decision.desired_replicas,
        decision.history.last_scale_time,
        tuple((m.name, m.desired_replicas, m.error.kind if m.error else None) for m in decision.metrics),
        tuple((c.type, c.status, c.reason) for c in autoscaling_conditions(decision)),
    )
