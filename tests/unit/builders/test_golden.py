"""Whole manifests against golden files, and properties every manifest shares.

Regenerate the golden files after an intended change with
``UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/builders``.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from sbo_operator.builders.labels import MANAGED_BY
from tests.unit.factories import UID, all_manifests, assert_golden, dump, load_example, manifest_of

pytestmark = pytest.mark.unit

EXAMPLES = ("basic.yaml", "full.yaml")


@pytest.mark.parametrize("example", EXAMPLES)
def test_manifests_match_the_golden_files(example: str) -> None:
    for manifest in all_manifests(load_example(example)):
        stem = example.removesuffix(".yaml")
        assert_golden(f"{stem}/{manifest['kind']}-{manifest['metadata']['name']}.yaml", manifest)


@pytest.mark.parametrize("example", EXAMPLES)
def test_no_stray_golden_files(example: str) -> None:
    from tests.unit.factories import GOLDEN

    stem = example.removesuffix(".yaml")
    expected = {f"{m['kind']}-{m['metadata']['name']}.yaml" for m in all_manifests(load_example(example))}
    present = {path.name for path in (GOLDEN / stem).glob("*.yaml")}
    assert present == expected


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_manifest_is_ready_for_server_side_apply(example: str) -> None:
    backend = load_example(example)
    for manifest in all_manifests(backend):
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        assert manifest["apiVersion"], where
        metadata = manifest["metadata"]
        assert metadata["namespace"] == "demo", where
        assert metadata["name"].startswith("shop-"), where
        assert len(metadata["name"]) <= 63, where
        labels = metadata["labels"]
        assert labels["app.kubernetes.io/managed-by"] == MANAGED_BY, where
        assert labels["app.kubernetes.io/instance"] == "shop", where
        for key in ("name", "component", "part-of"):
            assert f"app.kubernetes.io/{key}" in labels, where
        (owner,) = metadata["ownerReferences"]
        assert owner == {
            "apiVersion": "sbo.dev/v1alpha1",
            "kind": "ScalableBackend",
            "name": "shop",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }, where


def test_without_a_uid_there_are_no_owner_references() -> None:
    for manifest in all_manifests(load_example("basic.yaml", uid=None)):
        assert "ownerReferences" not in manifest["metadata"]


@pytest.mark.parametrize("example", EXAMPLES)
def test_builders_are_deterministic_and_share_no_substructures(example: str) -> None:
    first = all_manifests(load_example(example))
    second = all_manifests(load_example(example))
    assert first == second
    for manifest in first:
        # PyYAML writes an &anchor for every object referenced twice.
        assert "&id" not in yaml.safe_dump(manifest), manifest["metadata"]["name"]
        assert yaml.safe_load(dump(manifest)) == manifest


def test_builders_do_not_mutate_the_backend() -> None:
    backend = load_example("full.yaml")
    before = copy.deepcopy(backend.model_dump())
    manifests = all_manifests(backend)
    api_deployment = manifest_of(manifests, "Deployment", "shop-api")
    api_deployment["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "y"})
    assert backend.model_dump() == before
    assert manifest_of(all_manifests(backend), "Deployment", "shop-api") != api_deployment


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_statefulset_is_governed_by_a_headless_service(example: str) -> None:
    """So that each pod has a DNS name, <pod>.<service>: failover and pg_rewind address one instance."""
    manifests = all_manifests(load_example(example))
    statefulsets = [m for m in manifests if m["kind"] == "StatefulSet"]
    assert statefulsets
    for statefulset in statefulsets:
        service = manifest_of(manifests, "Service", statefulset["spec"]["serviceName"])
        where = f"Service {service['metadata']['name']} of StatefulSet {statefulset['metadata']['name']}"
        assert service["spec"]["clusterIP"] == "None", where
        assert service["spec"]["publishNotReadyAddresses"] is True, where
        assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"], where
        assert (
            service["metadata"]["labels"]["app.kubernetes.io/component"]
            == (statefulset["metadata"]["labels"]["app.kubernetes.io/component"])
        ), where
        container_ports = {
            port["name"] for c in statefulset["spec"]["template"]["spec"]["containers"] for port in c["ports"]
        }
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= container_ports, where
