"""What benchmarks measure: CPU and memory of processes, the machine, the revision, API requests.

Everything reads /proc or the local API server; progress goes to stderr (:func:`say`), so that
stdout carries only a benchmark's JSON line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubernetes.aio.dynamic import DynamicClient

from devkit.paths import REPO
from devkit.promtext import Labels, samples, total_by

MIB = 1024 * 1024
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})

_started = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr, stamped with the seconds since the process started."""
    print(f"[{time.monotonic() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


# ---- processes and the machine ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (children not included), or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, see proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice, already counted in user]
    idle = fields[3] + fields[4]
    busy = sum(fields[:8]) - idle
    ticks = os.sysconf("SC_CLK_TCK")
    return busy / ticks, idle / ticks


def status_kib(pid: int, field: str) -> int | None:
    """A `kB` field of /proc/<pid>/status, such as VmHWM (peak RSS) or VmRSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class CpuClock:
    """CPU seconds used by each process of interest between two readings.

    Also what the rest of the machine used meanwhile ("others"): on a shared
    development machine, other work competes for the same cores, and the
    figures are only comparable when that is small.
    """

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.start = self._read()
        self.machine_start = machine_cpu_seconds()

    def _read(self) -> dict[str, float]:
        readings = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return {name: value for name, value in readings.items() if value is not None}

    def used(self) -> dict[str, float]:
        now = self._read()
        used = {name: round(now[name] - self.start[name], 1) for name in now if name in self.start}
        busy, idle = (
            after - before for after, before in zip(machine_cpu_seconds(), self.machine_start, strict=True)
        )
        used["others"] = round(max(0.0, busy - sum(used.values())), 1)
        used["idle"] = round(idle, 1)
        return used


def revision(path: str) -> str:
    """The commit measured, and whether `path` had uncommitted changes at the time."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (f" + uncommitted changes in {path}" if git("status", "--porcelain", "--", path) else "")


def machine() -> dict[str, Any]:
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {"cpus": os.cpu_count(), "memory_gib": round(mem_kib / MIB)}


# ---- requests the API server served --------------------------------------------------------------------


async def apiserver_requests(dynamic: DynamicClient) -> dict[Labels, float]:
    """`apiserver_request_total` from kube-apiserver's /metrics (cluster-wide: every client)."""
    response = await dynamic.request("get", "/metrics", serialize=False)
    try:
        text = await response.text()
    finally:
        response.release()
    return samples(text, "apiserver_request_total")


def resource_of(labels: Mapping[str, str]) -> str:
    resource = labels.get("resource") or labels.get("subresource") or "(non-resource)"
    if labels.get("resource") and labels.get("subresource"):
        resource += "/" + labels["subresource"]
    return resource


def by_verb(series: Mapping[Labels, float]) -> dict[str, int]:
    return total_by(series, lambda labels: labels.get("verb"))


def writes_by_resource(series: Mapping[Labels, float]) -> dict[str, int]:
    return total_by(
        series,
        lambda labels: (
            f"{labels['verb']} {resource_of(labels)}" if labels.get("verb") in WRITE_VERBS else None
        ),
    )


def write_request_count(series: Mapping[Labels, float]) -> int:
    return sum(writes_by_resource(series).values())
