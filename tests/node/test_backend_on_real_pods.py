"""The stack the operator declares, running for real: examples/basic.yaml on the real node.

The module starts its own control plane with the real node (`hack/cluster.sh up --real-node`,
ports from SBO_PORT_BASE + 70, state in a temporary folder), installs the CRD, runs the operator
as a local process pointed at the images built here (`make images`), and applies examples/basic.yaml
in a namespace enforcing Pod Security "restricted" whose annotations steer every pod to the real
node. The backend's spec is basic.yaml's with only what the local images need changed (image,
versions, pull policy), plus a worker and `spec.networkPolicies`: see :func:`local_variant`.

Each test shows one thing the kwok tiers cannot: real probes, alembic against the real primary,
the api serving through its Service, the cache, streaming replicas, the worker, a primary that
comes back with its data, `kubectl scale`, NetworkPolicies that kube-router enforces, per-pod DNS
names under the headless governing Services, a rollout held (with no pod ever in
CreateContainerConfigError) while a Secret it needs is missing, and generated Secrets deleted by
hand reaching the servers and every pod. The last test stops the control plane and proves the
host is as it was. Figures (apply to Ready, the node's memory) are printed at the end of the
module (`pytest -rP` shows them).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

from devkit import host_state
from devkit.cluster import KubectlError, LocalCluster, eventually
from devkit.failover_probe import CREATE_PROBE_TABLE, Probe, ProbeRecord
from devkit.operator_process import OperatorProcess
from devkit.paths import SAMPLE_APP
from devkit.process import WaitTimeout
from devkit.promtext import Labels, samples
from devkit.real_pods import NODE_NAME, node_http_client, node_memory_mib, real_node_namespace
from tests.node.shop_backend import (
    LOCAL_DATA_SERVICE_IMAGES,
    NAME,
    NAMESPACE,
    READY_TIMEOUT,
    Backend,
    Figures,
    get_json,
    local_variant,
    wait_ready,
)
from tests.node.test_real_node import probe_pod

pytestmark = pytest.mark.node

API_PORT = 8000
SOCKET_DIR = "/var/run/postgresql"
COMPONENT = "app.kubernetes.io/component"
TASK_MISS: Labels = (("resource", "task"), ("result", "miss"))
TASK_HIT: Labels = (("resource", "task"), ("result", "hit"))


def previous_logs(cluster: LocalCluster, pod: str) -> str:
    """The end of the logs of a pod's previous (restarted) container, for a failure message."""
    return cluster.kubectl("logs", "-n", NAMESPACE, pod, "--previous", "--tail=30", check=False).stdout


def postgres_roles(cluster: LocalCluster) -> tuple[str, list[str]]:
    """The pod labelled primary and those labelled replica (live ones), as -rw and -ro select them."""
    live = [
        pod
        for pod in pods(cluster, f"app.kubernetes.io/instance={NAME},{COMPONENT}=postgres")
        if "deletionTimestamp" not in pod["metadata"]
    ]
    by_role: dict[str, list[str]] = {}
    for pod in live:
        role = pod["metadata"]["labels"].get("sbo.dev/postgres-role", "")
        by_role.setdefault(role, []).append(pod["metadata"]["name"])
    (primary,) = by_role.get("primary", [])
    return primary, sorted(by_role.get("replica", []))


def pods(cluster: LocalCluster, selector: str | None = None) -> list[dict[str, Any]]:
    args = ["pods"] if selector is None else ["pods", "-l", selector]
    items: list[dict[str, Any]] = get_json(cluster, *args, namespace=NAMESPACE)["items"]
    return items


