"""Progress of Deployments, StatefulSets and Jobs, read from their status."""

from __future__ import annotations

from typing import Any

import pytest

from sbo_operator.builders import api, postgres
from sbo_operator.progress import Progress, deployment_progress, job_state, statefulset_progress
from tests.unit.factories import Manifest, example_body, parse, ready_deployment, ready_statefulset

pytestmark = pytest.mark.unit


# ---- Deployment progress ----------------------------------------------------------------------------


def _deployment(**status: Any) -> Manifest:
    """The api Deployment (2 replicas) as stored, at generation 1, with the given status fields."""
    base = ready_deployment(api.build_api_deployment(parse(example_body()), replicas=2))
    base["status"].update(status)
    return base


def _stuck(deployment: Manifest) -> Manifest:
    deployment["status"]["conditions"][1] = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "shop-api-5d4f" has timed out progressing.',
    }
    return deployment


def _generation(deployment: Manifest, generation: int) -> Manifest:
    deployment["metadata"]["generation"] = generation
    return deployment


def _without_status(deployment: Manifest) -> Manifest:
    del deployment["status"]
    return deployment


@pytest.mark.parametrize(
    ("deployment", "ready", "reason", "message"),
    [
        pytest.param(None, False, "Creating", "Deployment shop-api does not exist yet", id="absent"),
        pytest.param(
            _without_status(_deployment()),
            False,
            "Progressing",
            "Deployment shop-api: change not seen yet",
            id="just-created-no-status",
        ),
        pytest.param(
            _generation(_deployment(), 2),
            False,
            "Progressing",
            "Deployment shop-api: change not seen yet",
            id="observed-generation-behind",
        ),
        pytest.param(
            _stuck(_deployment(updatedReplicas=1, availableReplicas=1)),
            False,
            "ProgressDeadlineExceeded",
            'Deployment shop-api: ReplicaSet "shop-api-5d4f" has timed out progressing.',
            id="progress-deadline-exceeded",
        ),
        pytest.param(
            _generation(_stuck(_deployment()), 2),
            False,
            "Progressing",
            "Deployment shop-api: change not seen yet",
            id="stale-deadline-after-a-new-change",
        ),
        pytest.param(
            _deployment(updatedReplicas=1),
            False,
            "RollingOut",
            "Deployment shop-api: 1/2 updated, 2/2 available",
            id="not-all-updated",
        ),
        pytest.param(
            _deployment(availableReplicas=1, readyReplicas=1),
            False,
            "RollingOut",
            "Deployment shop-api: 2/2 updated, 1/2 available",
            id="not-all-available",
        ),
        pytest.param(
            _deployment(replicas=3),
            False,
            "RollingOut",
            "Deployment shop-api: 2/2 updated, 2/2 available",
            id="old-pods-still-terminating",
        ),
        pytest.param(_deployment(), True, "Available", "Deployment shop-api: 2/2 ready", id="available"),
    ],
)
def test_deployment_progress(deployment: Manifest | None, ready: bool, reason: str, message: str) -> None:
    progress = deployment_progress(deployment, name="shop-api")
    assert (progress.ready, progress.reason, progress.message) == (ready, reason, message)


def test_deployment_progress_counts() -> None:
    assert deployment_progress(None, name="x") == Progress(
        False, 0, 0, "Creating", "Deployment x does not exist yet"
    )
    progress = deployment_progress(_deployment(readyReplicas=1, availableReplicas=1), name="shop-api")
    assert (progress.replicas, progress.ready_replicas) == (2, 1)


def test_deployment_scaled_to_zero_is_available() -> None:
    zero = ready_deployment(api.build_api_deployment(parse(example_body()), replicas=0))
    assert deployment_progress(zero, name="shop-api").ready


# ---- StatefulSet progress ---------------------------------------------------------------------------


def _statefulset(**status: Any) -> Manifest:
    """The PostgreSQL instances' StatefulSet as stored, at generation 1."""
    base = ready_statefulset(postgres.build_postgres_statefulset(parse(example_body()), replicas=2))
    base["status"].update(status)
    return base


@pytest.mark.parametrize(
    ("statefulset", "ready", "reason", "message"),
    [
        pytest.param(None, False, "Creating", "StatefulSet db does not exist yet", id="absent"),
        pytest.param(
            _generation(_statefulset(), 2),
            False,
            "Progressing",
            "StatefulSet db: change not seen yet",
            id="observed-generation-behind",
        ),
        pytest.param(
            _statefulset(readyReplicas=1),
            False,
            "PodsNotReady",
            "StatefulSet db: 1/2 ready",
            id="pods-not-ready",
        ),
        pytest.param(
            _statefulset(updateRevision="rev-2"),
            False,
            "RollingOut",
            "StatefulSet db: rolling out a new revision",
            id="new-revision-rolling-out",
        ),
        pytest.param(
            _statefulset(updateRevision=None, currentRevision=None),
            True,
            "Available",
            "StatefulSet db: 2/2 ready",
            id="no-revisions-reported",
        ),
        pytest.param(_statefulset(), True, "Available", "StatefulSet db: 2/2 ready", id="available"),
    ],
)
def test_statefulset_progress(statefulset: Manifest | None, ready: bool, reason: str, message: str) -> None:
    progress = statefulset_progress(statefulset, name="db")
    assert (progress.ready, progress.reason, progress.message) == (ready, reason, message)


# ---- Job state --------------------------------------------------------------------------------------


def _job(*conditions: tuple[str, str]) -> Manifest:
    return {
        "metadata": {"name": "shop-migrations-0123456789"},
        "status": {"conditions": [{"type": t, "status": s} for t, s in conditions]},
    }


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        pytest.param(None, "Absent", id="absent"),
        pytest.param({"metadata": {}}, "Running", id="no-status"),
        pytest.param({"metadata": {}, "status": {"active": 1}}, "Running", id="active"),
        pytest.param(_job(("Complete", "True")), "Complete", id="complete"),
        pytest.param(_job(("Failed", "True")), "Failed", id="failed"),
        pytest.param(_job(("Complete", "False")), "Running", id="complete-false"),
        # Kubernetes >= 1.31 sets these first; the Job is not finished until Complete/Failed.
        pytest.param(_job(("SuccessCriteriaMet", "True")), "Running", id="success-criteria-met-only"),
        pytest.param(_job(("FailureTarget", "True")), "Running", id="failure-target-only"),
        pytest.param(
            _job(("SuccessCriteriaMet", "True"), ("Complete", "True")), "Complete", id="complete-1.31"
        ),
        pytest.param(_job(("FailureTarget", "True"), ("Failed", "True")), "Failed", id="failed-1.31"),
    ],
)
def test_job_state(job: Manifest | None, expected: str) -> None:
    assert job_state(job) == expected
