"""``make demo``: the whole story in one command, on real pods, ending by itself and leaving nothing running.

1. the local control plane with its real node (``hack/cluster.sh up --real-node``: kubelet,
   containerd, kube-proxy; reused if it is already up, and then left up) and the operator;
2. Prometheus on the host, finding the api's pods through the apiserver (Kubernetes service
   discovery, with a ServiceAccount's token; ``make prometheus-sd`` builds a Prometheus that has
   it, Debian's has not);
3. the sample ScalableBackend (examples/basic.yaml on the images built here, with autoscaling on
   the request rate) in a namespace enforcing Pod Security "restricted", whose pods all run on
   the real node;
4. a load ramp through the api's Service (its ClusterIP, through kube-proxy), up and then down
   to a trickle: the live table shows the requests each pod serves, so new replicas are seen
   taking traffic, and the pods of the scale-down drain while the load goes on;
5. a summary, with every failed request of the whole run.

Without the real node (``--kwok``, not root, its tools, images or that Prometheus missing,
another real node on this host, or a control plane without it already up) the demo says so and
runs on kwok's fake pods: the app is then one process on 127.0.0.1 with PostgreSQL, Redis and
Prometheus beside it, and the table shows that process serving everything while the fake
replicas serve nothing.

Run it with ``hack/demo.sh`` (``python -m hack.demo``). Everything it starts is stopped in a
``finally`` (Ctrl-C and SIGTERM included); the servers also die with this process if it is
killed outright.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import yaml
from kubernetes import client

from devkit.cluster import RESTRICTED, LocalCluster
from devkit.operator_process import OperatorProcess
from devkit.paths import REPO, tools_bin_dir
from devkit.prometheus import PrometheusServer, kubernetes_pods_scrape_config
from devkit.real_pods import BRIDGE_IP, NODE_NAME, real_node_namespace
from devkit.sample_app_process import PacedLoad, SampleAppStack, seed_tasks, task_paths
from sbo_operator.builders.labels import COMPONENT_LABEL, INSTANCE_LABEL

NAME = "shop"
API_ROUTES = 'http_requests_total{route=~"/api/.*"}'
QUERY = f"sum(rate({API_ROUTES}[10s]))"
PER_POD_QUERY = f"sum by (pod) (rate({API_ROUTES}[10s]))"
SEED_TASKS = 20
SEED_REQUESTS = SEED_TASKS + 2  # seed_tasks: a signup, a login, then one POST per task
TARGET_PER_REPLICA = 10
MAX_REPLICAS = 6
POLL_SECONDS = 2
SCALE_DOWN_WINDOW = 20
SCRAPE_JOB = "api"
# Prometheus with Kubernetes service discovery (hack/install-tools.sh prometheus-sd).
PROMETHEUS_SD = "prometheus-k8s-sd"
# The images hack/cluster.sh imports into the real node's containerd (make images).
SAMPLE_APP_IMAGE = "sbo.local/sample-app:dev"
LOCAL_IMAGES = (SAMPLE_APP_IMAGE, "sbo.local/postgres:15", "sbo.local/redis:7.0")
DATA_SERVICE_IMAGES = {
    "SBO_POSTGRES_IMAGE": "sbo.local/postgres:{version}",
    "SBO_REDIS_IMAGE": "sbo.local/redis:{version}",
}


@dataclass(frozen=True)
class Step:
    seconds: float
    rps: float


# Up in steps, a hold, then a trickle: scale-up at each step, and a scale-down after the window
# while requests still flow, so the pods that go are seen draining without a failed request.
RAMP = (Step(8, 5), Step(12, 15), Step(15, 30), Step(25, 50), Step(60, 6))
# Once the scale-down has settled (one replica, nothing draining), the trickle goes on this long.
SETTLED_SECONDS = 5


def prometheus_sd() -> Path:
    return tools_bin_dir() / PROMETHEUS_SD


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def heading(message: str) -> None:
    print(f"\n== {message}", flush=True)


def note(message: str) -> None:
    print(f"    {message}", flush=True)


# ---- what serves the load: the real pods, or one process ----------------------------------------


@dataclass(frozen=True)
class PodView:
    name: str
    address: str
    node: str
    state: str  # starting | ready | draining


@dataclass
class Serving:
    """Where the load goes, who serves it, and the Prometheus that sees it."""

    real_pods: bool
    prometheus: PrometheusServer
    load_url: str = ""
    # The real node's bridge: a ClusterIP's answers come back only to it (pods have no other route).
    local_address: str | None = None
    # The app process of the kwok path: it serves everything, the fake pods nothing.
    process: PodView | None = None

    def describe(self) -> str:
        if self.real_pods:
            return f"the api's real pods on {NODE_NAME}, through Service {NAME}-api ({self.load_url})"
        return f"one app process on {self.load_url}; the api's replicas are kwok's fakes and serve nothing"


def backend_manifest(namespace: str, serving: Serving) -> dict[str, Any]:
    """examples/basic.yaml in the demo's namespace, with autoscaling on the request rate."""
    manifest: dict[str, Any] = copy.deepcopy(yaml.safe_load((REPO / "examples" / "basic.yaml").read_text()))
    manifest["metadata"] = {"name": NAME, "namespace": namespace}
    spec = manifest["spec"]
    spec["prometheus"] = {"url": serving.prometheus.url, "pollSeconds": POLL_SECONDS, "timeoutSeconds": 2}
    spec["api"]["replicas"] = 1
    spec["api"]["autoscaling"] = {
        "mode": "Active",
        "minReplicas": 1,
        "maxReplicas": MAX_REPLICAS,
        "metrics": [{"name": "rps", "query": QUERY, "targetPerReplica": TARGET_PER_REPLICA}],
        "scaleUp": {"stabilizationSeconds": 0},
        "scaleDown": {"stabilizationSeconds": SCALE_DOWN_WINDOW},
    }
    if serving.real_pods:
        spec["image"] = SAMPLE_APP_IMAGE
        spec["imagePullPolicy"] = "Never"  # no registry: the image is in the node's containerd
        spec["postgres"]["version"] = "15"  # the versions make images builds from Debian
        spec["postgres"]["readReplicas"] = 1  # one streaming replica tells the story on 2 cores
        spec["redis"]["version"] = "7.0"
        spec["api"]["env"] = [
            # One process per pod: the demo scales pods, not uvicorn workers.
            {"name": "WEB_CONCURRENCY", "value": "1"},
            # The load generator is one client (the host's address): its limit would cap the demo.
            {"name": "RATE_LIMIT_ENABLED", "value": "false"},
        ]
    return manifest