def api_pods(cluster: LocalCluster) -> list[dict[str, Any]]:
    return [
        pod
        for pod in pods(cluster, f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=api")
        if "deletionTimestamp" not in pod["metadata"]
    ]


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def exec_in(cluster: LocalCluster, pod: str, *command: str, container: str | None = None) -> str:
    args = ["exec", "-n", NAMESPACE, pod]
    if container is not None:
        args += ["-c", container]
    return cluster.kubectl(*args, "--", *command, timeout=60).stdout


def psql(cluster: LocalCluster, pod: str, sql: str, **variables: str | int) -> list[list[str]]:
    """Rows of ``sql`` run in ``pod``'s server as the superuser over its unix socket (peer auth),
    in the app's database. Values go in as psql variables (``:'name'``), never spliced into SQL."""
    command = ["psql", "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h", SOCKET_DIR, "-d", "app"]
    for name, value in variables.items():
        command += ["-v", f"{name}={value}"]
    args = ["exec", "-i", "-n", NAMESPACE, pod, "-c", "postgres", "--", *command]
    out = cluster.kubectl(*args, input=sql, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines() if line]


# ---- the app, through its Service ------------------------------------------------------------------


@dataclasses.dataclass
class App:
    """A signed-up user of the api, talking to it through the api Service's ClusterIP."""

    http: httpx.Client
    service_url: str
    headers: dict[str, str]

    def create_task(self, title: str, description: str) -> dict[str, Any]:
        created = self.http.post(
            f"{self.service_url}/api/v1/tasks",
            json={"title": title, "description": description},
            headers=self.headers,
        )
        assert created.status_code == 201, created.text
        body: dict[str, Any] = created.json()
        return body

    def completed_task(self, task_id: int) -> dict[str, Any] | None:
        """The task from the list of completed ones (a replica read that never fills the cache)."""
        listed = self.http.get(
            f"{self.service_url}/api/v1/tasks", params={"status": "completed", "limit": 100}
        )
        listed.raise_for_status()
        return next((task for task in listed.json()["data"] if task["id"] == task_id), None)


@pytest.fixture(scope="module")
def app(real_cluster: LocalCluster, backend: Backend) -> Iterator[App]:
    cluster_ip = get_json(real_cluster, "service", f"{NAME}-api", namespace=NAMESPACE)["spec"]["clusterIP"]
    service_url = f"http://{cluster_ip}"
    email, password = f"real-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(16)
    with node_http_client() as http:
        # kube-proxy programs the Service a moment after its endpoints turn ready.
        signed_up = eventually(
            lambda: http.post(
                f"{service_url}/api/v1/users/signup", json={"email": email, "password": password}
            ),
            timeout=30,
            interval=1,
            what="the api Service to answer from the host",
        )
        assert signed_up.status_code == 201, signed_up.text
        token = http.post(
            f"{service_url}/api/v1/login/access-token", data={"username": email, "password": password}
        )
        assert token.status_code == 200, token.text
        yield App(http, service_url, {"Authorization": f"Bearer {token.json()['access_token']}"})


def instance_logs(cluster: LocalCluster, pod: str) -> str:
    """The tail of an instance's bootstrap and server logs (this run's and the previous one's): what
    a timeout waiting for it to stream leaves for the reader."""
    parts = []
    for container, previous in (("bootstrap", False), ("postgres", True), ("postgres", False)):
        args = ["logs", "-n", NAMESPACE, pod, "-c", container, "--tail=40"]
        done = cluster.kubectl(*args, *(["--previous"] if previous else []), check=False)
        label = f"{container}{' (previous)' if previous else ''}"
        parts.append(f"--- {pod} {label}:\n{done.stdout}{done.stderr}")
    return "\n".join(parts)


def wait_streaming_from(cluster: LocalCluster, primary: str, standbys: list[str], what: str) -> None:
    """Wait until exactly ``standbys`` stream from ``primary``; on timeout, say why with their logs."""
    streaming = "SELECT application_name, state FROM pg_stat_replication ORDER BY 1"
    try:
        eventually(
            lambda: psql(cluster, primary, streaming) == [[name, "streaming"] for name in sorted(standbys)],
            timeout=120,
            interval=2,
            what=what,
        )
    except WaitTimeout as timeout:
        seen = psql(cluster, primary, streaming)
        logs = "\n".join(instance_logs(cluster, pod) for pod in standbys)
        raise AssertionError(f"{timeout}\npg_stat_replication on {primary}: {seen}\n{logs}") from timeout


def summary_of(title: str, description: str) -> str:
    """What the sample app's worker writes as a task's result (app.worker.summarise)."""
    text = f"{title}\n{description}"
    return f"{len(text.split())} words, sha256 {hashlib.sha256(text.encode()).hexdigest()[:12]}"


def scrape_api_pods(cluster: LocalCluster, http: httpx.Client, metric: str) -> dict[Labels, float]:
    """``metric``'s samples summed over every api pod (each pod's /metrics), by their labels."""
    total: dict[Labels, float] = {}
    for pod in api_pods(cluster):
        text = http.get(f"http://{pod['status']['podIP']}:{API_PORT}/metrics").text
        for labels, value in samples(text, metric).items():
            total[labels] = total.get(labels, 0.0) + value
    return total


def delta(after: dict[Labels, float], before: dict[Labels, float], labels: Labels) -> float:
    return after.get(labels, 0.0) - before.get(labels, 0.0)


# ---- the tests ---------------------------------------------------------------------------------------


def test_every_pod_runs_on_the_real_node_and_is_ready_through_its_real_probes(
    real_cluster: LocalCluster, backend: Backend, figures: Figures
) -> None:
    sb = get_json(real_cluster, f"sb/{NAME}", namespace=NAMESPACE)
    conditions = {c["type"]: c["status"] for c in sb["status"]["conditions"]}
    assert conditions["Ready"] == "True", sb["status"]
    running = [pod for pod in pods(real_cluster) if pod["status"]["phase"] == "Running"]
    components = Counter(pod["metadata"]["labels"][COMPONENT] for pod in running)
    assert components == {"api": 2, "worker": 1, "postgres": 3, "redis": 1}, components
    for pod in running:
        name = pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == NODE_NAME, name
        assert is_ready(pod), (name, pod["status"])
        for status in pod["status"]["containerStatuses"]:
            assert status["ready"], (name, status)
            assert status["restartCount"] == 0, (
                name,
                status.get("lastState"),
                previous_logs(real_cluster, name),
            )
        # Ready through the operator's own probes (the worker serves nothing and has none).
        probed = [c["name"] for c in pod["spec"]["containers"] if "readinessProbe" in c]
        assert probed or pod["metadata"]["labels"][COMPONENT] == "worker", name
    figures.values["node_memory_mib_backend_ready"] = node_memory_mib(real_cluster.local_dir)
    assert backend.seconds_to_ready < READY_TIMEOUT


def test_migrations_ran_alembic_on_the_primary_before_the_api_rolled(
    real_cluster: LocalCluster, backend: Backend
) -> None:
    jobs = get_json(
        real_cluster, "jobs", "-l", "app.kubernetes.io/component=migrations", namespace=NAMESPACE
    )["items"]
    assert len(jobs) == 1, [job["metadata"]["name"] for job in jobs]
    job = jobs[0]
    assert job["status"].get("succeeded") == 1, job["status"]
    head = ScriptDirectory.from_config(AlembicConfig(str(SAMPLE_APP / "alembic.ini"))).get_current_head()
    primary, _ = postgres_roles(real_cluster)
    assert psql(real_cluster, primary, "SELECT version_num FROM alembic_version") == [[head]]
    logs = real_cluster.kubectl("logs", "-n", NAMESPACE, f"job/{job['metadata']['name']}").stdout
    assert f"Running upgrade  -> {head}" in logs, logs
    # The operator holds the api (and the worker) back until the Job has succeeded.
    completed = job["status"]["completionTime"]
    for deployment in (f"{NAME}-api", f"{NAME}-worker"):
        created = get_json(real_cluster, "deployment", deployment, namespace=NAMESPACE)["metadata"][
            "creationTimestamp"
        ]
        assert created >= completed, (deployment, created, completed)


def test_the_worker_consumes_a_task_created_through_the_api_service(app: App) -> None:
    title, description = "real pods", f"queued at {time.time()}"
    task = app.create_task(title, description)
    assert task["status"] == "pending"
    done = eventually(
        lambda: app.completed_task(task["id"]), timeout=60, interval=1, what="the worker to complete the task"
    )
    assert done["result"] == summary_of(title, description)
    assert done["processed_at"] is not None


def test_a_task_is_read_from_a_streaming_replica_then_from_the_cache(
    real_cluster: LocalCluster, app: App
) -> None:
    # A new backend: instance 0 is the primary, the others stream from it, one synchronously.
    primary, replicas = postgres_roles(real_cluster)
    assert (primary, replicas) == (f"{NAME}-postgres-0", [f"{NAME}-postgres-1", f"{NAME}-postgres-2"])
    streaming = psql(
        real_cluster,
        primary,
        "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY 1",
    )
    assert streaming == [[name, "streaming", "quorum"] for name in replicas]
    sb = get_json(real_cluster, f"sb/{NAME}", namespace=NAMESPACE)
    assert (sb["status"]["postgres"]["phase"], sb["status"]["postgres"]["currentPrimary"]) == (
        "Stable",
        primary,
    )

    title, description = "read twice", "from a replica, then from Redis"
    task = app.create_task(title, description)
    eventually(
        lambda: app.completed_task(task["id"]), timeout=60, interval=1, what="the worker to complete the task"
    )
    # Every replica has replayed everything written so far, the worker's completion included.
    (position,) = psql(real_cluster, primary, "SELECT pg_current_wal_lsn()")[0]
    replayed = "SELECT bool_and(replay_lsn >= :'position') FROM pg_stat_replication"
    eventually(
        lambda: psql(real_cluster, primary, replayed, position=position) == [["t"]],
        timeout=30,
        interval=0.5,
        what="the replicas to replay the primary's WAL",
    )
    for replica in replicas:
        assert psql(real_cluster, replica, "SELECT pg_is_in_recovery()") == [["t"]]
        status = psql(real_cluster, replica, "SELECT status FROM tasks WHERE id = :'id'", id=task["id"])
        assert status == [["completed"]], replica

    url = f"{app.service_url}/api/v1/tasks/{task['id']}"
    cache = "cache_requests_total"
    fallbacks_before = scrape_api_pods(real_cluster, app.http, "db_replica_fallbacks_total")
    before = scrape_api_pods(real_cluster, app.http, cache)
    first = app.http.get(url)
    after_first = scrape_api_pods(real_cluster, app.http, cache)
    second = app.http.get(url)
    after_second = scrape_api_pods(real_cluster, app.http, cache)
    assert first.status_code == second.status_code == 200
    assert first.json()["status"] == "completed"
    assert first.content == second.content
    # The first read missed (the worker's completion dropped the entry) and loaded a replica:
    # no read fell back to the primary. The second was served by Redis.
    assert delta(after_first, before, TASK_MISS) == 1, (before, after_first)
    assert scrape_api_pods(real_cluster, app.http, "db_replica_fallbacks_total") == fallbacks_before
    assert delta(after_second, after_first, TASK_HIT) == 1, (after_first, after_second)
    assert delta(after_second, after_first, TASK_MISS) == 0

    # Redis holds exactly that body, and only with the password the operator generated.
    redis = f"{NAME}-redis-0"
    key = f"cache:v1:task:{task['id']}"
    without_password = ["env", "-u", "REDISCLI_AUTH", "redis-cli", "-h", "127.0.0.1", "GET", key]
    refused = real_cluster.kubectl("exec", "-n", NAMESPACE, redis, "--", *without_password, check=False)
    assert "NOAUTH" in refused.stdout + refused.stderr, refused
    cached = exec_in(real_cluster, redis, "redis-cli", "-h", "127.0.0.1", "--no-auth-warning", "GET", key)
    assert cached.rstrip("\n").encode() == second.content


def test_network_policies_keep_other_pods_from_postgres_and_redis_but_not_the_api(
    real_cluster: LocalCluster, backend: Backend
) -> None:
    # The node tier's restricted probe pod, of no component of the backend.
    outsider = probe_pod("outsider", labels={"app": "outsider"})
    outsider["metadata"]["namespace"] = NAMESPACE
    # Under the namespace's default deny, another workload brings its own egress policy.
    outsider_egress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "outsider-egress", "namespace": NAMESPACE},
        "spec": {
            "podSelector": {"matchLabels": {"app": "outsider"}},
            "policyTypes": ["Egress"],
            "egress": [{}],
        },
    }
    real_cluster.apply(outsider_egress)
    real_cluster.apply(outsider)
    real_cluster.kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "pod/outsider", "--timeout=60s")
    postgres = f"{NAME}-postgres-rw.{NAMESPACE}.svc.cluster.local:5432"
    redis = f"{NAME}-redis.{NAMESPACE}.svc.cluster.local:6379"
    api = f"{NAME}-api.{NAMESPACE}.svc.cluster.local:80"

    def dial_from_outsider(address: str) -> bool:
        dialed = real_cluster.kubectl(
            "exec", "-n", NAMESPACE, "outsider", "--", "/probe", "dial", address, check=False
        )
        return dialed.returncode == 0

    # The api admits pods of its namespace (appIngressFrom): the network itself works.
    assert eventually(
        lambda: dial_from_outsider(api), timeout=30, interval=1, what="the outsider to reach the api"
    )
    assert not dial_from_outsider(postgres)
    assert not dial_from_outsider(redis)
    # The api's own pod reaches both, through the same Service names.
    api_pod = api_pods(real_cluster)[0]["metadata"]["name"]
    for address in (postgres, redis):
        host, port = address.rsplit(":", 1)
        connect = f"import socket; socket.create_connection(({host!r}, {port}), timeout=3).close()"
        exec_in(real_cluster, api_pod, "python", "-c", connect)
    real_cluster.kubectl("delete", "pod", "-n", NAMESPACE, "outsider", "--grace-period=1")


