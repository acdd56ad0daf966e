"""Benchmark the autoscaler on a load trace: ``python -m bench.autoscale`` (``make bench-autoscale``).

The metric is driven precisely, not by HTTP load: a controllable gauge
(``hack/devkit/devkit/metric_target.py``, ``sbo_test_value{series="rps"}``) stands for the request rate,
a real Prometheus scrapes it every second, and the query ``sum(sbo_test_value{series="rps"})``
is scaled at ``targetPerReplica: 10``. So a step is in Prometheus at a known second and the
timing is repeatable. (``make demo`` and the e2e test drive the real sample app with HTTP.)

The trace (one value per second): a baseline, two steps of x5 up, a noisy hold (+-15 % around
the last step, new every second, seeded), a step down, a sawtooth, and a tail.

Reported, from observation (the Deployment's ``spec.replicas`` read every ~0.15 s, every poll
of the operator seen on its /metrics, Prometheus's own sample timestamps):

* ``reaction_seconds``: from the first Prometheus sample past the target (value > replicas x
  targetPerReplica x (1 + tolerance)) following a sample that was not, to the Deployment's
  replicas being patched. Measured on the steps and the sawtooth (the noisy hold's per-second
  noise is not a sustained crossing, and a poll may never see it).
* ``scale_events``, ``flaps`` (direction reversals within the stabilization window),
  ``overshoot`` (peak replicas above what a phase's highest nominal value needs);
* ``scale_down_before_window``: scale-downs to R replicas although a poll in the preceding
  window recommended more than R (HPA's recommendation, tolerance included). Must be 0.

The peers run for real in the same run (bench/peers.py, bench/keda.py): the operator at each
of ``--operator-polls`` (15, 5, 2), a KEDA ScaledObject and a plain HPA on KEDA's external
metric, each scaling its own Deployment on the same series, every timing on one clock; first at
the peers' defaults, then (a second phase, on a control plane whose HPA controller syncs every
``--poll-seconds``) tuned to the operator's settings. The JSON line's ``peers`` holds each one's
measured keys (``measured: true``); a peer that does not start or never scales fails the run.

The same trace is also run through the operator's own pure ``decide()`` with the documented
defaults of HPA (15 s sync, 0.1 tolerance, 300 s scale-down window) fed through
prometheus-adapter (30-90 s lag, which is not measured: prometheus-adapter is not built here),
and of KEDA (HPA on top, 30 s pollingInterval): ``simulated`` in the JSON, printed beside the
measured figures.

The bench runs its own control plane (hack/cluster.sh, ports from 19440, state in
.local/bench-autoscale) and stops it; ``--reuse-cluster`` uses the developer's instead (the
defaults phase only). It prints one JSON line and records it in the "## Autoscaling" section
of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import peers
from devkit.cluster import LocalCluster
from devkit.measure import say
from devkit.paths import REPO
from devkit.records import BENCHMARKS_DOC, record_in_section
from sbo_operator.api.autoscaling import AutoscalingHistory, AutoscalingSpec
from sbo_operator.autoscaler.decide import decide
from sbo_operator.autoscaler.samples import MetricSample

DOCS = BENCHMARKS_DOC
SECTION = "## Autoscaling (make bench-autoscale)"
CRD = REPO / "crds" / "sbo.dev_scalablebackends.yaml"
QUERY = 'sum(sbo_test_value{series="rps"})'
NAME = "trace"
TARGET_PER_REPLICA = 10.0
TOLERANCE = 0.1
MIN_REPLICAS = 1
MAX_REPLICAS = 20
SCRAPE_SECONDS = 1

# ---- the trace ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str
    values: tuple[float, ...]  # one per second

    @property
    def nominal_peak(self) -> float:
        return max(self.values) if self.name != "noisy-hold" else NOISY_LEVEL


NOISY_LEVEL = 100.0


def build_trace(seed: int = 7) -> tuple[Phase, ...]:
    rng = random.Random(seed)
    noisy = tuple(round(NOISY_LEVEL * (1 + rng.uniform(-0.15, 0.15)), 1) for _ in range(60))
    sawtooth = tuple(20.0 + 40.0 * (second % 20) / 20 for second in range(60))
    return (
        Phase("baseline", (4.0,) * 15),
        Phase("up-x5", (20.0,) * 20),
        Phase("up-x5-again", (100.0,) * 25),
        Phase("noisy-hold", noisy),
        Phase("step-down", (20.0,) * 45),
        Phase("sawtooth", sawtooth),
        Phase("tail", (20.0,) * 40),
    )


def flatten(trace: Sequence[Phase]) -> list[tuple[str, float]]:
    return [(phase.name, value) for phase in trace for value in phase.values]


def phase_spans(trace: Sequence[Phase]) -> dict[str, tuple[float, float]]:
    spans: dict[str, tuple[float, float]] = {}
    start = 0.0
    for phase in trace:
        spans[phase.name] = (start, start + len(phase.values))
        start += len(phase.values)
    return spans


def needed(value: float) -> int:
    return min(MAX_REPLICAS, max(MIN_REPLICAS, math.ceil(value / TARGET_PER_REPLICA - 1e-9)))


# ---- one timeline and what it says ------------------------------------------------------------------


@dataclass
class Timeline:
    """Seconds since the trace started. Real runs and simulations both end up here."""

    samples: list[tuple[float, float]] = field(default_factory=list)  # Prometheus (ts, value)
    changes: list[tuple[float, int, int]] = field(default_factory=list)  # (t, from, to)
    polls: list[tuple[float, float, int]] = field(default_factory=list)  # (t, value read, replicas then)
    initial_replicas: int = 1

    def replicas_at(self, t: float) -> int:
        replicas = self.initial_replicas
        for at, _, to in self.changes:
            if at <= t:
                replicas = to
        return replicas


def recommendation(value: float, current: int) -> int:
    """HPA's raw recommendation for one metric with targetPerReplica (tolerance included)."""
    if current > 0 and abs(value / (current * TARGET_PER_REPLICA) - 1) <= TOLERANCE:
        return current
    return needed(value)