def create_namespace(cluster: LocalCluster, namespace: str, *, real_pods: bool) -> None:
    """A namespace enforcing "restricted"; on the real node's path its pods all go there."""
    if real_pods:
        manifest = real_node_namespace(namespace)
    else:
        labels = {RESTRICTED: "restricted"}
        manifest = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": labels},
        }
    cluster.apply(manifest, field_manager="sbo-demo")


def prometheus_identity(cluster: LocalCluster, namespace: str, token_file: Path) -> None:
    """A ServiceAccount that may list and watch the namespace's pods, and a token of it in ``token_file``."""
    sa = "prometheus"
    cluster.apply(
        yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}},
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "Role",
                    "metadata": {"name": sa},
                    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": sa},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
                    "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}],
                },
            ]
        ),
        namespace=namespace,
        field_manager="sbo-demo",
    )
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    token_file.write_text(token)
    token_file.chmod(0o600)


def api_pod_selector() -> str:
    return f"{INSTANCE_LABEL}={NAME},{COMPONENT_LABEL}=api"


# ---- the live table ------------------------------------------------------------------------------


def api_pods(core: client.CoreV1Api, namespace: str) -> list[PodView]:
    """The api's pods that have an address, oldest first."""
    views: list[tuple[str, PodView]] = []
    for pod in core.list_namespaced_pod(namespace, label_selector=api_pod_selector()).items:
        metadata, spec, status = pod.metadata, pod.spec, pod.status
        if metadata is None or spec is None or status is None or not spec.node_name or not status.pod_ip:
            continue  # no address yet: the Deployment's "replicas (ready)" counts it
        conditions = status.conditions or []
        if metadata.deletion_timestamp is not None:
            state = "draining"
        elif any(c.type == "Ready" and c.status == "True" for c in conditions):
            state = "ready"
        else:
            state = "starting"
        view = PodView(str(metadata.name), status.pod_ip, spec.node_name, state)
        views.append((f"{metadata.creation_timestamp} {view.name}", view))
    return [view for _, view in sorted(views, key=lambda item: item[0])]


