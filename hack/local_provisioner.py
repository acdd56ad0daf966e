"""A tiny dynamic provisioner for the local control plane.

kwok fakes kubelets, so there is no CSI driver to give PersistentVolumeClaims
a volume. This process plays the external provisioner for one StorageClass:

* a pending claim of that class gets a PersistentVolume pre-bound to it, and
  kube-controller-manager's binder completes the binding;
* a released volume is deleted when its reclaim policy says Delete;
* a claim that asks for more storage gets its volume and status grown, which
  is what a CSI resizer plus kubelet would do.

It watches (no polling), so a quiet cluster costs no API requests.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger("local-provisioner")


def quantity_bytes(value: str) -> int:
    """Parse a Kubernetes quantity (the subset volumes use) into bytes."""
    from kubernetes.utils import parse_quantity

    return int(parse_quantity(value))


class Provisioner:
    def __init__(self, core: client.CoreV1Api, storage: client.StorageV1Api, name: str) -> None:
        self.core = core
        self.storage = storage
        self.name = name

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
            self._provision(pvc, storage_class, requested)
        elif pvc.status.phase == "Bound" and pvc.spec.volume_name:
            self._maybe_expand(pvc, requested)

    def _provision(self, pvc: client.V1PersistentVolumeClaim, storage_class: Any, requested: str) -> None:
        name = f"pvc-{pvc.metadata.uid}"
        volume = client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(
                name=name, annotations={"pv.kubernetes.io/provisioned-by": self.name}
            ),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": requested},
                access_modes=pvc.spec.access_modes,
                persistent_volume_reclaim_policy=storage_class.reclaim_policy or "Delete",
                storage_class_name=storage_class.metadata.name,
                volume_mode=pvc.spec.volume_mode or "Filesystem",
                host_path=client.V1HostPathVolumeSource(path=f"/var/lib/sbo-local-volumes/{name}"),
                claim_ref=client.V1ObjectReference(
                    kind="PersistentVolumeClaim",
                    namespace=pvc.metadata.namespace,
                    name=pvc.metadata.name,
                    uid=pvc.metadata.uid,
                ),
            ),
        )
        try:
            self.core.create_persistent_volume(volume)
            log.info("provisioned %s for %s/%s", name, pvc.metadata.namespace, pvc.metadata.name)
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
        provisioned_by = (pv.metadata.annotations or {}).get("pv.kubernetes.io/provisioned-by")
        if provisioned_by != self.name:
            return
        if pv.status.phase == "Released" and pv.spec.persistent_volume_reclaim_policy == "Delete":
            try:
                self.core.delete_persistent_volume(pv.metadata.name)
                log.info("deleted released volume %s", pv.metadata.name)
            except ApiException as error:
                if error.status != 404:
                    raise


def watch_forever(list_call: Any, handle: Any, what: str) -> None:
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
        except Exception:
            log.exception("watching %s failed; re-listing in 1s", what)
            time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--provisioner", default="sbo.dev/local-provisioner")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    config.load_kube_config(config_file=args.kubeconfig)
    core = client.CoreV1Api()
    provisioner = Provisioner(core, client.StorageV1Api(), args.provisioner)
    volumes = threading.Thread(
        target=watch_forever,
        args=(core.list_persistent_volume, provisioner.on_volume, "volumes"),
        daemon=True,
    )
    volumes.start()
    watch_forever(core.list_persistent_volume_claim_for_all_namespaces, provisioner.on_claim, "claims")


if __name__ == "__main__":
    main()
