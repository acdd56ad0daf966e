"""Bad ScalableBackends are rejected at admission by the real kube-apiserver, naming the field.

No operator runs here: these tests prove what the checked-in CRD alone enforces (OpenAPI schema,
CEL rules, transition rules with oldSelf, strict field validation) and what kubectl prints, so a
user learns which field is wrong and how to fix it before anything is reconciled.

Each case is (id, manifest change, fragments the error must contain): the field path and what is
wrong with it.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sbo_operator.api.v1alpha1 import (
    IMAGE_MESSAGE,
    MAX_NAME_LENGTH,
    MAX_READ_REPLICAS,
    QUANTITY_MESSAGE,
    PostgresSpec,
    ScalableBackend,
)
from tests.support.cluster import REPO, LocalCluster, eventually

pytestmark = pytest.mark.integration

CRD_PATH = REPO / "crds" / "sbo.dev_scalablebackends.yaml"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

Mutation = Callable[[dict[str, Any]], None]


def valid_manifest(namespace: str, name: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "sbo.dev/v1alpha1",
        "kind": "ScalableBackend",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": "sbo-sample-app:0.1.0"},
    }


def with_field(path: str, value: Any) -> Mutation:
    """Set a dotted path (creating parents) in the manifest."""

    def mutate(manifest: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = manifest
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    return mutate


def autoscaling(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "metrics": [{"name": "rps", "query": "sum(rate(http_requests_total[1m]))", "targetPerReplica": 50}],
    }
    spec.update(changes)
    return spec


def worker(**changes: Any) -> dict[str, Any]:
    return {"command": ["python", "-m", "app.worker"], **changes}


def kubectl_create(
    cluster: LocalCluster, manifest: dict[str, Any], *flags: str
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("create", *flags, "-f", "-", input=yaml.safe_dump(manifest), check=False)


def assert_rejected(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode != 0, f"accepted, expected a rejection: {result.stdout}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"
    return result.stderr


@pytest.fixture(scope="module")
def crd(cluster: LocalCluster) -> None:
    """The checked-in CRD, installed (idempotently) and served. Left installed for other tests."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_PATH))
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s", "crd/scalablebackends.sbo.dev")

    # An already-established CRD that was just updated is served with its new schema only a moment
    # later; wait until a manifest only the current schema rejects (a negative integer quantity) is.
    def current_schema_served() -> bool:
        probe = valid_manifest("default", "schema-probe")
        with_field("spec.redis.maxMemory", -1)(probe)
        return kubectl_create(cluster, probe, "--dry-run=server").returncode != 0

    eventually(current_schema_served, timeout=30, what="the checked-in CRD schema to be served")


# ---- rejected on create -----------------------------------------------------------------------------