def test_statefulset_pods_resolve_by_name_under_their_governing_headless_service(
    real_cluster: LocalCluster, backend: Backend
) -> None:
    # From the api pod (its image has Python): `<pod>.<service>`, relative, through the pod's
    # search path, as failover or a per-instance lag check would address one instance.
    resolver = api_pods(real_cluster)[0]["metadata"]["name"]
    resolve = (
        "import socket, sys; "
        "print(' '.join(sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], 5432)})))"
    )
    for pod_name in (f"{NAME}-postgres-0", f"{NAME}-postgres-1", f"{NAME}-redis-0"):
        pod = get_json(real_cluster, "pod", pod_name, namespace=NAMESPACE)
        (owner,) = pod["metadata"]["ownerReferences"]
        governing = get_json(real_cluster, "statefulset", owner["name"], namespace=NAMESPACE)["spec"][
            "serviceName"
        ]
        host = f"{pod_name}.{governing}"
        # No such name (a ClusterIP Service governing) fails the exec with socket.gaierror.
        resolved = exec_in(real_cluster, resolver, "python", "-c", resolve, host).split()
        assert resolved == [pod["status"]["podIP"]], host
        service = get_json(real_cluster, "service", governing, namespace=NAMESPACE)
        assert service["spec"]["clusterIP"] == "None", (owner["name"], governing)


# An env var of the api's whose Secret does not exist yet.
PAYMENT_TOKEN = {"name": "PAYMENT_TOKEN", "valueFrom": {"secretKeyRef": {"name": "payments", "key": "token"}}}
PAYMENT_TOKEN_FIELD = "spec.api.env[0].valueFrom.secretKeyRef"


def condition(sb: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in sb["status"]["conditions"] if c["type"] == kind)
    return found


def reconciled(cluster: LocalCluster) -> dict[str, Any] | None:
    """The backend once the operator has seen its current generation, else None."""
    sb = get_json(cluster, f"sb/{NAME}", namespace=NAMESPACE)
    return sb if sb.get("status", {}).get("observedGeneration") == sb["metadata"]["generation"] else None


def wait_ready_at_current_generation(cluster: LocalCluster, timeout: float = 180) -> dict[str, Any]:
    """Ready for the spec as it is now (not Ready left over from before the last change), and the
    api Deployment rolled out: no old api pod left."""

    def ready() -> dict[str, Any] | None:
        sb = reconciled(cluster)
        return sb if sb is not None and condition(sb, "Ready")["status"] == "True" else None

    sb: dict[str, Any] = eventually(
        ready, timeout=timeout, interval=1, what="the backend Ready at its generation"
    )
    cluster.kubectl(
        "rollout", "status", f"deployment/{NAME}-api", "-n", NAMESPACE, f"--timeout={int(timeout)}s",
        timeout=timeout + 20,
    )  # fmt: skip
    return sb