@dataclass
class Observation:
    at: float
    offered: float
    served: float
    failed: int
    metric: float | None
    replicas: int
    ready: int
    per_pod: dict[str, float]


@dataclass
class Story:
    """What the table showed, for the summary."""

    started: float
    rows: list[Observation] = field(default_factory=list)
    changes: list[tuple[float, int, int]] = field(default_factory=list)  # (t, from, to)
    letters: dict[str, str] = field(default_factory=dict)  # pod name -> its column letter
    drained: list[str] = field(default_factory=list)
    needs_more_since: float | None = None
    first_reaction: float | None = None
    load_lowered_at: float | None = None
    scale_down_after_lowering: float | None = None


STATE_MARK = {"starting": "+", "ready": "", "draining": "~"}
COLUMNS = (
    f"{'time':>6}  {'load':>4}  {'served':>6}  {'failed':>6}  {'metric':>6}  {'replicas':>8}  "
    "req/s served by each pod (Prometheus)"
)


def format_row(row: Observation, pods: list[PodView], letters: dict[str, str]) -> str:
    metric = "-" if row.metric is None else f"{row.metric:.1f}"
    replicas = f"{row.replicas} ({row.ready})"
    cells = []
    for pod in pods:
        rate = row.per_pod.get(pod.name)
        value = "-" if rate is None else f"{rate:.1f}"
        cells.append(f"{letters[pod.name]} {value}{STATE_MARK[pod.state]}")
    return (
        f"{row.at:5.0f}s  {row.offered:4.0f}  {row.served:6.0f}  {row.failed:6d}  {metric:>6}  "
        f"{replicas:>8}  {'  '.join(cells)}"
    )


