"""The local control plane (hack/cluster.sh) as tests, benchmarks and the demo see it.

Invariant: a :class:`LocalCluster` stops only a control plane it started. `ensure()` reuses one
that is already up (a developer's `make cluster-up`) and then leaves it up; `fresh()` (the
benchmarks') starts one of its own, with its own state directory and port base, from an
empty etcd. The components are daemons of hack/cluster.sh, which records their pids and
stops exactly those (SIGTERM, then SIGKILL) on `down`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, Self

import yaml
from kubernetes import client, config
from kubernetes.aio import client as aio_client
from kubernetes.aio import config as aio_config
from kubernetes.aio.dynamic import DynamicClient

from devkit.paths import CRD, REPO, tools_bin_dir
from devkit.process import wait_until
from devkit.real_pods import NODE_NAME

CLUSTER_SCRIPT = REPO / "hack" / "cluster.sh"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "provisioner")
RESTRICTED = "pod-security.kubernetes.io/enforce"
STDERR_FD = 2
CRD_NAME = "scalablebackends.sbo.dev"


class KubectlError(subprocess.CalledProcessError):
    """kubectl failed; unlike CalledProcessError's, the message says what kubectl said."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


@dataclasses.dataclass
class LocalCluster:
    """A control plane of hack/cluster.sh: its state directory and ports, and a client for it."""

    local_dir: Path
    port_base: int | None = None  # None: $SBO_PORT_BASE, else the script's default
    started_here: bool = False
    script_env: dict[str, str] = dataclasses.field(default_factory=dict)  # e.g. SBO_HPA_SYNC_SECONDS
    _api: client.ApiClient | None = dataclasses.field(default=None, repr=False)

    # ---- starting and stopping -------------------------------------------------------------------

    @classmethod
    def ensure(cls, *, real_node: bool = False) -> LocalCluster:
        """The control plane of $SBO_LOCAL_DIR (default .local/): reused if up, else started here.

        With ``real_node``, one started here has the real node (``up --real-node``; a failure
        raises CalledProcessError after the script cleaned up). One already up is reused as it
        is: :meth:`has_real_node` tells.
        """
        cluster = cls(
            local_dir=Path(os.environ.get("SBO_LOCAL_DIR", REPO / ".local")),
            script_env={"SBO_REAL_NODE": "1"} if real_node else {},
        )
        if not (cluster.bin_dir / "kube-apiserver").exists():
            raise RuntimeError(
                f"kube-apiserver is not built in {cluster.bin_dir}: "
                "run `make tools` (make test does it for you)"
            )
        if not cluster.is_up():
            cluster.start()
        return cluster

    @classmethod
    def fresh(cls, local_dir: Path, port_base: int, *, env: dict[str, str] | None = None) -> LocalCluster:
        """A control plane of the caller's own, from an empty etcd; stop it with :meth:`stop`.

        ``env`` adds settings of hack/cluster.sh, such as SBO_HPA_SYNC_SECONDS.
        """
        cluster = cls(local_dir=local_dir.resolve(), port_base=port_base, script_env=dict(env or {}))
        cluster.start_fresh()
        return cluster

    def start_fresh(self) -> None:
        """Down (which wipes etcd, and whatever an interrupted run left) and up again."""
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.close_client()
        self._script("down")
        self.start()

    def start(self) -> None:
        """`hack/cluster.sh up` (component logs in <local_dir>/logs), then wait for /readyz."""
        self.started_here = True
        self._script("up")
        wait_until(self.is_up, 60, f"the control plane in {self.local_dir} to be ready")

    def stop(self) -> None:
        """`hack/cluster.sh down`: the components it started, by their recorded pids."""
        self.close_client()
        self._script("down")
        self.started_here = False

    def stop_if_started_here(self) -> None:
        self.close_client()
        if self.started_here:
            self.stop()

    def close_client(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_if_started_here()

    def has_real_node(self) -> bool:
        """True when the real node (kubelet, containerd, kube-proxy) is part of this control plane."""
        return self.kubectl("get", "node", NODE_NAME, "-o", "name", check=False).returncode == 0

    def is_up(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        probe = self.kubectl("get", "--raw", "/readyz", check=False, timeout=20)
        return probe.returncode == 0

    def _script(self, command: str) -> None:
        env = {**os.environ, **self.script_env, "SBO_LOCAL_DIR": str(self.local_dir)}
        if self.port_base is not None:
            env["SBO_PORT_BASE"] = str(self.port_base)
        # The script's progress goes to stderr (fd 2, whatever sys.stderr was replaced with):
        # a benchmark's stdout carries only its JSON line.
        subprocess.run([str(CLUSTER_SCRIPT), command], env=env, check=True, stdout=STDERR_FD, timeout=300)

    # ---- where it is ------------------------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        return tools_bin_dir()

    @property
    def kubeconfig(self) -> Path:
        return self.local_dir / "kubeconfig"

    @property
    def server(self) -> str:
        """The apiserver's URL, as the kubeconfig names it (127.0.0.1, or the real node's bridge)."""
        kubeconfig = yaml.safe_load(self.kubeconfig.read_text())
        return str(kubeconfig["clusters"][0]["cluster"]["server"])

    @property
    def ca_file(self) -> Path:
        """The CA that signed the apiserver's certificate."""
        return self.local_dir / "pki" / "ca.crt"

    @property
    def api(self) -> client.ApiClient:
        """A synchronous official client for this control plane (closed by stop/close_client)."""
        if self._api is None:
            self._api = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api

    @contextlib.asynccontextmanager
    async def dynamic_client(self, *, connections: int | None = None) -> AsyncIterator[DynamicClient]:
        """The official asyncio client (as the operator uses it), at most ``connections`` at once."""
        configuration = aio_client.Configuration()
        await aio_config.load_kube_config(
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        if connections is not None:
            configuration.connection_pool_maxsize = connections
        api = aio_client.ApiClient(configuration)
        try:
            yield await DynamicClient(api)
        finally:
            await api.close()

    def component_pids(self) -> dict[str, int]:
        pids: dict[str, int] = {}
        for name in COMPONENTS:
            try:
                pids[name] = int((self.local_dir / "pids" / f"{name}.pid").read_text().strip())
            except (OSError, ValueError):
                continue
        return pids

    # ---- kubectl --------------------------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the cluster's own kubectl; the result keeps stdout and stderr.

        With ``check``, a failure raises :class:`KubectlError`, whose message carries kubectl's stderr.
        """
        done = subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise KubectlError(done.returncode, done.args, done.stdout, done.stderr)
        return done

    def apply(
        self,
        manifest: dict[str, Any] | str,
        *,
        namespace: str | None = None,
        field_manager: str = "sbo-tests",
    ) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        args = ["apply", "--server-side", "--field-manager", field_manager, "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        self.kubectl(*args, input=text)

    def install_crd(self, *, field_manager: str = "sbo-tests") -> None:
        """The ScalableBackend CRD from crds/, Established."""
        self.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager", field_manager, "-f", str(CRD)
        )

        # Not `kubectl wait --for=condition=Established`: on a CRD created a moment ago, whose
        # status has no conditions yet, it fails at once ("accessor error") instead of waiting.
        def established() -> bool:
            jsonpath = 'jsonpath={.status.conditions[?(@.type=="Established")].status}'
            probe = self.kubectl("get", f"crd/{CRD_NAME}", "-o", jsonpath, check=False)
            return probe.stdout.strip() == "True"

        wait_until(established, 60, f"crd/{CRD_NAME} to be Established", interval=0.2)

    def create_restricted_namespaces(self, names: Iterable[str], *, field_manager: str = "sbo-tests") -> None:
        """Namespaces enforcing Pod Security "restricted"."""
        manifests = [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {RESTRICTED: "restricted"}},
            }
            for name in names
        ]
        self.apply(yaml.safe_dump_all(manifests), field_manager=field_manager)

    def enlarge_nodes(self, *, pods: int, cpu: int, memory: str) -> None:
        """Give the kwok nodes room for thousands of pods.

        kwok reports the capacity a node was created with and never rewrites
        it once the node is Ready, so a status patch sticks.
        """
        capacity = {"pods": str(pods), "cpu": str(cpu), "memory": memory}
        patch = json.dumps({"status": {"capacity": capacity, "allocatable": capacity}})
        for name in self.kubectl("get", "nodes", "-o", "name").stdout.split():
            self.kubectl("patch", name, "--subresource=status", "--type=merge", "-p", patch)


class _NotFoundYet(Exception):
    """A 404 while waiting: the object is not there yet, which is just another state."""


def eventually(
    check: Callable[[], Any], *, timeout: float = 60, interval: float = 0.5, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy; fail with the last state.

    A failed assertion or a 404 from the API counts as "not yet"; any other API error fails.
    """

    def attempt() -> Any:
        try:
            return check()
        except client.ApiException as error:
            if error.status != 404:
                raise
            raise _NotFoundYet(error) from error

    return wait_until(attempt, timeout, what, interval=interval, tolerate=(AssertionError, _NotFoundYet))
