"""synchronous.required on real pods: a missing standby, with and without ``required``.

The module runs the shared backend (tests/node/shop_backend.py; conftest.py's fixtures: its own
control plane with the real node, the operator as a local process, examples/basic.yaml on the
local images), changed to one read replica and ``synchronous: {standbys: 1, required: false}``.

The standby is kept from streaming for about 20 s: every PostgreSQL process of its pod is
SIGSTOPped from the host, and the primary's walsender to it is terminated (a stopped standby
cannot reconnect; without that, the primary would notice only after wal_sender_timeout). The pod
is neither deleted nor restarted, so nothing but the standby's absence changes. Then:

* ``required: false``: a write through -rw (from an api pod, as the app writes) is acknowledged
  within a few seconds, since the operator lowers the primary's synchronous_standby_names to ''
  once its probe shows no standby streaming; when the standby is back (SIGCONT) the value is
  ``ANY 1 (...)`` again and status.postgres.synchronous says so;
* ``required: true``: the same write is not acknowledged within its timeout: the commit waits
  for the missing standby, and the operator leaves the value as it is.

The last test stops the control plane and proves the host is as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devkit.cluster import LocalCluster, eventually
from devkit.failover_probe import CREATE_PROBE_TABLE
from devkit.real_pods import postgres_host_processes
from tests.node import test_backend_on_real_pods as real_pods
from tests.node.shop_backend import (
    NAME,
    NAMESPACE,
    Backend,
    Figures,
    get_json,
)
from tests.node.test_backend_on_real_pods import (
    api_pods,
    postgres_roles,
    psql,
    wait_ready_at_current_generation,
)

pytestmark = pytest.mark.node


DOWN_SECONDS = 20
ANY_1 = ", ".join(f'"{NAME}-postgres-{ordinal}"' for ordinal in range(6))
ANY_1 = f"ANY 1 ({ANY_1})"

# One INSERT through -rw from an api pod, bounded by a client timeout (asyncpg then cancels it:
# a commit cancelled while it waits for a standby is kept locally, with a WARNING). Prints its
# seconds and whether it was acknowledged within the timeout.
TIMED_WRITE = """
import asyncio, json, os, sys, time
import asyncpg

async def main():
    url, password = os.environ["DATABASE_URL"], os.environ["DATABASE_PASSWORD"]
    connection = await asyncpg.connect(url, password=password, timeout=5)
    insert = "INSERT INTO failover_probe (run, id) VALUES ($1, $2)"
    started = time.monotonic()
    try:
        await asyncio.wait_for(connection.execute(insert, sys.argv[1], int(sys.argv[2])), float(sys.argv[3]))
        acknowledged = True
    except asyncio.TimeoutError:
        acknowledged = False
    print(json.dumps({"acknowledged": acknowledged, "seconds": time.monotonic() - started}))
    connection.terminate()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def one_optional_standby(real_cluster: LocalCluster, backend: Backend) -> None:
    """One read replica, one synchronous standby, not required."""
    patch = {"spec": {"postgres": {"readReplicas": 1, "synchronous": {"standbys": 1, "required": False}}}}
    real_cluster.kubectl("patch", f"sb/{NAME}", "-n", NAMESPACE, "--type=merge", "-p", json.dumps(patch))
    wait_ready_at_current_generation(real_cluster)
    eventually(
        lambda: len(postgres_roles(real_cluster)[1]) == 1, timeout=120, interval=2, what="one replica left"
    )
    primary, _ = postgres_roles(real_cluster)
    psql(real_cluster, primary, CREATE_PROBE_TABLE)


def set_required(cluster: LocalCluster, required: bool) -> None:
    patch = {"spec": {"postgres": {"synchronous": {"standbys": 1, "required": required}}}}
    cluster.kubectl("patch", f"sb/{NAME}", "-n", NAMESPACE, "--type=merge", "-p", json.dumps(patch))
    wait_ready_at_current_generation(cluster)


def synchronous_status(cluster: LocalCluster) -> dict[str, Any]:
    found: dict[str, Any] = (
        get_json(cluster, f"sb/{NAME}", namespace=NAMESPACE)["status"]["postgres"].get("synchronous") or {}
    )
    return found


def shown(cluster: LocalCluster, primary: str) -> str:
    [[value]] = psql(cluster, primary, "SHOW synchronous_standby_names") or [[""]]
    return value


def streaming(cluster: LocalCluster, primary: str) -> list[str]:
    rows = psql(
        cluster, primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
    )
    return sorted(row[0] for row in rows)


def timed_write(cluster: LocalCluster, run: str, row_id: int, timeout: float) -> dict[str, Any]:
    writer = api_pods(cluster)[0]["metadata"]["name"]
    done = cluster.kubectl(
        "exec", "-i", "-n", NAMESPACE, writer, "--", "python", "-", run, str(row_id), str(timeout),
        input=TIMED_WRITE, timeout=timeout + 60,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


class StoppedStandby:
    """The standby's processes SIGSTOPped and its walsender on the primary terminated, until exit."""

    def __init__(self, cluster: LocalCluster, primary: str, standby: str) -> None:
        self.cluster, self.primary, self.standby = cluster, primary, standby
        self.pids: list[int] = []

    def __enter__(self) -> StoppedStandby:
        uid = get_json(self.cluster, "pod", self.standby, namespace=NAMESPACE)["metadata"]["uid"]
        self.pids = sorted(postgres_host_processes(uid))
        assert self.pids, f"no postgres process in pod {self.standby}"
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)
        psql(
            self.cluster,
            self.primary,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = :'name'",
            name=self.standby,
        )
        eventually(
            lambda: streaming(self.cluster, self.primary) == [],
            timeout=10,
            interval=0.5,
            what=f"{self.standby} no longer streaming",
        )
        return self

    def __exit__(self, *_: object) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.fixture
