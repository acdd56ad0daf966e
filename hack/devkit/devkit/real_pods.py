"""Workloads on the real node (hack/real-node.sh) as tests see them: steering them onto it,
reaching their pods and Services from the host, finding a pod's processes on the host, and what
the node's daemons cost in memory.

Invariant: nothing here changes the node or its workloads' specs. Workloads are steered by their
namespace only (the PodNodeSelector and PodTolerationRestriction admission plugins, which
hack/cluster.sh enables with the real node), so the operator's pods land on the node exactly as
the operator declares them. Every connection from the host leaves from the bridge address, so its
answers come back over the bridge (pods have no route to any other host address).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from devkit.measure import MIB, status_kib

NODE_NAME = "sbo-real-node"
NODE_LABEL = "sbo.dev/real-node"
BRIDGE_IP = "198.18.0.1"
NODE_SELECTOR_ANNOTATION = "scheduler.alpha.kubernetes.io/node-selector"
DEFAULT_TOLERATIONS_ANNOTATION = "scheduler.alpha.kubernetes.io/defaultTolerations"
# The node's daemons, by their pidfile in <local dir>/pids (hack/cluster.sh's names).
NODE_DAEMONS = ("kubelet", "containerd", "kube-proxy", "kube-router")
SHIM = "containerd-shim-runc-v2"


def steering_annotations() -> dict[str, str]:
    """A namespace's annotations that put every pod created in it onto the real node (tolerating
    its taint), whoever creates the pod: the admission plugins merge them into the pod spec."""
    toleration = {"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}
    return {
        NODE_SELECTOR_ANNOTATION: f"{NODE_LABEL}=true",
        DEFAULT_TOLERATIONS_ANNOTATION: json.dumps([toleration], separators=(",", ":")),
    }


def real_node_namespace(name: str) -> dict[str, Any]:
    """A Namespace enforcing Pod Security "restricted" whose pods all run on the real node."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
            "annotations": steering_annotations(),
        },
    }


def node_http_client(*, timeout: float = 10, **options: Any) -> httpx.Client:
    """An HTTP client for pod IPs and ClusterIPs (through kube-proxy's rules) from the host."""
    transport = httpx.HTTPTransport(local_address=BRIDGE_IP, retries=0)
    return httpx.Client(transport=transport, timeout=timeout, trust_env=False, **options)


def _pid(local_dir: Path, name: str) -> int | None:
    try:
        return int((local_dir / "pids" / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _shim_pids(local_dir: Path) -> list[int]:
    """The runc shims of this node's containerd (one per pod sandbox), by the socket they serve."""
    socket_root = "/run/sbo-real-node/"
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv[0].endswith(SHIM) and any(socket_root in arg for arg in argv):
            pids.append(int(proc.name))
    return pids


def node_memory_mib(local_dir: Path) -> dict[str, float]:
    """Resident memory (MiB) of the node's daemons, and of its shims (summed, with their count)."""
    memory: dict[str, float] = {}
    for name in NODE_DAEMONS:
        pid = _pid(local_dir, name)
        kib = status_kib(pid, "VmRSS") if pid is not None else None
        if kib is not None:
            memory[name] = round(kib * 1024 / MIB, 1)
    shims = [kib for kib in (status_kib(pid, "VmRSS") for pid in _shim_pids(local_dir)) if kib is not None]
    memory["shims"] = round(sum(shims) * 1024 / MIB, 1)
    memory["shim_count"] = len(shims)
    return memory


def postgres_host_processes(pod_uid: str) -> dict[int, int]:
    """Host pid -> parent pid of every ``postgres`` process in the pod's cgroup."""
    markers = (f"pod{pod_uid}", f"pod{pod_uid.replace('-', '_')}")
    candidates: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not any(marker in (entry / "cgroup").read_text() for marker in markers):
                continue
            fields = dict(
                line.split(":\t", 1) for line in (entry / "status").read_text().splitlines() if ":\t" in line
            )
        except OSError:  # the process exited meanwhile
            continue
        if fields.get("Name", "").strip() == "postgres":
            candidates[int(entry.name)] = int(fields["PPid"])
    return candidates
