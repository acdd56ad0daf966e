"""How kstatus-based tools (Flux, kpt, cli-utils waits) read a ScalableBackend, by kstatus's own code.

No operator runs: the statuses it writes are patched onto the status subresource, taken from the
Argo CD health check's testdata (captured from a real operator). The verdicts come from
sigs.k8s.io/cli-utils' kstatus, built from tests/integration/kstatus (pinned by its go.sum) into
the tool cache on first use.

The point of the first case: a backend the operator has not looked at must not read as Current.
The CRD defaults its status to {observedGeneration: -1}, as Flux's own CRDs do, so kstatus sees an
unobserved generation and says InProgress.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.backends import kubectl_create, valid_manifest
from devkit.cluster import LocalCluster
from devkit.paths import REPO

pytestmark = pytest.mark.integration

KSTATUS_SOURCE = Path(__file__).resolve().parent / "kstatus"
ARGOCD_TESTDATA = REPO / "deploy" / "argocd" / "sbo.dev" / "ScalableBackend" / "testdata"


def tool_cache() -> Path:
    """The directory hack/install-tools.sh caches its builds under."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scalable-backend-operator"


@pytest.fixture(scope="session")
def kstatus() -> Path:
    """The kstatus command, built once per version of its source."""
    source = b"".join((KSTATUS_SOURCE / name).read_bytes() for name in ("go.mod", "go.sum", "main.go"))
    binary = tool_cache() / f"kstatus-{hashlib.sha256(source).hexdigest()[:16]}" / "kstatus"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(
            "go is not on PATH: the kstatus tests build sigs.k8s.io/cli-utils' kstatus with it"
        )
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"kstatus.{os.getpid()}.partial")
    subprocess.run(
        [go, "build", "-mod=readonly", "-trimpath", "-buildvcs=false", "-o", str(partial), "."],
        cwd=KSTATUS_SOURCE,
        env={**os.environ, "CGO_ENABLED": "0"},
        check=True,
    )
    partial.rename(binary)  # atomic: a concurrent session sees either no binary or a whole one
    return binary


def kstatus_of(kstatus: Path, backend: dict[str, Any]) -> dict[str, str]:
    result = subprocess.run(
        [str(kstatus)], input=json.dumps(backend), capture_output=True, text=True, check=True
    )
    verdict: dict[str, str] = json.loads(result.stdout)
    return verdict


@pytest.fixture
def namespace(unserved_namespace: str) -> str:
    """No operator serves these backends (the e2e tier's may still run): every status is the test's own."""
    return unserved_namespace


def stored(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    backend: dict[str, Any] = json.loads(
        cluster.kubectl("get", "-n", namespace, "sb", "shop", "-o", "json").stdout
    )
    return backend


def write_status(cluster: LocalCluster, namespace: str, testdata: str) -> None:
    """Patch the status subresource as the operator would, with a status it wrote."""
    status = yaml.safe_load((ARGOCD_TESTDATA / testdata).read_text())["status"]
    cluster.kubectl(
        "patch", "-n", namespace, "sb", "shop", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def test_a_new_backend_reads_in_progress_until_the_operator_reports(
    cluster: LocalCluster, crd: None, namespace: str, kstatus: Path
) -> None:
    kubectl_create(cluster, valid_manifest(namespace)).check_returncode()
    backend = stored(cluster, namespace)
    assert backend["status"] == {"observedGeneration": -1}
    verdict = kstatus_of(kstatus, backend)
    assert verdict["status"] == "InProgress", verdict
    assert "observed generation is -1" in verdict["message"], verdict
    # Without the defaulted status kstatus would call it Current: the default is what prevents that.
    assert kstatus_of(kstatus, {k: v for k, v in backend.items() if k != "status"})["status"] == "Current"


@pytest.mark.parametrize(
    ("testdata", "expected"),
    [
        pytest.param("first-status.yaml", "InProgress", id="reconciling"),
        pytest.param("ready.yaml", "Current", id="ready"),
        pytest.param("stalled.yaml", "Failed", id="stalled"),
    ],
)
def test_the_statuses_the_operator_writes_read_as_kstatus_expects(
    cluster: LocalCluster, crd: None, namespace: str, kstatus: Path, testdata: str, expected: str
) -> None:
    kubectl_create(cluster, valid_manifest(namespace)).check_returncode()
    write_status(cluster, namespace, testdata)
    backend = stored(cluster, namespace)
    assert backend["status"]["observedGeneration"] == backend["metadata"]["generation"] == 1
    verdict = kstatus_of(kstatus, backend)
    assert verdict["status"] == expected, verdict


def test_a_spec_change_reads_in_progress_until_observed(
    cluster: LocalCluster, crd: None, namespace: str, kstatus: Path
) -> None:
    kubectl_create(cluster, valid_manifest(namespace)).check_returncode()
    write_status(cluster, namespace, "ready.yaml")
    cluster.kubectl(
        "patch",
        "-n",
        namespace,
        "sb",
        "shop",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"api": {"replicas": 3}}}),
    )
    backend = stored(cluster, namespace)
    assert backend["metadata"]["generation"] == 2
    assert kstatus_of(kstatus, backend)["status"] == "InProgress"
