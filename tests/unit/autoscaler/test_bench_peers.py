"""The autoscaling benchmark's peer parsing: replica snapshots to timelines to the measured keys."""

from __future__ import annotations

from typing import Any

import pytest

from bench.autoscale import Timeline, analyse, build_trace, phase_spans
from bench.peers import (
    MEASURED_KEYS,
    PeerFailed,
    PhasePlan,
    Scaler,
    changes_from_snapshots,
    check_scaled,
    hpa_metric_value,
    measured_entry,
    operator_values,
    plain_hpa,
    plans,
    reads_from_snapshots,
    scaled_object,
    targets,
)

pytestmark = pytest.mark.unit

KEDA = Scaler("keda", "keda", 15, 300)
KEDA_TUNED = Scaler("keda_tuned", "keda", 5, 30, polling_interval=5)
DEFAULTS = PhasePlan("defaults", 15, (KEDA,))


def test_changes_come_from_snapshots_and_skip_unreadable_ones() -> None:
    snapshots = [
        (0.1, {"a": 1, "b": 1}),
        (0.2, {"a": 2, "b": None}),  # b not readable this time: no change
        (0.3, {"a": 2, "b": 1}),
        (0.4, {"a": 5, "b": 3}),
        (0.5, {"a": 3, "b": 3}),
    ]
    assert changes_from_snapshots(snapshots, {"a": 1, "b": 1}) == {
        "a": [(0.2, 1, 2), (0.4, 2, 5), (0.5, 5, 3)],
        "b": [(0.4, 1, 3)],
    }


def test_reads_are_value_changes_with_the_replicas_of_that_moment() -> None:
    changes = {"a": [(1.0, 1, 4)]}
    snapshots = [(0.5, {"a": 4.0}), (0.6, {"a": 4.0}), (0.9, {"a": None}), (1.5, {"a": 40.0})]
    assert reads_from_snapshots(snapshots, changes) == {"a": [(0.5, 4.0, 1), (1.5, 40.0, 4)]}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            {"currentReplicas": 2, "currentMetrics": [{"external": {"current": {"averageValue": "10500m"}}}]},
            21.0,
        ),
        ({"currentReplicas": 3, "currentMetrics": [{"external": {"current": {"averageValue": "20"}}}]}, 60.0),
        ({"currentReplicas": 1, "currentMetrics": None}, None),  # before the first sync
        ({"currentReplicas": 1, "currentMetrics": [{"type": "External"}]}, None),  # metric unavailable
        (None, None),
    ],
)
def test_hpa_metric_value_is_average_times_replicas(
    status: dict[str, Any] | None, expected: float | None
) -> None:
    assert hpa_metric_value(status) == expected


def test_operator_values_keep_this_namespace_and_the_api_component() -> None:
    samples = {
        '{component="api",metric="rps",name="sbo-poll5",namespace="ns1"}': 42.0,
        '{component="worker",metric="rps",name="sbo-poll5",namespace="ns1"}': 7.0,
        '{component="api",metric="rps",name="sbo-poll2",namespace="other"}': 1.0,
    }
    assert operator_values(samples, "ns1") == {"sbo-poll5": 42.0}


def _step_follower(delay: float) -> Timeline:
    """A scaler that follows every step of the trace ``delay`` seconds after the first sample past it."""
    spans = phase_spans(build_trace())
    up1, up2 = spans["up-x5"][0], spans["up-x5-again"][0]
    trace = build_trace()
    samples = [(float(t), v) for t, v in enumerate(v for p in trace for v in p.values)]
    changes = [(up1 + delay, 1, 2), (up2 + delay, 2, 10), (spans["step-down"][0] + 40, 10, 2)]
    return Timeline(samples=samples, changes=changes, polls=[])


def test_a_timeline_becomes_the_measured_keys() -> None:
    summary = analyse(_step_follower(12.0), build_trace(), window=30, poll_seconds=15)
    entry = measured_entry(summary, KEDA, DEFAULTS)
    assert entry["measured"] is True
    assert entry["kind"] == "keda"
    assert entry["polling_interval_seconds"] == 30  # KEDA's default, as ScaledObject leaves it out
    assert set(MEASURED_KEYS) <= set(entry)
    assert entry["reaction_seconds_max"] == pytest.approx(12.0)
    assert [r["phase"] for r in entry["reaction_seconds"]] == ["up-x5", "up-x5-again"]
    assert entry["scale_events"] == 3
    assert entry["flaps"] == 0
    assert entry["step_down_seconds_after_load_drop"] == pytest.approx(40.0)


