"""Volumes on the real node persist for real: restricted pods write them, new pods read them back.

A claim of the default class whose pod the scheduler puts on the real node gets a `local` volume on
a real directory (hack/local_provisioner.py), which kubelet gives the pod's fsGroup; a claim whose
pod lands on a kwok node gets no directory. Deleting a claim deletes its directory, and `down`
leaves none. The module starts its own control plane with the real node, like test_real_node.py,
and packs tests/node/volume_probe.go into an image of its own (no shell in the node's images).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devkit import host_state
from devkit.cluster import eventually
from devkit.paths import load_hack_script, tools_bin_dir
from devkit.real_node import NODE, RealNodeCluster

pytestmark = pytest.mark.node

IMAGE = "sbo.local/volume-probe:test"
CONTAINERD_SOCKET = "/run/sbo-real-node/containerd.sock"
NAMESPACE = "t-real-volumes"
DATA_SERVICE_UID = 999  # the uid and fsGroup of the operator's PostgreSQL and Redis pods


def volume_probe_image(workdir: Path) -> Path:
    """tests/node/volume_probe.go, built static and packed by hack/oci_image.py."""
    binary = workdir / "volume-probe"
    subprocess.run(
        [
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            "-s -w",
            "-o",
            str(binary),
            str(Path(__file__).parent / "volume_probe.go"),
        ],
        env={**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOPROXY": "off"},
        check=True,
        capture_output=True,
        timeout=300,
    )
    oci_image = load_hack_script("oci_image")
    archive = workdir / "volume-probe.tar"
    architecture = subprocess.run(["go", "env", "GOARCH"], capture_output=True, text=True, check=True).stdout
    archive.write_bytes(
        oci_image.build_archive(
            name=IMAGE,
            files=[(binary, "/volume-probe")],
            entrypoint=["/volume-probe"],
            user=f"{DATA_SERVICE_UID}:{DATA_SERVICE_UID}",
            architecture=architecture.strip(),
        )
    )
    return archive


@pytest.fixture(scope="module")
def node(real_node: RealNodeCluster, tmp_path_factory: pytest.TempPathFactory) -> RealNodeCluster:
    """The module's real node, with the volume-probe image and a namespace enforcing "restricted"."""
    archive = volume_probe_image(tmp_path_factory.mktemp("volume-probe"))
    ctr = [str(tools_bin_dir() / "ctr"), "--address", CONTAINERD_SOCKET, "-n", "k8s.io"]
    subprocess.run(
        [*ctr, "images", "import", "--local", str(archive)], check=True, capture_output=True, timeout=120
    )
    real_node.create_restricted_namespace(NAMESPACE)
    return real_node


def volumes_folder(cluster: RealNodeCluster) -> Path:
    return cluster.local_dir / "real-node" / "volumes"