CREATE_CASES = [
    pytest.param(
        with_field("spec.api.autoscaling", autoscaling(minReplicas=5, maxReplicas=3)),
        ["spec.api.autoscaling.minReplicas", "minReplicas must not exceed maxReplicas"],
        id="api-autoscaling-min-above-max",
    ),
    pytest.param(
        with_field("spec.worker", worker(autoscaling=autoscaling(minReplicas=4, maxReplicas=2))),
        ["spec.worker.autoscaling.minReplicas", "minReplicas must not exceed maxReplicas"],
        id="worker-autoscaling-min-above-max",
    ),
    pytest.param(
        with_field("spec.api.replicas", -1),
        ["spec.api.replicas", "should be greater than or equal to 0"],
        id="negative-api-replicas",
    ),
    pytest.param(
        with_field("spec.worker", worker(replicas=-1)),
        ["spec.worker.replicas", "should be greater than or equal to 0"],
        id="negative-worker-replicas",
    ),
    pytest.param(
        with_field("spec.postgres.readReplicas", MAX_READ_REPLICAS + 1),
        ["spec.postgres.readReplicas", f"should be less than or equal to {MAX_READ_REPLICAS}"],
        id="read-replicas-above-cap",
    ),
    pytest.param(
        with_field("spec.redis.maxMemory", "12 potatoes"),
        ["spec.redis.maxMemory", QUANTITY_MESSAGE],
        id="malformed-redis-max-memory",
    ),
    pytest.param(
        with_field("spec.redis.maxMemory", -1),
        ["spec.redis.maxMemory", QUANTITY_MESSAGE],
        id="negative-integer-quantity",
    ),
    pytest.param(
        with_field("spec.postgres.storage", {"size": "ten gigs"}),
        ["spec.postgres.storage.size", QUANTITY_MESSAGE],
        id="malformed-postgres-storage-size",
    ),
    pytest.param(
        with_field("spec.api.resources", {"requests": {"memory": "256 MB"}}),
        ["spec.api.resources.requests[memory]", QUANTITY_MESSAGE],
        id="malformed-resource-request",
    ),
    pytest.param(
        with_field("spec.postgres.resources", {"limits": {"cpu": "2 cores"}}),
        ["spec.postgres.resources.limits[cpu]", QUANTITY_MESSAGE],
        id="malformed-resource-limit",
    ),
    pytest.param(
        with_field("spec.image", "sbo-sample-app 0.1.0"),
        ["spec.image", IMAGE_MESSAGE],
        id="image-with-space",
    ),
    pytest.param(
        with_field("spec.api.image", "sbo-sample-app:0.1.0\n"),
        ["spec.api.image", IMAGE_MESSAGE],
        id="api-image-with-newline",
    ),
    pytest.param(
        with_field("spec.worker", worker(image="sbo-sample-app:\t0.1.0")),
        ["spec.worker.image", IMAGE_MESSAGE],
        id="worker-image-with-tab",
    ),
    pytest.param(
        with_field("spec.postgres.version", "14"),
        ["spec.postgres.version", 'Unsupported value: "14"', 'supported values: "15", "16", "17"'],
        id="unsupported-postgres-version",
    ),
    pytest.param(
        with_field("metadata.name", "a" * (MAX_NAME_LENGTH + 1)),
        ["metadata.name", f"Too long: may not be more than {MAX_NAME_LENGTH}"],
        id="name-too-long-for-children",
    ),
    pytest.param(
        with_field("spec.prometheus", {"pollSeconds": 0}),
        ["spec.prometheus.pollSeconds", "pollSeconds must be at least 1"],
        id="poll-seconds-below-1",
    ),
    pytest.param(
        with_field(
            "spec.api.autoscaling",
            autoscaling(
                metrics=[
                    {"name": "rps", "query": "vector(1)", "targetPerReplica": 50},
                    {"name": "rps", "query": "vector(2)", "target": 0.2},
                ]
            ),
        ),
        ["spec.api.autoscaling.metrics", "metric names must be unique"],
        id="duplicate-metric-names",
    ),
    pytest.param(
        with_field("spec.api.autoscaling", autoscaling(metrics=[])),
        ["spec.api.autoscaling.metrics", "should have at least 1 items"],
        id="zero-metrics",
    ),
    pytest.param(
        with_field(
            "spec.api.autoscaling",
            autoscaling(metrics=[{"name": "rps", "query": "vector(1)", "targetPerReplica": 50, "target": 1}]),
        ),
        ["spec.api.autoscaling.metrics[0]", "set exactly one of targetPerReplica and target"],
        id="metric-with-both-targets",
    ),
    pytest.param(
        with_field("spec.worker", worker(autoscaling=autoscaling(metrics=[{"name": "depth", "query": "q"}]))),
        ["spec.worker.autoscaling.metrics[0]", "set exactly one of targetPerReplica and target"],
        id="metric-with-neither-target",
    ),
    pytest.param(
        with_field("spec.api.autoscaling", autoscaling(fallback={"replicas": 9})),
        ["spec.api.autoscaling.fallback", "fallback.replicas must lie within [minReplicas, maxReplicas]"],
        id="fallback-outside-min-max",
    ),
]


@pytest.mark.parametrize(("mutate", "fragments"), CREATE_CASES)
def test_bad_input_is_rejected_on_create_naming_the_field(
    cluster: LocalCluster, crd: None, namespace: str, mutate: Mutation, fragments: list[str]
) -> None:
    manifest = valid_manifest(namespace)
    mutate(manifest)
    assert_rejected(kubectl_create(cluster, manifest), *fragments)