def test_a_quick_reversal_is_a_flap() -> None:
    timeline = _step_follower(3.0)
    up2 = phase_spans(build_trace())["up-x5-again"][0]
    timeline.changes.insert(2, (up2 + 10, 10, 8))
    timeline.changes.insert(3, (up2 + 11, 8, 10))
    summary = analyse(timeline, build_trace(), window=30, poll_seconds=5)
    assert summary["flaps"] == 1


def test_a_peer_that_never_scaled_fails_the_benchmark() -> None:
    with pytest.raises(PeerFailed, match="keda"):
        check_scaled({"sbo_poll5": {"scale_events": 4}, "keda": {"scale_events": 0}})


def test_targets_compare_in_the_same_phase() -> None:
    def entry(reaction: float, flaps: int, replica_seconds: int) -> dict[str, Any]:
        return {
            "reaction_seconds_max": reaction,
            "flaps": flaps,
            "flaps_in_noisy_hold": 0,
            "replica_seconds": replica_seconds,
        }

    result = targets(
        {
            "sbo_poll5": entry(4.0, 0, 1700),
            "keda": entry(15.0, 0, 2200),
            "sbo_poll5_run2": entry(4.0, 0, 1700),
            "keda_tuned": entry(9.0, 1, 1600),
            "sbo_poll2": entry(2.0, 0, 1800),
            "sbo_poll15": entry(30.0, 1, 1400),
        },
        operator_polls=[15, 5, 2],
    )
    assert result["sbo_poll5_vs_keda"]["worst_reaction_at_most_a_third"] is True
    assert result["sbo_poll5_vs_keda"]["replica_seconds_no_more"] is True
    assert result["sbo_poll5_vs_keda"]["met"] is True
    tuned = result["sbo_poll5_run2_vs_keda_tuned"]
    assert tuned["worst_reaction_at_most_a_third"] is False
    assert tuned["flaps_no_more"] is True
    assert tuned["replica_seconds_no_more"] is False
    assert tuned["met"] is False
    # Every poll measured is compared, each against the same KEDA run; a poll whose tuned run is
    # missing has no tuned comparison.
    assert result["sbo_poll2_vs_keda"]["met"] is True
    assert result["sbo_poll15_vs_keda"]["worst_reaction_at_most_a_third"] is False
    assert result["sbo_poll15_vs_keda"]["met"] is False
    assert "sbo_poll2_run2_vs_keda_tuned" not in result


def test_peers_at_defaults_leave_the_defaults_out_and_tuned_ones_set_them() -> None:
    limits = {"min_replicas": 1, "max_replicas": 20}
    default = scaled_object(KEDA, "ns", prometheus_url="http://p", query="q", threshold=10.0, **limits)
    assert "pollingInterval" not in default["spec"]
    assert "advanced" not in default["spec"]
    assert default["spec"]["triggers"][0]["metadata"] == {
        "serverAddress": "http://p",
        "query": "q",
        "threshold": "10",
    }
    tuned = scaled_object(KEDA_TUNED, "ns", prometheus_url="http://p", query="q", threshold=10.0, **limits)
    assert tuned["spec"]["pollingInterval"] == 5
    behavior = tuned["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 30}}
    hpa = plain_hpa(
        Scaler("hpa", "hpa", 15, 300), "ns", metric_name="s0-prometheus", scaled_object_name="keda",
        threshold=10.0, **limits,
    )  # fmt: skip
    assert "behavior" not in hpa["spec"]
    metric = hpa["spec"]["metrics"][0]["external"]
    assert metric["metric"]["selector"] == {"matchLabels": {"scaledobject.keda.sh/name": "keda"}}
    assert metric["target"] == {"type": "AverageValue", "averageValue": "10"}


def test_the_tuned_phase_matches_the_operator_settings() -> None:
    defaults, tuned = plans(operator_polls=(15, 5, 2), window=30, tuned_period=5)
    assert [s.key for s in defaults.scalers] == ["sbo_poll15", "sbo_poll5", "sbo_poll2", "keda", "hpa"]
    assert defaults.hpa_sync_seconds == 15
    assert tuned.hpa_sync_seconds == 5
    assert {s.window_seconds for s in tuned.scalers} == {30}
    assert [s.deployment for s in tuned.scalers][:1] == ["sbo-poll15-run2-api"]
