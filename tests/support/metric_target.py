"""A tiny scrape target whose metric values a test sets, run as a real process.

::

    with MetricTarget.start() as target:
        target.set(42.0, series="a")      # sbo_test_value{series="a"} 42
        target.remove(series="a")
        target.address                     # "127.0.0.1:PORT", for a scrape config

The process serves ``/metrics`` (prometheus_client text format) and takes its orders on
``POST /set`` and ``POST /remove`` with a JSON body. Run it with ``python -m tests.support.metric_target``;
it prints ``LISTENING <port>`` once it accepts connections.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tests.support._process import LOOPBACK, ServerError, terminate

__all__ = ["METRIC_NAME", "MetricTarget"]

METRIC_NAME = "sbo_test_value"
LABEL = "series"
_REPO_ROOT = Path(__file__).resolve().parents[2]


class MetricTarget:
    """The test's handle on a running target process."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self._proc = proc
        self.port = port

    @classmethod
    def start(cls, timeout: float = 30.0) -> MetricTarget:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.metric_target"],
            cwd=_REPO_ROOT,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()  # blocks until the server listens or dies
        if not line.startswith("LISTENING "):
            terminate(proc, signal.SIGKILL, timeout)
            raise ServerError(f"the metric target did not start: {line!r}")
        return cls(proc, int(line.split()[1]))

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def set(self, value: float, *, series: str) -> None:
        """Set ``sbo_test_value{series=...}``; NaN and +-Inf are allowed."""
        self._post("/set", {"series": series, "value": repr(float(value))})

    def remove(self, *, series: str) -> None:
        """Drop one series, so it disappears from the next scrape."""
        self._post("/remove", {"series": series})

    def stop(self) -> None:
        terminate(self._proc, signal.SIGTERM, 10)

    def __enter__(self) -> MetricTarget:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _post(self, path: str, body: dict[str, Any]) -> None:
        httpx.post(f"http://{self.address}{path}", json=body, timeout=5).raise_for_status()


def _serve() -> None:
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

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    _serve()