class Watcher:
    def __init__(
        self,
        cluster: LocalCluster,
        namespace: str,
        operator: OperatorProcess,
        serving: Serving,
        load: PacedLoad,
        story: Story,
    ) -> None:
        self.apps = client.AppsV1Api(cluster.api)
        self.core = client.CoreV1Api(cluster.api)
        self.custom = client.CustomObjectsApi(cluster.api)
        self.namespace = namespace
        self.operator = operator
        self.serving = serving
        self.load = load
        self.story = story
        self.last_requests = 0
        self.last_time = time.monotonic()
        self.last_printed = -10.0
        self.last_replicas: int | None = None
        self.pods: dict[str, PodView] = {}

    def metric(self) -> float | None:
        for labels, value in self.operator.metric_samples("sbo_autoscaler_metric_value").items():
            if f'namespace="{self.namespace}"' in labels and 'metric="rps"' in labels:
                return value
        return None

    def per_pod_rates(self) -> dict[str, float]:
        try:
            answer = self.serving.prometheus.query(PER_POD_QUERY)
        except httpx.HTTPError:
            return {}
        result = answer.get("data", {}).get("result", [])
        return {series["metric"].get("pod", "?"): float(series["value"][1]) for series in result}

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
        pods = api_pods(self.core, self.namespace)
        if self.serving.process is not None:
            pods.append(self.serving.process)
        stats = self.load.stats
        served = (stats.requests - self.last_requests) / max(now - self.last_time, 1e-3)
        self.last_requests, self.last_time = stats.requests, now
        t = now - self.story.started
        row = Observation(
            t, self.load.rate, served, stats.errors, self.metric(), replicas, ready, self.per_pod_rates()
        )
        self.story.rows.append(row)
        self._track(row)
        pods_changed = self._narrate(pods)
        if replicas != self.last_replicas:
            note(f"autoscaler: {reason}")
        changed = replicas != self.last_replicas or pods_changed
        if changed or t - self.last_printed >= 2:
            print(format_row(row, pods, self.story.letters), flush=True)
            self.last_printed = t
        self.last_replicas = replicas

    def _narrate(self, pods: list[PodView]) -> bool:
        """One line per pod that appeared, started draining or went away; True if any did."""
        letters = self.story.letters
        seen = {pod.name: pod for pod in pods}
        changed = False
        for pod in pods:
            before = self.pods.get(pod.name)
            if pod.name not in letters:
                letters[pod.name] = chr(ord("a") + len(letters) % 26)
            if before is None:
                fake = "" if pod.node == NODE_NAME or self.serving.process is pod else " (kwok: a fake)"
                note(f"pod {letters[pod.name]} = {pod.name} {pod.address} on {pod.node}{fake}")
                changed = True
            if pod.state == "draining" and (before is None or before.state != "draining"):
                note(f"pod {letters[pod.name]} draining: out of the Service, finishing what it has")
                self.story.drained.append(pod.name)
                changed = True
        for name in self.pods.keys() - seen.keys():
            note(f"pod {letters[name]} gone")
            changed = True
        self.pods = seen
        return changed

    def settled(self) -> bool:
        """The scale-down is over: one replica left and no pod still draining."""
        return (
            self.last_replicas == 1
            and all(pod.state != "draining" for pod in self.pods.values())
            and len(self.pods) == (2 if self.serving.process else 1)
        )

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
                and story.load_lowered_at is not None
                and story.scale_down_after_lowering is None
            ):
                story.scale_down_after_lowering = row.at - story.load_lowered_at


def run_ramp(watcher: Watcher, load: PacedLoad, story: Story) -> None:
    print(COLUMNS, flush=True)
    note("load and served: req/s of the load generator; failed: its failed requests so far;")
    note("metric: what the operator read from Prometheus; + a pod not Ready yet, ~ a pod draining")
    last = RAMP[-1]
    for step in RAMP:
        load.set_rate(step.rps)
        if step is last:
            story.load_lowered_at = time.monotonic() - story.started
        step_end = time.monotonic() + step.seconds
        settled_since: float | None = None
        while time.monotonic() < step_end:
            watcher.observe()
            if step is last and story.changes and story.changes[-1][2] < story.changes[-1][1]:
                settled_since = (settled_since or time.monotonic()) if watcher.settled() else None
                if settled_since is not None and time.monotonic() - settled_since >= SETTLED_SECONDS:
                    return
            time.sleep(1)


def served_per_pod(prometheus: PrometheusServer, seconds: float) -> dict[str, int]:
    """Requests each pod served over the last ``seconds`` (its counters' last values)."""
    answer = prometheus.query(f"sum by (pod) (max_over_time({API_ROUTES}[{int(seconds) + 30}s]))")
    result = answer.get("data", {}).get("result", [])
    return {series["metric"].get("pod", "?"): round(float(series["value"][1])) for series in result}


