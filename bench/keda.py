"""KEDA as a real peer of the autoscaling benchmark, run as local processes on the local control plane.

``Keda.start(...)`` installs what KEDA's own manifests would (its CRDs, its namespace, the external
metrics APIService) and runs its operator and its metrics API server ("adapter") as processes against
the admin kubeconfig, as the bench runs this project's operator; ``stop()`` ends both. Invariant: what
it installs comes from KEDA's module at the pinned version (``hack/install-tools.sh keda``: binaries
built from it, CRDs copied from its ``config/crd/bases``); nothing of KEDA's is committed here.

The aggregation layer needs the apiserver's front-proxy flags (hack/cluster.sh sets them). The
APIService's Service is an ExternalName for ``localhost``, so kube-apiserver, which has no kube-proxy
here, dials the adapter's loopback port directly; it verifies the adapter's certificate for
``keda-metrics-apiserver.keda.svc`` against the cluster CA, which signs it. The same certificate is
the mTLS pair between the adapter and the operator's gRPC metrics service, as in KEDA's deployment.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client

from devkit.cluster import LocalCluster
from devkit.paths import REPO

NAMESPACE = "keda"
METRICS_SERVICE = "keda-metrics-apiserver"
APISERVICE = "v1beta1.external.metrics.k8s.io"


class KedaError(RuntimeError):
    """KEDA could not be built, started or made available; the benchmark must fail, not go on."""


def keda_dir() -> Path:
    out = subprocess.run(
        [str(REPO / "hack" / "install-tools.sh"), "keda-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def install_keda() -> Path:
    """Build KEDA at the pinned version unless it is cached (cold: many minutes); return its directory."""
    subprocess.run([str(REPO / "hack" / "install-tools.sh"), "keda"], check=True)
    return keda_dir()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def issue_keda_certificate(pki: Path, out: Path) -> None:
    """ca.crt, tls.crt and tls.key in ``out``, as KEDA's cert-manager integration lays them out."""
    out.mkdir(parents=True, exist_ok=True)
    ext = out / "ext.cnf"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        f"subjectAltName=DNS:{METRICS_SERVICE}.{NAMESPACE}.svc,DNS:keda-operator.{NAMESPACE}.svc,"
        "DNS:localhost,IP:127.0.0.1\n"
    )
    _openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(out / "tls.key"),
        "-subj", "/CN=keda-local", "-out", str(out / "tls.csr"),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(out / "tls.csr"),
        "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"), "-CAcreateserial",
        "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(out / "tls.crt"),
    )  # fmt: skip
    (out / "ca.crt").write_bytes((pki / "ca.crt").read_bytes())


@dataclass(frozen=True)
class KedaPorts:
    """Loopback ports from one base, clear of the control plane's (base .. base+6)."""

    operator_metrics: int
    operator_probe: int
    metrics_service: int
    adapter_secure: int
    adapter_metrics: int

    @classmethod
    def from_base(cls, base: int) -> KedaPorts:
        return cls(*range(base + 10, base + 15))


def aggregation_manifests(ca_pem: bytes, port: int) -> list[dict[str, Any]]:
    import base64

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": METRICS_SERVICE, "namespace": NAMESPACE},
            "spec": {"type": "ExternalName", "externalName": "localhost", "ports": [{"port": port}]},
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": APISERVICE},
            "spec": {
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "service": {"name": METRICS_SERVICE, "namespace": NAMESPACE, "port": port},
                "caBundle": base64.b64encode(ca_pem).decode(),
            },
        },
    ]


