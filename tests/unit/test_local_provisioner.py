"""hack/local_provisioner.py: which volume a claim gets, and that only the real node's get directories.

The provisioner's API calls go to a small fake here (unit level); the kwok side runs against the real
control plane in tests/integration/test_control_plane.py, the real node's in tests/node/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.paths import load_hack_script

pytestmark = pytest.mark.unit

PROVISIONER = "sbo.dev/local-provisioner"
UID = "0b9f6c1e-2d2a-4a57-9d0e-3f1b2c4d5e6f"
VOLUME = f"pvc-{UID}"


local_provisioner = load_hack_script("local_provisioner")


class FakeApi:
    """The few calls the provisioner makes, answered from dicts; records what it writes."""

    def __init__(self, binding_mode: str, nodes: dict[str, dict[str, str]]) -> None:
        self.binding_mode = binding_mode
        self.nodes = nodes
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    def read_storage_class(self, name: str) -> client.V1StorageClass:
        return client.V1StorageClass(
            metadata=client.V1ObjectMeta(name=name),
            provisioner=PROVISIONER,
            reclaim_policy="Delete",
            volume_binding_mode=self.binding_mode,
        )

    def read_node(self, name: str) -> client.V1Node:
        if name not in self.nodes:
            raise ApiException(status=404)
        return client.V1Node(metadata=client.V1ObjectMeta(name=name, labels=self.nodes[name]))

    def create_persistent_volume(self, body: dict[str, Any]) -> None:
        self.created.append(body)

    def delete_persistent_volume(self, name: str) -> None:
        self.deleted.append(name)


NODES = {
    "kwok-node-0": {"kubernetes.io/hostname": "kwok-node-0", "type": "kwok"},
    "sbo-real-node": {"kubernetes.io/hostname": "sbo-real-node", "sbo.dev/real-node": "true"},
}


def claim(selected_node: str | None = None) -> client.V1PersistentVolumeClaim:
    annotations = {"volume.kubernetes.io/selected-node": selected_node} if selected_node else None
    return client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="data-db-0", namespace="shop", uid=UID, annotations=annotations),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],
            storage_class_name="standard",
            resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
        ),
        status=client.V1PersistentVolumeClaimStatus(phase="Pending"),
    )


def provisioner_for(binding_mode: str, volumes_dir: Path | None) -> tuple[Any, FakeApi]:
    api = FakeApi(binding_mode, NODES)
    return local_provisioner.Provisioner(api, api, PROVISIONER, volumes_dir), api


@pytest.mark.parametrize(
    ("binding_mode", "selected_node"),
    [
        pytest.param("Immediate", None, id="immediate"),
        pytest.param("WaitForFirstConsumer", "kwok-node-0", id="kwok-node"),
        pytest.param("WaitForFirstConsumer", "gone-node", id="unknown-node"),
    ],
)
def test_a_claim_off_the_real_node_gets_a_host_path_volume_and_no_directory(
    binding_mode: str, selected_node: str | None, tmp_path: Path
) -> None:
    provisioner, api = provisioner_for(binding_mode, tmp_path)
    provisioner.on_claim(claim(selected_node))
    [volume] = api.created
    assert volume["metadata"] == {
        "name": VOLUME,
        "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
    }
    assert volume["spec"]["hostPath"] == {"path": f"/var/lib/sbo-local-volumes/{VOLUME}"}
    assert "nodeAffinity" not in volume["spec"]
    assert volume["spec"]["claimRef"] == {
        "kind": "PersistentVolumeClaim",
        "namespace": "shop",
        "name": "data-db-0",
        "uid": UID,
    }
    assert list(tmp_path.iterdir()) == [], "bulk benchmarks on kwok make no directories"


def test_a_waiting_claim_gets_nothing_until_the_scheduler_names_its_node(tmp_path: Path) -> None:
    provisioner, api = provisioner_for("WaitForFirstConsumer", tmp_path)
    provisioner.on_claim(claim())
    assert api.created == []


def test_a_claim_on_the_real_node_gets_a_local_volume_on_a_real_directory_pinned_to_the_node(
    tmp_path: Path,
) -> None:
    provisioner, api = provisioner_for("WaitForFirstConsumer", tmp_path)
    provisioner.on_claim(claim("sbo-real-node"))
    [volume] = api.created
    directory = tmp_path / VOLUME
    assert volume["spec"]["local"] == {"path": str(directory)}
    assert "hostPath" not in volume["spec"]
    assert volume["spec"]["nodeAffinity"] == {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["sbo-real-node"]}
                    ]
                }
            ]
        }
    }
    assert (volume["spec"]["capacity"], volume["spec"]["persistentVolumeReclaimPolicy"]) == (
        {"storage": "1Gi"},
        "Delete",
    )
    assert directory.is_dir()
    assert directory.stat().st_mode & 0o7777 == 0o750, "others get nothing: the pod's fsGroup opens it"

    # A second event for the same claim (before the binder caught up) changes nothing.
    provisioner.on_claim(claim("sbo-real-node"))
    assert [p.name for p in tmp_path.iterdir()] == [VOLUME]


def test_without_a_volumes_folder_a_real_node_claim_is_left_pending(tmp_path: Path) -> None:
    provisioner, api = provisioner_for("WaitForFirstConsumer", None)
    provisioner.on_claim(claim("sbo-real-node"))
    assert api.created == []


def released(path: str, *, policy: str = "Delete", name: str = VOLUME) -> client.V1PersistentVolume:
    return client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=name, annotations={"pv.kubernetes.io/provisioned-by": PROVISIONER}),
        spec=client.V1PersistentVolumeSpec(
            local=client.V1LocalVolumeSource(path=path), persistent_volume_reclaim_policy=policy
        ),
        status=client.V1PersistentVolumeStatus(phase="Released"),
    )


def test_deleting_a_released_volume_deletes_its_directory(tmp_path: Path) -> None:
    provisioner, api = provisioner_for("WaitForFirstConsumer", tmp_path)
    directory = tmp_path / VOLUME
    (directory / "pgdata").mkdir(parents=True)
    (directory / "pgdata" / "PG_VERSION").write_text("16\n")

    provisioner.on_volume(released(str(directory), policy="Retain"))
    assert directory.exists(), "Retain keeps the data"
    assert api.deleted == []

    provisioner.on_volume(released(str(directory)))
    assert not directory.exists()
    assert api.deleted == [VOLUME]


def test_a_volume_deleted_by_hand_takes_its_directory_along(tmp_path: Path) -> None:
    provisioner, _ = provisioner_for("WaitForFirstConsumer", tmp_path)
    directory = tmp_path / VOLUME
    directory.mkdir()
    provisioner.on_volume_gone(released(str(directory), policy="Retain"))
    assert not directory.exists()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("{volumes}/../{name}", id="parent"),
        pytest.param("{volumes}/pvc-other", id="another-volumes-name"),
        pytest.param("/var/lib/{name}", id="elsewhere"),
        pytest.param("{volumes}", id="the-folder-itself"),
    ],
)
def test_only_a_volumes_own_directory_in_the_volumes_folder_is_ever_deleted(
    tmp_path: Path, path: str
) -> None:
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    provisioner, api = provisioner_for("WaitForFirstConsumer", volumes)
    volume = released(path.format(volumes=volumes, name=VOLUME))
    assert provisioner.directory_of(volume) is None
    provisioner.on_volume(volume)
    assert volumes.exists()
    assert api.deleted == [VOLUME], "the volume goes; a path that is not its own stays"
