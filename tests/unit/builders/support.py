"""Helpers for the builder tests: example backends, every manifest, golden files, Pod Security.

Golden files live in tests/unit/builders/golden/; regenerate them with::

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/builders
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import api, network_policies, postgres, redis, worker

REPO = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).resolve().parent / "golden"
# Fixed "random" bytes: the builders are pure, the I/O layer passes secrets.token_bytes(32).
RANDOM_BYTES = bytes(range(32))
UID = "6b1f8f0e-4a47-4d0e-9d7c-000000000001"

Manifest = dict[str, Any]


def load_example(name: str, *, uid: str | None = UID) -> ScalableBackend:
    body = yaml.safe_load((REPO / "examples" / name).read_text())
    if uid is not None:
        body["metadata"]["uid"] = uid
    return ScalableBackend.model_validate(body)


def backend_from(spec: dict[str, Any], *, name: str = "shop", namespace: str = "demo") -> ScalableBackend:
    return ScalableBackend.model_validate(
        {
            "apiVersion": "sbo.dev/v1alpha1",
            "kind": "ScalableBackend",
            "metadata": {"name": name, "namespace": namespace, "uid": UID},
            "spec": {"image": "sbo-sample-app:0.1.0", **spec},
        }
    )


def all_manifests(backend: ScalableBackend) -> list[Manifest]:
    """Every child the builders produce for the backend, as the reconciler would apply them."""
    api_replicas = backend.spec.api.replicas
    worker_replicas = backend.spec.worker.replicas if backend.spec.worker else 0
    candidates = [
        api.build_app_service_account(backend),
        api.build_api_deployment(backend, replicas=api_replicas),
        api.build_api_service(backend),
        api.build_api_pdb(backend),
        api.build_api_ingress(backend),
        api.build_migrations_job(backend),
        worker.build_worker_deployment(backend, replicas=worker_replicas),
        worker.build_worker_pdb(backend),
        redis.build_redis_config_map(backend),
        redis.build_redis_secret(backend, existing_data=None, random_bytes=RANDOM_BYTES),
        redis.build_redis_service(backend),
        redis.build_redis_statefulset(backend),
        postgres.build_postgres_config_map(backend),
        postgres.build_postgres_secret(backend, existing_data=None, random_bytes=RANDOM_BYTES),
        postgres.build_postgres_read_write_service(backend),
        postgres.build_postgres_read_only_service(backend),
        postgres.build_postgres_primary_statefulset(backend),
        postgres.build_postgres_replica_statefulset(backend),
        postgres.build_postgres_primary_pdb(backend),
        postgres.build_postgres_replica_pdb(backend),
        network_policies.build_postgres_network_policy(backend),
        network_policies.build_redis_network_policy(backend),
    ]
    return [manifest for manifest in candidates if manifest is not None]


def pod_specs(manifest: Manifest) -> Iterator[dict[str, Any]]:
    """The pod spec inside a workload manifest, if any."""
    template = manifest.get("spec", {}).get("template")
    if manifest["kind"] in {"Deployment", "StatefulSet", "Job"} and template is not None:
        yield template["spec"]


def dump(manifest: Manifest) -> str:
    return yaml.safe_dump(manifest, sort_keys=False, width=1000)


def assert_golden(relative: str, manifest: Manifest) -> None:
    """Compare with golden/<relative>; UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN / relative
    text = dump(manifest)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 pytest tests/unit/builders"
    assert path.read_text() == text, f"{relative} differs from the golden file (UPDATE_GOLDEN=1 to accept)"


# ---- Pod Security "restricted" ----------------------------------------------------------------------

_ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What in a pod spec breaks the Pod Security "restricted" profile (latest), plus our own
    rules: numeric runAsUser and read-only root filesystems everywhere."""
    problems: list[str] = []
    for host_field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host_field):
            problems.append(f"{host_field} is set")
    pod_context = pod.get("securityContext", {})
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} uses {sorted(kinds)}")
    if pod_context.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    pod_seccomp = pod_context.get("seccompProfile", {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        problems.append(f"pod seccompProfile {pod_seccomp}")
    for sysctl in pod_context.get("sysctls", []):
        problems.append(f"sysctl {sysctl['name']}")
    containers = [*pod.get("initContainers", []), *pod.get("containers", [])]
    for container in containers:
        name = container["name"]
        context = container.get("securityContext", {})
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{name}: capabilities must drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {capabilities['add']}")
        run_as_non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if run_as_non_root is not True:
            problems.append(f"{name}: runAsNonRoot must be true")
        run_as_user = context.get("runAsUser", pod_context.get("runAsUser"))
        if not isinstance(run_as_user, int) or run_as_user == 0:
            problems.append(f"{name}: runAsUser must be a non-zero number")
        seccomp = context.get("seccompProfile", {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem must be true")
        for port in container.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort {port['hostPort']}")
        if context.get("procMount", "Default") != "Default":
            problems.append(f"{name}: procMount")
    return problems
