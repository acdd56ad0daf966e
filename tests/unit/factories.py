"""The one test factory: real backends, real children, faked server state, golden files.

Backends come from the examples (plus the uid and generation the apiserver adds); children come
from the components' own plans (``components.COMPONENTS``), stored as the apiserver would return
them and compacted as the watches keep them. Only the server-side `status` is made up here.

Golden files live in tests/unit/builders/golden/; regenerate them with::

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/builders
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import Manifest
from sbo_operator.builders.images import OFFICIAL_DATA_SERVICE_IMAGES, DataServiceImages
from sbo_operator.components import COMPONENTS
from sbo_operator.components import generated_secrets as secrets_of
from sbo_operator.components.base import OperatorInputs
from sbo_operator.snapshot import Snapshot, compact, compact_backend, compact_pod

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "builders" / "golden"
# The uid the apiserver would give; the golden files' ownerReferences carry it.
UID = "6b1f8f0e-4a47-4d0e-9d7c-000000000001"
# Fixed "random" bytes: the builders are pure, the I/O layer passes secrets.token_bytes(32).
RANDOM_BYTES = bytes(range(32))
NOW = "2025-01-02T03:04:05Z"

Body = dict[str, Any]


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


def example_body(name: str = "basic.yaml", *, generation: int = 3) -> Body:
    """An example ScalableBackend as the apiserver returns it: with a uid and a generation."""
    body: Body = yaml.safe_load((REPO / "examples" / name).read_text())
    body["metadata"].update(uid=UID, generation=generation, resourceVersion="100")
    return body


def edited(body: Body, *edits: Callable[[dict[str, Any]], object]) -> Body:
    """A copy of the body whose spec was changed by each of `edits`, in order."""
    changed = copy.deepcopy(body)
    for edit in edits:
        edit(changed["spec"])
    return changed


def parse(body: Body) -> ScalableBackend:
    return ScalableBackend.from_body(body)


def with_worker(spec: dict[str, Any]) -> None:
    spec["worker"] = {"replicas": 2, "command": ["python", "-m", "app.worker"]}


def with_ingress(spec: dict[str, Any]) -> None:
    spec["api"]["ingress"] = {"host": "shop.example.com"}


def without_redis(spec: dict[str, Any]) -> None:
    spec["redis"] = {"enabled": False}


def without_postgres(spec: dict[str, Any]) -> None:
    spec["postgres"] = {"enabled": False}


def without_migrations(spec: dict[str, Any]) -> None:
    spec["api"].pop("migrations", None)


def with_image(image: str) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        spec["image"] = image

    return edit


# ---- children as the server stores them -------------------------------------------------------------


def stored(
    manifest: Manifest | None, *, generation: int = 1, status: dict[str, Any] | None = None
) -> Manifest:
    """What the apiserver returns for an applied manifest: server metadata plus a status."""
    assert manifest is not None, "the builder returned no manifest for this backend"
    obj = copy.deepcopy(manifest)
    obj["metadata"].update(
        uid=f"uid-{obj['kind']}-{obj['metadata']['name']}",
        resourceVersion="7",
        generation=generation,
        creationTimestamp="2025-01-01T00:00:00Z",
        managedFields=[{"manager": "scalable-backend-operator", "operation": "Apply"}],
    )
    if status is not None:
        obj["status"] = status
    return obj


def ready_statefulset(manifest: Manifest | None) -> Manifest:
    """A StatefulSet whose every replica is ready on the current revision."""
    assert manifest is not None
    return unready_statefulset(manifest, ready=manifest["spec"]["replicas"])


def unready_statefulset(manifest: Manifest | None, *, ready: int = 0) -> Manifest:
    """A StatefulSet on its current revision with `ready` of its pods ready."""
    assert manifest is not None
    return stored(
        manifest,
        status={
            "observedGeneration": 1,
            "replicas": manifest["spec"]["replicas"],
            "readyReplicas": ready,
            "currentRevision": "rev-1",
            "updateRevision": "rev-1",
        },
    )


def ready_deployment(manifest: Manifest | None) -> Manifest:
    """A Deployment whose newest ReplicaSet has every replica updated and available."""
    assert manifest is not None
    replicas = manifest["spec"]["replicas"]
    return stored(
        manifest,
        status={
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        },
    )


def finished_job(manifest: Manifest | None, outcome: str) -> Manifest:
    """A Job with a True `Complete` or `Failed` condition."""
    assert manifest is not None
    return stored(
        manifest,
        status={"conditions": [{"type": outcome, "status": "True", "reason": "Finished"}]},
    )


def running_job(manifest: Manifest | None) -> Manifest:
    assert manifest is not None
    return stored(manifest, status={"active": 1, "startTime": "2025-01-01T00:00:00Z"})


def being_deleted(obj: Manifest) -> Manifest:
    deleted = copy.deepcopy(obj)
    deleted["metadata"]["deletionTimestamp"] = "2025-01-01T00:01:00Z"
    return deleted


def generated_secrets(backend: ScalableBackend) -> list[Manifest]:
    """The Secrets the reconciler would have created for the backend, as stored."""
    return [stored(secret) for secret in _secret_manifests(backend)]


def generated_secret_uids(backend: ScalableBackend) -> dict[str, str]:
    """The uids of the generated Secrets as stored (the workloads' ``secret_uids``), by name."""
    return {secret["metadata"]["name"]: secret["metadata"]["uid"] for secret in generated_secrets(backend)}


def _secret_manifests(backend: ScalableBackend) -> list[Manifest]:
    built = (
        secret.build(backend, existing_data=None, random_bytes=RANDOM_BYTES) for secret in secrets_of(backend)
    )
    return [manifest for manifest in built if manifest is not None]


def snapshot(body: Body, *children: Manifest, pods: Sequence[Manifest] | None = None) -> Snapshot:
    """The snapshot reconcile reads: the backend and its compacted children.

    ``pods``: the PostgreSQL pods; by default those of a ready instances' StatefulSet among the
    children, labelled by the election (see :func:`postgres_pods`).
    """
    if pods is None:
        pods = [pod for child in children for pod in postgres_pods(child)]
    return Snapshot(
        backend=compact_backend(body),
        children={(child["kind"], child["metadata"]["name"]): compact(child) for child in children},
        pods={pod["metadata"]["name"]: compact_pod(pod) for pod in pods},
    )


def postgres_pod(
    name: str,
    *,
    role: str | None,
    ready: bool = True,
    namespace: str = "demo",
    instance: str = "shop",
    terminating: bool = False,
    ip: str | None = "198.18.0.10",
    annotations: Mapping[str, str] | None = None,
) -> Manifest:
    """A PostgreSQL pod as the API serves it (its uid derived from its name)."""
    labels = {
        "app.kubernetes.io/component": "postgres",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/managed-by": "scalable-backend-operator",
        "app.kubernetes.io/name": "scalable-backend",
    }
    if role is not None:
        labels["sbo.dev/postgres-role"] = role
    pod: Manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
            ],
        },
    }
    if ip is not None:
        pod["status"]["podIP"] = ip
    if annotations:
        pod["metadata"]["annotations"] = dict(annotations)
    if terminating:
        pod["metadata"]["deletionTimestamp"] = "2025-01-01T00:01:00Z"
    return pod