def claim(name: str) -> dict[str, Any]:
    """A claim of the default class, as the operator's volumeClaimTemplates make them."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def volume_pod(name: str, claim_name: str, *args: str, on_real_node: bool = True) -> dict[str, Any]:
    """A pod that Pod Security "restricted" admits, running as the data services do (uid and fsGroup 999)."""
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": DATA_SERVICE_UID,
            "runAsGroup": DATA_SERVICE_UID,
            "fsGroup": DATA_SERVICE_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "probe",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "args": list(args),
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }
        ],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
    }
    if on_real_node:
        spec["nodeSelector"] = {"sbo.dev/real-node": "true"}
        spec["tolerations"] = [{"key": "sbo.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def run_to_completion(cluster: RealNodeCluster, pod: dict[str, Any]) -> str:
    """Create the pod, wait until it succeeded, delete it; its output."""
    name = pod["metadata"]["name"]
    cluster.apply(pod, namespace=NAMESPACE)
    waited = cluster.kubectl(
        "wait", "-n", NAMESPACE, "--for=jsonpath={.status.phase}=Succeeded", f"pod/{name}", "--timeout=90s",
        check=False,
    )  # fmt: skip
    logs = cluster.kubectl("logs", "-n", NAMESPACE, name, check=False)
    described = (
        "" if waited.returncode == 0 else cluster.kubectl("describe", "pod", "-n", NAMESPACE, name).stdout
    )
    assert waited.returncode == 0, f"{waited.stderr}\nlogs: {logs.stdout}{logs.stderr}\n{described}"
    cluster.kubectl("delete", "pod", "-n", NAMESPACE, name, "--wait=true", "--timeout=60s")
    return logs.stdout


def get(cluster: RealNodeCluster, *args: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return found


def test_the_default_class_waits_for_the_pod_to_choose_the_node(node: RealNodeCluster) -> None:
    storage_class = get(node, "storageclass", "standard")
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    assert storage_class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"


def test_a_restricted_pod_writes_a_volume_that_a_new_pod_reads_back_and_it_goes_with_its_claim(
    node: RealNodeCluster,
) -> None:
    node.apply(claim("data"), namespace=NAMESPACE)
    assert get(node, "pvc", "-n", NAMESPACE, "data")["status"]["phase"] == "Pending", "no pod, no node yet"

    written = run_to_completion(node, volume_pod("writer", "data", "write", "/data/greeting", "persisted\n"))
    # kubelet gave the root-owned 0750 directory the pod's fsGroup: that is how uid 999 may write it.
    assert written.split()[:3] == ["uid=999", "gid=999", "groups=[999]"], written
    assert "folder-gid=999" in written, written

    claim_now = get(node, "pvc", "-n", NAMESPACE, "data")
    volume = get(node, "pv", claim_now["spec"]["volumeName"])
    directory = volumes_folder(node) / volume["metadata"]["name"]
    assert volume["spec"]["local"] == {"path": str(directory)}
    [term] = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE]}]
    # The data is on the host, in the volume's own directory, written by the pod's user.
    greeting = directory / "greeting"
    assert greeting.read_text() == "persisted\n"
    assert (greeting.stat().st_uid, directory.stat().st_gid) == (DATA_SERVICE_UID, DATA_SERVICE_UID)

    # The writer is gone; a new pod on the same claim reads what it wrote.
    assert run_to_completion(node, volume_pod("reader", "data", "read", "/data/greeting")) == "persisted\n"

    # The class reclaims with Delete: deleting the claim deletes the volume and its directory.
    node.kubectl("delete", "pvc", "-n", NAMESPACE, "data", "--wait=true", "--timeout=60s")

    def volume_and_directory_gone() -> bool:
        volumes = get(node, "pv")["items"]
        return not directory.exists() and volume["metadata"]["name"] not in {
            v["metadata"]["name"] for v in volumes
        }

    eventually(volume_and_directory_gone, timeout=60, interval=0.5, what=f"{directory} and its volume to go")


def test_a_claim_whose_pod_lands_on_a_kwok_node_gets_no_directory(node: RealNodeCluster) -> None:
    before = set(volumes_folder(node).iterdir())
    node.apply(
        claim("fake"),
        volume_pod("on-kwok", "fake", "read", "/data/x", on_real_node=False),
        namespace=NAMESPACE,
    )

    def bound() -> dict[str, Any]:
        found = get(node, "pvc", "-n", NAMESPACE, "fake")
        assert found["status"]["phase"] == "Bound"
        return found

    volume = get(
        node, "pv", eventually(bound, timeout=60, what="claim fake to be Bound")["spec"]["volumeName"]
    )

    def scheduled() -> str:
        # The scheduler binds the pod once it saw the claim bound (it polls every second).
        node_name: str = get(node, "pod", "-n", NAMESPACE, "on-kwok")["spec"].get("nodeName", "")
        return node_name

    assert eventually(scheduled, timeout=30, what="pod on-kwok to be scheduled").startswith("kwok-node-")
    assert "hostPath" in volume["spec"]
    assert "local" not in volume["spec"]
    assert set(volumes_folder(node).iterdir()) == before, "kwok's claims make no directories"
    node.kubectl("delete", "pod", "-n", NAMESPACE, "on-kwok", "--wait=true", "--timeout=60s")


def test_down_leaves_no_volume_directory_and_the_host_as_it_found_it(
    node: RealNodeCluster, host_before: dict[str, Any]
) -> None:
    # A claim still bound at `down`, its directory full.
    node.apply(claim("kept"), namespace=NAMESPACE)
    run_to_completion(node, volume_pod("keeper", "kept", "write", "/data/file", "kept\n"))
    [directory] = volumes_folder(node).iterdir()
    assert (directory / "file").read_text() == "kept\n"

    node.down()
    assert not (node.local_dir / "real-node").exists()
    assert host_state.differences(host_before, host_state.snapshot()) == {}
