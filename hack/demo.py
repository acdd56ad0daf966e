"""``make demo``: the whole story in one command, ending by itself and leaving nothing running.

1. the local control plane (reused if it is already up, and then left up) and the operator;
2. the sample ScalableBackend (examples/basic.yaml with autoscaling on);
3. the real sample app with PostgreSQL (primary + streaming replica), Redis and Prometheus,
   all processes on 127.0.0.1;
4. a load ramp on the app, while a live table shows the load, the metric the operator read,
   the replicas of ``shop-api`` and the autoscaler's reason;
5. a summary.

Run it with ``hack/demo.sh`` (``python -m hack.demo``). Everything it starts is stopped in a
``finally`` (Ctrl-C and SIGTERM included); the servers also die with this process if it is
killed outright.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from kubernetes import client

from devkit.cluster import LocalCluster
from devkit.operator_process import OperatorProcess
from devkit.paths import REPO
from devkit.prometheus import PrometheusServer
from devkit.sample_app_process import PacedLoad, SampleAppStack, seed_tasks, task_paths

NAME = "shop"
QUERY = 'sum(rate(http_requests_total{route=~"/api/.*"}[10s]))'
TARGET_PER_REPLICA = 10
MAX_REPLICAS = 8
POLL_SECONDS = 2
SCALE_DOWN_WINDOW = 20


@dataclass(frozen=True)
class Step:
    seconds: float
    rps: float


# Up in steps, a hold, then nothing: scale-up at each step, scale-down after the window.
RAMP = (Step(8, 5), Step(12, 15), Step(15, 30), Step(25, 50), Step(50, 0))


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def heading(message: str) -> None:
    print(f"\n== {message}", flush=True)


def backend_manifest(namespace: str, prometheus_url: str) -> dict[str, Any]:
    """examples/basic.yaml in the demo's namespace, with autoscaling on the request rate."""
    manifest: dict[str, Any] = copy.deepcopy(yaml.safe_load((REPO / "examples" / "basic.yaml").read_text()))
    manifest["metadata"] = {"name": NAME, "namespace": namespace}
    spec = manifest["spec"]
    spec["prometheus"] = {"url": prometheus_url, "pollSeconds": POLL_SECONDS, "timeoutSeconds": 2}
    spec["api"]["replicas"] = 1
    spec["api"]["autoscaling"] = {
        "mode": "Active",
        "minReplicas": 1,
        "maxReplicas": MAX_REPLICAS,
        "metrics": [{"name": "rps", "query": QUERY, "targetPerReplica": TARGET_PER_REPLICA}],
        "scaleUp": {"stabilizationSeconds": 0},
        "scaleDown": {"stabilizationSeconds": SCALE_DOWN_WINDOW},
    }
    return manifest


# ---- the live table ------------------------------------------------------------------------------


@dataclass
class Observation:
    at: float
    offered: float
    served: float
    metric: float | None
    replicas: int
    ready: int
    reason: str


@dataclass
class Story:
    """What the table showed, for the summary."""

    started: float
    rows: list[Observation] = field(default_factory=list)
    changes: list[tuple[float, int, int]] = field(default_factory=list)  # (t, from, to)
    needs_more_since: float | None = None
    first_reaction: float | None = None
    load_stopped_at: float | None = None
    scale_down_after_stop: float | None = None


COLUMNS = f"{'time':>6}  {'load req/s':>10}  {'served':>6}  {'metric rps':>10}  {'replicas':>8}  reason"


def format_row(row: Observation) -> str:
    metric = "-" if row.metric is None else f"{row.metric:.1f}"
    replicas = f"{row.replicas} ({row.ready})"
    reason = row.reason if len(row.reason) <= 72 else row.reason[:71] + "…"
    return f"{row.at:5.0f}s  {row.offered:10.0f}  {row.served:6.0f}  {metric:>10}  {replicas:>8}  {reason}"


