"""E2E fixtures: the CRD installed and the real operator running on the local control plane.

The session's operator watches the namespaces the `namespace` fixture makes
(`t-*`), with a short resync so that tests also see periodic reconciles. A
test that kills its own operator works in a namespace outside that pattern.

`SBO_TEST_OPERATOR_KUBECONFIG` runs the operator with other credentials,
e.g. a token of the Helm chart's ServiceAccount, to prove its RBAC suffices.
"""

from __future__ import annotations

import contextlib
import copy
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.cluster import LocalCluster
from devkit.operator_process import OperatorProcess
from devkit.paths import REPO
from tests.conftest import namespace_prefix

TEST_NAMESPACES = f"{namespace_prefix()}-*"


@pytest.fixture(scope="session")
def crd(cluster: LocalCluster) -> None:
    cluster.install_crd()


@pytest.fixture(scope="session")
def operator(
    cluster: LocalCluster, crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    kubeconfig = Path(os.environ.get("SBO_TEST_OPERATOR_KUBECONFIG", cluster.kubeconfig))
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        log_path=tmp_path_factory.mktemp("operator") / "operator.log",
        env={"SBO_NAMESPACES": TEST_NAMESPACES, "SBO_RESYNC_SECONDS": "5", "SBO_LOG_LEVEL": "INFO"},
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def solo(cluster: LocalCluster, crd: None, tmp_path: Path) -> Iterator[tuple[str, OperatorProcess]]:
    """A restricted namespace outside the shared operator's pattern, with an operator of its own.

    For tests that count the operator's writes or kill it: nothing else is
    reconciled by that operator, whatever else runs on the cluster.
    """
    with solo_operator(
        cluster, tmp_path, SBO_RESYNC_SECONDS="5", SBO_AUTOSCALER_SECRET_CACHE_SECONDS="2"
    ) as namespace_and_operator:
        yield namespace_and_operator


@contextlib.contextmanager
def solo_operator(cluster: LocalCluster, tmp_path: Path, **env: str) -> Iterator[tuple[str, OperatorProcess]]:
    """A fresh restricted namespace and an operator watching only it, with these settings."""
    namespace = f"solo-{secrets.token_hex(4)}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    process = OperatorProcess(
        kubeconfig=Path(os.environ.get("SBO_TEST_OPERATOR_KUBECONFIG", cluster.kubeconfig)),
        log_path=tmp_path / "operator.log",
        env={"SBO_NAMESPACES": namespace, **env},
    )
    process.start()
    try:
        yield namespace, process
    finally:
        process.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")


def basic_backend(namespace: str, **spec_changes: Any) -> dict[str, Any]:
    """examples/basic.yaml in the given namespace, with top-level spec fields replaced."""
    manifest: dict[str, Any] = yaml.safe_load((REPO / "examples" / "basic.yaml").read_text())
    manifest = copy.deepcopy(manifest)
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"].update(spec_changes)
    return manifest


def wait_ready(
    cluster: LocalCluster, namespace: str, name: str = "shop", timeout: int = 120
) -> dict[str, Any]:
    """`kubectl wait --for=condition=Ready`, exactly as users and Flux do; returns the object."""
    result = cluster.kubectl(
        "wait", "--for=condition=Ready", f"sb/{name}", "-n", namespace, f"--timeout={timeout}s", check=False
    )
    backend = get_backend(cluster, namespace, name)
    assert result.returncode == 0, (
        f"not Ready: {result.stderr}\nstatus: {yaml.safe_dump(backend.get('status'))}"
    )
    return backend


def create_ready_backends(cluster: LocalCluster, namespace: str, names: tuple[str, ...]) -> None:
    """examples/basic.yaml under each name, all created first, then each waited for until Ready."""
    for name in names:
        backend = basic_backend(namespace)
        backend["metadata"]["name"] = name
        cluster.apply(backend)
    for name in names:
        wait_ready(cluster, namespace, name, timeout=180)


def get_backend(cluster: LocalCluster, namespace: str, name: str = "shop") -> dict[str, Any]:
    out = cluster.kubectl("get", f"sb/{name}", "-n", namespace, "-o", "yaml").stdout
    loaded: dict[str, Any] = yaml.safe_load(out)
    return loaded


def stalled(cluster: LocalCluster, namespace: str, name: str = "shop") -> dict[str, Any] | None:
    """The Stalled condition while it is True, else None (for `eventually`)."""
    conditions = {
        c["type"]: c for c in get_backend(cluster, namespace, name).get("status", {}).get("conditions", [])
    }
    return conditions["Stalled"] if conditions.get("Stalled", {}).get("status") == "True" else None


def condition(backend: dict[str, Any], type: str) -> dict[str, Any]:
    for entry in backend.get("status", {}).get("conditions", []):
        if entry["type"] == type:
            return dict(entry)
    raise AssertionError(f"no {type} condition in {backend.get('status')}")


def quiet_writes(operator: OperatorProcess, seconds: float) -> float:
    """Write requests the operator sent during `seconds` of observation."""
    before = operator.writes()
    time.sleep(seconds)
    return operator.writes() - before


def writes_during(operator: OperatorProcess, seconds: float) -> dict[str, float]:
    """The write requests the operator sent during `seconds` of observation, by kind and verb."""
    before = operator.metric_samples("sbo_api_writes_total")
    time.sleep(seconds)
    after = operator.metric_samples("sbo_api_writes_total")
    return {
        labels: count - before.get(labels, 0)
        for labels, count in after.items()
        if count != before.get(labels, 0)
    }
