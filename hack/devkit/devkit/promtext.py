"""Samples out of the Prometheus text exposition format (the operator's and kube-apiserver's /metrics)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping

_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?P<labels>\{.*\})? (?P<value>\S+)", re.M)
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]


def _family(text: str, name: str) -> Iterator[tuple[str, float]]:
    """(label text, value) of every sample of the metric ``name``."""
    for match in _SAMPLE.finditer(text):
        if match.group("name") == name:
            yield match.group("labels") or "", float(match.group("value"))


def label_text_samples(text: str, name: str) -> dict[str, float]:
    """The samples of one metric, keyed by their label text as exposed (``{a="1"}``, or "")."""
    return dict(_family(text, name))


def samples(text: str, name: str) -> dict[Labels, float]:
    """The samples of one metric, keyed by their sorted labels."""
    return {tuple(sorted(_LABEL.findall(labels))): value for labels, value in _family(text, name)}


def delta(before: Mapping[Labels, float], after: Mapping[Labels, float]) -> dict[Labels, float]:
    """after - before per series; a series that appeared counts from 0."""
    return {
        key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)
    }


def total_by(series: Mapping[Labels, float], key: Callable[[dict[str, str]], str | None]) -> dict[str, int]:
    """Sum series grouped by `key(labels)`; series for which key returns None are left out."""
    totals: Counter[str] = Counter()
    for labels, value in series.items():
        group = key(dict(labels))
        if group is not None:
            totals[group] += round(value)
    return dict(sorted(totals.items()))


def histogram_quantiles(
    before: Mapping[Labels, float], after: Mapping[Labels, float], quantiles: tuple[float, ...]
) -> dict[str, float | None]:
    """Quantiles of a histogram's increase, interpolated within buckets like histogram_quantile."""
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
