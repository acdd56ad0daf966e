"""A real Prometheus server for tests and benchmarks, on a free port on 127.0.0.1.

::

    server = PrometheusServer.start(tmp_path, scrape_targets={"target": [f"127.0.0.1:{port}"]})
    server.wait_for_target("target")           # scraped at least once, up == 1
    server.query("up")                          # the raw JSON answer
    server.kill(); server.restart(); server.stop()

``scrape_configs=`` adds whole scrape jobs, such as :func:`kubernetes_pods_scrape_config`'s, which
finds its targets through a Kubernetes apiserver instead of a static list.

With ``tls=`` (see :func:`write_test_pki`) and ``basic_auth_users=`` the server is started with
``--web.config.file``, so it serves HTTPS and answers 401 without the right credentials.

``prometheus`` is found in ``SBO_PROMETHEUS`` or ``PATH``; if it is missing, ``start`` raises
:class:`ServerError` (tests must fail, not skip).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from devkit.process import LOOPBACK, ManagedProcess, ServerError, find_binary, free_port, wait_until

__all__ = [
    "PkiFiles",
    "PrometheusServer",
    "ServerError",
    "find_prometheus",
    "kubernetes_pods_scrape_config",
    "write_test_pki",
]


def find_prometheus() -> Path:
    """Locate the ``prometheus`` binary."""
    return find_binary("prometheus", env="SBO_PROMETHEUS", package="prometheus")


@dataclass(frozen=True)
class PkiFiles:
    """A throwaway CA and a server certificate it signed, for 127.0.0.1 and localhost."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    @property
    def ca_pem(self) -> str:
        return self.ca_cert.read_text()


