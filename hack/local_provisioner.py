"""A tiny dynamic provisioner for the local control plane.

kwok fakes kubelets, so there is no CSI driver to give PersistentVolumeClaims
a volume. This process plays the external provisioner for one StorageClass:

* a pending claim of that class gets a PersistentVolume pre-bound to it, and
  kube-controller-manager's binder completes the binding;
* a released volume is deleted when its reclaim policy says Delete;
* a claim that asks for more storage gets its volume and status grown, which
  is what a CSI resizer plus kubelet would do.

Where a claim's pod runs decides what its volume is. With the real node the
class binds WaitForFirstConsumer, so the scheduler names the node first (the
claim's ``volume.kubernetes.io/selected-node``):

* on a kwok node (or with Immediate binding, where no node is known) it is a
  hostPath volume that nothing creates: kwok's pods never mount it, so bulk
  benchmarks make no directories;
* on the real node (label ``sbo.dev/real-node=true``) it is a ``local`` volume
  on a real directory under ``--volumes-dir``, pinned to that node by its
  nodeAffinity. The directory is root's with mode 0750: kubelet gives it the
  pod's fsGroup when it mounts it, which is how restricted (non-root) pods may
  write. Deleting the volume deletes its directory.

It watches (no polling), so a quiet cluster costs no API requests.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger("local-provisioner")

PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
REAL_NODE_LABEL = "sbo.dev/real-node"
HOSTNAME_LABEL = "kubernetes.io/hostname"
# kwok's volumes: a path that is never created, since no real kubelet mounts them.
FAKE_VOLUMES_DIR = "/var/lib/sbo-local-volumes"
# Root's, no access for others: only the fsGroup that kubelet applies at mount lets a pod in.
VOLUME_DIR_MODE = 0o750


def quantity_bytes(value: str) -> int:
    """Parse a Kubernetes quantity (the subset volumes use) into bytes."""
    from kubernetes.utils import parse_quantity

    return int(parse_quantity(value))


def volume_manifest(
    *,
    name: str,
    provisioner: str,
    claim: client.V1PersistentVolumeClaim,
    storage_class: client.V1StorageClass,
    requested: str,
    local: tuple[str, Path] | None,
) -> dict[str, Any]:
    """The PersistentVolume for a claim, pre-bound to it.

    ``local``: (the real node's hostname, the volume's directory) for a ``local`` volume on the
    real node; None for a hostPath volume that nothing creates (kwok's pods never mount it).
    """
    spec: dict[str, Any] = {
        "capacity": {"storage": requested},
        "accessModes": list(claim.spec.access_modes),
        "persistentVolumeReclaimPolicy": storage_class.reclaim_policy or "Delete",
        "storageClassName": storage_class.metadata.name,
        "volumeMode": claim.spec.volume_mode or "Filesystem",
        "claimRef": {
            "kind": "PersistentVolumeClaim",
            "namespace": claim.metadata.namespace,
            "name": claim.metadata.name,
            "uid": claim.metadata.uid,
        },
    }
    if local is None:
        spec["hostPath"] = {"path": f"{FAKE_VOLUMES_DIR}/{name}"}
    else:
        hostname, directory = local
        spec["local"] = {"path": str(directory)}
        spec["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]}]}
                ]
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: provisioner}},
        "spec": spec,
    }


class Provisioner:
    def __init__(
        self,
        core: client.CoreV1Api,
        storage: client.StorageV1Api,
        name: str,
        volumes_dir: Path | None = None,
    ) -> None:
        self.core = core
        self.storage = storage
        self.name = name
        # Where the real node's volumes live; None without a real node.
        self.volumes_dir = volumes_dir

    def _class_of(self, pvc: client.V1PersistentVolumeClaim) -> client.V1StorageClass | None:
        class_name = pvc.spec.storage_class_name
        if not class_name:
            return None
        try:
            storage_class = self.storage.read_storage_class(class_name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return storage_class if storage_class.provisioner == self.name else None

    def on_claim(self, pvc: client.V1PersistentVolumeClaim) -> None:
        if pvc.metadata.deletion_timestamp:
            return
        storage_class = self._class_of(pvc)
        if storage_class is None:
            return
        requested = pvc.spec.resources.requests["storage"]
        if pvc.status.phase == "Pending" and not pvc.spec.volume_name:
            node_name = (pvc.metadata.annotations or {}).get(SELECTED_NODE)
            if storage_class.volume_binding_mode == "WaitForFirstConsumer" and not node_name:
                return  # the scheduler names the node once a pod needs the claim
            self._provision(pvc, storage_class, requested, self._real_node_hostname(node_name))
        elif pvc.status.phase == "Bound" and pvc.spec.volume_name:
            self._maybe_expand(pvc, requested)

    def _real_node_hostname(self, node_name: str | None) -> str | None:
        """The hostname label of the selected node if it is the real node; else None."""
        if node_name is None:
            return None
        try:
            node = self.core.read_node(node_name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        labels = node.metadata.labels or {}
        if labels.get(REAL_NODE_LABEL) != "true":
            return None
        hostname: str = labels.get(HOSTNAME_LABEL, node_name)
        return hostname

    def _provision(
        self,
        pvc: client.V1PersistentVolumeClaim,
        storage_class: Any,
        requested: str,
        real_node: str | None,
    ) -> None:
        name = f"pvc-{pvc.metadata.uid}"
        local = None
        if real_node is not None:
            if self.volumes_dir is None:
                log.error(
                    "%s/%s is for the real node, but no --volumes-dir was given",
                    pvc.metadata.namespace,
                    pvc.metadata.name,
                )
                return
            directory = self.volumes_dir / name
            # Not parents=True: the real node's state folder goes at `down`, and must not come back.
            directory.mkdir(mode=VOLUME_DIR_MODE, exist_ok=True)
            directory.chmod(VOLUME_DIR_MODE)  # whatever the umask
            local = (real_node, directory)
        volume = volume_manifest(
            name=name,
            provisioner=self.name,
            claim=pvc,
            storage_class=storage_class,
            requested=requested,
            local=local,
        )
        try:
            self.core.create_persistent_volume(volume)
            where = f"directory {local[1]} on {local[0]}" if local else "no directory (kwok)"
            log.info("provisioned %s for %s/%s: %s", name, pvc.metadata.namespace, pvc.metadata.name, where)
        except ApiException as error:
            if error.status != 409:  # already provisioned on an earlier event
                raise

    def _maybe_expand(self, pvc: client.V1PersistentVolumeClaim, requested: str) -> None:
        current = (pvc.status.capacity or {}).get("storage")
        if current is None or quantity_bytes(requested) <= quantity_bytes(current):
            return
        self.core.patch_persistent_volume(
            pvc.spec.volume_name, {"spec": {"capacity": {"storage": requested}}}
        )
        self.core.patch_namespaced_persistent_volume_claim_status(
            pvc.metadata.name, pvc.metadata.namespace, {"status": {"capacity": {"storage": requested}}}
        )
        log.info("expanded %s/%s to %s", pvc.metadata.namespace, pvc.metadata.name, requested)

    def on_volume(self, pv: client.V1PersistentVolume) -> None:
        if (pv.metadata.annotations or {}).get(PROVISIONED_BY) != self.name or pv.metadata.deletion_timestamp:
            return  # not ours, or already going (its directory too: on_volume_gone)
        if pv.status.phase == "Released" and pv.spec.persistent_volume_reclaim_policy == "Delete":
            # The directory first: were the volume deleted first, a failure here would leave it behind.
            self._remove_directory(pv)
            try:
                self.core.delete_persistent_volume(pv.metadata.name)
                log.info("deleted released volume %s", pv.metadata.name)
            except ApiException as error:
                if error.status != 404:
                    raise

    def on_volume_gone(self, pv: client.V1PersistentVolume) -> None:
        """A volume deleted by someone else: its directory goes too, whatever its reclaim policy."""
        if (pv.metadata.annotations or {}).get(PROVISIONED_BY) == self.name:
            self._remove_directory(pv)

    def _remove_directory(self, pv: client.V1PersistentVolume) -> None:
        directory = self.directory_of(pv)
        if directory is not None and directory.exists():
            shutil.rmtree(directory)
            log.info("deleted the directory %s of volume %s", directory, pv.metadata.name)

    def directory_of(self, pv: client.V1PersistentVolume) -> Path | None:
        """The real directory of one of our local volumes; never a path outside --volumes-dir."""
        if pv.spec.local is None or self.volumes_dir is None:
            return None
        directory = Path(pv.spec.local.path)
        if directory.parent != self.volumes_dir or directory.name != pv.metadata.name:
            return None
        return directory


def watch_forever(
    list_call: Any, handle: Callable[[Any], None], what: str, gone: Callable[[Any], None] | None = None
) -> None:
    """Watch a collection, re-listing after any error so no event is lost."""
    while True:
        try:
            items = list_call()
            for item in items.items:
                handle(item)
            stream = watch.Watch().stream(
                list_call, resource_version=items.metadata.resource_version, timeout_seconds=300
            )
            for event in stream:
                if event["type"] in ("ADDED", "MODIFIED"):
                    handle(event["object"])
                elif event["type"] == "DELETED" and gone is not None:
                    gone(event["object"])
        except Exception:
            log.exception("watching %s failed; re-listing in 1s", what)
            time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--provisioner", default="sbo.dev/local-provisioner")
    parser.add_argument(
        "--volumes-dir",
        type=Path,
        help="an existing folder for the real node's volumes (one directory each); only with a real node",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    config.load_kube_config(config_file=args.kubeconfig)
    core = client.CoreV1Api()
    volumes_dir = args.volumes_dir.resolve() if args.volumes_dir else None
    provisioner = Provisioner(core, client.StorageV1Api(), args.provisioner, volumes_dir)
    volumes = threading.Thread(
        target=watch_forever,
        args=(core.list_persistent_volume, provisioner.on_volume, "volumes", provisioner.on_volume_gone),
        daemon=True,
    )
    volumes.start()
    watch_forever(core.list_persistent_volume_claim_for_all_namespaces, provisioner.on_claim, "claims")


if __name__ == "__main__":
    main()