def roles(real_cluster: LocalCluster, one_optional_standby: None) -> Iterator[tuple[str, str]]:
    primary, [standby] = postgres_roles(real_cluster)
    eventually(
        lambda: streaming(real_cluster, primary) == [standby], timeout=60, interval=1, what="streaming"
    )
    yield primary, standby
    eventually(
        lambda: streaming(real_cluster, primary) == [standby], timeout=60, interval=1, what="streaming again"
    )


def test_not_required_a_write_is_acknowledged_while_the_standby_is_down_and_any_1_returns_with_it(
    real_cluster: LocalCluster, roles: tuple[str, str], figures: Figures
) -> None:
    primary, standby = roles
    eventually(
        lambda: shown(real_cluster, primary) == ANY_1, timeout=30, interval=1, what="ANY 1 at the start"
    )
    eventually(
        lambda: synchronous_status(real_cluster).get("waitingFor") == 1, timeout=30, interval=1, what="status"
    )
    assert timed_write(real_cluster, "sync-optional", 1, 5)["acknowledged"]

    with StoppedStandby(real_cluster, primary, standby):
        stopped_at = time.monotonic()
        # Issued at once: it waits for the standby until the operator lowers the value.
        first = timed_write(real_cluster, "sync-optional", 2, 15)
        assert first["acknowledged"], f"a write through -rw was not acknowledged within 15 s: {first}"
        assert shown(real_cluster, primary) == ""
        eventually(
            lambda: (
                (
                    synchronous_status(real_cluster).get("waitingFor"),
                    synchronous_status(real_cluster).get("streaming"),
                )
                == (0, 0)
            ),
            timeout=15,
            interval=1,
            what="status.postgres.synchronous: waiting for 0, 0 streaming",
        )
        lowered = synchronous_status(real_cluster)
        assert "lowered while fewer stream (required: false)" in lowered["message"], lowered
        later = timed_write(real_cluster, "sync-optional", 3, 5)
        assert later["acknowledged"], later
        assert later["seconds"] < 1, later
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - stopped_at)))
        assert streaming(real_cluster, primary) == [], "the standby stayed away"
    eventually(lambda: streaming(real_cluster, primary) == [standby], timeout=60, interval=1, what="back")
    eventually(lambda: shown(real_cluster, primary) == ANY_1, timeout=30, interval=1, what="ANY 1 again")
    eventually(
        lambda: synchronous_status(real_cluster).get("waitingFor") == 1,
        timeout=30,
        interval=1,
        what="status 1",
    )
    assert (
        synchronous_status(real_cluster)["message"] == "waiting for 1 of 1 synchronous standbys: 1 streaming"
    )
    # Every acknowledged row is on the standby once it is back.
    eventually(
        lambda: (
            psql(
                real_cluster, standby, "SELECT id FROM failover_probe WHERE run = 'sync-optional' ORDER BY 1"
            )
            == [["1"], ["2"], ["3"]]
        ),
        timeout=30,
        interval=1,
        what="the rows on the standby",
    )
    figures.values["optional_first_write_seconds"] = round(first["seconds"], 2)
    figures.values["optional_later_write_seconds"] = round(later["seconds"], 3)


def test_required_a_write_waits_while_the_standby_is_down(
    real_cluster: LocalCluster, roles: tuple[str, str], figures: Figures
) -> None:
    primary, standby = roles
    set_required(real_cluster, True)
    eventually(lambda: shown(real_cluster, primary) == ANY_1, timeout=30, interval=1, what="ANY 1")
    with StoppedStandby(real_cluster, primary, standby):
        waited = timed_write(real_cluster, "sync-required", 1, 8)
        assert not waited["acknowledged"], f"acknowledged without the standby: {waited}"
        assert shown(real_cluster, primary) == ANY_1, "the operator left the value"
        eventually(
            lambda: synchronous_status(real_cluster).get("streaming") == 0,
            timeout=15,
            interval=1,
            what="status",
        )
        status = synchronous_status(real_cluster)
        assert status["waitingFor"] == 1
        assert "commits wait until enough stream again (required: true)" in status["message"], status
        time.sleep(DOWN_SECONDS - 8)
    eventually(lambda: streaming(real_cluster, primary) == [standby], timeout=60, interval=1, what="back")
    assert timed_write(real_cluster, "sync-required", 2, 5)["acknowledged"]
    figures.values["required_write_waited_seconds"] = round(waited["seconds"], 2)


def test_down_leaves_the_host_as_it_found_it(
    real_cluster: LocalCluster, backend: Backend, host_before: dict[str, Any], figures: Figures
) -> None:
    real_pods.test_down_leaves_the_host_as_it_found_it(real_cluster, backend, host_before, figures)
