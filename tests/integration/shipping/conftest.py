"""Fixtures for the chart on the local control plane: helm releases and ServiceAccount credentials."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devkit.cluster import LocalCluster
from tests.unit.shipping.support import CHART, tool

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


class Helm:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(tool("helm")), "--kubeconfig", str(self.cluster.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"helm {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def install(self, release: str, namespace: str, *values: str) -> None:
        sets = [arg for value in values for arg in ("--set", value)]
        self("install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "3m", *sets)

    def uninstall(self, release: str, namespace: str) -> None:
        self("uninstall", release, "-n", namespace, "--wait", check=False)


@pytest.fixture(scope="session")
def helm(cluster: LocalCluster) -> Helm:
    return Helm(cluster)


@pytest.fixture
def make_namespace(cluster: LocalCluster) -> Iterator[Callable[[str], str]]:
    """Extra restricted namespaces, deleted after the test."""
    core = client.CoreV1Api(cluster.api)
    made: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}-{secrets.token_hex(3)}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RESTRICTED)))
        made.append(name)
        return name

    yield make
    for name in made:
        core.delete_namespace(name, propagation_policy="Background")


def release_name() -> str:
    return f"sbo-{secrets.token_hex(3)}"


def fullname(release: str) -> str:
    return f"{release}-scalable-backend-operator"


def service_account_kubeconfig(
    cluster: LocalCluster, namespace: str, service_account: str, path: Path
) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount, with a token from the TokenRequest API."""
    token = cluster.kubectl(
        "create", "token", service_account, "-n", namespace, "--duration", "2h"
    ).stdout.strip()
    admin: dict[str, Any] = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": server}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": service_account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