class Keda:
    """KEDA's operator and metrics server as local processes; a context manager."""

    def __init__(self, cluster: LocalCluster, workdir: Path, *, port_base: int, home: Path) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.ports = KedaPorts.from_base(port_base)
        self.home = home
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    def start(cls, cluster: LocalCluster, workdir: Path, *, port_base: int, timeout: float = 180) -> Keda:
        keda = cls(cluster, workdir, port_base=port_base, home=install_keda())
        try:
            keda._start(timeout)
        except BaseException:
            keda.stop()
            raise
        return keda

    def __enter__(self) -> Keda:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start(self, timeout: float) -> None:
        self._require_aggregation_layer()
        certs = self.workdir / "keda-certs"
        issue_keda_certificate(self.cluster.kubeconfig.parent / "pki", certs)
        self.cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager", "sbo-bench",
            "-f", str(self.home / "crds"),
        )  # fmt: skip
        # Not `kubectl wait`: it errors out when the status has no conditions yet.
        self._wait(self.crds_established, 60, "KEDA's CRDs Established")
        for manifest in aggregation_manifests((certs / "ca.crt").read_bytes(), self.ports.adapter_secure):
            self.cluster.apply(manifest)
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
        }
        self._spawn(
            "keda-operator",
            [
                f"--metrics-bind-address=127.0.0.1:{self.ports.operator_metrics}",
                f"--health-probe-bind-address=127.0.0.1:{self.ports.operator_probe}",
                f"--metrics-service-bind-address=127.0.0.1:{self.ports.metrics_service}",
                f"--cert-dir={certs}",
                f"--ca-dir={certs}",
                "--enable-cert-rotation=false",
                "--enable-webhook-patching=false",
                "--enable-apiservice-patching=false",
                "--zap-log-level=info",
            ],
            env,
        )
        self._wait(
            lambda: _http_ok(f"http://127.0.0.1:{self.ports.operator_probe}/readyz"),
            timeout,
            "keda-operator ready",
        )
        self._spawn(
            "keda-adapter",
            [
                f"--secure-port={self.ports.adapter_secure}",
                "--bind-address=127.0.0.1",
                f"--cert-dir={certs}",
                f"--tls-cert-file={certs / 'tls.crt'}",
                f"--tls-private-key-file={certs / 'tls.key'}",
                f"--authentication-kubeconfig={self.cluster.kubeconfig}",
                f"--authorization-kubeconfig={self.cluster.kubeconfig}",
                f"--lister-kubeconfig={self.cluster.kubeconfig}",
                f"--metrics-service-address=127.0.0.1:{self.ports.metrics_service}",
                f"--port={self.ports.adapter_metrics}",
                "--zap-log-level=info",
            ],
            env,
        )
        self._wait(self.apiservice_available, timeout, f"APIService {APISERVICE} Available")

    def _spawn(self, binary: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.workdir / f"{binary}.log").open("ab")
        self.processes[binary] = subprocess.Popen(
            [str(self.home / "bin" / binary), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _wait(self, check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise KedaError(f"{name} exited with {process.returncode}{self.log_tail(name)}")
            if check():
                return
            time.sleep(0.5)
        raise KedaError(
            f"timed out after {timeout:.0f}s waiting for {what}"
            + "".join(self.log_tail(name) for name in self.processes)
        )

    def _require_aggregation_layer(self) -> None:
        """A control plane started before hack/cluster.sh set the front-proxy flags cannot serve KEDA."""
        authentication = client.CoreV1Api(self.cluster.api).read_namespaced_config_map(
            "extension-apiserver-authentication", "kube-system"
        )
        if "requestheader-client-ca-file" not in (authentication.data or {}):
            raise KedaError(
                "kube-apiserver runs without the aggregation layer's flags (--requestheader-*, "
                "--proxy-client-*): restart the control plane (make cluster-down cluster-up)"
            )

    def crds_established(self) -> bool:
        extensions = client.ApiextensionsV1Api(self.cluster.api)
        try:
            crd = extensions.read_custom_resource_definition("scaledobjects.keda.sh")
        except client.ApiException:
            return False
        conditions = (crd.status.conditions if crd.status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    def apiservice_available(self) -> bool:
        try:
            service = client.ApiregistrationV1Api(self.cluster.api).read_api_service(APISERVICE)
        except client.ApiException:
            return False
        conditions = (service.status.conditions if service.status else None) or []
        return any(c.type == "Available" and c.status == "True" for c in conditions)

    def running(self) -> dict[str, bool]:
        return {name: process.poll() is None for name, process in self.processes.items()}

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return f"\n--- last lines of {path} ---\n" + "\n".join(text)

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        with contextlib.suppress(Exception):
            self.cluster.kubectl("delete", "apiservice", APISERVICE, "--wait=false", check=False)


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