def migrations_jobs(cluster: LocalCluster) -> set[str]:
    items = get_json(cluster, "jobs", "-l", f"{COMPONENT}=migrations", namespace=NAMESPACE)["items"]
    return {job["metadata"]["name"] for job in items}


def waiting_on_their_config(cluster: LocalCluster) -> set[str]:
    """``pod/container`` of every container of the namespace waiting in CreateContainerConfigError."""
    return {
        f"{pod['metadata']['name']}/{status['name']}"
        for pod in pods(cluster)
        for status in [
            *pod.get("status", {}).get("initContainerStatuses", []),
            *pod.get("status", {}).get("containerStatuses", []),
        ]
        if status.get("state", {}).get("waiting", {}).get("reason") == "CreateContainerConfigError"
    }


def test_a_spec_needing_a_missing_secret_is_held_and_no_pod_waits_for_it(
    real_cluster: LocalCluster, app: App
) -> None:
    task = app.create_task("held", "while the api's Secret is missing")
    deployment_before = get_json(real_cluster, "deployment", f"{NAME}-api", namespace=NAMESPACE)
    jobs_before = migrations_jobs(real_cluster)
    api_before = {pod["metadata"]["name"] for pod in api_pods(real_cluster)}
    patch = json.dumps({"spec": {"api": {"env": [PAYMENT_TOKEN]}}})
    real_cluster.kubectl("patch", f"sb/{NAME}", "-n", NAMESPACE, "--type=merge", "-p", patch)

    def stalled() -> dict[str, Any] | None:
        sb = reconciled(real_cluster)
        return sb if sb is not None and condition(sb, "Stalled")["status"] == "True" else None

    sb = eventually(stalled, timeout=60, interval=1, what="the backend to turn Stalled")
    assert condition(sb, "Stalled")["reason"] == "SecretNotFound", sb["status"]
    assert PAYMENT_TOKEN_FIELD in condition(sb, "Stalled")["message"]

    # Several reconciles (the operator resyncs every 10 s): a real kubelet would put any pod of
    # the new template in CreateContainerConfigError at once; none appears, none is made.
    config_errors: set[str] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        config_errors |= waiting_on_their_config(real_cluster)
        time.sleep(1)
    assert not config_errors
    deployment = get_json(real_cluster, "deployment", f"{NAME}-api", namespace=NAMESPACE)
    assert deployment["metadata"]["generation"] == deployment_before["metadata"]["generation"]
    assert deployment["spec"]["template"] == deployment_before["spec"]["template"]
    assert migrations_jobs(real_cluster) == jobs_before, "no migrations Job for the held spec"
    assert {pod["metadata"]["name"] for pod in api_pods(real_cluster)} == api_before
    assert all(is_ready(pod) for pod in api_pods(real_cluster)), "the running version keeps serving"

    # The Secret appears: the rollout proceeds (nothing the operator watches changed: its retry
    # finds it), still with no pod ever waiting for its configuration.
    real_cluster.kubectl(
        "create", "secret", "generic", "payments", "--from-literal=token=tok-123", "-n", NAMESPACE
    )
    rolled_out = False
    deadline = time.monotonic() + 240
    while not rolled_out and time.monotonic() < deadline:
        config_errors |= waiting_on_their_config(real_cluster)
        sb = reconciled(real_cluster) or sb
        rolled_out = condition(sb, "Ready")["status"] == "True" and all(
            pod["metadata"]["name"] not in api_before and is_ready(pod) for pod in api_pods(real_cluster)
        )
        time.sleep(1)
    assert rolled_out, sb["status"]
    assert not config_errors
    sb = wait_ready_at_current_generation(real_cluster)
    assert condition(sb, "Stalled")["status"] == "False"
    assert len(migrations_jobs(real_cluster) - jobs_before) <= 1
    new = api_pods(real_cluster)
    assert len(new) == 2
    for pod in new:
        name = pod["metadata"]["name"]
        assert (
            exec_in(real_cluster, name, "python", "-c", "import os; print(os.environ['PAYMENT_TOKEN'])")
            == "tok-123\n"
        ), name
        served = app.http.get(f"http://{pod['status']['podIP']}:{API_PORT}/api/v1/tasks/{task['id']}")
        assert served.status_code == 200, (name, served.text)

    # The spec as the later tests know it.
    real_cluster.kubectl(
        "patch", f"sb/{NAME}", "-n", NAMESPACE, "--type=merge", "-p", '{"spec": {"api": {"env": null}}}'
    )
    wait_ready_at_current_generation(real_cluster)
    real_cluster.kubectl("delete", "secret", "payments", "-n", NAMESPACE)


GENERATED_SECRETS = (f"{NAME}-postgres-app", f"{NAME}-redis")
# Every pod of these components reads one of them.
COMPONENT_PODS = {"api": 2, "worker": 1, "postgres": 3, "redis": 1}


