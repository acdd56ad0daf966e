"""The parts of the host a real node touches, as one comparable snapshot.

`snapshot()` reads sysctls, iptables/ip6tables rules (without counters), the nft
ruleset, ipsets, network links and namespaces, mounts, cgroups, kubelet's hard-coded host
paths and the node's processes. Two snapshots compare equal exactly when a
`hack/cluster.sh up --real-node` / `down` cycle left no trace in any of them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

PROC_SYS = Path("/proc/sys")
CGROUP_ROOT = Path("/sys/fs/cgroup")

# Whole sysctl folders kubelet, the CNI plugins or kube-proxy could write to; the
# counters among them (conntrack's count, for one) are left out below.
SYSCTL_FOLDERS = ("vm", "kernel/keys", "net/bridge", "net/ipv4/conf/all", "net/ipv4/conf/default")
SYSCTL_FOLDERS_V6 = ("net/ipv6/conf/all", "net/ipv6/conf/default")
SYSCTLS = (
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/panic_on_warn",
    "net/ipv4/ip_forward",
    "net/ipv4/route_localnet",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "net/netfilter/nf_conntrack_tcp_be_liberal",
)
# Read-only statistics that change on their own.
VOLATILE_SYSCTLS = re.compile(r"^vm/(stat_|nr_|drop_caches|compact_)|/stable_secret$")
HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/run/netns",
    "/run/containerd",
    "/var/lib/containerd",
    "/opt/containerd",
    "/etc/cni",
    "/opt/cni",
    "/var/lib/sbo-real-node",
    "/run/sbo-real-node",
    # buildah's defaults, which `make images` must not use: its storage lives in the project's cache.
    "/var/lib/containers",
    "/run/containers",
)
NODE_PROCESSES = re.compile(
    r"(^|/)(containerd|containerd-shim-runc-v2|kubelet|kube-proxy|coredns|pause|probe)$"
)
COUNTERS = re.compile(r"\[\d+:\d+\]")


def run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def read_sysctls() -> dict[str, str]:
    files = [PROC_SYS / name for name in SYSCTLS]
    for folder in (*SYSCTL_FOLDERS, *SYSCTL_FOLDERS_V6):
        files += sorted(path for path in (PROC_SYS / folder).iterdir() if path.is_file())
    values = {}
    for path in files:
        name = str(path.relative_to(PROC_SYS))
        if VOLATILE_SYSCTLS.search(name):
            continue
        try:
            values[name.replace("/", ".")] = " ".join(path.read_text().split())
        except OSError:
            continue  # write-only (vm.compact_memory) or absent
    return values


def iptables_rules(save_command: str) -> list[str]:
    """Rules and chains without the comment lines and packet counters."""
    return [
        COUNTERS.sub("", line).rstrip() for line in run(save_command).splitlines() if not line.startswith("#")
    ]


def link_names() -> list[str]:
    return sorted(line.split(":")[1].strip().split("@")[0] for line in run("ip", "-o", "link").splitlines())


def mount_points() -> list[str]:
    return sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())


def cgroup_dirs() -> list[str]:
    """The top cgroups of every hierarchy, and everything below kubelet's `kubepods`.

    Deeper cgroups of other owners (the VM's own agent makes one per command) come and go."""
    found = []
    for hierarchy in sorted(CGROUP_ROOT.iterdir()):
        if hierarchy.is_dir():
            found += [str(path) for path in sorted(hierarchy.iterdir()) if path.is_dir()]
            found += [str(path) for path in sorted(hierarchy.glob("kubepods*/**/")) if path.is_dir()]
    return found


def node_processes() -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        if NODE_PROCESSES.search(argv0):
            found.append(f"{proc.name} {argv0}")
    return sorted(found)


def snapshot() -> dict[str, Any]:
    return {
        "sysctls": read_sysctls(),
        "iptables": iptables_rules("iptables-save"),
        "ip6tables": iptables_rules("ip6tables-save"),
        "nft": run("nft", "list", "ruleset").splitlines(),
        "ipsets": sorted(run("ipset", "list", "-n").splitlines()),
        "links": link_names(),
        "ip_rules": run("ip", "rule").splitlines(),  # the real node's rule for un-NATed Service traffic
        "netns": sorted(run("ip", "netns", "list").splitlines()),
        "mounts": mount_points(),
        "cgroups": cgroup_dirs(),
        "paths": [path for path in HOST_PATHS if Path(path).exists() or Path(path).is_symlink()],
        "processes": node_processes(),
    }


def differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed, per part: the sysctls that differ, and for lists what came and went."""
    changed: dict[str, Any] = {}
    for part, old in before.items():
        new = after[part]
        if old == new:
            continue
        if isinstance(old, dict):
            changed[part] = {
                key: (old.get(key), new.get(key))
                for key in old.keys() | new.keys()
                if old.get(key) != new.get(key)
            }
        else:
            changed[part] = {
                "added": [x for x in new if x not in old],
                "removed": [x for x in old if x not in new],
            }
    return changed