def postgres_pods(statefulset: Manifest) -> list[Manifest]:
    """The pods of a ready instances' StatefulSet: instance 0 labelled primary, the others replica.

    Each carries its template's annotations, as a pod started from it does.
    """
    metadata = statefulset["metadata"]
    if (
        statefulset["kind"] != "StatefulSet"
        or metadata["labels"].get("app.kubernetes.io/component") != "postgres"
    ):
        return []
    if metadata["name"].endswith(("-postgres-primary", "-postgres-replica")):  # the old shape
        return []
    replicas = statefulset["spec"]["replicas"]
    if (statefulset.get("status") or {}).get("readyReplicas") != replicas:
        return []
    return [
        postgres_pod(
            f"{metadata['name']}-{ordinal}",
            role="primary" if ordinal == 0 else "replica",
            namespace=metadata["namespace"],
            instance=metadata["labels"]["app.kubernetes.io/instance"],
            annotations=statefulset["spec"]["template"]["metadata"].get("annotations"),
        )
        for ordinal in range(replicas)
    ]


def as_running(manifest: Manifest) -> Manifest:
    """A child as stored once it is up: workloads ready, a Job complete."""
    if manifest["kind"] == "StatefulSet":
        return ready_statefulset(manifest)
    if manifest["kind"] == "Deployment":
        return ready_deployment(manifest)
    if manifest["kind"] == "Job":
        return finished_job(manifest, "Complete")
    return stored(manifest)


def wanted_once_running(
    backend: ScalableBackend, *, images: DataServiceImages = OFFICIAL_DATA_SERVICE_IMAGES
) -> list[Manifest]:
    """Every child the components want once everything they wait for is up, in registry order.

    A first plan holds back what waits (read replicas for the primary, the api for its
    migrations); planning again against the running result releases it, until nothing changes.
    """
    body = backend.model_dump(mode="json", by_alias=True, exclude_none=True)
    # The generated Secrets exist first: the pod templates carry their uids.
    secrets = generated_secrets(backend)
    running: list[Manifest] = []
    while True:
        current = snapshot(body, *secrets, *running)
        manifests = [
            m
            for component in COMPONENTS
            for m in component.plan(backend, current, operator=OperatorInputs(images=images)).manifests
        ]
        if {(m["kind"], m["metadata"]["name"]) for m in [*secrets, *manifests]} == set(current.children):
            return manifests
        running = [as_running(manifest) for manifest in manifests]


def all_manifests(
    backend: ScalableBackend, *, images: DataServiceImages = OFFICIAL_DATA_SERVICE_IMAGES
) -> list[Manifest]:
    """Every child of a running stack, generated Secrets included, as the reconciler applies them."""
    return [*_secret_manifests(backend), *wanted_once_running(backend, images=images)]


def running_stack(backend: ScalableBackend, *, image: str | None = None) -> list[Manifest]:
    """Every child of a backend that is up and ready, workloads running `image` (default: desired).

    With migrations, the Job for that image is Complete.
    """
    if image is not None:
        backend = backend.model_copy(update={"spec": backend.spec.model_copy(update={"image": image})})
    return [*generated_secrets(backend), *(as_running(m) for m in wanted_once_running(backend))]


def manifest_of(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    """The one manifest of that kind and name."""
    return next(m for m in manifests if (m["kind"], m["metadata"]["name"]) == (kind, name))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the apiserver applies a status patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---- golden files and Pod Security "restricted" ---------------------------------------------------


def container(deployment: dict[str, Any] | None) -> dict[str, Any]:
    assert deployment is not None
    result: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return result


def env_of(deployment: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container(deployment)["env"]}


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
