"""The ScalableBackend status: what the operator and the apiserver's defaults write parses."""

from __future__ import annotations

import pytest

from sbo_operator.api.v1alpha1 import UNOBSERVED_GENERATION, ApiStatus, ScalableBackend

pytestmark = pytest.mark.unit


def manifest() -> dict[str, object]:
    return {
        "apiVersion": "sbo.dev/v1alpha1",
        "kind": "ScalableBackend",
        "metadata": {"name": "shop", "namespace": "demo"},
        "spec": {"image": "registry.example.com/sbo-sample-app:0.1.0"},
    }


def test_a_status_the_operator_has_not_written_parses() -> None:
    # The apiserver defaults a new object's status to {observedGeneration: -1}.
    body = {**manifest(), "status": {"observedGeneration": UNOBSERVED_GENERATION}}
    status = ScalableBackend.model_validate(body).status
    assert status is not None
    assert status.observed_generation == -1


def test_api_status_summary() -> None:
    status = ApiStatus.from_counts(desired=3, replicas=3, ready_replicas=2, selector="a=b")
    assert status.ready_summary == "2/3"
