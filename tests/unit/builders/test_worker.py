"""The worker builders: the Deployment and its PodDisruptionBudget."""

from __future__ import annotations

import pytest

from sbo_operator.builders.worker import build_worker_deployment, build_worker_pdb
from tests.unit.factories import backend_from, container, env_of

pytestmark = pytest.mark.unit


WORKER = {"worker": {"command": ["python", "-m", "app.worker"]}}


def test_no_worker_spec_no_worker() -> None:
    assert build_worker_deployment(backend_from({}), replicas=1) is None
    assert build_worker_pdb(backend_from({})) is None


def test_worker_runs_its_command_with_the_injected_env() -> None:
    deployment = build_worker_deployment(backend_from(WORKER), replicas=3)
    assert deployment is not None
    assert deployment["metadata"]["name"] == "shop-worker"
    assert deployment["spec"]["replicas"] == 3
    worker = container(deployment)
    assert worker["command"] == ["python", "-m", "app.worker"]
    assert "ports" not in worker
    assert "REDIS_URL" in env_of(deployment)
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