# ---- unknown fields: strict field validation ----------------------------------------------------------

UNKNOWN_FIELD_COMMANDS = [
    pytest.param(("create", "-f", "-"), 'strict decoding error: unknown field "{path}"', id="create"),
    pytest.param(
        ("create", "--validate=strict", "-f", "-"),
        'strict decoding error: unknown field "{path}"',
        id="create-validate-strict",
    ),
    pytest.param(
        ("apply", "--validate=strict", "-f", "-"),
        'strict decoding error: unknown field "{path}"',
        id="client-side-apply-validate-strict",
    ),
    pytest.param(
        ("apply", "--server-side", "-f", "-"), ".{path}: field not declared in schema", id="server-side-apply"
    ),
]

UNKNOWN_FIELDS = [
    pytest.param("spec.replicas", 3, id="top-level"),
    pytest.param("spec.postgres.replicas", 3, id="nested"),
    pytest.param("spec.api.autoscaling", {**autoscaling(), "targetCPU": 80}, id="in-autoscaling"),
]


@pytest.mark.parametrize(("path", "value"), UNKNOWN_FIELDS)
@pytest.mark.parametrize(("command", "expected"), UNKNOWN_FIELD_COMMANDS)
def test_unknown_fields_are_rejected(
    cluster: LocalCluster,
    crd: None,
    namespace: str,
    command: tuple[str, ...],
    expected: str,
    path: str,
    value: Any,
) -> None:
    manifest = valid_manifest(namespace)
    with_field(path, value)(manifest)
    field_path = "spec.api.autoscaling.targetCPU" if path == "spec.api.autoscaling" else path
    result = cluster.kubectl(*command, input=yaml.safe_dump(manifest), check=False)
    assert_rejected(result, expected.format(path=field_path))


# ---- rejected on update: transition rules (oldSelf) ---------------------------------------------------

STATEFUL_SPEC: dict[str, Any] = {
    "image": "sbo-sample-app:0.1.0",
    "postgres": {"version": "16", "storage": {"size": "10Gi", "storageClassName": "standard"}},
    "redis": {"persistence": {"size": "1Gi"}},
}

UPDATE_CASES = [
    pytest.param(
        {"postgres": {"storage": {"size": "5Gi"}}},
        ["spec.postgres.storage.size", "size may only grow"],
        id="postgres-storage-shrinks",
    ),
    pytest.param(
        # Compared as quantities, not strings: 10000Mi < 10Gi = 10240Mi.
        {"postgres": {"storage": {"size": "10000Mi"}}},
        ["spec.postgres.storage.size", "size may only grow"],
        id="postgres-storage-shrinks-in-other-units",
    ),
    pytest.param(
        {"redis": {"persistence": {"size": "512Mi"}}},
        ["spec.redis.persistence.size", "size may only grow"],
        id="redis-persistence-shrinks",
    ),
    pytest.param(
        {"postgres": {"storage": {"storageClassName": "fast"}}},
        ["spec.postgres.storage.storageClassName", "storageClassName is immutable"],
        id="postgres-storage-class-changed",
    ),
    pytest.param(
        {"postgres": {"storage": {"storageClassName": None}}},
        ["spec.postgres.storage.storageClassName", "storageClassName is immutable"],
        id="postgres-storage-class-removed",
    ),
    pytest.param(
        {"redis": {"persistence": {"storageClassName": "fast"}}},
        ["spec.redis.persistence.storageClassName", "storageClassName is immutable"],
        id="redis-storage-class-added",
    ),
    pytest.param(
        {"postgres": {"storage": {"size": "lots"}}},
        ["spec.postgres.storage.size", QUANTITY_MESSAGE],
        id="postgres-storage-size-malformed",
    ),
    pytest.param(
        {"postgres": {"version": "17"}},
        ["spec.postgres.version", "version is immutable"],
        id="postgres-version-changed",
    ),
]


