"""A control plane with the real node, run by `hack/cluster.sh up --real-node` for the node tests.

Each holder gets its own state folder and the ports SBO_PORT_BASE + 50..: clear of the developer's
control plane and of other checkouts' bases. There is at most one real node per host, so its users
run one at a time (the node tier; `flock /tmp/sbo/real-node.lock` around it on shared machines).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from devkit.cluster import CLUSTER_SCRIPT
from devkit.paths import tools_bin_dir

# Its own ports, clear of the developer's control plane (SBO_PORT_BASE + 0..10) and of other checkouts' bases.
PORT_BASE = str(int(os.environ.get("SBO_PORT_BASE", "16440")) + 50)
NODE = "sbo-real-node"


class RealNodeCluster:
    def __init__(self, local_dir: Path, **extra_env: str) -> None:
        self.local_dir = local_dir
        self.env = {**os.environ, "SBO_LOCAL_DIR": str(local_dir), "SBO_PORT_BASE": PORT_BASE, **extra_env}
        self.kubectl_bin = tools_bin_dir() / "kubectl"

    def up_command(self) -> list[str]:
        return [str(CLUSTER_SCRIPT), "up", "--real-node"]

    def down(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLUSTER_SCRIPT), "down"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.kubectl_bin), "--kubeconfig", str(self.local_dir / "kubeconfig"), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def apply(self, *manifests: dict[str, Any], namespace: str) -> None:
        self.kubectl(
            "apply",
            "-n",
            namespace,
            "--server-side",
            "--field-manager",
            "sbo-tests",
            "-f",
            "-",
            input=yaml.safe_dump_all(manifests),
        )

    def create_restricted_namespace(self, name: str) -> None:
        labels = {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        self.kubectl("create", "-f", "-", input=yaml.safe_dump(namespace))

    def pod_ip(self, namespace: str, pod: str) -> str:
        return self.kubectl("get", "pod", "-n", namespace, pod, "-o", "jsonpath={.status.podIP}").stdout

    def exec_probe(self, namespace: str, pod: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("exec", "-n", namespace, pod, "--", "/probe", *args, check=False)
