"""The node tier's fixtures: each module gets its own control plane with the real node.

A module that runs the shared backend (tests/node/shop_backend.py) asks for ``backend``: its own
control plane (``real_cluster``), operator and backend, torn down at the module's end.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devkit import host_state
from devkit.cluster import LocalCluster
from devkit.operator_process import OperatorProcess
from devkit.real_node import RealNodeCluster
from devkit.real_pods import real_node_namespace
from tests.node.shop_backend import (
    LOCAL_DATA_SERVICE_IMAGES,
    LOCAL_IMAGES,
    NAMESPACE,
    PORT_BASE,
    Backend,
    Figures,
    default_deny,
    local_variant,
    node_images,
    wait_ready,
)


@pytest.fixture(scope="module")
def host_before() -> dict[str, Any]:
    return host_state.snapshot()


@pytest.fixture(scope="module")
def real_node(
    host_before: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealNodeCluster]:
    cluster = RealNodeCluster(tmp_path_factory.mktemp("real-node") / "control-plane")
    up = subprocess.run(cluster.up_command(), env=cluster.env, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield cluster
    finally:
        cluster.down()  # again after the test that checks it: down is idempotent


# ---- the shared backend's (tests/node/shop_backend.py): a module's cluster, operator and backend ----


@pytest.fixture(scope="module")
def figures() -> Iterator[Figures]:
    found = Figures()
    yield found
    print(f"real pods figures: {json.dumps(found.values, sort_keys=True)}")


# host_before: the host before this module's `up`.
@pytest.fixture(scope="module")
def real_cluster(
    host_before: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        local_dir=tmp_path_factory.mktemp("real-pods") / "control-plane",
        port_base=PORT_BASE,
        script_env={"SBO_REAL_NODE": "1"},
    )
    try:
        cluster.start()
        cluster.install_crd()
        yield cluster
    finally:
        cluster.stop()  # again after the test that checks it: down is idempotent


@pytest.fixture(scope="module")
def operator(
    real_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    missing = set(LOCAL_IMAGES) - node_images(real_cluster)
    assert not missing, f"the real node lacks the images {sorted(missing)}: run `make images`"
    process = OperatorProcess(
        kubeconfig=real_cluster.kubeconfig,
        log_path=tmp_path_factory.mktemp("operator") / "operator.log",
        env={"SBO_NAMESPACES": NAMESPACE, "SBO_RESYNC_SECONDS": "10", **LOCAL_DATA_SERVICE_IMAGES},
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def backend(real_cluster: LocalCluster, operator: OperatorProcess, figures: Figures) -> Iterator[Backend]:
    real_cluster.apply(real_node_namespace(NAMESPACE))
    real_cluster.apply(default_deny(NAMESPACE))
    started = time.monotonic()
    real_cluster.apply(local_variant(NAMESPACE))
    wait_ready(real_cluster)
    seconds = round(time.monotonic() - started, 1)
    figures.values["apply_to_ready_seconds"] = seconds
    yield Backend(NAMESPACE, seconds)
    real_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
