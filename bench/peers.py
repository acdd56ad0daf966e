"""The autoscaling benchmark's real peers: this operator, KEDA and a plain HPA scaling side by side.

One run drives one Prometheus series with one trace; several Deployments on kwok nodes follow it,
each scaled by another autoscaler: this operator (one ScalableBackend per ``pollSeconds``), a KEDA
ScaledObject with a Prometheus trigger on the same query and threshold, and a plain
``autoscaling/v2`` HPA on KEDA's external metric. One loop reads every Deployment's
``spec.replicas`` (one list call), every scaler's reported metric read, and sets the trace's value,
so every timing comes from one monotonic clock. Invariant: the parsing here is pure — snapshots
in, change lists and measured keys out — so the unit tests pin it without a cluster.

A phase is one such run. "defaults" runs the peers as they ship (HPA's 15 s sync and 300 s
scale-down window, KEDA's 30 s pollingInterval); "tuned" restarts the control plane with the HPA
controller syncing every 5 s and gives the peers this operator's 30 s window and KEDA a 5 s
pollingInterval.
"""

from __future__ import annotations

import contextlib
import math
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from kubernetes import client
from kubernetes.utils import parse_quantity

from bench.keda import Keda
from devkit.cluster import LocalCluster
from devkit.metric_target import MetricTarget
from devkit.operator_process import OperatorProcess
from devkit.prometheus import PrometheusServer

Kind = Literal["sbo", "keda", "hpa"]
Change = tuple[float, int, int]  # (t, from, to)
Read = tuple[float, float, int]  # (t, value read, replicas then)

#: The measured keys each peer reports (what ``analyse`` returns, minus the per-step detail).
MEASURED_KEYS = (
    "reaction_seconds_max",
    "reaction_seconds",
    "scale_events",
    "scale_events_by_phase",
    "flaps",
    "flaps_in_noisy_hold",
    "overshoot_replicas_max",
    "overshoot_by_phase",
    "scale_down_before_window",
    "step_down_seconds_after_load_drop",
    "step_down_seconds_after_last_high_recommendation",
    "replica_seconds",
    "needed_replica_seconds",
    "replicas_at_end",
)


@dataclass(frozen=True)
class Scaler:
    """One autoscaler under test, scaling its own Deployment."""

    key: str  # the JSON key under "peers"
    kind: Kind
    period_seconds: int  # operator pollSeconds, or the HPA controller's sync period
    window_seconds: int  # scale-down stabilization window
    polling_interval: int | None = None  # KEDA's pollingInterval (None: its default, 30 s)

    @property
    def name(self) -> str:
        """The object's name (ScalableBackend, ScaledObject or HPA): a DNS label."""
        return self.key.replace("_", "-")

    @property
    def deployment(self) -> str:
        return f"{self.name}-api" if self.kind == "sbo" else self.name


@dataclass(frozen=True)
class PhasePlan:
    name: Literal["defaults", "tuned"]
    hpa_sync_seconds: int
    scalers: tuple[Scaler, ...]


HPA_DEFAULT_SYNC = 15
HPA_DEFAULT_WINDOW = 300


def plans(*, operator_polls: Sequence[int], window: int, tuned_period: int) -> tuple[PhasePlan, ...]:
    """The two phases: peers at their defaults, then peers tuned to this operator's settings."""

    def operators(suffix: str) -> tuple[Scaler, ...]:
        return tuple(Scaler(f"sbo_poll{poll}{suffix}", "sbo", poll, window) for poll in operator_polls)

    defaults = PhasePlan(
        "defaults",
        HPA_DEFAULT_SYNC,
        (
            *operators(""),
            Scaler("keda", "keda", HPA_DEFAULT_SYNC, HPA_DEFAULT_WINDOW),
            Scaler("hpa", "hpa", HPA_DEFAULT_SYNC, HPA_DEFAULT_WINDOW),
        ),
    )
    tuned = PhasePlan(
        "tuned",
        tuned_period,
        (
            *operators("_run2"),
            Scaler("keda_tuned", "keda", tuned_period, window, polling_interval=tuned_period),
            Scaler("hpa_tuned", "hpa", tuned_period, window),
        ),
    )
    return defaults, tuned


