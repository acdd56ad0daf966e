"""The operator as a real process (`sbo-operator run`) against a control plane, and its /metrics."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from devkit.paths import REPO
from devkit.process import LOOPBACK, ManagedProcess, answers_ok, free_port
from devkit.promtext import label_text_samples


class OperatorProcess(ManagedProcess):
    """Starts, stops, kills and restarts `sbo-operator run`, and reads its /metrics.

    Ready once Kopf's /healthz answers 200. Health and metrics ports are chosen once, so a
    restart after :meth:`kill` serves on the same addresses.
    """

    stop_timeout = 20.0

    def __init__(self, *, kubeconfig: Path, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        super().__init__(name="sbo-operator", log_path=log_path)
        self.kubeconfig = kubeconfig
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.extra_env = dict(env or {})

    def start(self, *, timeout: float = 60) -> None:
        self.launch(timeout)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "sbo_operator", "run"]

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "SBO_HEALTH_PORT": str(self.health_port),
            "SBO_METRICS_PORT": str(self.metrics_port),
            # Its PostgreSQL probes reach only the real node's pods: kwok's fake pod addresses
            # (10.244.0.0/16) are not on this machine, and no traffic may leave it.
            "SBO_POSTGRES_PROBE_NETWORKS": "198.18.0.0/16",
            **self.extra_env,
        }

    def working_dir(self) -> Path:
        return REPO

    def is_ready(self) -> bool:
        return answers_ok(self.health_url)

    @property
    def health_url(self) -> str:
        return f"http://{LOOPBACK}:{self.health_port}/healthz"

    def scrape(self, attempts: int = 3) -> str:
        """The /metrics text. Tests poll it every few milliseconds on a loaded machine; the
        metrics server has reset a connection under that, and one reset is not a failure."""
        url = f"http://{LOOPBACK}:{self.metrics_port}/metrics"
        for _ in range(attempts - 1):
            try:
                return httpx.get(url, timeout=5, trust_env=False).text
            except httpx.TransportError:
                time.sleep(0.1)
        return httpx.get(url, timeout=5, trust_env=False).text

    def metric_samples(self, name: str) -> dict[str, float]:
        """Samples of one metric family, keyed by their label text (``{verb="apply",...}``, or "")."""
        return label_text_samples(self.scrape(), name)

    def writes(self) -> float:
        """Every write request the operator has sent to the API so far."""
        return sum(self.metric_samples("sbo_api_writes_total").values())
