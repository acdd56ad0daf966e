"""The backend the node tier's modules share: examples/basic.yaml on the images built here, in a
namespace that denies by default, and what reads it. Its fixtures (a control plane with the real
node, the operator, the backend) are tests/node/conftest.py's; each module gets its own.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any

import yaml

from devkit.cluster import LocalCluster
from devkit.paths import EXAMPLES
from devkit.real_pods import NODE_NAME

# Clear of the developer's control plane (+0..10) and of tests/node/test_real_node.py's (+50..60).
PORT_BASE = int(os.environ.get("SBO_PORT_BASE", "16440")) + 70
NAMESPACE = "t-real-pods"
NAME = "shop"
SAMPLE_APP_IMAGE = "sbo.local/sample-app:dev"
# The operator's settings for the data services' images; {version} is the spec's version.
LOCAL_DATA_SERVICE_IMAGES = {
    "SBO_POSTGRES_IMAGE": "sbo.local/postgres:{version}",
    "SBO_REDIS_IMAGE": "sbo.local/redis:{version}",
}
LOCAL_IMAGES = (SAMPLE_APP_IMAGE, "sbo.local/postgres:15", "sbo.local/redis:7.0")
READY_TIMEOUT = 600  # seconds; a cold machine's first initdb and two clones fit well inside


def local_variant(namespace: str) -> dict[str, Any]:
    """examples/basic.yaml for the images built here, derived rather than checked in.

    Derived, so that the shipped example is what runs: a second file would drift from it. What
    changes: the sample app's local image (never pulled: there is no registry), the versions the
    local PostgreSQL and Redis images carry, a worker (the sample app's consumer), and
    ``networkPolicies`` admitting to the api only pods of its own namespace, with ``egress: true``.
    The namespace denies everything by default (:func:`default_deny`, docs/operator.md's recipe),
    so every test of the module runs under the operator's policies alone, enforced by kube-router.
    """
    manifest: dict[str, Any] = copy.deepcopy(yaml.safe_load((EXAMPLES / "basic.yaml").read_text()))
    manifest["metadata"]["namespace"] = namespace
    spec = manifest["spec"]
    spec["image"] = SAMPLE_APP_IMAGE
    spec["imagePullPolicy"] = "Never"
    spec["postgres"]["version"] = "15"
    spec["redis"]["version"] = "7.0"
    spec["worker"] = {"replicas": 1, "command": ["python", "-m", "app.worker"]}
    # No acknowledged commit is lost on failover: each waits for one standby. A primary deleted by
    # a rollout restarts in place within failoverDelay; the failover test lowers it to 0s.
    spec["postgres"]["synchronous"] = {"standbys": 1, "required": True}
    spec["postgres"]["failoverDelay"] = "30s"
    spec["networkPolicies"] = {
        "appIngressFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
        ],
        "egress": True,
    }
    return manifest


def default_deny(namespace: str) -> dict[str, Any]:
    """docs/operator.md's "A namespace that denies by default", step 1: the user's own policy. With
    it, every pod of the namespace reaches and is reached only as some policy allows."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


@dataclasses.dataclass
class Figures:
    """What the module measures, printed once at its end."""

    values: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Backend:
    namespace: str
    seconds_to_ready: float


def wait_ready(cluster: LocalCluster, timeout: int = READY_TIMEOUT) -> None:
    waited = cluster.kubectl(
        "wait", "--for=condition=Ready", f"sb/{NAME}", "-n", NAMESPACE, f"--timeout={timeout}s", check=False
    )
    if waited.returncode != 0:
        status = cluster.kubectl(
            "get", f"sb/{NAME}", "-n", NAMESPACE, "-o", "jsonpath={.status}", check=False
        )
        pods = cluster.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide", check=False)
        events = cluster.kubectl("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp", check=False)
        raise AssertionError(
            f"{NAME} not Ready: {waited.stderr}\nstatus: {status.stdout}\n"
            f"{pods.stdout}\n{events.stdout[-4000:]}"
        )


def node_images(cluster: LocalCluster) -> set[str]:
    """The image names the real node's containerd holds, as its kubelet reports them."""
    node = get_json(cluster, "node", NODE_NAME)
    return {name for image in node["status"].get("images", []) for name in image.get("names", [])}


def get_json(cluster: LocalCluster, *what: str, namespace: str | None = None) -> dict[str, Any]:
    args = ["get", *what, "-o", "json"]
    if namespace is not None:
        args += ["-n", namespace]
    loaded: dict[str, Any] = json.loads(cluster.kubectl(*args).stdout)
    return loaded
