"""Benchmark PostgreSQL failover and switchover on real pods: ``python -m bench.failover``
(``make bench-failover``).

A control plane of its own with the real node (``hack/cluster.sh up --real-node``, ports from
``--port-base``, state in a temporary folder), the operator as a local process, and
examples/basic.yaml on the local images (``make images``): a primary and two read replicas,
``failoverDelay: 0s``. A writer inserts numbered rows through -rw and logs each acknowledged id; a
sampler asks -rw every 100 ms which server answered and whether it is writable
(devkit.failover_probe, the code the node tests use). Six runs, one fault each, 8 s into a
writer of ``--seconds``:

* ``async_failover``, ``async_switchover``, ``async_frozen_primary``: asynchronous replication
  (the default);
* ``sync_failover``, ``sync_switchover``, ``sync_frozen_primary``: ``synchronous: {standbys: 1,
  required: true}``.

A failover's fault is the primary's pod deleted with grace 0; a switchover's is
``spec.postgres.switchover`` to the first replica. The kubelet still stops a deleted pod's
postgres, and its shutdown sends the WAL it has to the standbys, so those runs hardly exercise the
asynchronous data-loss window: a frozen primary's fault first SIGSTOPs every postgres process of
its pod from the host (a hung server or node: its walsenders send nothing more), then deletes the
pod with grace 0, so the standbys miss whatever WAL they had not received. Asynchronous, that is
the data-loss window the replication accepts; synchronous, no acknowledged write may be lost.

Per run: ``write_outage_seconds`` (the longest wait between two acknowledged writes from the
fault on: for a deleted primary, the last write acknowledged before the fault to the first after;
a switchover's writes go on until the old primary stops, then wait), ``acknowledged_writes_lost``
(ids acknowledged but absent from the new primary), ``two_primaries_observed`` (-rw reached a writable
server after another had taken over). Then the issue's targets as booleans. Between runs the
backend settles: Stable, Ready, every replica streaming from the primary.

Run it alone on the machine (the real node is a host-wide singleton): ``flock
/tmp/sbo/real-node.lock make bench-failover``. It prints one JSON line and records it in the
"## Failover (make bench-failover)" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from devkit.cluster import KubectlError, LocalCluster, eventually
from devkit.failover_probe import CREATE_PROBE_TABLE, Probe
from devkit.operator_process import OperatorProcess
from devkit.paths import EXAMPLES
from devkit.real_pods import postgres_host_processes, real_node_namespace
from devkit.records import BENCHMARKS_DOC, record_json_result

NAMESPACE = "bench-failover"
NAME = "shop"
ROLE_LABEL = "sbo.dev/postgres-role"
INSTANCES = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=postgres"
SOCKET_DIR = "/var/run/postgresql"
STREAMING = "SELECT application_name, state FROM pg_stat_replication ORDER BY 1"
FAULT_AFTER = 8.0  # seconds of steady writes before each fault
# The targets.
FAILOVER_OUTAGE_TARGET = 5.0
SWITCHOVER_OUTAGE_TARGET = 3.0


def log(message: str) -> None:
    print(f"[bench-failover {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def manifest() -> dict[str, Any]:
    """examples/basic.yaml on the images built here, failing over at once, asynchronous."""
    backend: dict[str, Any] = copy.deepcopy(yaml.safe_load((EXAMPLES / "basic.yaml").read_text()))
    backend["metadata"]["namespace"] = NAMESPACE
    spec = backend["spec"]
    spec["image"], spec["imagePullPolicy"] = "sbo.local/sample-app:dev", "Never"
    spec["postgres"]["version"], spec["redis"]["version"] = "15", "7.0"
    spec["postgres"]["failoverDelay"] = "0s"
    return backend


class Bench:
    """The cluster's backend, as the runs see it."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def json(self, *what: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            self.cluster.kubectl("get", *what, "-n", NAMESPACE, "-o", "json").stdout
        )
        return found

    def postgres_status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.json(f"sb/{NAME}").get("status", {}).get("postgres", {})
        return status

    def roles(self) -> tuple[str, list[str]]:
        """The pod labelled primary and the replicas (live pods), as -rw and -ro select them."""
        primary: list[str] = []
        replicas: list[str] = []
        for pod in self.json("pods", "-l", INSTANCES)["items"]:
            if "deletionTimestamp" in pod["metadata"]:
                continue
            role = pod["metadata"]["labels"].get(ROLE_LABEL)
            (primary if role == "primary" else replicas).append(pod["metadata"]["name"])
        assert len(primary) == 1, f"one pod labelled primary, not {primary}"
        return primary[0], sorted(replicas)

    def psql(self, pod: str, sql: str, **variables: str) -> list[str]:
        """Lines of ``sql``'s output in ``pod``'s server (superuser, unix socket, the app's database).
        Values go in as psql variables (``:'name'``), never spliced into SQL."""
        command = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", SOCKET_DIR, "-d", "app"]
        for name, value in variables.items():
            command += ["-v", f"{name}={value}"]
        args = ["exec", "-i", "-n", NAMESPACE, pod, "-c", "postgres", "--", *command]
        return self.cluster.kubectl(*args, input=sql, timeout=60).stdout.splitlines()

    def ready(self) -> bool:
        sb = self.json(f"sb/{NAME}")
        status = sb.get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return bool(
            status.get("observedGeneration") == sb["metadata"]["generation"]
            and conditions.get("Ready") == "True"
        )

    def ready_at_generation(self, timeout: float = 600) -> None:
        eventually(self.ready, timeout=timeout, interval=1, what="the backend Ready at its generation")

    def settled(self, timeout: float = 300) -> str:
        """Stable, Ready, one pod labelled primary and every replica streaming from it, all seen in
        one look: the next run starts even. (A rollout may still replace the primary's pod after
        the status said Stable and Ready: then, for a moment, no pod is labelled primary.)"""

        def even() -> str:
            assert self.postgres_status().get("phase") == "Stable", "not Stable"
            assert self.ready(), "not Ready at its generation"
            primary, replicas = self.roles()
            try:
                streaming = [line.split("|") for line in self.psql(primary, STREAMING)]
            except KubectlError as error:
                raise AssertionError(f"{primary} did not answer: {error}") from error
            assert streaming == [[name, "streaming"] for name in replicas], f"{primary}: {streaming}"
            return primary

        return str(eventually(even, timeout=timeout, interval=1, what="the backend settled"))

    def writer_pod(self) -> str:
        pods = self.json("pods", "-l", f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=api")
        return str(
            next(p["metadata"]["name"] for p in pods["items"] if "deletionTimestamp" not in p["metadata"])
        )


def run_once(
    bench: Bench, run: str, fault: Callable[[str, list[str]], None], seconds: float
) -> dict[str, Any]:
    old, replicas = bench.roles()
    log(f"{run}: primary {old}, replicas {replicas}")
    probe = Probe(bench.cluster, NAMESPACE, bench.writer_pod(), run=run, seconds=seconds).start()
    time.sleep(FAULT_AFTER)
    at = time.time()
    log(f"{run}: the fault at {datetime.fromtimestamp(at, UTC):%H:%M:%S.%f}"[:-3])
    fault(old, replicas)
    record = probe.join()
    eventually(
        lambda: bench.postgres_status().get("currentPrimary") not in (None, old),
        timeout=120,
        interval=1,
        what=f"{run}: a new current primary",
    )
    new = bench.settled()
    stored = [
        int(line) for line in bench.psql(new, "SELECT id FROM failover_probe WHERE run = :'run'", run=run)
    ]
    lost = record.lost(stored)
    result = {
        "write_outage_seconds": record.write_outage_seconds(at),
        "acknowledged_writes": len(record.acked),
        "acknowledged_writes_lost": len(lost),
        "two_primaries_observed": record.two_primaries_observed(),
        "rw_samples": len(record.samples),
        "new_primary": new,
    }
    gap = record.longest_write_gap(at)
    if gap is not None:
        stopped, resumed = (f"{datetime.fromtimestamp(t, UTC):%H:%M:%S.%f}"[:-3] for t in gap)
        log(f"{run}: writes acknowledged until {stopped}, again from {resumed}")
    log(f"{run}: {json.dumps(result)}")
    return result


def delete_primary_pod(bench: Bench) -> Callable[[str, list[str]], None]:
    def fault(old: str, _: list[str]) -> None:
        bench.cluster.kubectl(
            "delete", "pod", old, "-n", NAMESPACE, "--grace-period=0", "--force", "--wait=false"
        )

    return fault


def freeze_and_delete_primary_pod(bench: Bench) -> Callable[[str, list[str]], None]:
    """SIGSTOP every postgres process of the primary's pod (found on the host by its cgroup),
    then delete the pod with grace 0: its last WAL never leaves. The kubelet's SIGKILL ends the
    stopped processes; a SIGCONT afterwards only wakes any that would have outlived it."""

    def fault(old: str, _: list[str]) -> None:
        uid = bench.json(f"pod/{old}")["metadata"]["uid"]
        pids = sorted(postgres_host_processes(uid))
        if not pids:
            raise RuntimeError(f"no postgres process of pod {old} on this host")
        try:
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            bench.cluster.kubectl(
                "delete", "pod", old, "-n", NAMESPACE, "--grace-period=0", "--force", "--wait=false"
            )
            eventually(
                lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids),
                timeout=60,
                interval=0.5,
                what=f"the frozen processes of {old} killed",
            )
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    return fault