def write_test_pki(directory: Path, *, name: str = "test") -> PkiFiles:
    """Create a CA and a server certificate signed by it with ``openssl`` (valid for one day)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ServerError("openssl was not found; it is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / f"{name}-ca.key", directory / f"{name}-ca.crt"
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name} test CA"]
    request = ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"]
    sign = ["x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial"]
    commands = [
        [*ca, "-keyout", str(ca_key), "-out", str(ca_cert)],
        [*request, "-keyout", str(key), "-out", str(csr)],
        [*sign, "-days", "1", "-extfile", str(extensions), "-out", str(cert)],
    ]
    for arguments in commands:
        done = subprocess.run([openssl, *arguments], capture_output=True, check=False)
        if done.returncode != 0:
            raise ServerError(f"openssl {arguments[0]} failed: {done.stderr.decode(errors='replace')}")
    return PkiFiles(ca_cert=ca_cert, server_cert=cert, server_key=key)


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for Prometheus's ``basic_auth_users`` (libxcrypt through ``crypt``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 4))  # noqa: S324 - bcrypt
    if not hashed or not hashed.startswith("$2"):
        raise ServerError("this libcrypt cannot make bcrypt hashes for basic_auth_users")
    return hashed


def kubernetes_pods_scrape_config(
    job: str,
    *,
    api_server: str,
    ca_file: Path,
    token_file: Path,
    namespace: str,
    label_selector: str,
    port_name: str,
) -> dict[str, Any]:
    """A scrape job for the Running pods of ``namespace`` that match ``label_selector``.

    Prometheus lists and watches them through the apiserver (``kubernetes_sd_configs``, role pod,
    with ``token_file``'s bearer token and ``ca_file``) and scrapes each pod's IP at its container
    port named ``port_name``. Every series gets the labels ``namespace`` and ``pod``.
    """
    return {
        "job_name": job,
        "kubernetes_sd_configs": [
            {
                "role": "pod",
                "api_server": api_server,
                "namespaces": {"names": [namespace]},
                "selectors": [{"role": "pod", "label": label_selector}],
                "authorization": {"credentials_file": str(token_file)},
                "tls_config": {"ca_file": str(ca_file)},
            }
        ],
        "relabel_configs": [
            # One target per pod: the container port of that name (a pod lists every port once).
            {
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": port_name,
                "action": "keep",
            },
            # A pending pod has no IP yet; a terminating one is still Running and still counted.
            {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


class PrometheusServer(ManagedProcess):
    """One ``prometheus`` process on 127.0.0.1, started in its own process group."""

    stop_timeout = 20.0

    def __init__(
        self,
        *,
        server_dir: Path,
        port: int,
        binary: Path,
        scrape_targets: Mapping[str, Sequence[str]],
        scrape_configs: Sequence[Mapping[str, Any]],
        scrape_interval: str,
        tls: PkiFiles | None,
        basic_auth_users: Mapping[str, str] | None,
        enable_lifecycle: bool,
    ) -> None:
        super().__init__(name=f"prometheus on port {port}", log_path=server_dir / "prometheus.log")
        self.server_dir = server_dir
        self.config_path = server_dir / "prometheus.yml"
        self.web_config_path = server_dir / "web.yml"
        self.port = port
        self.binary = binary
        self.scrape_targets = dict(scrape_targets)
        self.scrape_configs = [dict(job) for job in scrape_configs]
        self.scrape_interval = scrape_interval
        self.tls = tls
        self.basic_auth_users = dict(basic_auth_users or {})
        self.enable_lifecycle = enable_lifecycle

    @classmethod
    def start(
        cls,
        base_dir: Path | None = None,
        *,
        scrape_targets: Mapping[str, Sequence[str]] | None = None,
        scrape_configs: Sequence[Mapping[str, Any]] = (),
        scrape_interval: str = "1s",
        tls: PkiFiles | None = None,
        basic_auth_users: Mapping[str, str] | None = None,
        enable_lifecycle: bool = False,
        binary: Path | None = None,
        timeout: float = 60.0,
    ) -> PrometheusServer:
        """Start a server scraping ``scrape_targets`` (job name -> ["host:port", ...]) and the jobs
        of ``scrape_configs`` (whole entries of Prometheus's ``scrape_configs``).

        ``basic_auth_users`` maps user names to plain passwords; they are hashed for the web config.
        ``binary``: another build than :func:`find_prometheus`'s (e.g. one with Kubernetes discovery).
        """
        server = cls(
            server_dir=Path(tempfile.mkdtemp(prefix="prometheus-", dir=base_dir)),
            port=free_port(),
            binary=binary or find_prometheus(),
            scrape_targets=scrape_targets or {},
            scrape_configs=scrape_configs,
            scrape_interval=scrape_interval,
            tls=tls,
            basic_auth_users=basic_auth_users,
            enable_lifecycle=enable_lifecycle,
        )
        server._write_config()
        server.launch(timeout)
        return server

    # ---- addresses and a client -------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}"

    def admin_client(self, timeout: float = 10.0) -> httpx.Client:
        """A synchronous client that trusts the server and sends the first user's credentials."""
        verify: ssl.SSLContext | bool = True
        if self.tls:
            verify = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        auth = next(iter(self.basic_auth_users.items()), None)
        return httpx.Client(base_url=self.url, verify=verify, auth=auth, timeout=timeout)

    # ---- lifecycle --------------------------------------------------------------------------

    def restart(self, timeout: float = 60.0) -> None:
        """Stop (if running) and start again on the same port with the same data."""
        self.stop()
        self.launch(timeout)

    def reload(self) -> None:
        """Re-read the configuration (``POST /-/reload``; needs ``enable_lifecycle``)."""
        if not self.enable_lifecycle:
            raise ServerError("reload needs enable_lifecycle=True")
        self._write_config()
        with self.admin_client() as client:
            client.post("/-/reload").raise_for_status()

    def destroy(self) -> None:
        """Stop and remove the working directory."""
        self.stop()
        shutil.rmtree(self.server_dir, ignore_errors=True)

    # ---- waiting and querying ---------------------------------------------------------------

    def query(self, promql: str) -> dict[str, Any]:
        """The raw JSON answer of an instant query (whatever its status)."""
        with self.admin_client() as client:
            response = client.get("/api/v1/query", params={"query": promql})
        answer: dict[str, Any] = response.json()
        return answer

    def wait_for_target(self, job: str, timeout: float = 30.0, *, count: int | None = None) -> None:
        """Wait until ``count`` targets of ``job`` (default: its static targets) have been scraped
        successfully at least once."""
        expected = len(self.scrape_targets[job]) if count is None else count

        def scraped() -> bool:
            result = self.query(f'up{{job="{job}"}}')["data"]["result"]
            return len(result) == expected and all(series["value"][1] == "1" for series in result)

        wait_until(scraped, timeout, f"prometheus to scrape job {job}", log=self.log_path)

    def wait_for_value(self, promql: str, expected: float, timeout: float = 30.0) -> None:
        """Wait until the instant query returns exactly one series (or a scalar) equal to ``expected``."""

        def seen() -> bool:
            data = self.query(promql).get("data", {})
            if data.get("resultType") == "scalar":
                return float(data["result"][1]) == expected
            result = data.get("result") or []
            return len(result) == 1 and float(result[0]["value"][1]) == expected

        wait_until(seen, timeout, f"{promql} == {expected}", log=self.log_path)

    # ---- internals --------------------------------------------------------------------------

    def _write_config(self) -> None:
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                for job, targets in self.scrape_targets.items()
            ]
            + self.scrape_configs,
        }
        self.config_path.write_text(yaml.safe_dump(config))
        web: dict[str, Any] = {}
        if self.tls:
            web["tls_server_config"] = {
                "cert_file": str(self.tls.server_cert),
                "key_file": str(self.tls.server_key),
            }
        if self.basic_auth_users:
            web["basic_auth_users"] = {user: bcrypt_hash(pw) for user, pw in self.basic_auth_users.items()}
        if web:
            self.web_config_path.write_text(yaml.safe_dump(web))

    def command(self) -> list[str]:
        command = [
            str(self.binary),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.server_dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--log.level=warn",
        ]
        if self.enable_lifecycle:
            command.append("--web.enable-lifecycle")
        if self.tls or self.basic_auth_users:
            command.append(f"--web.config.file={self.web_config_path}")
        return command

    def working_dir(self) -> Path:
        return self.server_dir

    def is_ready(self) -> bool:
        try:
            with self.admin_client(timeout=1.0) as client:
                return client.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False


class BearerTokenProxy:
    """A reverse proxy on 127.0.0.1 that lets a request through only with ``Bearer <token>``.

    Prometheus itself cannot check bearer tokens (its web config knows basic auth only), so this
    stands in for the authenticating proxy usually put in front of it.
    """

    def __init__(self, upstream: str, token: str) -> None:
        self.upstream = upstream
        self.token = token
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._forward(self)

            def do_POST(self) -> None:
                proxy._forward(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="bearer-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> BearerTokenProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _forward(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length", "0")))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self._reply(request, 401, b"missing or wrong bearer token\n", "text/plain")
            return
        headers = {key: value for key, value in request.headers.items() if key.lower() == "content-type"}
        upstream = httpx.request(
            request.command, self.upstream + request.path, content=body, headers=headers, timeout=30
        )
        self._reply(request, upstream.status_code, upstream.content, upstream.headers.get("Content-Type", ""))

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
