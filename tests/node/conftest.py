"""The node tier's fixtures: each module gets its own control plane with the real node."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from devkit import host_state
from devkit.real_node import RealNodeCluster


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