def switch_over(bench: Bench, run: str) -> Callable[[str, list[str]], None]:
    def fault(_: str, replicas: list[str]) -> None:
        request = {"spec": {"postgres": {"switchover": {"to": replicas[0], "id": run}}}}
        bench.cluster.kubectl(
            "patch", f"sb/{NAME}", "-n", NAMESPACE, "--type=merge", "-p", json.dumps(request)
        )

    return fault


def make_synchronous(bench: Bench) -> dict[str, str]:
    """One synchronous standby, required; the primary waits for it before the next run. The
    primary before and after: the change rolls the instances (their configuration changes), and
    the primary's pod is replaced too."""
    before, _ = bench.roles()
    request = {"spec": {"postgres": {"synchronous": {"standbys": 1, "required": True}}}}
    bench.cluster.kubectl("patch", f"sb/{NAME}", "-n", NAMESPACE, "--type=merge", "-p", json.dumps(request))
    primary = bench.settled()
    eventually(
        lambda: bench.psql(primary, "SHOW synchronous_standby_names") != [""],
        timeout=120,
        interval=1,
        what="the primary to wait for a synchronous standby",
    )
    log(f"synchronous: the primary was {before}, is {primary}")
    return {"primary_before": before, "primary_after": primary}


def measure(cluster: LocalCluster, seconds: float) -> dict[str, Any]:
    bench = Bench(cluster)
    cluster.apply(real_node_namespace(NAMESPACE))
    cluster.apply(manifest())
    bench.ready_at_generation()
    primary = bench.settled()
    bench.psql(primary, CREATE_PROBE_TABLE)
    runs: dict[str, dict[str, Any]] = {}  # and "enabling_synchronous": the primary across it
    for mode in ("async", "sync"):
        if mode == "sync":
            runs["enabling_synchronous"] = make_synchronous(bench)
        runs[f"{mode}_failover"] = run_once(bench, f"{mode}_failover", delete_primary_pod(bench), seconds)
        switchover = f"{mode}_switchover"
        runs[switchover] = run_once(bench, switchover, switch_over(bench, switchover), seconds)
        frozen = f"{mode}_frozen_primary"
        runs[frozen] = run_once(bench, frozen, freeze_and_delete_primary_pod(bench), seconds)
    return runs