# ---- manifests (pure) ---------------------------------------------------------------------------


def peer_deployment(name: str, namespace: str) -> dict[str, Any]:
    """A Deployment for KEDA or the HPA to scale: kwok runs its pods; restricted-PSS compliant."""
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "app",
                            "image": "sbo-sample-app:0.1.0",
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "runAsUser": 10001,
                            },
                        }
                    ],
                },
            },
        },
    }


def _scale_down_behavior(scaler: Scaler) -> dict[str, Any]:
    if scaler.window_seconds == HPA_DEFAULT_WINDOW:
        return {}  # the default: leave the field out, as a user would
    return {"behavior": {"scaleDown": {"stabilizationWindowSeconds": scaler.window_seconds}}}


def scaled_object(
    scaler: Scaler,
    namespace: str,
    *,
    prometheus_url: str,
    query: str,
    threshold: float,
    min_replicas: int,
    max_replicas: int,
) -> dict[str, Any]:
    """KEDA's ScaledObject: a Prometheus trigger on the operator's query, at the same threshold."""
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": scaler.deployment},
        "minReplicaCount": min_replicas,
        "maxReplicaCount": max_replicas,
        "triggers": [
            {
                "type": "prometheus",
                "metadata": {"serverAddress": prometheus_url, "query": query, "threshold": f"{threshold:g}"},
            }
        ],
    }
    if scaler.polling_interval is not None:
        spec["pollingInterval"] = scaler.polling_interval
    behavior = _scale_down_behavior(scaler)
    if behavior:
        spec["advanced"] = {"horizontalPodAutoscalerConfig": behavior}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": scaler.name, "namespace": namespace},
        "spec": spec,
    }


def plain_hpa(
    scaler: Scaler,
    namespace: str,
    *,
    metric_name: str,
    scaled_object_name: str,
    threshold: float,
    min_replicas: int,
    max_replicas: int,
) -> dict[str, Any]:
    """An autoscaling/v2 HPA on KEDA's external metric (KEDA serves it per ScaledObject)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": scaler.name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": scaler.deployment},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": metric_name,
                            "selector": {"matchLabels": {"scaledobject.keda.sh/name": scaled_object_name}},
                        },
                        "target": {"type": "AverageValue", "averageValue": f"{threshold:g}"},
                    },
                }
            ],
            **_scale_down_behavior(scaler),
        },
    }


# ---- parsing: snapshots to timelines (pure) -------------------------------------------------------


def changes_from_snapshots(
    snapshots: Iterable[tuple[float, Mapping[str, int | None]]], initial: Mapping[str, int]
) -> dict[str, list[Change]]:
    """Each key's replica changes, from snapshots of every key at one time (None: not readable then)."""
    current = dict(initial)
    changes: dict[str, list[Change]] = {key: [] for key in initial}
    for t, replicas in snapshots:
        for key, now in replicas.items():
            if now is None or key not in current:
                continue
            if now != current[key]:
                changes[key].append((t, current[key], now))
                current[key] = now
    return changes


def reads_from_snapshots(
    snapshots: Iterable[tuple[float, Mapping[str, float | None]]], changes: Mapping[str, Sequence[Change]]
) -> dict[str, list[Read]]:
    """Each scaler's metric reads, as seen in what it reports: a read is recorded when the value changes.

    A scaler that reads the same value again is not seen doing so; the stabilization checks only
    need the reads that could have recommended something else.
    """
    last: dict[str, float | None] = {}
    reads: dict[str, list[Read]] = {key: [] for key in changes}
    for t, values in snapshots:
        for key, value in values.items():
            if value is None or key not in reads or value == last.get(key):
                continue
            last[key] = value
            replicas = next((c[2] for c in reversed(changes[key]) if c[0] <= t), None)
            if replicas is None:
                replicas = changes[key][0][1] if changes[key] else 1
            reads[key].append((t, value, replicas))
    return reads