def secret_values(cluster: LocalCluster, name: str) -> tuple[str, dict[str, str]]:
    """A Secret's uid and its decoded data (kept out of every assertion's message)."""
    secret = get_json(cluster, "secret", name, namespace=NAMESPACE)
    return secret["metadata"]["uid"], {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def logs_in_to_postgres(cluster: LocalCluster, pod: str, conninfo: str, password: str, sql: str) -> bool:
    """Whether ``pod``'s own server takes ``password`` over TCP (scram, as every client connects).
    The password goes in on stdin, never on a command line."""
    script = 'IFS= read -r PGPASSWORD && export PGPASSWORD && exec psql -X -w -A -t -d "$1" -c "$2"'
    done = cluster.kubectl(
        "exec", "-i", "-n", NAMESPACE, pod, "-c", "postgres", "--", "sh", "-c", script, "sh", conninfo, sql,
        input=password + "\n", check=False, timeout=60,
    )  # fmt: skip
    if done.returncode == 0:
        return True
    assert "password authentication failed" in done.stderr, done.stderr
    return False


def redis_takes(cluster: LocalCluster, password: str) -> bool:
    """Whether Redis takes ``password`` (AUTH, the password on stdin, not the pod's own env)."""
    auth = ["env", "-u", "REDISCLI_AUTH", "redis-cli", "-h", "127.0.0.1", "-x", "AUTH"]
    done = cluster.kubectl(
        "exec", "-i", "-n", NAMESPACE, f"{NAME}-redis-0", "--", *auth, input=password, check=False
    )
    answer = (done.stdout + done.stderr).strip()
    assert answer == "OK" or "WRONGPASS" in answer, answer
    return answer == "OK"


def test_deleted_generated_secrets_reach_the_servers_and_every_pod(
    real_cluster: LocalCluster, app: App
) -> None:
    old = {name: secret_values(real_cluster, name) for name in GENERATED_SECRETS}
    pods_before = {pod["metadata"]["uid"] for pod in pods(real_cluster)}
    real_cluster.kubectl("delete", "secret", *GENERATED_SECRETS, "-n", NAMESPACE)

    def regenerated() -> dict[str, tuple[str, dict[str, str]]] | None:
        try:
            found = {name: secret_values(real_cluster, name) for name in GENERATED_SECRETS}
        except KubectlError:  # NotFound: deleted, not created again yet (the run that found it: Redis's)
            return None
        return found if all(found[name][0] != old[name][0] for name in GENERATED_SECRETS) else None

    new = eventually(regenerated, timeout=30, interval=0.5, what="the Secrets to be generated again")
    (_, old_postgres), (_, old_redis) = old[GENERATED_SECRETS[0]], old[GENERATED_SECRETS[1]]
    (_, new_postgres), (_, new_redis) = new[GENERATED_SECRETS[0]], new[GENERATED_SECRETS[1]]
    changed = [
        new_postgres["password"] != old_postgres["password"],
        new_postgres["replication-password"] != old_postgres["replication-password"],
        new_redis["password"] != old_redis["password"],
    ]
    assert all(changed), "new passwords"

    # Every pod that reads them is replaced by one that is Ready: Postgres, Redis, the api, the worker.
    def all_replaced() -> list[dict[str, Any]] | None:
        current = [
            pod
            for pod in pods(real_cluster)
            if pod["metadata"]["labels"].get(COMPONENT) in COMPONENT_PODS
            and "deletionTimestamp" not in pod["metadata"]
        ]
        counts = Counter(pod["metadata"]["labels"][COMPONENT] for pod in current)
        fresh = all(pod["metadata"]["uid"] not in pods_before and is_ready(pod) for pod in current)
        return current if counts == COMPONENT_PODS and fresh else None

    rolled = eventually(all_replaced, timeout=180, interval=2, what="every pod to be replaced and Ready")
    wait_ready(real_cluster, timeout=180)
    for pod in rolled:
        if pod["metadata"]["labels"][COMPONENT] in ("api", "worker"):
            name = pod["metadata"]["name"]
            for status in pod["status"]["containerStatuses"]:
                assert status["restartCount"] == 0, (
                    name,
                    status.get("lastState"),
                    previous_logs(real_cluster, name),
                )

    # A Warning for each Secret names what rolls, never a value.
    events = get_json(
        real_cluster, "events", "--field-selector", "reason=SecretRegenerated", namespace=NAMESPACE
    )
    messages = " ".join(event["message"] for event in events["items"])
    assert {event["type"] for event in events["items"]} == {"Warning"}
    for name in GENERATED_SECRETS:
        assert f"Secret {name} was missing" in messages
    assert f"StatefulSet {NAME}-postgres" in messages
    assert f"StatefulSet {NAME}-redis" in messages
    passwords = [
        data[key]
        for data in (new_postgres, old_postgres, new_redis, old_redis)
        for key in ("password", "replication-password")
        if key in data
    ]
    leaked = any(password in messages for password in passwords)
    assert not leaked, "a password in an event"

    # The servers take the new passwords and refuse the old ones: the app role, the replication
    # role and Redis.
    primary, replica_names = postgres_roles(real_cluster)
    app_login = f"host=127.0.0.1 user={new_postgres['username']} dbname={new_postgres['database']}"
    replication_login = (
        f"host=127.0.0.1 user={new_postgres['replication-username']} dbname=replication replication=true"
    )
    for conninfo, key, sql in (
        (app_login, "password", "SELECT 1"),
        (replication_login, "replication-password", "IDENTIFY_SYSTEM"),
    ):
        assert logs_in_to_postgres(real_cluster, primary, conninfo, new_postgres[key], sql), key
        assert not logs_in_to_postgres(real_cluster, primary, conninfo, old_postgres[key], sql), key
    assert redis_takes(real_cluster, new_redis["password"])
    assert not redis_takes(real_cluster, old_redis["password"])

    # Every client agrees: both (new) replicas stream with the new replication password, a new
    # api pod serves a task through the Service, the new worker completes it.
    streaming = "SELECT application_name, state FROM pg_stat_replication ORDER BY 1"
    replicas = [[name, "streaming"] for name in replica_names]
    eventually(
        lambda: psql(real_cluster, primary, streaming) == replicas,
        timeout=120,
        interval=2,
        what="both replicas to stream from the primary",
    )
    # Each new api pod reaches both servers (its readiness needs only the primary; Redis degrades).
    for pod in api_pods(real_cluster):
        ready = app.http.get(f"http://{pod['status']['podIP']}:{API_PORT}/readyz")
        assert ready.json() == {"status": "ready", "database": "ok", "redis": "ok"}, pod["metadata"]["name"]
    title, description = "after new credentials", "served and consumed by new pods"
    task = app.create_task(title, description)
    read = app.http.get(f"{app.service_url}/api/v1/tasks/{task['id']}", headers=app.headers)
    assert read.status_code == 200, read.text
    done = eventually(
        lambda: app.completed_task(task["id"]), timeout=60, interval=1, what="the worker to complete the task"
    )
    assert done["result"] == summary_of(title, description)


def test_the_primary_comes_back_with_its_data_on_a_volume_that_persists(
    real_cluster: LocalCluster, app: App
) -> None:
    # Within spec.postgres.failoverDelay (30s here) the primary restarts in place: no failover.
    primary, replicas = postgres_roles(real_cluster)
    task = app.create_task("survives", "the primary's pod being deleted")
    before = get_json(real_cluster, "pod", primary, namespace=NAMESPACE)
    claim = get_json(real_cluster, "pvc", f"data-{primary}", namespace=NAMESPACE)
    volume = get_json(real_cluster, "pv", claim["spec"]["volumeName"])
    # A local volume: a real directory on this host, pinned to the real node.
    host_dir = Path(volume["spec"]["local"]["path"])
    affinity = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert affinity[0]["matchExpressions"][0]["values"] == [NODE_NAME]
    assert (host_dir / "pgdata" / "PG_VERSION").read_text().strip() == "15"

    real_cluster.kubectl("delete", "pod", "-n", NAMESPACE, primary, "--grace-period=10")

    def replaced_and_ready() -> bool:
        found = real_cluster.kubectl("get", "pod", primary, "-n", NAMESPACE, "-o", "json", check=False)
        if found.returncode != 0:  # between the deletion and the StatefulSet's new pod
            return False
        pod = json.loads(found.stdout)
        return pod["metadata"]["uid"] != before["metadata"]["uid"] and is_ready(pod)

    eventually(replaced_and_ready, timeout=180, interval=1, what="the primary's pod to come back Ready")
    after = get_json(real_cluster, "pod", primary, namespace=NAMESPACE)
    assert after["spec"]["nodeName"] == NODE_NAME
    assert (
        get_json(real_cluster, "pvc", f"data-{primary}", namespace=NAMESPACE)["spec"]["volumeName"]
        == volume["metadata"]["name"]
    )
    rows = psql(real_cluster, primary, "SELECT title FROM tasks WHERE id = :'id'", id=task["id"])
    assert rows == [["survives"]]
    # The api serves again, from the same data.
    wait_ready(real_cluster, timeout=180)
    url = f"{app.service_url}/api/v1/tasks/{task['id']}"
    read = eventually(lambda: app.http.get(url), timeout=60, interval=1, what="the api to read the task")
    assert read.json()["title"] == "survives"
    # Both replicas stream from the new primary pod again (they did about 4 s after the -rw Service
    # had it). 60 s: an attempt fails at once while the Service has no endpoint (the real node's
    # unreachable rule), or after tcp_user_timeout (5 s) when its SYN goes unanswered, and the
    # walreceiver retries every wal_retrieve_retry_interval (5 s): several attempts fit. Before,
    # one unanswered SYN was retried on its conntrack entry for over 2 minutes.
    assert postgres_roles(real_cluster) == (primary, replicas), "the same primary, restarted in place"
    streaming = "SELECT application_name, state FROM pg_stat_replication ORDER BY 1"
    eventually(
        lambda: psql(real_cluster, primary, streaming) == [[name, "streaming"] for name in replicas],
        timeout=60,
        interval=1,
        what="both replicas to stream from the new primary pod",
    )
    # A row written after the restart reaches every replica.
    later = app.create_task("after the restart", "streamed to the replicas")
    has_it = "SELECT title FROM tasks WHERE id = :'id'"
    eventually(
        lambda: all(
            psql(real_cluster, replica, has_it, id=later["id"]) == [["after the restart"]]
            for replica in replicas
        ),
        timeout=30,
        interval=0.5,
        what="both replicas to replay the row written after the restart",
    )


def check_the_writes(
    cluster: LocalCluster, found: ProbeRecord, fault: float, *, run: str, old_ip: str, new: str
) -> float:
    """No acknowledged write lost, and -rw reached the old writable server (``old_ip``, before the
    change), then only the new one; the write outage (ProbeRecord.write_outage_seconds)."""
    stored = psql(cluster, new, "SELECT id FROM failover_probe WHERE run = :'run'", run=run)
    lost = found.lost(int(row[0]) for row in stored)
    assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:20]}"
    outage = found.write_outage_seconds(fault)
    assert outage is not None, "writes were acknowledged before the fault and again after the change"
    new_ip = get_json(cluster, "pod", new, namespace=NAMESPACE)["status"]["podIP"]
    assert found.writable_servers_in_order() == [old_ip, new_ip]
    return outage