def summary(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def outage_within(run: str, target: float) -> bool:
        outage = runs[run]["write_outage_seconds"]
        return outage is not None and outage <= target

    return {
        "runs": runs,
        "targets_met": {
            "failover_outage_le_5s": all(
                outage_within(f"{m}_failover", FAILOVER_OUTAGE_TARGET) for m in ("async", "sync")
            ),
            "switchover_outage_le_3s": all(
                outage_within(f"{m}_switchover", SWITCHOVER_OUTAGE_TARGET) for m in ("async", "sync")
            ),
            "no_acknowledged_write_lost_sync": all(
                runs[f"sync_{kind}"]["acknowledged_writes_lost"] == 0
                for kind in ("failover", "switchover", "frozen_primary")
            ),
            "never_two_primaries": not any(run.get("two_primaries_observed") for run in runs.values()),
        },
    }


def record(result: dict[str, Any], command: str, started: datetime, load: tuple[float, float]) -> None:
    heading = (
        f"`{command}`, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, shared with other engineers' "
        f"builds and tests (1-minute load average {load[0]:.2f} at the start, {load[1]:.2f} at the end)"
    )
    record_json_result(
        BENCHMARKS_DOC,
        result,
        section="## Failover (make bench-failover)",
        marker="bench-failover",
        heading=heading,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port-base",
        type=int,
        default=int(os.environ.get("SBO_PORT_BASE", "16440")) + 90,
        help="the control plane's ports (default: $SBO_PORT_BASE + 90)",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="each run's writer (the fault at 8 s)")
    parser.add_argument("--no-record", action="store_true", help="print the JSON line only")
    parser.add_argument(
        "--operator-log", type=Path, help="keep the operator's log there (its timeline of each change)"
    )
    args = parser.parse_args()
    started, load_before = datetime.now(UTC), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        cluster = LocalCluster(
            local_dir=Path(tmp) / "control-plane", port_base=args.port_base, script_env={"SBO_REAL_NODE": "1"}
        )
        operator = OperatorProcess(
            kubeconfig=cluster.kubeconfig,
            log_path=Path(tmp) / "operator.log",
            env={
                "SBO_NAMESPACES": NAMESPACE,
                "SBO_RESYNC_SECONDS": "10",
                "SBO_POSTGRES_IMAGE": "sbo.local/postgres:{version}",
                "SBO_REDIS_IMAGE": "sbo.local/redis:{version}",
            },
        )
        try:
            log(f"up: control plane with the real node (port base {args.port_base})")
            cluster.start()
            cluster.install_crd()
            operator.start()
            runs = measure(cluster, args.seconds)
        except BaseException:
            tail = operator.log_path.read_text()[-4000:] if operator.log_path.exists() else ""
            log(f"failed; the operator's log ends:\n{tail}")
            raise
        finally:
            operator.stop()
            cluster.stop()
            if args.operator_log is not None and operator.log_path.exists():
                shutil.copyfile(operator.log_path, args.operator_log)
    result = {"started": started.isoformat(timespec="seconds"), **summary(runs)}
    print(json.dumps(result))
    if not args.no_record:
        command = "flock /tmp/sbo/real-node.lock make bench-failover"
        record(result, command, started, (load_before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
