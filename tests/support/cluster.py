"""The local control plane as tests see it.

`LocalCluster.ensure()` reuses a control plane that is already up (a developer's
`make cluster-up`) or starts one with hack/cluster.sh, and remembers whether
it started it, so the session can stop exactly what it started.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "hack" / "cluster.sh"


def tools_bin_dir() -> Path:
    out = subprocess.run(
        [str(REPO / "hack" / "install-tools.sh"), "bin-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


@dataclasses.dataclass
class LocalCluster:
    kubeconfig: Path
    bin_dir: Path
    started_here: bool
    api: client.ApiClient

    @classmethod
    def ensure(cls) -> LocalCluster:
        local_dir = Path(os.environ.get("SBO_LOCAL_DIR", REPO / ".local"))
        kubeconfig = local_dir / "kubeconfig"
        bin_dir = tools_bin_dir()
        if not (bin_dir / "kube-apiserver").exists():
            raise RuntimeError(
                f"kube-apiserver is not built in {bin_dir}: run `make tools` (make test does it for you)"
            )
        started_here = not _is_up(bin_dir, kubeconfig)
        if started_here:
            subprocess.run([str(CLUSTER_SCRIPT), "up"], check=True)
        api = config.new_client_from_config(config_file=str(kubeconfig))
        return cls(kubeconfig=kubeconfig, bin_dir=bin_dir, started_here=started_here, api=api)

    def stop_if_started_here(self) -> None:
        self.api.close()
        if self.started_here:
            subprocess.run([str(CLUSTER_SCRIPT), "down"], check=True)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the cluster's own kubectl; the result keeps stdout and stderr."""
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
        )

    def apply(self, manifest: dict[str, Any] | str, *, namespace: str | None = None) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        args = ["apply", "--server-side", "--field-manager", "sbo-tests", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        self.kubectl(*args, input=text)


def _is_up(bin_dir: Path, kubeconfig: Path) -> bool:
    if not kubeconfig.exists():
        return False
    probe = subprocess.run(
        [str(bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return probe.returncode == 0


def eventually(
    check: Callable[[], Any], *, timeout: float = 60, interval: float = 0.5, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy; fail with the last state."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as error:
            last = error
        except client.ApiException as error:
            if error.status != 404:  # "not there yet" is just another state to wait through
                raise
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")
