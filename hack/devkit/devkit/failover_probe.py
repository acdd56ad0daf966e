"""A writer and a sampler through a backend's -rw Service during a fault, and what they saw.

Shared by the node tier's failover tests and ``make bench-failover``, so that both measure the
same thing. The script runs in one of the backend's api pods (its image has asyncpg and the app's
DATABASE_* env) and reaches -rw by its DNS name, as the app itself writes:

* the writer inserts numbered rows ``(run, id)`` one at a time and keeps each id whose commit
  returned, with the time it returned: an acknowledged write;
* the sampler opens a new connection every 100 ms and asks the server that answered for its
  address and ``pg_is_in_recovery()``: which server -rw reached, and whether it was writable.

Invariant: nothing here changes the backend except the rows the writer inserts into
:data:`PROBE_TABLE`, which the caller creates (:data:`CREATE_PROBE_TABLE`) before the first run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from collections.abc import Iterable
from typing import Any

from devkit.cluster import LocalCluster

PROBE_TABLE = "failover_probe"
# Run by a superuser on the primary; the app's role (the writer's login) may only insert.
CREATE_PROBE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (run text, id bigint, PRIMARY KEY (run, id));"
    f" GRANT INSERT ON {PROBE_TABLE} TO app"
)

WRITER_AND_SAMPLER = """
import asyncio, json, os, sys, time
import asyncpg

URL, PASSWORD = os.environ["DATABASE_URL"], os.environ["DATABASE_PASSWORD"]


async def writer(run, stop, acked):
    number, connection = 0, None
    while time.monotonic() < stop:
        try:
            if connection is None:
                connection = await asyncpg.connect(URL, password=PASSWORD, timeout=2)
            number += 1
            insert = connection.execute("INSERT INTO %s (run, id) VALUES ($1, $2)", run, number)
            await asyncio.wait_for(insert, 10)
            acked.append([number, time.time()])
        except Exception:
            if connection is not None:
                connection.terminate()
            connection = None
            await asyncio.sleep(0.05)


async def sampler(stop, samples):
    while time.monotonic() < stop:
        started = time.time()
        try:
            connection = await asyncpg.connect(URL, password=PASSWORD, timeout=0.5)
            try:
                row = await asyncio.wait_for(
                    connection.fetchrow("SELECT pg_is_in_recovery(), host(inet_server_addr())"), 1
                )
            finally:
                connection.terminate()
            samples.append([started, row[0], row[1]])
        except Exception:
            samples.append([started, None, None])
        await asyncio.sleep(max(0.0, 0.1 - (time.time() - started)))


async def main():
    run, stop = sys.argv[1], time.monotonic() + float(sys.argv[2])
    acked, samples = [], []
    await asyncio.gather(writer(run, stop, acked), sampler(stop, samples))
    print(json.dumps({"acked": acked, "samples": samples}))


asyncio.run(main())
""".replace("%s", PROBE_TABLE)


@dataclasses.dataclass
class ProbeRecord:
    """What the writer and the sampler saw: acknowledged ids with their times, and -rw's samples
    ``[time, in_recovery, address]`` (``None, None`` when -rw did not answer within 0.5 s)."""

    acked: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    samples: list[tuple[float, bool | None, str | None]] = dataclasses.field(default_factory=list)

    @property
    def acked_ids(self) -> list[int]:
        return [number for number, _ in self.acked]

    def lost(self, stored: Iterable[int]) -> list[int]:
        """Ids acknowledged but not stored afterwards."""
        return sorted(set(self.acked_ids) - set(stored))

    def write_outage_seconds(self, fault: float) -> float | None:
        """The longest wait between two acknowledged writes from ``fault`` on (None: no write on
        one side of it). For a deleted primary this is the last acknowledged write before the
        fault to the first after it; a switchover's writes go on for a moment after its request
        (the fault) until the old primary stops, and the gap that follows is the outage."""
        gap = self.longest_write_gap(fault)
        return None if gap is None else round(gap[1] - gap[0], 2)

    def longest_write_gap(self, fault: float) -> tuple[float, float] | None:
        """The two acknowledgements around :meth:`write_outage_seconds`'s wait (epoch seconds)."""
        times = [at for _, at in self.acked]
        if not any(at < fault for at in times) or not any(at >= fault for at in times):
            return None
        return max(
            ((earlier, later) for earlier, later in itertools.pairwise(times) if later >= fault),
            key=lambda gap: gap[1] - gap[0],
        )

    def writable_servers_in_order(self) -> list[str]:
        """The servers -rw reached writable, in the order they answered, runs collapsed."""
        order: list[str] = []
        for _, in_recovery, address in self.samples:
            if in_recovery is False and address is not None and (not order or order[-1] != address):
                order.append(address)
        return order

    def two_primaries_observed(self) -> bool:
        """-rw reached a writable server after another had taken over: more than the one change
        of writable server a failover or a switchover makes (A, B, A or A, B, C)."""
        return len(self.writable_servers_in_order()) > 2


class Probe:
    """The writer and the sampler running in ``pod`` for ``seconds``, in a thread; :meth:`join`
    gives their record."""

    def __init__(self, cluster: LocalCluster, namespace: str, pod: str, *, run: str, seconds: float) -> None:
        self._cluster, self._namespace, self._pod = cluster, namespace, pod
        self._run, self._seconds = run, seconds
        self._output: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._exec, name=f"probe-{run}", daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def _exec(self) -> None:
        done = self._cluster.kubectl(
            "exec", "-i", "-n", self._namespace, self._pod, "--",
            "python", "-", self._run, str(self._seconds),
            input=WRITER_AND_SAMPLER, timeout=self._seconds + 60,
        )  # fmt: skip
        self._output.update(json.loads(done.stdout))

    def join(self) -> ProbeRecord:
        self._thread.join(timeout=self._seconds + 90)
        if not self._output:
            raise AssertionError(f"the writer and sampler in {self._pod} did not report")
        return ProbeRecord(
            acked=[(int(number), float(at)) for number, at in self._output["acked"]],
            samples=[(float(at), recovery, address) for at, recovery, address in self._output["samples"]],
        )
