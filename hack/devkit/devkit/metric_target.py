"""A tiny scrape target whose metric values a test sets, run as a real process.

::

    with MetricTarget.start() as target:
        target.set(42.0, series="a")      # sbo_test_value{series="a"} 42
        target.remove(series="a")
        target.address                     # "127.0.0.1:PORT", for a scrape config

The process serves ``/metrics`` (prometheus_client text format) and takes its orders on
``POST /set`` and ``POST /remove`` with a JSON body. Run it with
``python -m devkit.metric_target PORT``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from devkit.paths import REPO
from devkit.process import LOOPBACK, ManagedProcess, answers_ok, free_port

__all__ = ["METRIC_NAME", "MetricTarget"]

METRIC_NAME = "sbo_test_value"
LABEL = "series"


class MetricTarget(ManagedProcess):
    """The test's handle on a running target process."""

    def __init__(self, *, port: int, log_path: Path) -> None:
        super().__init__(name=f"metric target on port {port}", log_path=log_path)
        self.port = port

    @classmethod
    def start(cls, timeout: float = 30.0) -> MetricTarget:
        port = free_port()
        target = cls(port=port, log_path=Path(tempfile.mkdtemp(prefix="sbo-metric-target-")) / "target.log")
        target.launch(timeout)
        return target

    def destroy(self) -> None:
        """Stop, and remove the log's temporary directory."""
        self.stop()
        shutil.rmtree(self.log_path.parent, ignore_errors=True)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "devkit.metric_target", str(self.port)]

    def working_dir(self) -> Path:
        return REPO

    def is_ready(self) -> bool:
        return answers_ok(f"http://{self.address}/metrics")

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def set(self, value: float, *, series: str) -> None:
        """Set ``sbo_test_value{series=...}``; NaN and +-Inf are allowed."""
        self._post("/set", {"series": series, "value": repr(float(value))})

    def remove(self, *, series: str) -> None:
        """Drop one series, so it disappears from the next scrape."""
        self._post("/remove", {"series": series})

    def _post(self, path: str, body: dict[str, Any]) -> None:
        httpx.post(f"http://{self.address}{path}", json=body, timeout=5).raise_for_status()


def _serve(port: int) -> None:
    registry = CollectorRegistry()
    gauge = Gauge(METRIC_NAME, "A value the test sets.", [LABEL], registry=registry)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            order = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            if self.path == "/set":
                gauge.labels(order["series"]).set(float(order["value"]))
            elif self.path == "/remove":
                with contextlib.suppress(KeyError):  # already gone
                    gauge.remove(order["series"])
            else:
                self.send_error(404)
                return
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the test output is what matters

    server = ThreadingHTTPServer((LOOPBACK, port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