def hpa_metric_value(status: Mapping[str, Any] | None) -> float | None:
    """The total an HPA read on its last sync: its reported per-pod average x its current replicas."""
    if not status:
        return None
    metrics = status.get("currentMetrics") or []
    replicas = status.get("currentReplicas")
    if not metrics or not replicas:
        return None
    external = metrics[0].get("external") or {}
    average = (external.get("current") or {}).get("averageValue")
    if average is None:
        return None
    return round(float(parse_quantity(average)) * int(replicas), 3)


_LABEL = re.compile(r'(\w+)="([^"]*)"')


def operator_values(samples: Mapping[str, float], namespace: str) -> dict[str, float]:
    """``sbo_autoscaler_metric_value`` samples (keyed by label text) to {backend name: value}."""
    values: dict[str, float] = {}
    for labels, value in samples.items():
        parsed = dict(_LABEL.findall(labels))
        if parsed.get("namespace") == namespace and parsed.get("component", "api") == "api":
            values[parsed["name"]] = value
    return values


def measured_entry(summary: Mapping[str, Any], scaler: Scaler, phase: PhasePlan) -> dict[str, Any]:
    """The JSON entry of one measured scaler: ``measured: true``, its settings and the measured keys."""
    return {
        "measured": True,
        "kind": scaler.kind,
        "phase": phase.name,
        "period_seconds": scaler.period_seconds,
        "scale_down_window_seconds": scaler.window_seconds,
        **({"polling_interval_seconds": scaler.polling_interval or 30} if scaler.kind == "keda" else {}),
        **{key: summary[key] for key in MEASURED_KEYS},
    }


class PeerFailed(RuntimeError):
    """A peer did not start, or never scaled: the benchmark fails rather than print zeros."""


def check_scaled(peers: Mapping[str, Mapping[str, Any]]) -> None:
    idle = [key for key, entry in peers.items() if not entry["scale_events"]]
    if idle:
        raise PeerFailed(f"these scalers never changed their Deployment's replicas: {', '.join(idle)}")


def targets(peers: Mapping[str, Mapping[str, Any]], *, operator_polls: Sequence[int]) -> dict[str, Any]:
    """The issue's targets, per phase and per operator poll measured: this operator against KEDA in
    that phase (defaults against KEDA's defaults, tuned against KEDA tuned). ``met``: all three."""
    out: dict[str, Any] = {}
    for poll in operator_polls:
        for operator_key, keda_key in ((f"sbo_poll{poll}", "keda"), (f"sbo_poll{poll}_run2", "keda_tuned")):
            ours, keda = peers.get(operator_key), peers.get(keda_key)
            if ours is None or keda is None:
                continue
            ours_worst, keda_worst = ours["reaction_seconds_max"], keda["reaction_seconds_max"]
            third = ours_worst is not None and keda_worst is not None and ours_worst <= keda_worst / 3
            flaps = ours["flaps"] <= keda["flaps"] and ours["flaps_in_noisy_hold"] == 0
            replica_seconds = ours["replica_seconds"] <= keda["replica_seconds"]
            out[f"{operator_key}_vs_{keda_key}"] = {
                "worst_reaction_seconds": [ours_worst, keda_worst],
                "worst_reaction_at_most_a_third": third,
                "flaps": [ours["flaps"], keda["flaps"]],
                "flaps_no_more": ours["flaps"] <= keda["flaps"],
                "flaps_in_noisy_hold_zero": ours["flaps_in_noisy_hold"] == 0,
                "replica_seconds": [ours["replica_seconds"], keda["replica_seconds"]],
                "replica_seconds_no_more": replica_seconds,
                "met": third and flaps and replica_seconds,
            }
    return out


# ---- one measured phase -----------------------------------------------------------------------------