def summary(story: Story, load: PacedLoad, serving: Serving) -> None:
    stats = load.stats
    ups = [c for c in story.changes if c[2] > c[1]]
    downs = [c for c in story.changes if c[2] < c[1]]
    peak = max((row.replicas for row in story.rows), default=0)
    peak_metric = max((row.metric or 0.0 for row in story.rows), default=0.0)
    served = served_per_pod(serving.prometheus, time.monotonic() - story.started)
    per_pod = ", ".join(
        f"{story.letters.get(pod, '?')} {count}"
        for pod, count in sorted(served.items(), key=lambda item: story.letters.get(item[0], item[0]))
    )
    drained = ", ".join(story.letters[pod] for pod in story.drained)
    failed = f"{stats.errors} of {stats.requests}"
    if stats.errors:
        failed += f" {stats.per_status}"
    heading("summary")
    lines = [
        ("served by", serving.describe()),
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
            if story.scale_down_after_lowering is None
            else f"first step down {story.scale_down_after_lowering:.1f}s after the load dropped to "
            f"{RAMP[-1].rps:g} req/s (window {SCALE_DOWN_WINDOW}s)",
        ),
        (
            "scale events",
            f"{len(story.changes)} ({len(ups)} up, {len(downs)} down): "
            + ", ".join(f"{a}->{b}" for _, a, b in story.changes),
        ),
        ("requests", f"{stats.requests} answered ({stats.dropped} not sent: too many in flight)"),
        (
            "served per pod",
            f"{per_pod or '-'}: {sum(served.values())} in all (Prometheus); "
            f"the load's {stats.requests} answers + {SEED_REQUESTS} to seed the tasks",
        ),
        ("drained", f"{len(story.drained)} pods, under load: {drained or '-'}"),
        ("failed requests", f"{failed}, over the whole run"),
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


def wait_ready(cluster: LocalCluster, namespace: str, timeout: int) -> None:
    """Until sb/shop is Ready; a Stalled backend (it will not get there by itself) fails at once."""

    def condition(backend: dict[str, Any], kind: str) -> dict[str, Any] | None:
        found = [c for c in backend.get("status", {}).get("conditions", []) if c.get("type") == kind]
        return found[0] if found and found[0].get("status") == "True" else None

    deadline = time.monotonic() + timeout
    stalled: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        answer = cluster.kubectl("get", f"sb/{NAME}", "-n", namespace, "-o", "json", check=False)
        backend = json.loads(answer.stdout) if answer.returncode == 0 else {}
        if condition(backend, "Ready"):
            return
        if stalled := condition(backend, "Stalled"):
            break
        time.sleep(1)
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    why = (
        f"Stalled: {stalled.get('reason')}: {stalled.get('message')}"
        if stalled
        else f"not Ready in {timeout}s"
    )
    raise RuntimeError(f"sb/{NAME} {why}\n{pods}")


Later = Callable[[str, Callable[[], object]], None]


def start_control_plane(skip_real_node: str | None, later: Later) -> tuple[LocalCluster, str | None]:
    """The control plane, with the real node unless ``skip_real_node`` says why not, and when it
    can run; the second value says why it does not."""
    if skip_real_node is not None:
        cluster, why_not = LocalCluster.ensure(), skip_real_node
    else:
        try:
            cluster, why_not = LocalCluster.ensure(real_node=True), None
        except subprocess.CalledProcessError:
            # hack/cluster.sh printed its reason above and stopped whatever it had started.
            why_not = "hack/cluster.sh up --real-node failed (its reason is above)"
            say(f"{why_not}: starting the control plane without it")
            cluster = LocalCluster.ensure()
        if why_not is None and not cluster.has_real_node():
            why_not = (
                f"a control plane without the real node is already up in {cluster.local_dir} "
                "(make cluster-down stops it)"
            )
    if cluster.started_here:
        later("stopping the control plane the demo started", cluster.stop_if_started_here)
    else:
        say("a control plane was already running: the demo uses it and leaves it up")
    return cluster, why_not