def test_a_deleted_primary_is_failed_over_without_losing_an_acknowledged_write(
    real_cluster: LocalCluster, app: App, figures: Figures
) -> None:
    real_cluster.kubectl(
        "patch",
        f"sb/{NAME}",
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        '{"spec":{"postgres":{"failoverDelay":"0s"}}}',
    )
    wait_ready_at_current_generation(real_cluster)
    old, replicas = postgres_roles(real_cluster)
    old_ip = get_json(real_cluster, "pod", old, namespace=NAMESPACE)["status"]["podIP"]
    timeline_before = get_json(real_cluster, f"sb/{NAME}", namespace=NAMESPACE)["status"]["postgres"][
        "timeline"
    ]
    psql(real_cluster, old, CREATE_PROBE_TABLE)

    writer_pod = api_pods(real_cluster)[0]["metadata"]["name"]
    probe = Probe(real_cluster, NAMESPACE, writer_pod, run="failover", seconds=40).start()
    time.sleep(10)  # steady writes first
    fault = time.time()
    real_cluster.kubectl("delete", "pod", old, "-n", NAMESPACE, "--grace-period=0", "--force", "--wait=false")
    found = probe.join()

    def stable_on_another() -> dict[str, Any] | None:
        postgres = get_json(real_cluster, f"sb/{NAME}", namespace=NAMESPACE)["status"]["postgres"]
        return postgres if postgres["phase"] == "Stable" and postgres["currentPrimary"] != old else None

    status = eventually(stable_on_another, timeout=60, interval=1, what="a new primary, Stable")
    new = status["currentPrimary"]
    assert new in replicas
    assert status["timeline"] > timeline_before
    assert postgres_roles(real_cluster)[0] == new

    outage = check_the_writes(real_cluster, found, fault, run="failover", old_ip=old_ip, new=new)
    figures.values["failover_write_outage_seconds"] = outage
    figures.values["failover_acknowledged_writes"] = len(found.acked)

    # The old primary rejoins as a replica streaming from the new one (rewound), never writable.
    wait_streaming_from(
        real_cluster,
        new,
        sorted({old, *replicas} - {new}),
        "the old primary and the other replica to stream from the new primary",
    )
    assert psql(real_cluster, old, "SELECT pg_is_in_recovery()") == [["t"]]
    assert postgres_roles(real_cluster) == (new, sorted({old, *replicas} - {new}))
    events = get_json(real_cluster, "events", "--field-selector", "reason=Failover", namespace=NAMESPACE)[
        "items"
    ]
    assert any(f"{old} -> {new}" in event["message"] for event in events), [e["message"] for e in events]
    wait_ready(real_cluster, timeout=180)


def test_a_switchover_on_request_moves_the_primary_under_writes_once_per_id(
    real_cluster: LocalCluster, app: App, figures: Figures
) -> None:
    old, replicas = postgres_roles(real_cluster)
    target = replicas[0]
    old_ip = get_json(real_cluster, "pod", old, namespace=NAMESPACE)["status"]["podIP"]
    request = json.dumps({"spec": {"postgres": {"switchover": {"to": target, "id": "node-switchover-1"}}}})

    writer_pod = api_pods(real_cluster)[0]["metadata"]["name"]
    probe = Probe(real_cluster, NAMESPACE, writer_pod, run="switchover", seconds=30).start()
    time.sleep(8)
    fault = time.time()
    real_cluster.kubectl("patch", f"sb/{NAME}", "-n", NAMESPACE, "--type=merge", "-p", request)
    found = probe.join()

    def switched() -> dict[str, Any] | None:
        postgres = get_json(real_cluster, f"sb/{NAME}", namespace=NAMESPACE)["status"]["postgres"]
        return postgres if postgres["phase"] == "Stable" and postgres["currentPrimary"] == target else None

    status = eventually(switched, timeout=60, interval=1, what="the switchover to finish")
    assert status["switchoverId"] == "node-switchover-1"
    outage = check_the_writes(real_cluster, found, fault, run="switchover", old_ip=old_ip, new=target)
    figures.values["switchover_write_outage_seconds"] = outage
    events = get_json(real_cluster, "events", "--field-selector", "reason=Switchover", namespace=NAMESPACE)[
        "items"
    ]
    assert any(f"{old} -> {target}" in event["message"] for event in events), [e["message"] for e in events]

    # Applied again (GitOps re-syncing the same manifest): nothing moves.
    real_cluster.kubectl("patch", f"sb/{NAME}", "-n", NAMESPACE, "--type=merge", "-p", request)
    wait_ready_at_current_generation(real_cluster)
    time.sleep(5)
    assert postgres_roles(real_cluster)[0] == target
    others = sorted({old, *replicas} - {target})
    wait_streaming_from(real_cluster, target, others, "the old primary to stream from the new one")


