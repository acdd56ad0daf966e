"""Pure helpers over the autoscaler's stored memory (recommendations and scale events).

The memory stays small: entries outside every window are dropped, recommendations that can no
longer change a window's minimum or maximum are dropped, and a hard cap bounds what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sbo_operator.api.autoscaling import ReplicaRecommendation, ScaleEvent

__all__ = [
    "MAX_HISTORY_ENTRIES",
    "prune_recommendations",
    "prune_scale_events",
    "replicas_changed_within",
]

# Bounds the status size whatever the windows and poll period are.
MAX_HISTORY_ENTRIES = 128


def prune_recommendations(
    recommendations: Sequence[ReplicaRecommendation], *, now: datetime, keep_seconds: int
) -> list[ReplicaRecommendation]:
    """Drop recommendations that can no longer influence a stabilization window.

    An entry older than ``keep_seconds`` (the longest window) is out of every window. An entry
    with a newer entry at least as high *and* a newer entry at least as low can never be a
    window's maximum or minimum: any window holding it also holds those newer entries.
    Expects ``recommendations`` oldest first; returns them oldest first.
    """
    cutoff = now - timedelta(seconds=keep_seconds)
    in_window = [rec for rec in recommendations if rec.time > cutoff]
    kept: list[ReplicaRecommendation] = []
    highest_newer: int | None = None
    lowest_newer: int | None = None
    for rec in reversed(in_window):
        dominated = (
            highest_newer is not None
            and lowest_newer is not None
            and highest_newer >= rec.replicas
            and lowest_newer <= rec.replicas
        )
        if not dominated:
            kept.append(rec)
        highest_newer = rec.replicas if highest_newer is None else max(highest_newer, rec.replicas)
        lowest_newer = rec.replicas if lowest_newer is None else min(lowest_newer, rec.replicas)
    kept.reverse()
    return kept[-MAX_HISTORY_ENTRIES:]


def prune_scale_events(events: Sequence[ScaleEvent], *, now: datetime, keep_seconds: int) -> list[ScaleEvent]:
    """Keep the scale events younger than ``keep_seconds`` (the longest policy period), newest last."""
    cutoff = now - timedelta(seconds=keep_seconds)
    return [event for event in events if event.time > cutoff][-MAX_HISTORY_ENTRIES:]


def replicas_changed_within(
    events: Sequence[ScaleEvent], *, now: datetime, period_seconds: int
) -> tuple[int, int]:
    """Replicas added and replicas removed by scale events in the last ``period_seconds``.

    HPA's getReplicasChangePerPeriod, once per direction.
    """
    cutoff = now - timedelta(seconds=period_seconds)
    added = 0
    removed = 0
    for event in events:
        if event.time > cutoff:
            change = event.to_replicas - event.from_replicas
            if change > 0:
                added += change
            else:
                removed -= change
    return added, removed
