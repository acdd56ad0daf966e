"""The sample-app benchmark's pure parts: the Zipf workload and the docs section it rewrites."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.app import (
    CpuMeter,
    CpuPinning,
    CpuProfile,
    app_cpu_efficiency,
    machine_busy_seconds,
    overload_summary,
    parse_app_settings,
    parse_vegeta_report,
    parse_wrk_report,
    per_cpu_busy_seconds,
    pin_process_tree,
    process_tree,
    record,
    task_urls,
    tree_cpu_seconds,
    zipf_ids,
)

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


WRK_REPORT_FIELDS = {
    "requests": 12000,
    "ok_2xx": 8000,
    "duration_us": 10_000_000,
    "connect": 0,
    "read": 3,
    "write": 0,
    "status": 4000,
    "timeout": 2,
    "p50_us": 1500,
    "p95_us": 9000,
    "p99_us": 20000,
}
WRK_STDOUT = (
    "Running 10s test @ http://127.0.0.1:8000\n  1 threads and 32 connections\n"
    f"WRKJSON {json.dumps(WRK_REPORT_FIELDS)}\n"
)


def test_wrk_capacity_counts_2xx_answers_only() -> None:
    result = parse_wrk_report(WRK_STDOUT)
    assert result.rps == 800.0  # 8,000 2xx in 10 s: the 4,000 refusals are not throughput
    assert result.requests == 12000
    assert result.ok == 8000
    assert result.errors == 4000 + 3 + 2  # non-2xx answers, plus requests that got no answer
    assert (result.p50_ms, result.p95_ms, result.p99_ms) == (1.5, 9.0, 20.0)


def test_wrk_without_its_report_line_is_a_failure() -> None:
    with pytest.raises(RuntimeError, match="wrk failed"):
        parse_wrk_report("unable to connect to 127.0.0.1:8000", "Connection refused")


def vegeta_report(status_codes: dict[str, int], *, duration_s: float, wait_s: float) -> str:
    return json.dumps(
        {
            "latencies": {"50th": 2_000_000, "95th": 40_000_000, "99th": 900_000_000},
            "duration": int(duration_s * 1e9),
            "wait": int(wait_s * 1e9),
            "requests": sum(status_codes.values()),
            "throughput": 999.0,  # vegeta's own: counts 3xx as success; never used
            "status_codes": status_codes,
        }
    )


def test_vegeta_goodput_is_2xx_per_second_of_the_attack_and_its_wait() -> None:
    text = vegeta_report(
        {"200": 7000, "204": 500, "302": 100, "503": 9000, "0": 40}, duration_s=10, wait_s=2.5
    )
    result = parse_vegeta_report(text)
    assert result.rps == 600.0  # 7,500 2xx over 12.5 s
    assert result.requests == 16640
    assert result.ok == 7500
    assert result.errors == 16640 - 7500
    assert result.status_codes["503"] == 9000
    assert (result.p50_ms, result.p95_ms, result.p99_ms) == (2.0, 40.0, 900.0)


def test_the_overload_summary_compares_2xx_with_2xx() -> None:
    capacity = parse_wrk_report(WRK_STDOUT)  # 800 2xx/s
    load = parse_vegeta_report(vegeta_report({"200": 7600, "503": 8400}, duration_s=10, wait_s=0))
    summary = overload_summary([capacity], load, offered_rps=1600)
    assert summary["capacity_rps"] == 800.0
    assert summary["capacity_not_2xx"] == 4005
    assert summary["goodput_rps"] == 760.0
    assert summary["goodput_vs_capacity"] == 0.95
    assert summary["shed_fraction"] == 0.525
    assert summary["shed_rps"] == 840.0
    assert summary["load_errors"] == 8400


def test_cpu_profile_splits_the_machine_by_role() -> None:
    profile = CpuProfile(seconds=10, cores=2, app=12, databases=3, load_generator=2, machine_busy=19)
    assert profile.as_dict() == {
        "app_cores": 1.2,
        "databases_cores": 0.3,
        "load_generator_cores": 0.2,
        "other_processes_cores": 0.2,
        "idle_cores": 0.1,
    }


BURN_THEN_WAIT = """
import sys, time
start = time.process_time()
while time.process_time() - start < 0.3:
    pass