def test_kubectl_scale_adds_api_pods_that_serve(
    real_cluster: LocalCluster, app: App, figures: Figures
) -> None:
    before = {pod["metadata"]["name"] for pod in api_pods(real_cluster)}
    assert len(before) == 2
    task = app.create_task("served", "by every api pod")
    real_cluster.kubectl("scale", f"sb/{NAME}", "-n", NAMESPACE, "--replicas=4")

    def four_ready() -> list[dict[str, Any]] | None:
        found = api_pods(real_cluster)
        return found if len(found) == 4 and all(is_ready(pod) for pod in found) else None

    scaled = eventually(four_ready, timeout=180, interval=1, what="four api pods Ready")
    new = [pod for pod in scaled if pod["metadata"]["name"] not in before]
    assert len(new) == 2
    for pod in new:
        assert pod["spec"]["nodeName"] == NODE_NAME
        served = app.http.get(f"http://{pod['status']['podIP']}:{API_PORT}/api/v1/tasks/{task['id']}")
        assert served.status_code == 200, served.text
        assert served.json()["title"] == "served"
    sb = get_json(real_cluster, f"sb/{NAME}", namespace=NAMESPACE)
    assert sb["spec"]["api"]["replicas"] == 4
    figures.values["node_memory_mib_four_api_pods"] = node_memory_mib(real_cluster.local_dir)


LEGACY_NAMESPACE = "t-legacy-shape"
# tests/unit/builders/golden/basic of the version with two PostgreSQL StatefulSets (main before the
# failover work), kept as they were.
LEGACY_SHAPE = Path(__file__).parent / "legacy_shape"
# Not its NetworkPolicy: the test's backend has networkPolicies off, as the old one had.
LEGACY_KINDS = ("ConfigMap", "PodDisruptionBudget", "Secret", "Service", "StatefulSet")


def legacy_postgres(namespace: str, uid: str) -> list[dict[str, Any]]:
    """The old operator's PostgreSQL children of ``shop`` (basic.yaml), owned by the backend with
    ``uid``, running the local PostgreSQL 15 image."""
    manifests = []
    for path in sorted(LEGACY_SHAPE.glob("*-shop-postgres*.yaml")):
        # The golden files' namespace is "demo": in metadata and in the -rw host the replicas use.
        text = path.read_text().replace(".demo.svc", f".{namespace}.svc")
        manifest: dict[str, Any] = yaml.safe_load(text)
        if manifest["kind"] not in LEGACY_KINDS:
            continue
        manifest["metadata"]["namespace"] = namespace
        for owner in manifest["metadata"].get("ownerReferences", []):
            owner["uid"] = uid
        if manifest["kind"] == "StatefulSet":
            pod = manifest["spec"]["template"]["spec"]
            for container in [*pod["initContainers"], *pod["containers"]]:
                container["image"] = "sbo.local/postgres:15"
        manifests.append(manifest)
    return manifests