def missing_prometheus_sd() -> str | None:
    if prometheus_sd().exists():
        return None
    return (
        f"{prometheus_sd()} is missing (make prometheus-sd builds it; Debian's has no Kubernetes discovery)"
    )


def missing_images(cluster: LocalCluster) -> list[str]:
    """The demo's images that the real node's containerd lacks, as its kubelet reports them.

    kubelet lists its images in the node's status within seconds of its start: wait that long.
    """

    def missing() -> list[str]:
        node = json.loads(cluster.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
        present = {name for image in node["status"].get("images", []) for name in image.get("names", [])}
        return sorted(set(LOCAL_IMAGES) - present)

    deadline = time.monotonic() + 20
    while (absent := missing()) and time.monotonic() < deadline:
        time.sleep(1)
    return absent


def serve_from_real_pods(cluster: LocalCluster, namespace: str, workdir: Path, later: Later) -> Serving:
    """Prometheus on the host, finding the api's pods through the apiserver."""
    token_file = workdir / "prometheus.token"
    later("removing Prometheus's token", lambda: token_file.unlink(missing_ok=True))  # logs may stay
    prometheus_identity(cluster, namespace, token_file)
    scrape = kubernetes_pods_scrape_config(
        SCRAPE_JOB,
        api_server=cluster.server,
        ca_file=cluster.ca_file,
        token_file=token_file,
        namespace=namespace,
        label_selector=api_pod_selector(),
        port_name="http",
    )
    with step("Prometheus, discovering the api pods (kubernetes_sd_configs, role pod)"):
        prometheus = PrometheusServer.start(
            workdir, scrape_configs=[scrape], scrape_interval="1s", binary=prometheus_sd()
        )
        later("stopping Prometheus", prometheus.destroy)
    note(f"prometheus {prometheus.url}: pods of {namespace} with {api_pod_selector()}, port http")
    note(yaml.safe_dump(scrape["kubernetes_sd_configs"][0], sort_keys=False).replace("\n", "\n    ").rstrip())
    return Serving(real_pods=True, prometheus=prometheus, local_address=BRIDGE_IP)


def service_url(cluster: LocalCluster, namespace: str) -> str:
    """The api Service's ClusterIP URL, which the host reaches through kube-proxy."""
    service = client.CoreV1Api(cluster.api).read_namespaced_service(f"{NAME}-api", namespace)
    assert service.spec is not None
    assert service.spec.ports
    return f"http://{service.spec.cluster_ip}:{service.spec.ports[0].port}"


def serve_from_a_process(workdir: Path, later: Later) -> Serving:
    """The kwok path: the app and its servers as processes on 127.0.0.1."""
    with step("sample app stack"):
        stack = SampleAppStack.start(workdir, with_replica=True, progress=say)
        later("stopping the sample app, Redis and PostgreSQL", stack.destroy)
    note(
        f"app {stack.app.url}  postgres primary :{stack.primary.port}"
        f" replica :{stack.replica.port if stack.replica else '-'}  redis :{stack.redis.port}"
    )
    process = PodView("app-process", stack.app.address, "127.0.0.1 (a process)", "ready")
    scrape = {
        "job_name": SCRAPE_JOB,
        "static_configs": [{"targets": [stack.app.address], "labels": {"pod": process.name}}],
    }
    with step("Prometheus scraping the app every second"):
        prometheus = PrometheusServer.start(workdir, scrape_configs=[scrape], scrape_interval="1s")
        later("stopping Prometheus", prometheus.destroy)
        prometheus.wait_for_target(SCRAPE_JOB, count=1)
    note(f"prometheus {prometheus.url}")
    return Serving(real_pods=False, prometheus=prometheus, load_url=stack.app.url, process=process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--kwok",
        action="store_true",
        help="skip the real node: kwok's fake pods, and the app as one process on 127.0.0.1",
    )
    args = parser.parse_args(argv)
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
            heading("1. the local control plane (with its real node) and the operator")
            with step("control plane (hack/cluster.sh up --real-node; reused when already up)"):
                skip = "--kwok was given" if args.kwok else missing_prometheus_sd()
                cluster, why_not = start_control_plane(skip, later)
            if why_not is None and (absent := missing_images(cluster)):
                why_not = f"the real node lacks the images {', '.join(absent)} (make images builds them)"
            real_pods = why_not is None
            if not real_pods:
                say(f"NO REAL PODS: {why_not}.")
                say("The demo runs on kwok's fake pods: the app is one process on 127.0.0.1.")
            cleanup.callback(cluster.close_client)
            show(cluster, "get", "nodes", "-o", "wide")
            cluster.install_crd(field_manager="sbo-demo")
            create_namespace(cluster, namespace, real_pods=real_pods)
            if not cluster.started_here:
                later(
                    f"deleting namespace {namespace}",
                    lambda: cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False),
                )
            operator_env = {
                "SBO_NAMESPACES": namespace,
                "SBO_RESYNC_SECONDS": "30",
                "SBO_LOG_LEVEL": "WARNING",
            }
            if real_pods:
                operator_env |= DATA_SERVICE_IMAGES
            with step(f"operator (sbo-operator run, watching namespace {namespace})"):
                operator = OperatorProcess(
                    kubeconfig=cluster.kubeconfig, log_path=workdir / "operator.log", env=operator_env
                )
                later("stopping the operator", operator.stop)
                operator.start()

            if real_pods:
                heading("2. Prometheus on the host, finding the api's pods through the apiserver")
                serving = serve_from_real_pods(cluster, namespace, workdir, later)
            else:
                heading("2. the real sample app with PostgreSQL, Redis and Prometheus (127.0.0.1)")
                serving = serve_from_a_process(workdir, later)

            where = f"on {NODE_NAME}, images built here" if real_pods else "on kwok's fake pods"
            heading(f"3. the sample backend {where} (examples/basic.yaml + autoscaling on the request rate)")
            manifest = backend_manifest(namespace, serving)
            print(yaml.safe_dump({"autoscaling": manifest["spec"]["api"]["autoscaling"]}, sort_keys=False))
            cluster.apply(manifest, field_manager="sbo-demo")
            with step(f"waiting for sb/{NAME} to be Ready (or Stalled)"):
                wait_ready(cluster, namespace, timeout=300 if real_pods else 120)
            show(cluster, "get", "sb", "-n", namespace)
            show(cluster, "get", "pods", "-n", namespace, "-o", "wide")
            if real_pods:
                serving.load_url = service_url(cluster, namespace)
                with step(f"Prometheus scraping the api pod ({SCRAPE_JOB} job, found through the apiserver)"):
                    serving.prometheus.wait_for_target(SCRAPE_JOB, count=1, timeout=60)
            # The routes' series exist before the first poll.
            ids = seed_tasks(serving.load_url, count=SEED_TASKS, local_address=serving.local_address)

            heading("4. load ramp through " + ("the api's Service" if real_pods else "the app process"))
            note(f"load on {serving.load_url} ({serving.describe()})")
            note(
                f"query {QUERY}, target {TARGET_PER_REPLICA} req/s per replica, poll {POLL_SECONDS}s, "
                f"scale-down window {SCALE_DOWN_WINDOW}s; ramp "
                + " -> ".join(f"{s.rps:g} req/s for {s.seconds:g}s" for s in RAMP)
            )
            load = PacedLoad(
                serving.load_url,
                task_paths(ids),
                max_seconds=sum(s.seconds for s in RAMP) + 30,
                keep_alive=not real_pods,  # a connection per request: kube-proxy balances each
                local_address=serving.local_address,
            )
            later("stopping the load", load.stop)
            load.start()
            story = Story(started=time.monotonic())
            run_ramp(Watcher(cluster, namespace, operator, serving, load, story), load, story)
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
            summary(story, load, serving)
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
