"""What the benchmarks share: a control plane of their own, an API client, metrics and process stats.

A benchmark starts its own control plane (hack/cluster.sh with another port
base and state directory), so that tests running on the developer's cluster
neither disturb the figures nor get disturbed. Everything here talks to
127.0.0.1 only. Progress goes to stderr; stdout is kept for the JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.cluster import tools_bin_dir

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO / "hack" / "cluster.sh"
CRD = REPO / "crds" / "sbo.dev_scalablebackends.yaml"
CLUSTER_COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "provisioner",
)
RESTRICTED = "pod-security.kubernetes.io/enforce"
MIB = 1024 * 1024

_started = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr, stamped with the seconds since the benchmark started."""
    print(f"[{time.monotonic() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


# ---- the control plane -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BenchCluster:
    """A control plane of the benchmark's own: hack/cluster.sh with its own ports and state."""

    local_dir: Path
    port_base: int

    @property
    def kubeconfig(self) -> Path:
        return self.local_dir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.local_dir / "pki"

    @property
    def server(self) -> str:
        config: dict[str, Any] = yaml.safe_load(self.kubeconfig.read_text())
        server: str = config["clusters"][0]["cluster"]["server"]
        return server

    def _script(self, command: str) -> None:
        env = {**os.environ, "SBO_PORT_BASE": str(self.port_base), "SBO_LOCAL_DIR": str(self.local_dir)}
        # The script's progress goes to stderr; stdout carries only the JSON line.
        subprocess.run([str(CLUSTER_SCRIPT), command], env=env, check=True, stdout=sys.stderr, timeout=300)

    def fresh(self) -> None:
        """Down (which wipes etcd) and up again: every phase starts from an empty cluster."""
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self._script("down")
        self._script("up")

    def down(self) -> None:
        self._script("down")

    def kubectl(self, *args: str, input: str | None = None) -> str:
        result = subprocess.run(
            [str(tools_bin_dir() / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def component_pids(self) -> dict[str, int]:
        pids: dict[str, int] = {}
        for name in CLUSTER_COMPONENTS:
            try:
                pids[name] = int((self.local_dir / "pids" / f"{name}.pid").read_text().strip())
            except (OSError, ValueError):
                continue
        return pids

    def client(self, *, connections: int | None, read_timeout: float = 60) -> aiohttp.ClientSession:
        """An aiohttp session with the admin certificate; `connections` bounds it like a pool.

        aiohttp is the HTTP stack the operator itself uses (through kubernetes.aio),
        and it costs a tenth of httpx's CPU per request, which matters on 2 cores.
        """
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return aiohttp.ClientSession(
            base_url=self.server,
            connector=aiohttp.TCPConnector(limit=connections or 0, ssl=context),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read_timeout),
            trust_env=False,  # loopback only: never through a proxy from the environment
        )

    def enlarge_nodes(self, *, pods: int, cpu: int, memory: str) -> None:
        """Give the kwok nodes room for thousands of pods.

        kwok reports the capacity a node was created with and never rewrites
        it once the node is Ready, so a status patch sticks.
        """
        capacity = {"pods": str(pods), "cpu": str(cpu), "memory": memory}
        patch = json.dumps({"status": {"capacity": capacity, "allocatable": capacity}})
        for name in self.kubectl("get", "nodes", "-o", "name").split():
            self.kubectl("patch", name, "--subresource=status", "--type=merge", "-p", patch)

    def install_crd(self) -> None:
        self.kubectl("apply", "--server-side", "--field-manager", "sbo-bench", "-f", str(CRD))
        self.kubectl("wait", "--for=condition=Established", "crd/scalablebackends.sbo.dev", "--timeout=60s")

    def create_restricted_namespaces(self, names: Iterable[str]) -> None:
        manifests = [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {RESTRICTED: "restricted"}},
            }
            for name in names
        ]
        text = yaml.safe_dump_all(manifests)
        self.kubectl("apply", "--server-side", "--field-manager", "sbo-bench", "-f", "-", input=text)


# ---- Prometheus text ---------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)", re.M)
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]


def samples(text: str, name: str) -> dict[Labels, float]:
    """The samples of one metric, keyed by their sorted labels."""
    found: dict[Labels, float] = {}
    for match in _SAMPLE.finditer(text):
        if match.group("name") != name:
            continue
        labels = tuple(sorted(_LABEL.findall(match.group("labels") or "")))
        found[labels] = float(match.group("value"))
    return found


def delta(before: Mapping[Labels, float], after: Mapping[Labels, float]) -> dict[Labels, float]:
    """after - before per series; a series that appeared counts from 0."""
    return {
        key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key, 0.0)
    }


def total_by(series: Mapping[Labels, float], key: Callable[[dict[str, str]], str | None]) -> dict[str, int]:
    """Sum series grouped by `key(labels)`; series for which key returns None are left out."""
    totals: Counter[str] = Counter()
    for labels, value in series.items():
        group = key(dict(labels))
        if group is not None:
            totals[group] += round(value)
    return dict(sorted(totals.items()))


async def apiserver_requests(client: aiohttp.ClientSession) -> dict[Labels, float]:
    """`apiserver_request_total` from kube-apiserver's /metrics (cluster-wide: every client)."""
    async with client.get("/metrics") as response:
        response.raise_for_status()
        return samples(await response.text(), "apiserver_request_total")


WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})


def resource_of(labels: Mapping[str, str]) -> str:
    resource = labels.get("resource") or labels.get("subresource") or "(non-resource)"
    if labels.get("resource") and labels.get("subresource"):
        resource += "/" + labels["subresource"]
    return resource


# ---- processes ----------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (children not included), or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, see proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice, already counted in user]
    idle = fields[3] + fields[4]
    busy = sum(fields[:8]) - idle
    ticks = os.sysconf("SC_CLK_TCK")
    return busy / ticks, idle / ticks


def status_kib(pid: int, field: str) -> int | None:
    """A `kB` field of /proc/<pid>/status, such as VmHWM (peak RSS) or VmRSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def revision(path: str) -> str:
    """The commit measured, and whether `path` had uncommitted changes at the time."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (f" + uncommitted changes in {path}" if git("status", "--porcelain", "--", path) else "")


def machine() -> dict[str, Any]:
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {"cpus": os.cpu_count(), "memory_gib": round(mem_kib / MIB)}


def record_in_section(path: Path, *, section: str, begin: str, end: str, entry: str) -> None:
    """Put `entry` (which starts with `begin` and ends with `end`) into docs/benchmarks.md.

    It replaces the previous entry between the same markers, else goes at the end of `section`,
    else in a new `section` at the end of the file. The prose around it stays.
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + entry + rest.split(end, 1)[1]
    elif section in text:
        start = text.index(section)
        next_section = text.find("\n## ", start + len(section))
        cut = len(text) if next_section < 0 else next_section
        text = text[:cut].rstrip("\n") + "\n\n" + entry + "\n" + text[cut:]
    else:
        text = text.rstrip("\n") + f"\n\n{section}\n\n{entry}\n"
    path.write_text(text)