def analyse(
    timeline: Timeline, trace: Sequence[Phase], *, window: float, poll_seconds: float
) -> dict[str, Any]:
    spans = phase_spans(trace)

    def phase_of(t: float) -> str:
        for name, (start, end) in spans.items():
            if start <= t < end:
                return name
        return "after"

    # Reaction: fresh crossings past the target, on the steps and the sawtooth.
    reactions: list[dict[str, Any]] = []
    pending: float | None = None
    was_past = False
    ups = [c for c in timeline.changes if c[2] > c[1]]
    for ts, value in timeline.samples:
        replicas = timeline.replicas_at(ts)
        past = value > replicas * TARGET_PER_REPLICA * (1 + TOLERANCE)
        if past and not was_past and pending is None and phase_of(ts) != "noisy-hold":
            pending = ts
            patched = next((c for c in ups if c[0] >= ts), None)
            if patched is not None:
                reactions.append(
                    {
                        "phase": phase_of(ts),
                        "sample_at": round(ts, 2),
                        "seconds": round(patched[0] - ts, 2),
                        "to": patched[2],
                    }
                )
        if pending is not None and any(pending <= c[0] <= ts for c in ups):
            pending = None
        was_past = past

    # A flap is a reversal that the stabilization window of the second move should have
    # prevented: a scale-down within the scale-down window after a scale-up (the scale-up
    # window is 0, as HPA's default, so scaling up again at once is by design).
    flaps: list[dict[str, Any]] = []
    for before, after in zip(timeline.changes, timeline.changes[1:], strict=False):
        up_then_down = before[2] > before[1] and after[2] < after[1]
        if up_then_down and after[0] - before[0] < window:
            flaps.append({"at": round(after[0], 1), "phase": phase_of(after[0])})

    early_downs = 0
    for at, from_replicas, to in timeline.changes:
        if to >= from_replicas:
            continue
        if any(
            at - window + 1 < poll_at < at - 0.5 and recommendation(value, replicas) > to
            for poll_at, value, replicas in timeline.polls
        ):
            early_downs += 1

    # Overshoot: replicas scaled up to beyond what the phase's highest nominal value needs.
    overshoot: dict[str, int] = {}
    for phase in trace:
        start, end = spans[phase.name]
        reached = [c[2] for c in ups if start <= c[0] < end]
        overshoot[phase.name] = max(0, max(reached, default=0) - needed(phase.nominal_peak))

    # The step down: when the replicas reached what the lower load needs, counted from the first
    # low sample and from the last poll that still recommended more (where the window starts).
    step_down_start, step_down_end = spans["step-down"]
    low_need = needed(trace[[p.name for p in trace].index("step-down")].values[0])
    first_low = next((ts for ts, v in timeline.samples if ts >= step_down_start - 1 and v <= 20), None)
    reached_low = next(
        (c[0] for c in timeline.changes if step_down_start <= c[0] < step_down_end and c[2] <= low_need), None
    )
    last_high = max(
        (
            poll_at
            for poll_at, value, replicas in timeline.polls
            if reached_low is not None
            and poll_at < reached_low
            and recommendation(value, replicas) > low_need
        ),
        default=None,
    )
    total = float(sum(len(p.values) for p in trace))
    replica_seconds = 0.0
    previous_t, previous_r = 0.0, timeline.initial_replicas
    for at, _, to in [c for c in timeline.changes if c[0] < total]:
        replica_seconds += (max(at, 0.0) - previous_t) * previous_r
        previous_t, previous_r = max(at, 0.0), to
    replica_seconds += (total - previous_t) * previous_r
    needed_seconds = sum(needed(v) for _, v in flatten(trace))
    by_phase: dict[str, int] = {}
    for at, _, _ in timeline.changes:
        by_phase[phase_of(at)] = by_phase.get(phase_of(at), 0) + 1
    return {
        "reaction_seconds_max": max((r["seconds"] for r in reactions), default=None),
        "reaction_seconds": reactions,
        "scale_events": len(timeline.changes),
        "scale_events_by_phase": by_phase,
        "flaps": len(flaps),
        "flaps_in_noisy_hold": sum(1 for f in flaps if f["phase"] == "noisy-hold"),
        "overshoot_replicas_max": max(overshoot.values()),
        "overshoot_by_phase": overshoot,
        "scale_down_before_window": early_downs,
        "step_down_seconds_after_load_drop": (
            round(reached_low - first_low, 1) if reached_low is not None and first_low is not None else None
        ),
        "step_down_seconds_after_last_high_recommendation": (
            round(reached_low - last_high, 1) if reached_low is not None and last_high is not None else None
        ),
        "replica_seconds": round(replica_seconds),
        "needed_replica_seconds": needed_seconds,
        "replicas_at_end": timeline.replicas_at(total),
    }


