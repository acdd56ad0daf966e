"""The Argo CD health check, run in Lua against its health_test.yaml fixtures (Argo CD's own format)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.unit.shipping.argocd_health import HEALTH_DIR, health

pytestmark = pytest.mark.unit

CASES: list[dict[str, Any]] = yaml.safe_load((HEALTH_DIR / "health_test.yaml").read_text())["tests"]


@pytest.mark.parametrize("case", CASES, ids=[c["inputPath"] for c in CASES])
def test_health_of_each_fixture(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((HEALTH_DIR / case["inputPath"]).read_text())
    assert health(obj) == case["healthStatus"]


def test_every_outcome_is_covered() -> None:
    assert {c["healthStatus"]["status"] for c in CASES} == {"Healthy", "Progressing", "Degraded"}


def test_an_object_without_status_is_progressing() -> None:
    obj = {"apiVersion": "sbo.dev/v1alpha1", "kind": "ScalableBackend", "metadata": {"generation": 1}}
    assert health(obj)["status"] == "Progressing"


def test_a_ready_status_for_an_older_generation_is_progressing() -> None:
    ready = [{"type": "Ready", "status": "True", "reason": "Ready", "message": "all good"}]
    obj = {"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "conditions": ready}}
    assert health(obj) == {
        "status": "Progressing",
        "message": "Waiting for the operator to observe generation 3",
    }
