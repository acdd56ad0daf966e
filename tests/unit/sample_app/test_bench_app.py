"""The sample-app benchmark's pure parts: the Zipf workload and the docs section it rewrites."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.app import record, task_urls, zipf_ids

pytestmark = pytest.mark.unit


def test_zipf_ids_are_skewed_deterministic_and_in_range() -> None:
    ids = zipf_ids(1000, 20_000, 1.0, seed=3)
    assert ids == zipf_ids(1000, 20_000, 1.0, seed=3)
    assert min(ids) >= 1
    assert max(ids) <= 1000
    top = Counter(ids).most_common(10)
    assert sum(n for _, n in top) > 0.3 * len(ids)  # Zipf(1) over 1000 keys: top 10 ~ 39%
    assert [i for i, _ in top] != list(range(1, 11))  # popularity is scattered over ids


def test_task_urls_keep_the_order_of_the_ids() -> None:
    assert task_urls("http://127.0.0.1:8000", [5, 7, 5]) == [
        "GET http://127.0.0.1:8000/api/v1/tasks/5",
        "GET http://127.0.0.1:8000/api/v1/tasks/7",
        "GET http://127.0.0.1:8000/api/v1/tasks/5",
    ]


def fake_results(rps: float) -> dict[str, Any]:
    def scenario(prefix: str) -> dict[str, Any]:
        return {f"{prefix}_{k}": 1.0 for k in ("rps", "p50_ms", "p95_ms", "p99_ms")} | {f"{prefix}_errors": 0}

    return {
        "duration_s": 10,
        "date": "2026-01-01T00:00:00Z",
        "host": "test",
        "cached_get_rps": rps,
        "cached_get_max_throughput": scenario("max"),
        "cached_get_at_rate": scenario("paced") | {"target_rps": 1000},
        **scenario("uncached_get"),
        **scenario("list"),
        **scenario("post"),
        "naive": scenario("max") | scenario("paced"),
        "overload": {
            "capacity_rps": 900.0,
            "offered_rps": 1800,
            "goodput_rps": 855.0,
            "goodput_vs_capacity": 0.95,
            "shed_rps": 945.0,
            "shed_fraction": 0.525,
            "status_codes": {"200": 8550, "503": 9450},
        }
        | scenario("load"),
        "connections": 32,
        "zipf": {
            "exponent": 1.0,
            "keys": 10,
            "rate": 1000,
            "default_cache_ttl_seconds": 120,
            "cache_on": [
                {
                    "ttl_seconds": ttl,
                    "requests_per_window": 100,
                    "first_window": {"distinct_ids": 10, "db_reads_per_1000": 100.0}
                    | {"db_read_reduction": 0.9, "load_p95_ms": 1.0},
                    "steady_state": {"distinct_ids": 9, "db_reads_per_1000": 90.0}
                    | {"db_read_reduction": 0.91, "load_p95_ms": 1.0},
                }
                for ttl in (120, 60)
            ],
            "cache_off": {"requests": 20, "distinct_ids": 8, "db_reads_per_1000": 1000.0, "load_p95_ms": 2.0},
        },
        "load_average_at_start": [1.0, 1.0, 1.0],
        "load_average_at_end": [1.0, 1.0, 1.0],
        "db_reads_per_1000_cache_on": 100.0,
        "db_reads_per_1000_cache_off": 1000.0,
        "db_read_reduction": 0.9,
        "tuned_vs_naive_rps_ratio": 3.0,
        "naive_vs_tuned_paced_p95_ratio": 2.0,
        "targets": {
            "cached_get_p95_le_20ms_at_1000rps": True,
            "zero_errors": True,
            "db_read_reduction_ge_90pct": True,
            "overload_goodput_ge_90pct_of_capacity": True,
        },
    }


def test_record_replaces_only_its_own_section(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Reconcile\n\nsomeone else's numbers\n")
    record(fake_results(111.0), docs)
    record(fake_results(222.0), docs)
    text = docs.read_text()
    assert text.count("## Sample app") == 1
    assert "someone else's numbers" in text
    assert "222.0" in text
    assert "111.0" not in text
    docs.write_text(text + "\n## Autoscale\n\nlater section\n")
    record(fake_results(333.0), docs)
    text = docs.read_text()
    assert "later section" in text
    assert "## Reconcile" in text
    assert text.index("## Reconcile") < text.index("## Sample app") < text.index("## Autoscale")


def test_record_states_the_overload_goodput_and_shed_rate(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    record(fake_results(111.0), docs)
    text = " ".join(docs.read_text().split())
    assert "offered 1800 req/s, 2x the capacity of 900.0 req/s" in text
    assert "the app served 855.0 req/s (95% of capacity) and shed 945.0 req/s with 503" in text
    assert "goodput at 2x capacity ≥ 90% of capacity: True" in text