# ---- simulation with decide() -------------------------------------------------------------------------


def autoscaling_spec(window: int) -> dict[str, Any]:
    return {
        "mode": "Active",
        "minReplicas": MIN_REPLICAS,
        "maxReplicas": MAX_REPLICAS,
        "tolerance": TOLERANCE,
        "metrics": [{"name": "rps", "query": QUERY, "targetPerReplica": TARGET_PER_REPLICA}],
        "scaleUp": {"stabilizationSeconds": 0},
        "scaleDown": {"stabilizationSeconds": window},
    }


def simulate(
    trace: Sequence[Phase], *, period: float, lag: float, window: int, offset: float = 0.0
) -> Timeline:
    """Replay the trace through decide(): a loop every ``period`` s reading the value ``lag`` s old."""
    values = [value for _, value in flatten(trace)]
    spec = AutoscalingSpec.model_validate(autoscaling_spec(window))
    epoch = datetime(2025, 1, 1, tzinfo=UTC)
    timeline = Timeline(samples=[(float(k), v) for k, v in enumerate(values)])
    history = AutoscalingHistory()
    current = 1
    t = offset
    while t < len(values):
        seen = values[max(0, min(len(values) - 1, math.floor(t - lag)))]
        decision = decide(
            spec=spec,
            current_replicas=current,
            samples={"rps": MetricSample(seen)},
            history=history,
            now=epoch + timedelta(seconds=t),
        )
        timeline.polls.append((t, seen, current))
        history = decision.history
        if decision.desired_replicas != current:
            timeline.changes.append((t, current, decision.desired_replicas))
            current = decision.desired_replicas
        t += period
    return timeline


