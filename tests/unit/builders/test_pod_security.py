"""Every pod template passes Pod Security "restricted", and the checker itself catches violations."""

from __future__ import annotations

import copy

import pytest

from tests.unit.factories import (
    all_manifests,
    backend_from,
    load_example,
    manifest_of,
    pod_specs,
    restricted_violations,
)

pytestmark = pytest.mark.unit

BACKENDS = {
    "basic": lambda: load_example("basic.yaml"),
    "full": lambda: load_example("full.yaml"),
    "redis persistence, no replicas": lambda: backend_from(
        {"redis": {"persistence": {"size": "1Gi"}}, "postgres": {"readReplicas": 0}}
    ),
}


@pytest.mark.parametrize("case", sorted(BACKENDS))
def test_every_pod_template_passes_the_restricted_profile(case: str) -> None:
    manifests = all_manifests(BACKENDS[case]())
    pods = [(manifest["metadata"]["name"], pod) for manifest in manifests for pod in pod_specs(manifest)]
    assert len(pods) >= 3  # at least the api, Redis and the PostgreSQL instances
    for name, pod in pods:
        assert restricted_violations(pod) == [], name


def test_every_pod_template_has_no_service_account_token_and_no_service_links() -> None:
    for manifest in all_manifests(load_example("full.yaml")):
        for pod in pod_specs(manifest):
            assert pod["automountServiceAccountToken"] is False, manifest["metadata"]["name"]
            assert pod["enableServiceLinks"] is False, manifest["metadata"]["name"]


def test_every_writable_path_is_a_volume() -> None:
    for manifest in all_manifests(load_example("full.yaml")):
        for pod in pod_specs(manifest):
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
                assert "/tmp" in mounts, container["name"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda pod: pod["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
            "allowPrivilege",
        ),
        (lambda pod: pod["containers"][0]["securityContext"].update(capabilities={"drop": []}), "drop ALL"),
        (lambda pod: pod["securityContext"].update(runAsUser=0), "runAsUser"),
        (
            lambda pod: (
                pod["securityContext"].pop("seccompProfile"),
                pod["containers"][0]["securityContext"].pop("seccompProfile"),
            ),
            "seccompProfile",
        ),
        (lambda pod: pod.update(hostNetwork=True), "hostNetwork"),
        (lambda pod: pod["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
        (
            lambda pod: pod["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
            "readOnly",
        ),
    ],
)
def test_the_checker_catches_violations(mutate: object, expected: str) -> None:
    deployment = manifest_of(all_manifests(load_example("basic.yaml")), "Deployment", "shop-api")
    pod = copy.deepcopy(deployment["spec"]["template"]["spec"])
    mutate(pod)  # type: ignore[operator]
    assert any(expected in problem for problem in restricted_violations(pod))