@pytest.mark.timeout(1200)
def test_a_backend_of_the_old_shape_moves_to_the_instances_without_losing_a_row(
    real_cluster: LocalCluster, tmp_path: Path, figures: Figures
) -> None:
    """Issue 12: the old operator's manifests (its golden files) applied, rows written through -rw,
    then the new operator: the backend is Ready on the instances, every row reads back through
    -rw, the old StatefulSets and pods are gone and their claims kept (docs/operator.md)."""
    # The backend as the old operator left it: its two StatefulSets running, rows written.
    real_cluster.apply(real_node_namespace(LEGACY_NAMESPACE))
    manifest = local_variant(LEGACY_NAMESPACE)
    del manifest["spec"]["worker"], manifest["spec"]["networkPolicies"]
    manifest["spec"]["postgres"]["failoverDelay"] = "0s"
    manifest["spec"]["postgres"].pop("synchronous")
    manifest["spec"]["api"]["replicas"] = 1
    real_cluster.apply(manifest)
    uid = get_json(real_cluster, f"sb/{NAME}", namespace=LEGACY_NAMESPACE)["metadata"]["uid"]
    for child in legacy_postgres(LEGACY_NAMESPACE, uid):
        real_cluster.apply(child, field_manager="scalable-backend-operator")
    old_primary = f"{NAME}-postgres-primary-0"
    old_pods = {old_primary, f"{NAME}-postgres-replica-0", f"{NAME}-postgres-replica-1"}
    app = {
        key: base64.b64decode(value).decode()
        for key, value in get_json(real_cluster, f"secret/{NAME}-postgres-app", namespace=LEGACY_NAMESPACE)[
            "data"
        ].items()
    }
    read_write_host = f"{NAME}-postgres-rw.{LEGACY_NAMESPACE}.svc"

    def psql(pod: str, sql: str, *, through_read_write: bool = False) -> list[list[str]]:
        """As the app through the -rw Service's name (what the app uses), else on the pod's socket."""
        command = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", SOCKET_DIR, "-d", "app"]
        if through_read_write:
            command = [
                "env",
                f"PGPASSWORD={app['password']}",
                *command[:-4],
                "-h",
                read_write_host,
                "-U",
                app["username"],
                "-d",
                app["database"],
            ]
        args = ["exec", "-i", "-n", LEGACY_NAMESPACE, pod, "-c", "postgres", "--", *command]
        out = real_cluster.kubectl(*args, input=sql, timeout=60).stdout
        return [line.split("|") for line in out.splitlines() if line]

    streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"

    def legacy_streaming() -> bool:
        try:
            return psql(old_primary, streaming) == [["2"]]
        except KubectlError:
            return False

    try:
        eventually(
            legacy_streaming, timeout=300, interval=2, what="the old primary and two streaming replicas"
        )
    except AssertionError:
        pods_now = real_cluster.kubectl("get", "pods,pvc", "-n", LEGACY_NAMESPACE, "-o", "wide", check=False)
        events = real_cluster.kubectl("get", "events", "-n", LEGACY_NAMESPACE, check=False)
        raise AssertionError(f"{pods_now.stdout}\n{events.stdout[-3000:]}") from None
    # Through -rw from a replica's pod (a pod reaching itself through a Service needs hairpin).
    client = f"{NAME}-postgres-replica-0"
    psql(
        client,
        "CREATE TABLE moved (id int PRIMARY KEY, note text); "
        "INSERT INTO moved SELECT i, md5(i::text) FROM generate_series(1, 1000) i",
        through_read_write=True,
    )
    every_row = "SELECT id, note FROM moved ORDER BY id"
    expected = psql(client, every_row, through_read_write=True)
    assert len(expected) == 1000
    claims_before = {
        item["metadata"]["name"]: item["metadata"]["uid"]
        for item in get_json(real_cluster, "pvc", namespace=LEGACY_NAMESPACE)["items"]
    }
    old_claims = {f"data-{pod}" for pod in old_pods}
    assert old_claims <= claims_before.keys()

    # The new operator takes over.
    started = time.monotonic()
    process = OperatorProcess(
        kubeconfig=real_cluster.kubeconfig,
        log_path=tmp_path / "operator.log",
        env={"SBO_NAMESPACES": LEGACY_NAMESPACE, "SBO_RESYNC_SECONDS": "10", **LOCAL_DATA_SERVICE_IMAGES},
    )
    process.start()
    try:

        def moved() -> dict[str, Any] | None:
            sb = get_json(real_cluster, f"sb/{NAME}", namespace=LEGACY_NAMESPACE)
            postgres = (sb.get("status") or {}).get("postgres") or {}
            statefulsets = {
                item["metadata"]["name"]
                for item in get_json(real_cluster, "statefulsets", namespace=LEGACY_NAMESPACE)["items"]
            }
            pod_names = {
                item["metadata"]["name"]
                for item in get_json(real_cluster, "pods", namespace=LEGACY_NAMESPACE)["items"]
            }
            done = (
                postgres.get("phase") == "Stable"
                and str(postgres.get("currentPrimary", "")).startswith(f"{NAME}-postgres-")
                and not str(postgres.get("currentPrimary")).startswith(f"{NAME}-postgres-primary")
                and not {f"{NAME}-postgres-primary", f"{NAME}-postgres-replica"} & statefulsets
                and not old_pods & pod_names
                and condition(sb, "Ready")["status"] == "True"
            )
            return sb if done else None

        try:
            sb = eventually(moved, timeout=480, interval=3, what="the move to the instances, Ready")
        except AssertionError:
            status = get_json(real_cluster, f"sb/{NAME}", namespace=LEGACY_NAMESPACE).get("status")
            # Who owns each pod, and its role: a pod its StatefulSet released stays when scaled to 0.
            owners = real_cluster.kubectl(
                "get",
                "pods",
                "-n",
                LEGACY_NAMESPACE,
                "-o",
                "custom-columns=NAME:.metadata.name,OWNER:.metadata.ownerReferences[0].name,"
                "ROLE:.metadata.labels.sbo\\.dev/postgres-role,DELETING:.metadata.deletionTimestamp",
                check=False,
            ).stdout
            raise AssertionError(
                f"{real_cluster.kubectl('get', 'pods,sts', '-n', LEGACY_NAMESPACE, '-o', 'wide').stdout}\n"
                f"{owners}\n"
                f"{json.dumps(status, indent=1)[-4000:]}\n"
                f"{(tmp_path / 'operator.log').read_text()[-6000:]}"
            ) from None
        figures.values["migration_seconds"] = round(time.monotonic() - started, 1)
        new_primary = sb["status"]["postgres"]["currentPrimary"]
        instances = get_json(real_cluster, f"statefulset/{NAME}-postgres", namespace=LEGACY_NAMESPACE)
        assert instances["spec"]["selector"]["matchLabels"]["sbo.dev/postgres-shape"] == "instances"
        # Every row, through -rw (from a standby's pod: a pod reaching itself through a Service
        # needs hairpin traffic), which now reaches the new primary and only it.
        client = next(name for name in sb["status"]["postgres"]["instances"] if name["name"] != new_primary)
        assert psql(client["name"], every_row, through_read_write=True) == expected
        assert psql(client["name"], "SELECT pg_is_in_recovery()", through_read_write=True) == [["f"]]
        endpoints = get_json(
            real_cluster,
            "endpointslices",
            "-l",
            f"kubernetes.io/service-name={NAME}-postgres-rw",
            namespace=LEGACY_NAMESPACE,
        )
        targets = {
            endpoint["targetRef"]["name"]
            for item in endpoints["items"]
            for endpoint in item.get("endpoints") or []
        }
        assert targets == {new_primary}
        disruption_budgets = {
            item["metadata"]["name"]
            for item in get_json(real_cluster, "pdb", namespace=LEGACY_NAMESPACE)["items"]
        }
        assert f"{NAME}-postgres" in disruption_budgets
        assert not {f"{NAME}-postgres-primary", f"{NAME}-postgres-replica"} & disruption_budgets
        # The old claims are kept (Retain, as the old StatefulSets asked): the user deletes them.
        claims_after = {
            item["metadata"]["name"]: item["metadata"]["uid"]
            for item in get_json(real_cluster, "pvc", namespace=LEGACY_NAMESPACE)["items"]
        }
        assert {name: claims_before[name] for name in old_claims} == {
            name: claims_after.get(name) for name in old_claims
        }
        # Each of the move's writes once, however many passes ran while the old primary shut
        # down (every FENCE_POLL_SECONDS) and before the watch showed the StatefulSets gone.
        writes = process.metric_samples("sbo_api_writes_total")
        assert writes.get('{kind="StatefulSet",verb="patch"}') == 1, "the old primary scaled to 0 once"
        assert writes.get('{kind="StatefulSet",verb="delete"}') == 2, "each old StatefulSet deleted once"
    finally:
        process.stop()
        real_cluster.kubectl(
            "delete", "namespace", LEGACY_NAMESPACE, "--wait", "--timeout=180s", check=False, timeout=200
        )


def test_down_leaves_the_host_as_it_found_it(
    real_cluster: LocalCluster, backend: Backend, host_before: dict[str, Any], figures: Figures
) -> None:
    # The namespace first, as a user would: the pods stop on SIGTERM, the claims and volumes go.
    started = time.monotonic()
    real_cluster.kubectl("delete", "namespace", backend.namespace, "--wait", "--timeout=180s", timeout=200)
    figures.values["namespace_deletion_seconds"] = round(time.monotonic() - started, 1)
    real_cluster.stop()
    assert host_state.differences(host_before, host_state.snapshot()) == {}