print("burnt", flush=True)
sys.stdin.readline()
"""


def test_tree_cpu_seconds_includes_the_descendants() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", BURN_THEN_WAIT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "burnt\n"
        own = tree_cpu_seconds(child.pid)
        assert own >= 0.3
        assert tree_cpu_seconds(os.getpid()) >= own + time.process_time() - 0.05  # -: clock ticks
    finally:
        child.communicate("\n", timeout=10)


def test_app_settings_for_a_comparison_run_are_key_value_pairs() -> None:
    assert parse_app_settings(["CONCURRENCY_LIMIT=64", "CONCURRENCY_QUEUE_SIZE=0", "X=a=b"]) == {
        "CONCURRENCY_LIMIT": "64",
        "CONCURRENCY_QUEUE_SIZE": "0",
        "X": "a=b",
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_app_settings(["CONCURRENCY_LIMIT"])


def test_the_capacity_is_the_mean_of_the_runs_around_the_overload() -> None:
    before = parse_wrk_report(WRK_STDOUT)  # 800 2xx/s
    after = parse_wrk_report(WRK_STDOUT.replace('"ok_2xx": 8000', '"ok_2xx": 6000'))  # 600 2xx/s
    load = parse_vegeta_report(vegeta_report({"200": 6300, "503": 9700}, duration_s=10, wait_s=0))
    summary = overload_summary([before, after], load, offered_rps=1600)
    assert summary["capacity_runs_rps"] == [800.0, 600.0]
    assert summary["capacity_rps"] == 700.0
    assert summary["goodput_vs_capacity"] == 0.9


def test_app_cpu_efficiency_does_not_depend_on_the_apps_share_of_the_machine() -> None:
    capacity = [parse_wrk_report(WRK_STDOUT)]  # 8,000 2xx
    capacity_cpu = [CpuProfile(seconds=10, cores=2, app=16, databases=2, load_generator=0.5, machine_busy=19)]
    load = parse_vegeta_report(vegeta_report({"200": 3600, "503": 12400}, duration_s=10, wait_s=0))
    # Half the CPU share under overload, and 10% of it spent on refusals: 2xx per CPU-second 450.
    load_cpu = CpuProfile(seconds=10, cores=2, app=8, databases=1, load_generator=2, machine_busy=20)
    assert app_cpu_efficiency(capacity, capacity_cpu, load, load_cpu) == {
        "capacity_2xx_per_app_cpu_second": 500.0,
        "overload_2xx_per_app_cpu_second": 450.0,
        "app_cpu_efficiency_vs_capacity": 0.9,
    }


def test_cpu_pinning_gives_the_app_its_own_cpus() -> None:
    assert CpuPinning.split({0, 1}) == CpuPinning(app=(0,), rest=(1,))
    assert CpuPinning.split([3, 1, 2, 0]) == CpuPinning(app=(0, 1), rest=(2, 3))
    assert CpuPinning.split({0, 1, 2}) == CpuPinning(app=(0,), rest=(1, 2))
    assert CpuPinning.split({5}) is None  # one CPU: nothing to separate


WAIT_IN_A_CHILD = """
import subprocess, sys, threading
threading.Thread(target=threading.Event().wait, daemon=True).start()
child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE)
print(child.pid, flush=True)
sys.stdin.readline()
child.communicate(b"\\n")
"""


def test_pinning_reaches_every_thread_of_every_process_of_the_tree() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", WAIT_IN_A_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        grandchild = int(parent.stdout.readline())
        assert process_tree(parent.pid) == [parent.pid, grandchild]
        cpu = min(os.sched_getaffinity(0))
        pinned = pin_process_tree(parent.pid, [cpu])
        assert pinned == {parent.pid: [cpu], grandchild: [cpu]}
        threads = list(Path(f"/proc/{parent.pid}/task").iterdir())
        assert len(threads) == 2  # the main thread and the reader: both pinned
        assert all(os.sched_getaffinity(int(t.name)) == {cpu} for t in threads)
    finally:
        parent.communicate("\n", timeout=10)


def test_the_busy_time_of_each_cpu_adds_up_to_the_machines() -> None:
    by_cpu = per_cpu_busy_seconds()
    assert sorted(by_cpu) == list(range(len(by_cpu)))
    assert sum(by_cpu.values()) == pytest.approx(machine_busy_seconds(), abs=len(by_cpu) * 0.5)


def test_the_cpu_meter_names_each_process_and_counts_each_cpu() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", BURN_THEN_WAIT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        with CpuMeter(os.getpid(), [], servers={"burner": child.pid}) as meter:
            assert child.stdout.readline() == "burnt\n"
        profile = meter.profile.as_dict()
        assert profile["process_cores"]["burner"] > 0
        assert "app supervisor" in profile["process_cores"]  # this process stands for the app here
        assert f"app worker {child.pid}" in profile["process_cores"]
        assert set(profile["busy_cores_by_cpu"]) == {f"cpu{n}" for n in per_cpu_busy_seconds()}
        assert sum(profile["busy_cores_by_cpu"].values()) > 0
    finally:
        child.communicate("\n", timeout=10)