class Watcher:
    def __init__(
        self,
        cluster: LocalCluster,
        namespace: str,
        operator: OperatorProcess,
        load: PacedLoad,
        story: Story,
    ) -> None:
        self.apps = client.AppsV1Api(cluster.api)
        self.custom = client.CustomObjectsApi(cluster.api)
        self.namespace = namespace
        self.operator = operator
        self.load = load
        self.story = story
        self.last_requests = 0
        self.last_time = time.monotonic()
        self.last_printed = 0.0
        self.last_replicas: int | None = None
        self.last_reason = ""

    def metric(self) -> float | None:
        for labels, value in self.operator.metric_samples("sbo_autoscaler_metric_value").items():
            if f'namespace="{self.namespace}"' in labels and 'metric="rps"' in labels:
                return value
        return None

    def observe(self) -> None:
        now = time.monotonic()
        deployment = self.apps.read_namespaced_deployment(f"{NAME}-api", self.namespace)
        backend = self.custom.get_namespaced_custom_object(
            "sbo.dev", "v1alpha1", self.namespace, "scalablebackends", NAME
        )
        assert isinstance(backend, dict)
        report = backend.get("status", {}).get("autoscaling", {}).get("api", {})
        reason = str(report.get("reason", ""))
        replicas = int(deployment.spec.replicas or 0)
        ready = int((deployment.status.ready_replicas if deployment.status else 0) or 0)
        stats = self.load.stats
        served = (stats.requests - self.last_requests) / max(now - self.last_time, 1e-3)
        self.last_requests, self.last_time = stats.requests, now
        t = now - self.story.started
        row = Observation(t, self.load.rate, served, self.metric(), replicas, ready, reason)
        self.story.rows.append(row)
        self._track(row)
        changed = replicas != self.last_replicas or reason != self.last_reason
        if changed or t - self.last_printed >= 2:
            print(format_row(row), flush=True)
            self.last_printed = t
        self.last_replicas, self.last_reason = replicas, reason

    def _track(self, row: Observation) -> None:
        story = self.story
        capacity = (self.last_replicas or row.replicas) * TARGET_PER_REPLICA * 1.1
        if story.needs_more_since is None and row.offered > capacity:
            story.needs_more_since = row.at
        if self.last_replicas is not None and row.replicas != self.last_replicas:
            story.changes.append((row.at, self.last_replicas, row.replicas))
            if row.replicas > self.last_replicas and story.first_reaction is None and story.needs_more_since:
                story.first_reaction = row.at - story.needs_more_since
            if (
                row.replicas < self.last_replicas
                and story.load_stopped_at is not None
                and story.scale_down_after_stop is None
            ):
                story.scale_down_after_stop = row.at - story.load_stopped_at


def run_ramp(watcher: Watcher, load: PacedLoad, story: Story) -> None:
    print(COLUMNS, flush=True)
    for step in RAMP:
        load.set_rate(step.rps)
        if step.rps == 0:
            story.load_stopped_at = time.monotonic() - story.started
        step_end = time.monotonic() + step.seconds
        while time.monotonic() < step_end:
            watcher.observe()
            settled = (
                step.rps == 0
                and story.load_stopped_at is not None
                and story.rows[-1].replicas == 1
                and story.rows[-1].at - story.load_stopped_at > SCALE_DOWN_WINDOW + 3
            )
            if settled:
                return
            time.sleep(0.5)


def summary(story: Story, load: PacedLoad) -> None:
    stats = load.stats
    ups = [c for c in story.changes if c[2] > c[1]]
    downs = [c for c in story.changes if c[2] < c[1]]
    peak = max((row.replicas for row in story.rows), default=0)
    peak_metric = max((row.metric or 0.0 for row in story.rows), default=0.0)
    heading("summary")
    lines = [
        ("peak replicas", f"{peak} (max {MAX_REPLICAS}), at a peak metric of {peak_metric:.1f} req/s"),
        (
            "scale-up reaction",
            "-"
            if story.first_reaction is None
            else f"{story.first_reaction:.1f}s from the first load step above capacity to new replicas "
            f"(rate window 10s, poll {POLL_SECONDS}s)",
        ),
        (
            "scale-down",
            "-"
            if story.scale_down_after_stop is None
            else f"first step down {story.scale_down_after_stop:.1f}s after the load stopped "
            f"(window {SCALE_DOWN_WINDOW}s)",
        ),
        (
            "scale events",
            f"{len(story.changes)} ({len(ups)} up, {len(downs)} down): "
            + ", ".join(f"{a}->{b}" for _, a, b in story.changes),
        ),
        ("requests served", f"{stats.requests} ({stats.dropped} not sent: too many in flight)"),
        ("errors", f"{stats.errors} {stats.per_status if stats.errors else ''}".strip()),
    ]
    for label, text in lines:
        print(f"  {label:<18} {text}")


# ---- set-up and tear-down ------------------------------------------------------------------------


class Interrupted(SystemExit):
    pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(128 + signum)


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    say(message)
    started = time.monotonic()
    yield
    say(f"{message}: done in {time.monotonic() - started:.1f}s")


def show(cluster: LocalCluster, *args: str) -> None:
    print(f"$ kubectl {' '.join(args)}", flush=True)
    result = cluster.kubectl(*args, check=False)
    print((result.stdout or result.stderr).rstrip(), flush=True)