def comparisons(trace: Sequence[Phase]) -> dict[str, dict[str, Any]]:
    models = {
        # HPA's controller reads the external/custom metric from prometheus-adapter every sync.
        "hpa_prometheus_adapter_lag30": {"period": 15, "lag": 30, "window": 300},
        "hpa_prometheus_adapter_lag90": {"period": 15, "lag": 90, "window": 300},
        # KEDA: HPA (15 s sync) asks KEDA's metrics server, which queries Prometheus (no adapter lag).
        "keda_hpa": {"period": 15, "lag": 0, "window": 300},
        # KEDA with useCachedMetrics: the value is refreshed every pollingInterval (30 s).
        "keda_cached_metrics": {"period": 15, "lag": 30, "window": 300},
    }
    results: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        timeline = simulate(trace, period=model["period"], lag=model["lag"], window=model["window"])
        summary = analyse(timeline, trace, window=model["window"], poll_seconds=model["period"])
        summary.pop("reaction_seconds")
        results[name] = {**model, **summary}
    return results


# ---- the real run -------------------------------------------------------------------------------------


def backend(
    namespace: str, prometheus_url: str, poll_seconds: int, window: int, name: str = NAME
) -> dict[str, Any]:
    return {
        "apiVersion": "sbo.dev/v1alpha1",
        "kind": "ScalableBackend",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": "sbo-sample-app:0.1.0",
            "prometheus": {"url": prometheus_url, "pollSeconds": poll_seconds, "timeoutSeconds": 2},
            "api": {"replicas": 1, "autoscaling": autoscaling_spec(window)},
            "redis": {"enabled": False},
            "postgres": {"enabled": False},
        },
    }


@contextlib.contextmanager
def bench_cluster(args: argparse.Namespace, hpa_sync_seconds: int = 15) -> Iterator[LocalCluster]:
    """A control plane of the bench's own (or, with --reuse-cluster, the developer's)."""
    if args.reuse_cluster:
        with LocalCluster.ensure() as cluster:
            yield cluster
        return
    say(
        f"own control plane: ports from {args.port_base}, HPA sync {hpa_sync_seconds}s, "
        f"state in {args.local_dir}"
    )
    cluster = LocalCluster.fresh(
        args.local_dir, args.port_base, env={"SBO_HPA_SYNC_SECONDS": str(hpa_sync_seconds)}
    )
    try:
        yield cluster
    finally:
        cluster.stop()


def record(path: Path, result: dict[str, Any], command: str) -> None:
    """Replace the JSON run in this section of docs/benchmarks.md (the prose around it stays)."""
    begin, end = "<!-- bench-autoscale begin -->", "<!-- bench-autoscale end -->"
    box = result["machine"]
    load = box["load_average_1m"]
    entry = (
        f"{begin}\n`{command}`, {result['date']}, {box['cpus']} cores ({box['platform']}), "
        f"1-minute load average {load['start']} at the start, {load['end']} at the end:\n\n"
        f"```json\n{json.dumps(result)}\n```\n{end}"
    )
    record_in_section(path, section=SECTION, begin=begin, end=end, entry=entry)
    say(f"recorded in {path}")


def measure_peers(args: argparse.Namespace, trace: Sequence[Phase]) -> dict[str, dict[str, Any]]:
    """Every phase of bench.peers, one control plane each; the measured entries by scaler key."""
    settings = peers.PhaseSettings(
        crd=CRD,
        query=QUERY,
        threshold=TARGET_PER_REPLICA,
        min_replicas=MIN_REPLICAS,
        max_replicas=MAX_REPLICAS,
        scrape_seconds=SCRAPE_SECONDS,
        keda_port_base=args.port_base,
        backend=lambda name, namespace, url, poll: backend(namespace, url, poll, args.window, name=name),
        say=say,
    )
    plans = peers.plans(
        operator_polls=args.operator_polls, window=args.window, tuned_period=args.poll_seconds
    )
    measured: dict[str, dict[str, Any]] = {}
    for plan in plans:
        if plan.name not in args.phases:
            continue
        if args.reuse_cluster and plan.hpa_sync_seconds != peers.HPA_DEFAULT_SYNC:
            raise SystemExit(
                "the tuned phase restarts the control plane with another HPA sync: not with --reuse-cluster"
            )
        observed = peers.run_phase(
            plan, flatten(trace), settings, lambda p=plan: bench_cluster(args, p.hpa_sync_seconds)
        )
        for scaler in plan.scalers:
            timeline = Timeline(
                samples=observed.samples,
                changes=observed.changes[scaler.key],
                polls=observed.reads[scaler.key],
            )
            summary = analyse(
                timeline, trace, window=scaler.window_seconds, poll_seconds=scaler.period_seconds
            )
            measured[scaler.key] = peers.measured_entry(summary, scaler, plan)
    peers.check_scaled(measured)
    return measured