def create_stateful_backend(cluster: LocalCluster, namespace: str) -> None:
    manifest = valid_manifest(namespace)
    manifest["spec"] = copy.deepcopy(STATEFUL_SPEC)
    kubectl_create(cluster, manifest).check_returncode()


def patch(
    cluster: LocalCluster, namespace: str, spec_patch: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "patch",
        "-n",
        namespace,
        "sb",
        "shop",
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": spec_patch}),
        check=False,
    )


@pytest.mark.parametrize(("spec_patch", "fragments"), UPDATE_CASES)
def test_forbidden_change_is_rejected_on_update_naming_the_field(
    cluster: LocalCluster, crd: None, namespace: str, spec_patch: dict[str, Any], fragments: list[str]
) -> None:
    create_stateful_backend(cluster, namespace)
    assert_rejected(patch(cluster, namespace, spec_patch), *fragments)


def test_storage_may_grow_or_be_restated_in_other_units(
    cluster: LocalCluster, crd: None, namespace: str
) -> None:
    create_stateful_backend(cluster, namespace)
    for spec_patch in (
        {"postgres": {"storage": {"size": "10240Mi"}}},
        {"postgres": {"storage": {"size": "20Gi", "storageClassName": "standard"}}},
        {"redis": {"persistence": {"size": "2Gi"}}},
    ):
        result = patch(cluster, namespace, spec_patch)
        assert result.returncode == 0, result.stderr


# ---- accepted --------------------------------------------------------------------------------------------

BOUNDARY_CASES = [
    pytest.param(with_field("metadata.name", "a" * MAX_NAME_LENGTH), id="name-at-cap"),
    pytest.param(with_field("spec.postgres.readReplicas", MAX_READ_REPLICAS), id="read-replicas-at-cap"),
    pytest.param(with_field("spec.api.replicas", 0), id="zero-api-replicas"),
    pytest.param(
        with_field("spec.api.autoscaling", autoscaling(minReplicas=3, maxReplicas=3)), id="min-equals-max"
    ),
    pytest.param(with_field("spec.redis.maxMemory", 268435456), id="integer-quantity"),
    pytest.param(with_field("spec.postgres.storage", {"size": "1e10"}), id="exponent-quantity"),
    pytest.param(with_field("spec.prometheus", {"pollSeconds": 1}), id="poll-seconds-1"),
]


@pytest.mark.parametrize("mutate", BOUNDARY_CASES)
def test_input_at_the_boundary_is_accepted(
    cluster: LocalCluster, crd: None, namespace: str, mutate: Mutation
) -> None:
    manifest = valid_manifest(namespace)
    mutate(manifest)
    result = kubectl_create(cluster, manifest, "--dry-run=server")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_is_accepted_and_parses_after_defaulting(
    cluster: LocalCluster, crd: None, namespace: str, path: Path
) -> None:
    backends = [
        doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc["kind"] == "ScalableBackend"
    ]
    assert backends, f"{path} holds no ScalableBackend"
    for manifest in backends:
        manifest["metadata"]["namespace"] = namespace
        result = kubectl_create(cluster, manifest, "-o", "json")
        assert result.returncode == 0, result.stderr
        # What the apiserver stored, defaults filled in, is what the operator will parse.
        ScalableBackend.from_body(json.loads(result.stdout))


def test_kubectl_explain_prints_field_descriptions(cluster: LocalCluster, crd: None) -> None:
    def explained() -> str:
        result = cluster.kubectl("explain", "sb.spec.postgres", check=False)
        return result.stdout if result.returncode == 0 else ""

    # kubectl wraps descriptions at 80 columns; compare with whitespace collapsed.
    text = " ".join(eventually(explained, timeout=30, what="kubectl explain sb.spec.postgres").split())
    assert "The PostgreSQL primary and read replicas." in text
    for name, field in PostgresSpec.model_fields.items():
        alias = field.alias or name
        assert field.description, name
        assert f"{alias} <" in text, f"{alias} missing from kubectl explain"
        assert field.description in text, f"description of {alias} missing from kubectl explain"