def wait_ready(cluster: LocalCluster, namespace: str, timeout: int = 120) -> None:
    result = cluster.kubectl(
        "wait", "--for=condition=Ready", f"sb/{NAME}", "-n", namespace, f"--timeout={timeout}s", check=False
    )
    if result.returncode != 0:
        status = cluster.kubectl("get", f"sb/{NAME}", "-n", namespace, "-o", "yaml", check=False).stdout
        raise RuntimeError(f"sb/{NAME} did not become Ready: {result.stderr}\n{status}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="sbo-demo-"))
    namespace = f"sbo-demo-{secrets.token_hex(3)}"
    failed = True
    with contextlib.ExitStack() as cleanup:

        def remove_workdir() -> None:  # registered first, so it runs last
            if failed:
                say(f"logs kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)

        cleanup.callback(remove_workdir)

        def later(message: str, action: Callable[[], object]) -> None:
            def run() -> None:
                say(message)
                action()

            cleanup.callback(run)

        try:
            heading("1. the local control plane and the operator")
            with step("control plane (reused when already up)"):
                cluster = LocalCluster.ensure()
            if cluster.started_here:
                later("stopping the control plane the demo started", cluster.stop_if_started_here)
            else:
                say("a control plane was already running: the demo uses it and leaves it up")
                cleanup.callback(cluster.close_client)
            show(cluster, "get", "nodes", "-L", "topology.kubernetes.io/zone")
            cluster.install_crd(field_manager="sbo-demo")
            cluster.kubectl("create", "namespace", namespace)
            if not cluster.started_here:
                later(
                    f"deleting namespace {namespace}",
                    lambda: cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False),
                )
            with step(f"operator (sbo-operator run, watching namespace {namespace})"):
                operator = OperatorProcess(
                    kubeconfig=cluster.kubeconfig,
                    log_path=workdir / "operator.log",
                    env={"SBO_NAMESPACES": namespace, "SBO_RESYNC_SECONDS": "30", "SBO_LOG_LEVEL": "WARNING"},
                )
                later("stopping the operator", operator.stop)
                operator.start()

            heading("2. the real sample app with PostgreSQL, Redis and Prometheus (127.0.0.1)")
            with step("sample app stack"):
                stack = SampleAppStack.start(workdir, with_replica=True, progress=say)
                later("stopping the sample app, Redis and PostgreSQL", stack.destroy)
            ids = seed_tasks(stack.app.url, count=20)  # the routes' series exist before the first poll
            print(
                f"    app {stack.app.url}  postgres primary :{stack.primary.port}"
                f" replica :{stack.replica.port if stack.replica else '-'}  redis :{stack.redis.port}"
            )
            with step("Prometheus scraping the app every second"):
                prometheus = PrometheusServer.start(
                    workdir, scrape_targets={"app": [stack.app.address]}, scrape_interval="1s"
                )
                later("stopping Prometheus", prometheus.destroy)
                prometheus.wait_for_target("app")
            print(f"    prometheus {prometheus.url}")

            heading("3. the sample backend (examples/basic.yaml + autoscaling on the request rate)")
            manifest = backend_manifest(namespace, prometheus.url)
            print(yaml.safe_dump({"autoscaling": manifest["spec"]["api"]["autoscaling"]}, sort_keys=False))
            cluster.apply(manifest)
            with step("waiting for sb/shop to be Ready (kubectl wait --for=condition=Ready)"):
                wait_ready(cluster, namespace)
            show(cluster, "get", "sb", "-n", namespace)
            show(cluster, "get", "deploy,sts,svc,pdb", "-n", namespace)

            heading("4. load ramp: scale-up, then scale-down after the window")
            print(
                f"    query {QUERY}, target {TARGET_PER_REPLICA} req/s per replica, poll {POLL_SECONDS}s, "
                f"scale-down window {SCALE_DOWN_WINDOW}s; ramp "
                + " -> ".join(f"{s.rps:g} req/s for {s.seconds:g}s" for s in RAMP)
            )
            load = PacedLoad(stack.app.url, task_paths(ids), max_seconds=sum(s.seconds for s in RAMP) + 30)
            later("stopping the load", load.stop)
            load.start()
            story = Story(started=time.monotonic())
            run_ramp(Watcher(cluster, namespace, operator, load, story), load, story)
            load.stop()

            heading("5. where it ended")
            show(cluster, "get", "sb", "-n", namespace)
            show(
                cluster,
                "get",
                "events",
                "-n",
                namespace,
                "--field-selector",
                "reason=Scaled",
                "--sort-by=.lastTimestamp",
            )
            summary(story, load)
            failed = False
        except KeyboardInterrupt:
            say("interrupted: cleaning up")
        except Interrupted:
            say("terminated: cleaning up")
            raise
    say(f"demo finished in {time.monotonic() - began:.0f}s; nothing it started is still running")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
