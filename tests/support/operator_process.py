"""The operator as a real process (`sbo-operator run`) against the local control plane."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.support.cluster import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OperatorProcess:
    """Starts, stops, kills and restarts `sbo-operator run`, and reads its /metrics."""

    def __init__(self, *, kubeconfig: Path, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 60) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "SBO_HEALTH_PORT": str(self.health_port),
            "SBO_METRICS_PORT": str(self.metrics_port),
            **self.extra_env,
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sbo_operator", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the operator did not become healthy within {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies under the operator."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def metric_samples(self, name: str) -> dict[str, float]:
        """Samples of one metric family, keyed by their label text."""
        text = self._scrape()
        samples: dict[str, float] = {}
        for match in re.finditer(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.eE+-]+)$", text, re.MULTILINE):
            samples[match.group(1) or ""] = float(match.group(2))
        return samples

    def _scrape(self, attempts: int = 3) -> str:
        # Tests poll /metrics every few milliseconds on a loaded machine; the metrics
        # server has reset a connection under that. One reset is not a test failure.
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        for _ in range(attempts - 1):
            try:
                return httpx.get(url, timeout=5).text
            except httpx.TransportError:
                time.sleep(0.1)
        return httpx.get(url, timeout=5).text

    def writes(self) -> float:
        """Every write request the operator has sent to the API so far."""
        return sum(self.metric_samples("sbo_api_writes_total").values())