@dataclass
class Observed:
    """What one phase saw, in seconds since the trace started (one clock)."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    changes: dict[str, list[Change]] = field(default_factory=dict)
    reads: dict[str, list[Read]] = field(default_factory=dict)


@dataclass(frozen=True)
class PhaseSettings:
    """What a phase needs from the benchmark proper (kept here so bench/autoscale.py only hooks in)."""

    crd: Path  # the ScalableBackend CRD
    query: str
    threshold: float
    min_replicas: int
    max_replicas: int
    scrape_seconds: int
    keda_port_base: int
    backend: Callable[[str, str, str, int], dict[str, Any]]  # (name, namespace, prometheus url, poll)
    say: Callable[[str], None]


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise PeerFailed(f"timed out after {timeout:.0f}s waiting for {what} (last seen: {last!r})")


def run_phase(
    plan: PhasePlan,
    values: Sequence[tuple[str, float]],
    settings: PhaseSettings,
    cluster_context: Callable[[], AbstractContextManager[LocalCluster]],
) -> Observed:
    say = settings.say
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(cluster_context())
        cluster.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "sbo-bench",
            "-f",
            str(settings.crd),
        )
        extensions = client.ApiextensionsV1Api(cluster.api)
        _wait(
            lambda: any(
                c.type == "Established" and c.status == "True"
                for c in (
                    extensions.read_custom_resource_definition("scalablebackends.sbo.dev").status.conditions
                    or []
                )
            ),
            60,
            "the ScalableBackend CRD Established",
        )
        namespace = f"bench-peers-{secrets.token_hex(3)}"
        cluster.kubectl("create", "namespace", namespace)
        cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
        stack.callback(cluster.kubectl, "delete", "namespace", namespace, "--wait=false", check=False)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-peers-{plan.name}-")))
        target = stack.enter_context(MetricTarget.start())
        target.set(values[0][1], series="rps")
        say(f"[{plan.name}] Prometheus (1 s scrape), KEDA and the operator")
        prometheus = PrometheusServer.start(
            workdir,
            scrape_targets={"target": [target.address]},
            scrape_interval=f"{settings.scrape_seconds}s",
        )
        stack.callback(prometheus.destroy)
        prometheus.wait_for_target("target")
        kinds = {scaler.kind for scaler in plan.scalers}
        keda: Keda | None = None
        if kinds & {"keda", "hpa"}:
            keda = stack.enter_context(Keda.start(cluster, workdir, port_base=settings.keda_port_base))
        operator = OperatorProcess(
            kubeconfig=cluster.kubeconfig,
            log_path=workdir / "operator.log",
            env={"SBO_NAMESPACES": namespace, "SBO_RESYNC_SECONDS": "60", "SBO_LOG_LEVEL": "WARNING"},
        )
        stack.callback(operator.stop)
        operator.start()
        _create_scalers(plan, cluster, namespace, prometheus.url, settings)
        apps = client.AppsV1Api(cluster.api)
        hpas = client.AutoscalingV2Api(cluster.api)

        def replicas_now() -> dict[str, int | None]:
            found = {
                d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment(namespace).items
            }
            return {s.key: found.get(s.deployment) for s in plan.scalers}

        def reads_now() -> dict[str, float | None]:
            by_hpa = {
                h.metadata.name: hpa_metric_value(cluster.api.sanitize_for_serialization(h.status))
                for h in hpas.list_namespaced_horizontal_pod_autoscaler(namespace).items
            }
            try:
                ours = operator_values(operator.metric_samples("sbo_autoscaler_metric_value"), namespace)
            except Exception:  # a scrape that failed under load is a read not seen, not a failure
                ours = {}
            out: dict[str, float | None] = {}
            for s in plan.scalers:
                if s.kind == "sbo":
                    out[s.key] = ours.get(s.name)
                else:
                    out[s.key] = by_hpa.get(f"keda-hpa-{s.name}" if s.kind == "keda" else s.name)
            return out

        _wait(lambda: all(r == 1 for r in replicas_now().values()), 120, "every Deployment at 1 replica")
        _wait(
            lambda: all(v is not None for v in reads_now().values()), 180, "every scaler's first metric read"
        )
        settle = 2 * max(s.polling_interval or s.period_seconds for s in plan.scalers)
        say(
            f"[{plan.name}] every scaler reads the metric; "
            f"settling {settle}s, then the trace ({len(values)}s)"
        )
        time.sleep(settle)

        replica_snapshots: list[tuple[float, Mapping[str, int | None]]] = []
        read_snapshots: list[tuple[float, Mapping[str, float | None]]] = []
        start_wall, start = time.time(), time.monotonic()
        second, phase_name = -1, ""
        last_seen = replicas_now()
        while (elapsed := time.monotonic() - start) < len(values):
            if int(elapsed) != second:
                second = int(elapsed)
                name, value = values[second]
                target.set(value, series="rps")
                if name != phase_name:
                    say(f"[{plan.name}] phase {name} at {second}s (value {value:g})")
                    phase_name = name
            snapshot = replicas_now()
            replica_snapshots.append((time.monotonic() - start, snapshot))
            read_snapshots.append((time.monotonic() - start, reads_now()))
            moved = {k: v for k, v in snapshot.items() if v is not None and v != last_seen.get(k)}
            if moved:
                say(
                    f"  {time.monotonic() - start:6.1f}s "
                    + ", ".join(f"{k} -> {v}" for k, v in moved.items())
                )
                last_seen.update(moved)
            time.sleep(0.1)

        if keda is not None and not all(keda.running().values()):
            raise PeerFailed(f"a KEDA process exited during the trace: {keda.running()}")
        observed = Observed()
        observed.changes = changes_from_snapshots(replica_snapshots, {s.key: 1 for s in plan.scalers})
        observed.reads = reads_from_snapshots(read_snapshots, observed.changes)
        answer = prometheus.query(f'sbo_test_value{{series="rps"}}[{len(values) + 30}s]')
        for series in answer["data"]["result"]:
            for ts, value in series["values"]:
                if float(ts) >= start_wall - 0.5:
                    observed.samples.append((float(ts) - start_wall, float(value)))
        observed.samples.sort()
        return observed


def _create_scalers(
    plan: PhasePlan, cluster: LocalCluster, namespace: str, prometheus_url: str, settings: PhaseSettings
) -> None:
    limits = {"min_replicas": settings.min_replicas, "max_replicas": settings.max_replicas}
    custom = client.CustomObjectsApi(cluster.api)
    keda_scalers = [s for s in plan.scalers if s.kind == "keda"]
    for scaler in plan.scalers:
        if scaler.kind == "sbo":
            cluster.apply(settings.backend(scaler.name, namespace, prometheus_url, scaler.period_seconds))
        else:
            cluster.apply(peer_deployment(scaler.deployment, namespace))
    for scaler in keda_scalers:
        cluster.apply(
            scaled_object(
                scaler, namespace, prometheus_url=prometheus_url, query=settings.query,
                threshold=settings.threshold, **limits,
            )
        )  # fmt: skip

    def metric_name(name: str) -> str | None:
        found: dict[str, Any] = custom.get_namespaced_custom_object(
            "keda.sh", "v1alpha1", namespace, "scaledobjects", name
        )
        status = found.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
        )
        names = status.get("externalMetricNames") or []
        return names[0] if ready and names else None

    for scaler in keda_scalers:
        _wait(partial(metric_name, scaler.name), 120, f"ScaledObject {scaler.name} Ready")
    for scaler in (s for s in plan.scalers if s.kind == "hpa"):
        # The plain HPA reads the metric KEDA serves for the ScaledObject of the same phase.
        source = keda_scalers[0].name
        cluster.apply(
            plain_hpa(
                scaler, namespace, metric_name=str(metric_name(source)), scaled_object_name=source,
                threshold=settings.threshold, **limits,
            )
        )  # fmt: skip


def print_side_by_side(
    peers: Mapping[str, Mapping[str, Any]], simulated: Mapping[str, Mapping[str, Any]], out: Any = None
) -> None:
    """One row per scaler: each figure measured, then (in brackets) the decide() replay of its settings."""
    out = out or sys.stderr
    rows = ("reaction_seconds_max", "scale_events", "flaps", "overshoot_replicas_max",
            "scale_down_before_window", "replica_seconds")  # fmt: skip
    headers = ("reaction max", "events", "flaps", "overshoot", "early downs", "replica-s")
    print("measured (simulated)".ljust(18) + "".join(h.rjust(16) for h in headers), file=out)
    for key, entry in peers.items():
        replay = simulated.get(key, {})
        cells = "".join(f"{_cell(entry.get(row))} ({_cell(replay.get(row))})".rjust(16) for row in rows)
        print(key.ljust(18) + cells, file=out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:g}"
    return str(value)