def simulated_counterparts(args: argparse.Namespace, trace: Sequence[Phase]) -> dict[str, dict[str, Any]]:
    """The replay through decide() of each measured scaler's settings (KEDA's HPA queries at once)."""
    out: dict[str, dict[str, Any]] = {}
    for plan in peers.plans(
        operator_polls=args.operator_polls, window=args.window, tuned_period=args.poll_seconds
    ):
        for scaler in plan.scalers:
            lag = SCRAPE_SECONDS if scaler.kind == "sbo" else 0
            timeline = simulate(trace, period=scaler.period_seconds, lag=lag, window=scaler.window_seconds)
            summary = analyse(
                timeline, trace, window=scaler.window_seconds, poll_seconds=scaler.period_seconds
            )
            summary.pop("reaction_seconds")
            out[scaler.key] = {"simulated": True, **summary}
    return out


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.autoscale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--poll-seconds", type=int, default=5, help="spec.prometheus.pollSeconds (default 5)")
    parser.add_argument(
        "--operator-polls",
        type=_ints,
        default=(15, 5, 2),
        help="the operator's pollSeconds measured (15,5,2)",
    )
    parser.add_argument(
        "--phases", type=lambda text: tuple(text.split(",")), default=("defaults", "tuned"),
        help="peer phases to run: defaults,tuned",
    )  # fmt: skip
    parser.add_argument("--window", type=int, default=30, help="scaleDown.stabilizationSeconds (default 30)")
    parser.add_argument("--port-base", type=int, default=19440, help="the bench control plane's ports")
    parser.add_argument("--local-dir", type=Path, default=REPO / ".local" / "bench-autoscale")
    parser.add_argument("--reuse-cluster", action="store_true", help="use LocalCluster.ensure() instead")
    parser.add_argument("--simulate-only", action="store_true", help="only the HPA/KEDA/decide() replays")
    parser.add_argument("--no-record", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.poll_seconds not in args.operator_polls:
        parser.error("--poll-seconds must be one of --operator-polls")

    trace = build_trace()
    result: dict[str, Any] = {
        "benchmark": "autoscale",
        "poll_seconds": args.poll_seconds,
        "scale_down_window_seconds": args.window,
        "scrape_interval_seconds": SCRAPE_SECONDS,
        "target_per_replica": TARGET_PER_REPLICA,
        "trace_seconds": len(flatten(trace)),
        "trace": {phase.name: len(phase.values) for phase in trace},
    }
    load_before = os.getloadavg()
    if not args.simulate_only:
        measured_peers = measure_peers(args, trace)
        # The top-level keys stay this operator's, at --poll-seconds, from the defaults phase.
        ours = measured_peers.get(f"sbo_poll{args.poll_seconds}") or next(
            entry for entry in measured_peers.values() if entry["kind"] == "sbo"
        )
        result.update({key: value for key, value in ours.items() if key in peers.MEASURED_KEYS})
        reaction_max = ours["reaction_seconds_max"]
        result["reaction_target_met"] = reaction_max is not None and reaction_max <= args.poll_seconds + 1
        result["peers"] = measured_peers
        result["targets"] = peers.targets(measured_peers, operator_polls=args.operator_polls)
    simulated_sbo = simulate(trace, period=args.poll_seconds, lag=SCRAPE_SECONDS, window=args.window)
    sbo = analyse(simulated_sbo, trace, window=args.window, poll_seconds=args.poll_seconds)
    sbo.pop("reaction_seconds")
    counterparts = simulated_counterparts(args, trace)
    result["simulated"] = {"sbo_same_settings": sbo, **comparisons(trace), "peers": counterparts}
    if "peers" in result:
        peers.print_side_by_side(result["peers"], counterparts)
    result["date"] = datetime.now(UTC).date().isoformat()
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.machine(),
        "load_average_1m": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(result), flush=True)
    if not args.no_record and not args.simulate_only:
        record(DOCS, result, "make bench-autoscale")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


if __name__ == "__main__":
    main()
