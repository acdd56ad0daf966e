"""A real S3-compatible object store for tests and benchmarks: MinIO on loopback.

::

    store = MinioServer.start(tmp_path)            # or tls=True: HTTPS with a fresh self-signed CA
    store.create_bucket("backups")
    env = store.client_env()                       # AWS_ACCESS_KEY_ID, ... (+ AWS_CA_BUNDLE)
    store.list_keys("backups", "shop/wals/")       # what the store holds, read through its S3 API
    store.stop(); store.start_again()              # an outage, then the same data back
    store.destroy()

The server listens on 127.0.0.1 on a port from this checkout's range (``SBO_PORT_BASE`` + 30..49,
clear of the control plane's +0..10 and the real node's +50..), with its console on the next port;
without ``SBO_PORT_BASE`` any free port. Its root credentials are generated per server and reach it
through its environment only, never its command line. It is stopped by its pid (its own process
group). ``minio`` is found in ``SBO_MINIO`` or the tools' bin directory (``make tools`` builds it);
if it is missing, ``start`` raises :class:`ServerError` (tests must fail, not skip).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import secrets
import shutil
import ssl
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

import httpx

from devkit.paths import tools_bin_dir
from devkit.process import LOOPBACK, ManagedProcess, ServerError, free_port, port_accepts
from devkit.prometheus import write_test_pki

__all__ = ["MinioServer", "ServerError", "find_minio"]

REGION = "us-east-1"
# Offsets from SBO_PORT_BASE this kit may use for object stores: (API, console) pairs.
PORT_OFFSETS = range(30, 50, 2)
_S3_NAMESPACE = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def find_minio() -> Path:
    """Locate the ``minio`` binary: ``$SBO_MINIO``, else the tools' bin directory."""
    candidate = Path(os.environ.get("SBO_MINIO") or tools_bin_dir() / "minio")
    if candidate.is_file():
        return candidate
    raise ServerError(
        f"minio was not found at {candidate}. Build it (`hack/install-tools.sh minio`) or set SBO_MINIO."
    )


def _ports() -> tuple[int, int]:
    """A free (API, console) port pair from this checkout's range, or any free ports without one."""
    base = os.environ.get("SBO_PORT_BASE")
    if not base:
        return free_port(), free_port()
    for offset in PORT_OFFSETS:
        api, console = int(base) + offset, int(base) + offset + 1
        if not port_accepts(api) and not port_accepts(console):
            return api, console
    raise ServerError(
        f"no free object store ports in SBO_PORT_BASE+{PORT_OFFSETS.start}..{PORT_OFFSETS.stop - 1}"
    )


class MinioServer(ManagedProcess):
    """One ``minio server`` on 127.0.0.1 with a private data directory and generated credentials."""

    stop_timeout = 15.0

    def __init__(
        self, *, server_dir: Path, binary: Path, api_port: int, console_port: int, tls: bool
    ) -> None:
        super().__init__(name=f"minio on port {api_port}", log_path=server_dir / "minio.log")
        self.server_dir = server_dir
        self.data_dir = server_dir / "data"
        self.certs_dir = server_dir / "certs"
        self.binary = binary
        self.port = api_port
        self.console_port = console_port
        self.access_key = "sbo-" + secrets.token_hex(8)
        self.secret_key = secrets.token_urlsafe(32)
        self.ca_bundle: Path | None = None
        if tls:
            # MinIO reads its certificate and key under these names from --certs-dir.
            pki = write_test_pki(server_dir / "pki", name="minio")
            self.certs_dir.mkdir(mode=0o700)
            shutil.copyfile(pki.server_cert, self.certs_dir / "public.crt")
            shutil.copyfile(pki.server_key, self.certs_dir / "private.key")
            self.ca_bundle = pki.ca_cert

    @classmethod
    def start(cls, base_dir: Path | None = None, *, tls: bool = False, timeout: float = 60.0) -> MinioServer:
        """Start a new, empty store under ``base_dir`` (or the system temp dir); ``tls``: HTTPS only."""
        api_port, console_port = _ports()
        server = cls(
            server_dir=Path(tempfile.mkdtemp(prefix="sbo-minio-", dir=base_dir)),
            binary=find_minio(),
            api_port=api_port,
            console_port=console_port,
            tls=tls,
        )
        server.data_dir.mkdir(mode=0o700)
        server.start_again(timeout=timeout)
        return server

    def start_again(self, timeout: float = 60.0) -> None:
        """Start the server on the same port, data and credentials (after stop/kill)."""
        self.launch(timeout)

    def command(self) -> list[str]:
        argv = [str(self.binary), "server", "--quiet", "--anonymous"]
        argv += [
            "--address",
            f"{LOOPBACK}:{self.port}",
            "--console-address",
            f"{LOOPBACK}:{self.console_port}",
        ]
        if self.ca_bundle is not None:
            argv += ["--certs-dir", str(self.certs_dir)]
        return [*argv, str(self.data_dir)]

    def environment(self) -> Mapping[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.server_dir),
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            "MINIO_CI_CD": "1",  # a directory on the root disk is fine for a test store
        }

    def is_ready(self) -> bool:
        try:
            response = httpx.get(f"{self.endpoint_url}/minio/health/live", verify=self._verify(), timeout=1.0)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def destroy(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.server_dir, ignore_errors=True)

    # ---- what a client needs ---------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        scheme = "https" if self.ca_bundle is not None else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """The environment an S3 client (barman-cloud, boto3) reads its credentials and CA from."""
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }
        if self.ca_bundle is not None:
            env["AWS_CA_BUNDLE"] = str(self.ca_bundle)
        return env

    # ---- the S3 API, signed (AWS Signature Version 4), for set-up and assertions ---------------

    def create_bucket(self, bucket: str) -> str:
        """Create ``bucket`` (an existing one of ours is fine) and return its name."""
        response = self._request("PUT", f"/{bucket}")
        if response.status_code not in (200, 409):
            raise ServerError(f"creating bucket {bucket} failed: {response.status_code} {response.text}")
        return bucket

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix``, in the store's (lexicographic) order."""
        keys: list[str] = []
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
            response = self._request("GET", f"/{bucket}", query)
            if response.status_code != 200:
                raise ServerError(f"listing {bucket}/{prefix} failed: {response.status_code} {response.text}")
            root = ET.fromstring(response.content)  # noqa: S314 - our own server's answer
            keys += [node.text or "" for node in root.iter(f"{_S3_NAMESPACE}Key")]
            token = root.findtext(f"{_S3_NAMESPACE}NextContinuationToken") or ""
            if not token:
                return keys

    def _verify(self) -> bool | ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle is not None else True

    def _request(self, method: str, path: str, query: Mapping[str, str] | None = None) -> httpx.Response:
        now = datetime.datetime.now(datetime.UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload_hash = hashlib.sha256(b"").hexdigest()
        host = f"{LOOPBACK}:{self.port}"
        canonical_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted((query or {}).items())
        )
        headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [method, quote(path, safe="/-_.~"), canonical_query]
            + [f"{name}:{headers[name]}" for name in sorted(headers)]
            + ["", signed, payload_hash]
        )
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = f"AWS4{self.secret_key}".encode()
        for part in (day, REGION, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        url = f"{self.endpoint_url}{quote(path, safe='/-_.~')}" + (
            f"?{canonical_query}" if canonical_query else ""
        )
        return httpx.request(method, url, headers=headers, verify=self._verify(), timeout=10.0)

    def __repr__(self) -> str:
        return f"<MinioServer {self.endpoint_url} {self.server_dir}>"
