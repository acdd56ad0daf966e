"""The images `make images` builds run on the real node as Pod Security "restricted" pods.

hack/build_images.py builds sbo.local/{sbo-operator,sample-app}:dev from the project's Dockerfiles and
sbo.local/{postgres:15,redis:7.0} from Debian's packages; `hack/cluster.sh up --real-node` imports every
archive into the node's containerd. The module starts its own control plane with a real node (ports
from SBO_PORT_BASE + 50), runs each image the way the operator's pods do (non-root, no capabilities,
read-only root filesystem, imagePullPolicy Never), and stops it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit import host_state
from devkit.cluster import eventually
from devkit.paths import REPO
from devkit.real_node import RealNodeCluster

pytestmark = pytest.mark.node

NAMESPACE = "t-images"
BUILD_IMAGES = REPO / "hack" / "build_images.py"


def built_images() -> dict[str, Path]:
    """Image name -> archive, as the build script names them."""
    listed = subprocess.run(
        ["python3", str(BUILD_IMAGES), "--list"], capture_output=True, text=True, check=True
    ).stdout
    return {name: Path(archive) for name, archive in (line.split("\t") for line in listed.splitlines())}


def test_building_images_leaves_the_host_as_it_found_it() -> None:
    """A cached `make images` still calls buildah (to look for the base in its storage); no call may fall
    back to buildah's host-wide defaults, such as /etc/cni/net.d/cni.lock or /var/lib/containers."""
    before = host_state.snapshot()
    built = subprocess.run(["python3", str(BUILD_IMAGES)], capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stdout + built.stderr
    assert host_state.differences(before, host_state.snapshot()) == {}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNodeCluster]:
    missing = [name for name, archive in built_images().items() if not archive.exists()]
    assert not missing, f"not built: {missing}; run `make images` (hack/build_images.py) first"
    cluster = RealNodeCluster(tmp_path_factory.mktemp("images") / "control-plane")
    up = subprocess.run(cluster.up_command(), env=cluster.env, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        cluster.create_restricted_namespace(NAMESPACE)
        yield cluster
    finally:
        cluster.down()


def restricted_pod(
    name: str,
    image: str,
    *,
    uid: int,
    command: list[str] | None = None,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    restart: str = "Never",
    readiness: list[str] | None = None,
    writable: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod Pod Security "restricted" admits, pinned to the real node, with emptyDirs at `writable`."""
    volumes = {"tmp": "/tmp", **(writable or {})}
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": volume, "mountPath": path} for volume, path in volumes.items()],
    }
    if command:
        container["command"] = command
    if args:
        container["args"] = args
    if env:
        container["env"] = [{"name": key, "value": value} for key, value in env.items()]
    if readiness:
        container["readinessProbe"] = {"exec": {"command": readiness}, "periodSeconds": 1}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"sbo.dev/real-node": "true"},
            "tolerations": [{"key": "sbo.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 5,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": uid,
                "runAsGroup": uid,
                "fsGroup": uid,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [{"name": volume, "emptyDir": {}} for volume in volumes],
        },
    }


def run_to_completion(node: RealNodeCluster, pod: dict[str, Any]) -> str:
    """Runs the pod until it exits; returns its logs, failing with its status and logs unless it exited 0."""
    name = pod["metadata"]["name"]
    node.apply(pod, namespace=NAMESPACE)

    def finished() -> dict[str, Any] | None:
        got = node.kubectl("get", "pod", "-n", NAMESPACE, name, "-o", "json")
        status: dict[str, Any] = json.loads(got.stdout)["status"]
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = eventually(finished, timeout=180, interval=1, what=f"pod {name} to exit")
    logs = node.kubectl("logs", "-n", NAMESPACE, name, check=False).stdout
    assert status["phase"] == "Succeeded", f"{json.dumps(status, indent=1)}\n{logs}"
    return logs


def wait_ready(node: RealNodeCluster, pod: dict[str, Any]) -> str:
    name = pod["metadata"]["name"]
    node.apply(pod, namespace=NAMESPACE)
    waited = node.kubectl(
        "wait", "-n", NAMESPACE, f"pod/{name}", "--for=condition=Ready", "--timeout=120s", check=False
    )
    logs = node.kubectl("logs", "-n", NAMESPACE, name, check=False).stdout
    assert waited.returncode == 0, waited.stderr + logs
    return name


def exec_in(node: RealNodeCluster, pod: str, *command: str) -> str:
    done = node.kubectl("exec", "-n", NAMESPACE, pod, "--", *command, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_operator_image_entrypoint_answers_help_and_prints_its_settings(node: RealNodeCluster) -> None:
    helped = run_to_completion(
        node, restricted_pod("operator-help", "sbo.local/sbo-operator:dev", uid=65532, args=["--help"])
    )
    assert "usage: sbo-operator" in helped
    assert "settings" in helped
    settings = run_to_completion(
        node,
        restricted_pod(
            "operator-settings",
            "sbo.local/sbo-operator:dev",
            uid=65532,
            args=["settings"],
            env={"SBO_LOG_FORMAT": "json"},
        ),
    )
    assert json.loads(settings)["log_format"] == "json"


def test_the_sample_app_image_runs_alembic_and_imports_the_app(node: RealNodeCluster) -> None:
    script = (
        "set -e; alembic --help >/dev/null; echo alembic-ok; "
        "python -c 'import app, app.serve, app.worker; print(app.__file__)'"
    )
    logs = run_to_completion(
        node,
        restricted_pod("sample-app", "sbo.local/sample-app:dev", uid=10001, command=["sh", "-c", script]),
    )
    assert logs.splitlines() == ["alembic-ok", "/srv/app/app/__init__.py"]


def test_postgres_initialises_into_an_empty_dir_as_uid_999_and_answers_pg_isready(
    node: RealNodeCluster,
) -> None:
    # As the operator's bootstrap script does: initdb into a subdirectory of the mounted volume, then
    # postgres itself as PID 1 (it stops on SIGTERM), found on PATH.
    script = (
        'initdb -D "$PGDATA/pgdata" --auth=peer --encoding=UTF8 --locale=C >/tmp/initdb.log'
        ' && exec postgres -D "$PGDATA/pgdata" -k /tmp -c listen_addresses=127.0.0.1'
    )
    pod = wait_ready(
        node,
        restricted_pod(
            "postgres",
            "sbo.local/postgres:15",
            uid=999,
            command=["sh", "-c", script],
            readiness=["pg_isready", "-q", "-h", "/tmp"],
            writable={"data": "/var/lib/postgresql/data"},
        ),
    )
    assert exec_in(node, pod, "pg_isready", "-h", "/tmp").strip() == "/tmp:5432 - accepting connections"
    who = exec_in(
        node, pod, "psql", "-h", "/tmp", "-d", "postgres", "-XAtc", "select current_user, version()"
    )
    user, version = who.strip().split("|")
    assert user == "postgres"  # uid 999 is named postgres, as in the official image: peer auth maps it
    assert version.startswith("PostgreSQL 15.")
    tools = exec_in(node, pod, "sh", "-c", "command -v initdb pg_ctl postgres pg_basebackup pg_isready psql")
    assert {Path(tool).parent for tool in tools.split()} == {Path("/usr/lib/postgresql/15/bin")}
    owner, mode = exec_in(node, pod, "stat", "-c", "%u:%g %a", "/var/lib/postgresql/data/pgdata").split()
    assert owner == "999:999"
    assert int(mode, 8) & 0o777 == 0o700  # initdb's own mode; fsGroup adds the setgid bit


def test_redis_starts_as_uid_999_and_answers_ping(node: RealNodeCluster) -> None:
    pod = wait_ready(
        node,
        restricted_pod(
            "redis",
            "sbo.local/redis:7.0",
            uid=999,
            command=["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", "", "--dir", "/data"],
            readiness=["redis-cli", "-h", "127.0.0.1", "ping"],
            writable={"data": "/data"},
        ),
    )
    assert exec_in(node, pod, "redis-cli", "-h", "127.0.0.1", "ping").strip() == "PONG"
    server = exec_in(node, pod, "redis-cli", "-h", "127.0.0.1", "info", "server")
    assert "redis_version:7.0." in server
    assert exec_in(node, pod, "id", "-un").strip() == "redis"
